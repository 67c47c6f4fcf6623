"""Week-by-week sensitivity of a plan: which one-week change of price or ad share would pay, in each market.

A policy's decisions in one episode (or a recorded plan) are played open-loop with expected
outcomes; then, one week at a time, the price (or the week's share of the ad budget) moves one level
down or one level up and the episode is played again. The change in the episode's profit, per week
and market, shows where the plan sits off that market's optimum and whether the learned market
agrees with the ground truth about it: a policy trained in the learned market follows the learned
market's answer (docs/EVALUATION.md, "Week by week: where the learned market misleads the policies").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from launchsim.agents.evaluation.replay import check_markets, market_env, playable_markets
from launchsim.agents.policies.recorded_plan import RecordedPlan
from launchsim.agents.rollout import expected_profit, run_episode
from launchsim.envs.launch_market import LaunchMarketEnv, expected_markets
from launchsim.scenarios import product_index
from launchsim.scenarios.schema import Scenario

from launchsim.errors import PolicyError
from launchsim.files import save_figure, write_frame

if TYPE_CHECKING:
    pass

# The weekly table's columns that a recorded plan reads back (agents/recorded_plan.py).
PLAN_COLUMNS = ("week", "launched", "price", "flash_sale", "bundle_partner", "bundle_discount", "creative", "ad_spend")
LEVER_LABELS = {"price": "price", "ads": "ad share"}  # each lever, as tables and plots name it
LEVERS = tuple(LEVER_LABELS)
SHIFTS = (-1, 1)
ROW_COLUMNS = ["market", "lever", "week", "shift", "value", "changed_value", "profit_delta", "plan_profit"]


def plan_sensitivity(
    scenario: Scenario,
    policy: Any,
    product: int | str = 0,
    lever: str = "price",
    markets: Sequence[str] | None = None,
    predictor: Any = None,
    seed: int = 0,
    plan_market: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The plan (the policy's weekly decisions in ``plan_market``, default the first of ``markets``, whose
    default is every market the scenario can play: ``playable_markets``)
    and one row per (market, week, shift of the lever one level down or up) with the episode profit's
    change, in the weeks that start with stock. ``lever="price"`` moves the price among
    ``pricing.levels`` in weeks on regular sale; ``lever="ads"`` moves the week's share of the budget
    left among ``ads.spend_levels`` (later weeks keep their spending in currency). Shifts past the
    levels are left out. The plan records ad spend, so a week whose ads the env paused (sold out)
    plays back without ads even where a probe leaves stock for it."""
    if lever not in LEVERS:
        raise PolicyError(f"lever: found {lever!r}, expected one of {list(LEVERS)}")
    markets, _ = playable_markets(scenario, markets)
    plan_market = plan_market or (markets[0] if markets else "")
    check_markets([*markets, plan_market])
    if "learned" in (*markets, plan_market) and predictor is None:
        raise PolicyError("the learned market needs a predictor")
    index = product_index(scenario, product)
    weekly = run_episode(market_env(scenario, index, plan_market, predictor, "expected"), policy, seed=seed)
    plan = weekly[list(PLAN_COLUMNS)].copy()
    # An empty ad_share: the week spends its ad_spend; a probe sets one week's share instead.
    plan["ad_share"] = pd.Series([""] * len(plan), index=plan.index, dtype=object)
    # Whether each week starts with stock.
    stocked = np.array([float(scenario.products[index].stock), *weekly["stock_left"].iloc[:-1]]) > 0
    moves = list(
        _price_moves(plan, stocked, scenario, index) if lever == "price" else _ad_moves(weekly, stocked, scenario)
    )
    rows = []
    for market in markets:
        envs = expected_markets(scenario, index, predictor if market == "learned" else None)  # both outcomes of a chance rival
        base = _profit(envs, plan, scenario, index, seed)
        for t, shift, value, changed_value, column in moves:
            changed = plan.copy()
            changed.loc[t, column] = changed_value
            delta = _profit(envs, changed, scenario, index, seed) - base
            rows.append(
                dict(zip(ROW_COLUMNS, (market, lever, plan["week"].iloc[t], shift, value, changed_value, delta, base)))
            )
    return plan, pd.DataFrame(rows, columns=ROW_COLUMNS)


