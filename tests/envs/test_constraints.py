"""Business constraints (a scenario's ``constraints`` block): price floor, ceiling and minimum margin,
at most K price changes, a committed weekly ad spend and a pacing cap. Enforced by the env (masks, the nearest allowed level,
clipped spend), kept by the oracle and every heuristic, the same in the single and batched envs,
refused with precise errors; the oracle meets the closed form where a constraint binds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from launchsim.agents import HEURISTICS, make_heuristic, run_episode
from launchsim.agents.policies.oracle import OraclePlanner, make_oracle
from launchsim.envs import LaunchMarketEnv
from launchsim.errors import ScenarioError
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides
from tests.envs.parity import assert_batch_steps_as_single_envs

FLOOR = "home_cutting_board_price_floor"


def board_profit(ratio: float) -> float:
    """The board's horizon profit at a constant price ratio (the scenario's comment): 12 * 500 * s(x)/s(1) * (40x - 12)."""
    share = lambda x: math.exp(2.2 - 3.6 * x) / (1.0 + math.exp(2.2 - 3.6 * x))  # noqa: E731
    return 12 * 500 * share(ratio) / share(1.0) * (40.0 * ratio - 12.0)


def test_the_oracle_sells_on_the_floor_at_the_closed_form_profit():
    s = load_scenario(FLOOR)
    assert board_profit(0.85) == pytest.approx(198_410.50, abs=0.01)  # the figure in the file's comment
    assert board_profit(0.75) > board_profit(0.85)  # the floor binds: the free optimum lies below it
    for action_type in ("multidiscrete", "box"):
        plan = OraclePlanner(s, action_type=action_type, warm_starts=False, starts=1, kicks=0).plan()
        assert [d.price_ratio for d in plan.decisions] == pytest.approx([0.85] * s.n_steps, abs=1e-12)
        assert plan.expected_profit == pytest.approx(board_profit(0.85), rel=1e-6)


def test_a_binding_margin_puts_the_box_oracle_on_its_bound_and_the_levels_on_the_next_one_up():
    s = apply_overrides(load_scenario("home_cutting_board_closed_form"), ["constraints.min_margin=0.65"])
    bound = 12.0 / (1.0 - 0.65) / 40.0  # (p - 12) / p >= 0.65: p >= 34.29, ratio 0.857
    box = OraclePlanner(s, action_type="box", warm_starts=False, starts=1, kicks=0).plan()
    assert box.expected_profit == pytest.approx(board_profit(bound), rel=1e-6)
    levels = OraclePlanner(s).plan()
    assert {d.price_ratio for d in levels.decisions} == {0.9}
    assert levels.expected_profit == pytest.approx(board_profit(0.9), rel=1e-9)


def test_masks_hide_forbidden_prices_and_a_forbidden_choice_sells_at_the_nearest_allowed_level():
    s = load_scenario(FLOOR)
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    masks = env.action_masks()
    price_mask = masks[2 : 2 + len(s.pricing.levels)]
    assert [bool(m) for m in price_mask] == [level >= 0.85 - 1e-9 for level in s.pricing.levels]
    _, _, _, _, info = env.step(np.array([1, 0, 0, 0, 0]))  # level 0.70, below the floor of 34.00
    assert info["price"] == pytest.approx(34.0)
    assert any(reason.startswith("price: outside the constraints") for reason in info["ignored"])
    _, _, _, _, info = env.step(np.array([1, s.pricing.levels.index(1.0), 0, 0, 0]))
    assert info["price"] == pytest.approx(40.0) and info["ignored"] == []


def test_box_prices_stay_inside_the_bounds():
    s = apply_overrides(load_scenario(FLOOR), ["constraints.price_ceiling=44"])
    env = LaunchMarketEnv(s, action_type="box", outcomes="expected")
    env.reset(seed=0)
    for price_unit in (-1.0, 0.0, 1.0):
        info = env.step(np.array([1.0, price_unit, 0.0, 0.0, 0.0, 0.0], dtype=np.float32))[4]
        assert 34.0 - 1e-9 <= info["price"] <= 44.0 + 1e-9
    assert info["price"] == pytest.approx(44.0)


@pytest.mark.parametrize("name", sorted(set(HEURISTICS) | {"oracle"}))
def test_every_heuristic_and_the_oracle_keep_a_floor_ceiling_and_margin(name):
    s = apply_overrides(load_scenario("beauty_serum_flash_sale"), ["constraints.price_floor=30", "constraints.price_ceiling=40"])
    policy = make_oracle(s) if name == "oracle" else make_heuristic(name, s)
    frame = run_episode(LaunchMarketEnv(s, outcomes="expected"), policy, seed=0)
    on_sale = frame[frame["launched"]]
    assert ((on_sale["price"] >= 30 - 1e-9) & (on_sale["price"] <= 40 + 1e-9)).all()
    flash = s.pricing.flash_sale
    if (1 - flash.discount) * s.products[0].reference_price < 30:
        assert not frame["flash_sale"].any()  # its flash price is below the floor: never offered


def test_ad_spend_keeps_the_committed_minimum_and_the_pacing_cap():
    s = apply_overrides(load_scenario("food_coffee_bundle"), ["constraints.min_weekly_ad_spend=500", "constraints.max_weekly_ad_spend=2000"])
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    zero, top = 0, len(s.ads.spend_levels) - 1
    spends, flagged = [], []
    for t in range(s.n_steps):
        info = env.step(np.array([1, 0, 0, zero if t % 2 else top, 0]))[4]
        spends.append(info["ad_spend"])
        flagged.append(any(r.startswith("ad spend") for r in info["ignored"]))
    budget_weeks = [x for x in spends if x > 0]
    assert all(500 - 1e-9 <= x <= 2000 + 1e-9 for x in budget_weeks[:-1])  # the last week may spend what is left
    assert any(flagged) and sum(spends) <= s.ads.budget + 1e-6


def test_the_batched_env_steps_constrained_markets_as_the_single_env():
    s = apply_overrides(
        load_scenario("beauty_serum_flash_sale"),
        ["constraints.price_floor=30", "constraints.min_margin=0.5", "constraints.min_weekly_ad_spend=300", "constraints.max_weekly_ad_spend=1500"],
    )  # fmt: skip
    assert_batch_steps_as_single_envs(s, seed=3, actions_seed=0, outcomes="expected")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (["constraints.price_floor=50", "constraints.price_ceiling=45"], "constraints.price_floor", "expected at most price_ceiling"),
        (["constraints.price_floor=60"], "constraints", "no price level"),
        (["constraints.min_margin=0.9"], "constraints", "no price level"),
        (["constraints.min_weekly_ad_spend=900", "constraints.max_weekly_ad_spend=100"], "constraints.min_weekly_ad_spend", "expected at most"),
        (["constraints.min_margin=1.5"], "constraints.min_margin", ""),
    ],
)
def test_contradicting_constraints_are_refused_naming_the_field(overrides, field, message):
    with pytest.raises(ScenarioError) as err:
        apply_overrides(load_scenario("home_cutting_board_closed_form"), overrides)
    assert any(field in line and message in line for line in err.value.problems), err.value.problems


def test_a_launch_window_closes_and_the_product_stays_out():
    s = apply_overrides(load_scenario("food_coffee_bundle"), ["launch.latest_week=2"])
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    for week in range(4):
        assert bool(env.action_masks()[1]) == (week <= 2)  # "launch" offered inside the window only
        info = env.step(np.array([0, 0, 0, 0, 0]))[4]
    info = env.step(np.array([1, 0, 0, 0, 0]))[4]
    assert not info["launched"] and "launch: after launch.latest_week (the product stays out)" in info["ignored"]
    plan = OraclePlanner(s).plan()
    assert plan.launch_step <= 2 or plan.launch_step == s.n_steps
    with pytest.raises(ScenarioError, match=r"launch\.deadline_week: found 5, expected ≤ launch\.latest_week \(2\)"):
        apply_overrides(s, ["launch.deadline_week=5"])
    with pytest.raises(ScenarioError, match=r"launch\.latest_week: found 1, expected ≥ launch\.earliest_week \(2\)"):
        apply_overrides(s, ["launch.earliest_week=2", "launch.latest_week=1"])


def test_spend_never_runs_ahead_of_the_budget_released_by_period():
    s = apply_overrides(
        load_scenario("food_coffee_bundle"),
        ["ads.budget=30000", "constraints.ad_budget_periods=[{from_week: 0, amount: 5000}, {from_week: 6, amount: 25000}]"],
    )
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    top = len(s.ads.spend_levels) - 1
    share = s.ads.spend_levels[top]
    spent, clipped = [], []
    for _ in range(7):
        info = env.step(np.array([1, 0, 0, top, 0]))[4]
        spent.append(info["ad_spend"])
        clipped.append(any(r.startswith("ad spend") for r in info["ignored"]))
    assert share * 30000 > 5000 and spent[0] == pytest.approx(5000) and clipped[0]  # the first period's money at once
    assert spent[1:6] == [0.0] * 5 and all(clipped[1:6])  # nothing more until week 6
    assert spent[6] == pytest.approx(share * 25000) and not clipped[6]  # then a share of what is left, all released
    assert_batch_steps_as_single_envs(s, seed=1, actions_seed=4)


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        ("[{from_week: 2, amount: 80000}]", "strictly increasing weeks from 0"),
        ("[{from_week: 0, amount: 40000}, {from_week: 0, amount: 40000}]", "strictly increasing weeks from 0"),
        ("[{from_week: 0, amount: 1000}]", "expected ads.budget"),
    ],
)
def test_budget_periods_that_do_not_add_up_are_refused(periods, message):
    with pytest.raises(ScenarioError) as err:
        apply_overrides(load_scenario("food_coffee_bundle"), ["ads.budget=80000", f"constraints.ad_budget_periods={periods}"])
    assert any("constraints.ad_budget_periods" in line and message in line for line in err.value.problems), err.value.problems


def regular_price_changes(frame) -> int:
    """Changes of the regular (non-flash) price over an episode's weeks on sale."""
    regular = frame.loc[frame["launched"] & ~frame["flash_sale"], "price"].to_numpy()
    return int((np.abs(np.diff(regular)) > 1e-9).sum())


