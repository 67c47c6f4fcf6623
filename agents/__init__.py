"""Agents and what judges them.

- ``agents.rollout``: the policy interface (SB3's ``predict``) and playing an episode as a weekly table;
- ``agents.policies``: heuristic baselines, the oracle planner, trained SB3 models, lookup tables and
  recorded plans, and ``resolve_policy`` that names any of them;
- ``agents.sb3``: the SB3 algorithms, their shipped hyperparameters and the adapters of the levers;
- ``agents.run_folder`` and ``agents.training``: training runs and their folders;
- ``agents.evaluation``: judging a policy (``evaluate``), what-if replays, week-by-week sensitivity;
- ``agents.tables``: exporting a policy as a lookup table with its measured fidelity;
- ``agents.sweep``: sweeps of training runs on Ray.
"""

from launchsim.agents.policies.heuristics import HEURISTICS, HeuristicPolicy, make_heuristic
from launchsim.agents.policies.source import build_policy, resolve_policy
from launchsim.agents.rollout import Policy, episode_summary, run_episode

__all__ = [
    "HEURISTICS", "HeuristicPolicy", "Policy", "build_policy", "episode_summary", "make_heuristic", "resolve_policy",
    "run_episode",
]  # fmt: skip
