"""What-if replays: a closed-form price effect, exact zeros for no-ops, A/B pairs, outputs, recorded plans."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from launchsim.agents.policies.heuristics import make_heuristic
from launchsim.agents.policies.recorded_plan import RecordedPlan
from launchsim.agents.evaluation.replay import METRICS, replay, write_replay
from launchsim.agents.evaluation.statistics import paired_interval
from launchsim.agents.rollout import run_episode
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.errors import PolicyError
from launchsim.models.structural_market import StructuralMarket
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides


def closed_form_profit(s, price_ratio: float) -> float:
    """Expected episode profit of one fixed price in the steady logit market (docs/MARKET.md):
    weekly M * s(x)/s(1) units at margin x*ref - c, every step of the horizon."""
    product = s.products[0]
    truth = s.truth.products[product.name]
    share = lambda x: 1.0 / (1.0 + math.exp(-(truth.price_alpha - truth.price_beta * x)))
    weekly_units = truth.market_size * s.step_weeks * share(price_ratio) / share(1.0)
    return s.n_steps * weekly_units * (price_ratio * product.reference_price - product.unit_cost)


@pytest.fixture(scope="module")
def board():
    return load_scenario("home_cutting_board_closed_form")


def test_closed_form_price_change_sign_size_and_ci(board):
    # list_price plays level 1.0; scaling every level by 1.3 prices 30% higher with the same policy.
    expected = closed_form_profit(board, 1.3) - closed_form_profit(board, 1.0)
    result = replay(board, "list_price", ["pricing.levels=*1.3"], episodes=20, seed=0, markets=["structural"])
    profit = result.summary["markets"]["structural"]["profit"]
    lo, hi = profit["delta_ci95"]
    assert expected < 0 and hi < 0  # the right sign, with an interval that excludes zero
    assert lo <= expected <= hi  # and the right size
    assert profit["delta_mean"] == pytest.approx(expected, rel=0.02)
    assert result.summary["markets"]["structural"]["mean_price"]["delta_mean"] == pytest.approx(
        0.3 * board.products[0].reference_price
    )


def test_closed_form_price_change_without_noise_is_exact(board):
    expected = closed_form_profit(board, 0.8) - closed_form_profit(board, 1.0)
    result = replay(
        board, "list_price", ["pricing.levels=*0.8"], episodes=2, markets=["structural"], outcomes="expected"
    )
    profit = result.summary["markets"]["structural"]["profit"]
    assert profit["delta_mean"] == pytest.approx(expected, rel=1e-9)
    assert profit["baseline_mean"] == pytest.approx(closed_form_profit(board, 1.0), rel=1e-9)


def test_common_random_numbers_shrink_the_interval(board):
    paired = replay(board, "list_price", ["pricing.levels=*1.3"], episodes=10, markets=["structural"])
    sd_paired = paired.summary["markets"]["structural"]["profit"]["delta_sd"]
    per_episode = paired.episodes[paired.episodes["arm"] == "baseline"]["profit"].to_numpy()
    assert sd_paired < 0.2 * np.std(per_episode, ddof=1) * math.sqrt(2)  # far below independent-seed noise


@pytest.mark.parametrize("policy", ["bundle_first", "random"])
@pytest.mark.parametrize("override", ["ads.budget=*1", "horizon_weeks=+0", "products.0.stock=*1.0"])
def test_no_op_override_gives_exactly_zero(override, policy):
    s = load_scenario("food_coffee_bundle")
    result = replay(s, policy, [override], episodes=3, markets=["structural"])
    for metric in METRICS:
        m = result.summary["markets"]["structural"][metric]
        assert m["delta_mean"] == 0.0 and m["delta_ci95"] == [0.0, 0.0], metric
    deltas = result.weekly[[c for c in result.weekly.columns if c.endswith("_delta")]]
    assert (deltas.to_numpy() == 0.0).all()


def test_ab_form_same_scenario_two_policies():
    s = load_scenario("food_coffee_bundle")
    same = replay(s, "list_price", versus="list_price", episodes=2, markets=["structural"])
    assert same.summary["markets"]["structural"]["profit"]["delta_mean"] == 0.0
    ab = replay(s, "list_price", versus="bundle_first", episodes=4, markets=["structural"])
    summary = ab.summary
    assert summary["arms"]["override"]["policy"]["spec"] == "bundle_first" and summary["versus"] == "bundle_first"
    assert summary["arms"]["baseline"]["scenario_hash"] == summary["arms"]["override"]["scenario_hash"]
    assert summary["markets"]["structural"]["profit"]["delta_mean"] != 0.0
    assert (ab.weekly["bundle_partner_override"] == s.catalogue[0].name).all()


def test_learned_market_arm_uses_the_given_response_model():
    # Any ResponseModel stands in for the predictor here; a truth override cannot reach the learned market.
    s = load_scenario("food_coffee_bundle")
    name = s.products[0].name
    result = replay(
        s, "list_price", [f"truth.products.{name}.market_size=*2"], episodes=2, predictor=StructuralMarket(s)
    )
    markets = result.summary["markets"]
    assert markets["structural"]["units_sold"]["delta_mean"] > 0
    assert markets["learned"]["units_sold"]["delta_mean"] == 0.0


def test_action_space_change_needs_a_rebuilt_policy():
    s = load_scenario("food_coffee_bundle")
    with pytest.raises(PolicyError, match="--rebuild-policy"):
        replay(s, "list_price", ["pricing.levels=[0.9, 1.0]"], episodes=1, markets=["structural"])
    result = replay(
        s, "list_price", ["pricing.levels=[0.9, 1.1]"], episodes=1, markets=["structural"], rebuild_policy=True
    )
    assert "rebuilt" in result.summary["policy_in_override_arm"]


def test_nothing_to_compare_is_an_error():
    with pytest.raises(PolicyError, match="needs something to compare"):
        replay(load_scenario("food_coffee_bundle"), "list_price", episodes=1, markets=["structural"])


def test_outputs(tmp_path):
    s = load_scenario("apparel_winter_coat_holiday")
    result = replay(s, "holiday_launch", ["competitor.events.0.week=-3"], episodes=3, markets=["structural"])
    paths = write_replay(result, tmp_path)
    weekly = pd.read_parquet(paths["weekly_parquet"])
    pd.testing.assert_frame_equal(
        pd.read_csv(paths["weekly_csv"], keep_default_na=False, na_values=[""]).iloc[:, :4],
        weekly.iloc[:, :4],
        check_dtype=False,
    )
    assert len(weekly) == 3 * s.n_steps
    for metric in ("profit", "units_sold", "price", "ad_spend", "stock_left", "cumulative_profit"):
        assert {f"{metric}_baseline", f"{metric}_override", f"{metric}_delta"} <= set(weekly.columns)
    summary = json.loads(paths["summary"].read_text())
    assert summary["overrides"] == ["competitor.events.0.week=-3"] and set(summary["markets"]["structural"]) == set(
        METRICS
    )
    assert paths["plot"].stat().st_size > 10_000


def test_paired_interval():
    assert paired_interval([1.0, 1.0, 1.0]) == {"mean": 1.0, "ci95": [1.0, 1.0], "sd": 0.0, "n": 3}
    r = paired_interval([1.0, 3.0, np.nan])  # t(1) quantile 12.706; sd sqrt(2); se 1
    assert r["n"] == 2 and r["ci95"] == pytest.approx([2.0 - 12.7062, 2.0 + 12.7062], abs=1e-3)
    assert paired_interval([5.0])["ci95"] is None and paired_interval([])["mean"] is None


# ---------------------------------------------------------------- recorded plans (--actions)


def test_a_recorded_episode_plays_back_identically(tmp_path):
    s = load_scenario("food_coffee_bundle")
    env = LaunchMarketEnv(s)
    weekly = run_episode(env, make_heuristic("bundle_first", s), seed=4)
    weekly.to_csv(tmp_path / "plan.csv", index=False)
    plan = RecordedPlan.load(tmp_path / "plan.csv", s)
    again = run_episode(env, plan, seed=4)
    pd.testing.assert_frame_equal(again, weekly)


def test_plan_with_few_columns_uses_the_defaults(tmp_path):
    s = load_scenario("home_cutting_board_closed_form")
    rows = ["week,price"] + [f"{w},{44.0 if w < 6 else 36.0}" for w in range(s.n_steps)]
    (tmp_path / "plan.csv").write_text("\n".join(rows))
    weekly = run_episode(LaunchMarketEnv(s, outcomes="expected"), RecordedPlan.load(tmp_path / "plan.csv", s), seed=0)
    assert list(weekly["price"]) == [44.0] * 6 + [36.0] * 6 and weekly["launched"].all()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns="week"), r"missing column 'week'"),
        (lambda f: f.iloc[:-1], r"column 'week': found weeks .* \(missing \[23\]\)"),
        (
            lambda f: f.assign(bundle_partner="ceramic_driper"),
            r"row 2, column 'bundle_partner': found 'ceramic_driper'; did you mean 'ceramic_dripper'\?",
        ),
        (lambda f: f.assign(bundle_discount=0.33), r"row 2, column 'bundle_discount': found '0.33'"),
        (lambda f: f.assign(price="cheap"), r"row 2, column 'price': found 'cheap', expected a number"),
        (lambda f: f.assign(launched="maybe"), r"row 2, column 'launched': found 'maybe', expected yes/no"),
        (lambda f: f.assign(creative="loud"), r"column 'creative': found 'loud'"),
    ],
)
def test_bad_plans_name_row_and_column(tmp_path, edit, message):
    s = load_scenario("food_coffee_bundle")
    weekly = run_episode(LaunchMarketEnv(s), make_heuristic("bundle_first", s), seed=0)
    edit(weekly).to_csv(tmp_path / "plan.csv", index=False)
    with pytest.raises(PolicyError, match=message):
        RecordedPlan.load(tmp_path / "plan.csv", s)


def test_missing_plan_file(tmp_path):
    with pytest.raises(PolicyError, match="actions file not found"):
        RecordedPlan.load(tmp_path / "nope.csv", load_scenario("food_coffee_bundle"))


def test_replay_of_a_recorded_plan(tmp_path):
    s = load_scenario("food_coffee_bundle")
    run_episode(LaunchMarketEnv(s), make_heuristic("bundle_first", s), seed=0).to_csv(
        tmp_path / "plan.csv", index=False
    )
    same = replay(s, actions=tmp_path / "plan.csv", versus="bundle_first", episodes=2, markets=["structural"])
    assert same.summary["markets"]["structural"]["profit"]["delta_mean"] == 0.0  # the plan is the heuristic, replayed
    assert same.summary["arms"]["baseline"]["policy"]["spec"] == f"actions:{tmp_path / 'plan.csv'}"
    # The same shares of a doubled budget spend twice as much, while there is stock to advertise
    # (ads pause once sold out, env v2): with ten times the stock neither arm sells out.
    deep = apply_overrides(s, ["products.0.stock=*10"])
    doubled = replay(deep, actions=tmp_path / "plan.csv", overrides=["ads.budget=*2"], episodes=2, markets=["structural"])
    ad = doubled.summary["markets"]["structural"]["ad_spend"]
    assert ad["override_mean"] == pytest.approx(2 * ad["baseline_mean"])
