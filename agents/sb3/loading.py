"""Loading SB3 models and their normalisation statistics without running code from the files.

An SB3 ``.zip`` keeps most of its settings as JSON, but some (the policy class, the spaces, schedules,
buffer classes, policy keyword arguments that hold a class) as cloudpickled objects that SB3 unpickles
on load: a model someone sent could run code then. Here every such entry is rebuilt instead, from the
run's own configuration (a run folder) or from the algorithm's shipped settings and the env's spaces
(a plain SB3 model), and passed to SB3 as ``custom_objects`` so that SB3 never unpickles it; a model
whose archive holds any other serialized entry is refused. The network weights are read by SB3 with
``torch.load(weights_only=True)``.

SB3's ``VecNormalize.save`` and rl-baselines3-zoo write the normaliser as a pickle
(``vecnormalize.pkl``): it is read with an unpickler that builds only NumPy arrays and the normaliser's
own statistics objects (``read_vecnormalize_pickle``) and refuses anything else.
"""

from __future__ import annotations

import inspect
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from launchsim.agents.sb3.algorithms import ALGORITHMS, Algorithm, policy_argument, resolve_hyperparams, sb3_kwargs
from launchsim.errors import PolicyError


def serialized_entries(zip_path: Path) -> dict[str, Any]:
    """The settings of an SB3 model file (its ``data`` JSON), read as plain JSON."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return json.loads(archive.read("data"))
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PolicyError(f"{zip_path}: not an SB3 model file ({type(err).__name__}: {err})") from err


def detect_algorithm(data: dict[str, Any], where: Path) -> Algorithm:
    """Which algorithm saved a model, from its plain settings and the policy class's module and name."""
    policy = data.get("policy_class", {})
    text = json.dumps({k: v for k, v in policy.items() if k != ":serialized:"}) if isinstance(policy, dict) else ""
    if "sb3_contrib" in text and "Maskable" in text:
        return ALGORITHMS["maskable_ppo"]
    for name, marker in (("dqn", "exploration_final_eps"), ("td3", "target_policy_noise"), ("sac", "target_entropy"), ("ppo", "clip_range")):
        if marker in data:
            return ALGORITHMS[name]
    if "ActorCriticPolicy" in text:
        return ALGORITHMS["a2c"]
    raise PolicyError(f"{where}: cannot tell which SB3 algorithm saved this model (expected one of {', '.join(ALGORITHMS)})")


def load_model(
    algorithm: Algorithm, zip_path: Path, observation_space: spaces.Space, action_space: spaces.Space,
    params: dict[str, Any] | None = None, env: Any = None, algorithm_class: type | None = None, device: str = "cpu", **kwargs: Any,
) -> Any:  # fmt: skip
    """``algorithm``'s model from ``zip_path`` with every serialized entry rebuilt (nothing unpickled):
    ``params`` are the hyperparameters it trained with (default: the shipped ones); ``algorithm_class``
    a subclass of the algorithm's to load it as (``agents.sb3.device_rollouts``)."""
    data = serialized_entries(zip_path)
    serialized = [key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value]
    rebuilt = _rebuilt_entries(algorithm, params if params is not None else resolve_hyperparams(algorithm.name), observation_space, action_space)
    unknown = sorted(set(serialized) - set(rebuilt))
    if unknown:
        raise PolicyError(
            f"{zip_path}: holds serialized entries launchsim does not rebuild ({', '.join(unknown)}); loading them would "
            "run code from the file, so the model is refused"
        )
    try:
        return (algorithm_class or algorithm.load_class()).load(zip_path, env=env, device=device, custom_objects={k: rebuilt[k] for k in serialized}, **kwargs)
    except (RuntimeError, ValueError, KeyError) as err:  # weights of another shape, or settings SB3 rejects
        raise PolicyError(f"{zip_path}: does not fit a {algorithm.name} policy for this market ({str(err).splitlines()[0]})") from err


