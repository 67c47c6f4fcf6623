"""Training runs: an SB3 agent learns a launch policy in vectorised markets, and every run is a
folder (``agents.run_folder``) that can be resumed, inspected in TensorBoard, evaluated and loaded
as a policy (``agents.policies.trained``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from launchsim.agents.evaluation.evaluate import evaluate
from launchsim.agents.policies.trained import TrainedPolicy, load_trained_policy
from launchsim.agents.sb3.loading import load_model
from launchsim.agents.sb3.buffers import load_replay_buffer
from launchsim.files import write_json
from launchsim.agents.run_folder import (
    CONFIG_FILE,
    EVAL_SEED,
    EVALUATION_FILE,
    FINAL_MODEL,
    FINAL_STATS,
    RunFolder,
    TrainConfig,
    append_line,
    command_line,
    latest_checkpoint,
    open_run,
    predictor_for,
    record_event,
    run_predictor,
    save_model,
    shared_predictor,
    warn_if_other_env_version,
    write_run_folder,
)
from launchsim.agents.sb3.algorithms import (
    ALGORITHMS,
    Algorithm,
    FlattenedActions,
    check_schedules,
    critic_sees_demand_draw,
    get_algorithm,
    linear_schedule,
    policy_argument,
    resolve_hyperparams,
    sb3_kwargs,
)
from launchsim.agents.sb3.normalizer_stats import restore_normalizer
from launchsim.agents.training.callbacks import REPLAY_BUFFER, CheckpointEvery, EntropyAnnealing, ProgressBar
from launchsim.scenarios import Scenario, load_scenario
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from launchsim.errors import TrainingError

__all__ = ["ALGORITHMS", "TrainConfig", "TrainedPolicy", "load_trained_policy", "resume", "train"]


# ---------------------------------------------------------------------------- public API


def train(config: TrainConfig, progress: bool = True) -> Path:
    """Train a fresh run into ``config.out``; return the run folder (with evaluation.json written)."""
    algorithm = get_algorithm(config.algo)
    params = resolve_hyperparams(algorithm.name, config.hyperparams)
    steps = int(config.steps or params["n_timesteps"])
    run_dir = Path(config.out)
    if (run_dir / CONFIG_FILE).exists():
        raise TrainingError(f"{run_dir}: already holds a run; continue it with --resume {run_dir} or choose another --out")
    scenarios = [load_scenario(s) for s in config.scenarios]
    names = [s.name for s in scenarios]
    if len(set(names)) < len(names):
        raise TrainingError(f"--scenario: each scenario may be given once, found {names}")
    predictor = predictor_for(config, scenarios)

    from stable_baselines3.common.utils import set_random_seed

    _set_threads(config)
    set_random_seed(config.seed)
    kind = _vec_kind(config)
    venv = _make_env(config, algorithm, params, scenarios, predictor, seed=config.seed, kind=kind)
    env_info = _env_info(config, kind, algorithm, params, scenarios, venv)
    run = RunFolder(run_dir, config, algorithm, params, steps, scenarios, env_info)
    model = _new_model(run, venv)  # before the folder: hyperparameters SB3 refuses leave no half-made run
    write_run_folder(run, predictor)
    record_event(run_dir, "start", steps=steps)
    _learn(run, model, venv, predictor, progress, fresh=True)
    return _finish(run, model, venv, predictor)


def resume(run_dir: str | Path, progress: bool = True) -> Path:
    """Continue a run from its last checkpoint (same folder, steps counted from the checkpoint)."""
    run = open_run(run_dir)
    config, algorithm = run.config, run.algorithm
    if (run.dir / FINAL_MODEL).exists():
        if (run.dir / EVALUATION_FILE).exists():
            raise TrainingError(f"{run.dir}: the run has finished ({run.steps:,} steps); nothing to resume")
        predictor = run_predictor(run)  # killed while evaluating: evaluate only
        write_json(run.dir / EVALUATION_FILE, evaluate_run(run, predictor))
        return run.dir
    found = latest_checkpoint(run.dir)
    if found is None:  # stopped before its first checkpoint: start again, with the run's own settings
        return _restart(run, progress)
    zip_path, stats_path, step = found
    warn_if_other_env_version(run)
    predictor = run_predictor(run)
    from stable_baselines3.common.utils import set_random_seed

    _set_threads(config)
    set_random_seed(config.seed + step)
    venv = _make_env(
        config, algorithm, run.params, run.scenarios, predictor, seed=config.seed + step, kind=run.env["kind"], stats=stats_path
    )
    model = load_model(
        algorithm, zip_path, venv.observation_space, venv.action_space, params=run.params, env=venv, tensorboard_log=_tensorboard_dir(run.dir),
        algorithm_class=_model_class(run.config, algorithm, venv), device=_agent_device(run.config, algorithm, venv),
    )  # fmt: skip
    model.set_random_seed(config.seed + step)
    buffer = run.dir / "checkpoints" / REPLAY_BUFFER
    if algorithm.off_policy and buffer.exists():
        load_replay_buffer(model, buffer)
    append_line(run.dir / "command.txt", command_line())
    record_event(run.dir, "resume", from_checkpoint=zip_path.name, steps_done=int(model.num_timesteps), steps=run.steps)
    _learn(run, model, venv, predictor, progress, fresh=False)
    return _finish(run, model, venv, predictor)


def _new_model(run: RunFolder, venv: VecEnv) -> Any:
    """A fresh SB3 model of the run's algorithm; SB3's own checks of the hyperparameters become a TrainingError."""
    try:
        return _model_class(run.config, run.algorithm, venv)(
            policy_argument(run.algorithm, run.params), venv, seed=run.config.seed, device=_agent_device(run.config, run.algorithm, venv), verbose=0,
            tensorboard_log=_tensorboard_dir(run.dir), **_constructor_kwargs(run.algorithm, run.params),
        )  # fmt: skip
    except (AssertionError, ValueError, TypeError) as err:
        raise TrainingError(f"hyperparameters of {run.algorithm.name}: {str(err).strip() or type(err).__name__} ({run.params})") from err


def _device_rollouts(config: TrainConfig, algorithm: Algorithm, venv: VecEnv) -> Any:
    """The batched env whose device the run's rollouts stay on, or None for SB3's VecEnv path."""
    from launchsim.agents.sb3.device_rollouts import DEVICE_ROLLOUT_ALGORITHMS, device_market

    return device_market(venv) if config.rollouts == "device" and algorithm.name in DEVICE_ROLLOUT_ALGORITHMS else None


def _model_class(config: TrainConfig, algorithm: Algorithm, venv: VecEnv) -> type:
    from launchsim.agents.sb3.device_rollouts import with_device_rollouts

    cls = algorithm.load_class()
    return with_device_rollouts(cls) if _device_rollouts(config, algorithm, venv) is not None else cls


def _agent_device(config: TrainConfig, algorithm: Algorithm, venv: VecEnv) -> str:
    """The CPU for the agent's small networks, or the env's device where rollouts stay on it."""
    market = _device_rollouts(config, algorithm, venv)
    return "cpu" if market is None else str(market.device)


def _restart(run: RunFolder, progress: bool) -> Path:
    """A run killed before its first checkpoint, trained again from step 0 in its own folder."""
    from stable_baselines3.common.utils import set_random_seed

    predictor = run_predictor(run)
    _set_threads(run.config)
    set_random_seed(run.config.seed)
    venv = _make_env(run.config, run.algorithm, run.params, run.scenarios, predictor, seed=run.config.seed, kind=run.env["kind"])
    model = _new_model(run, venv)
    append_line(run.dir / "command.txt", command_line())
    record_event(run.dir, "restart", steps=run.steps)
    _learn(run, model, venv, predictor, progress, fresh=True)
    return _finish(run, model, venv, predictor)


# ---------------------------------------------------------------------------- the learning loop


def _learn(run: RunFolder, model: Any, venv: VecEnv, predictor: Any, progress: bool, fresh: bool) -> None:
    remaining = run.steps - int(model.num_timesteps)
    if remaining <= 0:
        return
    every = run.config.checkpoint_every or max(run.steps // 10, run.config.n_envs)
    eval_every = run.config.eval_every if run.config.eval_every is not None else max(run.steps // 20, run.config.n_envs)
    first = run.scenarios[0]
    quick = None
    if eval_every > 0:
        market = predictor if run.config.market == "learned" else None

        def quick() -> float:
            policy = _live_policy(run, model, venv, first)
            return quick_profit(policy, first, 0, market, episodes=3, action_type=run.algorithm.action_type)

    callbacks = [CheckpointEvery(run.dir, every, run.algorithm.off_policy), ProgressBar(run.steps, quick, eval_every, progress)]
    entropy = linear_schedule(run.params, "ent_coef")
    if entropy is not None:
        callbacks.append(EntropyAnnealing(*entropy, total=run.steps))
    model.learn(
        total_timesteps=remaining, callback=CallbackList(callbacks), reset_num_timesteps=fresh,
        tb_log_name=run.algorithm.name,
    )  # fmt: skip


def quick_profit(
    policy: Any, scenario: Scenario, product: int, response_model: Any, episodes: int, action_type: str, seed: int = EVAL_SEED
) -> float:
    """Mean profit of ``policy`` over a few episodes of one native env (the training market)."""
    from launchsim.agents.rollout import run_episode
    from launchsim.envs.launch_market import LaunchMarketEnv

    env = LaunchMarketEnv(scenario, product=product, response_model=response_model, action_type=action_type)  # type: ignore[arg-type]
    return float(np.mean([run_episode(env, policy, seed=seed + e)["profit"].sum() for e in range(episodes)]))


def _live_policy(run: RunFolder, model: Any, venv: VecEnv, scenario: Scenario) -> TrainedPolicy:
    normalizer = venv if isinstance(venv, VecNormalize) else None
    traits = None
    if run.env["product_features"]:
        from launchsim.envs.spaces import product_traits

        traits = product_traits(scenario, 0, shared_predictor(run.config.predictor, run.config.device))
    shared = np.asarray(run.env["action_nvec"], dtype=np.int64) if run.env["action_nvec"] else None
    return TrainedPolicy(
        model, run.algorithm, scenario, 0, normalizer=normalizer, traits=traits, shared_nvec=shared,
        critic_fields=run.env.get("critic_fields", 0),
    )  # fmt: skip


def _finish(run: RunFolder, model: Any, venv: VecEnv, predictor: Any) -> Path:
    save_model(model, venv, run.dir / FINAL_MODEL, run.dir / FINAL_STATS)
    record_event(run.dir, "finish", steps=int(model.num_timesteps))
    evaluation = evaluate_run(run, predictor)
    write_json(run.dir / EVALUATION_FILE, evaluation)
    return run.dir


def evaluate_run(run: RunFolder, predictor: Any) -> dict[str, Any]:
    """Each (scenario, product) trained on, through ``agents.evaluation.evaluate`` (truth, learned, oracle,
    heuristics), or with ``evaluation: quick`` the policy's mean profit in the training market alone."""
    full = run.config.evaluation == "full"
    markets = []
    for scenario in run.scenarios:
        for product in range(len(scenario.products)):
            head = {"scenario": scenario.name, "product": product, "product_name": scenario.products[product].name}
            if full:
                result = evaluate(
                    scenario, str(run.dir), episodes=run.config.eval_episodes, seed=EVAL_SEED, product=product,
                    predictor=predictor,
                )  # fmt: skip
                markets.append({**head, **result})
            else:
                policy = load_trained_policy(run.dir, scenario, product)
                market = predictor if run.config.market == "learned" else None
                profit = quick_profit(policy, scenario, product, market, run.config.eval_episodes, run.algorithm.action_type)
                markets.append({**head, "training_market": {"market": run.config.market, "profit_mean": profit}})
    evaluator = "agents.evaluation.evaluate" if full else f"quick: the policy in the training market ({run.config.market}) only"
    return {"evaluator": evaluator, "episodes": run.config.eval_episodes, "seed": EVAL_SEED, "markets": markets}


