"""The batched VecEnv on a CUDA device: the same markets as on the CPU within float tolerance, and PPO learns on it.

The GPU runs float32 state (the CPU float64), so a count can differ by one unit where an expectation
sits on a quantile boundary; these tests bound how often, as the CPU float32 test does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from launchsim.envs.batched_market import BatchedMarketVecEnv
from launchsim.envs.vector import market_pairs, union_nvec
from launchsim.scenarios import load_scenario
from tests.conftest import SCENARIO_PATHS

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def pairs():
    return market_pairs([load_scenario(p) for p in SCENARIO_PATHS])


def _run_both(make, steps: int, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """Step a CPU and a CUDA VecEnv with the same random valid actions; per step (reward, units) of each."""
    cpu, gpu = make("cpu"), make("cuda")
    cpu.seed(7), gpu.seed(7)
    return _step_both(cpu, gpu, steps, seed)


def _step_both(cpu, gpu, steps: int, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """Reset both VecEnvs (without a new seed unless one was set) and step them with the same random actions."""
    np.testing.assert_allclose(cpu.reset(), gpu.reset(), atol=1e-5)
    rng = np.random.default_rng(seed)
    trace = []
    for _ in range(steps):
        actions = np.stack([rng.integers(0, cpu.action_space.nvec) for _ in range(cpu.num_envs)])
        _, rc, dc, _ = cpu.step(actions)
        _, rg, dg, _ = gpu.step(actions)
        np.testing.assert_array_equal(dc, dg)
        trace.append((rc, rg, cpu.last_step["units_sold"].numpy(), gpu.last_step["units_sold"].cpu().numpy()))
    return trace


@pytest.mark.parametrize("spread", [0.0, 0.3], ids=["no-spread", "demand-spread"])
@pytest.mark.parametrize("graph", [True, False], ids=["cuda-graph", "eager"])
def test_structural_market_on_cuda_matches_the_cpu(pairs, graph, spread):
    # With a demand spread the per-episode multipliers are refilled in place inside the graph's tensors.
    slots = [pairs[i % len(pairs)] for i in range(3 * len(pairs))]

    made = []

    def make(device):
        cuda_graph = graph if device == "cuda" else None
        made.append(BatchedMarketVecEnv(
            slots, market="structural", nvec=union_nvec(pairs), device=device, noise_episodes=2, cuda_graph=cuda_graph,
            demand_spread=spread,
        ))  # fmt: skip
        return made[-1]

    trace = _run_both(make, 90)
    assert made[1].graphed == graph  # no silent fall-back to eager steps
    trace += _step_both(*made, 30, seed=1)  # a reset without a seed, mid-episode: each market's next episode
    close = np.concatenate([np.abs(rc - rg) / (1.0 + np.abs(rc)) < 1e-4 for rc, rg, _, _ in trace])
    units_gap = max(float(np.max(np.abs(uc - ug))) for _, _, uc, ug in trace)
    assert close.mean() > 0.99 and units_gap <= 1.0


@pytest.mark.parametrize("graph", [True, False], ids=["cuda-graph", "eager"])
def test_critic_field_on_cuda_matches_the_cpu(pairs, graph):
    # The critic's field (log of each episode's demand multiplier) through block refills: inside a graph the
    # step reads a wrapped index and the host writes the new block's value after the refill.
    slots = [pairs[i % len(pairs)] for i in range(2 * len(pairs))]

    def make(device):
        return BatchedMarketVecEnv(
            slots, market="structural", nvec=union_nvec(pairs), device=device, noise_episodes=2,
            cuda_graph=graph if device == "cuda" else None, demand_spread=0.3, critic_demand_draw=True,
        )  # fmt: skip

    cpu, gpu = make("cpu"), make("cuda")
    cpu.seed(7), gpu.seed(7)
    np.testing.assert_allclose(cpu.reset()[:, -1], gpu.reset()[:, -1], atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(90):
        actions = np.stack([rng.integers(0, cpu.action_space.nvec) for _ in range(cpu.num_envs)])
        oc, _, dc, _ = cpu.step(actions)
        og, _, dg, _ = gpu.step(actions)
        np.testing.assert_array_equal(dc, dg)
        np.testing.assert_allclose(oc[:, -1], og[:, -1], atol=1e-6)
    assert gpu.graphed == graph


@pytest.mark.parametrize("outcomes", ["sampled", "expected"])
def test_learned_market_on_cuda_matches_the_cpu(pairs, tiny_predictor, outcomes):
    slots = [pairs[i % len(pairs)] for i in range(3 * len(pairs))]

    def make(device):
        return BatchedMarketVecEnv(
            slots, market="learned", predictor=tiny_predictor, nvec=union_nvec(pairs), device=device, noise_episodes=2, outcomes=outcomes
        )

    trace = _run_both(make, 60)
    close = np.concatenate([np.abs(rc - rg) / (1.0 + np.abs(rc)) < 1e-3 for rc, rg, _, _ in trace])
    assert close.mean() > 0.98


def test_ppo_learns_on_the_cuda_batched_env(pairs, tiny_predictor):
    venv = BatchedMarketVecEnv(pairs[:3] * 8, market="learned", predictor=tiny_predictor, nvec=union_nvec(pairs[:3]), device="cuda")
    model = PPO("MlpPolicy", venv, n_steps=8, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(384)
    assert model.num_timesteps >= 384 and len(model.ep_info_buffer) > 0
    assert venv.graphed  # the capture succeeded: steps replay the graph


def test_finetune_on_cuda_gives_a_predictor_that_loads_on_the_cpu(tiny_bert, tiny_logs, tmp_path):
    # Fine-tuning on the GPU (bf16 autocast in the encoder's training steps), saved, then loaded on the CPU:
    # the same predictions up to the GPU's rounding.
    from launchsim.models.finetune import FinetuneConfig, finetune
    from launchsim.models.predictor import LaunchPredictor

    cfg = FinetuneConfig(encoder=str(tiny_bert), mode="lora", lora_rank=2, head_epochs=2, encoder_epochs=1, polish_epochs=1, hidden=16, latent=4, device="cuda")
    predictor = finetune(tiny_logs[tiny_logs["split"] == "train"], cfg)
    assert predictor.device.type == "cuda"
    loaded = LaunchPredictor.load(predictor.save(tmp_path / "pred"), device="cpu")
    rows = tiny_logs.head(60)
    on_gpu, on_cpu = predictor.predict_frame(rows), loaded.predict_frame(rows)
    for key in on_gpu:
        np.testing.assert_allclose(on_gpu[key], on_cpu[key], rtol=1e-3, atol=1e-6)
