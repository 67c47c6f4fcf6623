"""The numeric context a predictor reads, scaled the same way in training and inside the env.

Inputs are the ``MarketContext`` fields (floats, arrays or tensors, or DataFrame columns of the
same names); the names and scaling are recorded in each predictor's card so that a mismatch is caught.
The bundle discount is not among them: the bundle head reads it with the pair of texts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

FEATURES_VERSION = 1
FEATURE_NAMES: tuple[str, ...] = (
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


def context_features(ctx: Any) -> torch.Tensor:
    """(n, len(FEATURE_NAMES)) float32 features from a MarketContext-like object (or a DataFrame)."""

    def col(name: str) -> torch.Tensor:
        value = ctx[name].to_numpy() if isinstance(ctx, pd.DataFrame) else getattr(ctx, name)
        if isinstance(value, torch.Tensor):  # the batched env's state: its device and dtype, one cast at the end
            return value.reshape(-1)
        return torch.as_tensor(np.asarray(value, dtype=np.float32)).reshape(-1)

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
    return torch.stack(cols, dim=1).float()
