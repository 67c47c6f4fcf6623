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
from launchsim.agents.evaluation.uncertainty import DRAWS, model_uncertainty
from launchsim.agents.policies.heuristics import HEURISTICS, make_heuristic
from launchsim.agents.policies.oracle import LEARNED_SEARCH, make_oracle
from launchsim.agents.policies.source import ORACLE, resolve_policy
from launchsim.agents.rollout import Policy, episode_summary, run_episode
from launchsim.envs.launch_market import ENV_VERSION, LaunchMarketEnv
from launchsim.scenarios import Scenario, load_scenario, product_index
from launchsim.scenarios.overrides import apply_overrides
from scipy import stats

from launchsim.files import atomic_write, finite, save_figure

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
    learned_oracle: bool | None = None,
    search: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``policy_spec`` on the same seeds in the structural and the learned market, and the oracle
    and heuristics in the structural market; return a JSON-serialisable summary (see docs/EVALUATION.md).

    A scenario without a truth block is judged in the learned market alone: the policy and the heuristics
    play there, next to the learned market's planner (``learned_oracle``), and ``skipped`` says what
    needed the truth. ``learned_oracle``: also plan on the learned market when the scenario has a truth
    (default: only without one); ``search``: the learned planner's search settings (``make_oracle``'s
    keywords, default ``LEARNED_SEARCH``). Every summary names the market it comes from (``market``).

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
    has_truth = s.truth is not None
    if not has_truth and not learned:
        s.require_truth("an evaluation without the learned market (--no-learned)")
    plan_learned = learned and (not has_truth if learned_oracle is None else learned_oracle)
    if learned and predictor is None:
        say("loading the default learned market")
        from launchsim.models.learned_market import load_shared

        predictor = load_shared()  # once per process: sweeps evaluate many runs in one worker

    def make_policy() -> Policy:
        return resolve_policy(spec, s, index, seed=seed, predictor=predictor)

    say(f"loading {spec}")
    policy = make_policy()  # first, so that a bad spec fails before any long work
    judge, judge_model = ("structural", None) if has_truth else ("learned", predictor)
    result: dict[str, Any] = {
        "scenario": s.name,
        "product": index,
        "product_name": s.products[index].name,
        "policy": spec,
        "env_version": ENV_VERSION,
        "episodes": episodes,
        "seeds": seeds,
        **({"overrides": list(overrides)} if overrides else {}),
        **({"currency": s.currency} if s.currency else {}),
        "judged_in": judge,
    }
    if not has_truth:
        result["skipped"] = [f"structural market, ground-truth oracle and sim-to-real gap: {s.source} has no truth block"]
    trajectories = {}
    if has_truth:
        say(f"planning the oracle for {s.name}")
        oracle, plan_seconds, plan_cpu = _timed(lambda: policy if spec == ORACLE else resolve_policy(ORACLE, s, index))
        say(f"{spec}: {episodes} episodes in the structural market")
        truth, trajectories["policy"] = _play(s, index, policy, seeds)
        oracle_result, trajectories["oracle"] = (dict(truth), trajectories["policy"]) if spec == ORACLE else _play(s, index, oracle, seeds)
        oracle_result.update(expected_profit=float(oracle.plan.expected_profit), plan_seconds=plan_seconds, plan_cpu_seconds=plan_cpu)
        result.update(truth=truth, oracle=oracle_result, ratio_to_oracle=_ratio(truth["profit_mean"], oracle_result["profit_mean"]),
                      regret_to_oracle=oracle_result["profit_mean"] - truth["profit_mean"])  # fmt: skip

    if learned:
        say(f"{spec}: {episodes} episodes in the learned market")
        fresh = make_policy() if has_truth else policy  # same starting state as in the structural market
        result["learned"], learned_weekly = _play(s, index, fresh, seeds, response_model=predictor)
        result["predictor"] = getattr(predictor, "identity", type(predictor).__name__)
        say(f"{spec}: {DRAWS} draws of the learned market's model")
        result["learned"]["model_uncertainty"] = model_uncertainty(s, index, make_policy, predictor, _action_type(policy), seed=seed)
        if has_truth:
            gap = abs(result["learned"]["profit_mean"] - result["truth"]["profit_mean"])
            result["sim_to_real_gap"] = _ratio(gap, abs(result["truth"]["profit_mean"]))
        else:
            trajectories["policy"] = learned_weekly
    if plan_learned:
        settings = {**LEARNED_SEARCH, **(search or {})}
        say(f"planning on the learned market for {s.name}")
        planner, plan_seconds, plan_cpu = _timed(lambda: make_oracle(s, product=index, response_model=predictor, **settings))
        say(f"learned market's plan: {episodes} episodes in the learned market")
        summary, weekly = _play(s, index, planner, seeds, response_model=predictor)
        summary.update(expected_profit=float(planner.plan.expected_profit), plan_seconds=plan_seconds, plan_cpu_seconds=plan_cpu, search=settings)
        summary["model_uncertainty"] = model_uncertainty(s, index, lambda: planner, predictor, seed=seed)
        if has_truth:
            summary["in_truth"], _ = _play(s, index, planner, seeds)
            summary["in_truth"]["ratio_to_oracle"] = _ratio(summary["in_truth"]["profit_mean"], result["oracle"]["profit_mean"])
        else:
            trajectories["learned_oracle"] = weekly
        result["learned_oracle"] = summary
        result["ratio_to_learned_oracle"] = _ratio(result["learned"]["profit_mean"], summary["profit_mean"])
        result["regret_to_learned_oracle"] = summary["profit_mean"] - result["learned"]["profit_mean"]

    if heuristics:
        say(f"{len(HEURISTICS)} heuristics in the {judge} market")
        result["heuristics"] = {}
        weekly_of = {}
        for name in HEURISTICS:
            summary, weekly = _play(s, index, make_heuristic(name, s, product=index, seed=seed), seeds, response_model=judge_model)
            result["heuristics"][name] = summary
            weekly_of[name] = weekly
        best = max(result["heuristics"], key=lambda name: result["heuristics"][name]["profit_mean"])
        best_profit = result["heuristics"][best]["profit_mean"]
        reference = result.get("oracle") or result.get("learned_oracle")
        result["best_heuristic"] = {
            "name": best,
            "market": judge,
            "profit_mean": best_profit,
            "ratio_to_oracle": _ratio(best_profit, reference["profit_mean"]) if reference else None,
        }
        result["ratio_to_best_heuristic"] = _ratio(result["truth" if has_truth else "learned"]["profit_mean"], best_profit)
        trajectories["best_heuristic"] = weekly_of[best]

    result["trajectories"] = {label: _columns(weekly) for label, weekly in trajectories.items()}
    return finite(result)  # strict JSON: NaN and infinities become None


