"""The numeric context a predictor reads, scaled the same way in training and inside the env.

``feature_columns`` is the one definition: it reads the ``MarketContext`` fields (Python numbers for
one market, arrays or tensors for a batch, or the columns of a logs frame) through an ops backend
(``models.ops``). The names and scaling are recorded in each predictor's card so that a mismatch is
caught. The bundle discount is not among them: the bundle head reads it with the pair of texts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from launchsim.models.ops import NumpyOps

FEATURES_VERSION = 3
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
# cannot carry (0 = unknown).
FEATURE_NAMES_V2: tuple[str, ...] = (*FEATURE_NAMES_V1, "log_market_estimate")
# v3 adds the penetration of the estimated market (buyers so far / estimate, capped at 4): a launch's
# demand collapses as its pool runs out, which the two logarithms above express only through a
# difference the network would have to learn.
PENETRATION_CAP = 4.0
FEATURE_NAMES: tuple[str, ...] = (*FEATURE_NAMES_V2, "penetration")
FEATURE_SETS: dict[int, tuple[str, ...]] = {1: FEATURE_NAMES_V1, 2: FEATURE_NAMES_V2, 3: FEATURE_NAMES}
# The MarketContext fields the features read.
CONTEXT_FIELDS = (
    "season", "holiday", "price_ratio", "flash", "weeks_since_flash", "competitor_strength", "competitor_price_ratio",
    "adstock", "adopters", "step_weeks", "reference_price", "market_estimate",
)  # fmt: skip


def feature_columns(
    x: Any, ctx: Any, names: tuple[str, ...] = FEATURE_NAMES, unknown_estimate: float = 0.0, use_estimate: bool = True
) -> list[Any]:
    """The context features of ``ctx`` in the order of ``names`` (a predictor's own list), one column (or
    number) each; an unknown (0) market estimate reads as ``unknown_estimate`` (a predictor's typical
    training value); without ``use_estimate`` (a predictor whose logs carried no estimate) every estimate does."""
    since, adopters = ctx.weeks_since_flash, ctx.adopters
    cols = [
        ctx.season, ctx.holiday, ctx.price_ratio, ctx.flash, x.f(since == 1), x.f(since == 2), x.f(since == 3),
        ctx.competitor_strength, ctx.competitor_price_ratio, log_adstock(x, ctx.adstock), x.log1p(adopters) / 5.0,
        ctx.step_weeks, x.log(x.maximum(ctx.reference_price, 0.01)) / 5.0,
    ]  # fmt: skip
    if len(names) > len(FEATURE_NAMES_V1):
        estimate = x.where(ctx.market_estimate > 0, ctx.market_estimate, unknown_estimate) if use_estimate else ctx.market_estimate * 0.0
        cols.append(x.log1p(x.maximum(estimate, 0.0)) / 10.0)
    if len(names) > len(FEATURE_NAMES_V2):
        cols.append(x.minimum(x.maximum(adopters, 0.0) / x.maximum(estimate, 1.0), PENETRATION_CAP))
    return cols


def log_adstock(x: Any, adstock: Any) -> Any:
    """The adstock feature, which the impressions head also reads."""
    return x.log1p(adstock / 1000.0)


def check_feature_names(names: tuple[str, ...]) -> None:
    if names not in FEATURE_SETS.values():
        raise ValueError(f"unknown feature list {names}")


class FrameContext:
    """The columns of a logs frame read as ``MarketContext`` fields (float64 arrays; a missing column is 0)."""

    def __init__(self, frame: pd.DataFrame):
        self._frame = frame

    def __getattr__(self, name: str) -> np.ndarray:
        frame = self.__dict__["_frame"]
        if name in frame:
            return frame[name].to_numpy(dtype=np.float64)
        return np.zeros(len(frame))


def context_features(ctx: Any, names: tuple[str, ...] = FEATURE_NAMES, unknown_estimate: float = 0.0) -> torch.Tensor:
    """(n, len(names)) float32 features of a logs frame or a ``MarketContext`` of arrays, computed in
    float64 and rounded once (what training and batch prediction read)."""
    check_feature_names(names)
    if isinstance(ctx, pd.DataFrame):
        ctx = FrameContext(ctx)
    x = NumpyOps()
    n = max(np.size(getattr(ctx, name)) for name in CONTEXT_FIELDS)
    cols = [np.broadcast_to(np.asarray(c, dtype=np.float64), (n,)) for c in feature_columns(x, _arrays(ctx), names, unknown_estimate)]
    return torch.from_numpy(np.stack(cols, axis=1).astype(np.float32))


def _arrays(ctx: Any) -> Any:
    """The context's fields as float64 NumPy arrays."""

    class _Fields:
        pass

    out = _Fields()
    for name in CONTEXT_FIELDS:
        value = getattr(ctx, name)
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        setattr(out, name, np.asarray(value, dtype=np.float64))
    return out