# ---------------------------------------------------------------------------- envs and models


def _make_env(
    config: TrainConfig, algorithm: Algorithm, params: dict[str, Any], scenarios: list[Scenario], predictor: Any,
    seed: int, kind: str, stats: Path | None = None,
) -> VecEnv:  # fmt: skip
    from launchsim.envs.vector import make_market_vec_env

    venv = make_market_vec_env(
        scenarios, config.n_envs, market=config.market, predictor=predictor, seed=seed,
        action_type=algorithm.action_type, kind=kind, device=config.device, demand_spread=config.demand_spread,
        outcomes=config.outcomes, critic_demand_draw=critic_sees_demand_draw(algorithm, params),
    )  # fmt: skip
    if algorithm.flatten_actions:
        venv = FlattenedActions(venv)
    norm = params.get("normalize") or {}
    if not (norm.get("obs") or norm.get("reward")):
        return venv
    if stats is not None and stats.exists():
        return restore_normalizer(venv, stats)
    return VecNormalize(
        venv, norm_obs=bool(norm.get("obs")), norm_reward=bool(norm.get("reward")), gamma=float(params.get("gamma", 0.99)),
        clip_obs=float(norm.get("clip_obs", 10.0)), clip_reward=float(norm.get("clip_reward", 10.0)),
    )  # fmt: skip


