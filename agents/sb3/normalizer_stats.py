"""VecNormalize statistics as plain JSON: written with each checkpoint, read back for resume and for
playing a trained policy, without unpickling anything (SB3's own ``VecNormalize.save`` pickles the
whole wrapper)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize
from launchsim.files import atomic_write

SETTINGS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")


def write_stats(normalizer: VecNormalize, path: Path) -> None:
    """The normaliser's settings and running statistics, atomically (temporary file, then rename)."""
    data = {name: getattr(normalizer, name) for name in SETTINGS}
    data["obs_rms"] = _rms_dict(normalizer.obs_rms)
    data["ret_rms"] = _rms_dict(normalizer.ret_rms)
    atomic_write(path, json.dumps(data))


def restore_normalizer(venv: VecEnv, path: Path) -> VecNormalize:
    """A training VecNormalize around ``venv`` that continues from the statistics in ``path``."""
    data = json.loads(Path(path).read_text())
    normalizer = VecNormalize(venv, **{name: data[name] for name in SETTINGS})
    normalizer.obs_rms = _rms(data["obs_rms"])
    normalizer.ret_rms = _rms(data["ret_rms"])
    return normalizer


class ObservationScaler:
    """The observation half of a saved VecNormalize, for a policy that plays single envs."""

    def __init__(self, stats: Path | dict[str, Any]):
        data = stats if isinstance(stats, dict) else json.loads(Path(stats).read_text())
        self.norm_obs = bool(data["norm_obs"])
        self.clip_obs, self.epsilon = float(data["clip_obs"]), float(data["epsilon"])
        self.obs_rms = _rms(data["obs_rms"])

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """As ``VecNormalize.normalize_obs`` for a Box observation."""
        if not self.norm_obs:
            return obs
        rms = self.obs_rms
        return np.clip((obs - rms.mean) / np.sqrt(rms.var + self.epsilon), -self.clip_obs, self.clip_obs).astype(np.float32)


def _rms_dict(rms: RunningMeanStd) -> dict[str, Any]:
    return {"mean": np.asarray(rms.mean).tolist(), "var": np.asarray(rms.var).tolist(), "count": float(rms.count)}


def _rms(data: dict[str, Any]) -> RunningMeanStd:
    mean = np.asarray(data["mean"], dtype=np.float64)
    rms = RunningMeanStd(shape=mean.shape)
    rms.mean, rms.var, rms.count = mean, np.asarray(data["var"], dtype=np.float64), float(data["count"])
    return rms
