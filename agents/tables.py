"""Exporting a policy as a lookup table: its decisions on a grid of market states, with the table's
fidelity to its source measured in the ground-truth market (``TablePolicy`` in ``agents.policies.table``
reads such a file back and acts with it)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from launchsim.agents.evaluation.statistics import paired_interval
from launchsim.agents.policies.source import policy_identity
from launchsim.agents.policies.table import (
    _OBS,
    _PARQUET_KEY,
    ACTION_COLUMNS,
    STATE_COLUMNS,
    TABLE_FORMAT,
    TABLE_SUFFIXES,
    TABLE_VERSION,
    GridObserver,
    TableGrid,
    TablePolicy,
    decision_row,
    decode_action,
    grid_cells,
    sidecar_path,
)
from launchsim.envs.actions import ActionLayout
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.scenarios import product_index
from launchsim.scenarios.loader import scenario_hash
from launchsim.scenarios.schema import Scenario

from launchsim.errors import PolicyError
from launchsim.files import atomic_write, finite, json_default


def build_table(
    policy: Any,
    scenario: Scenario,
    product: int = 0,
    grid: TableGrid | None = None,
    context_episodes: int = 8,
    seed: int = 0,
    response_model: Any = None,
) -> pd.DataFrame:
    """Query ``policy`` in every grid cell: one row per cell, state bins then decisions in business units.
    Observation fields off the grid come from the policy's episodes in the structural market, or in the
    market ``response_model`` (a learned one) when given."""
    grid = grid or TableGrid()
    observer = GridObserver(scenario, product, grid)
    env = _source_env(policy, scenario, product, response_model)
    visited = [obs for ep in range(context_episodes) for obs, _ in _play(env, policy, seed + ep)[0]]
    observer.learn_context(visited)
    cells = grid_cells(scenario, grid)
    actions = _predict_many(policy, np.stack([observer.observation(c) for c in cells]))
    stock0, budget0 = float(scenario.products[product].stock), float(scenario.ads.budget)
    tl, layout = observer.timeline, ActionLayout(scenario, "multidiscrete", product=product)
    rows = []
    for cell, action in zip(cells, actions):
        a_lo, a_hi = grid.adoption[cell.adoption], grid.adoption[cell.adoption + 1]
        s_lo, s_hi = grid.stock[cell.stock], grid.stock[cell.stock + 1]
        b_lo, b_hi = grid.budget_left[cell.budget], grid.budget_left[cell.budget + 1]
        budget_centre = grid.centre("budget_left", cell.budget) * budget0
        rows.append({
            "week": cell.step * scenario.step_weeks, "launched": cell.launched,
            "adoption_bin": cell.adoption, "adopters_from": a_lo * stock0, "adopters_to": a_hi * stock0,
            "stock_bin": cell.stock, "stock_from": s_lo * stock0, "stock_to": s_hi * stock0,
            "budget_bin": cell.budget, "budget_left_from": b_lo * budget0, "budget_left_to": b_hi * budget0,
            "flash_uses_left": cell.flash_left, "competitor_present": bool(tl.competitor_strength[cell.step] > 0),
            **decision_row(decode_action(action, scenario), scenario, product, budget_centre, layout),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=STATE_COLUMNS + ACTION_COLUMNS)


def export_table(
    policy: Any,
    scenario: Scenario,
    product: int | str = 0,
    grid: TableGrid | None = None,
    out: Path | str = Path("policy_table.csv"),
    *,
    policy_spec: str | None = None,
    seed: int = 0,
    context_episodes: int = 8,
    fidelity_episodes: int = 20,
    response_model: Any = None,
) -> Path:
    """Write ``policy``'s table for (scenario, product) to ``out`` (.csv/.parquet/.json), with its
    metadata and its fidelity (table vs source on held-out seeds in the ground-truth market, or in the
    market ``response_model`` when given: a scenario without truth is measured in a learned market)."""
    out = Path(out)
    if out.suffix not in TABLE_SUFFIXES:
        raise PolicyError(f"{out}: found suffix {out.suffix!r}, expected one of {', '.join(TABLE_SUFFIXES)}")
    table = table_policy_from(
        policy, scenario, product, grid, policy_spec=policy_spec, seed=seed,
        context_episodes=context_episodes, fidelity_episodes=fidelity_episodes, response_model=response_model,
    )  # fmt: skip
    return write_table(table.table, table.metadata, out)


def table_policy_from(
    policy: Any,
    scenario: Scenario,
    product: int | str = 0,
    grid: TableGrid | None = None,
    *,
    policy_spec: str | None = None,
    seed: int = 0,
    context_episodes: int = 8,
    fidelity_episodes: int = 20,
    response_model: Any = None,
) -> TablePolicy:
    """The table of ``policy`` as a TablePolicy in memory, its metadata filled in (``export_table`` writes it)."""
    index = product_index(scenario, product)
    grid = grid or TableGrid()
    frame = build_table(policy, scenario, index, grid, context_episodes=context_episodes, seed=seed, response_model=response_model)
    market = "structural (ground-truth)" if response_model is None else "learned"
    metadata = {
        "format": TABLE_FORMAT,
        "version": TABLE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "scenario": scenario.name,
        "scenario_hash": scenario_hash(scenario),
        "product": scenario.products[index].name,
        "product_index": index,
        "policy": policy_identity(policy, policy_spec),
        "grid": _grid_metadata(scenario, index, grid),
        "observation_defaults": (
            "calendar fields from the scenario timeline at the week; adoption, stock and budget left at bin centres; "
            "weeks since launch, adstock, last sales/clicks/price and steps since a flash sale = mean of the source "
            f"policy's observations in the cell (else in the week) over {context_episodes} {market}-market episodes "
            f"(seeds {seed}..{seed + context_episodes - 1}), else rules"
        ),
        "rows": len(frame),
    }
    table = TablePolicy(frame, metadata, scenario, index)
    if fidelity_episodes > 0:
        metadata["fidelity"] = measure_fidelity(
            policy, table, scenario, index, episodes=fidelity_episodes, seed=seed + max(context_episodes, 0) + 1000,
            response_model=response_model,
        )
    return table


def _grid_metadata(scenario: Scenario, product: int, grid: TableGrid) -> dict[str, Any]:
    flash = scenario.pricing.flash_sale
    return {
        **{k: list(v) for k, v in asdict(grid).items()},
        "edges_are": "shares of initial stock (adoption, stock) and of the total ad budget (budget_left); the last bin also holds values above its upper edge",
        "steps": scenario.n_steps,
        "step_weeks": scenario.step_weeks,
        "flash_uses": flash.max_uses if flash else 0,
        "initial_stock": scenario.products[product].stock,
        "ad_budget": scenario.ads.budget,
        "currency_columns": ["price", "ad_spend", "budget_left_from", "budget_left_to"],
        "unit_columns": ["adopters_from", "adopters_to", "stock_from", "stock_to"],
    }


def _predict_many(policy: Any, observations: np.ndarray) -> list[np.ndarray]:
    """Ask once with the whole batch when the policy accepts it, else row by row."""
    try:
        actions = np.asarray(policy.predict(observations, deterministic=True)[0])
    except Exception:  # noqa: BLE001 - whatever a one-observation policy raises on a batch, ask row by row
        actions = None
    if actions is not None and actions.ndim == 2 and len(actions) == len(observations):
        return list(actions)
    return [np.asarray(policy.predict(obs, deterministic=True)[0]) for obs in observations]


def _source_env(policy: Any, scenario: Scenario, product: int, response_model: Any = None) -> LaunchMarketEnv:
    """The native env of the source policy: MultiDiscrete, or Box when it answers with 6 numbers."""
    env = LaunchMarketEnv(scenario, product, response_model=response_model)
    action = np.asarray(policy.predict(env.reset(seed=0)[0], deterministic=True)[0]).reshape(-1)
    return LaunchMarketEnv(scenario, product, response_model=response_model, action_type="box") if action.size == 6 else env


def _play(env: LaunchMarketEnv, policy: Any, seed: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """One episode: the (observation, action) pairs visited and the episode's profit."""
    obs, _ = env.reset(seed=seed)
    pairs, total, done = [], 0.0, False
    while not done:
        action, _ = policy.predict(obs, deterministic=True)
        pairs.append((obs, np.asarray(action)))
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return pairs, total


