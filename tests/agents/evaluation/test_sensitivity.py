"""Week-by-week price sensitivity: the closed-form optimum holds in every week, edges and markets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from launchsim.agents.policies.recorded_plan import RecordedPlan
from launchsim.agents.policies.source import build_policy
from launchsim.agents.rollout import run_episode
from launchsim.agents.evaluation.sensitivity import plan_sensitivity, sensitivity_table, write_sensitivity
from launchsim.envs import LaunchMarketEnv
from launchsim.errors import PolicyError
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides

BOARD = "home_cutting_board_closed_form"


def test_the_closed_form_price_is_best_in_every_week_of_the_truth():
    # A constant pool of buyers: moving one week's price off p*'s level costs the same in every week,
    # a twelfth of what the whole episode at that level costs, and never pays.
    s = load_scenario(BOARD)
    plan, rows = plan_sensitivity(s, build_policy("launch_now", s), markets=["structural"])
    assert len(plan) == s.n_steps and set(plan["price"]) == {30.0}
    assert len(rows) == 2 * s.n_steps and (rows["profit_delta"] < 0).all()

    def episode(level: float) -> float:
        frame = pd.DataFrame({"week": range(s.n_steps), "price": [level * 40.0] * s.n_steps})
        return run_episode(LaunchMarketEnv(s, outcomes="expected"), RecordedPlan(frame.astype(str), s), seed=0)["profit"].sum()

    for shift, level in ((-1, 0.70), (1, 0.80)):
        deltas = rows.loc[rows["shift"] == shift, "profit_delta"].to_numpy()
        np.testing.assert_allclose(deltas, (episode(level) - episode(0.75)) / s.n_steps, rtol=1e-9)


def test_shifts_past_the_price_levels_are_left_out_and_markets_compared(tiny_predictor, tmp_path):
    s = load_scenario(BOARD)
    lowest = pd.DataFrame({"week": range(s.n_steps), "price": [28.0] * s.n_steps}).astype(str)
    plan, rows = plan_sensitivity(s, RecordedPlan(lowest, s), markets=["structural", "learned"], predictor=tiny_predictor)
    assert set(rows["shift"]) == {1} and len(rows) == 2 * s.n_steps  # no level below 0.70
    wide = sensitivity_table(rows)
    assert list(wide.columns) == ["week", "price", "structural +1 level", "learned +1 level", "disagree"]
    truth_pays = wide["structural +1 level"] > 0
    assert truth_pays.all()  # 28.00 is below p*: one level up pays in every week
    assert (wide["disagree"] == (truth_pays != (wide["learned +1 level"] > 0))).all()
    paths = write_sensitivity(plan, rows, tmp_path / "out")
    assert all(p.exists() for p in paths.values())
    assert pd.read_csv(paths["plan"])["price"].eq(28.0).all()  # the plan played, readable as a recorded plan


def test_bad_markets_levers_and_a_learned_market_without_predictor_fail():
    s = load_scenario(BOARD)
    policy = build_policy("launch_now", s)
    with pytest.raises(PolicyError, match="found 'structual'; did you mean 'structural'"):
        plan_sensitivity(s, policy, markets=["structual"])
    with pytest.raises(PolicyError, match="needs a predictor"):
        plan_sensitivity(s, policy, markets=["learned"])
    with pytest.raises(PolicyError, match="needs a predictor"):  # the plan's market counts too
        plan_sensitivity(s, policy, markets=["structural"], plan_market="learned")
    with pytest.raises(PolicyError, match="lever: found 'bundle'"):
        plan_sensitivity(s, policy, lever="bundle", markets=["structural"])


def test_neighbouring_levels_go_by_value_not_by_file_order():
    s = load_scenario(BOARD)
    shuffled = apply_overrides(s, ["pricing.levels=[0.8, 1.4, 0.75, 0.7, 1.0]"])
    _, rows = plan_sensitivity(shuffled, build_policy("launch_now", shuffled), markets=["structural"])
    assert set(zip(rows["shift"], rows["changed_value"])) == {(-1, 28.0), (1, 32.0)}


@pytest.mark.parametrize(
    ("scenario", "policy"),
    [("beauty_serum_flash_sale", "flash_in_window"), ("apparel_winter_coat_holiday", "holiday_launch"), ("food_coffee_bundle", "bundle_first")],
)
def test_the_probed_plan_is_the_policys_and_only_weeks_on_regular_sale_move(scenario, policy):
    # The plan, replayed as a recorded plan (ads, bundles, flash sales and all), earns what the policy
    # earned; weeks before launch, of a flash sale or starting sold out have no price level to move.
    s = load_scenario(scenario)
    plan, rows = plan_sensitivity(s, build_policy(policy, s), markets=["structural"])
    own = run_episode(LaunchMarketEnv(s, outcomes="expected"), build_policy(policy, s), seed=0)
    assert rows["plan_profit"].iloc[0] == pytest.approx(own["profit"].sum(), rel=1e-12)
    stocked = np.concatenate([[s.products[0].stock], own["stock_left"].to_numpy()[:-1]]) > 0
    movable = plan.loc[plan["launched"] & ~plan["flash_sale"] & stocked, "week"]
    assert sorted(set(rows["week"])) == sorted(movable) and len(movable) > 0


@pytest.mark.parametrize("scenario", ["apparel_sneaker_drop", "beauty_serum_flash_sale", "home_candle_tight_budget"])
def test_no_one_week_move_improves_the_oracles_plan_in_the_truth(scenario):
    # The oracle searches whole plans on the truth's expected dynamics, so no single week's price or ad
    # share one level off can beat it there (a sell-out, a flash sale and a tight ad budget among these).
    s = load_scenario(scenario)
    oracle = build_policy("oracle", s)
    for lever in ("price", "ads"):
        _, rows = plan_sensitivity(s, oracle, lever=lever, markets=["structural"])
        assert len(rows) > 0 and set(rows["lever"]) == {lever}
        assert rows["profit_delta"].max() <= 1e-9 * rows["plan_profit"].iloc[0]


def test_a_rival_that_answers_by_chance_is_weighed_over_both_outcomes():
    s = apply_overrides(load_scenario("electronics_speaker_rival_answer"), ["products.0.stock=300000"])  # never sold out: the same weeks probed
    rows = {}
    for name, sets in (("chance", ["truth.rival.answer_probability=0.3"]), ("always", []), ("never", ["truth.rival=null"])):
        scenario = apply_overrides(s, sets)
        rows[name] = plan_sensitivity(scenario, build_policy("list_price", scenario), markets=["structural"])[1]
    assert len(rows["chance"]) > 0 and not np.allclose(rows["always"]["profit_delta"], rows["never"]["profit_delta"])
    for column in ("profit_delta", "plan_profit"):
        np.testing.assert_allclose(rows["chance"][column], 0.3 * rows["always"][column] + 0.7 * rows["never"][column], rtol=1e-9, atol=1e-6)
