"""Sweeps: the sweep file and its trial list, and sweeps on a local Ray instance (one per module):
a real 2 scenarios x 2 seeds sweep, a killed worker, failing trials and re-runs that skip."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from launchsim.agents.sweep.run import SweepResult, evaluation_metrics, require_ray, run_sweep
from launchsim.agents.sweep.config import SWEEP_DIR, Distribution, SweepConfig, expand_trials, load_sweep
from launchsim.errors import ScenarioError, SweepError

# A real training run small enough for a test: 64 steps of PPO in the structural market.
TINY_PPO = {"n_steps": 32, "batch_size": 64, "n_epochs": 1}


def tiny_config(**changes) -> SweepConfig:
    fields = dict(
        name="tiny", scenarios=["apparel_sneaker_drop", "beauty_gift_set_holiday_bundle"], algorithms=["ppo"], seeds=[0, 1],
        steps=[64], market="structural", n_envs=2, eval_episodes=2, search={"ppo": TINY_PPO}, max_retries=1,
    )  # fmt: skip
    return SweepConfig(**{**fields, **changes})


# ---------------------------------------------------------------- the sweep file


def test_example_sweep_loads_and_expands_to_a_stable_trial_list():
    config, path = load_sweep("example")
    assert path == SWEEP_DIR / "example.yaml"
    trials = expand_trials(config, path.parent)
    # 2 scenarios x 2 algorithms x 2 samples x 1 budget x 2 seeds
    assert len(trials) == 16 and len({t.trial_id for t in trials}) == 16
    assert [t.trial_id for t in expand_trials(config, path.parent)] == [t.trial_id for t in trials]
    ppo = [t.hyperparams for t in trials if t.algorithm == "ppo"]
    assert all(1e-4 <= h["learning_rate"] <= 1e-3 and 0 <= h["ent_coef"] <= 0.02 and h["n_steps"] in (64, 128) for h in ppo)
    assert len({json.dumps(h, sort_keys=True) for h in ppo}) == 2  # two samples, shared by seeds and scenarios


@pytest.mark.parametrize("path", sorted(SWEEP_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_sweep_loads_and_expands(path):
    config, found = load_sweep(path)
    trials = expand_trials(config, found.parent)
    assert trials and len({t.trial_id for t in trials}) == len(trials)
    from launchsim.agents.run_folder import default_demand_spread

    spread = default_demand_spread(config.market) if config.demand_spread is None else config.demand_spread
    assert all(t.demand_spread == spread for t in trials)


def test_trial_ids_follow_the_settings_and_ignore_unrelated_entries():
    base = {t.trial_id for t in expand_trials(tiny_config())}
    assert {t.trial_id for t in expand_trials(tiny_config(scenarios=["apparel_sneaker_drop", "beauty_gift_set_holiday_bundle", "home_cookware_line"]))} > base
    assert not {t.trial_id for t in expand_trials(tiny_config(steps=[128]))} & base
    assert not {t.trial_id for t in expand_trials(tiny_config(search={"ppo": {**TINY_PPO, "n_epochs": 2}}))} & base


def test_trial_ids_change_with_the_env_dynamics_version(monkeypatch):
    # A new env version changes what a trial measures: its trials must re-run, not be skipped as done.
    import launchsim.envs.launch_market

    base = {t.trial_id for t in expand_trials(tiny_config())}
    monkeypatch.setattr(launchsim.envs.launch_market, "ENV_VERSION", launchsim.envs.launch_market.ENV_VERSION + 1)
    assert not {t.trial_id for t in expand_trials(tiny_config())} & base


def test_trial_ids_follow_the_hyperparameters_the_run_will_use(monkeypatch, tmp_path):
    # New shipped defaults change what a trial trains: its trials must re-run, not be skipped as done;
    # an override equal to the shipped value is the same run.
    import launchsim.agents.sb3.algorithms

    base = {t.trial_id for t in expand_trials(tiny_config())}
    shipped = yaml.safe_load(launchsim.agents.sb3.algorithms.HYPERPARAMS_FILE.read_text())
    same = tiny_config(search={"ppo": {**TINY_PPO, "gae_lambda": shipped["ppo"]["gae_lambda"]}})
    assert {t.trial_id for t in expand_trials(same)} == base
    shipped["ppo"]["gae_lambda"] = 0.5
    (tmp_path / "hyperparams.yaml").write_text(yaml.safe_dump(shipped))
    monkeypatch.setattr(launchsim.agents.sb3.algorithms, "HYPERPARAMS_FILE", tmp_path / "hyperparams.yaml")
    assert not {t.trial_id for t in expand_trials(tiny_config())} & base


def test_demand_spread_enters_trial_ids_unless_zero_and_defaults_as_train_does():
    off = {t.trial_id for t in expand_trials(tiny_config(demand_spread=0.0))}
    spread = expand_trials(tiny_config(demand_spread=0.3))
    assert not {t.trial_id for t in spread} & off and {t.demand_spread for t in spread} == {0.3}
    # Unset, a learned-market sweep trains with train's default; a structural one without randomising.
    assert {t.demand_spread for t in expand_trials(tiny_config(market="learned"))} == {0.34}
    assert {t.trial_id for t in expand_trials(tiny_config(market="structural"))} == off


def test_outcomes_enter_trial_ids_and_unset_is_trains_default():
    unset = expand_trials(tiny_config())
    assert {t.outcomes for t in unset} == {"expected"}  # train's default (DEFAULT_TRAINING_OUTCOMES)
    assert {t.trial_id for t in expand_trials(tiny_config(outcomes="expected"))} == {t.trial_id for t in unset}
    sampled = expand_trials(tiny_config(outcomes="sampled"))
    assert not {t.trial_id for t in sampled} & {t.trial_id for t in unset} and {t.outcomes for t in sampled} == {"sampled"}


def test_search_space_draws_are_seeded_and_inside_their_bounds():
    space = {"lr": {"loguniform": [1e-5, 1e-2]}, "clip": {"uniform": [0.1, 0.3]}, "arch": {"choice": ["small", "large"]}}
    draws = lambda seed: expand_trials(tiny_config(search={"ppo": space}, samples=5, search_seed=seed, seeds=[0]))  # noqa: E731
    first, again, other = draws(0), draws(0), draws(1)
    assert [t.hyperparams for t in first] == [t.hyperparams for t in again]
    assert [t.hyperparams for t in first] != [t.hyperparams for t in other]
    for t in first:
        assert 1e-5 <= t.hyperparams["lr"] <= 1e-2 and 0.1 <= t.hyperparams["clip"] <= 0.3 and t.hyperparams["arch"] in ("small", "large")
    assert len(first) == 10  # 5 samples x 2 scenarios x 1 seed


def test_sweep_file_errors_are_one_line_each(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "scenarios": ["food_cofee_bundle"], "algorithms": ["ppoo"], "steps": 100, "seed": [1],
        "search": {"ppo": {"lr": {"uniform": [1e-3, 1e-4]}, "gamma": {"normal": 0.9}}}, "resources": {"gpus": 1},
    }))  # fmt: skip
    with pytest.raises(SweepError) as err:
        load_sweep(bad)
    lines = str(err.value).splitlines()
    assert f"{bad}: seed: unknown key; did you mean 'seeds'?" in lines[-1] or any(
        line.startswith(f"{bad}: seed: unknown key; did you mean 'seeds'?") for line in lines
    )
    assert any(line.startswith(f"{bad}: search.ppo.lr: found bounds [0.001, 0.0001]") for line in lines)
    assert any(line.startswith(f"{bad}: search.ppo.gamma.normal: unknown key") for line in lines)
    assert any(line.startswith(f"{bad}: resources.gpus: unknown key") for line in lines)
    bad.write_text(yaml.safe_dump({"scenarios": ["food_cofee_bundle"], "algorithms": ["ppoo"], "steps": 100}))
    with pytest.raises(SweepError, match=r"scenarios\.0: food_cofee_bundle: no such scenario.*did you mean food_coffee_bundle"):
        load_sweep(bad)
    with pytest.raises(SweepError, match=r"algorithms\.0: unknown algorithm 'ppoo'; did you mean 'ppo'\?"):
        load_sweep(bad)
    with pytest.raises(SweepError, match="no such sweep file or shipped sweep name; did you mean example"):
        load_sweep("exampel")


def test_predictor_path_is_checked_and_made_absolute_for_the_workers(tmp_path):
    sweep = tmp_path / "sweeps" / "s.yaml"
    sweep.parent.mkdir()
    sweep.write_text(yaml.safe_dump({"scenarios": ["food_coffee_bundle"], "algorithms": ["ppo"], "steps": [64], "predictor": "ens"}))
    with pytest.raises(SweepError, match="predictor: ens: found no predictor or ensemble folder"):
        load_sweep(sweep)
    (tmp_path / "sweeps" / "ens").mkdir()
    (tmp_path / "sweeps" / "ens" / "card.json").write_text("{}")  # beside the sweep file: taken from there
    config, path = load_sweep(sweep)
    (trial,) = expand_trials(config, path.parent)
    assert trial.predictor == str((tmp_path / "sweeps" / "ens").resolve()) and trial.predictor_identity
    # Trials are keyed by the predictor's content, not its path: the same folder by another path is the
    # same trial, another predictor is another trial.
    same = expand_trials(config.model_copy(update={"predictor": trial.predictor}), None)[0]
    assert same.trial_id == trial.trial_id
    (tmp_path / "sweeps" / "ens" / "heads.safetensors").write_bytes(b"other weights")
    assert expand_trials(config, path.parent)[0].trial_id != trial.trial_id


def test_a_start_end_mapping_is_a_fixed_schedule_not_a_search_space():
    schedule = {"start": 3e-4, "end": 0.0}
    trials = expand_trials(tiny_config(search={"ppo": {**TINY_PPO, "learning_rate": schedule}}))
    assert all(t.hyperparams["learning_rate"] == schedule for t in trials)
    plain = expand_trials(tiny_config())
    assert {t.trial_id for t in trials}.isdisjoint(t.trial_id for t in plain)
    with pytest.raises(ValueError, match=r"learning_rate\.schedule\.end\n  Field required"):
        tiny_config(search={"ppo": {"learning_rate": {"start": 3e-4}}})


def test_schedules_a_trial_would_reject_fail_the_sweep_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "scenarios": ["food_coffee_bundle"], "algorithms": ["ppo", "sac"], "steps": 100,
        "search": {"ppo": {"gamma": {"start": 1.0, "end": 0.9}}, "sac": {"ent_coef": {"start": 0.1, "end": 0.0}}},
    }))  # fmt: skip
    with pytest.raises(SweepError) as err:
        load_sweep(bad)
    lines = str(err.value).splitlines()
    assert any(line.startswith(f"{bad}: search.ppo: hyperparameter gamma: a schedule is a mapping") for line in lines)
    assert any(line.startswith(f"{bad}: search.sac: sac: ent_coef takes a schedule only in on-policy") for line in lines)


def test_distribution_needs_exactly_one_kind():
    with pytest.raises(ValueError, match="expected exactly one of choice, uniform, loguniform"):
        Distribution(choice=[1], uniform=(0, 1))
    with pytest.raises(ValueError):
        Distribution(loguniform=(0, 1))  # log of 0


def test_without_ray_the_sweep_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(SweepError, match=r'pip install "launchsim\[ray\]"'):
        require_ray()


def test_evaluation_metrics_of_one_and_two_products():
    market = lambda truth, oracle, learned, gap: {  # noqa: E731
        "truth": {"profit_mean": truth, "profit_ci95": [truth - 3, truth + 3]}, "oracle": {"profit_mean": oracle},
        "learned": {"profit_mean": learned}, "ratio_to_oracle": truth / oracle, "sim_to_real_gap": gap,
    }  # fmt: skip
    one = evaluation_metrics({"markets": [market(50.0, 100.0, 60.0, 0.2)]})
    assert one["truth_profit"] == 50 and one["ratio_to_oracle"] == 0.5 and one["truth_profit_ci95"] == 3
    two = evaluation_metrics({"markets": [market(50.0, 100.0, 60.0, 0.2), market(30.0, 60.0, 30.0, 0.0)]})
    assert two["truth_profit"] == 80 and two["oracle_profit"] == 160 and two["ratio_to_oracle"] == 0.5
    assert two["sim_to_real_gap"] == pytest.approx(0.1) and two["truth_profit_ci95"] == pytest.approx(math.sqrt(18))
    assert math.isnan(evaluation_metrics({"markets": [{"training_market": {"profit_mean": 1.0}}]})["truth_profit"])


# ---------------------------------------------------------------- on Ray


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module (start-up takes seconds); sweeps reuse it."""
    pytest.importorskip("ray")
    import ray.cloudpickle

    from launchsim.agents.sweep.run import ray_runtime

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the trial functions below
    with ray_runtime(num_cpus=2) as runtime:
        warm = runtime.remote(_import_project)
        runtime.get([warm.remote() for _ in range(2)])  # two warm workers, so timings below are the trials'
        yield runtime