def measure_fidelity(
    source: Any, table: TablePolicy, scenario: Scenario, product: int = 0, episodes: int = 20, seed: int = 1000,
    response_model: Any = None,
) -> dict[str, Any]:
    """Profit of the table policy vs its source on the same seeds, in the ground-truth market (or in the
    market ``response_model``), and the share of the source's visited states in which the table decides
    the same (after snapping to its levels): ``agreement`` compares the levers that take effect in that
    state, ``raw_agreement`` all five."""
    env = LaunchMarketEnv(scenario, product, response_model=response_model)
    source_env = _source_env(source, scenario, product, response_model)
    layout = table.layout
    source_profit, table_profit, agree, raw, states = [], [], 0, 0, 0
    for ep in range(episodes):
        pairs, profit = _play(source_env, source, seed + ep)
        source_profit.append(profit)
        for obs, action in pairs:
            mine = np.asarray(table.predict(obs)[0])
            theirs = layout.encode(decode_action(action, scenario))
            live = effective_levers(obs, mine, theirs)
            agree += bool(np.array_equal(mine[live], theirs[live]))
            raw += bool(np.array_equal(mine, theirs))
            states += 1
        table_profit.append(_play(env, table, seed + ep)[1])
    src, tab = float(np.mean(source_profit)), float(np.mean(table_profit))
    delta = paired_interval(np.array(table_profit) - np.array(source_profit))
    return {
        "market": "structural" if response_model is None else "learned",
        **({} if response_model is None else {"predictor": str(getattr(response_model, "identity", type(response_model).__name__))}),
        "episodes": episodes,
        "seeds": [seed, seed + episodes - 1],
        "source_profit_mean": src,
        "table_profit_mean": tab,
        "profit_ratio": tab / src if src > 0 else None,
        "delta_mean": delta["mean"],
        "delta_ci95": delta["ci95"],
        "agreement": agree / states if states else None,
        "raw_agreement": raw / states if states else None,
        "states": states,
    }


