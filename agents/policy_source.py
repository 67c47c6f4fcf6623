"""One way to name a policy everywhere: a heuristic name, ``oracle``, a training run folder or a
lookup-table file, resolved to an object with SB3's ``predict`` that acts in the native single env
``LaunchMarketEnv(scenario, product)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launchsim.agents.heuristics import HEURISTICS, make_heuristic
from launchsim.agents.rollout import Policy
from launchsim.scenarios import product_index
from launchsim.errors import PolicyError, lookup
from launchsim.scenarios.schema import Scenario

TABLE_SUFFIXES = (".csv", ".parquet", ".json")
ORACLE = "oracle"


def policy_names() -> list[str]:
    """The policies that have a name: every heuristic and the oracle."""
    return [*HEURISTICS, ORACLE]


def resolve_policy(
    spec: str | Path, scenario: Scenario, product: int | str = 0, seed: int = 0, predictor: Any = None
) -> Policy:
    """Build the policy ``spec`` names for ``(scenario, product)``.

    ``spec``: a heuristic name, ``oracle``, a training run folder, or a lookup table (.csv, .parquet,
    .json). An unknown name raises PolicyError naming the closest valid one. ``predictor`` is handed to
    a run folder's loader when it takes one (a run trained with product features reads the product's
    traits from it); heuristics, the oracle and tables do not use it.
    """
    index = product_index(scenario, product)
    check_policy_spec(spec)
    text = str(spec)
    if text in HEURISTICS:
        return make_heuristic(text, scenario, product=index, seed=seed)
    if text == ORACLE:
        from launchsim.agents.oracle import make_oracle

        return make_oracle(scenario, product=index)
    path = Path(text)
    if path.is_dir():
        return _load_run(path, scenario, index, predictor)
    return _load_table(path, scenario, index)


def check_policy_spec(spec: str | Path) -> None:
    """Fail fast (PolicyError) on a spec that names no heuristic, no oracle, no folder and no table
    file, before any slow work; whether a folder or file really holds a policy is checked on loading."""
    text = str(spec)
    if text in policy_names():
        return
    path = Path(text)
    if path.is_dir():
        return
    if path.suffix.lower() in TABLE_SUFFIXES:
        if not path.is_file():
            raise PolicyError(f"{path}: no such lookup-table file")
        return
    if path.exists():
        expected = ", ".join(TABLE_SUFFIXES)
        raise PolicyError(f"{path}: not a policy: expected a training run folder or a lookup table ({expected})")
    try:
        lookup(dict.fromkeys(policy_names()), text, "policy")
    except PolicyError as err:
        raise PolicyError(f"{err}, or a training run folder, or a lookup table file") from None


def _load_run(path: Path, scenario: Scenario, product: int, predictor: Any) -> Policy:
    try:
        from launchsim.agents.training import load_trained_policy
    except ImportError as err:
        raise PolicyError(f"{path}: cannot load a training run: agents.training is not available ({err})") from err
    import inspect

    kwargs = {"predictor": predictor} if "predictor" in inspect.signature(load_trained_policy).parameters else {}
    try:
        return load_trained_policy(path, scenario, product, **kwargs)
    except FileNotFoundError as err:
        raise PolicyError(f"{path}: not a training run folder ({err})") from err


def _load_table(path: Path, scenario: Scenario, product: int) -> Policy:
    try:
        from launchsim.agents.lookup_table import TablePolicy
    except ImportError as err:
        raise PolicyError(f"{path}: cannot load a lookup table: agents.lookup_table is not available ({err})") from err
    try:
        return TablePolicy.load(path, scenario=scenario, product=product)
    except FileNotFoundError as err:
        raise PolicyError(f"{path}: not a lookup table ({err})") from err
