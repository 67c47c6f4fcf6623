"""launchsim: a launch-strategy simulator.

Gymnasium market environments whose demand and click responses come from fine-tuned BERT predictors
(or from the structural ground-truth market), Stable-Baselines3 agents that learn launch timing,
pricing, bundling and ad budgets, and scenario files to judge them. The subpackages:

- ``launchsim.scenarios``: scenario files and their schema
- ``launchsim.models``: the response models (structural market, fine-tuned predictors)
- ``launchsim.envs``: the Gymnasium env and the batched SB3 VecEnv (importing it registers the ids)
- ``launchsim.agents``: training, heuristics, the oracle, evaluation, replays and lookup tables
- ``launchsim.cli``: the ``launchsim`` command (``run_sim.py`` in a checkout)
"""

__version__ = "0.2.0"