def _import_project() -> None:
    import launchsim.agents.sweep.run  # noqa: F401


def sleep_and_report(spec, run_dir: Path) -> dict:
    started = time.time()
    time.sleep(2.0)  # long enough that two trials given two warm workers overlap even on a loaded machine
    return {"truth_profit": float(spec.seed), "started": started, "ended": time.time()}


@pytest.mark.parametrize("max_concurrent, overlapping", [(1, False), (2, True)], ids=["one-at-a-time", "two-at-once"])
def test_max_concurrent_caps_the_trials_in_flight(ray_local, tmp_path, max_concurrent, overlapping):
    config = tiny_config(scenarios=["food_coffee_bundle"], seeds=[0, 1])
    result = run_sweep(config, tmp_path / "sweep", trial_fn=sleep_and_report, max_concurrent=max_concurrent, progress=False)
    assert isinstance(result, SweepResult) and result.failed == 0
    records = [json.loads(p.read_text())["metrics"] for p in sorted((tmp_path / "sweep" / "trials").glob("*.json"))]
    (a, b) = sorted(records, key=lambda r: r["started"])
    assert (b["started"] < a["ended"]) == overlapping


def test_small_sweep_on_ray_trains_evaluates_and_merges_the_table(ray_local, tmp_path):
    config = tiny_config()
    result = run_sweep(config, tmp_path / "sweep", progress=False)
    table = result.table
    assert (result.ran, result.skipped, result.failed) == (4, 0, 0)
    assert sorted(zip(table["scenario"], table["seed"])) == [
        ("apparel_sneaker_drop", 0), ("apparel_sneaker_drop", 1),
        ("beauty_gift_set_holiday_bundle", 0), ("beauty_gift_set_holiday_bundle", 1),
    ]  # fmt: skip
    assert (table["status"] == "ok").all() and (table["attempts"] == 1).all() and (table["wall_s"] > 0).all()
    for row in table.itertuples():
        run_dir = Path(row.run_dir)
        assert (run_dir / "model.zip").exists() and (run_dir / "config.yml").exists()
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
        assert row.truth_profit == pytest.approx(evaluation_metrics(evaluation)["truth_profit"], nan_ok=True)
    if table["truth_profit"].notna().all():  # with agents.evaluation present: the ground-truth figures
        assert table["ratio_to_oracle"].notna().all() and table["oracle_profit"].notna().all()
        best = result.best.set_index("scenario")["truth_profit"]
        assert best.to_dict() == table.groupby("scenario")["truth_profit"].max().to_dict()
    on_disk = pd.read_parquet(tmp_path / "sweep" / "results.parquet")
    assert list(on_disk["trial"]) == list(table["trial"])
    markdown = (tmp_path / "sweep" / "results.md").read_text()
    assert "## Best run per scenario" in markdown and all(t in markdown for t in table["trial"])

    again = run_sweep(config, tmp_path / "sweep", progress=False)  # every trial completed: nothing runs
    assert (again.ran, again.skipped) == (0, 4)
    pd.testing.assert_frame_equal(again.table, table)


