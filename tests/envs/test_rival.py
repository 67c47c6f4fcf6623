"""A competitor that answers our moves (``truth.rival``): a price cut some weeks after our launch, one
the week after our flash sale and a match of our price a step later, in the structural market only,
in an episode drawn with its answer probability; seen in the observation as the competitor's price;
the same in the single and batched envs; weighed over both outcomes by the oracle; refused with
precise errors."""

from __future__ import annotations

import numpy as np
import pytest

from launchsim.agents.policies.oracle import ExpectedMarket
from launchsim.envs import LaunchMarketEnv
from launchsim.envs.actions import Decision
from launchsim.envs.dynamics import describe_market, with_model_terms
from launchsim.envs.spaces import OBS
from launchsim.errors import ScenarioError
from launchsim.models.structural_market import StructuralMarket
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides
from tests.envs.parity import assert_batch_steps_as_single_envs

SPEAKER = "electronics_speaker_rival_answer"
LIST_PRICE = 119.0 / 129.0  # the incumbent's price over our reference price


def test_the_rival_cuts_its_price_from_two_weeks_after_the_launch_for_six_weeks():
    env = LaunchMarketEnv(load_scenario(SPEAKER), outcomes="expected")
    obs, _ = env.reset(seed=0)
    seen, read = [float(obs[OBS["competitor_price"]])], []
    env.step(np.array([0, 2, 0, 0, 0]))  # week 0: wait
    for _ in range(10):  # launched in week 1
        obs = env.step(np.array([1, 2, 0, 0, 0]))[0]
        seen.append(float(obs[OBS["competitor_price"]]))
        read.append(env.last_context.competitor_price_ratio)
    cut = [LIST_PRICE * 0.7 if 3 <= week <= 8 else LIST_PRICE for week in range(1, 11)]
    assert read == pytest.approx(cut, rel=1e-12)  # what the market reads in weeks 1..10
    assert seen == pytest.approx([LIST_PRICE, *cut[1:], LIST_PRICE], rel=1e-6)  # what the seller sees of weeks 0, 2..11


def test_the_rival_undercuts_the_week_after_a_flash_sale():
    s = load_scenario(SPEAKER)
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    flash = len(s.pricing.levels)  # the flash sale's price index
    ratios = []
    for week in range(12):
        env.step(np.array([1, flash if week == 9 else 2, 0, 0, 0]))
        ratios.append(env.last_context.competitor_price_ratio)
    assert ratios[9] == pytest.approx(LIST_PRICE) and ratios[10] == pytest.approx(LIST_PRICE * 0.85)
    assert ratios[11] == pytest.approx(LIST_PRICE)


def test_only_the_structural_market_knows_the_rival():
    s = load_scenario(SPEAKER)
    truth = with_model_terms(describe_market(s, 0), StructuralMarket(s), s, 0).constants
    assert (truth.rival_launch_cut, truth.rival_lag, truth.rival_steps, truth.rival_flash_cut) == (0.3, 2, 6, 0.15)
    learned = with_model_terms(describe_market(s, 0), object(), s, 0).constants  # any other response model
    assert learned.rival_launch_cut == learned.rival_flash_cut == 0.0


def test_the_rival_costs_a_late_launch_more_as_the_file_says():
    s = load_scenario(SPEAKER)
    quiet = apply_overrides(s, ["truth.rival=null"])

    def value(scenario, launch):
        plan = [Decision(t >= launch, 1.1, False, 0, 0.0, 0) for t in range(scenario.n_steps)]
        return ExpectedMarket(scenario).profit(plan)

    assert value(quiet, 0) == pytest.approx(2_692_688, abs=1) and value(quiet, 0) - value(s, 0) == pytest.approx(
        36_298, abs=1
    )
    assert value(quiet, 8) - value(s, 8) == pytest.approx(185_599, abs=1)


def test_the_batched_env_steps_a_rival_as_the_single_env():
    assert_batch_steps_as_single_envs(load_scenario(SPEAKER), seed=7, actions_seed=2)


