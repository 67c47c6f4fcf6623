"""The numeric context a predictor reads, scaled the same way in training and inside the env.

Inputs are the ``MarketContext`` fields (floats, arrays or tensors, or DataFrame columns of the
same names); the names and scaling are recorded in each predictor's card so that a mismatch is caught.
The bundle discount is not among them: the bundle head reads it with the pair of texts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch

FEATURES_VERSION = 4
FEATURE_NAMES_V1: tuple[str, ...] = (
    "season",
    "holiday",
    "price_ratio",
    "flash",
    "after_flash_1",
    "after_flash_2",
    "after_flash_3",
    "competitor_strength",
    "competitor_price_ratio",
    "log_adstock",
    "log_adopters",
    "step_weeks",
    "log_reference_price",
)
# v2 adds the seller's public estimate of the product's addressable buyers: the scale that a text
# cannot carry (0 = unknown). Predictors record their feature list; v1 predictors still load.
FEATURE_NAMES_V2: tuple[str, ...] = (*FEATURE_NAMES_V1, "log_market_estimate")
# v3 adds the penetration of the estimated market (buyers so far / estimate, capped at 4): a launch's
# demand collapses as its pool runs out, which the two logarithms above express only through a
# difference the network had to learn (measured: v2 predicted thousands of units a week for launches
# whose pool was exhausted).
PENETRATION_CAP = 4.0
FEATURE_NAMES_V3: tuple[str, ...] = (*FEATURE_NAMES_V2, "penetration")
# v4 adds the product's public pre-launch sign-ups (a waitlist or notify-me list; 0 = unknown): how fast a
# launch catches on, which a text may leave unsaid (docs/EVALUATION.md, "What the scenarios do not say").
FEATURE_NAMES: tuple[str, ...] = (*FEATURE_NAMES_V3, "log_prelaunch_signups")
FEATURE_SETS: dict[int, tuple[str, ...]] = {1: FEATURE_NAMES_V1, 2: FEATURE_NAMES_V2, 3: FEATURE_NAMES_V3, 4: FEATURE_NAMES}


def log_market_estimate(estimate: float) -> float:
    """The scaled market-estimate feature of one market (the batch form is in ``context_features``)."""
    return math.log1p(max(estimate, 0.0)) / 10.0


def log_prelaunch_signups(signups: float) -> float:
    """The scaled pre-launch sign-ups feature of one market (0 = unknown; the batch form is in ``context_features``)."""
    return math.log1p(max(signups, 0.0)) / 10.0


def penetration(adopters: float, estimate: float) -> float:
    """Buyers so far over the market estimate, capped (the batch form is in ``context_features``)."""
    return min(max(adopters, 0.0) / max(estimate, 1.0), PENETRATION_CAP)


def context_features(ctx: Any, names: tuple[str, ...] = FEATURE_NAMES, unknown_estimate: float = 0.0) -> torch.Tensor:
    """(n, len(names)) float32 features from a MarketContext-like object (or a DataFrame); ``names`` is
    one of ``FEATURE_SETS`` (a predictor's own list); an unknown (0) market estimate reads as
    ``unknown_estimate`` (a predictor's typical training value)."""

    if names not in FEATURE_SETS.values():
        raise ValueError(f"unknown feature list {names}")

    def col(name: str) -> torch.Tensor:
        if isinstance(ctx, pd.DataFrame):
            value = ctx[name].to_numpy() if name in ctx else np.zeros(len(ctx))
        else:
            value = getattr(ctx, name)
        if isinstance(value, torch.Tensor):  # the batched env's state: its device and dtype, one cast at the end
            return value.reshape(-1)
        # Plain numbers (a field left at its default) join the state's device.
        return torch.as_tensor(np.asarray(value, dtype=np.float32), device=device).reshape(-1)

    state = getattr(ctx, "adstock", None)
    device = state.device if isinstance(state, torch.Tensor) else None
    since = col("weeks_since_flash")
    adstock, adopters = col("adstock"), col("adopters")
    n = adstock.shape[0]
    ref = col("reference_price").expand(n)
    cols = [
        col("season"),
        col("holiday"),
        col("price_ratio"),
        col("flash"),
        (since == 1).to(since.dtype),
        (since == 2).to(since.dtype),
        (since == 3).to(since.dtype),
        col("competitor_strength"),
        col("competitor_price_ratio"),
        torch.log1p(adstock / 1000.0),
        torch.log1p(adopters) / 5.0,
        col("step_weeks"),
        torch.log(ref.clamp(min=0.01)) / 5.0,
    ]
    if "log_market_estimate" in names:
        estimate = col("market_estimate")
        estimate = torch.where(estimate > 0, estimate, torch.full_like(estimate, unknown_estimate)).expand(n)
        cols.append(torch.log1p(estimate.clamp(min=0.0)) / 10.0)
    if "penetration" in names:
        cols.append((adopters.clamp(min=0.0) / estimate.clamp(min=1.0)).clamp(max=PENETRATION_CAP))
    if "log_prelaunch_signups" in names:
        cols.append((torch.log1p(col("prelaunch_signups").clamp(min=0.0)) / 10.0).expand(n))
    return torch.stack(cols, dim=1).float()
