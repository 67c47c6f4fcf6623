"""What the commands print: tables and summary lines on the console (rich), made from the results the
package functions return."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd


def console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 150)


def weekly_table(weekly: pd.DataFrame, title: str) -> Any:
    """A simulated episode week by week."""
    from rich.table import Table

    table = Table(title=title)
    columns = {
        "week": "{:.0f}", "launched": "{}", "price": "{:.2f}", "bundle_partner": "{}", "ad_spend": "{:,.0f}",
        "impressions": "{:,.0f}", "clicks": "{:,.0f}", "demand": "{:,.0f}", "units_sold": "{:,.0f}",
        "stock_left": "{:,.0f}", "profit": "{:,.0f}", "cumulative_profit": "{:,.0f}",
    }  # fmt: skip
    if not weekly["bundle_partner"].astype(bool).any():  # no bundle offered: no empty column
        del columns["bundle_partner"]
    shown = [c for c in ("waitlist_buyers", "predecessor_units", "predecessor_stock") if c in weekly and weekly[c].any()]
    if shown:  # a scenario's optional parts, where they did something: before the profit
        at = list(columns).index("profit")
        items = list(columns.items())
        columns = dict(items[:at] + [(c, "{:,.0f}") for c in shown] + items[at:])
    labels = {"waitlist_buyers": "from waitlist", "predecessor_units": "old model sold", "predecessor_stock": "old model left"}
    for col in columns:
        table.add_column(labels.get(col, col.replace("_", " ")), justify="right", no_wrap=True)
    for _, row in weekly.iterrows():
        table.add_row(*(fmt.format(row[col]) for col, fmt in columns.items()))
    return table


def evaluation_table(result: dict[str, Any], rows: list[tuple[str, dict[str, Any], float | None]], episodes: int, seed: int) -> Any:
    """Every policy's profit, each next to the planner of its own market (``report_rows``)."""
    from rich.table import Table

    table = Table(title=f"{result['scenario']} · {result['product_name']} · {episodes} episodes from seed {seed}")
    money = f", {result['currency']}" if result.get("currency") else ""
    for col in ("policy", f"profit (mean{money})", "95% CI", "ratio to its market's planner"):
        table.add_column(col, justify="left" if col == "policy" else "right", no_wrap=True)
    for label, s, ratio in rows:
        low, high = s["profit_ci95"]
        table.add_row(label, f"{s['profit_mean']:,.0f}", f"[{low:,.0f}, {high:,.0f}]", "n/a" if ratio is None else f"{ratio:.3f}")
    return table


def ratio_text(ratio: float | None, reference: str = "oracle") -> str:
    """A ratio to a planner, or why there is none (no positive planner profit to divide by)."""
    if ratio is None or ratio != ratio:  # None, or NaN from a table
        return f"n/a ({reference} profit ≤ 0)"
    return f"{ratio:.3f}"


def evaluation_line(result: dict[str, Any]) -> str:
    """The headline figures of an evaluation, each naming its market."""
    parts = []
    if "ratio_to_oracle" in result:
        parts.append(f"ratio_to_oracle {ratio_text(result['ratio_to_oracle'])} (structural market)")
    if "ratio_to_learned_oracle" in result:
        parts.append(
            f"ratio_to_learned_oracle {ratio_text(result['ratio_to_learned_oracle'], 'learned plan')} "
            f"(learned market; regret {result['regret_to_learned_oracle']:,.0f})"
        )
    if result.get("sim_to_real_gap") is not None:
        parts.append(f"sim_to_real_gap {result['sim_to_real_gap']:.3f}")
    model = (result.get("learned") or {}).get("model_uncertainty")
    if model:
        low, high = model["interval90"]
        parts.append(f"learned market's model: 90% interval [{low:,.0f}, {high:,.0f}], CVaR 10% {model['cvar10']:,.0f}")
    if "best_heuristic" in result:
        parts.append(f"best heuristic {result['best_heuristic']['name']}")
    return "; ".join(parts) + "".join(f"\nskipped: {line}" for line in result.get("skipped", []))


def coverage_lines(summary: dict[str, Any]) -> list[str]:
    """How often the learned market's 90% model interval held the true expected profit, per group and plan."""
    lines = [f"90% model intervals of {summary['predictor']} ({summary['draws']} draws, level log-sd {summary['level_log_sd']:.2f}):"]
    for key in ("generated", "shipped", "all"):
        if key in summary:
            c = summary[key]
            lines.append(f"  {key}: {c['inside90']:.1%} of {c['cases']} hold the truth ({c['below']} truths below, {c['above']} above)")
    lines += [f"  plan {plan}: {c['inside90']:.1%} of {c['cases']}" for plan, c in summary["by_plan"].items()]
    return lines


