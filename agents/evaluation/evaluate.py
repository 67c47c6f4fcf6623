"""Judging a policy where it counts: in the structural (ground-truth) market, next to the oracle and
the heuristic baselines, and in the learned market to measure the sim-to-real gap.

Every policy plays the same seeds (``seed``, ``seed + 1``, ...) with sampled outcomes, so the
comparison is under common random numbers as far as the policies' actions allow.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from gymnasium import spaces
from launchsim.agents.policies.heuristics import HEURISTICS, make_heuristic
from launchsim.agents.policies.source import ORACLE, resolve_policy
from launchsim.agents.rollout import Policy, episode_summary, run_episode
from launchsim.envs.launch_market import ENV_VERSION, LaunchMarketEnv
from launchsim.scenarios import Scenario, load_scenario, product_index
from launchsim.scenarios.overrides import apply_overrides
from scipy import stats

from launchsim.files import atomic_write, save_figure

TRAJECTORY_COLUMNS = ["week", "price", "ad_spend", "units_sold", "stock_left", "cumulative_profit"]
METRICS = {  # result key -> episode_summary key
    "revenue": "revenue",
    "units": "units_sold",
    "ad_spend": "ad_spend",
    "stock_left": "stock_left",
    "launch_week": "launch_week",
    "mean_price": "mean_price",
}


def evaluate(
    scenario: Scenario | str | Path,
    policy_spec: str | Path,
    episodes: int = 20,
    seed: int = 0,
    product: int | str = 0,
    predictor: Any = None,
    heuristics: bool = True,
    learned: bool = True,
    progress: Callable[[str], None] | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Run ``policy_spec`` on the same seeds in the structural and the learned market, and the oracle
    and heuristics in the structural market; return a JSON-serialisable summary (see docs/EVALUATION.md).

    ``predictor``: the learned market's response model (default: the shipped ensemble, loaded once);
    ``progress``: called with a short message before each stage; ``overrides``: ``--set PATH=VALUE``
    changes (``scenarios.overrides``) that every policy and both markets play, recorded in the result.
    """
    s = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    s = apply_overrides(s, list(overrides))
    index = product_index(s, product)
    seeds = [seed + i for i in range(episodes)]
    say = progress or (lambda message: None)
    spec = str(policy_spec)

    def make_policy() -> Policy:
        return resolve_policy(spec, s, index, seed=seed, predictor=predictor)

    say(f"planning the oracle for {s.name}" if spec == ORACLE else f"loading {spec}")
    wall, cpu = time.perf_counter(), time.process_time()
    policy = make_policy()  # first, so that a bad spec fails before any long work
    if spec != ORACLE:
        say(f"planning the oracle for {s.name}")
        wall, cpu = time.perf_counter(), time.process_time()
    oracle = policy if spec == ORACLE else resolve_policy(ORACLE, s, index)
    plan_seconds, plan_cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu

    say(f"{spec}: {episodes} episodes in the structural market")
    truth, truth_weekly = _play(s, index, policy, seeds)
    oracle_result, oracle_weekly = (dict(truth), truth_weekly) if spec == ORACLE else _play(s, index, oracle, seeds)
    oracle_result["expected_profit"] = float(oracle.plan.expected_profit)
    oracle_result["plan_seconds"] = plan_seconds
    oracle_result["plan_cpu_seconds"] = plan_cpu_seconds

    result: dict[str, Any] = {
        "scenario": s.name,
        "product": index,
        "product_name": s.products[index].name,
        "policy": spec,
        "env_version": ENV_VERSION,
        "episodes": episodes,
        "seeds": seeds,
        **({"overrides": list(overrides)} if overrides else {}),
        "truth": truth,
        "oracle": oracle_result,
        "ratio_to_oracle": _ratio(truth["profit_mean"], oracle_result["profit_mean"]),
    }

    trajectories = {"policy": truth_weekly, "oracle": oracle_weekly}
    if heuristics:
        say(f"{len(HEURISTICS)} heuristics in the structural market")
        result["heuristics"] = {}
        weekly_of = {}
        for name in HEURISTICS:
            summary, weekly = _play(s, index, make_heuristic(name, s, product=index, seed=seed), seeds)
            result["heuristics"][name] = summary
            weekly_of[name] = weekly
        best = max(result["heuristics"], key=lambda name: result["heuristics"][name]["profit_mean"])
        best_profit = result["heuristics"][best]["profit_mean"]
        result["best_heuristic"] = {
            "name": best,
            "profit_mean": best_profit,
            "ratio_to_oracle": _ratio(best_profit, oracle_result["profit_mean"]),
        }
        result["ratio_to_best_heuristic"] = _ratio(truth["profit_mean"], best_profit)
        trajectories["best_heuristic"] = weekly_of[best]

    if learned:
        if predictor is None:
            say("loading the default learned market")
            from launchsim.models.learned_market import load_shared

            predictor = load_shared()  # once per process: sweeps evaluate many runs in one worker
        say(f"{spec}: {episodes} episodes in the learned market")
        fresh = oracle if spec == ORACLE else make_policy()  # same starting state as in the structural market
        result["learned"], _ = _play(s, index, fresh, seeds, response_model=predictor)
        result["predictor"] = getattr(predictor, "identity", type(predictor).__name__)
        gap = abs(result["learned"]["profit_mean"] - truth["profit_mean"])
        result["sim_to_real_gap"] = _ratio(gap, abs(truth["profit_mean"]))

    result["trajectories"] = {label: _columns(weekly) for label, weekly in trajectories.items()}
    return _json_safe(result)


