"""The sweep file: which scenarios, algorithms, seeds and step budgets to train, and optional
hyperparameter search spaces; expanded into a fixed list of trials, each with a stable id.

A sweep file is YAML, read with ``yaml.safe_load`` and checked by a pydantic model; every problem
is one line ``file: field.path: message``. The trial list is a pure function of the file (search
spaces are sampled from a generator seeded by ``search_seed`` and the algorithm's name), so the
same file always gives the same trials and the same ids, which is what lets a re-run skip the
trials that already completed.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from launchsim.errors import LaunchSimError, SweepError, TrainingError
from launchsim.scenarios.loader import load_yaml

SWEEP_DIR = Path(__file__).resolve().parent  # the shipped sweep files (all_scenarios, example, scaling)
DISTRIBUTIONS = ("choice", "uniform", "loguniform")


class Distribution(BaseModel):
    """One hyperparameter's search space: exactly one of ``choice: [...]``, ``uniform: [low, high]``
    or ``loguniform: [low, high]`` (low > 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choice: Annotated[list[Any], Field(min_length=1)] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Distribution:
        given = [k for k in DISTRIBUTIONS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"found {given or 'none'}, expected exactly one of {', '.join(DISTRIBUTIONS)}")
        bounds = self.uniform or self.loguniform
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"found bounds {list(bounds)}, expected [low, high] with low < high")
        return self

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw; floats are rounded to 6 significant digits so ids and tables stay readable."""
        if self.choice is not None:
            return self.choice[int(rng.integers(len(self.choice)))]
        if self.uniform is not None:
            return _round(float(rng.uniform(*self.uniform)))
        low, high = self.loguniform  # type: ignore[misc]
        return _round(float(math.exp(rng.uniform(math.log(low), math.log(high)))))


class LinearSchedule(BaseModel):
    """A fixed hyperparameter annealed linearly over the run, ``{start: X, end: Y}`` (as in a
    hyperparameter file; agents.algorithms.SCHEDULE_KEYS says which keys take one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float
    end: float


def _space_or_value(v: Any) -> str:
    if isinstance(v, LinearSchedule) or (isinstance(v, dict) and {"start", "end"} & set(v)):
        return "schedule"
    return "space" if isinstance(v, (dict, Distribution)) else "value"


Scalar = int | float | str | bool | None
# A mapping is a search space, except one with start or end (a schedule); anything else a fixed value: a
# callable discriminator keeps pydantic from reporting every union member's error for one bad entry.
SpaceOrValue = Annotated[
    Annotated[Distribution, Tag("space")]
    | Annotated[LinearSchedule, Tag("schedule")]
    | Annotated[Scalar | list[Scalar], Tag("value")],
    Discriminator(_space_or_value),
]
HyperparamSpace = dict[str, SpaceOrValue]


class Resources(BaseModel):
    """What one trial asks Ray for. ``gpus_per_trial: auto`` shares each GPU between
    ``trials_per_gpu`` trials when the cluster has GPUs, and asks for none otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus_per_trial: Annotated[float, Field(gt=0)] = 1.0
    gpus_per_trial: Annotated[float, Field(ge=0)] | Literal["auto"] = "auto"
    trials_per_gpu: Annotated[int, Field(ge=1)] = 4


class SweepConfig(BaseModel):
    """A sweep: the grid scenarios × algorithms × step budgets × hyperparameter samples × seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    scenarios: Annotated[list[str], Field(min_length=1)]
    algorithms: Annotated[list[str], Field(min_length=1)]
    seeds: Annotated[list[int], Field(min_length=1)] = [0]
    steps: Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)]
    market: Literal["learned", "structural"] = "learned"
    predictor: str | None = None
    n_envs: Annotated[int, Field(ge=1)] = 4
    eval_episodes: Annotated[int, Field(ge=1)] = 10
    demand_spread: Annotated[float, Field(ge=0.0, le=2.0)] | None = None  # domain randomisation; None: train's default
    outcomes: Literal["sampled", "expected"] | None = None  # the training market's outcomes; None: train's default
    search: dict[str, HyperparamSpace] = {}
    samples: Annotated[int, Field(ge=1)] = 1
    search_seed: int = 0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    resources: Resources = Resources()

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("seeds", "scenarios", "algorithms")
    @classmethod
    def _distinct(cls, value: list) -> list:
        repeated = sorted({str(v) for v in value if value.count(v) > 1})
        if repeated:
            raise ValueError(f"found {', '.join(repeated)} more than once, expected distinct entries")
        return value


