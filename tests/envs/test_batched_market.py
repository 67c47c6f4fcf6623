"""The batched VecEnv reproduces N single envs, auto-resets, masks, and trains SB3 agents."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env as gym_check_env
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from launchsim.envs import LaunchMarketEnv
from launchsim.envs.batched_market import BatchedMarketVecEnv
from launchsim.envs.spaces import market_pairs, product_traits, union_nvec
from launchsim.envs.vector import make_market_vec_env
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides
from tests.conftest import SCENARIO_PATHS


@pytest.fixture(scope="module")
def every_scenario():
    return [load_scenario(p) for p in SCENARIO_PATHS]


def _lockstep(batched, dummy, steps: int, seed: int = 0, exact_counts: bool = True) -> tuple[float, float]:
    """Step both VecEnvs with the same random actions; return the largest relative reward gap and the
    largest observation gap."""
    rng = np.random.default_rng(seed)
    ob, od = batched.reset(), dummy.reset()
    np.testing.assert_allclose(ob, od, rtol=0 if exact_counts else 1e-6, atol=0 if exact_counts else 1e-6)
    worst_r = worst_o = 0.0
    box = batched.action_space.dtype == np.float32
    for step in range(steps):
        if box:
            actions = rng.uniform(-1, 1, (batched.num_envs, 6)).astype(np.float32)
        else:
            mb, md = np.stack(batched.env_method("action_masks")), np.stack(dummy.env_method("action_masks"))
            np.testing.assert_array_equal(mb, md, err_msg=f"masks differ at step {step}")
            actions = np.stack([rng.integers(0, batched.action_space.nvec) for _ in range(batched.num_envs)])
        ob, rb, db, ib = batched.step(actions)
        od, rd, dd, idd = dummy.step(actions)
        np.testing.assert_array_equal(db, dd, err_msg=f"dones differ at step {step}")
        for i in np.flatnonzero(db):
            assert ib[i]["episode"]["l"] == idd[i]["episode"]["l"]
            np.testing.assert_allclose(ib[i]["terminal_observation"], idd[i]["terminal_observation"], atol=1e-5)
        worst_r = max(worst_r, float(np.max(np.abs(rb - rd) / (1.0 + np.abs(rd)))))
        worst_o = max(worst_o, float(np.max(np.abs(ob - od))))
    return worst_r, worst_o


@pytest.mark.parametrize("action_type", ["multidiscrete", "box"])
def test_structural_batch_equals_single_envs_exactly(every_scenario, action_type):
    # Every shipped (scenario, product) twice, through several episodes: auto-resets, and uniforms
    # drawn two episodes at a time, so refills happen mid-run.
    pairs = market_pairs(every_scenario)
    slots = [pairs[i % len(pairs)] for i in range(2 * len(pairs))]
    batched = BatchedMarketVecEnv(slots, market="structural", action_type=action_type, nvec=union_nvec(pairs), noise_episodes=2)
    batched.seed(11)
    dummy = make_market_vec_env(every_scenario, len(slots), market="structural", seed=11, action_type=action_type, kind="dummy", product_features=False)
    worst_r, worst_o = _lockstep(batched, dummy, steps=110)
    assert worst_r == 0.0 and worst_o == 0.0


@pytest.mark.parametrize("action_type", ["multidiscrete", "box"])
def test_sold_out_markets_pause_ads_as_single_envs_do(action_type):
    # Small stocks sell out early, so most steps run the v2 rule (no ad spend once sold out).
    small = [apply_overrides(load_scenario(name), ["products.0.stock=30"]) for name in ("apparel_sneaker_drop", "food_coffee_bundle")]
    pairs = market_pairs(small)
    batched = BatchedMarketVecEnv(pairs * 2, market="structural", action_type=action_type, nvec=union_nvec(pairs))
    batched.seed(5)
    dummy = make_market_vec_env(small, len(pairs) * 2, market="structural", seed=5, action_type=action_type, kind="dummy", product_features=False)
    worst_r, worst_o = _lockstep(batched, dummy, steps=40)
    assert worst_r == 0.0 and worst_o == 0.0
    # The rule itself: always asking for the largest ad share, a market spends while it has stock and
    # budget, and nothing in a week that starts sold out.
    batched.seed(5)
    batched.reset()
    full_ads = np.tile(np.array([1, 0, 0, batched.nvec[3] - 1, 0]), (batched.num_envs, 1))
    stock, paused = np.array([float(s.products[p].stock) for s, p in pairs * 2]), 0
    for _ in range(9):  # within the first episode (10+ weeks)
        batched.step(full_ads if action_type == "multidiscrete" else np.ones((batched.num_envs, 6), np.float32))
        spent = batched.last_step["ad_spend"].numpy()
        assert (spent[stock == 0] == 0).all() and (spent[stock > 0] > 0).all()
        paused += int((stock == 0).sum())
        stock = batched.last_step["stock_left"].numpy()
    assert paused >= 8  # the 30 units sell out within the first weeks


def test_demand_spread_draws_the_same_multipliers_as_single_envs(every_scenario):
    # Domain randomisation: each episode's demand multiplier comes from a child of the market's seed,
    # block by block in the batch (two episodes a block: refills mid-run) and one per reset in a single env;
    # the critic's field (the log multiplier) follows them through the refills.
    pairs = market_pairs(every_scenario)
    kw = {"market": "structural", "demand_spread": 0.5, "critic_demand_draw": True}
    batched = BatchedMarketVecEnv(pairs, nvec=union_nvec(pairs), noise_episodes=2, **kw)
    batched.seed(7)
    dummy = make_market_vec_env(every_scenario, len(pairs), seed=7, kind="dummy", product_features=False, **kw)
    assert _lockstep(batched, dummy, steps=110) == (0.0, 0.0)


def test_reset_without_a_seed_goes_on_as_single_envs_do(every_scenario):
    # A reset without a new seed (mid-episode, or right after another) takes each market's next episode
    # of uniforms and demand multipliers, as a single env's reset draws the next from its generator.
    pairs = market_pairs(every_scenario)
    batched = BatchedMarketVecEnv(pairs, market="structural", nvec=union_nvec(pairs), noise_episodes=3, demand_spread=0.5)
    batched.seed(9)
    dummy = make_market_vec_env(every_scenario, len(pairs), market="structural", seed=9, kind="dummy", product_features=False, demand_spread=0.5)
    for steps in (17, 5, 0, 40):  # each call resets both first; 0: two resets in a row
        assert _lockstep(batched, dummy, steps=steps, seed=steps) == (0.0, 0.0)


def test_critic_field_is_each_episodes_demand_draw_in_both_envs(every_scenario, tiny_predictor):
    # critic_demand_draw: after the traits, log of the episode's demand multiplier (the critic's field),
    # the same in the batch as in single envs through auto-resets and in terminal observations.
    # Expected outcomes: sampled counts are equal only to the float32 head's rounding, which can move a
    # count whose expectation sits at a quantile boundary.
    kw = {"market": "learned", "predictor": tiny_predictor, "seed": 4, "device": "cpu", "demand_spread": 0.5, "critic_demand_draw": True}
    n = len(market_pairs(every_scenario))
    batched, dummy = (make_market_vec_env(every_scenario, n, kind=k, outcomes="expected", **kw) for k in ("batched", "dummy"))
    width = 25 + tiny_predictor.heads.latent + 1
    assert batched.observation_space.shape == dummy.observation_space.shape == (width,)
    worst_r, worst_o = _lockstep(batched, dummy, steps=60, exact_counts=False)
    assert worst_r < 1e-4 and worst_o < 1e-4  # the float32 head's rounding, unrounded by counts (as in the expected-outcomes test)
    obs = dummy.reset()
    draws = np.log([env.unwrapped.demand_scale for env in dummy.envs])
    np.testing.assert_allclose(obs[:, -1], draws, rtol=1e-6)
    assert np.std(draws) > 0.1  # one draw per market, spread 0.5
    plain = make_market_vec_env(every_scenario, n, kind="dummy", **{**kw, "critic_demand_draw": False})
    np.testing.assert_array_equal(plain.reset(), obs[:, :-1])  # the field is appended; nothing else moves


def test_learned_batch_with_demand_spread_matches_single_envs(every_scenario, tiny_predictor):
    kw = dict(market="learned", predictor=tiny_predictor, seed=3, product_features=False, device="cpu", demand_spread=0.3)
    n = len(market_pairs(every_scenario))
    worst_r, worst_o = _lockstep(make_market_vec_env(every_scenario, n, kind="batched", **kw), make_market_vec_env(every_scenario, n, kind="dummy", **kw), steps=60)
    assert worst_r < 1e-5 and worst_o < 1e-4


def test_expected_outcomes_match_single_envs(every_scenario, tiny_predictor):
    # Training on expected outcomes (train --outcomes expected): the batch steps the same expectations
    # as single envs, with the demand spread on, through auto-resets.
    kw = dict(seed=2, product_features=False, outcomes="expected", demand_spread=0.3)
    n = len(market_pairs(every_scenario))
    structural = [make_market_vec_env(every_scenario, n, market="structural", kind=k, **kw) for k in ("batched", "dummy")]
    worst_r, worst_o = _lockstep(*structural, steps=60, exact_counts=False)
    assert worst_r < 1e-9 and worst_o < 1e-6
    learned = [make_market_vec_env(every_scenario, n, predictor=tiny_predictor, device="cpu", kind=k, **kw) for k in ("batched", "dummy")]
    worst_r, worst_o = _lockstep(*learned, steps=60, exact_counts=False)
    assert worst_r < 1e-4 and worst_o < 1e-4  # the float32 head's rounding reaches rewards unrounded by counts
    units = structural[0].last_step["units_sold"].numpy()
    assert (units != np.round(units)).any()  # expectations, not counts


def test_float32_state_matches_single_envs(every_scenario):
    # The dtype a GPU runs in (float32 state, uniforms copied from the host), here on the CPU: a count
    # can differ by one unit when a float32 expectation sits on a quantile boundary, rarely.
    pairs = market_pairs(every_scenario)
    batched = BatchedMarketVecEnv(pairs, market="structural", nvec=union_nvec(pairs), dtype=torch.float32, noise_episodes=3)
    batched.seed(4)
    dummy = make_market_vec_env(every_scenario, len(pairs), market="structural", seed=4, kind="dummy", product_features=False)
    rng = np.random.default_rng(0)
    batched.reset(), dummy.reset()
    close, units_gap = [], 0.0
    for _ in range(90):
        actions = np.stack([rng.integers(0, batched.action_space.nvec) for _ in range(len(pairs))])
        _, rb, db, _ = batched.step(actions)
        _, rd, dd, infos = dummy.step(actions)
        np.testing.assert_array_equal(db, dd)
        close.append(np.abs(rb - rd) / (1.0 + np.abs(rd)) < 1e-4)
        sold = [info["units_sold"] for info in infos]
        units_gap = max(units_gap, float(np.max(np.abs(batched.last_step["units_sold"].numpy() - sold))))
    assert np.mean(close) > 0.99 and units_gap <= 1.0


def test_learned_batch_matches_single_envs(every_scenario, tiny_predictor):
    # The demand head runs in float32 on the batch and float64 on one market: same counts, float-level gaps.
    kw = dict(market="learned", predictor=tiny_predictor, seed=3, product_features=True, device="cpu")  # CPU exactness, also where a GPU is present
    n = len(market_pairs(every_scenario))
    batched = make_market_vec_env(every_scenario, n, kind="batched", **kw)
    dummy = make_market_vec_env(every_scenario, n, kind="dummy", **kw)
    worst_r, worst_o = _lockstep(batched, dummy, steps=60)
    assert worst_r < 1e-5 and worst_o < 1e-4


def test_shared_space_and_product_traits(every_scenario, tiny_predictor):
    venv = make_market_vec_env(every_scenario, 5, market="learned", predictor=tiny_predictor, kind="batched")
    pairs = market_pairs(every_scenario)
    assert list(venv.action_space.nvec) == list(union_nvec(pairs))
    obs = venv.reset()
    assert obs.shape == (5, 25 + tiny_predictor.heads.latent)
    np.testing.assert_allclose(obs[1, 25:], product_traits(*pairs[1], tiny_predictor), rtol=1e-6)


def test_same_seed_same_batch_and_seed_offsets(default_scenario):
    a = make_market_vec_env(default_scenario, 4, market="structural", seed=5)
    b = make_market_vec_env(default_scenario, 4, market="structural", seed=5)
    actions = np.stack([a.action_space.sample() for _ in range(4)])
    np.random.seed(123)  # the global state must not matter
    a.reset(), b.reset()
    ra = [a.step(actions)[1] for _ in range(8)]
    np.random.rand(7)
    rb = [b.step(actions)[1] for _ in range(8)]
    np.testing.assert_array_equal(ra, rb)
    # Market i is a single env seeded 5 + i, count for count.
    c = BatchedMarketVecEnv([(default_scenario, 0)] * 4, market="structural", record_impressions=True)
    c.seed(5)
    c.reset()
    single = LaunchMarketEnv(default_scenario)
    single.reset(seed=7)
    for step in range(8):
        _, r_single, _, _, info = single.step(actions[2])
        reward = c.step(actions)[1][2]
        assert reward == np.float32(r_single) and reward == ra[step][2]
        for key in ("units_sold", "clicks", "impressions", "demand", "stock_left", "ad_spend"):
            assert c.last_step[key][2].item() == info[key], (step, key)


def test_learned_single_env_passes_both_checkers(tiny_predictor, default_scenario):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(LaunchMarketEnv(default_scenario, response_model=tiny_predictor), skip_render_check=True)
        sb3_check_env(LaunchMarketEnv(default_scenario, response_model=tiny_predictor), warn=True)
        sb3_check_env(LaunchMarketEnv(default_scenario, response_model=tiny_predictor, nvec=np.array([2, 12, 9, 6, 4])))


def test_ppo_and_maskable_ppo_learn_on_the_batched_env(every_scenario, tiny_predictor):
    venv = make_market_vec_env(every_scenario[:3], 16, market="learned", predictor=tiny_predictor, seed=0)
    for algo in (PPO, MaskablePPO):
        model = algo("MlpPolicy", venv, n_steps=8, batch_size=64, n_epochs=1, seed=0, device="cpu")
        model.learn(256)
        assert model.num_timesteps >= 256 and len(model.ep_info_buffer) > 0
    box = make_market_vec_env(every_scenario[0], 4, market="structural", action_type="box", seed=0)
    SAC("MlpPolicy", box, learning_starts=16, batch_size=16, seed=0, device="cpu").learn(48)


@pytest.mark.parametrize("action_type", ["multidiscrete", "box"])
def test_torch_route_equals_the_numpy_route(every_scenario, action_type, monkeypatch):
    # On a CPU the step runs on NumPy views; a GPU runs the same code through torch. Forced onto torch
    # here, it must reproduce the NumPy route (counts exactly; floats to rounding), the critic's field too.
    import launchsim.envs.batched_market as batched_market

    pairs = market_pairs(every_scenario)
    slots = [pairs[i % len(pairs)] for i in range(2 * len(pairs))]
    runs = []
    for numpy_route, graph_walk in ((True, False), (False, False), (False, True)):  # the sync-free walk a CUDA graph runs
        monkeypatch.setattr(batched_market, "NUMPY_ON_CPU", numpy_route)
        venv = BatchedMarketVecEnv(
            slots, market="structural", action_type=action_type, nvec=union_nvec(pairs), noise_episodes=2, record_impressions=True,
            demand_spread=0.5, critic_demand_draw=True,
        )  # fmt: skip
        venv._in_graph = graph_walk
        venv.seed(5)
        rng = np.random.default_rng(1)
        trace = [venv.reset()]
        for _ in range(50):
            if action_type == "box":
                actions = rng.uniform(-1, 1, (venv.num_envs, 6)).astype(np.float32)
            else:
                masks = venv.action_masks()
                trace.append(masks.astype(np.float32))
                actions = np.stack([rng.integers(0, venv.action_space.nvec) for _ in range(venv.num_envs)])
            obs, reward, done, _ = venv.step(actions)
            trace += [obs, reward, done.astype(np.float32), *(venv.last_step[k].numpy() for k in ("units_sold", "clicks", "impressions", "bundled_units"))]
        runs.append(trace)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