def _timed(build: Callable[[], Any]) -> tuple[Any, float, float]:
    """``build()`` with its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = build()
    return value, time.perf_counter() - wall, time.process_time() - cpu


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
    return {"market": "structural" if response_model is None else "learned", **summarise(summaries)}, first


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


# ---------------------------------------------------------------- report

_MONEY = {"profit_mean", "profit_ci95", "revenue", "ad_spend", "mean_price"}
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


def report_rows(result: dict[str, Any]) -> list[tuple[str, dict[str, Any], float | None]]:
    """(label, summary, ratio) rows: the policy in each market it played, the planners, then each heuristic.
    A row's ratio is to the planner of its own market (the ground-truth oracle in the structural market,
    the learned market's planner in the learned one), where that planner's profit is positive."""
    policy = result["policy"]
    reference = {"structural": result.get("oracle"), "learned": result.get("learned_oracle")}
    rows = []
    if "truth" in result:
        rows.append((f"{policy} (structural market)", result["truth"]))
    if "learned" in result:
        rows.append((f"{policy} (learned market)", result["learned"]))
    if "oracle" in result and policy != ORACLE:
        rows.append(("oracle (structural market)", result["oracle"]))
    if "learned_oracle" in result:
        rows.append(("learned market's plan (learned market)", result["learned_oracle"]))
        if "in_truth" in result["learned_oracle"]:
            rows.append(("learned market's plan (structural market)", {"market": "structural", **result["learned_oracle"]["in_truth"]}))
    for name, summary in result.get("heuristics", {}).items():
        rows.append((f"{name} ({summary.get('market', 'structural')} market)", summary))
    out = []
    for label, summary in rows:
        planner = reference.get(summary.get("market", "structural"))
        out.append((label, summary, _ratio(summary["profit_mean"], planner["profit_mean"]) if planner else None))
    return out


def _cell(summary: dict[str, Any], key: str, fmt: str | None) -> str:
    value = summary.get(key)
    if value is None:
        return "n/a"
    if key == "profit_ci95":
        return f"[{value[0]:,.0f}, {value[1]:,.0f}]"
    return fmt.format(value) if fmt else str(value)


def markdown_table(result: dict[str, Any]) -> str:
    """The evaluation as a Markdown table, with the headline ratios under it."""
    head, rows = report_table(result)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in report_notes(result)) + "\n"


def report_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The report's header (money columns name the scenario's currency) and one row of cells per policy and market."""
    unit = f" ({result['currency']})" if result.get("currency") else ""
    head = ["policy", *(title + (unit if key in _MONEY else "") for key, title, _ in _ROW_COLUMNS), "ratio to its market's planner"]
    rows = [[label, *(_cell(summary, key, fmt) for key, _, fmt in _ROW_COLUMNS), _fmt(ratio)] for label, summary, ratio in report_rows(result)]
    return head, rows


