"""Gymnasium environments of the launch market, registered under versioned ids on import."""

from gymnasium.envs.registration import register, registry

from launchsim.envs.actions import ActionLayout, Decision
from launchsim.envs.launch_market import ENV_VERSION, OBSERVATION_NAMES, LaunchMarketEnv
from launchsim.envs.timeline import Timeline

ENV_IDS = {"multidiscrete": f"LaunchSim/Market-v{ENV_VERSION}", "box": f"LaunchSim/MarketContinuous-v{ENV_VERSION}"}

for _action_type, _env_id in ENV_IDS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point="launchsim.envs.launch_market:LaunchMarketEnv", kwargs={"action_type": _action_type})

__all__ = ["ENV_IDS", "ENV_VERSION", "OBSERVATION_NAMES", "ActionLayout", "Decision", "LaunchMarketEnv", "Timeline"]
