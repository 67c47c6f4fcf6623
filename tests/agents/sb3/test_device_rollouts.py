"""Rollouts on the env's device (agents.sb3.device_rollouts) against SB3's VecEnv path: the same
rollouts, updates and normaliser statistics for the same seeds, number for number on a CPU."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecNormalize

from launchsim.agents.run_folder import TrainConfig
from launchsim.agents.sb3.device_rollouts import DeviceNormalizer, DeviceRolloutBuffer, act, with_device_rollouts
from launchsim.agents.training.runs import train
from launchsim.envs import batched_market
from launchsim.envs.batched_market import BatchedMarketVecEnv
from launchsim.envs.vector import make_market_vec_env, union_nvec
from launchsim.models.learned_market import load_shared
from launchsim.scenarios import load_scenario

BUFFER = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns", "action_masks")


def _sb3_layout(buffer) -> dict[str, np.ndarray]:
    """A rollout buffer's arrays as (steps, envs, ...) float32, for either kind of buffer after an update."""
    out = {}
    for name in BUFFER:
        if not hasattr(buffer, name):
            continue
        value = getattr(buffer, name)
        if isinstance(buffer, DeviceRolloutBuffer) and name in buffer._flat:
            value = buffer._flat[name]
        value = np.asarray(torch.as_tensor(value), dtype=np.float32)
        if value.shape[0] == buffer.buffer_size * buffer.n_envs:  # flattened by get(): env-major
            value = value.reshape(buffer.n_envs, buffer.buffer_size, *value.shape[1:]).swapaxes(0, 1)
        out[name] = value.reshape(buffer.buffer_size, buffer.n_envs, -1)
    return out