def fidelity_line(fid: dict[str, Any]) -> str:
    """A lookup table's fidelity to its source policy, in one line."""
    ratio = "n/a (source profit ≤ 0)" if fid["profit_ratio"] is None else f"{100 * fid['profit_ratio']:.2f}%"
    ci = fid["delta_ci95"]
    return (
        f"fidelity in the {'ground-truth' if fid.get('market', 'structural') == 'structural' else 'learned'} market over {fid['episodes']} episodes (seeds {fid['seeds'][0]}..{fid['seeds'][1]}): "
        f"table {fid['table_profit_mean']:,.2f} vs source {fid['source_profit_mean']:,.2f} profit ({ratio}; "
        f"delta {fid['delta_mean']:,.2f}" + ("" if ci is None else f", 95% CI [{ci[0]:,.2f}, {ci[1]:,.2f}]") + "); "
        f"actions agree in {100 * fid['agreement']:.2f}% of {fid['states']} visited states "
        f"(levers in effect; all five levers: {100 * fid['raw_agreement']:.2f}%)"
    )


def predictor_eval_lines(result: dict[str, Any]) -> list[str]:
    """Demand and CTR quality per split and model."""
    lines = []
    for split, models in result["splits"].items():
        lines.append(f"{split} ({result['rows'][split]['products']} products):")
        for name, m in models.items():
            r2 = m.get("demand_r2", m["demand_r2_vs_observed"])
            ctr = m.get("ctr_r2", m.get("ctr_r2_vs_observed"))
            ctr_text = "    n/a" if ctr is None else f"{ctr:7.4f}"
            level = m.get("demand_level_log_sd")
            level_text = "" if level is None else f"  product level log-sd {level:.3f}"
            lines.append(f"  {name:<18} demand R² {r2:7.4f}  CTR R² {ctr_text}  deviance explained {m['demand_deviance_explained']:7.4f}{level_text}")
    return lines


def backtest_lines(result: dict[str, Any]) -> list[str]:
    """R² log1p, deviance explained and mean predicted / observed per protocol and model, all weeks then sale weeks."""
    lines = []
    for weeks in ("all_weeks", "sale_weeks"):
        lines.append(f"{weeks.replace('_', ' ')}:")
        for protocol, models in result["protocols"].items():
            for model, m in models.items():
                w = m[weeks]
                ratio = "n/a" if w["mean_predicted_over_observed"] is None else f"{w['mean_predicted_over_observed']:.3f}"
                lines.append(
                    f"  {protocol.replace('_', ' '):<11} {model:<12} R² log1p {w['r2_log1p']:7.4f}  "
                    f"deviance explained {w['deviance_explained']:7.4f}  predicted / observed {ratio}"
                )
    return lines


def bench_lines(result: dict[str, Any]) -> list[str]:
    """The benchmark's figures, one line each."""
    lines = []
    if "single_env" in result:
        for name, r in result["single_env"].items():
            lines.append(f"{name:<40} {r['steps_per_s']:>12,.0f} steps/s  (min {r['min']:,.0f}, max {r['max']:,.0f})")
        lines.append(
            f"launch market / CartPole-v1 (raw): structural {result['ratio_launch_market_to_cartpole_raw']:.2f}, "
            f"learned {result['ratio_learned_market_to_cartpole_raw']:.2f}"
        )
    for r in result.get("training", {}).get("ppo_training", []):
        lines.append(
            f"PPO training {r['market']:<10} N={r['n']:>7,}: device path {r['device_steps_per_s']:>11,.0f} steps/s, VecEnv path "
            f"{r['vecenv_steps_per_s']:>11,.0f} ({r['ratio']:.2f}x); the shared parts alone allow {r['shared_parts_steps_per_s']:,.0f} "
            f"({r['shared_parts_bound_ratio']:.2f}x)"
        )
    vec = result.get("vec")
    if vec:
        for r in vec["vec_env"]:
            graph = " (CUDA graph)" if r.get("cuda_graph") else ""
            refill = f", {r['steps_per_s_with_refill']:,.0f} with the uniforms' refill" if "steps_per_s_with_refill" in r else ""
            if r.get("device_step_steps_per_s"):
                refill += f"; the graph alone {r['device_step_steps_per_s']:,.0f}"
            lines.append(f"{r['env']:<12} {r['market']:<10} head {r['head']:<16} N={r['n']:>9,} {r['steps_per_s']:>14,.0f} steps/s{graph}{refill}")
        for r in vec["ppo"]:
            lines.append(f"PPO {r['phase']:<8} {r['env']:<8} N={r['n']:>6,} {r['steps_per_s']:>10,.0f} steps/s")
        enc = vec["encoder"]
        lines.append(
            f"encoder ({enc['dtype']}, batch {enc['batch']}): {enc['texts_per_s']:,.0f} texts/s end to end, tokenizer alone "
            f"{enc['tokenizer_texts_per_s']:,.0f}, forward alone {enc['forward_texts_per_s']:,.0f}; peak memory {vec['memory']}"
        )
    return lines