def _set_threads(config: TrainConfig) -> None:
    if config.torch_threads is not None:
        import torch

        torch.set_num_threads(config.torch_threads)


BATCHED_FROM_N_ENVS = 64  # on a CPU; docs/BENCHMARKS.md: PPO learns 2.5x faster batched at 64 envs, 12x at 1,024


def _vec_kind(config: TrainConfig) -> str:
    """The batched tensor env where a GPU holds the predictor or from 64 envs on; SB3's DummyVecEnv of
    single envs for a few envs on a CPU (faster at 8 envs: 10.3k vs 4.5k learned-market steps/s on 2 cores)."""
    if config.vec_kind is not None:
        return config.vec_kind
    import torch

    cuda = torch.cuda.is_available() and (config.device is None or config.device.startswith("cuda"))
    return "batched" if cuda or config.n_envs >= BATCHED_FROM_N_ENVS else "dummy"


def _constructor_kwargs(algorithm: Algorithm, params: dict[str, Any]) -> dict[str, Any]:
    check_schedules(algorithm, params)
    kwargs = sb3_kwargs(params)
    if params.get("action_noise_std"):
        from stable_baselines3.common.noise import NormalActionNoise

        std = float(params["action_noise_std"])
        kwargs["action_noise"] = NormalActionNoise(np.zeros(6), np.full(6, std))
    return kwargs


