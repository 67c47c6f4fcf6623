"""Judging policies: in the ground-truth market next to the oracle and the heuristics, and in the learned
market (``evaluate``); what-if replays (``replay``); week-by-week sensitivity (``sensitivity``)."""
