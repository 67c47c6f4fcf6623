"""What-if replays: a baseline and an alternative played on the same seeds, compared week by week.

The alternative is the scenario with ``--set`` overrides (``scenarios.overrides``), another policy
(the plain A/B form), or both. Both arms run episode ``i`` with seed ``seed + i``; the env draws
every step's uniforms at reset from that seed, so the arms share random numbers step by step
(common random numbers) and a difference in outcomes comes from the change, not from the noise.
Each metric's delta (override - baseline, per episode) gets a paired 95% t-interval.

Which policy acts in the override arm: by default the very policy built for the baseline
scenario (a what-if changes the world and holds the decision rule fixed, so action "price level 6"
means the same lever in both arms: ``pricing.levels=*1.1`` prices 10% higher). With
``rebuild_policy`` the policy is built again from its spec for the changed scenario (a heuristic
re-reads the calendar, the oracle re-plans). An override that changes the action space or the
number of steps needs ``rebuild_policy``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from launchsim.agents.evaluation.statistics import paired_interval
from launchsim.agents.policies.source import build_policy, policy_identity
from launchsim.agents.rollout import WEEKLY_COLUMNS, episode_summary, run_episode
from launchsim.envs.actions import ActionLayout
from launchsim.agents.evaluation.uncertainty import delta_uncertainty, level_log_sd, model_draws, profit_draws
from launchsim.envs.launch_market import MARKETS, LaunchMarketEnv
from launchsim.scenarios import product_index
from launchsim.scenarios.loader import scenario_hash
from launchsim.scenarios.overrides import apply_overrides
from launchsim.scenarios.schema import Scenario

from launchsim.errors import PolicyError
from launchsim.files import atomic_write, save_figure, write_frame, write_json

METRICS = ("profit", "revenue", "units_sold", "lost_sales", "ad_spend", "stock_left", "launch_week", "mean_price")
_TEXT_COLUMNS = {"launched", "flash_sale", "bundle_partner", "creative", "ignored"}


@dataclass
class Arm:
    """One side of a replay: the scenario it plays in and the policy that acts."""

    label: str
    scenario: Scenario
    policy: Any
    policy_spec: str


@dataclass
class ReplayResult:
    weekly: pd.DataFrame  # one row per (market, episode, week): <col>_baseline, <col>_override, <col>_delta
    episodes: pd.DataFrame  # one row per (market, arm, episode): the episode totals
    summary: dict[str, Any]
    arms: tuple[Arm, Arm] = field(repr=False)


def replay(
    scenario: Scenario,
    policy: str = "list_price",
    overrides: Sequence[str] = (),
    versus: str | None = None,
    episodes: int = 20,
    seed: int = 0,
    product: int | str = 0,
    markets: Sequence[str] | None = None,
    predictor: Any = None,
    actions: Path | str | None = None,
    rebuild_policy: bool = False,
    outcomes: str = "sampled",
    progress: bool = False,
) -> ReplayResult:
    """Play baseline (scenario, policy) and override (scenario + overrides, versus or policy) on the
    same seeds in each market (default: every market the scenario can play, ``playable_markets``); return
    the paired weekly table, per-episode totals and summary (``skipped`` says which market was left out and why)."""
    if not overrides and versus is None:
        raise PolicyError("replay needs something to compare: --set PATH=VALUE overrides, --versus POLICY, or both")
    markets, skipped = playable_markets(scenario, markets)
    index = product_index(scenario, product)
    changed = apply_overrides(scenario, list(overrides))
    needs_predictor = "learned" in markets
    if needs_predictor and (predictor is None or isinstance(predictor, str | Path)):
        from launchsim.models.learned_market import load_predictor

        predictor = load_predictor(predictor)

    base_policy = build_policy(policy, scenario, index, seed=seed, predictor=predictor, actions=actions)
    other_spec = versus if versus is not None else policy
    if versus is not None:
        other_policy = build_policy(versus, changed, index, seed=seed, predictor=predictor)
    elif rebuild_policy:
        other_policy = build_policy(policy, changed, index, seed=seed, predictor=predictor, actions=actions)
    else:
        _check_same_levers(scenario, changed)
        other_policy = _twin(base_policy)
    arms = (Arm("baseline", scenario, base_policy, policy if actions is None else f"actions:{actions}"),
            Arm("override", changed, other_policy, other_spec))  # fmt: skip

    templates = [_twin(arm.policy) for arm in arms]  # in their starting state, for the model draws
    weekly_parts, episode_rows = [], []
    for market in markets:
        envs = [market_env(arm.scenario, index, market, predictor, outcomes) for arm in arms]
        for ep in _progress(range(episodes), progress, f"replay ({market})"):
            frames = []
            for arm, env in zip(arms, envs):
                frame = run_episode(env, arm.policy, seed=seed + ep)
                episode_rows.append(
                    {"market": market, "arm": arm.label, "episode": ep, "seed": seed + ep, **episode_summary(frame)}
                )
                frames.append(frame)
            weekly_parts.append(_pair_weeks(frames[0], frames[1], market, ep, seed + ep))
    weekly = pd.concat(weekly_parts, ignore_index=True)
    per_episode = pd.DataFrame(episode_rows)
    summary = _summarise(
        per_episode, arms, list(overrides), versus, episodes, seed, markets, predictor, rebuild_policy, outcomes, index
    )
    if skipped:
        summary["skipped"] = skipped
    if "learned" in markets:
        summary["model_uncertainty"] = _model_delta(arms, templates, index, predictor)
    return ReplayResult(weekly, per_episode, summary, arms)


def _model_delta(arms: tuple[Arm, Arm], templates: list[Any], product: int, predictor: Any) -> dict[str, Any]:
    """The profit change (override - baseline) over draws of the learned market's model, both arms under the
    same draw with expected outcomes: how sure the learned market is of the change's sign."""
    draws = model_draws(predictor)
    values = [profit_draws(arm.scenario, product, lambda t=t: t, draws) for arm, t in zip(arms, templates)]
    from launchsim.models.learned_market import market_members

    members = len(market_members(predictor))
    return {"market": "learned", "metric": "profit (expected outcomes)", **delta_uncertainty(values[1] - values[0], level_log_sd(predictor), members)}


