"""Policies and their evaluation: heuristic baselines now; SB3 training, oracle and replay later."""

from launchsim.agents.heuristics import HEURISTICS, HeuristicPolicy, make_heuristic
from launchsim.agents.rollout import Policy, episode_summary, run_episode

__all__ = ["HEURISTICS", "HeuristicPolicy", "Policy", "episode_summary", "make_heuristic", "run_episode"]
