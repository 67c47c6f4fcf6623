"""Running a policy through episodes and collecting the weekly trajectory as a table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import pandas as pd


class Policy(Protocol):
    """Anything with SB3's ``predict``: trained models, heuristics, (later) oracle and lookup tables."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True): ...


WEEKLY_COLUMNS = [
    "week", "launched", "price", "flash_sale", "bundle_partner", "bundle_discount", "creative", "ad_spend",
    "impressions", "clicks", "demand", "units_sold", "lost_sales", "bundled_units", "stock_left", "budget_left",
    "revenue", "partner_revenue", "cogs", "partner_cogs", "cannibalised_margin", "holding_cost", "launch_cost",
    "salvage", "waitlist_buyers", "predecessor_units", "predecessor_revenue", "predecessor_salvage", "predecessor_stock", "profit",
]  # fmt: skip


def run_episode(env: gym.Env, policy: Policy, seed: int | None = None, deterministic: bool = True) -> pd.DataFrame:
    """Play one episode and return one row per step with every profit component and lever value."""
    obs, _ = env.reset(seed=seed)
    rows, done = [], False
    while not done:
        action, _ = policy.predict(obs, deterministic=deterministic)
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        row = {col: info[col] for col in WEEKLY_COLUMNS}
        row["ignored"] = "; ".join(info["ignored"])
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["cumulative_profit"] = frame["profit"].cumsum()
    return frame


def expected_profit(markets: list[tuple[float, gym.Env]], make_policy: Callable[[], Policy], seed: int = 0) -> float:
    """A policy's expected episode profit: the weighted sum of its profits in ``markets`` (weighted
    expected-outcome envs, ``envs.launch_market.expected_markets``), a fresh policy in each."""
    return sum(w * float(run_episode(env, make_policy(), seed=seed)["profit"].sum()) for w, env in markets)


def episode_summary(weekly: pd.DataFrame) -> dict[str, float]:
    """Totals of one episode: profit and its drivers, launch week and the mean price while on sale."""
    on_sale = weekly[weekly["launched"]]
    return {
        "profit": float(weekly["profit"].sum()),
        "revenue": float(weekly["revenue"].sum() + weekly["partner_revenue"].sum() + weekly["predecessor_revenue"].sum()),
        "units_sold": float(weekly["units_sold"].sum()),
        "lost_sales": float(weekly["lost_sales"].sum()),
        "ad_spend": float(weekly["ad_spend"].sum()),
        "stock_left": float(weekly["stock_left"].iloc[-1]),
        "launch_week": float(on_sale["week"].iloc[0]) if len(on_sale) else float("nan"),
        "mean_price": float(on_sale["price"].mean()) if len(on_sale) else float("nan"),
    }
