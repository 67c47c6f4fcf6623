"""Training run folders: what a run is (``TrainConfig``), how its folder is laid out, written and read.

A run folder holds:

    config.yml                 the TrainConfig, the resolved hyperparameters and the env layout
    command.txt                the command lines that started and resumed it
    versions.json              package versions
    predictor.json             the predictor's path and identity (learned market or product traits)
    scenarios/NAME.yaml        the resolved scenarios (resume and loading the policy read these)
    checkpoints/step_000123.zip + .json  the model and its VecNormalize statistics (JSON, no pickle)
    tensorboard/               SB3's TensorBoard logs (plus eval/profit_mean of the progress bar)
    history.jsonl              start, checkpoint, resume and finish events
    model.zip + vecnormalize.json  the final model
    evaluation.json            the evaluation summary (agents.evaluation.evaluate, per market)
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import yaml
from launchsim.agents.sb3.algorithms import Algorithm, get_algorithm, read_hyperparams_file
from launchsim.agents.sb3.normalizer_stats import write_stats
from launchsim.scenarios import DEFAULT_SCENARIO, Scenario, scenario_from_dict
from pydantic import BaseModel, ConfigDict, Field, model_validator
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from launchsim.errors import TrainingError
from launchsim.files import atomic_write, write_json

CONFIG_FILE = "config.yml"


FINAL_MODEL, FINAL_STATS = "model.zip", "vecnormalize.json"


EVALUATION_FILE = "evaluation.json"


# Training steps on expected weekly outcomes (evaluation samples): with PPO's critic reading the demand draw,
# more (scenario, seed) pairs reach 90% of the oracle than on sampled counts (docs/EVALUATION.md).
DEFAULT_TRAINING_OUTCOMES = "expected"


EVAL_SEED = 0  # evaluation episodes are the same for every run, so runs compare on common seeds


PACKAGES = ("launchsim", "numpy", "torch", "gymnasium", "stable_baselines3", "sb3_contrib", "transformers", "peft", "tensorboard")


class TrainConfig(BaseModel):
    """Everything that defines a training run (written to the run folder's config.yml)."""

    model_config = ConfigDict(extra="forbid")

    scenarios: list[str] = Field(default_factory=lambda: [DEFAULT_SCENARIO.stem], min_length=1)
    algo: str = "ppo"
    steps: int | None = Field(None, ge=1)  # None: the algorithm's n_timesteps in the hyperparameters
    market: Literal["learned", "structural"] = "learned"
    predictor: str | None = None  # a predictor or ensemble folder; None: the shipped ensemble (models/default_ensemble)
    n_envs: int = Field(8, ge=1)
    seed: int = 0
    # Domain randomisation: each training episode's expected demand times exp(N(0, spread^2)); 0: none.
    # None: the predictor's demand-level error (its card's, else the shipped market's) in the learned market, 0 in the structural.
    demand_spread: float | None = Field(None, ge=0.0, le=2.0)
    # The training market's outcomes: sampled counts, or their expectations (no sampling noise).
    outcomes: Literal["sampled", "expected"] = DEFAULT_TRAINING_OUTCOMES
    out: Path
    hyperparams: dict[str, Any] | None = None  # overrides of the shipped block for this algorithm
    checkpoint_every: int | None = Field(None, ge=1)  # None: about 10 checkpoints per run
    eval_every: int | None = Field(None, ge=0)  # progress-bar evaluation; None: about 20 per run, 0: never
    eval_episodes: int = Field(20, ge=1)  # episodes per market of the final evaluation
    evaluation: Literal["full", "quick"] = "full"  # full: agents.evaluation; quick: the training market only
    vec_kind: Literal["batched", "dummy"] | None = None  # None: batched on a GPU or from 64 envs, else SB3's DummyVecEnv
    # device: ppo, a2c and maskable_ppo on the batched env collect rollouts on its device (agents.sb3.device_rollouts); vecenv: SB3's VecEnv path
    rollouts: Literal["device", "vecenv"] = "device"
    device: str | None = None  # the predictor's device (cuda when present); the agent runs on the CPU
    torch_threads: int | None = Field(1, ge=1)  # small networks train fastest on one thread; None: torch's default

    @model_validator(mode="after")
    def _resolve_demand_spread(self) -> TrainConfig:
        if self.demand_spread is None:
            self.demand_spread = default_demand_spread(self.market, self.predictor)
        return self


def default_demand_spread(market: str, predictor: str | Path | None = None) -> float:
    """The training default: randomise the learned market's demand level by its measured error (the predictor
    folder's card, else the shipped market's); the structural market is the truth."""
    from launchsim.models.learned_market import folder_demand_spread

    return folder_demand_spread(predictor) if market == "learned" else 0.0


@dataclass
class RunFolder:
    """A run folder opened for training or loading."""

    dir: Path
    config: TrainConfig
    algorithm: Algorithm
    params: dict[str, Any]
    steps: int
    scenarios: list[Scenario]
    env: dict[str, Any]  # what the training envs looked like (config.yml "env")


def default_run_dir(scenarios: list[str], algo: str, seed: int, root: str | Path = "runs") -> Path:
    """``runs/ALGO_SCENARIO_seedK`` (``..._2``, ``_3``, ... when taken) for a run without --out."""
    names = [Path(s).stem for s in scenarios]
    label = names[0] if len(names) == 1 else f"{names[0]}_and_{len(names) - 1}_more"
    base = Path(root) / f"{algo}_{label}_seed{seed}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}_{n}")
    return path


