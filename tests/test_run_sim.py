"""One subprocess smoke test per CLI command, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run_sim.py"), *args], capture_output=True, text=True, cwd=ROOT)


def test_validate_command():
    result = run("validate", *sorted(str(p) for p in (ROOT / "scenarios").glob("*.yaml")))
    assert result.returncode == 0, result.stderr
    assert "ok: " in result.stdout


def test_validate_bad_file_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [\n")
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith(f"error: {bad}:")


def test_simulate_command(tmp_path):
    out = tmp_path / "weekly.csv"
    result = run("simulate", "--scenario", "food_coffee_bundle", "--policy", "bundle_first", "--episodes", "2", "--csv", str(out))
    assert result.returncode == 0, result.stderr
    assert "total profit" in result.stdout and "mean profit over 2 episodes" in result.stdout
    weekly = pd.read_csv(out)
    assert len(weekly) == 24 and (weekly["bundle_partner"] == "ceramic_dripper").all()


def test_simulate_unknown_policy_exits_2():
    result = run("simulate", "--policy", "list_prise")
    assert result.returncode == 2 and "did you mean 'list_price'" in result.stderr


def test_bench_command(tmp_path):
    out = tmp_path / "bench.json"
    result = run("bench", "--steps", "300", "--repeats", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["single_env"]["launch_market_structural_raw"]["steps_per_s"] > 0
    assert data["single_env"]["cartpole_v1_raw"]["steps_per_s"] > 0
    assert data["ratio_launch_market_to_cartpole_raw"] > 0
