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


def test_a_full_disk_leaves_the_previous_output_and_no_temporary_file(tmp_path, monkeypatch):
    import errno
    import os

    import pytest

    from launchsim import files
    from launchsim.errors import OutputError

    target = write_json(tmp_path / "out.json", {"profit": 1.0})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    with pytest.raises(OutputError, match="out.json: cannot write: No space left on device"):
        write_json(target, {"profit": 2.0})
    assert json.loads(target.read_text()) == {"profit": 1.0} and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_full_disk_during_a_command_or_a_checkpoint_exits_2_naming_the_file_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    import errno
    import os

    from stable_baselines3.common.base_class import BaseAlgorithm

    from launchsim import files
    from launchsim.cli import main

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "checkpoints/tmp_step_000000064.zip")

    out = tmp_path / "sim.csv"
    with monkeypatch.context() as patch:
        patch.setattr(files.os, "fsync", full)
        assert main(["simulate", "--scenario", "food_coffee_bundle", "--policy", "launch_now", "--episodes", "1", "--csv", str(out)]) == 2
    assert "sim.csv: cannot write: No space left on device" in capsys.readouterr().err and not out.exists()

    run = tmp_path / "run"
    train = ["train", "--scenario", "food_coffee_bundle", "--market", "structural", "--steps", "128", "--n-envs", "2",
             "--checkpoint-every", "64", "--eval-episodes", "2", "--evaluation", "quick", "--out", str(run)]  # fmt: skip
    with monkeypatch.context() as patch:
        patch.setattr(BaseAlgorithm, "save", full)
        assert main(train) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert main(["train", "--resume", str(run)]) == 0 and (run / "evaluation.json").exists()