def test_at_most_k_price_changes_after_the_first_regular_price_flash_sales_aside():
    s = apply_overrides(load_scenario("beauty_serum_flash_sale"), ["constraints.max_price_changes=1"])
    ref, flash = s.products[0].reference_price, len(s.pricing.levels)  # the flash sale's index
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    prices, ignored = [], []
    for level in (1, 2, 0, 2, 2, flash, 2, 3):  # set 1.0, change to 1.15, 0.85 refused, ..., a flash sale in week 5
        info = env.step(np.array([1, level, 0, 0, 0]))[4]
        prices.append(info["price"])
        ignored.append([r for r in info["ignored"] if "no change left" in r])
    assert prices == pytest.approx([ref, 1.15 * ref, 1.15 * ref, 1.15 * ref, 1.15 * ref, 0.65 * ref, 1.15 * ref, 1.15 * ref])
    assert [bool(r) for r in ignored] == [False, False, True, False, False, False, False, True]
    price_mask = env.action_masks()[2 : 2 + flash + 1]
    assert price_mask.tolist() == [False, False, True, False, True]  # the price in force, and the flash sale in its window


def test_a_box_price_within_the_tolerance_keeps_the_price_in_force():
    s = apply_overrides(load_scenario("beauty_serum_flash_sale"), ["constraints.max_price_changes=0"])
    env = LaunchMarketEnv(s, action_type="box", outcomes="expected")
    env.reset(seed=0)
    first = env.step(np.array([1.0, 0.0, -1.0, 0.0, 0.0, 0.0], dtype=np.float32))[4]
    near = env.step(np.array([1.0, 0.002, -1.0, 0.0, 0.0, 0.0], dtype=np.float32))[4]  # 0.0014 of the reference price away
    far = env.step(np.array([1.0, 1.0, -1.0, 0.0, 0.0, 0.0], dtype=np.float32))[4]
    assert near["price"] == far["price"] == first["price"]
    assert near["ignored"] == [] and any("no change left" in r for r in far["ignored"])


