"""The SB3 algorithms a training run can use, their shipped hyperparameters, and the adapters that
fit each algorithm's action space onto the market's levers.

PPO, A2C and MaskablePPO act in the ``MultiDiscrete`` levers directly (MaskablePPO also reads the
env's ``action_masks()``); DQN needs one ``Discrete`` action, so ``FlattenedActions`` numbers every
lever combination; SAC and TD3 act in the continuous ``Box`` variant of the levers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from gymnasium import spaces
from launchsim.envs.actions import ActionType
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from launchsim.errors import TrainingError, lookup
from launchsim.scenarios.loader import load_yaml

HYPERPARAMS_FILE = Path(__file__).resolve().parent / "hyperparams.yaml"
# Keys of a hyperparameter block that are ours, not keyword arguments of the SB3 class.
RUN_KEYS = ("n_timesteps", "policy", "normalize", "action_noise_std", "critic_sees_demand_draw")
# Keys that may be annealed linearly over the run: a mapping {start: X, end: Y} in place of a number.
# SB3 takes schedules for the first two; the entropy coefficient is set by a callback (EntropyAnnealing).
SCHEDULE_KEYS = ("learning_rate", "clip_range", "ent_coef")


@dataclass(frozen=True)
class Algorithm:
    """How to build one algorithm: its class, the action type it needs and how actions are adapted."""

    name: str
    module: str  # imported lazily: sb3_contrib is only needed for MaskablePPO
    class_name: str
    action_type: ActionType
    flatten_actions: bool = False  # DQN: MultiDiscrete levers as one Discrete index
    action_masks: bool = False  # MaskablePPO: invalid lever values masked out
    off_policy: bool = False  # keeps a replay buffer, saved with checkpoints
    critic_fields_policy: str | None = None  # its actor-critic class whose critic reads fields the actor does not

    def load_class(self) -> type:
        import importlib

        return getattr(importlib.import_module(self.module), self.class_name)


ALGORITHMS: dict[str, Algorithm] = {
    "ppo": Algorithm("ppo", "stable_baselines3", "PPO", "multidiscrete", critic_fields_policy="CriticFieldsPolicy"),
    "a2c": Algorithm("a2c", "stable_baselines3", "A2C", "multidiscrete", critic_fields_policy="CriticFieldsPolicy"),
    "dqn": Algorithm("dqn", "stable_baselines3", "DQN", "multidiscrete", flatten_actions=True, off_policy=True),
    "sac": Algorithm("sac", "stable_baselines3", "SAC", "box", off_policy=True),
    "td3": Algorithm("td3", "stable_baselines3", "TD3", "box", off_policy=True),
    "maskable_ppo": Algorithm(
        "maskable_ppo", "sb3_contrib", "MaskablePPO", "multidiscrete", action_masks=True, critic_fields_policy="MaskableCriticFieldsPolicy"
    ),
}


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name``; a typo fails naming the closest one."""
    return lookup(ALGORITHMS, name.lower(), "algorithm", error=TrainingError)


# ---------------------------------------------------------------------------- hyperparameters

_ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "silu": "SiLU", "elu": "ELU", "leaky_relu": "LeakyReLU"}


def default_hyperparams(algo: str) -> dict[str, Any]:
    """The shipped hyperparameters of ``algo`` (agents/hyperparams.yaml)."""
    return copy.deepcopy(read_hyperparams_file(HYPERPARAMS_FILE)[get_algorithm(algo).name])


def read_hyperparams_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """A YAML file of hyperparameter blocks keyed by algorithm name (checked against the registry)."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise TrainingError(f"{path}: unreadable hyperparameter file: {err}") from err
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise TrainingError(f"{path}: expected a mapping of algorithm name -> mapping of hyperparameters")
    for name in data:
        lookup(ALGORITHMS, str(name), f"algorithm in {path}", error=TrainingError)
    return data


def resolve_hyperparams(algo: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped block of ``algo`` with ``overrides`` applied on top (nested dicts merged)."""
    params = default_hyperparams(algo)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            params[key] = {**params[key], **value}
        else:
            params[key] = value
    return params


def linear_schedule(params: dict[str, Any], key: str) -> tuple[float, float] | None:
    """(start, end) where ``params[key]`` is a linear schedule {start: X, end: Y}; None for a plain value."""
    value = params.get(key)
    if not isinstance(value, dict):
        return None
    if key not in SCHEDULE_KEYS or set(value) != {"start", "end"}:
        raise TrainingError(
            f"hyperparameter {key}: a schedule is a mapping {{start: X, end: Y}} and only {', '.join(SCHEDULE_KEYS)} "
            f"take one, found {value!r}"
        )
    try:
        return float(value["start"]), float(value["end"])
    except (TypeError, ValueError) as err:
        raise TrainingError(f"hyperparameter {key}: start and end must be numbers, found {value!r}") from err