def kill_first_attempt_then_train(spec, run_dir: Path) -> dict:
    """Kills its own worker process on the first attempt of seed 1 (a real SIGKILL), then trains for real."""
    from launchsim.agents.sweep.run import train_and_evaluate

    marker = run_dir.parent.parent / f"killed-{spec.trial_id}"
    if spec.seed == 1 and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return train_and_evaluate(spec, run_dir)


def test_a_killed_worker_is_retried_and_the_sweep_completes(ray_local, tmp_path):
    config = tiny_config(scenarios=["apparel_sneaker_drop"])
    result = run_sweep(config, tmp_path / "sweep", trial_fn=kill_first_attempt_then_train, progress=False)
    table = result.table.set_index("seed")
    assert (table["status"] == "ok").all()
    assert table.loc[0, "attempts"] == 1 and table.loc[1, "attempts"] == 2
    assert "WorkerCrashedError" in table.loc[1, "error"] and table.loc[0, "error"] == ""
    assert (Path(table.loc[1, "run_dir"]) / "evaluation.json").exists()


def fail_or_report(spec, run_dir: Path) -> dict:
    """Seed 0 succeeds; seed 1 always raises; seed 2 raises a user error (not worth retrying);
    seed 3 is killed on every attempt."""
    if spec.seed == 1:
        raise RuntimeError("diverged")
    if spec.seed == 2:
        raise ScenarioError(["bad.yaml: products: found nothing"])
    if spec.seed == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"truth_profit": 1000.0 + spec.seed, "ratio_to_oracle": 0.5}