def _trained(algorithm_class, market: str, predictor=None, **kwargs):
    set_random_seed(0)
    scenarios = [load_scenario("apparel_winter_coat_holiday"), load_scenario("food_coffee_bundle")]
    venv = make_market_vec_env(
        scenarios, 12, market=market, predictor=predictor, seed=0, kind="batched", demand_spread=0.3, critic_demand_draw=True
    )
    venv = VecNormalize(venv, gamma=1.0)
    model = algorithm_class("MlpPolicy", venv, seed=0, device="cpu", gamma=1.0, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(max(3 * model.n_steps, 48) * 12)
    return model, venv


@pytest.mark.parametrize(
    ("algorithm_class", "kwargs"),
    [(PPO, {"n_steps": 32, "batch_size": 96, "n_epochs": 2}), (A2C, {"n_steps": 8}), (MaskablePPO, {"n_steps": 32, "batch_size": 96, "n_epochs": 2})],
    ids=["ppo", "a2c", "maskable_ppo"],
)
def test_the_device_path_trains_the_vecenv_paths_model_number_for_number(algorithm_class, kwargs):
    ours, our_norm = _trained(with_device_rollouts(algorithm_class), "structural", **kwargs)
    theirs, their_norm = _trained(algorithm_class, "structural", **kwargs)
    assert isinstance(ours.rollout_buffer, DeviceRolloutBuffer) and isinstance(ours, algorithm_class)
    mine, sb3 = _sb3_layout(ours.rollout_buffer), _sb3_layout(theirs.rollout_buffer)
    assert mine.keys() == sb3.keys()
    for name in mine:
        np.testing.assert_array_equal(mine[name], sb3[name], err_msg=name)
    for key, value in theirs.policy.state_dict().items():
        assert torch.equal(ours.policy.state_dict()[key], value), key
    for stat in ("mean", "var", "count"):
        np.testing.assert_array_equal(getattr(our_norm.obs_rms, stat), getattr(their_norm.obs_rms, stat))
        np.testing.assert_array_equal(getattr(our_norm.ret_rms, stat), getattr(their_norm.ret_rms, stat))
    np.testing.assert_array_equal(our_norm.returns, their_norm.returns)
    assert [(e["r"], e["l"]) for e in ours.ep_info_buffer] == [(e["r"], e["l"]) for e in theirs.ep_info_buffer]
    assert len(ours.ep_info_buffer) > 12  # markets of both lengths ended episodes
    np.testing.assert_array_equal(ours._last_obs, theirs._last_obs)


def test_the_learned_market_gives_the_same_model_on_both_paths():
    kwargs, predictor = {"n_steps": 16, "batch_size": 96, "n_epochs": 1}, load_shared()
    ours, _ = _trained(with_device_rollouts(PPO), "learned", predictor, **kwargs)
    theirs, _ = _trained(PPO, "learned", predictor, **kwargs)
    for key, value in theirs.policy.state_dict().items():
        assert torch.equal(ours.policy.state_dict()[key], value), key


def test_the_policys_direct_draw_equals_sb3s_distribution():
    venv = make_market_vec_env(load_scenario("food_coffee_bundle"), 64, market="structural", kind="batched")
    model = PPO("MlpPolicy", venv, device="cpu", seed=1)
    obs = torch.as_tensor(venv.reset())
    torch.manual_seed(5)
    expected = model.policy(obs)
    torch.manual_seed(5)
    for ours, sb3 in zip(act(model.policy, obs), expected):
        assert torch.equal(ours.reshape(sb3.shape), sb3)


@pytest.mark.parametrize("numpy_route", [True, False], ids=["numpy", "torch"])
def test_step_tensors_steps_as_the_vecenv_api_through_resets_and_new_blocks_of_uniforms(monkeypatch, numpy_route):
    """The torch route is the GPU's (run on the CPU here); two uniforms blocks of two episodes each, and
    markets of 20- and 13-step scenarios, so episodes end on different steps and blocks are drawn again."""
    monkeypatch.setattr(batched_market, "NUMPY_ON_CPU", numpy_route)
    pairs = [(load_scenario("apparel_winter_coat_holiday"), 0), (load_scenario("food_coffee_bundle"), 0)]
    assert pairs[0][0].n_steps != pairs[1][0].n_steps
    slots = [pairs[i % 2] for i in range(6)]

    def make() -> BatchedMarketVecEnv:
        venv = BatchedMarketVecEnv(slots, market="structural", nvec=union_nvec(pairs), noise_episodes=2, demand_spread=0.2, critic_demand_draw=True)
        venv.seed(4)
        return venv

    api, tensors = make(), make()
    np.testing.assert_array_equal(api.reset(), tensors.reset())
    rng = np.random.default_rng(0)
    ended = []
    for _ in range(5 * 20 + 3):
        actions = np.stack([rng.integers(0, api.action_space.nvec) for _ in range(api.num_envs)])
        obs, rewards, dones, infos = api.step(actions)
        obs_t, rewards_t, dones_t = tensors.step_tensors(torch.as_tensor(actions))
        np.testing.assert_array_equal(obs, obs_t.numpy())
        np.testing.assert_array_equal(rewards, rewards_t.numpy())
        np.testing.assert_array_equal(dones, dones_t.numpy())
        ended += [(info["episode"]["r"], info["episode"]["l"]) for info in infos if "episode" in info]
    assert [(e["r"], e["l"]) for e in tensors.finished_episodes()] == ended and len(ended) > 6 * 4
    assert tensors.finished_episodes() == []


def test_the_device_normaliser_keeps_vecnormalizes_statistics():
    """The GPU's normaliser (float64 statistics on the device), run on the CPU against VecNormalize, which
    takes float32 batch means of float32 observations: agreement to float32 rounding (relative 1e-6)."""
    scenario = load_scenario("food_coffee_bundle")
    sb3 = VecNormalize(make_market_vec_env(scenario, 8, market="structural", seed=2, kind="batched"), gamma=0.99)
    ours = VecNormalize(make_market_vec_env(scenario, 8, market="structural", seed=2, kind="batched"), gamma=0.99)
    sb3.reset(), ours.reset()
    device = DeviceNormalizer(ours, "cpu")
    rng = np.random.default_rng(1)
    for _ in range(30):
        actions = np.stack([rng.integers(0, sb3.action_space.nvec) for _ in range(8)])
        obs, rewards, dones, _ = sb3.step(actions)
        raw, raw_rewards, raw_dones = ours.venv.step_tensors(torch.as_tensor(actions))
        obs_t, rewards_t = device.step(raw, raw_rewards, raw_dones)
        np.testing.assert_allclose(obs_t.numpy(), obs, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rewards_t.numpy(), rewards, rtol=1e-5, atol=1e-6)
    device.write_back()
    np.testing.assert_allclose(ours.obs_rms.mean, sb3.obs_rms.mean, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.obs_rms.var, sb3.obs_rms.var, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ours.ret_rms.var, sb3.ret_rms.var, rtol=1e-9)
    assert ours.obs_rms.count == sb3.obs_rms.count
    np.testing.assert_allclose(ours.returns, sb3.returns, rtol=1e-9)


def test_a_training_run_on_either_path_writes_the_same_model(tmp_path):
    runs = {}
    for rollouts in ("device", "vecenv"):
        config = TrainConfig(
            scenarios=["food_coffee_bundle"], steps=256, market="structural", n_envs=8, seed=3, out=tmp_path / rollouts,
            hyperparams={"n_steps": 16, "batch_size": 64, "n_epochs": 1}, eval_episodes=1, evaluation="quick", eval_every=0,
            vec_kind="batched", rollouts=rollouts, checkpoint_every=128,
        )  # fmt: skip
        runs[rollouts] = train(config, progress=False)
        assert f"rollouts: {rollouts}" in (runs[rollouts] / "config.yml").read_text()
    weights = [zipfile.ZipFile(run / "model.zip").read("policy.pth") for run in runs.values()]
    assert weights[0] == weights[1]


@pytest.mark.parametrize("graph", [True, False], ids=["cuda-graph", "eager"])
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_step_tensors_steps_as_the_vecenv_api(graph):
    pairs = [(load_scenario("apparel_winter_coat_holiday"), 0), (load_scenario("food_coffee_bundle"), 0)]
    slots = [pairs[i % 2] for i in range(256)]

    def make() -> BatchedMarketVecEnv:
        venv = BatchedMarketVecEnv(slots, market="structural", nvec=union_nvec(pairs), noise_episodes=2, device="cuda", cuda_graph=graph)
        venv.seed(4)
        return venv

    api, tensors = make(), make()
    np.testing.assert_array_equal(api.reset(), tensors.reset())
    rng = np.random.default_rng(0)
    for _ in range(5 * 20 + 3):
        actions = np.stack([rng.integers(0, api.action_space.nvec) for _ in range(api.num_envs)])
        obs, rewards, dones, _ = api.step(actions)
        obs_t, rewards_t, dones_t = tensors.step_tensors(torch.as_tensor(actions, device="cuda"))
        assert obs_t.device.type == "cuda"
        np.testing.assert_array_equal(obs, obs_t.cpu().numpy())
        np.testing.assert_array_equal(rewards, rewards_t.cpu().numpy())
        np.testing.assert_array_equal(dones, dones_t.cpu().numpy())
    assert tensors.graphed == graph


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_ppo_trains_with_its_rollouts_on_the_device():
    venv = VecNormalize(make_market_vec_env(load_scenario("food_coffee_bundle"), 1024, market="structural", kind="batched", device="cuda"), gamma=1.0)
    model = with_device_rollouts(PPO)("MlpPolicy", venv, n_steps=16, batch_size=4096, n_epochs=2, seed=0, device="cuda", gamma=1.0)
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(4 * 16 * 1024)
    assert model.rollout_buffer.observations.device.type == "cuda"
    assert np.isfinite(venv.obs_rms.mean).all() and venv.obs_rms.count > 4 * 16 * 1024
    assert len(model.ep_info_buffer) == 100