def _play(
    s: Scenario, product: int, policy: Policy, seeds: list[int], response_model: Any = None
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Play one policy on every seed; the summary over episodes and the first episode's weekly table."""
    env = LaunchMarketEnv(s, product=product, response_model=response_model, action_type=_action_type(policy))
    summaries, first = [], None
    for episode_seed in seeds:
        weekly = run_episode(env, policy, seed=episode_seed)
        first = weekly if first is None else first
        summaries.append(episode_summary(weekly))
    assert first is not None
    return summarise(summaries), first


def _action_type(policy: Policy) -> str:
    """The action space a policy acts in: its own ``action_type`` or that of its layout or algorithm,
    else that of its ``action_space``; multidiscrete when it says nothing."""
    declared = getattr(policy, "action_type", None)
    for holder in ("layout", "algorithm"):
        if declared is None:
            declared = getattr(getattr(policy, holder, None), "action_type", None)
    if declared is None:
        declared = "box" if isinstance(getattr(policy, "action_space", None), spaces.Box) else "multidiscrete"
    return declared


def summarise(summaries: list[dict[str, float]]) -> dict[str, Any]:
    """Mean profit with a 95% t-interval over episodes, and the mean of each other metric."""
    profit = np.array([e["profit"] for e in summaries], dtype=float)
    n = len(profit)
    mean = float(profit.mean())
    sd = float(profit.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else 0.0
    out: dict[str, Any] = {
        "profit_mean": mean, "profit_ci95": [mean - half, mean + half], "profit_sd": sd, "episodes": n,
    }  # fmt: skip
    for key, source in METRICS.items():
        values = np.array([e[source] for e in summaries], dtype=float)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else None
    return out


def _ratio(a: float, b: float) -> float | None:
    """``a / b`` where the reference ``b`` is a positive profit (a ratio to a loss reads upside down)."""
    return float(a / b) if b > 0 else None


def _columns(weekly: pd.DataFrame) -> dict[str, list[float]]:
    return {col: [float(x) for x in weekly[col]] for col in TRAJECTORY_COLUMNS}


def _json_safe(value: Any) -> Any:
    """NaN and infinities become None, so the result is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- report

_ROW_COLUMNS = [
    ("profit_mean", "profit (mean)", "{:,.0f}"),
    ("profit_ci95", "95% CI", None),
    ("revenue", "revenue", "{:,.0f}"),
    ("units", "units", "{:,.0f}"),
    ("ad_spend", "ad spend", "{:,.0f}"),
    ("stock_left", "stock left", "{:,.0f}"),
    ("launch_week", "launch week", "{:.1f}"),
    ("mean_price", "mean price", "{:.2f}"),
]


def report_rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, summary) rows: the policy in both markets, the oracle, then each heuristic."""
    policy = result["policy"]
    rows = [(f"{policy} (structural market)", result["truth"])]
    if "learned" in result:
        rows.append((f"{policy} (learned market)", result["learned"]))
    if policy != ORACLE:
        rows.append(("oracle (structural market)", result["oracle"]))
    for name, summary in result.get("heuristics", {}).items():
        rows.append((f"{name} (structural market)", summary))
    return rows


def _cell(summary: dict[str, Any], key: str, fmt: str | None) -> str:
    value = summary.get(key)
    if value is None:
        return "n/a"
    if key == "profit_ci95":
        return f"[{value[0]:,.0f}, {value[1]:,.0f}]"
    return fmt.format(value) if fmt else str(value)


def markdown_table(result: dict[str, Any]) -> str:
    """The evaluation as a Markdown table, with the headline ratios under it."""
    oracle_profit = result["oracle"]["profit_mean"]
    head = ["policy", *(title for _, title, _ in _ROW_COLUMNS), "ratio to oracle"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, summary in report_rows(result):
        ratio = _ratio(summary["profit_mean"], oracle_profit)
        cells = [_cell(summary, key, fmt) for key, _, fmt in _ROW_COLUMNS]
        lines.append("| " + " | ".join([label, *cells, "n/a" if ratio is None else f"{ratio:.3f}"]) + " |")
    notes = [
        f"Scenario `{result['scenario']}`, product `{result['product_name']}`, {result['episodes']} episodes "
        f"(seeds {result['seeds'][0]}..{result['seeds'][-1]}), sampled outcomes.",
        f"ratio_to_oracle = {_fmt(result['ratio_to_oracle'])}; "
        f"oracle expected profit (plan value) = {result['oracle']['expected_profit']:,.0f}.",
    ]
    if "sim_to_real_gap" in result:
        notes.append(f"sim_to_real_gap = {_fmt(result['sim_to_real_gap'])} (|learned - truth| / |truth|).")
    if "best_heuristic" in result:
        b = result["best_heuristic"]
        ratio = _fmt(b["ratio_to_oracle"])
        notes.append(f"best heuristic: {b['name']} ({b['profit_mean']:,.0f}, ratio to oracle {ratio}).")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md`` (the table) and ``trajectories.png`` (weekly price, ad spend, sales,
    stock and cumulative profit of the policy, the best heuristic and the oracle) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "trajectories.png"
    md = out / "report.md"

    panels = [
        ("price", "price"), ("ad_spend", "ad spend"), ("units_sold", "units sold"), ("stock_left", "stock left"),
        ("cumulative_profit", "cumulative profit"),
    ]  # fmt: skip
    fig, grid = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    axes = grid.ravel()
    labels = {"policy": f"policy: {result['policy']}", "oracle": "oracle"}
    if "best_heuristic" in result:
        labels["best_heuristic"] = f"best heuristic: {result['best_heuristic']['name']}"
    styles = {"policy": "-", "best_heuristic": "--", "oracle": ":"}
    for ax, (col, title) in zip(axes, panels):
        for key, label in labels.items():
            series = result["trajectories"].get(key)
            if series:
                values = series[col]
                if col == "price":  # no price before launch: leave a gap rather than a drop to zero
                    values = [v if v > 0 else float("nan") for v in values]
                ax.plot(series["week"], values, styles[key], label=label, linewidth=1.8)
        ax.set_title(title)
        ax.set_xlabel("week")
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    axes[-1].legend(handles, names, loc="center", fontsize=10)
    fig.suptitle(f"{result['scenario']} · structural market · seed {result['seeds'][0]}")
    save_figure(fig, png)

    changed = "".join(f"- `--set {o}`\n" for o in result.get("overrides", []))
    atomic_write(
        md,
        f"# Evaluation of `{result['policy']}` on `{result['scenario']}`\n\n"
        + (f"Judged on the scenario changed by:\n{changed}\n" if changed else "")
        + markdown_table(result)
        + f"\n![weekly trajectories]({png.name})\n"
    )
    return {"markdown": md, "png": png}