def test_a_rival_matches_its_share_of_the_gap_down_to_our_price_a_step_later():
    s = apply_overrides(load_scenario(SPEAKER), ["truth.rival.launch_cut=0", "truth.rival.flash_cut=0", "truth.rival.price_match=0.5"])
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    read, seen = [], []
    for level in (0, 0, 3, 3):  # 0.85, 0.85, then 1.1 of the reference price
        obs = env.step(np.array([1, level, 0, 0, 0]))[0]
        read.append(env.last_context.competitor_price_ratio)
        seen.append(float(obs[OBS["competitor_price"]]))
    matched = LIST_PRICE - 0.5 * (LIST_PRICE - 0.85)
    assert read == pytest.approx([LIST_PRICE, matched, matched, LIST_PRICE], rel=1e-12)  # not above its own price
    assert seen == pytest.approx([*read[1:], LIST_PRICE], rel=1e-6)


def _answered(env, seed):
    """Whether the rival answered our week-0 launch in the episode of ``seed`` (its price in week 3)."""
    env.reset(seed=seed)
    for _ in range(4):
        env.step(np.array([1, 2, 0, 0, 0]))
    return env.last_context.competitor_price_ratio < LIST_PRICE


def test_a_rival_answers_by_chance_once_per_episode_without_changing_the_outcome_draws():
    s = load_scenario(SPEAKER)
    chance = apply_overrides(s, ["truth.rival.answer_probability=0.5"])
    env = LaunchMarketEnv(chance, outcomes="expected")
    answered = [_answered(env, seed) for seed in range(40)]
    assert 12 <= sum(answered) <= 28 and answered == [_answered(env, seed) for seed in range(40)]  # drawn from the seed
    assert _answered(LaunchMarketEnv(chance, rival_answers=True), 1) and not _answered(LaunchMarketEnv(chance, rival_answers=False), 1)
    # Sampled outcomes: the episode draws the same counts as with a rival that always (never) answers.
    for seed in (answered.index(True), answered.index(False)):
        twin = s if answered[seed] else apply_overrides(s, ["truth.rival=null"])
        rewards = []
        for env in (LaunchMarketEnv(chance), LaunchMarketEnv(twin)):
            env.reset(seed=seed)
            rewards.append([env.step(np.array([1, 2, 0, 1, 0]))[1] for _ in range(10)])  # through the answer's weeks 2..7
        assert rewards[0] == rewards[1]


def test_the_oracle_weighs_both_outcomes_of_a_rival_that_answers_by_chance():
    s = load_scenario(SPEAKER)
    plan = [Decision(t >= 1, 1.0 if t < 8 else 0.95, False, 0, 0.1, 0) for t in range(s.n_steps)]
    value = {p: ExpectedMarket(apply_overrides(s, [f"truth.rival.answer_probability={p}"])).profit(plan) for p in (0.3, 1)}
    quiet = ExpectedMarket(apply_overrides(s, ["truth.rival=null"])).profit(plan)
    assert value[0.3] == pytest.approx(0.3 * value[1] + 0.7 * quiet, rel=1e-12) and value[1] < quiet


def test_the_batched_env_draws_a_rival_by_chance_as_single_envs_over_episodes():
    s = apply_overrides(load_scenario(SPEAKER), ["truth.rival.answer_probability=0.5", "truth.rival.price_match=0.6"])
    assert_batch_steps_as_single_envs(s, seed=3, actions_seed=4, launch_share=0.3, episodes=3)


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (["competitor.events=[]"], "truth.rival", "competitor has no events"),
        (["truth.rival.flash_cut=0.8"], "truth.rival.flash_cut", "launch_cut + flash_cut < 1"),
        (["truth.rival.launch_lag_weeks=0"], "truth.rival.launch_lag_weeks", ""),
        (["truth.rival.answer_probability=0"], "truth.rival.answer_probability", ""),
        (["truth.rival.price_match=1.5"], "truth.rival.price_match", ""),
    ],
)
def test_bad_rivals_are_refused_naming_the_field(overrides, field, message):
    with pytest.raises(ScenarioError) as err:
        apply_overrides(load_scenario(SPEAKER), overrides)
    assert any(field in line and message in line for line in err.value.problems), err.value.problems


def test_a_rival_at_the_new_fields_defaults_hashes_as_before_they_existed():
    from launchsim.scenarios.loader import scenario_hash

    s = load_scenario(SPEAKER)
    assert scenario_hash(s) == "aa0dce656d593470"  # recorded before price_match and answer_probability existed
    assert scenario_hash(apply_overrides(s, ["truth.rival.price_match=0.5"])) != scenario_hash(s)
