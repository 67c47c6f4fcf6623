"""A scenario without a truth block (a seller's own product): every command that can run on the learned
market does, what needs the truth exits 2 naming the file, and every figure names its market."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from launchsim.cli import main
from launchsim.scenarios import list_scenarios, load_scenario

TINY_SEARCH = {"starts": 1, "kicks": 0, "max_sweeps": 1, "warm_starts": False}
TINY_PPO = {"n_steps": 16, "batch_size": 32, "n_epochs": 1}


def truth_free_copy(shipped: Path, folder: Path) -> Path:
    data = yaml.safe_load(shipped.read_text())
    del data["truth"]
    data["name"] = f"{data['name']}_own"
    path = folder / f"{shipped.stem}_own.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(params=list_scenarios(), ids=[p.stem for p in list_scenarios()])
def own(request, tmp_path) -> Path:
    return truth_free_copy(request.param, tmp_path)


def test_what_needs_the_truth_exits_2_naming_the_file(own, tmp_path, capsys):
    assert load_scenario(own).truth is None
    needs = [
        ["simulate", "--scenario", str(own), "--market", "structural"],
        ["train", "--scenario", str(own), "--market", "structural", "--steps", "64", "--out", str(tmp_path / "run")],
        ["evaluate", "--scenario", str(own), "--policy", "list_price", "--no-learned", "--json", str(tmp_path / "e.json")],
        ["evaluate", "--scenario", str(own), "--policy", "oracle", "--json", str(tmp_path / "e.json")],
        ["replay", "--scenario", str(own), "--markets", "structural", "--versus", "launch_now", "--out", str(tmp_path / "r")],
        ["sensitivity", "--scenario", str(own), "--markets", "structural", "--out", str(tmp_path / "s")],
    ]
    for argv in needs:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"error: {own}: truth: missing;" in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "run").exists() and not (tmp_path / "e.json").exists()


def test_a_truth_free_scenario_runs_every_command_in_the_learned_market(own, tmp_path, capsys):
    from launchsim.agents.evaluation.evaluate import evaluate, markdown_table
    from launchsim.agents.evaluation.replay import replay
    from launchsim.agents.evaluation.sensitivity import plan_sensitivity
    from launchsim.agents.policies.source import build_policy
    from launchsim.agents.run_folder import TrainConfig
    from launchsim.agents.tables import export_table
    from launchsim.agents.policies.table import read_table
    from launchsim.agents.training.runs import train
    from launchsim.models.learned_market import load_shared

    scenario, market = load_scenario(own), load_shared()
    assert main(["simulate", "--scenario", str(own), "--policy", "launch_now"]) == 0
    out = capsys.readouterr()
    assert f"skipped: structural market: {own} has no truth block" in out.err and "learned market" in out.out

    run = train(TrainConfig(
        scenarios=[str(own)], algo="ppo", steps=32, n_envs=2, seed=0, out=tmp_path / "run", hyperparams=TINY_PPO,
        eval_episodes=1, evaluation="quick", eval_every=0,
    ), progress=False)  # fmt: skip
    assert json.loads((run / "evaluation.json").read_text())["markets"][0]["training_market"]["market"] == "learned"

    result = evaluate(scenario, str(run), episodes=2, predictor=market, heuristics=True, search=TINY_SEARCH)
    assert result["judged_in"] == "learned" and "truth" not in result and "oracle" not in result
    assert result["learned"]["market"] == result["learned_oracle"]["market"] == "learned"
    assert all(h["market"] == "learned" for h in result["heuristics"].values())
    plan = result["learned_oracle"]["profit_mean"]
    assert result["regret_to_learned_oracle"] == pytest.approx(plan - result["learned"]["profit_mean"])
    assert result["ratio_to_learned_oracle"] == (pytest.approx(result["learned"]["profit_mean"] / plan) if plan > 0 else None)
    assert result["skipped"] == [f"structural market, ground-truth oracle and sim-to-real gap: {own} has no truth block"]
    assert "judged in the learned market" in markdown_table(result) and "(structural market)" not in markdown_table(result)

    replayed = replay(scenario, "list_price", versus="launch_now", episodes=1, predictor=market)
    assert list(replayed.summary["markets"]) == ["learned"] and replayed.summary["skipped"]
    assert np.isfinite(replayed.summary["markets"]["learned"]["profit"]["delta_mean"])

    policy = build_policy("list_price", scenario, 0)
    weekly_plan, rows = plan_sensitivity(scenario, policy, 0, lever="price", predictor=market)
    assert set(rows["market"]) <= {"learned"} and len(weekly_plan) == scenario.n_steps

    table = export_table(policy, scenario, 0, out=tmp_path / "table.csv", context_episodes=1, fidelity_episodes=1, response_model=market)
    _, meta = read_table(table)
    assert meta["fidelity"]["market"] == "learned" and meta["fidelity"]["predictor"] == market.identity


def test_the_worked_example_is_a_truth_free_product_a_units_only_predictor_can_plan():
    example = load_scenario(Path(__file__).resolve().parents[2] / "docs" / "examples" / "own_gift_product.yaml")
    assert example.truth is None and example.ads.budget == 0 and example.catalogue == []
    assert all(p.market_estimate is None for p in example.products)