def _rebuilt_entries(algorithm: Algorithm, params: dict[str, Any], observation_space: spaces.Space, action_space: spaces.Space) -> dict[str, Any]:
    from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

    kwargs = sb3_kwargs(params)
    policy = policy_argument(algorithm, params)
    if isinstance(policy, str):
        policy = algorithm.load_class().policy_aliases[policy]
    learning_rate = kwargs.get("learning_rate", 3e-4)
    constant = FloatSchedule(ConstantSchedule(0.0))
    entries = {
        "policy_class": policy,
        "observation_space": observation_space,
        "action_space": action_space,
        "learning_rate": learning_rate,
        "lr_schedule": constant,  # rebuilt from learning_rate when the model is set up
        "clip_range": kwargs.get("clip_range", 0.2),
        "clip_range_vf": kwargs.get("clip_range_vf"),
        "policy_kwargs": kwargs.get("policy_kwargs", {}),
        "rollout_buffer_class": None,
        "rollout_buffer_kwargs": {},
        "replay_buffer_class": None,
        "replay_buffer_kwargs": {},
        "action_noise": None,
        "exploration_schedule": LinearSchedule(1.0, 0.05, 0.1),  # DQN rebuilds it from its settings
        "ent_coef": kwargs.get("ent_coef", 0.0),
        # the state of a run in progress (a model saved while it learned): rebuilt when it learns again
        "_last_obs": None, "_last_episode_starts": None, "_last_original_obs": None,
        "ep_info_buffer": None, "ep_success_buffer": None,
    }
    if "action_noise" in kwargs:
        entries["action_noise"] = kwargs["action_noise"]
    # train_freq (off-policy): as trained, else the class's default; SB3 turns it into its TrainFreq record
    entries["train_freq"] = kwargs.get("train_freq", inspect.signature(algorithm.load_class()).parameters.get("train_freq", _NONE).default)
    return entries


_NONE = inspect.Parameter("none", inspect.Parameter.KEYWORD_ONLY, default=1)


# ---------------------------------------------------------------------- VecNormalize pickles


class _StatisticsUnpickler(pickle.Unpickler):
    """Builds only what a pickled VecNormalize holds that launchsim reads: NumPy arrays and the running
    statistics. The normaliser itself and the spaces it carries become plain attribute holders (no method of
    theirs runs), random generators inside them are dropped, and any other global is refused."""

    ARRAYS = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("stable_baselines3.common.running_mean_std", "RunningMeanStd"),
    }  # fmt: skip
    HOLDERS = {
        ("stable_baselines3.common.vec_env.vec_normalize", "VecNormalize"), ("gymnasium.spaces.box", "Box"),
        ("gymnasium.spaces.discrete", "Discrete"), ("gymnasium.spaces.multi_discrete", "MultiDiscrete"),
    }  # fmt: skip
    DROPPED_MODULES = ("numpy.random._pickle", "numpy.random.bit_generator", "numpy.random._pcg64", "numpy.random._mt19937", "numpy.random._philox", "numpy.random._sfc64")

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ARRAYS:
            return super().find_class(module, name)
        if (module, name) in self.HOLDERS:
            return _State
        if module in self.DROPPED_MODULES:
            return _dropped
        raise pickle.UnpicklingError(f"refused {module}.{name}")


class _State:
    """Stands in for a pickled object whose attributes alone are read; none of its code runs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.__dict__.update(state)


def _dropped(*args: Any, **kwargs: Any) -> _State:
    return _State()


def read_vecnormalize_pickle(path: Path) -> dict[str, Any]:
    """A pickled VecNormalize's settings and statistics as the JSON form ``normalizer_stats`` reads."""
    try:
        state = _StatisticsUnpickler(io.BytesIO(Path(path).read_bytes())).load()
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as err:
        raise PolicyError(f"{path}: not a VecNormalize file launchsim reads ({err})") from err
    values = getattr(state, "__dict__", {})
    try:
        rms = values["obs_rms"]
        return {
            "norm_obs": bool(values["norm_obs"]), "norm_reward": bool(values.get("norm_reward", False)),
            "clip_obs": float(values["clip_obs"]), "clip_reward": float(values.get("clip_reward", 10.0)),
            "gamma": float(values.get("gamma", 0.99)), "epsilon": float(values["epsilon"]),
            "obs_rms": {"mean": np.asarray(rms.mean).tolist(), "var": np.asarray(rms.var).tolist(), "count": float(rms.count)},
            "ret_rms": {"mean": 0.0, "var": 1.0, "count": 1.0},
        }  # fmt: skip
    except (KeyError, AttributeError) as err:
        raise PolicyError(f"{path}: a VecNormalize file without observation statistics ({err})") from err
