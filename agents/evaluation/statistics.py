"""Statistics of paired comparisons: two arms played on the same seeds (common random numbers)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def paired_interval(differences: Sequence[float] | np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """Mean of paired differences with its two-sided t-interval (NaN pairs dropped; no interval for n < 2)."""
    from scipy import stats

    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d)]
    n = len(d)
    if n == 0:
        return {"mean": None, "ci95": None, "sd": None, "n": 0}
    mean = float(d.mean())
    if n < 2:
        return {"mean": mean, "ci95": None, "sd": None, "n": 1}
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "ci95": [mean - half, mean + half], "sd": sd, "n": n}
