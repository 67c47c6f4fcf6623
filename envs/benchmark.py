"""Environment throughput: single-env steps/s of the launch market next to CartPole-v1, same run.

Actions are drawn before timing so that only ``step`` (and ``reset`` at episode ends) is timed;
each figure is the median of several repeats after a warm-up.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from scenarios import DEFAULT_SCENARIO


def steps_per_second(env: gym.Env, n_steps: int, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Median and spread of steps/s over ``repeats`` timed runs of ``n_steps`` steps each."""
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    env.reset(seed=seed)
    _run(env, actions[: min(1000, n_steps)])  # warm-up
    rates = []
    for _ in range(repeats):
        env.reset(seed=seed)
        start = time.perf_counter()
        _run(env, actions)
        rates.append(n_steps / (time.perf_counter() - start))
    return {"steps_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "repeats": repeats}


def _run(env: gym.Env, actions: list) -> None:
    step, reset = env.step, env.reset
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()


def run_benchmarks(n_steps: int = 50_000, repeats: int = 5, progress: Callable[[str], Any] = print) -> dict:
    """Single-env throughput: the launch market on the structural and the learned (default predictor,
    CPU) backends, raw and through ``gym.make``, and CartPole-v1 as a yardstick."""
    import envs  # noqa: F401  (registers the LaunchSim ids)
    from envs.launch_market import LaunchMarketEnv

    from models.predictor import DEFAULT_PREDICTOR_DIR, LaunchPredictor

    learned = LaunchPredictor.load(DEFAULT_PREDICTOR_DIR, device="cpu")
    cases = {
        "launch_market_structural_raw": lambda: LaunchMarketEnv(DEFAULT_SCENARIO),
        "launch_market_learned_raw": lambda: LaunchMarketEnv(DEFAULT_SCENARIO, response_model=learned),
        "launch_market_structural_gym_make": lambda: gym.make("LaunchSim/Market-v1", scenario=DEFAULT_SCENARIO),
        "launch_market_structural_box_raw": lambda: LaunchMarketEnv(DEFAULT_SCENARIO, action_type="box"),
        "cartpole_v1_raw": lambda: gym.make("CartPole-v1").unwrapped,
        "cartpole_v1_gym_make": lambda: gym.make("CartPole-v1"),
    }
    results: dict[str, Any] = {}
    for name, make in cases.items():
        progress(f"timing {name} ({repeats} x {n_steps:,} steps)")
        results[name] = steps_per_second(make(), n_steps, repeats)
    cartpole = results["cartpole_v1_raw"]["steps_per_s"]
    return {
        "single_env": results,
        "ratio_launch_market_to_cartpole_raw": results["launch_market_structural_raw"]["steps_per_s"] / cartpole,
        "ratio_learned_market_to_cartpole_raw": results["launch_market_learned_raw"]["steps_per_s"] / cartpole,
        "predictor": str(DEFAULT_PREDICTOR_DIR),
        "machine": _machine(),
        "n_steps": n_steps,
        "scenario": DEFAULT_SCENARIO.stem,
    }


def _machine() -> dict[str, Any]:
    import os

    import gymnasium
    import stable_baselines3
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
    }
