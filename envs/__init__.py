"""Gymnasium environments of the launch market, registered under versioned ids on import.

``LaunchSim/Market-v2`` (MultiDiscrete levers, with ``action_masks()``) and
``LaunchSim/MarketContinuous-v2`` (Box levers) take ``scenario``, ``product`` and ``market``
(``"structural"``, the default, or ``"learned"``, with ``predictor=DIR`` for another learned market)
as keyword arguments; ``LaunchSim/LearnedMarket-v2`` is the first with ``market="learned"``.
"""

from gymnasium.envs.registration import register, registry
from launchsim.envs.actions import ActionLayout, Decision
from launchsim.envs.launch_market import ENV_VERSION, LaunchMarketEnv
from launchsim.envs.spaces import OBSERVATION_NAMES
from launchsim.envs.timeline import Timeline

ENV_IDS = {
    "multidiscrete": f"LaunchSim/Market-v{ENV_VERSION}",
    "box": f"LaunchSim/MarketContinuous-v{ENV_VERSION}",
    "learned": f"LaunchSim/LearnedMarket-v{ENV_VERSION}",
}
_KWARGS = {"multidiscrete": {"action_type": "multidiscrete"}, "box": {"action_type": "box"}, "learned": {"market": "learned"}}

for _name, _env_id in ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point="launchsim.envs.launch_market:LaunchMarketEnv", kwargs=_KWARGS[_name])

__all__ = ["ENV_IDS", "ENV_VERSION", "OBSERVATION_NAMES", "ActionLayout", "Decision", "LaunchMarketEnv", "Timeline"]
