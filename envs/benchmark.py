"""Throughput of the launch market, measured in one run: single envs next to CartPole-v1, SB3's
``DummyVecEnv`` against the batched VecEnv at several sizes, the predictor's head alone at the same
sizes (the floor a batched step cannot beat), SB3 PPO rollout collection and end-to-end training
with each VecEnv, the text encoder's texts/s, and peak memory.

Actions are drawn before timing so that only ``step`` (and resets at episode ends) is timed; each
figure is the median of several repeats after a warm-up. On CUDA, timings synchronise the device.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from launchsim.scenarios import DEFAULT_SCENARIO


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
    from launchsim.envs import ENV_IDS  # importing envs registers the LaunchSim ids
    from launchsim.envs.launch_market import LaunchMarketEnv
    from launchsim.models.learned_market import DEFAULT_PREDICTOR_DIR
    from launchsim.models.predictor import LaunchPredictor

    learned = LaunchPredictor.load(DEFAULT_PREDICTOR_DIR, device="cpu")
    cases = {
        "launch_market_structural_raw": lambda: LaunchMarketEnv(DEFAULT_SCENARIO),
        "launch_market_learned_raw": lambda: LaunchMarketEnv(DEFAULT_SCENARIO, response_model=learned),
        "launch_market_structural_gym_make": lambda: gym.make(ENV_IDS["multidiscrete"], scenario=DEFAULT_SCENARIO),
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


# ---------------------------------------------------------------------- vectorised envs


def sync_device(device: Any) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def vec_steps_per_second(venv: Any, n_calls: int, repeats: int = 3, device: Any = "cpu", seed: int = 0) -> dict[str, float]:
    """Market steps/s of a VecEnv (calls x markets per second), median of ``repeats``."""
    rng = np.random.default_rng(seed)
    space = venv.action_space
    if hasattr(space, "nvec"):
        batches = [rng.integers(0, space.nvec, size=(venv.num_envs, len(space.nvec))) for _ in range(8)]
    else:
        batches = [rng.uniform(-1, 1, size=(venv.num_envs, *space.shape)).astype(np.float32) for _ in range(8)]
    venv.seed(seed)
    venv.reset()
    for a in batches[:3]:  # warm-up
        venv.step(a)
    rates = []
    for _ in range(repeats):
        sync_device(device)
        start = time.perf_counter()
        for i in range(n_calls):
            venv.step(batches[i % len(batches)])
        sync_device(device)
        rates.append(n_calls * venv.num_envs / (time.perf_counter() - start))
    out = {"steps_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "calls": n_calls, "repeats": repeats}
    if getattr(venv, "graphed", False):
        out["device_step_steps_per_s"] = _graph_replay_rate(venv)
    if hasattr(venv, "_draw_noise"):
        # The uniforms of the next block of episodes are drawn on the host when a block runs out, which a
        # short timing may never reach: timed once here and spread over the steps a block lasts.
        start = time.perf_counter()
        venv._draw_noise(range(venv.num_envs))
        sync_device(device)
        refill = time.perf_counter() - start
        steps_per_block = venv.noise_episodes * min(venv._n_steps) * venv.num_envs
        out.update(refill_s=refill, steps_per_block=steps_per_block,
                   steps_per_s_with_refill=1.0 / (1.0 / out["steps_per_s"] + refill / steps_per_block))  # fmt: skip
    return out


def _graph_replay_rate(venv: Any, replays: int = 50) -> float | None:
    """Market steps/s of the captured CUDA graph replayed back to back: the step on the device alone,
    without SB3's host side (actions in, observations, rewards and infos out). The env is reset after."""
    import torch

    # The graph resets ended markets but draws no new uniforms: stay inside the current block.
    left = (venv.noise_episodes - int(venv._episode_in_block.max()) - 1) * min(venv._n_steps)
    replays = min(replays, left)
    if replays < 5:
        return None
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(replays):
        venv._graph.replay()
    torch.cuda.synchronize()
    rate = replays * venv.num_envs / (time.perf_counter() - start)
    venv.reset()
    return rate