@dataclass(frozen=True)
class TrialSpec:
    """One training run of the sweep; ``trial_id`` is a hash of everything that shapes its result."""

    scenario: str  # a shipped scenario name or a scenario file path
    algorithm: str
    seed: int
    steps: int
    market: str
    predictor: str | None
    n_envs: int
    eval_episodes: int
    hyperparams: dict[str, Any] = field(default_factory=dict)
    demand_spread: float = 0.0
    outcomes: str = "expected"
    scenario_hash: str = ""
    predictor_identity: str = ""  # of the learned market or trait source the trial uses ("" if none)
    trial_id: str = ""

    @property
    def name(self) -> str:
        """A readable run-folder name: scenario, algorithm, seed and the id."""
        return f"{Path(self.scenario).stem}-{self.algorithm}-s{self.seed}-{self.trial_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_sweep(name_or_path: str | Path) -> tuple[SweepConfig, Path]:
    """Read and check a sweep file (a path, or the name of a shipped one: ``all_scenarios``, ``example``, ``scaling``); SweepError
    lists every problem, one line each."""
    path = _resolve_sweep_path(name_or_path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SweepError(f"{path}: cannot read the sweep file ({err.strerror or err})") from err
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        raise SweepError(f"{path}: {where}: YAML syntax error: {getattr(err, 'problem', None) or err}") from err
    if not isinstance(data, dict):
        raise SweepError(f"{path}: (top level): found {type(data).__name__}, expected a mapping of sweep fields")
    data.setdefault("name", path.stem)
    try:
        config = SweepConfig.model_validate(data)
    except ValidationError as err:
        raise SweepError("\n".join(_format_errors(err, path))) from err
    problems = list(_cross_check(config, path))
    if problems:
        raise SweepError("\n".join(f"{path}: {p}" for p in problems))
    return config, path


def expand_trials(config: SweepConfig, base_dir: Path | None = None) -> list[TrialSpec]:
    """Every trial of the sweep, in a fixed order, with stable ids; duplicates appear once."""
    from launchsim.agents.run_folder import DEFAULT_TRAINING_OUTCOMES, default_demand_spread
    from launchsim.models.learned_market import folder_identity
    from launchsim.scenarios import load_scenario, scenario_hash

    scenarios = {s: _scenario_ref(s, base_dir) for s in config.scenarios}
    loaded = {s: load_scenario(ref) for s, ref in scenarios.items()}
    hashes = {s: scenario_hash(scenario) for s, scenario in loaded.items()}
    predictor = _predictor_ref(config.predictor, base_dir)
    # Trials are keyed by what the predictor is, not where: a changed default market gives new trials.
    needs = {s: config.market == "learned" or len(scenario.products) > 1 for s, scenario in loaded.items()}
    identity = folder_identity(predictor) if any(needs.values()) else ""
    spread = config.demand_spread if config.demand_spread is not None else default_demand_spread(config.market, predictor)
    trials: dict[str, TrialSpec] = {}
    for scenario in config.scenarios:
        for algorithm in config.algorithms:
            for hyperparams in sample_hyperparams(config, algorithm):
                for steps in config.steps:
                    for seed in config.seeds:
                        spec = TrialSpec(
                            scenario=scenarios[scenario], algorithm=algorithm, seed=seed, steps=steps,
                            market=config.market, predictor=predictor, n_envs=config.n_envs,
                            eval_episodes=config.eval_episodes, hyperparams=hyperparams, demand_spread=spread,
                            outcomes=config.outcomes or DEFAULT_TRAINING_OUTCOMES,
                            scenario_hash=hashes[scenario], predictor_identity=identity if needs[scenario] else "",
                        )  # fmt: skip
                        trial_id = trial_hash(spec)
                        trials.setdefault(trial_id, TrialSpec(**{**spec.to_dict(), "trial_id": trial_id}))
    return list(trials.values())


def sample_hyperparams(config: SweepConfig, algorithm: str) -> list[dict[str, Any]]:
    """``config.samples`` draws from the algorithm's search space (fixed values pass through).

    The generator is seeded by ``search_seed`` and the algorithm's name, so adding an algorithm or a
    scenario to the file leaves the other draws unchanged."""
    space = {k: v.model_dump() if isinstance(v, LinearSchedule) else v for k, v in config.search.get(algorithm, {}).items()}
    if not any(isinstance(v, Distribution) for v in space.values()):
        return [dict(space)]
    name_key = int.from_bytes(hashlib.sha256(algorithm.encode()).digest()[:4], "little")
    rng = np.random.default_rng([config.search_seed, name_key])
    draws = []
    for _ in range(config.samples):
        draws.append({k: v.sample(rng) if isinstance(v, Distribution) else v for k, v in space.items()})
    return draws


def trial_hash(spec: TrialSpec) -> str:
    """12 hex digits of SHA-256 over the trial's settings, the content hashes of its scenario and
    predictor, the env's dynamics version and the hyperparameters the run will use (the shipped block
    with the trial's on top): a new env version or new shipped defaults give new trials, not stale skips."""
    from launchsim.agents.sb3.algorithms import resolve_hyperparams
    from launchsim.envs.launch_market import ENV_VERSION

    settings = {k: v for k, v in spec.to_dict().items() if k not in ("trial_id", "predictor")}  # the identity stands for it
    settings["scenario"] = Path(spec.scenario).stem
    settings["env_version"] = ENV_VERSION
    settings["hyperparams"] = resolve_hyperparams(spec.algorithm, spec.hyperparams)
    if not settings["demand_spread"]:  # without a spread a trial hashes as before the option (within an env version)
        del settings["demand_spread"]
    if settings["outcomes"] == "sampled":  # likewise for the default outcomes
        del settings["outcomes"]
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


# ---------------------------------------------------------------- checks


def _resolve_sweep_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise SweepError(f"{path}: file not found")
        return path
    shipped = {p.stem: p for p in SWEEP_DIR.glob("*.yaml")}
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    close = difflib.get_close_matches(str(name_or_path), list(shipped), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise SweepError(f"{name_or_path}: no such sweep file or shipped sweep name{hint}")


def _scenario_ref(entry: str, base_dir: Path | None) -> str:
    """A scenario entry as the trial will load it: a shipped name stays a name; a relative path is
    taken relative to the sweep file's folder, then made absolute so workers find it."""
    path = Path(entry)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
            path = base_dir / path
        return str(path.resolve())
    return entry


def _predictor_ref(entry: str | None, base_dir: Path | None) -> str | None:
    """A predictor (or ensemble) folder as workers load it: relative to the sweep file's folder where it
    is there, else to the working directory; absolute either way (None: the shipped learned market)."""
    if entry is None:
        return None
    path = Path(entry)
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    return str(path.resolve())


def _cross_check(config: SweepConfig, path: Path) -> list[str]:
    """What the schema cannot know: scenario files load, algorithm and hyperparameter names exist."""
    from launchsim.agents.sb3.algorithms import ALGORITHMS, check_schedules
    from launchsim.scenarios import load_scenario

    problems = []
    for i, scenario in enumerate(config.scenarios):
        try:
            load_scenario(_scenario_ref(scenario, path.parent))
        except LaunchSimError as err:
            problems.append(f"scenarios.{i}: {str(err).splitlines()[0]}")
    for i, algorithm in enumerate(config.algorithms):
        if algorithm not in ALGORITHMS:
            close = difflib.get_close_matches(algorithm, list(ALGORITHMS), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"algorithms.{i}: unknown algorithm {algorithm!r}{hint} (valid: {', '.join(ALGORITHMS)})")
    for algorithm, space in config.search.items():
        if algorithm not in config.algorithms:
            problems.append(f"search.{algorithm}: found a search space for an algorithm the sweep does not train "
                            f"(algorithms: {', '.join(config.algorithms)})")  # fmt: skip
        elif algorithm in ALGORITHMS:  # schedules are fixed values: check them here, not in every trial
            fixed = {k: v.model_dump() for k, v in space.items() if isinstance(v, LinearSchedule)}
            try:
                check_schedules(ALGORITHMS[algorithm], fixed)
            except TrainingError as err:
                problems.append(f"search.{algorithm}: {err}")
    if config.predictor is not None and config.market != "learned":
        problems.append("predictor: found a predictor with market 'structural', expected market: learned")
    elif config.predictor is not None and not (Path(_predictor_ref(config.predictor, path.parent)) / "card.json").exists():
        problems.append(f"predictor: {config.predictor}: found no predictor or ensemble folder (no card.json) there")
    return problems


def _format_errors(err: ValidationError, path: Path) -> list[str]:
    lines = []
    for e in err.errors(include_url=False):
        loc = [str(p) for p in e["loc"] if not _is_union_tag(p)]
        where = ".".join(loc) or "(top level)"
        if e["type"] == "missing":
            message = "missing required field"
        elif e["type"] == "extra_forbidden":
            block = Resources if loc[:1] == ["resources"] else Distribution if loc[:1] == ["search"] else SweepConfig
            close = difflib.get_close_matches(loc[-1], list(block.model_fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown key{hint} (expected one of: {', '.join(block.model_fields)})"
        else:
            expected = e["msg"].replace("Input should be ", "").replace("Value error, ", "")
            message = expected if expected.startswith("found") else f"found {_short(e.get('input'))}, expected {expected}"
        lines.append(f"{path}: {where}: {message}")
    return list(dict.fromkeys(lines))


def _is_union_tag(part: Any) -> bool:
    """pydantic names the union member in error paths; users never wrote those."""
    return part in ("space", "value")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _round(x: float) -> float:
    return float(f"{x:.6g}")
