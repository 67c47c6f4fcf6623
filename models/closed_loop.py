"""The closed loop a market runs for a new product: each week's demand is predicted with buyers so far
taken from the market's own predictions of the earlier weeks, never from observed sales. The backtest
scores predictors this way and fine-tuning trains on the features it produces."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd

Predict = Callable[[pd.DataFrame], dict[str, np.ndarray]]


class Rollout(NamedTuple):
    units: np.ndarray  # expected units of every row
    adopters: np.ndarray  # the buyers so far each row was predicted with


def rollout(logs: pd.DataFrame, predict: Predict) -> Rollout:
    """Every row in the closed loop: week k of each product is predicted with buyers so far = the
    predicted first purchases of its weeks 0..k-1 (0 for a weekly pool, as the env passes).

    ``logs`` must be sorted by product and week (the logs reader's order); ``predict(frame)`` returns
    ``demand`` and ``first_share`` arrays for the frame's rows (the frame keeps the logs' index)."""
    frame = logs.copy()
    step = frame.groupby("product_id", sort=False).cumcount().to_numpy()
    product = pd.factorize(frame["product_id"])[0]
    weekly = (frame["market_estimate_basis"] == "weekly").to_numpy() if "market_estimate_basis" in frame else np.zeros(len(frame), bool)
    buyers = np.zeros(product.max() + 1 if len(product) else 0)
    units = np.zeros(len(frame))
    adopters = frame.columns.get_loc("adopters")
    for k in range(int(step.max()) + 1 if len(step) else 0):
        rows = np.flatnonzero(step == k)
        frame.iloc[rows, adopters] = np.where(weekly[rows], 0.0, buyers[product[rows]])
        out = predict(frame.iloc[rows])
        units[rows] = out["demand"]
        np.add.at(buyers, product[rows], out["demand"] * out["first_share"])
    return Rollout(units, frame["adopters"].to_numpy(np.float64))