def test_failing_trials_are_retried_a_bounded_number_of_times_then_recorded(ray_local, tmp_path):
    config = tiny_config(scenarios=["food_coffee_bundle"], seeds=[0, 1, 2, 3], max_retries=1)
    result = run_sweep(config, tmp_path / "sweep", trial_fn=fail_or_report, progress=False)
    table = result.table.set_index("seed")
    assert list(table["status"]) == ["ok", "failed", "failed", "failed"] and result.failed == 3
    assert list(table["attempts"]) == [1, 2, 1, 2]  # 1 + max_retries, except the user error
    assert table.loc[1, "error"].count("RuntimeError: diverged") == 2
    assert table.loc[2, "error"] == "attempt 1: ScenarioError: bad.yaml: products: found nothing"
    assert table.loc[3, "error"].count("WorkerCrashedError") == 2
    assert result.best["truth_profit"].tolist() == [1000.0]
    assert "## Failed trials" in (tmp_path / "sweep" / "results.md").read_text()

    # A re-run skips the completed trial and runs the failed ones again (here they now succeed).
    again = run_sweep(config, tmp_path / "sweep", trial_fn=sleep_and_report, progress=False)
    assert (again.ran, again.skipped, again.failed) == (3, 1, 0)
    assert list(again.table.set_index("seed")["truth_profit"]) == [1000.0, 1.0, 2.0, 3.0]
