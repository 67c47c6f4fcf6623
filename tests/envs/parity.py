"""One check the lever tests share: a scenario's markets step the same in the batched VecEnv as in
single envs."""

from __future__ import annotations

import numpy as np
import pytest

from launchsim.envs import LaunchMarketEnv
from launchsim.envs.batched_market import BatchedMarketVecEnv


def assert_batch_steps_as_single_envs(
    scenario, seed: int, actions_seed: int, outcomes: str = "sampled", launch_share: float | None = None, episodes: int = 1
):
    """Four markets of ``scenario`` seeded ``seed``.. in the batched env and as single envs, stepped
    through ``episodes`` episodes with the same random actions (``launch_share``: the chance of "launch"
    each step, else uniform): equal masks, rewards and observations."""
    venv = BatchedMarketVecEnv([(scenario, 0)] * 4, market="structural", outcomes=outcomes)
    singles = [LaunchMarketEnv(scenario, outcomes=outcomes) for _ in range(4)]
    venv.seed(seed)
    obs = venv.reset()
    rng = np.random.default_rng(actions_seed)
    for episode in range(episodes):
        for i, env in enumerate(singles):  # the batch has reset its markets already
            np.testing.assert_allclose(env.reset(seed=None if episode else seed + i)[0], obs[i], rtol=1e-6)
        for _ in range(scenario.n_steps):
            np.testing.assert_array_equal(venv.action_masks(), np.stack([env.action_masks() for env in singles]))
            actions = np.stack([rng.integers(0, venv.action_space.nvec) for _ in range(4)])
            if launch_share is not None:
                actions[:, 0] = rng.random(4) < launch_share
            obs, rewards, _, _ = venv.step(actions)
            for i, env in enumerate(singles):
                single_obs, reward, done, _, _ = env.step(actions[i])
                assert reward == pytest.approx(rewards[i], rel=1e-9)
                if not done:
                    np.testing.assert_allclose(single_obs, obs[i], rtol=1e-6)
