"""Scenario files and their schema: every market fact a user may change, validated on load."""

from launchsim.scenarios.loader import (
    DEFAULT_SCENARIO,
    SCENARIO_DIR,
    list_scenarios,
    load_scenario,
    product_index,
    resolve_scenario_path,
    scenario_from_dict,
    scenario_hash,
)
from launchsim.scenarios.schema import CATEGORIES, Scenario

__all__ = [
    "CATEGORIES",
    "DEFAULT_SCENARIO",
    "SCENARIO_DIR",
    "Scenario",
    "list_scenarios",
    "load_scenario",
    "product_index",
    "resolve_scenario_path",
    "scenario_from_dict",
    "scenario_hash",
]
