"""Shared fixtures: the shipped scenarios, and a helper to write a modified scenario file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scenarios import DEFAULT_SCENARIO, list_scenarios, load_scenario

SCENARIO_PATHS = list_scenarios()
SCENARIO_IDS = [p.stem for p in SCENARIO_PATHS]


@pytest.fixture(params=SCENARIO_PATHS, ids=SCENARIO_IDS)
def scenario_path(request) -> Path:
    return request.param


@pytest.fixture
def default_scenario():
    return load_scenario(DEFAULT_SCENARIO)


@pytest.fixture
def default_data() -> dict:
    return yaml.safe_load(DEFAULT_SCENARIO.read_text())
