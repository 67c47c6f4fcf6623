"""resolve_policy: names, oracle, run folders and tables dispatch to their loaders; bad specs fail clearly."""

from __future__ import annotations


import numpy as np
import pytest

from launchsim.agents.policies.heuristics import HeuristicPolicy
from launchsim.agents.policies.oracle import OraclePolicy
from launchsim.agents.policies import source
from launchsim.agents.policies.source import check_policy_spec, policy_names, resolve_policy
from launchsim.errors import LaunchSimError, PolicyError
from launchsim.scenarios import load_scenario


@pytest.fixture(scope="module")
def sneaker():
    return load_scenario("apparel_sneaker_drop")


def test_names_resolve_to_heuristics_and_the_oracle(sneaker):
    assert "oracle" in policy_names() and "list_price" in policy_names()
    policy = resolve_policy("list_price", sneaker, seed=3)
    assert isinstance(policy, HeuristicPolicy) and policy.name == "list_price"
    oracle = resolve_policy("oracle", sneaker)
    assert isinstance(oracle, OraclePolicy) and len(oracle.plan.decisions) == sneaker.n_steps


def test_unknown_name_suggests_the_closest(sneaker):
    with pytest.raises(PolicyError, match="did you mean 'list_price'"):
        resolve_policy("list_prise", sneaker)
    with pytest.raises(PolicyError, match="did you mean 'oracle'"):
        check_policy_spec("oracel")


def test_missing_table_and_non_policy_file(sneaker, tmp_path):
    with pytest.raises(PolicyError, match="no such lookup-table file"):
        resolve_policy(str(tmp_path / "missing.parquet"), sneaker)
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(PolicyError, match="not a policy"):
        resolve_policy(str(other), sneaker)


def test_folder_that_is_no_run_fails_clearly(sneaker, tmp_path):
    with pytest.raises(LaunchSimError, match=str(tmp_path.name)):
        resolve_policy(str(tmp_path), sneaker)


def test_run_folder_and_table_dispatch(sneaker, tmp_path, monkeypatch):
    calls = []

    class FakeTable:
        @classmethod
        def load(cls, path, scenario=None, product=0):
            calls.append(("table", path.name, scenario.name, product))
            return cls()

        def predict(self, observation, state=None, episode_start=None, deterministic=True):
            return np.zeros(5, dtype=np.int64), state

    def load_trained_policy(run_dir, scenario, product=0, predictor=None):
        calls.append(("run", run_dir.name, scenario.name, product, predictor))
        return FakeTable()

    monkeypatch.setattr(source, "TablePolicy", FakeTable)
    monkeypatch.setattr(source, "load_trained_policy", load_trained_policy)
    table = tmp_path / "table.csv"
    table.write_text("week\n0\n")
    run = tmp_path / "run"
    run.mkdir()
    cookware = load_scenario("home_cookware_line")
    resolve_policy(str(table), cookware, product="cast_iron_skillet")
    resolve_policy(run, cookware, product=1, predictor="p")
    assert calls == [("table", "table.csv", cookware.name, 1), ("run", "run", cookware.name, 1, "p")]
