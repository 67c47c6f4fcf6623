"""PPO training throughput on the device path (``agents.sb3.device_rollouts``) against SB3's VecEnv
path, at the same N and hyperparameters (``launchsim bench --only training``).

Both paths are timed alternately after a warm-up, with the device synchronised, and the medians of
the repeats reported; the parts both paths share are timed alone, since their sum bounds what any
rollout path can reach.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from launchsim.envs.benchmark import peak_memory, sync_device
from launchsim.scenarios import DEFAULT_SCENARIO


def run_training_benchmarks(
    sizes: list[int], device: str = "cpu", repeats: int = 3, rollouts: int = 10, markets: tuple[str, ...] = ("learned", "structural"),
    progress: Callable[[str], Any] = print,
) -> dict[str, Any]:  # fmt: skip
    """SB3 PPO end-to-end training (collection + updates) on the device path (``agents.sb3.device_rollouts``)
    against SB3's VecEnv path at the same N and hyperparameters, alternated, median of ``repeats``; and
    the parts both paths share, timed alone (the env's step, the policy's action, the update), whose sum
    is the most steps/s any rollout path reaches with them."""
    import torch
    from launchsim.models.learned_market import DEFAULT_PREDICTOR_DIR
    from launchsim.models.predictor import LaunchPredictor
    from launchsim.scenarios import load_scenario

    scenario = load_scenario(DEFAULT_SCENARIO)
    predictor = LaunchPredictor.load(DEFAULT_PREDICTOR_DIR, device=device)
    rows = []
    for market in markets:
        for n in sizes:
            n_steps = max(4, min(64, 16_384 // n))
            settings = {"n_steps": n_steps, "batch_size": min(4096, n_steps * n), "n_epochs": 1}
            rates: dict[str, list[float]] = {"vecenv": [], "device": []}
            for repeat in range(repeats):
                for path in ("vecenv", "device"):
                    progress(f"timing PPO training, {market} market, N={n:,}, {path} path, run {repeat + 1} of {repeats}")
                    model = _ppo(scenario, market, predictor, n, device, path, settings)
                    model.learn(2 * n_steps * n)  # warm-up: buffers, the first reset, a CUDA graph's capture
                    sync_device(device)
                    start = time.perf_counter()
                    model.learn(rollouts * n_steps * n, reset_num_timesteps=False)
                    sync_device(device)
                    rates[path].append(rollouts * n_steps * n / (time.perf_counter() - start))
            floor = _shared_parts(model, n_steps, device)
            vecenv, on_device = statistics.median(rates["vecenv"]), statistics.median(rates["device"])
            rows.append({
                "market": market, "n": n, **settings, "rollouts_timed": rollouts, "repeats": repeats,
                "vecenv_steps_per_s": vecenv, "device_steps_per_s": on_device, "ratio": on_device / vecenv,
                "vecenv_runs": rates["vecenv"], "device_runs": rates["device"], **floor,
                "shared_parts_bound_ratio": floor["shared_parts_steps_per_s"] / vecenv,
            })  # fmt: skip
            del model
    return {"ppo_training": rows, "device": device, "scenario": DEFAULT_SCENARIO.stem, "torch_threads": torch.get_num_threads(), "memory": peak_memory()}


def _ppo(scenario: Any, market: str, predictor: Any, n: int, device: str, path: str, settings: dict[str, int]) -> Any:
    """A fresh PPO on N batched markets: the agent on the CPU for the VecEnv path (as ``train`` runs it),
    on the env's device for the device path."""
    from launchsim.agents.sb3.device_rollouts import with_device_rollouts
    from launchsim.envs.vector import make_market_vec_env
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    venv = make_market_vec_env(scenario, n, market=market, predictor=predictor, kind="batched", device=device)
    cls, agent = (with_device_rollouts(PPO), device) if path == "device" else (PPO, "cpu")
    model = cls("MlpPolicy", venv, seed=0, device=agent, verbose=0, **settings)
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default logger makes a folder in /tmp per run
    return model


def _shared_parts(model: Any, n_steps: int, device: str, calls: int = 20) -> dict[str, float]:
    """Seconds per market step of the env's step, the policy's action and the update, each timed alone
    on a device-path model, and the steps/s their sum allows."""
    import torch
    from launchsim.agents.sb3.device_rollouts import act, device_market

    market, n = device_market(model.env), model.env.num_envs
    obs = torch.as_tensor(model._last_obs, device=model.device)
    with torch.no_grad():
        actions = act(model.policy, obs)[0]

    def per_call(fn: Callable[[], Any], k: int) -> float:
        fn()
        sync_device(device)
        start = time.perf_counter()
        for _ in range(k):
            fn()
        sync_device(device)
        return (time.perf_counter() - start) / k

    def policy_act() -> None:
        with torch.no_grad():
            act(model.policy, obs)

    env_s = per_call(lambda: market.step_tensors(actions), calls)
    act_s = per_call(policy_act, calls)
    update_s = per_call(model.train, max(2, calls // 5)) / n_steps
    return {
        "env_step_s": env_s, "policy_act_s": act_s, "update_s_per_step": update_s,
        "shared_parts_steps_per_s": n / (env_s + act_s + update_s),
    }  # fmt: skip
