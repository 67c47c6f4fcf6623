"""Property-based checks of scenario validation: a value of the wrong type, a non-finite or huge number,
or a key given twice, anywhere in a shipped scenario, is refused with the file and the field path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchsim.errors import ScenarioError
from launchsim.scenarios import list_scenarios, load_scenario, scenario_from_dict
from launchsim.scenarios.overrides import apply_overrides
from tests.conftest import tree_items, with_value

SHIPPED = {p.stem: yaml.safe_load(p.read_text()) for p in list_scenarios()}


LEAVES = [
    (name, path, value) for name, data in SHIPPED.items() for path, value in tree_items(data)
    if isinstance(value, (int, float)) and not isinstance(value, bool)
]  # every number in a shipped scenario, with its path


def _bad_values(value):
    """Values that must never pass for this number: itself as text, a boolean, non-finite, far too large."""
    return st.sampled_from([str(value), str(float(value)), True, False, math.inf, -math.inf, math.nan, 1e308, -1e308, [value], None])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEAVES).flatmap(lambda leaf: st.tuples(st.just(leaf), _bad_values(leaf[2]))))
def test_a_bad_number_anywhere_is_refused_naming_its_field(case):
    (name, path, _), bad = case
    field = ".".join(map(str, path))
    if bad is None and field.endswith(("market_estimate", "deadline_week", "price_floor")):  # optional fields: null is their default
        return
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(with_value(SHIPPED[name], path, bad), source=f"{name}.yaml")
    assert any(line.startswith(f"{name}.yaml: {field}") for line in err.value.problems), err.value.problems


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(LEAVES).flatmap(lambda leaf: st.tuples(st.just(leaf), st.sampled_from(["'12.0'", "true", ".inf", ".nan", "1e308"]))))
def test_overrides_meet_the_same_checks(case):
    (name, path, _), raw = case
    field = ".".join(map(str, path))
    with pytest.raises(ScenarioError, match=field.replace(".", r"\.")):
        apply_overrides(load_scenario(name), [f"{field}={raw}"])


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(SHIPPED)), st.data())
def test_a_key_given_twice_is_refused_with_its_line(tmp_path_factory, name, data):
    lines = (Path(list_scenarios()[0]).parent / f"{name}.yaml").read_text().splitlines()
    candidates, block = [], None  # block: the indentation of a block scalar's key while inside its text
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if block is not None and (not line.strip() or indent > block):
            continue  # a line of folded or literal text, not a key
        block = None
        if ":" in line and not line.lstrip().startswith(("#", "-")):
            value = line.split(":", 1)[1].strip()
            if value.startswith((">", "|")):
                block = indent
            elif value:
                candidates.append(i)
    i = data.draw(st.sampled_from(candidates))
    lines.insert(i + 1, lines[i])  # the same key and value again, at the same indentation
    path = tmp_path_factory.mktemp("dup") / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    key = lines[i].split(":", 1)[0].strip()
    with pytest.raises(ScenarioError, match=rf"line {i + 2}, .*key '{key}' appears twice in one mapping \(first on line {i + 1}\)"):
        load_scenario(path)


@pytest.mark.parametrize("name", ["../../../../tmp/x", "runs/x", "..", ".hidden", "a\\b"])
def test_a_scenario_name_cannot_leave_its_folder(name):
    with pytest.raises(ScenarioError, match="name: found .*, expected a name without '/'"):
        apply_overrides(load_scenario("food_coffee_bundle"), [f"name={name}"])


def test_numbers_in_exponent_form_are_numbers_in_files_and_overrides(tmp_path):
    # PyYAML (YAML 1.1) reads 1e12 as a string; scenario files and --set read it as the number it is.
    s = apply_overrides(load_scenario("food_coffee_bundle"), ["ads.budget=1e12", "products.0.unit_cost=5E-1"])
    assert s.ads.budget == 1e12 and s.products[0].unit_cost == 0.5
    text = (Path(list_scenarios()[0]).parent / "food_coffee_bundle.yaml").read_text()
    path = tmp_path / "exp.yaml"
    path.write_text(text.replace("budget: ", "budget: 2e4 #", 1))
    assert load_scenario(path).ads.budget == 2e4
    with pytest.raises(ScenarioError, match="ads.budget: found 10000000000000.0, expected less than or equal to 1000000000000"):
        apply_overrides(load_scenario("food_coffee_bundle"), ["ads.budget=1e13"])
