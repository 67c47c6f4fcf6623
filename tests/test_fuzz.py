"""Fuzzing the inputs a user writes: scenario files and overrides, logs files and command lines.

Every generated input either works, with finite outputs, or is refused with the library's own error
(exit 2 on the command line): never another exception, never a hang. The default suite runs a few
hundred cases; ``LAUNCHSIM_FUZZ_CASES=10000 python -m pytest -q tests/test_fuzz.py`` runs more.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.errors import LaunchSimError, LogsError, ScenarioError
from launchsim.models.user_logs import OPTIONAL, TARGET_COLUMNS, canonical_logs
from launchsim.scenarios import list_scenarios, scenario_from_dict
from tests.conftest import tree_items, with_value

CASES = int(os.environ.get("LAUNCHSIM_FUZZ_CASES", "150"))
FUZZ = settings(max_examples=CASES, deadline=10_000, suppress_health_check=list(HealthCheck), derandomize=CASES <= 150)
SHIPPED = [yaml.safe_load(p.read_text()) for p in list_scenarios()]

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**20), 10**20), st.booleans(), st.none(),
    st.text(max_size=12), st.sampled_from(["12.0", "1e308", ".inf", "-0", "", "../x", "bass", "total"]),
    st.lists(st.floats(-10, 10), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)  # fmt: skip


@st.composite
def scenario_documents(draw):
    data = draw(st.sampled_from(SHIPPED))
    for _ in range(draw(st.integers(1, 3))):
        data = with_value(data, draw(st.sampled_from([path for path, _ in tree_items(data)])), draw(values))
        if not isinstance(data, dict):
            break
    return data


@FUZZ
@given(scenario_documents(), st.integers(0, 2**32 - 1))
def test_a_scenario_validates_and_plays_finite_or_is_refused(data, seed):
    try:
        scenario = scenario_from_dict(data, source="fuzz.yaml")
    except ScenarioError as err:
        assert all(line.startswith("fuzz.yaml: ") for line in err.problems)
        return
    env = LaunchMarketEnv(scenario)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(min(4, scenario.n_steps)):
        obs, reward, terminated, _, info = env.step(rng.integers(0, env.action_space.nvec))
        assert np.isfinite(obs).all() and math.isfinite(reward) and math.isfinite(info["profit"])
        if terminated:
            break


CELLS = {"product_id": st.one_of(st.text(max_size=4), st.none()), "description": st.one_of(st.text(max_size=8), st.none()),
         "week": st.one_of(st.integers(-5, 10**12), st.floats(allow_nan=True), st.text(max_size=10)),
         "price": values, "units": values, "launched": values, "market_estimate": values, "bundle_discount": values}  # fmt: skip


@st.composite
def logs_frames(draw):
    rows = [{"product_id": f"p{i % 3}", "description": f"mug {i % 3}", "week": i // 3, "price": 4.5, "units": i, "launched": 1,
             "market_estimate": 900.0, "bundle_discount": 0.0} for i in range(9)]  # fmt: skip
    for _ in range(draw(st.integers(1, 3))):
        column = draw(st.sampled_from(sorted(CELLS)))
        rows[draw(st.integers(0, 8))][column] = draw(CELLS[column])
    return pd.DataFrame(rows)


@FUZZ
@given(logs_frames())
def test_logs_read_finite_or_are_refused_naming_the_column(frame):
    try:
        logs = canonical_logs(frame, source="fuzz.csv")
    except LogsError as err:
        assert str(err).startswith("fuzz.csv: ")
        return
    numbers = logs.select_dtypes("number").to_numpy(np.float64)
    assert not np.isinf(numbers).any()  # NaN only where a count was not observed (a target, a filled week's clicks)
    context = [c for c in (*OPTIONAL, "price", "price_ratio", "reference_price", "week", "week_of_year") if c in logs and c not in TARGET_COLUMNS]
    assert np.isfinite(logs[context].select_dtypes("number").to_numpy(np.float64)).all()


TOKENS = ["simulate", "evaluate", "train", "logs", "finetune", "replay", "export-table", "bench", "--seed", "--device", "--steps", "--episodes",
          "--out", "--json", "--set", "--scenario", "-1", "0", "3", "1e9", "cuda", "cpu", "tpu", "x.txt", "food_coffee_bundle", "ads.budget=*2",
          "--heldout", "--fidelity-episodes", "--n-envs", "--markets", "learned", "nan"]  # fmt: skip


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(TOKENS), st.text(max_size=6)), min_size=1, max_size=6))
def test_a_command_line_parses_or_exits_2(argv):
    from launchsim.cli import build_parser

    try:
        build_parser().parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code in (0, 2)  # 0: --help
    except LaunchSimError:
        pytest.fail("a user error escaped argparse")