def _price_moves(plan: pd.DataFrame, stocked: np.ndarray, scenario: Scenario, index: int):
    """(step, shift, price, changed price, column) for every week on regular sale with stock."""
    ref = float(scenario.products[index].reference_price)
    levels = sorted({float(x) * ref for x in scenario.pricing.levels})  # neighbours by value, whatever the file's order
    for t, week in enumerate(plan.itertuples(index=False)):
        if not week.launched or week.flash_sale or not stocked[t]:
            continue
        at = int(np.argmin([abs(level - week.price) for level in levels]))
        for shift in SHIFTS:
            if 0 <= at + shift < len(levels):
                yield t, shift, week.price, levels[at + shift], "price"


def _ad_moves(weekly: pd.DataFrame, stocked: np.ndarray, scenario: Scenario):
    """(step, shift, share, changed share, column) for every week that starts with stock and budget."""
    levels = sorted({float(x) for x in scenario.ads.spend_levels})
    for t, week in enumerate(weekly.itertuples(index=False)):
        left = week.budget_left + week.ad_spend  # the budget at the start of the week
        if not stocked[t] or left <= 0:
            continue
        share = week.ad_spend / left
        at = int(np.argmin([abs(level - share) for level in levels]))
        for shift in SHIFTS:
            if 0 <= at + shift < len(levels):
                yield t, shift, levels[at], levels[at + shift], "ad_share"


def _profit(envs: list[tuple[float, LaunchMarketEnv]], plan: pd.DataFrame, scenario: Scenario, index: int, seed: int) -> float:
    table = plan.astype(str)
    return expected_profit(envs, lambda: RecordedPlan(table, scenario, index, source="<sensitivity plan>"), seed)


def sensitivity_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per week: the profit change of each (market, shift), and whether the markets disagree
    on whether a shift pays (a sign the learned market would pull a policy off the truth's optimum)."""
    wide = rows.pivot_table(index=["week", "value"], columns=["market", "shift"], values="profit_delta")
    markets = list(dict.fromkeys(rows["market"]))
    wide = wide[[(m, s) for m in markets for s in SHIFTS if (m, s) in wide.columns]]  # the markets in the order given
    wide.columns = [f"{market} {'-1' if shift < 0 else '+1'} level" for market, shift in wide.columns]
    if len(markets) == 2:
        a, b = markets
        pays = {
            m: np.stack([wide.get(f"{m} {s} level", pd.Series(np.nan, index=wide.index)) > 0 for s in ("-1", "+1")])
            for m in markets
        }
        wide["disagree"] = (pays[a] != pays[b]).any(axis=0)
    return wide.reset_index().rename(columns={"value": _label(rows)})


def _label(rows: pd.DataFrame) -> str:
    """The rows' lever as tables and plots name it (price when there are no rows)."""
    return LEVER_LABELS[rows["lever"].iloc[0]] if len(rows) else LEVER_LABELS["price"]


def write_sensitivity(plan: pd.DataFrame, rows: pd.DataFrame, out_dir: Path | str) -> dict[str, Path]:
    """sensitivity.csv (long form), plan.csv (the plan played, a recorded plan) and sensitivity.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"rows": out / "sensitivity.csv", "plan": out / "plan.csv", "plot": out / "sensitivity.png"}
    write_frame(paths["rows"], rows)
    write_frame(paths["plan"], plan)
    plot_sensitivity(rows, paths["plot"])
    return paths


def plot_sensitivity(rows: pd.DataFrame, path: Path | str) -> Path:
    """Profit change by week of one level down and one level up, a line per market: above zero, that
    week's price change would pay in that market."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    for ax, shift in zip(axes, SHIFTS):
        for market, group in rows[rows["shift"] == shift].groupby("market", sort=False):
            ax.plot(group["week"], group["profit_delta"], marker="o", label=market)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{_label(rows)} one level {'down' if shift < 0 else 'up'} in one week")
        ax.set_xlabel("week")
        if ax.get_legend_handles_labels()[0]:  # no line where the plan already sits at that edge of the levels
            ax.legend()
    axes[0].set_ylabel("change in episode profit")
    return save_figure(fig, path)