def test_the_oracle_plans_within_the_limit_and_gains_from_each_change_allowed():
    base = load_scenario("beauty_serum_flash_sale")
    profits = []
    for k in (0, 1, 2):
        plan = OraclePlanner(apply_overrides(base, [f"constraints.max_price_changes={k}"])).plan()
        regular = [d.price_ratio for d in plan.decisions[plan.launch_step :] if not d.flash]
        assert sum(a != b for a, b in zip(regular, regular[1:])) <= k
        profits.append(plan.expected_profit)
    assert profits[0] < profits[1] < profits[2] <= OraclePlanner(base).plan().expected_profit + 1e-6


@pytest.mark.parametrize("name", sorted(set(HEURISTICS) | {"oracle"}))
def test_every_heuristic_and_the_oracle_keep_a_limit_on_price_changes(name):
    s = apply_overrides(load_scenario("beauty_serum_flash_sale"), ["constraints.max_price_changes=1"])
    policy = make_oracle(s) if name == "oracle" else make_heuristic(name, s)
    assert regular_price_changes(run_episode(LaunchMarketEnv(s, outcomes="expected"), policy, seed=0)) <= 1


@pytest.mark.parametrize("outcomes", ["expected", "sampled"])
def test_the_batched_env_counts_price_changes_as_the_single_env(outcomes):
    s = apply_overrides(load_scenario("beauty_serum_flash_sale"), ["constraints.max_price_changes=2"])
    assert_batch_steps_as_single_envs(s, seed=5, actions_seed=2, outcomes=outcomes)


def test_a_negative_limit_on_price_changes_is_refused_naming_the_field():
    with pytest.raises(ScenarioError) as err:
        apply_overrides(load_scenario("beauty_serum_flash_sale"), ["constraints.max_price_changes=-1"])
    assert any("constraints.max_price_changes" in line for line in err.value.problems), err.value.problems