def _tensorboard_dir(run_dir: Path) -> str | None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return None  # SB3 needs the tensorboard package for its writer; the run still works without
    return str(run_dir / "tensorboard")


# ---------------------------------------------------------------------------- the run folder


def _env_info(
    config: TrainConfig, kind: str, algorithm: Algorithm, params: dict[str, Any], scenarios: list[Scenario], venv: VecEnv
) -> dict[str, Any]:  # fmt: skip
    from launchsim.envs.launch_market import ENV_VERSION
    from launchsim.envs.spaces import CRITIC_FIELDS, OBSERVATION_NAMES

    raw = venv.venv if isinstance(venv, VecNormalize) else venv
    shared = getattr(raw, "nvec", None) if algorithm.flatten_actions else getattr(raw.action_space, "nvec", None)
    size = int(venv.observation_space.shape[0])
    critic = len(CRITIC_FIELDS) if critic_sees_demand_draw(algorithm, params) else 0
    return {
        "kind": kind,
        "rollouts": "device" if _device_rollouts(config, algorithm, venv) is not None else "vecenv",
        "version": ENV_VERSION,
        "action_type": algorithm.action_type,
        "action_nvec": None if shared is None else [int(n) for n in shared],
        "observation_size": size,
        "product_features": size - critic > len(OBSERVATION_NAMES),
        "critic_fields": critic,  # trailing fields only the critic reads (agents.critic_policy); the actor is given 0
        "markets": [[s.name, i] for s in scenarios for i in range(len(s.products))],
        "scenario_files": [f"scenarios/{s.name}.yaml" for s in scenarios],
    }


