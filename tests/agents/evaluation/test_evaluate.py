"""evaluate and write_report: the contract's keys, honest statistics, determinism, the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from launchsim.agents.evaluation.evaluate import evaluate, markdown_table, summarise, write_report
from launchsim.agents.policies.heuristics import HEURISTICS
from launchsim.models.structural_market import StructuralMarket
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides


@pytest.fixture(scope="module")
def sneaker():
    return load_scenario("apparel_sneaker_drop")


@pytest.fixture(scope="module")
def result(sneaker):
    # The structural market stands in for the learned one: same market, same seeds, so no gap.
    return evaluate(sneaker, "list_price", episodes=4, seed=7, predictor=StructuralMarket(sneaker))


def test_result_has_the_contract_keys(result):
    for market in ("truth", "learned", "oracle"):
        for key in ("profit_mean", "profit_ci95", "revenue", "units", "ad_spend", "stock_left", "launch_week", "mean_price"):
            assert key in result[market], (market, key)
    assert set(result["heuristics"]) == set(HEURISTICS)
    assert result["seeds"] == [7, 8, 9, 10]
    assert result["ratio_to_oracle"] == pytest.approx(result["truth"]["profit_mean"] / result["oracle"]["profit_mean"])
    assert result["sim_to_real_gap"] == pytest.approx(0.0, abs=1e-12)
    assert result["learned"]["profit_mean"] == pytest.approx(result["truth"]["profit_mean"])
    low, high = result["truth"]["profit_ci95"]
    assert low < result["truth"]["profit_mean"] < high
    json.dumps(result, allow_nan=False)  # strict JSON


def test_policy_equals_its_heuristic_row_and_oracle_wins(result):
    assert result["heuristics"]["list_price"]["profit_mean"] == pytest.approx(result["truth"]["profit_mean"])
    best = result["best_heuristic"]
    assert best["profit_mean"] == max(h["profit_mean"] for h in result["heuristics"].values())
    assert result["oracle"]["profit_mean"] > best["profit_mean"]
    assert result["oracle"]["expected_profit"] > 0


def test_same_seed_same_result(sneaker, result):
    np.random.seed(123)  # global NumPy state must not matter
    again = evaluate(sneaker, "list_price", episodes=4, seed=7, predictor=StructuralMarket(sneaker))
    first = json.loads(json.dumps(result))  # a copy: the fixture is shared
    for r in (first, again):
        r["oracle"].pop("plan_seconds"), r["oracle"].pop("plan_cpu_seconds")  # timings may differ
    assert again == first


def test_oracle_as_the_policy_has_ratio_one(sneaker):
    r = evaluate(sneaker, "oracle", episodes=2, heuristics=False, learned=False)
    assert r["ratio_to_oracle"] == pytest.approx(1.0)
    assert "learned" not in r and "heuristics" not in r


def test_summarise_uses_a_t_interval():
    profits = [10.0, 12.0, 15.0, 9.0]
    rest = {"revenue": 1.0, "units_sold": 2.0, "ad_spend": 0.0, "stock_left": 0.0, "launch_week": float("nan"), "mean_price": 3.0}
    summary = summarise([{"profit": p, **rest} for p in profits])
    half = stats.t.ppf(0.975, 3) * np.std(profits, ddof=1) / 2.0
    assert summary["profit_ci95"] == pytest.approx([np.mean(profits) - half, np.mean(profits) + half])
    assert summary["launch_week"] is None and summary["units"] == 2.0


def test_write_report(result, tmp_path):
    paths = write_report(result, tmp_path / "report")
    text = paths["markdown"].read_text()
    assert "| list_price (structural market) |" in text and "| oracle (structural market) |" in text
    assert "sim_to_real_gap" in text and markdown_table(result) in text
    assert paths["png"].stat().st_size > 10_000


def test_overrides_change_the_judged_scenario_once_and_are_recorded(sneaker, result):
    # The learned market stays the unchanged sneaker's, so its profit is the unchanged truth's; the
    # ground truth is the changed scenario, applied once (as apply_overrides gives it).
    changes = ["truth.products.retro_court_sneaker.market_size=*0.5"]
    changed = evaluate(sneaker, "list_price", episodes=4, seed=7, predictor=StructuralMarket(sneaker), heuristics=False, overrides=changes)
    direct = evaluate(apply_overrides(sneaker, changes), "list_price", episodes=4, seed=7, heuristics=False, learned=False)
    assert changed["overrides"] == changes and "overrides" not in result
    assert changed["truth"] == direct["truth"]
    assert changed["learned"]["profit_mean"] == pytest.approx(result["truth"]["profit_mean"])
    assert changed["truth"]["profit_mean"] < result["truth"]["profit_mean"]
    truth, learned = changed["truth"]["profit_mean"], changed["learned"]["profit_mean"]
    assert changed["sim_to_real_gap"] == pytest.approx((learned - truth) / truth) and changed["sim_to_real_gap"] > 0
