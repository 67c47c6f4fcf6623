"""Playing a policy for a few episodes in one market, week by week."""

from __future__ import annotations

from typing import Any

import pandas as pd

from launchsim.agents.policies.source import build_policy
from launchsim.agents.rollout import episode_summary, run_episode
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.scenarios import Scenario, product_index


def simulate(
    scenario: Scenario,
    policy: str,
    product: int | str = 0,
    seed: int = 0,
    episodes: int = 1,
    outcomes: str = "sampled",
    response_model: Any = None,
    actions: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run a policy (any name ``build_policy`` takes, or the recorded plan ``actions``) in a market
    (structural unless ``response_model`` is given): the first episode's weekly table and one summary
    row per episode."""
    index = product_index(scenario, product)
    env = LaunchMarketEnv(scenario, product=index, outcomes=outcomes, response_model=response_model)
    chosen = build_policy(policy, scenario, index, seed=seed, predictor=response_model, actions=actions)
    first, summaries = None, []
    for episode in range(episodes):
        weekly = run_episode(env, chosen, seed=seed + episode)
        first = weekly if first is None else first
        summaries.append({"episode": episode, "seed": seed + episode, **episode_summary(weekly)})
    return first, pd.DataFrame(summaries)
