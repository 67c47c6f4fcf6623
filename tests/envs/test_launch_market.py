"""LaunchMarketEnv: conformance with both env checkers on every scenario, determinism, masks,
launch rules, and profit accounting."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import launchsim.envs
from launchsim.envs import ENV_IDS, LaunchMarketEnv
from launchsim.envs.spaces import OBSERVATION_NAMES
from launchsim.envs.actions import Decision
from launchsim.errors import ScenarioError
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides

ACTION_TYPES = ["multidiscrete", "box"]


@pytest.mark.parametrize("action_type", ACTION_TYPES)
def test_env_checkers_pass(scenario_path, action_type):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checkers must not even warn
        gym_check_env(LaunchMarketEnv(scenario_path, action_type=action_type), skip_render_check=True)
        sb3_check_env(LaunchMarketEnv(scenario_path, action_type=action_type), warn=True)


@pytest.mark.parametrize("action_type", ACTION_TYPES)
def test_registered_ids(action_type):
    env = gym.make(ENV_IDS[action_type], scenario="food_coffee_bundle")
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    obs, reward, *_ = env.step(env.action_space.sample())
    assert np.isfinite(reward)


def _trajectory(scenario, seed, action_type="multidiscrete"):
    env = LaunchMarketEnv(scenario, action_type=action_type)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out, done = [obs], False
    while not done:
        obs, reward, done, _, info = env.step(env.action_space.sample())
        out.extend([obs, np.array([reward, info["units_sold"], info["clicks"]])])
    return np.concatenate(out)


@pytest.mark.parametrize("action_type", ACTION_TYPES)
def test_same_seed_same_trajectory_despite_global_rng(scenario_path, action_type):
    first = _trajectory(scenario_path, seed=7, action_type=action_type)
    np.random.seed(12345)
    np.random.random(1000)  # disturb the global NumPy state between the runs
    second = _trajectory(scenario_path, seed=7, action_type=action_type)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, _trajectory(scenario_path, seed=8, action_type=action_type))


def test_accounting_and_stock(scenario_path):
    env = LaunchMarketEnv(scenario_path)
    env.action_space.seed(3)
    env.reset(seed=3)
    stock, done = env.product.stock, False
    while not done:
        _, reward, done, _, i = env.step(env.action_space.sample())
        parts = (
            i["revenue"] + i["partner_revenue"] - i["cogs"] - i["partner_cogs"] - i["cannibalised_margin"]
            - i["ad_spend"] - i["holding_cost"] - i["launch_cost"] + i["salvage"]
            + i["predecessor_revenue"] + i["predecessor_salvage"]
        )  # fmt: skip
        assert reward == pytest.approx(parts)
        assert 0 <= i["units_sold"] <= stock and i["units_sold"] <= i["demand"]
        assert 0 <= i["bundled_units"] <= i["units_sold"]
        stock -= i["units_sold"]
        assert i["stock_left"] == stock >= 0
        assert i["budget_left"] >= -1e-9
        assert i["launched"] or i["units_sold"] == 0


def test_masked_actions_are_never_ignored(scenario_path):
    env = LaunchMarketEnv(scenario_path)
    rng = np.random.default_rng(0)
    nvec = env.action_space.nvec
    for episode in range(3):
        env.reset(seed=episode)
        done = False
        while not done:
            mask = env.action_masks()
            assert mask.shape == (nvec.sum(),)
            action = [rng.choice(np.flatnonzero(m)) for m in np.split(mask, np.cumsum(nvec)[:-1])]
            _, _, done, _, info = env.step(np.array(action))
            assert not [x for x in info["ignored"] if "not launched" not in x], info["ignored"]


def test_deadline_forces_launch():
    env = LaunchMarketEnv("electronics_smartwatch_deadline")
    env.reset(seed=0)
    wait = env.layout.encode(Decision(False, 1.0, False, 0, 0.0, 0))
    for week in range(7):
        assert env.action_masks()[0] == (week < 6)  # "wait" is masked at the deadline
        _, _, _, _, info = env.step(wait)
    assert info["launched"] and info["forced_launch"] and info["week"] == 6
    assert info["launch_cost"] == 20000


def test_launch_before_earliest_week_is_ignored():
    env = LaunchMarketEnv("food_bbq_sauce_summer")
    env.reset(seed=0)
    assert env.action_masks()[1] == False  # noqa: E712  (launch masked in week 0)
    _, _, _, _, info = env.step(env.layout.encode(Decision(True, 1.0, False, 0, 0.0, 0)))
    assert not info["launched"] and "launch: before launch.earliest_week" in info["ignored"]


def test_bundle_with_unavailable_partner_is_ignored():
    env = LaunchMarketEnv("beauty_gift_set_holiday_bundle")
    env.reset(seed=0)
    cream = env.layout.bundle_options.index(next(o for o in env.layout.bundle_options if o.item == 0)) + 1
    _, _, _, _, info = env.step(env.layout.encode(Decision(True, 1.0, False, cream, 0.1, 0)))
    assert info["bundle_partner"] == "" and "bundle: partner not available yet" in info["ignored"]
    for _ in range(4):
        _, _, _, _, info = env.step(env.layout.encode(Decision(True, 1.0, False, cream, 0.1, 0)))
    assert info["bundle_partner"] == "travel_hand_cream" and info["bundled_units"] > 0


def test_flash_sale_rules():
    env = LaunchMarketEnv("beauty_serum_flash_sale")
    env.reset(seed=0)
    flash = env.layout.encode(Decision(True, 1.0, True, 0, 0.0, 0))
    uses = 0
    for week in range(env.timeline.n_steps):
        _, _, _, _, info = env.step(flash)
        uses += info["flash_sale"]
        if info["flash_sale"]:
            assert 5 <= week <= 9 and info["price"] == pytest.approx(34.0 * 0.65)
    assert uses == 2  # max_uses


def test_ads_before_launch_build_adstock_but_sell_nothing():
    env = LaunchMarketEnv("apparel_winter_coat_holiday")
    obs, _ = env.reset(seed=0)
    obs, reward, _, _, info = env.step(env.layout.encode(Decision(False, 1.0, False, 0, 0.35, 0)))
    assert info["units_sold"] == 0 and info["clicks"] > 0 and reward == pytest.approx(-info["ad_spend"] - info["holding_cost"])
    assert obs[launchsim.envs.OBSERVATION_NAMES.index("adstock")] > 0


def test_ads_pause_once_sold_out():
    # v2: a product with nothing left to sell spends no ad budget, whatever share the policy picks.
    scenario = apply_overrides(load_scenario("apparel_sneaker_drop"), ["products.0.stock=40"])
    env = LaunchMarketEnv(scenario)
    env.reset(seed=0)
    full_ads = env.layout.encode(Decision(True, 1.0, False, 0, max(env.layout.spend_levels), 0))
    budget, stock, paused = scenario.ads.budget, 40.0, 0
    for _ in range(env.timeline.n_steps):
        _, _, _, _, info = env.step(full_ads)
        assert info["ads_paused"] == (stock == 0) and not info["ignored"]  # paused, not an invalid choice
        if stock == 0:
            paused += 1
            assert info["ad_spend"] == 0 and info["budget_left"] == budget and info["units_sold"] == 0
        else:
            assert info["ad_spend"] > 0
        budget, stock = info["budget_left"], info["stock_left"]
    assert paused >= 3  # the 40 units sell out early in the season


def test_demand_spread_scales_each_episodes_expected_demand():
    # Each episode's expected demand is the market's times one multiplier, exp(N(0, spread^2)) (the first
    # step shows it; later steps also differ through adoption); the outcome uniforms are unchanged.
    plain = LaunchMarketEnv("food_coffee_bundle")
    spread = LaunchMarketEnv("food_coffee_bundle", demand_spread=0.4)
    act = plain.layout.encode(Decision(True, 1.0, False, 0, 0.1, 0))
    multipliers = []
    for episode in range(40):
        seed = 5 if episode == 0 else None
        plain.reset(seed=seed), spread.reset(seed=seed)
        np.testing.assert_array_equal(plain._noise, spread._noise)
        multipliers.append(spread.step(act)[4]["expected_demand"] / plain.step(act)[4]["expected_demand"])
    logs = np.log(multipliers)
    assert len(set(multipliers)) == 40 and abs(logs.mean()) < 0.15 and 0.3 < logs.std() < 0.5
    again = LaunchMarketEnv("food_coffee_bundle", demand_spread=0.4)  # a fresh env, the same seed: the same multiplier
    again.reset(seed=5), plain.reset(seed=5)
    assert again.step(act)[4]["expected_demand"] / plain.step(act)[4]["expected_demand"] == pytest.approx(multipliers[0])
    with pytest.raises(ValueError, match="demand_spread must be a finite number >= 0"):
        LaunchMarketEnv("food_coffee_bundle", demand_spread=-0.1)


def _fixed_plan(scenario, model, price_ratio: float, weeks: int) -> tuple[list, LaunchMarketEnv]:
    """Launch at once at one price, no bundle or ads, on expected outcomes: the steps and the env after them."""
    env = LaunchMarketEnv(scenario, response_model=model, outcomes="expected")
    env.reset(seed=0)
    act = env.layout.encode(Decision(True, price_ratio, False, 0, 0.0, 0))
    return [env.step(act) for _ in range(weeks)], env


def test_a_weekly_estimate_gives_the_markets_no_buyers_so_far(tiny_predictor):
    # The board's estimate counts weekly buyers (a steady staple): the env still counts its buyers, but the
    # markets read none, so its learned demand at one price is the same every week, as the truth's is.
    weekly = load_scenario("home_cutting_board_closed_form")
    assert weekly.products[0].market_estimate_basis == "weekly"
    total = apply_overrides(weekly, ["products.0.market_estimate_basis=total"])
    runs = {}
    for basis, scenario in (("weekly", weekly), ("total", total)):
        for market, model in (("structural", None), ("learned", tiny_predictor)):
            steps, env = _fixed_plan(scenario, model, 0.75, weeks=6)
            counted = steps[-1][0][OBSERVATION_NAMES.index("adoption")]  # buyers so far / stock, in the observation
            runs[basis, market] = [s[4]["expected_demand"] for s in steps], env.last_context.adopters, counted
    assert runs["weekly", "structural"][0] == runs["total", "structural"][0]  # a constant pool's truth reads no adopters
    demand, seen, counted = runs["weekly", "learned"]
    assert seen == 0.0 and counted > 0.0
    assert demand == pytest.approx([demand[0]] * 6, rel=1e-9)
    assert not np.allclose(runs["total", "learned"][0], demand[0], rtol=1e-3)  # the predictor does read adopters


def test_expected_outcomes_ignore_the_seed():
    a = LaunchMarketEnv("food_coffee_bundle", outcomes="expected")
    a.reset(seed=1)
    b = LaunchMarketEnv("food_coffee_bundle", outcomes="expected")
    b.reset(seed=2)
    act = a.layout.encode(Decision(True, 1.0, False, 1, 0.1, 0))
    for _ in range(5):
        ra, rb = a.step(act)[1], b.step(act)[1]
        assert ra == rb


def test_box_decode_encode_round_trip():
    env = LaunchMarketEnv("food_coffee_bundle", action_type="box")
    d = Decision(True, 1.1, False, 3, 0.2, 0)
    back = env.layout.decode(env.layout.encode(d))
    assert back.launch and back.bundle == 3 and back.price_ratio == pytest.approx(1.1, abs=1e-6)
    assert back.ad_share == pytest.approx(0.2, abs=1e-6)


def test_multi_product_scenario_selects_by_name():
    env = LaunchMarketEnv("home_cookware_line", product="cast_iron_skillet")
    assert env.product.reference_price == 39.0
    with pytest.raises(ScenarioError, match="found no product 'wok'"):
        LaunchMarketEnv("home_cookware_line", product="wok")


def test_step_after_end_raises():
    env = LaunchMarketEnv("apparel_sneaker_drop")
    env.reset(seed=0)
    done = False
    while not done:
        done = env.step(env.action_space.sample())[2]
    with pytest.raises(RuntimeError, match="reset"):
        env.step(env.action_space.sample())


def test_render_ansi():
    env = LaunchMarketEnv("apparel_sneaker_drop", render_mode="ansi")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.render().startswith("week")


def test_observation_names_match_space():
    s = load_scenario("food_coffee_bundle")
    assert LaunchMarketEnv(s).observation_space.shape == (len(launchsim.envs.OBSERVATION_NAMES),)
