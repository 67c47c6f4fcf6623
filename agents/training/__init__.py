"""Training runs: ``train`` and ``resume`` (``agents.training.runs``) and their callbacks."""

from launchsim.agents.training.runs import resume, train

__all__ = ["resume", "train"]