def _twin(policy: Any) -> Any:
    """An independent copy in the same state, so a policy with its own random generator (``random``)
    draws the same numbers in both arms; the policy itself when it cannot be copied."""
    try:
        return copy.deepcopy(policy)
    except Exception:  # noqa: BLE001 - an uncopyable policy (open handles) is shared; deterministic ones lose nothing
        return policy


def _check_same_levers(base: Scenario, changed: Scenario) -> None:
    a, b = ActionLayout(base, "multidiscrete").nvec, ActionLayout(changed, "multidiscrete").nvec
    if base.n_steps != changed.n_steps or not np.array_equal(a, b):
        raise PolicyError(
            f"the overrides change the action space or the horizon (levers {a.tolist()} -> {b.tolist()}, "
            f"steps {base.n_steps} -> {changed.n_steps}), so the baseline's policy cannot act unchanged; "
            "pass --rebuild-policy to build the policy for the changed scenario"
        )


def check_markets(names: Sequence[str]) -> None:
    """Raise a PolicyError naming the first of ``names`` that is not a market (with the closest one), or none."""
    unknown = [str(name) for name in names if name not in MARKETS]
    if unknown or not names:
        close = difflib.get_close_matches(unknown[0], MARKETS, n=1) if unknown else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        found = repr(unknown[0]) if unknown else "none"
        raise PolicyError(f"markets: found {found}{hint} (expected one or more of {list(MARKETS)})")