def hyperparams_from_file(path: str | Path, algo: str) -> dict[str, Any]:
    """The block of ``algo`` in a hyperparameter file keyed by algorithm (overrides of the shipped block)."""
    blocks = read_hyperparams_file(path)
    name = get_algorithm(algo).name
    if name not in blocks:
        raise TrainingError(f"{path}: no block for algorithm {name!r} (found: {', '.join(blocks) or 'none'})")
    return blocks[name]


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, Path, int] | None:
    """(model zip, VecNormalize stats, step) of the newest intact checkpoint, or None. A checkpoint whose
    zip or statistics file is truncated or unreadable (a kill during its write) is passed over."""
    found = []
    for path in (Path(run_dir) / "checkpoints").glob("step_*.zip"):
        try:
            found.append((int(path.stem.split("_")[1]), path))
        except (IndexError, ValueError):
            continue
    for step, path in sorted(found, reverse=True):
        if _intact(path, path.with_suffix(".json")):
            return path, path.with_suffix(".json"), step
    return None


def _intact(zip_path: Path, stats_path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(zip_path) as archive:
            if archive.testzip() is not None:
                return False
        if stats_path.exists():
            json.loads(stats_path.read_text())
        return True
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def shared_predictor(path: str | None, device: str | None) -> Any:
    """A predictor or ensemble folder (default: the shipped learned market), loaded once per process."""
    from launchsim.models.learned_market import load_shared

    return load_shared(path, device)


def run_predictor(run: RunFolder, strict: bool = True) -> Any:
    """The predictor a run was trained with. Its configured folder (None: the default learned market)
    normally; when that now holds another predictor (the default changed since), the folder the run
    recorded if it still holds the recorded one; otherwise a TrainingError (``strict``) or the
    configured one."""
    predictor = predictor_for(run.config, run.scenarios)
    info = predictor_info(run.dir)
    recorded = info.get("identity")
    if predictor is None or not recorded or predictor.identity == recorded:
        return predictor
    path = Path(info.get("path", ""))
    if (path / "card.json").exists():
        candidate = shared_predictor(str(path), run.config.device)
        if candidate.identity == recorded:
            return candidate
    if not strict:
        return predictor
    configured = run.config.predictor or "the default learned market"
    raise TrainingError(
        f"{run.dir}: trained with predictor {recorded} ({path}); {configured} is now {predictor.identity} and "
        "that folder no longer holds the recorded one; restore it to continue this run"
    )


def traits_identity(predictor: Any) -> str:
    """The identity of the fit that gives product traits (an ensemble's first member)."""
    return getattr(predictor, "traits_source", predictor).identity


def predictor_for(config: TrainConfig, scenarios: list[Scenario]) -> Any:
    """The predictor the envs need: the learned market's, or the one giving product traits; else None."""
    mixed = sum(len(s.products) for s in scenarios) > 1
    if config.market == "learned" or mixed:
        return shared_predictor(config.predictor, config.device)
    if config.predictor:
        raise TrainingError("--predictor needs --market learned (or several products, whose traits it gives)")
    return None


def write_run_folder(run: RunFolder, predictor: Any) -> None:
    """The run's settings, scenario copies, versions and predictor; ``config.yml`` last, so that a folder
    that has it holds everything a resume needs (each file written atomically)."""
    run.dir.mkdir(parents=True, exist_ok=True)
    for s in run.scenarios:
        atomic_write(run.dir / "scenarios" / f"{s.name}.yaml", yaml.safe_dump(s.model_dump(mode="json"), sort_keys=False))
    write_json(run.dir / "versions.json", package_versions())
    if predictor is not None:
        from launchsim.models.learned_market import DEFAULT_MARKET_DIR

        path = Path(run.config.predictor or DEFAULT_MARKET_DIR).resolve()
        role = "learned market and product traits" if run.config.market == "learned" else "product traits only"
        info = {
            "path": str(path), "identity": predictor.identity, "traits_identity": traits_identity(predictor),
            "default": run.config.predictor is None, "role": role,
        }  # fmt: skip
        write_json(run.dir / "predictor.json", info)
    append_line(run.dir / "command.txt", command_line())
    document = {
        "config": run.config.model_dump(mode="json"),
        "algorithm": run.algorithm.name,
        "steps": run.steps,
        "hyperparams": run.params,
        "env": run.env,
    }
    atomic_write(run.dir / CONFIG_FILE, yaml.safe_dump(document, sort_keys=False))


def open_run(run_dir: str | Path) -> RunFolder:
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if not path.exists():
        raise TrainingError(f"{run_dir}: not a training run folder (no {CONFIG_FILE})")
    try:
        document = yaml.safe_load(path.read_text())
        document["config"].setdefault("demand_spread", 0.0)  # runs from before the option trained without it
        document["config"].setdefault("outcomes", "sampled")
        config = TrainConfig.model_validate(document["config"])
        scenarios = [
            scenario_from_dict(yaml.safe_load((run_dir / f).read_text()), source=str(run_dir / f))
            for f in document["env"]["scenario_files"]
        ]
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as err:
        raise TrainingError(f"{path}: unreadable run configuration: {err}") from err
    algorithm = get_algorithm(document["algorithm"])
    return RunFolder(run_dir, config, algorithm, document["hyperparams"], int(document["steps"]), scenarios, document["env"])


def warn_if_other_env_version(run: RunFolder) -> None:
    """A run started under other env dynamics goes on under the current ones; say so (runs before v2 lack the key)."""
    from launchsim.envs.launch_market import ENV_VERSION

    started = int(run.env.get("version", 1))
    if started != ENV_VERSION:
        warnings.warn(
            f"{run.dir}: trained so far in env v{started}; it continues in env v{ENV_VERSION} "
            "(v2: ads pause while the product is sold out)",
            stacklevel=3,
        )


def predictor_info(run_dir: Path) -> dict[str, Any]:
    """The run's predictor.json: path, identity, traits_identity (runs before ensembles lack it); {} if none."""
    path = run_dir / "predictor.json"
    return json.loads(path.read_text()) if path.exists() else {}


def record_event(run_dir: Path, event: str, **fields: Any) -> None:
    append_line(run_dir / "history.jsonl", json.dumps({"event": event, "time": round(time.time(), 3), **fields}))


def append_line(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")


def command_line() -> str:
    """The command this process runs, as a user would type it (``launchsim ...``, ``python run_sim.py ...``)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if program == "__main__.py":
        head = ["python", "-m", "launchsim"]
    elif program.endswith(".py"):
        head = ["python", sys.argv[0]]
    else:
        head = [program or Path(sys.executable).name]
    return " ".join(shlex.quote(a) for a in [*head, *sys.argv[1:]])


def package_versions() -> dict[str, str]:
    import platform

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def save_model(model: Any, venv: VecEnv, zip_path: Path, stats_path: Path) -> None:
    """Stats first, then the model, each via a temporary file: a zip present means a complete pair."""
    if isinstance(venv, VecNormalize):
        write_stats(venv, stats_path)  # via tmp_*, which never matches step_*
    tmp = zip_path.with_name("tmp_" + zip_path.name)
    model.save(tmp)
    os.replace(tmp, zip_path)
