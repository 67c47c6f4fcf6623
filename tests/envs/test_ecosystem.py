"""The env as Gymnasium, SB3 and their users reach it: from its registered ids, with the learned market
chosen by a plain option, through SB3's ``make_vec_env`` and ``SubprocVecEnv``, pickled small."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import launchsim.envs  # noqa: F401  (registers the ids)
from launchsim.envs import ENV_IDS, LaunchMarketEnv


def test_an_unsupported_render_mode_warns_as_gymnasium_envs_do():
    with pytest.warns(UserWarning, match="render_mode='rgb_array' that is not in the possible render_modes"):  # Gymnasium's own
        env = gym.make(ENV_IDS["multidiscrete"], render_mode="rgb_array")
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render\\(\\) returns None"):
        assert env.unwrapped.render() is None


SCRIPT = """
import numpy as np
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import launchsim.envs  # registers the ids; SubprocVecEnv's workers import this script's imports too

if __name__ == "__main__":
    venv = make_vec_env("LaunchSim/Market-v2", n_envs=2, vec_env_cls=SubprocVecEnv)
    obs = venv.reset()
    obs, rewards, dones, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    venv.close()
    print(obs.shape, bool(np.isfinite(rewards).all()))
"""


def test_sb3_make_vec_env_with_subprocesses_from_the_id(tmp_path):
    # As a user runs it: a script that imports launchsim.envs and builds SB3's SubprocVecEnv from the id.
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["(2,", "25)", "True"]


def test_an_id_with_its_module_needs_no_import_in_the_workers():
    # Gymnasium's module:id form imports launchsim.envs wherever the env is made (here in forkserver workers).
    venv = make_vec_env("launchsim.envs:LaunchSim/Market-v2", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv, env_kwargs={"scenario": "food_coffee_bundle"})
    try:
        obs = venv.reset()
        obs, rewards, _, infos = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
        assert obs.shape == (2, 25) and np.isfinite(rewards).all() and len(infos) == 2
    finally:
        venv.close()


def test_the_learned_market_from_a_plain_option_and_its_own_id(tiny_ensemble_dirs):
    folder = str(tiny_ensemble_dirs[0])
    env = gym.make(ENV_IDS["multidiscrete"], scenario="food_coffee_bundle", market="learned", predictor=folder)
    assert env.unwrapped.market.source is not None and str(env.unwrapped.market.source) == folder
    env.reset(seed=0)
    assert np.isfinite(env.step(env.action_space.sample())[1])
    learned = gym.make(ENV_IDS["learned"], scenario="food_coffee_bundle", predictor=folder)
    assert learned.unwrapped.market is env.unwrapped.market  # one predictor per folder and process
    with pytest.raises(ValueError, match="market must be one of"):
        LaunchMarketEnv("food_coffee_bundle", market="trained")
    with pytest.raises(ValueError, match="predictor= needs market='learned'"):
        LaunchMarketEnv("food_coffee_bundle", predictor=folder)


def test_the_learned_env_pickles_small_and_plays_the_same_after(tiny_ensemble_dirs):
    env = LaunchMarketEnv("food_coffee_bundle", market="learned", predictor=str(tiny_ensemble_dirs[2]))
    env.reset(seed=3)
    env.step(np.array([1, 2, 0, 1, 0]))
    blob = pickle.dumps(env)
    assert len(blob) < 200_000  # the encoder stays behind: the worker loads the folder once
    twin = pickle.loads(blob)
    for action in ([1, 1, 1, 2, 0], [1, 3, 0, 0, 0], [1, 0, 2, 3, 0]):
        a, b = env.step(np.array(action)), twin.step(np.array(action))
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == b[1]
    structural = pickle.loads(pickle.dumps(LaunchMarketEnv("food_coffee_bundle")))
    structural.reset(seed=0)
    assert np.isfinite(structural.step(structural.action_space.sample())[1])
