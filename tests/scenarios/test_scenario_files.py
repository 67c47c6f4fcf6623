"""Scenario files: every shipped file validates; every kind of malformed file fails with exit 2
and a one-line message naming the file and the field path."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest
import yaml

from launchsim.errors import ScenarioError
from run_sim import main
from launchsim.scenarios import CATEGORIES, list_scenarios, load_scenario, scenario_from_dict, scenario_hash
from launchsim.scenarios.overrides import apply_overrides


def test_every_shipped_scenario_validates(scenario_path):
    s = load_scenario(scenario_path)
    assert s.name == scenario_path.stem
    assert s.n_steps >= 1


def test_validate_cli_accepts_all_shipped(capsys):
    assert main(["validate", *map(str, list_scenarios())]) == 0
    assert capsys.readouterr().out.count("ok: ") == len(list_scenarios())


def test_shipped_scenarios_cover_categories_and_levers():
    scenarios = [load_scenario(p) for p in list_scenarios()]
    assert len(scenarios) >= 10
    assert {s.category for s in scenarios} == set(CATEGORIES)
    assert any(s.calendar.holidays for s in scenarios)
    assert any(any(e.week > 0 for e in s.competitor.events) for s in scenarios), "competitor entering mid-horizon"
    assert any(s.pricing.flash_sale for s in scenarios)
    assert any(s.catalogue for s in scenarios)
    assert any(s.launch.deadline_week not in (None, 0) for s in scenarios)
    assert any(s.ads.budget < 5000 and s.ads.budget > 0 for s in scenarios), "a tight ad budget"
    assert any(len(s.products) > 1 for s in scenarios)
    assert any(any(c.available_from_week > 0 for c in s.catalogue) for s in scenarios), "a partner arriving late"


def _set(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if value is _DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


_DELETE = object()

MALFORMED = {
    # id: (path, value, field path expected in the message, words expected in the message)
    "wrong_type": ("horizon_weeks", "twenty", "horizon_weeks", "found 'twenty', expected a valid integer"),
    "missing_field": ("products.0.unit_cost", _DELETE, "products.0.unit_cost", "missing required field"),
    "unknown_key_typo": ("products.0.stok", 10, "products.0.stok", "did you mean 'stock'"),
    "negative_stock": ("products.0.stock", -5, "products.0.stock", "found -5, expected greater than or equal to 0"),
    "empty_text": ("products.0.text", "   ", "products.0.text", "at least 1 character"),
    "horizon_zero": ("horizon_weeks", 0, "horizon_weeks", "found 0, expected greater than or equal to 1"),
    "bad_category": ("category", "toys", "category", "found 'toys'"),
    "truth_name_mismatch": ("truth.partners", {"merino_beany": {"affinity": 0.5}}, "truth.partners.merino_beany", "did you mean 'merino_beanie'"),
    "deadline_after_horizon": ("launch.deadline_week", 40, "launch.deadline_week", "before the horizon"),
    "weekly_estimate_of_a_launch": ("products.0.market_estimate_basis", "weekly", "products.0.market_estimate_basis", "found 'weekly', expected 'total': its truth (diffusion: bass)"),
    "unsorted_competitor": ("competitor.events", [{"week": 9, "price": 1.0, "strength": 1.0}, {"week": 2, "price": 1.0, "strength": 1.0}], "competitor.events", "strictly increasing"),
}  # fmt: skip


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_scenario_exits_2_with_one_line(case, default_data, tmp_path, capsys):
    path, value, field, words = MALFORMED[case]
    bad = tmp_path / f"{case}.yaml"
    bad.write_text(yaml.safe_dump(_set(default_data, path, value)))
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"error: {bad}: {field}: ")
    assert words in err[0]


def test_yaml_syntax_error_names_line(tmp_path, capsys):
    bad = tmp_path / "syntax.yaml"
    bad.write_text("name: x\nproducts: [unclosed\n  - y: 1\n")
    assert main(["validate", str(bad)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {bad}: line ") and "YAML syntax error" in line


def test_binary_file_is_not_yaml(tmp_path, capsys):
    bad = tmp_path / "image.yaml"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert main(["validate", str(bad)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {bad}: ") and "not a text file" in line


def test_text_that_is_not_a_mapping(tmp_path, capsys):
    bad = tmp_path / "prose.yaml"
    bad.write_text("This is a memo about the launch, not a scenario.\n")
    assert main(["validate", str(bad)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: {bad}: (top level): found str, expected a YAML mapping of scenario fields"


def test_missing_file(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_every_problem_is_reported(default_data):
    data = _set(_set(default_data, "horizon_weeks", 0), "products.0.stock", -1)
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(data, source="s.yaml")
    assert len(info.value.problems) == 2


def test_suspicious_price_warns(default_data):
    with pytest.warns(UserWarning, match="below its unit cost"):
        scenario_from_dict(_set(default_data, "pricing.levels", [0.3, 1.0]))


def test_hash_ignores_formatting(default_data):
    a = scenario_from_dict(default_data)
    b = scenario_from_dict(yaml.safe_load(yaml.safe_dump(default_data, default_flow_style=True)))
    assert scenario_hash(a) == scenario_hash(b)
    assert scenario_hash(a) != scenario_hash(scenario_from_dict(_set(default_data, "horizon_weeks", 19)))


def test_a_limit_on_price_changes_left_unset_keeps_a_constrained_scenarios_hash():
    floor = load_scenario("home_cutting_board_price_floor")
    assert scenario_hash(floor) == "26829c5be31fb749"  # as recorded before constraints.max_price_changes existed
    assert scenario_hash(apply_overrides(floor, ["constraints.max_price_changes=2"])) != scenario_hash(floor)


def test_the_estimate_basis_keeps_the_hashes_of_scenarios_that_do_not_set_it(default_data):
    # A sweep keys its trials by scenario hash: a field added with a default must not turn finished trials
    # into new ones. So a scenario that leaves it at its default hashes as if the field did not exist
    # (the coat's hash, as recorded before the field existed).
    dump = scenario_from_dict(default_data).model_dump(mode="json")
    del dump["products"][0]["market_estimate_basis"]
    del dump["currency"], dump["constraints"], dump["launch"]["latest_week"]  # added later too, at their defaults
    del dump["predecessor"], dump["truth"]["predecessor"], dump["truth"]["rival"], dump["ads"]["waitlist"]
    before = hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]
    assert scenario_hash(scenario_from_dict(default_data)) == before == "6da195ab193d897e"
    assert scenario_hash(scenario_from_dict(_set(default_data, "products.0.market_estimate_basis", "total"))) == before
    weekly = _set(default_data, "products.0.market_estimate_basis", "weekly")
    weekly["truth"]["products"]["alpine_loft_parka"]["diffusion"] = "constant"
    constant = _set(weekly, "products.0.market_estimate_basis", "total")
    assert scenario_hash(scenario_from_dict(weekly)) != scenario_hash(scenario_from_dict(constant))


def test_a_weekly_estimate_needs_a_truth_without_adoption_state():
    board = load_scenario("home_cutting_board_closed_form")
    assert board.products[0].market_estimate_basis == "weekly"
    truth = "truth.products.bamboo_board_set"
    with pytest.raises(ScenarioError, match=r"products\.0\.market_estimate_basis: found 'weekly', expected 'total': its truth \(repeat_rate: 0\.1\)"):
        apply_overrides(board, [f"{truth}.repeat_rate=0.1"])
    with pytest.raises(ScenarioError, match=r"its truth \(diffusion: bass, repeat_rate: 0\.1\) depends on buyers so far"):
        apply_overrides(board, [f"{truth}.repeat_rate=0.1", f"{truth}.diffusion=bass"])
    assert apply_overrides(board, [f"{truth}.repeat_rate=0.1", "products.0.market_estimate_basis=total"]).truth.products["bamboo_board_set"].repeat_rate == 0.1