def head_alone_steps_per_second(venv: Any, n_calls: int, repeats: int = 3) -> dict[str, float]:
    """The learned market's per-step model cost alone: context features and heads for every market of a
    batched env, on its device and head dtype (the env's responder), with a fixed context (no sampling,
    no state)."""
    from launchsim.models.response import MarketContext

    x, c, n = venv.x, venv.c, venv.num_envs
    full = lambda value: x.asarray(np.full(n, value), float_type=True)  # noqa: E731
    zeros = full(0.0)
    ctx = MarketContext(
        launched=full(1.0), step_weeks=c.k, season=full(1.0), holiday=zeros, price_ratio=full(1.0), reference_price=c.ref,
        flash=zeros, weeks_since_flash=full(99.0), competitor_strength=zeros, competitor_price_ratio=zeros,
        adstock=full(500.0), adopters=full(100.0), bundle_discount=zeros, market_estimate=c.market_estimate,
    )  # fmt: skip
    index = x.asarray(np.zeros(n, dtype=np.int64))
    for _ in range(3):
        venv.responder.respond(ctx, index, index)
    rates = []
    for _ in range(repeats):
        sync_device(venv.device)
        start = time.perf_counter()
        for _ in range(n_calls):
            venv.responder.respond(ctx, index, index)
        sync_device(venv.device)
        rates.append(n_calls * n / (time.perf_counter() - start))
    return {"steps_per_s": statistics.median(rates), "min": min(rates), "max": max(rates), "calls": n_calls}


