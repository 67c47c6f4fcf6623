"""One way to name a policy everywhere: a heuristic name, ``oracle``, a training run folder, a plain
SB3 model file or a lookup-table file (or a recorded plan), resolved to an object with SB3's
``predict`` that acts in the native single env ``LaunchMarketEnv(scenario, product)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launchsim.agents.policies.heuristics import HEURISTICS, make_heuristic
from launchsim.agents.policies.oracle import LEARNED_SEARCH, make_oracle
from launchsim.agents.policies.table import TABLE_SUFFIXES, TablePolicy
from launchsim.agents.policies.trained import load_sb3_model, load_trained_policy
from launchsim.agents.rollout import Policy
from launchsim.scenarios import product_index
from launchsim.scenarios.schema import Scenario

from launchsim.errors import PolicyError, lookup

ORACLE = "oracle"
LEARNED_ORACLE = "learned_oracle"


def policy_names() -> list[str]:
    """The policies that have a name: every heuristic, the oracle and the learned market's planner."""
    return [*HEURISTICS, ORACLE, LEARNED_ORACLE]


def resolve_policy(
    spec: str | Path, scenario: Scenario, product: int | str = 0, seed: int = 0, predictor: Any = None
) -> Policy:
    """Build the policy ``spec`` names for ``(scenario, product)``.

    ``spec``: a heuristic name, ``oracle`` (the plan of the structural market's expected dynamics: needs
    the scenario's truth), ``learned_oracle`` (the plan of the learned market ``predictor``, default the
    shipped one), a training run folder, or a lookup table (.csv, .parquet, .json). An unknown name
    raises PolicyError naming the closest valid one. ``predictor`` is also handed to a run folder's
    loader when it takes one (a run trained with product features reads the product's traits from it).
    """
    index = product_index(scenario, product)
    check_policy_spec(spec)
    text = str(spec)
    if text in HEURISTICS:
        return make_heuristic(text, scenario, product=index, seed=seed)
    if text == ORACLE:
        scenario.require_truth("the ground-truth oracle (a truth-free scenario has the learned market's planner: learned_oracle)")
        return make_oracle(scenario, product=index)
    if text == LEARNED_ORACLE:
        if predictor is None:
            from launchsim.models.learned_market import load_shared

            predictor = load_shared()
        return make_oracle(scenario, product=index, response_model=predictor, **LEARNED_SEARCH)
    path = Path(text)
    if path.is_dir():
        return _load_run(path, scenario, index, predictor)
    if path.suffix.lower() == ".zip":
        return load_sb3_model(path, scenario, index)
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
    if path.suffix.lower() in (*TABLE_SUFFIXES, ".zip"):
        if not path.is_file():
            raise PolicyError(f"{path}: no such {'model' if path.suffix.lower() == '.zip' else 'lookup-table'} file")
        return
    if path.exists():
        expected = ", ".join(TABLE_SUFFIXES)
        raise PolicyError(f"{path}: not a policy: expected a training run folder, an SB3 model (.zip) or a lookup table ({expected})")
    try:
        lookup(dict.fromkeys(policy_names()), text, "policy")
    except PolicyError as err:
        raise PolicyError(f"{err}, or a training run folder, an SB3 model file or a lookup table file") from None


def build_policy(
    spec: str,
    scenario: Scenario,
    product: int = 0,
    seed: int = 0,
    predictor: Any = None,
    actions: Path | str | None = None,
) -> Any:
    """A policy for (scenario, product): a recorded plan when ``actions`` is given, else
    ``agents.policy_source.resolve_policy`` (heuristic, oracle, run folder or lookup table)."""
    if actions is not None:
        from launchsim.agents.policies.recorded_plan import RecordedPlan

        return RecordedPlan.load(actions, scenario, product)
    from launchsim.agents.policies.source import resolve_policy

    return resolve_policy(spec, scenario, product=product, seed=seed, predictor=predictor)


def policy_identity(policy: Any, spec: str | None = None) -> dict[str, Any]:
    """What a table or replay records about the policy it came from."""
    identity = {"spec": spec or type(policy).__name__, "class": f"{type(policy).__module__}.{type(policy).__name__}"}
    extra = getattr(policy, "identity", None)
    if isinstance(extra, dict | str):
        identity["identity"] = extra
    return identity


def _load_run(path: Path, scenario: Scenario, product: int, predictor: Any) -> Policy:
    try:
        return load_trained_policy(path, scenario, product, predictor=predictor)
    except FileNotFoundError as err:
        raise PolicyError(f"{path}: not a training run folder ({err})") from err


def _load_table(path: Path, scenario: Scenario, product: int) -> Policy:
    try:
        return TablePolicy.load(path, scenario=scenario, product=product)
    except FileNotFoundError as err:
        raise PolicyError(f"{path}: not a lookup table ({err})") from err