def playable_markets(scenario: Scenario, markets: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """The markets to play and a line for each left out: ``None`` means every market the scenario can play
    (the structural one needs its truth block); markets asked for by name are played or refused."""
    if markets is not None:
        check_markets(markets)
        return list(dict.fromkeys(markets)), []
    if scenario.truth is None:
        return ["learned"], [f"structural market: {scenario.source} has no truth block"]
    return list(MARKETS), []


def market_env(scenario: Scenario, product: int, market: str, predictor: Any, outcomes: str) -> LaunchMarketEnv:
    """One market for (scenario, product): the structural one, or the learned one with ``predictor``."""
    model = predictor if market == "learned" else None
    return LaunchMarketEnv(scenario, product, response_model=model, outcomes=outcomes)  # type: ignore[arg-type]


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def _pair_weeks(base: pd.DataFrame, other: pd.DataFrame, market: str, episode: int, seed: int) -> pd.DataFrame:
    columns = [c for c in [*WEEKLY_COLUMNS, "cumulative_profit", "ignored"] if c != "week"]
    merged = base.merge(other, on="week", how="outer", suffixes=("_baseline", "_override"), sort=True)
    for col in columns:
        if col not in _TEXT_COLUMNS:
            merged[f"{col}_delta"] = merged[f"{col}_override"].astype(float) - merged[f"{col}_baseline"].astype(float)
    ordered = ["week"] + [
        f"{c}_{s}" for c in columns for s in ("baseline", "override", "delta") if f"{c}_{s}" in merged
    ]
    merged = merged[ordered]
    merged.insert(0, "seed", seed)
    merged.insert(0, "episode", episode)
    merged.insert(0, "market", market)
    return merged


def _summarise(
    per_episode: pd.DataFrame, arms, overrides, versus, episodes, seed, markets, predictor, rebuild, outcomes, product
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "scenario": arms[0].scenario.name,
        "product": arms[0].scenario.products[product].name,
        **({"currency": arms[0].scenario.currency} if arms[0].scenario.currency else {}),
        "overrides": overrides,
        "versus": versus,
        "episodes": episodes,
        "seeds": [seed, seed + episodes - 1],
        "outcomes": outcomes,
        "common_random_numbers": "both arms play episode i with seed seed+i; every step's uniforms are drawn at reset from it",
        "policy_in_override_arm": "versus"
        if versus
        else ("rebuilt for the changed scenario" if rebuild else "the baseline's policy, unchanged"),
        "arms": {
            arm.label: {
                "policy": policy_identity(arm.policy, arm.policy_spec),
                "scenario_hash": scenario_hash(arm.scenario),
            }
            for arm in arms
        },
        "markets": {},
    }
    if "learned" in markets:
        result["predictor"] = str(getattr(predictor, "identity", type(predictor).__name__))
    for market in markets:
        rows = per_episode[per_episode["market"] == market]
        base = rows[rows["arm"] == "baseline"].set_index("episode").sort_index()
        other = rows[rows["arm"] == "override"].set_index("episode").sort_index()
        metrics = {}
        for metric in METRICS:
            interval = paired_interval((other[metric] - base[metric]).to_numpy())
            metrics[metric] = {
                "baseline_mean": _mean(base[metric]),
                "override_mean": _mean(other[metric]),
                "delta_mean": interval["mean"],
                "delta_ci95": interval["ci95"],
                "delta_sd": interval["sd"],
                "n": interval["n"],
            }
        result["markets"][market] = metrics
    return result


def _mean(values: pd.Series) -> float | None:
    finite = values.dropna()
    return float(finite.mean()) if len(finite) else None


# ---------------------------------------------------------------- output


def write_replay(result: ReplayResult, out_dir: Path | str, command: str | None = None) -> dict[str, Path]:
    """Write weekly.csv, weekly.parquet, episodes.csv, summary.json, trajectories.png and report.html (one
    self-contained page, with ``command``, the command that made it) into ``out_dir``."""
    from launchsim.agents.evaluation.html_report import replay_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "weekly_csv": out / "weekly.csv",
        "weekly_parquet": out / "weekly.parquet",
        "episodes": out / "episodes.csv",
        "summary": out / "summary.json",
        "plot": out / "trajectories.png",
        "html": out / "report.html",
    }
    write_frame(paths["weekly_csv"], result.weekly)
    write_frame(paths["weekly_parquet"], result.weekly)
    write_frame(paths["episodes"], result.episodes)
    write_json(paths["summary"], result.summary)
    plot_replay(result, paths["plot"])
    atomic_write(paths["html"], replay_page(result.summary, paths["plot"], command))
    return paths


def plot_replay(result: ReplayResult, path: Path | str) -> Path:
    """Mean trajectories of both arms (band: 10th-90th percentile over episodes), one column per market."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    markets = list(result.summary["markets"])
    money = f" ({result.summary['currency']})" if result.summary.get("currency") else ""
    panels = [
        ("cumulative_profit", f"cumulative profit{money}"),
        ("units_sold", "units sold / week"),
        ("price", f"price{money}"),
        ("ad_spend", f"ad spend / week{money}"),
    ]
    fig, axes = plt.subplots(
        len(panels), len(markets), figsize=(5.5 * len(markets), 2.6 * len(panels)), squeeze=False, sharex=True
    )
    for j, market in enumerate(markets):
        weekly = result.weekly[result.weekly["market"] == market]
        for i, (col, label) in enumerate(panels):
            ax = axes[i][j]
            for arm, colour, style in (("baseline", "tab:blue", "-"), ("override", "tab:orange", "--")):
                grouped = weekly.groupby("week")[f"{col}_{arm}"]
                mean = grouped.mean()
                ax.plot(mean.index, mean.to_numpy(), color=colour, linestyle=style, label=arm)
                ax.fill_between(
                    mean.index,
                    grouped.quantile(0.1).to_numpy(),
                    grouped.quantile(0.9).to_numpy(),
                    color=colour,
                    alpha=0.15,
                    linewidth=0,
                )
            ax.set_ylabel(label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if i == 0:
                ax.set_title(f"{market} market")
                ax.legend(loc="upper left", fontsize=8)
            if i == len(panels) - 1:
                ax.set_xlabel("week")
    what = " ".join(result.summary["overrides"]) or ""
    if result.summary.get("versus"):
        what = (what + f" · versus {result.summary['versus']}").strip(" ·")
    policy = result.summary["arms"]["baseline"]["policy"]
    name = policy.get("spec", policy) if isinstance(policy, dict) else policy
    fig.suptitle(f"{result.summary['scenario']} · {result.summary['product']} · {name}: baseline vs {what}", fontsize=10)
    return save_figure(fig, path)


