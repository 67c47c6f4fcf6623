"""Actor-critic policies whose critic reads fields the actor may not: an asymmetric actor-critic.

Training randomises each episode's demand level (``train --demand-spread``) so that a policy copes
with a market whose level is off; the actor must not see that draw, since no real market tells it.
Its critic may: a value baseline that knows the episode's demand level takes that level's share out
of every advantage, which otherwise swamps the effect of one week's price (a 0.1% difference in
profit against a 34% spread of the episode's total). The observation ends with ``critic_only``
such fields (``envs.vector.CRITIC_FIELDS``); the actor's features are the observation with them
zeroed, the critic's the whole observation. A trained actor is therefore given anything there (0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor


class HideTrailingFields(BaseFeaturesExtractor):
    """The flat observation with its last ``hidden`` numbers set to 0 (the actor's view)."""

    def __init__(self, observation_space: spaces.Box, hidden: int):
        n = int(np.prod(observation_space.shape))
        if not 0 < hidden < n:
            raise ValueError(f"critic_only must hide between 1 and {n - 1} of {n} observation fields, found {hidden}")
        super().__init__(observation_space, n)
        keep = torch.ones(n)
        keep[n - hidden :] = 0.0
        self.register_buffer("keep", keep)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return observations.flatten(1) * self.keep


class _CriticFieldsMixin:
    """The change to an SB3 actor-critic class: separate extractors, the actor's hiding the last
    ``critic_only`` fields (the critic's sees everything); ``critic_only`` saved with the model."""

    def __init__(self, *args: Any, critic_only: int = 1, **kwargs: Any):
        kwargs["share_features_extractor"] = False
        super().__init__(*args, **kwargs)
        self.critic_only = int(critic_only)
        self.features_extractor = self.pi_features_extractor = HideTrailingFields(self.observation_space, self.critic_only)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "critic_only": self.critic_only}


class CriticFieldsPolicy(_CriticFieldsMixin, ActorCriticPolicy):
    """SB3's MLP actor-critic (PPO, A2C) with the last ``critic_only`` observation fields for the critic only."""


class MaskableCriticFieldsPolicy(_CriticFieldsMixin, MaskableActorCriticPolicy):
    """The same for MaskablePPO (sb3-contrib's masked actor-critic)."""
