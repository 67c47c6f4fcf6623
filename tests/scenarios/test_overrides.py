"""--set overrides: absolute and relative values, list and named paths, and errors that name the path."""

from __future__ import annotations

import pytest

from launchsim.errors import ScenarioError
from launchsim.scenarios import load_scenario, scenario_hash
from launchsim.scenarios.overrides import apply_overrides


@pytest.fixture
def earbuds():
    return load_scenario("electronics_earbuds_competitor")


def test_no_overrides_and_no_op_overrides_keep_the_scenario(scenario_path):
    s = load_scenario(scenario_path)
    assert apply_overrides(s, []) is s
    same = apply_overrides(s, ["horizon_weeks=*1", "ads.budget=+0", f"products.0.stock={s.products[0].stock}"])
    assert same == s and scenario_hash(same) == scenario_hash(s)


def test_absolute_and_relative_values(earbuds):
    week = earbuds.competitor.events[0].week
    s = apply_overrides(
        earbuds,
        [
            "competitor.events.0.week=-3",
            "ads.budget=*0.5",
            "products.0.unit_cost=/2",
            "products.0.stock=+100",
            "launch.launch_cost=250",
        ],
    )
    assert s.competitor.events[0].week == week - 3
    assert s.ads.budget == earbuds.ads.budget * 0.5
    assert s.products[0].unit_cost == earbuds.products[0].unit_cost / 2
    assert s.products[0].stock == earbuds.products[0].stock + 100
    assert s.launch.launch_cost == 250
    assert scenario_hash(s) != scenario_hash(earbuds)


def test_relative_value_on_a_list_applies_to_every_element(earbuds):
    s = apply_overrides(earbuds, ["pricing.levels=*1.1"])
    assert s.pricing.levels == pytest.approx([x * 1.1 for x in earbuds.pricing.levels])


def test_relative_value_on_an_integer_field_is_rounded(earbuds):
    s = apply_overrides(earbuds, ["competitor.events.0.week=*0.55"])
    assert s.competitor.events[0].week == round(earbuds.competitor.events[0].week * 0.55)
    assert isinstance(s.competitor.events[0].week, int)


def test_list_elements_by_name_and_dict_keys(earbuds):
    name = earbuds.products[0].name
    s = apply_overrides(earbuds, [f"products.{name}.stock=500", f"truth.products.{name}.price_alpha==-3"])
    assert s.products[0].stock == 500
    assert s.truth.products[name].price_alpha == -3  # '=' forces an absolute value, so -3 is not relative


def test_yaml_values_replace_whole_blocks(earbuds):
    s = apply_overrides(earbuds, ["competitor.events=[{week: 2, price: 70, strength: 2}]", "launch.deadline_week=null"])
    assert [(e.week, e.price, e.strength) for e in s.competitor.events] == [(2, 70.0, 2.0)]
    assert s.launch.deadline_week is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ad.budget=*0.5", r"--set ad.budget=\*0.5: ad: unknown key; did you mean 'ads.budget'\?"),
        ("competitor.event.0.week=5", r"competitor.event: unknown key; did you mean 'competitor.events.0.week'\?"),
        ("products.0.stok=5", r"products.0.stok: unknown key; did you mean 'products.0.stock'\?"),
        ("competitor.events.4.week=5", r"competitor.events.4: found index 4, expected 0..0"),
        (
            "products.shoe.stock=5",
            r"products.shoe: found 'shoe', expected a list index 0..0 or a name \(pulse_anc_earbuds\)",
        ),
        ("ads.budget", r"--set ads.budget: expected PATH=VALUE"),
        ("ads.budget=", r"ads.budget: found no value"),
        ("ads..budget=3", r"empty path segment"),
        ("ads.creatives.0.name=*2", r"ads.creatives.0.name: a relative value \(\*2\) needs a number"),
        (
            "pricing.flash_sale.discount=0.3",
            r"pricing.flash_sale: found null \(not set\), expected a block with fields",
        ),
        ("ads.budget=[1, 2", r"ads.budget: the value is not valid YAML"),
    ],
)
def test_bad_paths_name_the_path(earbuds, override, message):
    with pytest.raises(ScenarioError, match=message):
        apply_overrides(earbuds, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("competitor.events.0.week=-20", r"competitor.events.0.week: found -8, expected greater than or equal to 0"),
        ("ads.budget=abc", r"ads.budget: found 'abc', expected a valid number"),
        ("ads.carryover=1.5", r"ads.carryover: found 1.5, expected less than 1"),
        ("launch.earliest_week=99", r"launch.earliest_week: found 99, expected a week before the horizon"),
    ],
)
def test_bad_values_get_the_schema_errors(earbuds, override, message):
    with pytest.raises(ScenarioError, match=message) as caught:
        apply_overrides(earbuds, [override])
    assert len(caught.value.problems) == 1 and "--set" in caught.value.problems[0]