def schedules(params: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Every linear schedule in ``params`` as key -> (start, end); a TrainingError for a schedule on a
    key that takes none (a mapping with start or end) or a malformed one."""
    found = {}
    for key, value in params.items():
        if key in SCHEDULE_KEYS or (isinstance(value, dict) and {"start", "end"} & set(value)):
            schedule = linear_schedule(params, key)
            if schedule is not None:
                found[key] = schedule
    return found


def check_schedules(algorithm: Algorithm, params: dict[str, Any]) -> None:
    """A TrainingError for a bad schedule in ``params``, or an entropy schedule where ``algorithm``
    has no fixed entropy coefficient to anneal (the off-policy ones)."""
    if "ent_coef" in schedules(params) and algorithm.off_policy:
        raise TrainingError(f"{algorithm.name}: ent_coef takes a schedule only in on-policy algorithms (ppo, a2c, maskable_ppo)")


def critic_sees_demand_draw(algorithm: Algorithm, params: dict[str, Any]) -> bool:
    """Whether the run's critic reads the episode's demand draw (``critic_sees_demand_draw``); a
    TrainingError where ``algorithm`` has no critic of that kind or another policy is named."""
    if not params.get("critic_sees_demand_draw"):
        return False
    if algorithm.critic_fields_policy is None:
        raise TrainingError(f"{algorithm.name}: critic_sees_demand_draw needs an actor-critic algorithm (ppo, a2c, maskable_ppo)")
    if params.get("policy", "MlpPolicy") != "MlpPolicy":
        raise TrainingError(f"{algorithm.name}: critic_sees_demand_draw builds on MlpPolicy, found policy {params['policy']!r}")
    return True


def policy_argument(algorithm: Algorithm, params: dict[str, Any]) -> Any:
    """The SB3 constructor's policy: the name in ``params`` (MlpPolicy by default), or the class whose
    critic alone reads the demand draw (``agents.critic_policy``)."""
    if not critic_sees_demand_draw(algorithm, params):
        return params.get("policy", "MlpPolicy")
    from launchsim.agents.sb3 import critic_policy  # torch and SB3's policies: only when asked for

    return getattr(critic_policy, algorithm.critic_fields_policy)


def sb3_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for the SB3 constructor: our run keys removed, names in policy_kwargs resolved,
    linear schedules built (SB3's ``LinearSchedule``; the entropy coefficient starts at its start value)."""
    from stable_baselines3.common.utils import LinearSchedule

    kwargs = {k: v for k, v in params.items() if k not in RUN_KEYS}
    for key, (start, end) in schedules(kwargs).items():
        kwargs[key] = start if key == "ent_coef" else LinearSchedule(start, end, end_fraction=1.0)
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    if isinstance(policy_kwargs.get("activation_fn"), str):
        from torch import nn

        name = lookup(_ACTIVATIONS, policy_kwargs["activation_fn"], "activation_fn", error=TrainingError)
        policy_kwargs["activation_fn"] = getattr(nn, name)
    if params.get("critic_sees_demand_draw"):
        from launchsim.envs.spaces import CRITIC_FIELDS

        policy_kwargs["critic_only"] = len(CRITIC_FIELDS)
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


# ---------------------------------------------------------------------------- action adapters


class FlattenedActions(VecEnvWrapper):
    """A MultiDiscrete VecEnv seen through one Discrete action that numbers every lever combination (for DQN)."""

    def __init__(self, venv: VecEnv):
        if not isinstance(venv.action_space, spaces.MultiDiscrete):
            raise TrainingError(f"FlattenedActions needs a MultiDiscrete action space, found {venv.action_space}")
        self.nvec = np.asarray(venv.action_space.nvec, dtype=np.int64)
        super().__init__(venv, action_space=spaces.Discrete(int(np.prod(self.nvec))))

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(unflatten_action(actions, self.nvec))

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        return self.venv.step_wait()


def unflatten_action(index: Any, nvec: np.ndarray) -> np.ndarray:
    """The MultiDiscrete action(s) numbered ``index`` (C order, the inverse of ``flatten_action``)."""
    index = np.asarray(index, dtype=np.int64).reshape(-1)
    return np.stack(np.unravel_index(index, tuple(int(n) for n in nvec)), axis=-1).astype(np.int64)


def flatten_action(action: Any, nvec: np.ndarray) -> np.ndarray:
    """The Discrete index of MultiDiscrete action(s)."""
    action = np.atleast_2d(np.asarray(action, dtype=np.int64))
    return np.ravel_multi_index(tuple(action.T), tuple(int(n) for n in nvec))