def report_notes(result: dict[str, Any]) -> list[str]:
    """The headline figures under the table, each naming its market."""
    notes = [
        f"Scenario `{result['scenario']}`, product `{result['product_name']}`, {result['episodes']} episodes "
        f"(seeds {result['seeds'][0]}..{result['seeds'][-1]}), sampled outcomes; judged in the {result['judged_in']} market.",
    ]
    if "oracle" in result:
        notes.append(
            f"ratio_to_oracle = {_fmt(result['ratio_to_oracle'])} (regret {result['regret_to_oracle']:,.0f}); "
            f"oracle expected profit (plan value) = {result['oracle']['expected_profit']:,.0f}."
        )
    if "learned_oracle" in result:
        plan = result["learned_oracle"]
        notes.append(
            f"ratio_to_learned_oracle = {_fmt(result['ratio_to_learned_oracle'])} (regret {result['regret_to_learned_oracle']:,.0f}, "
            f"in the learned market); the learned market's plan expects {plan['expected_profit']:,.0f}."
        )
        if "in_truth" in plan:
            notes.append(f"the learned market's plan in the structural market: ratio to the oracle {_fmt(plan['in_truth']['ratio_to_oracle'])}.")
    model = (result.get("learned") or {}).get("model_uncertainty")
    if model:
        low, high = model["interval90"]
        notes.append(
            f"the learned market's model: the policy's expected profit over {model['draws']} draws ({model['members']} member(s), demand level "
            f"log-sd {model['level_log_sd']:.2f}) has mean {model['mean']:,.0f}, 90% interval [{low:,.0f}, {high:,.0f}], "
            f"10% quantile {model['p10']:,.0f}, CVaR 10% {model['cvar10']:,.0f}."
        )
    if "sim_to_real_gap" in result:
        notes.append(f"sim_to_real_gap = {_fmt(result['sim_to_real_gap'])} (|learned - truth| / |truth|).")
    if "best_heuristic" in result:
        b = result["best_heuristic"]
        notes.append(f"best heuristic: {b['name']} ({b['profit_mean']:,.0f} in the {b.get('market', 'structural')} market, ratio to its planner {_fmt(b['ratio_to_oracle'])}).")
    notes += [f"skipped: {line}" for line in result.get("skipped", [])]
    return notes


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_report(result: dict[str, Any], out_dir: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write ``report.md`` (the table), ``trajectories.png`` (weekly price, ad spend, sales, stock and
    cumulative profit of the policy, the best heuristic and the planner) and ``report.html`` (all of it in
    one self-contained page, with ``command``, the command that made it) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from launchsim.agents.evaluation.html_report import evaluation_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, md, html = out / "trajectories.png", out / "report.md", out / "report.html"

    money = f" ({result['currency']})" if result.get("currency") else ""
    panels = [
        ("price", f"price{money}"), ("ad_spend", f"ad spend{money}"), ("units_sold", "units sold"), ("stock_left", "stock left"),
        ("cumulative_profit", f"cumulative profit{money}"),
    ]  # fmt: skip
    fig, grid = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    axes = grid.ravel()
    labels = {"policy": f"policy: {result['policy']}", "oracle": "oracle", "learned_oracle": "learned market's plan"}
    if "best_heuristic" in result:
        labels["best_heuristic"] = f"best heuristic: {result['best_heuristic']['name']}"
    styles = {"policy": "-", "best_heuristic": "--", "oracle": ":", "learned_oracle": ":"}
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
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    axes[-1].axis("off")
    axes[-1].legend(handles, names, loc="center", fontsize=10)
    fig.suptitle(f"{result['scenario']} · {result['product_name']} · {result['policy']} · {result.get('judged_in', 'structural')} market · seed {result['seeds'][0]}")
    save_figure(fig, png)

    changed = "".join(f"- `--set {o}`\n" for o in result.get("overrides", []))
    atomic_write(
        md,
        f"# Evaluation of `{result['policy']}` on `{result['scenario']}`\n\n"
        + (f"Judged on the scenario changed by:\n{changed}\n" if changed else "")
        + markdown_table(result)
        + f"\n![weekly trajectories]({png.name})\n"
    )
    atomic_write(html, evaluation_page(result, report_table(result), report_notes(result), png, command))
    return {"markdown": md, "png": png, "html": html}
