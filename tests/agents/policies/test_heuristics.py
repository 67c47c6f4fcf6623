"""Heuristic baselines act validly on every scenario, in both action spaces and on batches."""

from __future__ import annotations

import numpy as np
import pytest

from launchsim.agents import HEURISTICS, episode_summary, make_heuristic, run_episode
from launchsim.agents.evaluation.simulate import simulate
from launchsim.agents.rollout import WEEKLY_COLUMNS
from launchsim.envs import LaunchMarketEnv
from launchsim.errors import PolicyError
from launchsim.scenarios import load_scenario


@pytest.mark.parametrize("name", HEURISTICS)
def test_heuristic_plays_valid_actions(scenario_path, name):
    s = load_scenario(scenario_path)
    weekly = run_episode(LaunchMarketEnv(s), make_heuristic(name, s), seed=0)
    assert list(weekly.columns[: len(WEEKLY_COLUMNS)]) == WEEKLY_COLUMNS
    assert len(weekly) == s.n_steps
    assert (weekly["ignored"] == "").all(), weekly["ignored"].unique()
    assert weekly["launched"].any()
    assert np.isfinite(episode_summary(weekly)["profit"])


@pytest.mark.parametrize("name", HEURISTICS)
def test_heuristic_in_box_space(name):
    s = load_scenario("food_coffee_bundle")
    weekly = run_episode(LaunchMarketEnv(s, action_type="box"), make_heuristic(name, s, action_type="box"), seed=0)
    assert (weekly["ignored"] == "").all()


def test_batch_predict():
    s = load_scenario("apparel_winter_coat_holiday")
    env = LaunchMarketEnv(s)
    obs = np.stack([env.reset(seed=i)[0] for i in range(4)])
    actions, state = make_heuristic("list_price", s).predict(obs)
    assert actions.shape == (4, 5) and state is None


def test_holiday_launch_waits_for_the_peak(default_scenario):
    weekly = run_episode(LaunchMarketEnv(default_scenario), make_heuristic("holiday_launch", default_scenario), seed=0)
    # Black Friday (week of year 48) is step 10 from week 38; the rule launches 3 steps earlier.
    assert weekly.loc[weekly["launched"], "week"].iloc[0] == 7
    assert weekly.loc[~weekly["launched"], "ad_spend"].sum() == 0


def test_launch_now_uses_a_fixed_markup(default_scenario):
    weekly = run_episode(LaunchMarketEnv(default_scenario), make_heuristic("launch_now", default_scenario), seed=0)
    target = 2.5 * 68.0  # markup x unit cost, snapped to the nearest level (0.9 x 189 = 170.1)
    assert weekly["price"].iloc[0] == pytest.approx(170.1)
    assert abs(weekly["price"].iloc[0] - target) < 0.05 * 189
    assert weekly["launched"].all()


def test_unknown_heuristic_suggests():
    with pytest.raises(PolicyError, match="did you mean 'holiday_launch'"):
        make_heuristic("holiday_lunch", load_scenario("food_coffee_bundle"))


def test_simulate_summaries(default_scenario):
    weekly, summary = simulate(default_scenario, "list_price", seed=5, episodes=3)
    assert list(summary["seed"]) == [5, 6, 7]
    assert summary["profit"].iloc[0] == pytest.approx(weekly["profit"].sum())
    assert summary["profit"].nunique() == 3  # different seeds, different draws
