"""A trained SB3 model acting in the native single env of one (scenario, product).

Training may have seen the market through adapters: observation normalisation, product traits
appended to the observation, fields only the critic read, a shared action space over several
scenarios, DQN's flattened action.
``TrainedPolicy`` applies the same adapters around ``model.predict`` so that the policy runs on a
plain ``LaunchMarketEnv`` like a heuristic does (``agents.rollout.Policy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from launchsim.agents.algorithms import Algorithm, masks_from_observation, unflatten_action
from launchsim.envs.actions import ActionLayout
from launchsim.envs.spaces import OBSERVATION_NAMES
from launchsim.envs.spaces import clip_action
from launchsim.scenarios.schema import Scenario


class TrainedPolicy:
    """SB3's ``predict`` on native observations and actions of ``scenario``'s product ``product``."""

    def __init__(
        self,
        model: Any,
        algorithm: Algorithm,
        scenario: Scenario,
        product: int = 0,
        normalizer: Any = None,
        traits: np.ndarray | None = None,
        shared_nvec: np.ndarray | None = None,
        critic_fields: int = 0,
    ):
        self.model = model
        self.algorithm = algorithm
        self.action_type = algorithm.action_type  # the native env's action space: multidiscrete or box
        self.scenario = scenario
        self.product = product
        self.normalizer = normalizer  # anything with normalize_obs: a VecNormalize or an ObservationScaler; or None
        self.traits = None if traits is None or len(traits) == 0 else np.asarray(traits, dtype=np.float32)
        self.native_nvec = ActionLayout(scenario, "multidiscrete").nvec
        self.shared_nvec = self.native_nvec if shared_nvec is None else np.asarray(shared_nvec, dtype=np.int64)
        # What follows the native fields in every observation, built once: the traits, then 0 for each field
        # only the critic read in training (agents.critic_policy; the actor ignores them).
        critic_pad = np.zeros(int(critic_fields), dtype=np.float32)
        self._appended = critic_pad if self.traits is None else np.concatenate([self.traits, critic_pad])

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """Actions for one observation (or a batch) of the native env, in that env's action space."""
        raw = np.asarray(observation, dtype=np.float32)
        single = raw.ndim == 1
        batch = np.atleast_2d(raw)[:, : len(OBSERVATION_NAMES)]
        obs = np.hstack([batch, np.tile(self._appended, (len(batch), 1))]) if len(self._appended) else batch
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs).astype(np.float32)
        extra = {}
        if self.algorithm.action_masks:
            extra["action_masks"] = np.stack(
                [masks_from_observation(row, self.scenario, self.product, self.shared_nvec) for row in batch]
            )
        action, state = self.model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic, **extra)
        if self.algorithm.flatten_actions:
            action = unflatten_action(action, self.shared_nvec)
        if self.algorithm.action_type == "multidiscrete":
            action = clip_action(action, self.native_nvec)
        return (action[0] if single else action), state
