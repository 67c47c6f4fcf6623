"""Outputs are written atomically and never hold a number JSON or a table cannot read back."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from launchsim.files import write_frame, write_json

numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**6), 10**6), st.none())
documents = st.recursive(numbers, lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(documents)
def test_json_outputs_are_strict_and_keep_every_finite_number(tmp_path_factory, value):
    path = tmp_path_factory.mktemp("json") / "out.json"
    write_json(path, {"value": value, "array": np.array([1.5, np.nan, -np.inf]), "numpy": np.float32(np.inf)})
    back = json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # no NaN/Infinity tokens
    assert back["array"] == [1.5, None, None] and back["numpy"] is None

    def same(a, b):
        if isinstance(a, float) and not math.isfinite(a):
            return b is None
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b

    assert same(value, back["value"])
    assert not list(path.parent.glob(".*.tmp"))  # no temporary file left behind


def test_tables_hold_no_infinite_cells(tmp_path):
    frame = pd.DataFrame({"profit": [1.0, np.inf, -np.inf, np.nan], "week": [0, 1, 2, 3]})
    for name in ("t.csv", "t.parquet"):
        write_frame(tmp_path / name, frame)
        back = pd.read_csv(tmp_path / name) if name.endswith(".csv") else pd.read_parquet(tmp_path / name)
        assert back["profit"].iloc[0] == 1.0 and back["profit"].iloc[1:].isna().all() and back["week"].tolist() == [0, 1, 2, 3]