def ppo_steps_per_second(venv: Any, n_steps: int, learn: bool, seed: int = 0) -> dict[str, float]:
    """SB3 PPO on a VecEnv: rollout collection alone (``learn=False``) or a full ``learn`` (collection + updates)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import Logger

    batch = min(4096, n_steps * venv.num_envs)
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=batch, n_epochs=1, seed=seed, device="cpu", verbose=0)
    model.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default logger makes a folder in /tmp per run
    total = n_steps * venv.num_envs
    if learn:
        model.learn(total)  # warm-up: the first call builds buffers and logger
        start = time.perf_counter()
        model.learn(2 * total, reset_num_timesteps=False)
        return {"steps_per_s": 2 * total / (time.perf_counter() - start), "timesteps": 2 * total}
    total, callback = model._setup_learn(total, None)
    callback.on_training_start(locals(), globals())
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=n_steps)  # warm-up
    start = time.perf_counter()
    model.collect_rollouts(model.env, callback, model.rollout_buffer, n_rollout_steps=n_steps)
    return {"steps_per_s": n_steps * venv.num_envs / (time.perf_counter() - start), "timesteps": n_steps * venv.num_envs}


def real_descriptions(n: int, seed: int = 0) -> list[str]:
    """``n`` product descriptions as the log generator writes them (half in the training wording, half
    in the paraphrase wording): the texts the encoder meets in practice."""
    from launchsim.models import product_text as pt

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        traits = pt.sample_traits(rng)
        out.append(pt.describe(traits, rng, "train" if rng.random() < 0.5 else "paraphrase"))
    return out


def encoder_texts_per_second(predictor: Any, n_texts: int = 512, batch: int = 128, repeats: int = 3) -> dict[str, Any]:
    """Distinct real descriptions per second through the predictor's encoder: end to end (``encode``:
    tokenise, forward under bf16 autocast on a GPU, pool), and the tokenizer and the forward pass alone."""
    import torch

    texts = real_descriptions(n_texts)
    encoder = predictor.encoder
    batches = [texts[i : i + batch] for i in range(0, n_texts, batch)]

    def median_rate(fn: Callable[[], Any]) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            sync_device(predictor.device)
            start = time.perf_counter()
            fn()
            sync_device(predictor.device)
            times.append(time.perf_counter() - start)
        return n_texts / statistics.median(times)

    tokens = [{k: v.to(predictor.device) for k, v in encoder.tokenize(b).items()} for b in batches]
    cuda = torch.device(predictor.device).type == "cuda"

    @torch.inference_mode()
    def forward() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            for t in tokens:
                encoder.model(**t)

    lengths = [int(m.sum()) for t in tokens for m in t["attention_mask"]]
    return {
        "texts_per_s": median_rate(lambda: encoder.encode(texts, batch_size=batch, bf16=cuda)),
        "tokenizer_texts_per_s": median_rate(lambda: [encoder.tokenize(b) for b in batches]),
        "forward_texts_per_s": median_rate(forward),
        "texts": n_texts, "batch": batch, "max_length": encoder.max_length, "tokens_mean": float(np.mean(lengths)),
        "dtype": "bfloat16 autocast" if cuda else "float32", "encoder_class": type(encoder.model).__name__,
    }  # fmt: skip


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and peak CUDA memory when a GPU is used), in MiB."""
    import resource

    import torch

    out = {"rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    if torch.cuda.is_available():
        out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_vec_benchmarks(
    sizes: list[int], device: str = "cpu", dummy_max: int = 4096, calls: int = 20, repeats: int = 3, texts: int = 512,
    progress: Callable[[str], Any] = print,
) -> dict[str, Any]:  # fmt: skip
    """DummyVecEnv vs the batched VecEnv (learned market; float32 and bfloat16 heads) and the head alone
    at each size; PPO rollout collection and end-to-end learning with both; encoder texts/s; peak memory."""
    import torch
    from launchsim.envs.batched_market import BatchedMarketVecEnv
    from launchsim.envs.vector import make_market_vec_env
    from launchsim.models.learned_market import DEFAULT_PREDICTOR_DIR
    from launchsim.models.predictor import LaunchPredictor
    from launchsim.scenarios import load_scenario

    scenario = load_scenario(DEFAULT_SCENARIO)
    predictor = LaunchPredictor.load(DEFAULT_PREDICTOR_DIR, device=device)
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for head_dtype in (torch.float32, torch.bfloat16):
            name = str(head_dtype).removeprefix("torch.")
            progress(f"timing batched VecEnv, learned market, N={n:,}, head {name}")
            venv = BatchedMarketVecEnv([(scenario, 0)] * n, market="learned", predictor=predictor, device=device, head_dtype=head_dtype)
            n_calls = max(3, min(calls, 2_000_000 // n))
            timing = vec_steps_per_second(venv, n_calls, repeats, device)
            rows.append({"env": "batched", "market": "learned", "head": name, "n": n, "cuda_graph": venv.graphed, **timing})
            rows.append({"env": "head alone", "market": "learned", "head": name, "n": n, **head_alone_steps_per_second(venv, n_calls, repeats)})
            del venv
            if device == "cuda" and head_dtype == torch.bfloat16:  # the same step launched op by op
                progress(f"timing batched VecEnv, learned market, N={n:,}, head {name}, without the CUDA graph")
                venv = BatchedMarketVecEnv([(scenario, 0)] * n, market="learned", predictor=predictor, device=device, head_dtype=head_dtype, cuda_graph=False)
                timing = vec_steps_per_second(venv, n_calls, repeats, device)
                rows.append({"env": "batched", "market": "learned", "head": name, "n": n, "cuda_graph": False, **timing})
                del venv
        progress(f"timing batched VecEnv, structural market, N={n:,}")
        venv = BatchedMarketVecEnv([(scenario, 0)] * n, market="structural", device=device)
        timing = vec_steps_per_second(venv, max(3, min(calls, 2_000_000 // n)), repeats, device)
        rows.append({"env": "batched", "market": "structural", "head": "-", "n": n, "cuda_graph": venv.graphed, **timing})
        del venv
        if n <= dummy_max:
            progress(f"timing DummyVecEnv of single envs, learned market, N={n:,}")
            venv = make_market_vec_env(scenario, n, market="learned", predictor=predictor, kind="dummy")
            rows.append({"env": "DummyVecEnv", "market": "learned", "head": "float64 (NumPy)", "n": n, **vec_steps_per_second(venv, max(2, min(calls, 50_000 // n)), repeats)})
            del venv
    ppo: list[dict[str, Any]] = []
    for n in [s for s in sizes if s <= dummy_max]:
        for kind in ("batched", "dummy"):
            venv = make_market_vec_env(scenario, n, market="learned", predictor=predictor, kind=kind, device=device)
            n_steps = max(4, min(64, 16_384 // n))
            progress(f"timing PPO rollout collection, {kind}, N={n:,}, {n_steps} steps per env")
            ppo.append({"env": kind, "n": n, "phase": "rollout", **ppo_steps_per_second(venv, n_steps, learn=False)})
            if n <= 1024:
                progress(f"timing PPO learn (collection + updates), {kind}, N={n:,}")
                ppo.append({"env": kind, "n": n, "phase": "learn", **ppo_steps_per_second(venv, n_steps, learn=True)})
    progress("timing the encoder")
    cuda = torch.device(device).type == "cuda"
    encoder = encoder_texts_per_second(predictor, n_texts=max(texts, 65_536) if cuda else texts, batch=4096 if cuda else 128)
    return {"vec_env": rows, "ppo": ppo, "encoder": encoder, "memory": peak_memory(), "device": device, "scenario": DEFAULT_SCENARIO.stem}
