"""What-if changes to a scenario: ``--set PATH=VALUE`` overrides, checked by the scenario schema.

A path is dotted through the scenario's fields as the YAML file spells them (``ads.budget``,
``competitor.events.0.week``, ``truth.products.bamboo_board_set.price_beta``); a list element is
picked by its position or, for lists of named blocks, by its ``name`` (``products.bamboo_board_set.stock``).
The value is YAML (``yaml.safe_load``): ``5``, ``0.3``, ``null``, ``[1.0, 1.1]``, ``{week: 3, price: 90, strength: 1}``.
Relative values change the current number: ``*0.5`` and ``/2`` scale it, ``+3`` and ``-3`` shift it;
on a list of numbers they apply to every element (``pricing.levels=*1.1``); on an integer field
the result is rounded to the nearest integer. A value starting with ``=`` is always absolute, so
``PATH==-3`` sets -3. The changed scenario is validated again as a whole, so a bad value gets the
same one-line error as in a file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

import yaml
from launchsim.scenarios.loader import load_yaml, scenario_from_dict
from launchsim.scenarios.schema import Scenario

from launchsim.errors import ScenarioError

_RELATIVE = re.compile(r"^([*/+-])\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)$")


def apply_overrides(scenario: Scenario, overrides: Sequence[str], source: str | None = None) -> Scenario:
    """Return ``scenario`` with every ``PATH=VALUE`` applied, validated again; ScenarioError names the path."""
    if not overrides:
        return scenario
    data = scenario.model_dump(mode="json")
    for text in overrides:
        path, value = _split(text)
        _set(data, path, value, text)
    label = source or f"{scenario.source} with --set {' '.join(overrides)}"
    return scenario_from_dict(data, source=label)


def _split(text: str) -> tuple[list[str], str]:
    if "=" not in text:
        raise ScenarioError([f"--set {text}: expected PATH=VALUE (for example ads.budget=*0.5)"])
    path, value = text.split("=", 1)
    parts = [p.strip() for p in path.strip().split(".")]
    if not path.strip() or any(not p for p in parts):
        raise ScenarioError([f"--set {text}: found an empty path segment, expected a dotted path such as ads.budget"])
    if not value.strip():
        raise ScenarioError([f"--set {text}: {path.strip()}: found no value, expected PATH=VALUE"])
    return parts, value.strip()


def _set(data: dict, parts: list[str], raw: str, text: str) -> None:
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        node = node[_key(node, parts, depth, text)]
        if node is None or not isinstance(node, dict | list):
            where = ".".join(parts[: depth + 1])
            found = "null (not set)" if node is None else f"a single value ({node!r})"
            raise ScenarioError(
                [
                    f"--set {text}: {where}: found {found}, expected a block with fields; set the whole block, e.g. {where}={{...}}"
                ]
            )
    key = _key(node, parts, len(parts) - 1, text)
    node[key] = _new_value(node[key], raw, ".".join(parts), text)


def _key(node: dict | list, parts: list[str], depth: int, text: str) -> Any:
    """The dict key or list index that ``parts[depth]`` names inside ``node``, or a ScenarioError
    suggesting the closest whole path."""
    part, above, below = parts[depth], parts[:depth], parts[depth + 1 :]
    where = ".".join(parts[: depth + 1])
    if isinstance(node, list):
        if part.isdigit():
            if int(part) < len(node):
                return int(part)
            raise ScenarioError([f"--set {text}: {where}: found index {part}, expected 0..{len(node) - 1}"])
        names = [item.get("name") for item in node if isinstance(item, dict)]
        if part in names:
            return names.index(part)
        valid = f"0..{len(node) - 1}" + (f" or a name ({', '.join(map(str, names))})" if any(names) else "")
        raise ScenarioError([f"--set {text}: {where}: found {part!r}, expected a list index {valid}"])
    if part in node:
        return part
    close = difflib.get_close_matches(part, [str(k) for k in node], n=1, cutoff=0.5)
    hint = f"; did you mean {'.'.join([*above, close[0], *below])!r}?" if close else ""
    raise ScenarioError([f"--set {text}: {where}: unknown key{hint} (expected one of: {', '.join(map(str, node))})"])


def _new_value(current: Any, raw: str, where: str, text: str) -> Any:
    if raw.startswith("="):
        return _parse(raw[1:], where, text)
    match = _RELATIVE.match(raw)
    if match is None:
        return _parse(raw, where, text)
    op, operand = match.group(1), float(match.group(2))
    if isinstance(current, list) and current and all(_is_number(x) for x in current):
        return [_combine(x, op, operand, where, text) for x in current]
    if not _is_number(current):
        raise ScenarioError(
            [f"--set {text}: {where}: a relative value ({raw}) needs a number or a list of numbers, found {current!r}"]
        )
    return _combine(current, op, operand, where, text)


def _combine(current: float, op: str, operand: float, where: str, text: str) -> float | int:
    if op == "/" and operand == 0:
        raise ScenarioError([f"--set {text}: {where}: found a division by zero, expected a non-zero divisor"])
    result = {
        "*": current * operand,
        "/": current / operand if operand else 0.0,
        "+": current + operand,
        "-": current - operand,
    }[op]
    return round(result) if isinstance(current, int) else result


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _parse(raw: str, where: str, text: str) -> Any:
    try:
        return load_yaml(raw)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError([f"--set {text}: {where}: the value is not valid YAML ({problem})"]) from err
