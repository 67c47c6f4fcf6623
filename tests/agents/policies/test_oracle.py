"""The oracle planner: closed-form optimum, never below the heuristics, valid actions, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import lambertw

from launchsim.agents import HEURISTICS, make_heuristic, run_episode
from launchsim.agents.policies.oracle import OraclePlanner, make_oracle
from launchsim.envs import LaunchMarketEnv
from launchsim.scenarios import load_scenario


@pytest.fixture(scope="module")
def closed_form():
    return load_scenario("home_cutting_board_closed_form")


def closed_form_optimum(s) -> float:
    """x* = c/ref + (1 + W(e^(a - b c/ref - 1))) / b, the profit-maximising price ratio (docs/MARKET.md)."""
    truth = s.truth.products[s.products[0].name]
    a, b = truth.price_alpha, truth.price_beta
    c = s.products[0].unit_cost / s.products[0].reference_price
    return c + (1.0 + float(np.real(lambertw(math.exp(a - b * c - 1.0))))) / b


def closed_form_profit(s, ratio: float) -> float:
    """Horizon profit at a constant price ratio: M * s(x)/s_ref * (x*ref - c) per week."""
    truth = s.truth.products[s.products[0].name]
    a, b = truth.price_alpha, truth.price_beta
    share = lambda x: math.exp(a - b * x) / (1.0 + math.exp(a - b * x))  # noqa: E731
    product = s.products[0]
    weekly = truth.market_size * share(ratio) / share(1.0) * (ratio * product.reference_price - product.unit_cost)
    return s.n_steps * weekly


def test_closed_form_optimum_of_the_scenario(closed_form):
    # W(e^0.12) = 0.61163, so x* = 0.3 + 1.61163 / 3.6 = 0.74767 and p* = 29.907 (as the file says)
    assert closed_form_optimum(closed_form) == pytest.approx(0.74767, abs=1e-5)
    assert closed_form_optimum(closed_form) * closed_form.products[0].reference_price == pytest.approx(29.907, abs=1e-3)


def test_oracle_picks_the_level_nearest_the_closed_form_price(closed_form):
    plan = OraclePlanner(closed_form).plan()
    levels = closed_form.pricing.levels
    nearest = min(levels, key=lambda x: abs(x - closed_form_optimum(closed_form)))
    assert nearest == pytest.approx(0.75)
    assert [d.price_ratio for d in plan.decisions] == pytest.approx([nearest] * closed_form.n_steps)
    assert plan.expected_profit == pytest.approx(closed_form_profit(closed_form, nearest), rel=1e-9)
    # and no other level does better, by the closed form itself
    assert all(closed_form_profit(closed_form, x) <= plan.expected_profit + 1e-6 for x in levels)


def test_oracle_in_the_box_space_finds_the_continuous_optimum(closed_form):
    plan = OraclePlanner(closed_form, action_type="box", warm_starts=False, starts=1, kicks=0).plan()
    x_star = closed_form_optimum(closed_form)
    for d in plan.decisions:
        assert d.price_ratio == pytest.approx(x_star, rel=0.005)
    assert plan.expected_profit == pytest.approx(closed_form_profit(closed_form, x_star), rel=1e-6)


@pytest.mark.parametrize("name", ["home_cookware_line", "apparel_sneaker_drop", "beauty_serum_flash_sale"])
def test_oracle_beats_every_heuristic_in_the_expected_market(name):
    s = load_scenario(name)
    env = LaunchMarketEnv(s, outcomes="expected")
    oracle = run_episode(env, make_oracle(s), seed=0)["profit"].sum()
    best = max(run_episode(env, make_heuristic(h, s), seed=0)["profit"].sum() for h in HEURISTICS)
    assert oracle >= best
    assert oracle >= 1.05 * best  # a real planner, not a copy of the best rule


def test_search_alone_beats_the_heuristics_without_their_warm_starts():
    s = load_scenario("apparel_winter_coat_holiday")
    plan = OraclePlanner(s, warm_starts=False, kicks=0).plan()
    env = LaunchMarketEnv(s, outcomes="expected")
    best = max(run_episode(env, make_heuristic(h, s), seed=0)["profit"].sum() for h in HEURISTICS)
    assert plan.expected_profit > 1.2 * best


def test_policy_plays_the_plan_with_valid_actions_and_its_value():
    s = load_scenario("beauty_gift_set_holiday_bundle")
    policy = make_oracle(s, kicks=0)
    weekly = run_episode(LaunchMarketEnv(s, outcomes="expected"), policy, seed=0)
    assert (weekly["ignored"] == "").all(), weekly["ignored"].unique()
    assert weekly["profit"].sum() == pytest.approx(policy.plan.expected_profit, rel=1e-9)
    assert len(policy.plan.decisions) == s.n_steps


def test_oracle_respects_launch_rules_and_flash_sale_limits():
    s = load_scenario("food_bbq_sauce_summer")  # earliest launch week 2
    weekly = run_episode(LaunchMarketEnv(s, outcomes="expected"), make_oracle(s, kicks=0), seed=0)
    assert not weekly["launched"].iloc[:2].any() and (weekly["ignored"] == "").all()
    s = load_scenario("beauty_serum_flash_sale")
    weekly = run_episode(LaunchMarketEnv(s), make_oracle(s, kicks=0), seed=3)
    assert weekly["flash_sale"].sum() <= s.pricing.flash_sale.max_uses and (weekly["ignored"] == "").all()


def test_oracle_is_deterministic_and_predicts_batches():
    s = load_scenario("home_cookware_line")
    np.random.seed(5)  # global NumPy state must not matter
    assert OraclePlanner(s, product=1, kicks=3).plan() == OraclePlanner(s, product="cast_iron_skillet", kicks=3).plan()
    a, b = make_oracle(s, product=1), make_oracle(s, product="cast_iron_skillet")
    assert a.plan is b.plan  # planned once per process
    env = LaunchMarketEnv(s, product=1)
    obs = np.stack([env.reset(seed=i)[0] for i in range(3)])
    actions, state = a.predict(obs)
    assert actions.shape == (3, 5) and state is None


def test_the_oracle_stays_out_when_no_launch_pays_and_no_deadline_forces_one(closed_form):
    from launchsim.agents.evaluation.evaluate import evaluate
    from launchsim.agents.policies.oracle import ExpectedMarket
    from launchsim.envs.actions import Decision
    from launchsim.scenarios.overrides import apply_overrides

    ruinous = apply_overrides(closed_form, ["launch.deadline_week=null", "launch.launch_cost=1000000000"])  # no launch pays
    plan = OraclePlanner(ruinous, kicks=2).plan()
    stay_out = ExpectedMarket(ruinous).profit([Decision(False, 1.0, False, 0, 0.0, 0)] * ruinous.n_steps)
    assert plan.launch_step == ruinous.n_steps and not any(d.launch for d in plan.decisions)
    assert plan.expected_profit == pytest.approx(stay_out) and stay_out > -1e9
    forced = apply_overrides(ruinous, ["launch.deadline_week=4"])  # a deadline still forces the launch
    assert OraclePlanner(forced, kicks=0).plan().launch_step <= 4
    result = evaluate(ruinous, "launch_now", episodes=2, learned=False, heuristics=False)
    assert result["oracle"]["launch_week"] is None  # never on sale
    reference = result["oracle"]["profit_mean"]
    assert result["regret_to_oracle"] == pytest.approx(reference - result["truth"]["profit_mean"]) and result["regret_to_oracle"] > 9e8
    assert result["ratio_to_oracle"] is None if reference <= 0 else result["ratio_to_oracle"] < 0


def test_the_shipped_stay_out_case_never_launches_and_its_best_launch_loses_the_closed_form_amount():
    from launchsim.agents.policies.oracle import ExpectedMarket
    from launchsim.envs.actions import Decision

    s = load_scenario("home_cutting_board_stay_out")
    plan = OraclePlanner(s).plan()
    assert plan.launch_step == s.n_steps and plan.expected_profit == pytest.approx(0.0, abs=1e-6)
    best_launch = closed_form_profit(s, 0.75) - s.launch.launch_cost
    assert best_launch == pytest.approx(-43_877.29, abs=0.01)  # the figure in the file's comment
    launched = ExpectedMarket(s).profit([Decision(True, 0.75, False, 0, 0.0, 0)] * s.n_steps)
    assert launched == pytest.approx(best_launch, rel=1e-9)