def effective_levers(obs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Which MultiDiscrete components take effect in this state for both actions: the launch lever
    only while unlaunched and allowed; price and bundle only once on sale (launched, or both launch now)."""
    launched = obs[_OBS["launched"]] > 0.5
    allowed = obs[_OBS["launch_allowed"]] > 0.5
    on_sale = launched or (allowed and a[0] == 1 and b[0] == 1)
    return np.array([not launched and allowed, on_sale, on_sale, True, True])


def write_table(frame: pd.DataFrame, metadata: dict[str, Any], out: Path | str) -> Path:
    """Write the table atomically in the format its suffix names (CSV gets a ``.meta.json`` sidecar)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".csv":
        data = frame.to_csv(index=False).encode()
        meta = {**metadata, "csv_sha256": hashlib.sha256(data).hexdigest()}
        # Sidecar first: a crash between the two moves leaves a hash mismatch that load() reports.
        atomic_write(sidecar_path(out), json.dumps(finite(meta), indent=2, default=json_default, allow_nan=False).encode())
        atomic_write(out, data)
    elif out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), _PARQUET_KEY: json.dumps(metadata, default=json_default).encode()}
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        atomic_write(out, buffer.getvalue())
    elif out.suffix == ".json":
        rows = frame.to_dict(orient="records")
        atomic_write(out, json.dumps(finite({"metadata": metadata, "rows": rows}), indent=1, default=json_default, allow_nan=False).encode())
    else:
        raise PolicyError(f"{out}: found suffix {out.suffix!r}, expected one of {', '.join(TABLE_SUFFIXES)}")
    return out


