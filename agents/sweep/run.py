"""Sweeps on Ray: every trial of a sweep file is a normal training run, evaluated in the
ground-truth market, scheduled as a Ray task on the local machine or on a cluster.

Why Ray core tasks rather than Ray Tune: a trial here is one self-contained training run that
writes its own run folder, so Tune's trial actors, experiment storage and checkpoint syncing add
start-up cost and a second folder layout without adding anything the sweep uses. Plain tasks
reuse warm worker processes (torch and SB3 are imported once per worker, not once per trial), and
the bounded retry is done here, one task per attempt (``max_retries=0`` on the task), so the table
knows each trial's exact attempt count and error, and a user error inside a trial (a
LaunchSimError, which would fail the same way again) is not retried. Ray still does the rest:
placing trials on nodes by their CPU/GPU request (fractional GPUs included), detecting a dead
worker or node, and shipping results back.

Layout of a sweep folder::

    OUT/sweep.yaml              the resolved sweep file
    OUT/runs/<trial name>/      one training run folder per trial (agents.training layout)
    OUT/trials/<trial id>.json  the trial's record; status "ok" marks it complete for re-runs
    OUT/results.parquet, results.md, best.parquet   the merged table and the best run per scenario
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from launchsim.agents.sweep.config import SweepConfig, TrialSpec, expand_trials

from launchsim.errors import LaunchSimError, SweepError

TrialFn = Callable[[TrialSpec, Path], dict[str, Any]]
INSTALL_HINT = 'Ray is not installed; install the extra: pip install "launchsim[ray]" (or pip install -e ".[ray]" in a checkout)'
LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2  # trials return small dicts; run folders go to disk
METRIC_COLUMNS = [
    "products", "truth_profit", "truth_profit_ci95", "learned_profit", "oracle_profit", "best_heuristic_profit",
    "ratio_to_oracle", "sim_to_real_gap",
]  # fmt: skip
TABLE_COLUMNS = [
    "trial", "scenario", "algorithm", "seed", "steps", "hyperparams", *METRIC_COLUMNS, "wall_s", "cpu_s", "status", "attempts",
    "error", "run_dir",
]  # fmt: skip


@dataclass
class SweepResult:
    """What a sweep produced: the merged table, the best run per scenario and where they were written."""

    table: pd.DataFrame
    best: pd.DataFrame
    out: Path
    ran: int
    skipped: int

    @property
    def failed(self) -> int:
        return int((self.table["status"] == "failed").sum())


def require_ray() -> Any:
    """Import Ray lazily; without it, a SweepError that says how to install the extra."""
    try:
        import ray
    except ImportError as err:
        raise SweepError(INSTALL_HINT) from err
    return ray


@contextmanager
def ray_runtime(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """Join the cluster at ``address``, or start Ray on this machine (no dashboard, a small object
    store, nothing reachable from outside); join a Ray instance already running here."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report over the network
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        else:
            # address="local": always a fresh instance, never a `ray start` cluster that happens to run here
            ray.init(
                address="local", num_cpus=num_cpus or os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                include_dashboard=False, logging_level="WARNING",
            )  # fmt: skip
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise SweepError(f"could not start or join {where}: {str(err).splitlines()[0]}") from err
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds with one line when nothing listens at HOST:PORT (Ray itself retries for minutes)."""
    import socket

    host_port = address.removeprefix("ray://")
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        if address == "auto":  # a node of a running cluster: Ray finds the head itself
            return
        raise SweepError(f"--address {address}: expected ray://HOST:PORT (Ray Client) or HOST:PORT (GCS, on a cluster node)")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as err:
        raise SweepError(f"--address {address}: nothing answers at {host}:{port} ({err.strerror or err}); is the head node running (ray start --head)?") from err


def run_sweep(
    config: SweepConfig,
    out: Path,
    address: str | None = None,
    max_concurrent: int | None = None,
    trial_fn: TrialFn | None = None,
    base_dir: Path | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run every trial of ``config`` that has not completed in ``out`` yet, then write the merged table.

    ``trial_fn(spec, run_dir) -> metrics`` runs one trial inside a Ray worker (default:
    :func:`train_and_evaluate`); tests inject others. ``max_concurrent`` caps the trials in flight
    (default: as many as the cluster's CPUs and GPUs admit)."""
    out = Path(out).resolve()
    trials = expand_trials(config, base_dir)
    (out / "trials").mkdir(parents=True, exist_ok=True)
    (out / "sweep.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    done = {t.trial_id for t in trials if _read_record(out, t.trial_id).get("status") == "ok"}
    pending = [t for t in trials if t.trial_id not in done]
    _log(progress, f"sweep {config.name}: {len(trials)} trials, {len(done)} already completed, {len(pending)} to run")
    if pending:
        with ray_runtime(address) as ray:
            if address:
                _check_workers_import_project(ray)
            _schedule(ray, config, pending, out, max_concurrent, trial_fn or train_and_evaluate, progress)
    table = pd.DataFrame([_row(_read_record(out, t.trial_id), t) for t in trials], columns=TABLE_COLUMNS)
    best = best_per_scenario(table)
    write_tables(table, best, out, config.name)
    return SweepResult(table=table, best=best, out=out, ran=len(pending), skipped=len(done))


def train_and_evaluate(spec: TrialSpec, run_dir: Path) -> dict[str, Any]:
    """The real trial: a training run (agents.training.train) whose run folder holds the
    ground-truth evaluation; returns the numbers the sweep table needs."""
    from launchsim.agents.run_folder import TrainConfig
    from launchsim.agents.training.runs import train

    config = TrainConfig(
        scenarios=[spec.scenario], algo=spec.algorithm, steps=spec.steps, market=spec.market,
        predictor=spec.predictor, n_envs=spec.n_envs, seed=spec.seed, demand_spread=spec.demand_spread,
        outcomes=spec.outcomes, out=run_dir,
        hyperparams=spec.hyperparams or None, eval_episodes=spec.eval_episodes,
    )  # fmt: skip
    run = train(config, progress=False)
    return evaluation_metrics(json.loads((Path(run) / "evaluation.json").read_text()))


def evaluation_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The table's numbers from a run's evaluation.json (one entry per product the run trained on).

    With one product these are that product's figures. With several, profits are summed over the
    products (the scenario's total), the ratio to the oracle is the ratio of the sums, the
    sim-to-real gap is the mean of the products' gaps, and the 95% half-widths add in quadrature."""
    markets = evaluation.get("markets") or []

    def values(block: str, key: str = "profit_mean") -> list[float]:
        return [_number((m.get(block) or {}).get(key)) for m in markets]

    truth, oracle, learned = values("truth"), values("oracle"), values("learned")
    heuristic = values("best_heuristic")
    half_widths = [_half_width((m.get("truth") or {}).get("profit_ci95")) for m in markets]
    gaps = [_number(m.get("sim_to_real_gap")) for m in markets]
    total = sum(truth) if markets else math.nan
    oracle_total = sum(oracle) if markets else math.nan
    return {
        "products": len(markets),
        "truth_profit": total,
        "truth_profit_ci95": math.sqrt(sum(h * h for h in half_widths)) if markets else math.nan,
        "learned_profit": sum(learned) if markets else math.nan,
        "oracle_profit": oracle_total,
        "best_heuristic_profit": sum(heuristic) if markets else math.nan,
        "ratio_to_oracle": _number(markets[0].get("ratio_to_oracle")) if len(markets) == 1
        else (total / oracle_total if oracle_total and oracle_total > 0 else math.nan),
        "sim_to_real_gap": sum(gaps) / len(gaps) if gaps else math.nan,
        "evaluator": str(evaluation.get("evaluator", "")),
    }


def best_per_scenario(table: pd.DataFrame) -> pd.DataFrame:
    """The completed trial with the highest ground-truth profit in each scenario."""
    ok = table[(table["status"] == "ok") & table["truth_profit"].notna()]
    if ok.empty:
        return table.iloc[0:0]
    best = ok.loc[ok.groupby("scenario", sort=True)["truth_profit"].idxmax()]
    return best.reset_index(drop=True)


def write_tables(table: pd.DataFrame, best: pd.DataFrame, out: Path, name: str) -> None:
    """results.parquet, best.parquet and results.md (every trial, the mean over seeds of each
    configuration, and the best run per scenario)."""
    table.to_parquet(out / "results.parquet", index=False)
    best.to_parquet(out / "best.parquet", index=False)
    shown = ["trial", "scenario", "algorithm", "seed", "steps", "hyperparams", "truth_profit", "ratio_to_oracle",
             "best_heuristic_profit", "sim_to_real_gap", "wall_s", "status", "attempts"]  # fmt: skip
    ok = table[table["status"] == "ok"]
    by_config = (
        ok.groupby(["scenario", "algorithm", "steps", "hyperparams"], sort=True)
        .agg(seeds=("seed", "count"), truth_profit_mean=("truth_profit", "mean"), truth_profit_sd=("truth_profit", "std"),
             ratio_to_oracle_mean=("ratio_to_oracle", "mean"), sim_to_real_gap_mean=("sim_to_real_gap", "mean"))
        .reset_index()
    )  # fmt: skip
    failed = table[table["status"] != "ok"]
    parts = [
        f"# Sweep {name}\n",
        f"{len(table)} trials: {len(ok)} ok, {len(failed)} failed. Profits are means over the evaluation episodes "
        "in the ground-truth (structural) market; ratio_to_oracle divides by the oracle planner's profit; "
        "sim_to_real_gap is |learned-market profit - ground-truth profit| / |ground-truth profit|; "
        "best_heuristic_profit is the best shipped heuristic's ground-truth profit on the same episodes.\n",
        "## Best run per scenario\n",
        _markdown(best[["scenario", "trial", "algorithm", "seed", "hyperparams", "truth_profit", "ratio_to_oracle", "run_dir"]]),
        "## Mean over seeds per configuration\n",
        _markdown(by_config),
        "## Every trial\n",
        _markdown(table[shown]),
    ]
    if len(failed):
        parts += ["## Failed trials\n", _markdown(failed[["trial", "scenario", "algorithm", "seed", "attempts", "error"]])]
    (out / "results.md").write_text("\n".join(parts))


# ---------------------------------------------------------------- scheduling


def _schedule(
    ray: Any, config: SweepConfig, pending: list[TrialSpec], out: Path, max_concurrent: int | None,
    trial_fn: TrialFn, progress: bool,
) -> None:  # fmt: skip
    """Keep up to ``max_concurrent`` attempts in flight; retry a failed attempt while the trial has
    retries left; record every finished trial at once so an interrupted sweep loses nothing."""
    from tqdm.auto import tqdm

    gpus = _gpus_per_trial(ray, config)
    task = ray.remote(_attempt).options(
        num_cpus=config.resources.cpus_per_trial, num_gpus=gpus, max_retries=0, retry_exceptions=False
    )
    limit = max_concurrent or len(pending)
    queue = list(pending)
    attempts: dict[str, int] = {}
    errors: dict[str, list[str]] = {}
    in_flight: dict[Any, TrialSpec] = {}
    bar = tqdm(total=len(pending), desc=f"sweep {config.name}", unit="trial", disable=not progress, file=sys.stderr)

    def submit(spec: TrialSpec) -> None:
        attempts[spec.trial_id] = attempts.get(spec.trial_id, 0) + 1
        run_dir = out / "runs" / spec.name
        in_flight[task.remote(trial_fn, spec, str(run_dir))] = spec

    while queue or in_flight:
        while queue and len(in_flight) < limit:
            submit(queue.pop(0))
        ready, _ = ray.wait(list(in_flight), num_returns=1)
        ref = ready[0]
        spec = in_flight.pop(ref)
        record = {"spec": spec.to_dict(), "attempts": attempts[spec.trial_id], "run_dir": str(out / "runs" / spec.name)}
        try:
            result = ray.get(ref)
        except Exception as err:  # noqa: BLE001 - any failure of an attempt (exception, dead worker, lost node)
            cause = getattr(err, "cause", None)
            message = _one_line(cause if isinstance(cause, BaseException) else err)
            errors.setdefault(spec.trial_id, []).append(f"attempt {attempts[spec.trial_id]}: {message}")
            retryable = not isinstance(cause, LaunchSimError)
            if retryable and attempts[spec.trial_id] <= config.max_retries:
                bar.write(f"retry  {spec.name}: attempt {attempts[spec.trial_id]} failed: {message}", file=sys.stderr)
                submit(spec)
                continue
            record.update(status="failed", error=" | ".join(errors[spec.trial_id]))
            bar.write(f"failed {spec.name} after {attempts[spec.trial_id]} attempt(s): {message}", file=sys.stderr)
        else:
            record.update(status="ok", error=" | ".join(errors.get(spec.trial_id, [])), **result)
            bar.write(
                f"ok     {spec.name}: ground-truth profit {result['metrics']['truth_profit']:,.0f}, "
                f"{result['wall_s']:.1f} s, attempt {attempts[spec.trial_id]}",
                file=sys.stderr,
            )
        _write_record(out, spec.trial_id, record)
        bar.update(1)
    bar.close()


def _check_workers_import_project(ray: Any) -> None:
    """On a cluster, fail once with advice when workers cannot import this project, rather than
    failing every trial the same way."""
    try:
        ray.get(ray.remote(_import_check).options(num_cpus=0, max_retries=0).remote(), timeout=300)
    except Exception as err:  # noqa: BLE001 - whatever stops a worker from importing the project
        raise SweepError(
            f"the cluster's workers cannot import launchsim ({_one_line(getattr(err, 'cause', None) or err)}); "
            "install the same launchsim and its dependencies on every node (pip install -e \".[ray]\" in the same checkout "
            "path), see docs/SCALING.md"
        ) from err


def _import_check() -> str:
    import launchsim.agents.sweep.run

    return launchsim.agents.sweep.__file__


def _attempt(trial_fn: TrialFn, spec: TrialSpec, run_dir: str) -> dict[str, Any]:
    """One attempt of one trial, inside a Ray worker: a clean run folder, the trial, its timing and
    where it ran."""
    import ray

    path = Path(run_dir)
    if path.exists():  # what a failed earlier attempt left behind
        shutil.rmtree(path)
    start, cpu_start = time.perf_counter(), time.process_time()
    metrics = trial_fn(spec, path)
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    node = ray.get_runtime_context().get_node_id()
    return {"metrics": metrics, "wall_s": wall_s, "cpu_s": cpu_s, "host": os.uname().nodename, "node_id": node, "pid": os.getpid()}


def _gpus_per_trial(ray: Any, config: SweepConfig) -> float:
    """The GPU share each trial asks for: ``auto`` splits each GPU between ``trials_per_gpu`` trials
    when the cluster has any, and asks for none otherwise."""
    requested = config.resources.gpus_per_trial
    if requested != "auto":
        return float(requested)
    return 1.0 / config.resources.trials_per_gpu if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


# ---------------------------------------------------------------- records


def _record_path(out: Path, trial_id: str) -> Path:
    return out / "trials" / f"{trial_id}.json"


def _read_record(out: Path, trial_id: str) -> dict[str, Any]:
    path = _record_path(out, trial_id)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:  # a record cut short by a crash: run the trial again
        return {}


def _write_record(out: Path, trial_id: str, record: dict[str, Any]) -> None:
    """Write atomically (temp file + rename): a record either exists whole or not at all."""
    path = _record_path(out, trial_id)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(path)


def _row(record: dict[str, Any], spec: TrialSpec) -> dict[str, Any]:
    metrics = record.get("metrics", {})
    return {
        "trial": spec.trial_id,
        "scenario": Path(spec.scenario).stem,
        "algorithm": spec.algorithm,
        "seed": spec.seed,
        "steps": spec.steps,
        "hyperparams": json.dumps(spec.hyperparams, sort_keys=True),
        **{k: _number(metrics.get(k)) for k in METRIC_COLUMNS},
        "products": int(metrics.get("products", 0)),
        "wall_s": _number(record.get("wall_s")),
        "cpu_s": _number(record.get("cpu_s")),
        "status": record.get("status", "not run"),
        "attempts": int(record.get("attempts", 0)),
        "error": record.get("error", ""),
        "run_dir": record.get("run_dir", ""),
    }


# ---------------------------------------------------------------- small functions


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _half_width(interval: Any) -> float:
    """A 95% interval given as [low, high] (or already as a half-width) -> its half-width."""
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        return (_number(interval[1]) - _number(interval[0])) / 2
    return _number(interval)


def _one_line(err: BaseException) -> str:
    detail = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return f"{type(err).__name__}: {detail}"[:300]


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown would need tabulate, one more dependency)."""
    if frame.empty:
        return "(none)\n"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _log(enabled: bool, message: str) -> None:
    if enabled:
        print(message, file=sys.stderr)
