"""Plain SB3 models as policies, loaded without unpickling: from SB3 itself and from rl-baselines3-zoo's
command line (with its VecNormalize pickle), and refused when a file carries code."""

from __future__ import annotations

import importlib.util
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3 import PPO

from launchsim.agents.policies.source import resolve_policy
from launchsim.agents.rollout import run_episode
from launchsim.agents.sb3.loading import read_vecnormalize_pickle
from launchsim.envs import LaunchMarketEnv
from launchsim.errors import PolicyError
from launchsim.scenarios import load_scenario

ZOO_FILE = Path(__file__).resolve().parents[3] / "agents" / "sb3" / "zoo_ppo.yml"


@pytest.fixture(scope="module")
def coffee():
    return load_scenario("food_coffee_bundle")


@pytest.fixture
def plain_zip(tmp_path, coffee):
    model = PPO("MlpPolicy", LaunchMarketEnv(coffee), n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    path = tmp_path / "plain.zip"
    model.save(path)
    return path


def test_a_plain_sb3_model_acts_as_a_policy(plain_zip, coffee):
    policy = resolve_policy(str(plain_zip), coffee)
    weekly = run_episode(LaunchMarketEnv(coffee), policy, seed=0)
    assert len(weekly) == coffee.n_steps and np.isfinite(weekly["profit"]).all()
    assert type(policy.model.policy).__name__ == "ActorCriticPolicy"


def _with_data(src: Path, dst: Path, change) -> Path:
    with zipfile.ZipFile(src) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(parts["data"])
    change(data)
    parts["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, blob in parts.items():
            archive.writestr(name, blob)
    return dst


def test_a_model_with_a_foreign_pickled_entry_is_refused_and_never_unpickled(plain_zip, coffee, tmp_path):
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Marker(marker)).hex()  # would create the file when unpickled
    bad = _with_data(plain_zip, tmp_path / "bad.zip", lambda d: d.update(surprise={":type:": "x", ":serialized:": payload}))
    with pytest.raises(PolicyError, match="holds serialized entries launchsim does not rebuild \\(surprise\\)"):
        resolve_policy(str(bad), coffee)
    # The policy class's own entry is rebuilt, never read: a payload there does not run either.
    swapped = _with_data(plain_zip, tmp_path / "swapped.zip", lambda d: d["policy_class"].update({":serialized:": payload}))
    resolve_policy(str(swapped), coffee)
    assert not marker.exists()


class _Marker:
    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_vecnormalize_pickle_is_read_without_running_its_code(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "vecnormalize.pkl"
    bad.write_bytes(pickle.dumps(_Marker(marker)))
    with pytest.raises(PolicyError, match="refused"):
        read_vecnormalize_pickle(bad)
    assert not marker.exists()


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is None, reason="needs rl_zoo3 (pip install -e '.[zoo]')")
def test_rl_zoo_trains_the_registered_id_and_its_model_evaluates_here(tmp_path, coffee):
    # rl-baselines3-zoo's own command line on the shipped hyperparameter file, a tiny budget.
    command = [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "LaunchSim/Market-v2", "--gym-packages", "launchsim.envs",
        "--conf-file", str(ZOO_FILE), "-n", "512", "--eval-freq", "-1", "-f", str(tmp_path), "--seed", "0",
        "--env-kwargs", "scenario:'food_coffee_bundle'", "-params", "n_envs:2", "n_steps:64", "batch_size:64", "n_epochs:1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (model,) = tmp_path.glob("ppo/LaunchSim-Market-v2_*/LaunchSim-Market-v2.zip")
    assert (model.with_suffix("") / "vecnormalize.pkl").is_file()  # normalize: true in the file
    policy = resolve_policy(str(model), coffee)
    assert policy.normalizer is not None and policy.normalizer.norm_obs
    assert np.isfinite(run_episode(LaunchMarketEnv(coffee), policy, seed=0)["profit"]).all()
