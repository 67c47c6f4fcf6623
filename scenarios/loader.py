"""Reading scenario files: YAML through ``yaml.safe_load``, then the pydantic schema, then the
cross-references a schema cannot express (names that must match, weeks inside the horizon).

Every problem becomes one line ``file: field.path: found X, expected Y`` inside a ScenarioError.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import types
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from launchsim.scenarios.schema import Scenario
from pydantic import BaseModel, ValidationError

from launchsim.errors import ScenarioError

SCENARIO_DIR = Path(__file__).resolve().parent
DEFAULT_SCENARIO = SCENARIO_DIR / "apparel_winter_coat_holiday.yaml"


def list_scenarios() -> list[Path]:
    """The scenario files shipped with the project, sorted by name."""
    return sorted(SCENARIO_DIR.glob("*.yaml"))


def resolve_scenario_path(name_or_path: str | Path) -> Path:
    """Accept a path, or the bare name of a shipped scenario (``food_coffee_bundle``)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    shipped = {p.stem: p for p in list_scenarios()}
    if str(name_or_path) in shipped:
        return shipped[str(name_or_path)]
    close = difflib.get_close_matches(str(name_or_path), list(shipped), n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise ScenarioError([f"{name_or_path}: no such scenario file or shipped scenario name{hint}"])


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Read, validate and cross-check one scenario file; raise ScenarioError with every problem."""
    path = resolve_scenario_path(name_or_path)
    return scenario_from_dict(_read_yaml(path), source=str(path))


def scenario_from_dict(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed scenario data (a YAML document, or one with overrides applied)."""
    if not isinstance(data, dict):
        raise ScenarioError(
            [f"{source}: (top level): found {type(data).__name__}, expected a YAML mapping of scenario fields"]
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(_format_validation_error(err, source)) from err
    problems = [f"{source}: {path}: {msg}" for path, msg in _cross_reference_problems(scenario)]
    if problems:
        raise ScenarioError(problems)
    scenario._source = source
    for path, msg in _suspicious(scenario):
        warnings.warn(f"{source}: {path}: {msg}", UserWarning, stacklevel=2)
    return scenario


def product_index(s: Scenario, product: int | str) -> int:
    """Resolve a product given by position or name; a string of digits counts as a position."""
    names = [p.name for p in s.products]
    if isinstance(product, str) and product.isdigit():
        product = int(product)
    if isinstance(product, str):
        if product not in names:
            raise ScenarioError([f"{s.name}: products: found no product {product!r}, expected one of {names}"])
        return names.index(product)
    if not 0 <= product < len(names):
        raise ScenarioError([f"{s.name}: products: found index {product}, expected 0..{len(names) - 1}"])
    return product


# Fields added after scenario hashes were first recorded (a sweep keys its trials by them), each with the
# value at which it is dropped: a scenario that leaves them out hashes as before they existed.
_ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("currency",): None, ("launch", "latest_week"): None, ("predecessor",): None, ("ads", "waitlist"): None,
    ("truth", "predecessor"): None, ("truth", "rival"): None, ("constraints", "max_price_changes"): None,
    ("truth", "rival", "price_match"): 0.0, ("truth", "rival", "answer_probability"): 1.0,
}  # fmt: skip


def scenario_hash(scenario: Scenario) -> str:
    """A content hash of the resolved scenario (stable across key order and formatting)."""
    data = scenario.model_dump(mode="json")
    if not any(value is not None for value in data.get("constraints", {}).values()):  # added later as a block
        data.pop("constraints", None)
    for (*parents, key), default in _ADDED_LATER.items():
        block = data
        for name in parents:
            block = block.get(name) or {}
        if key in block and block[key] == default:
            del block[key]
    for product in data["products"]:  # a field added later hashes as before while at its default
        if product["market_estimate_basis"] == "total":
            del product["market_estimate_basis"]
    blob = json.dumps(data, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------- reading


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ScenarioError([f"{path}: file not found"]) from err
    except IsADirectoryError as err:
        raise ScenarioError([f"{path}: is a directory, expected a YAML file"]) from err
    except PermissionError as err:
        raise ScenarioError([f"{path}: cannot be read (permission denied)"]) from err
    except UnicodeDecodeError as err:
        raise ScenarioError([f"{path}: not a text file (byte {err.start} is not UTF-8), expected YAML"]) from err
    try:
        return load_yaml(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError([f"{path}: {where}: YAML syntax error: {problem}"]) from err


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (YAML keeps the last one silently),
    and reads ``1e12`` or ``3e-4`` as numbers (YAML 1.2; PyYAML's YAML 1.1 reads them as strings)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping (first on line {seen[key].line + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    """A YAML document as scenario files are read (``1e12`` a number, a repeated key an error)."""
    loader = _UniqueKeyLoader(text)  # a SafeLoader: plain data only, no Python objects
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# ---------------------------------------------------------------- pydantic errors


def _format_validation_error(err: ValidationError, source: str) -> list[str]:
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "missing":
            message = "missing required field"
        elif e["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            message = f"unknown key{hint} (expected one of: {', '.join(allowed)})"
        elif e["type"] == "string_pattern_mismatch":
            message = f"found {_short(e.get('input'))}, expected a name without '/' or '\\' that does not start with '.' (it names folders and files)"
        else:
            expected = e["msg"].replace("Input should be ", "").replace("Value error, ", "")
            message = f"found {_short(e.get('input'))}, expected {expected[0].lower() + expected[1:]}"
        lines.append(f"{source}: {path}: {message}")
    return lines


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: tuple) -> list[str]:
    """The field names of the schema block at ``loc`` (walking lists, dicts and optionals)."""
    node: Any = Scenario
    for part in loc:
        node = _unwrap(node)
        if isinstance(node, type) and issubclass(node, BaseModel):
            field = node.model_fields.get(str(part))
            if field is None:
                return []
            node = field.annotation
        else:  # list[...] or dict[str, ...]: step into the element type
            args = typing.get_args(node)
            node = args[-1] if args else None
    node = _unwrap(node)
    if isinstance(node, type) and issubclass(node, BaseModel):
        return list(node.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated wrappers so the walk reaches the model or container type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0]
        else:
            return tp


# ---------------------------------------------------------------- cross-references


def _duplicates(names: list[str]) -> set[str]:
    return {n for n in names if names.count(n) > 1}


def _cross_reference_problems(s: Scenario) -> Iterator[tuple[str, str]]:
    if s.step_weeks > s.horizon_weeks:
        yield "step_weeks", f"found {s.step_weeks}, expected at most horizon_weeks ({s.horizon_weeks})"
    for block, names in (
        ("products", [p.name for p in s.products]),
        ("catalogue", [c.name for c in s.catalogue]),
        ("ads.creatives", [c.name for c in s.ads.creatives]),
    ):
        for dup in sorted(_duplicates(names)):
            yield block, f"found the name {dup!r} twice, expected unique names"
    if s.truth is not None:
        yield from _truth_problems(s, s.truth)
    h = s.horizon_weeks
    if s.launch.earliest_week >= h:
        yield "launch.earliest_week", f"found {s.launch.earliest_week}, expected a week before the horizon ({h} weeks)"
    latest = s.launch.latest_week
    if latest is not None and latest < s.launch.earliest_week:
        yield "launch.latest_week", f"found {latest}, expected ≥ launch.earliest_week ({s.launch.earliest_week})"
    if latest is not None and s.launch.deadline_week is not None and s.launch.deadline_week > latest:
        yield "launch.deadline_week", f"found {s.launch.deadline_week}, expected ≤ launch.latest_week ({latest})"
    if s.launch.deadline_week is not None:
        if s.launch.deadline_week < s.launch.earliest_week:
            yield "launch.deadline_week", f"found {s.launch.deadline_week}, expected ≥ launch.earliest_week ({s.launch.earliest_week})"
        if s.launch.deadline_week >= h:
            yield "launch.deadline_week", f"found {s.launch.deadline_week}, expected a week before the horizon ({h} weeks)"
    flash = s.pricing.flash_sale
    if flash is not None:
        if flash.end_week < flash.start_week:
            yield "pricing.flash_sale.end_week", f"found {flash.end_week}, expected ≥ start_week ({flash.start_week})"
        if flash.start_week >= h:
            yield "pricing.flash_sale.start_week", f"found {flash.start_week}, expected a week before the horizon ({h} weeks)"
    if len(set(s.pricing.levels)) != len(s.pricing.levels):
        yield "pricing.levels", f"found repeated levels {s.pricing.levels}, expected distinct levels"
    if len(set(s.ads.spend_levels)) != len(s.ads.spend_levels):
        yield "ads.spend_levels", f"found repeated levels {s.ads.spend_levels}, expected distinct levels"
    yield from _constraint_problems(s)
    old = s.predecessor
    if old is not None and old.markdown > 0 and old.after_launch != "keep":
        yield "predecessor.markdown", f"found {old.markdown}, expected 0 with after_launch {old.after_launch!r} (a markdown needs 'keep')"
    if old is not None and old.name in [p.name for p in s.products]:
        yield "predecessor.name", f"found {old.name!r}, the name of a product to launch; expected a name of its own"
    weeks = [e.week for e in s.competitor.events]
    if weeks != sorted(set(weeks)):
        yield "competitor.events", f"found weeks {weeks}, expected strictly increasing weeks"
    for i, item in enumerate(s.catalogue):
        if len(set(item.discounts)) != len(item.discounts):
            yield f"catalogue.{i}.discounts", f"found repeated discounts {item.discounts}, expected distinct values"


def _constraint_problems(s: Scenario) -> Iterator[tuple[str, str]]:
    """Constraints that contradict each other or leave a product no price level to sell at."""
    rules = s.constraints
    if rules.price_floor is not None and rules.price_ceiling is not None and rules.price_floor > rules.price_ceiling:
        yield "constraints.price_floor", f"found {rules.price_floor}, expected at most price_ceiling ({rules.price_ceiling})"
    low, high = rules.min_weekly_ad_spend, rules.max_weekly_ad_spend
    if low is not None and high is not None and low > high:
        yield "constraints.min_weekly_ad_spend", f"found {low}, expected at most max_weekly_ad_spend ({high})"
    periods = rules.ad_budget_periods
    if periods is not None:
        weeks = [p.from_week for p in periods]
        if not periods or weeks[0] != 0 or weeks != sorted(set(weeks)) or weeks[-1] >= s.horizon_weeks:
            yield "constraints.ad_budget_periods", f"found from_week {weeks}, expected strictly increasing weeks from 0, before the horizon ({s.horizon_weeks} weeks)"
        total = sum(p.amount for p in periods)
        if abs(total - s.ads.budget) > 1e-6 * max(1.0, s.ads.budget):
            yield "constraints.ad_budget_periods", f"found amounts summing to {total:g}, expected ads.budget ({s.ads.budget:g})"
    for i, p in enumerate(s.products):
        if not any(rules.allows(p, level) for level in s.pricing.levels):
            lo, hi = rules.price_ratio_bounds(p)
            prices = ", ".join(f"{level * p.reference_price:.2f}" for level in s.pricing.levels)
            yield "constraints", (
                f"leave products.{i} ({p.name!r}) no price level: its levels sell at {prices}, the constraints allow "
                f"{lo * p.reference_price:.2f} to {hi * p.reference_price:.2f}"
            )


def _truth_problems(s: Scenario, truth: Any) -> Iterator[tuple[str, str]]:
    """The truth block's names against the public part, and what a weekly market estimate cannot carry."""
    yield from _match_names("truth.products", truth.products, [p.name for p in s.products], "products")
    for i, product in enumerate(s.products):
        params = truth.products.get(product.name)
        if product.market_estimate_basis != "weekly" or params is None:
            continue
        reads = [f"diffusion: {params.diffusion}"] * (params.diffusion != "constant") + [f"repeat_rate: {params.repeat_rate}"] * (params.repeat_rate > 0)
        if reads:
            yield (f"products.{i}.market_estimate_basis",
                   f"found 'weekly', expected 'total': its truth ({', '.join(reads)}) depends on buyers so far, and a weekly pool has none")
    yield from _match_names("truth.creatives_ctr", truth.creatives_ctr, [c.name for c in s.ads.creatives], "ads.creatives")
    yield from _match_names("truth.partners", truth.partners, [c.name for c in s.catalogue], "catalogue")
    if truth.predecessor is not None and s.predecessor is None:
        yield "truth.predecessor", "found a predecessor's truth, expected none: the scenario has no predecessor block"
    rival = truth.rival
    if rival is not None and not s.competitor.events:
        yield "truth.rival", "found a rival's answers, expected none: the scenario's competitor has no events"
    if rival is not None and rival.launch_cut + rival.flash_cut >= 1:
        yield "truth.rival.flash_cut", f"found {rival.flash_cut}, expected launch_cut + flash_cut < 1 (the rival's price stays above 0)"


def _match_names(path: str, truth: dict, names: list[str], public: str) -> Iterator[tuple[str, str]]:
    explained = set()  # names whose absence a near-miss key already explains (a typo reported once)
    for key in truth:
        if key not in names:
            missing = [n for n in names if n not in truth]
            close = difflib.get_close_matches(key, missing or names, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            explained.update(close)
            yield f"{path}.{key}", f"found a name that is not in {public}{hint}, expected one of {names}"
    for name in names:
        if name not in truth and name not in explained:
            yield path, f"missing hidden parameters for {name!r} (listed in {public})"


def _suspicious(s: Scenario) -> Iterator[tuple[str, str]]:
    """Legal but probably unintended settings: warned about, not rejected."""
    h = s.horizon_weeks
    for p in s.products:
        low = min(s.pricing.levels) * p.reference_price
        if low < p.unit_cost:
            yield "pricing.levels", f"the lowest level sells {p.name!r} at {low:.2f}, below its unit cost {p.unit_cost:.2f}"
    for i, e in enumerate(s.competitor.events):
        if e.week >= h:
            yield f"competitor.events.{i}.week", f"{e.week} is after the horizon ({h} weeks); the event never happens"
    for i, item in enumerate(s.catalogue):
        if item.available_from_week >= h:
            yield f"catalogue.{i}.available_from_week", f"{item.available_from_week} is after the horizon; the item can never be bundled"