def replay_table(summary: dict[str, Any]) -> Any:
    """A rich table of every market's metric deltas with their 95% intervals, for the console."""
    from rich.table import Table

    what = " ".join(summary["overrides"])
    if summary.get("versus"):
        what = f"{what} versus {summary['versus']}".strip()
    table = Table(title=f"{summary['scenario']} · baseline vs {what} · {summary['episodes']} paired episodes")
    for col in ("market", "metric", "baseline", "override", "delta", "95% CI"):
        table.add_column(col, justify="left" if col in ("market", "metric") else "right", no_wrap=True)
    for market, metrics in summary["markets"].items():
        for metric, m in metrics.items():
            ci = m["delta_ci95"]
            table.add_row(
                market, metric, _fmt(m["baseline_mean"]), _fmt(m["override_mean"]), _fmt(m["delta_mean"]),
                "n/a" if ci is None else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]",
            )  # fmt: skip
    model = summary.get("model_uncertainty")
    if model:
        low, high = model["interval90"]
        sign = {"positive": "the learned market is sure it gains", "negative": "the learned market is sure it loses",
                "uncertain": "its sign is uncertain"}[model["sign"]]  # fmt: skip
        table.caption = (f"learned market over {model['draws']} draws of its model: profit delta {_fmt(model['mean'])}, "
                         f"90% interval [{_fmt(low)}, {_fmt(high)}]: {sign}")  # fmt: skip
    return table


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.2f}"


def sensitivity_table(wide: pd.DataFrame, title: str) -> Any:
    """A rich table of ``sensitivity_table``'s rows for the console; changes that pay in bold."""
    from rich.table import Table

    if wide.empty:
        title += " · no week to move (never on regular sale with stock, or a single level)"
    table = Table(title=title)
    for col in wide.columns:
        table.add_column(str(col), justify="right", no_wrap=True)
    for row in wide.itertuples(index=False):
        cells = []
        for col, value in zip(wide.columns, row):
            if col == "disagree":
                cells.append("yes" if value else "")
            elif col == "week":
                cells.append(f"{value:g}")
            elif isinstance(value, float) and np.isnan(value):
                cells.append("")
            else:
                text = f"{value:,.2f}"
                cells.append(f"[bold]{text}[/bold]" if col.endswith("level") and value > 0 else text)
        table.add_row(*cells)
    return table


def sweep_lines(result: Any) -> list[str]:
    """What the CLI prints: counts, the best run per scenario, failures, and where the tables are."""
    t = result.table
    lines = [
        f"{len(t)} trials: {int((t['status'] == 'ok').sum())} ok, {result.failed} failed "
        f"({result.ran} run now, {result.skipped} completed earlier)",
        "best run per scenario (ground-truth profit):",
    ]
    for row in result.best.itertuples():
        lines.append(
            f"  {row.scenario}: {row.algorithm} seed {row.seed} {row.hyperparams} -> {row.truth_profit:,.0f}"
            f" (ratio to oracle {ratio_text(row.ratio_to_oracle)}) {row.run_dir}"
        )
    for row in t[t["status"] == "failed"].itertuples():
        lines.append(f"  failed: {row.trial} {row.scenario} {row.algorithm} seed {row.seed} after {row.attempts} attempt(s): {row.error}")
    lines.append(f"table: {result.out / 'results.md'} and {result.out / 'results.parquet'}")
    return lines


def training_lines(evaluation: dict[str, Any]) -> list[str]:
    """A few readable lines of an evaluation.json: the profit where the policy is judged, the planner's
    ratio, best heuristic, gap."""
    lines = [f"evaluation ({evaluation['evaluator']}, {evaluation['episodes']} episodes per market):"]
    for m in evaluation["markets"]:
        head = f"  {m['scenario']} / {m['product_name']}:"
        if "truth" not in m and "learned_oracle" not in m:
            lines.append(f"{head} profit in the training market {m['training_market']['profit_mean']:,.0f}")
            continue
        judged = m["truth"] if "truth" in m else m["learned"]
        lo, hi = judged["profit_ci95"]
        heur = {k: v["profit_mean"] for k, v in (m.get("heuristics") or {}).items()}
        best = max(heur, key=heur.get) if heur else None
        where = "truth" if "truth" in m else "learned-market"
        text = f"{head} {where} profit {judged['profit_mean']:,.0f} (95% CI {lo:,.0f} to {hi:,.0f})"
        if m.get("oracle"):
            text += f"; oracle {m['oracle']['profit_mean']:,.0f} (ratio {ratio_text(m.get('ratio_to_oracle'))})"
        elif m.get("learned_oracle"):
            text += f"; learned market's plan {m['learned_oracle']['profit_mean']:,.0f} (ratio {ratio_text(m.get('ratio_to_learned_oracle'), 'learned plan')})"
        if best:
            text += f"; best heuristic {best} {heur[best]:,.0f}"
        if "truth" in m and m.get("learned") and m.get("sim_to_real_gap") is not None:
            text += f"; learned market {m['learned']['profit_mean']:,.0f} (sim-to-real gap {m['sim_to_real_gap']:.1%})"
        lines.append(text)
        lines += [f"    skipped: {line}" for line in m.get("skipped", [])]
    return lines
