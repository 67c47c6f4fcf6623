"""VecNormalize statistics round-trip through JSON: the same normalised observations, no pickle."""

import numpy as np

from launchsim.agents.sb3.normalizer_stats import ObservationScaler, restore_normalizer, write_stats
from launchsim.envs.vector import make_market_vec_env
from launchsim.scenarios import load_scenario
from stable_baselines3.common.vec_env import VecNormalize


def test_stats_round_trip(tmp_path):
    scenario = load_scenario("food_coffee_bundle")
    venv = VecNormalize(make_market_vec_env(scenario, 4, market="structural", kind="dummy", seed=0), gamma=0.97, clip_obs=5.0)
    venv.reset()
    for _ in range(30):
        venv.step(np.stack([venv.action_space.sample() for _ in range(4)]))
    path = tmp_path / "stats.json"
    write_stats(venv, path)
    assert not list(tmp_path.glob("tmp_*"))
    obs = np.random.default_rng(0).uniform(-1, 3, (7, venv.observation_space.shape[0])).astype(np.float32)
    np.testing.assert_array_equal(ObservationScaler(path).normalize_obs(obs), venv.normalize_obs(obs))
    restored = restore_normalizer(make_market_vec_env(scenario, 4, market="structural", kind="dummy", seed=0), path)
    assert restored.training and restored.gamma == 0.97 and restored.clip_obs == 5.0
    np.testing.assert_array_equal(restored.obs_rms.var, venv.obs_rms.var)
    assert restored.ret_rms.count == venv.ret_rms.count
    np.testing.assert_array_equal(restored.normalize_obs(obs), venv.normalize_obs(obs))
