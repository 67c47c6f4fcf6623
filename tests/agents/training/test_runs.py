"""Training runs: the algorithm registry, run folders, checkpoints and resume after a kill,
determinism, and trained policies acting in native single envs (including an unseen scenario)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from launchsim.agents.sb3.algorithms import (
    ALGORITHMS,
    FlattenedActions,
    flatten_action,
    get_algorithm,
    resolve_hyperparams,
    unflatten_action,
)
from launchsim.agents.rollout import run_episode
from launchsim.agents.policies.trained import load_trained_policy
from launchsim.agents.run_folder import TrainConfig, default_run_dir, hyperparams_from_file, latest_checkpoint
from launchsim.agents.training.runs import resume, train
from launchsim.envs.dynamics import ObservedMasks
from launchsim.envs.launch_market import ENV_VERSION, LaunchMarketEnv
from launchsim.errors import TrainingError
from launchsim.scenarios import list_scenarios, load_scenario

ROOT = Path(__file__).resolve().parents[3]
# Tiny budgets: a rollout of 32 steps per env, small replay buffers that start learning at once.
TINY = {
    "ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 2},
    "maskable_ppo": {"n_steps": 32, "batch_size": 64, "n_epochs": 2},
    "a2c": {"n_steps": 8},
    "dqn": {"learning_starts": 32, "buffer_size": 1000, "batch_size": 32},
    "sac": {"learning_starts": 32, "buffer_size": 1000, "batch_size": 32},
    "td3": {"learning_starts": 32, "buffer_size": 1000, "batch_size": 32},
}


def tiny_config(out: Path, algo: str = "ppo", **kwargs) -> TrainConfig:
    settings = dict(
        scenarios=["food_coffee_bundle"], algo=algo, steps=128, market="structural", n_envs=2, seed=3, out=out,
        hyperparams=TINY[algo], eval_episodes=2, evaluation="quick", eval_every=64,
    )  # fmt: skip
    settings.update(kwargs)
    return TrainConfig(**settings)


def test_registry_names_every_algorithm_and_suggests_the_closest():
    assert set(ALGORITHMS) == {"ppo", "a2c", "dqn", "sac", "td3", "maskable_ppo"}
    assert get_algorithm("PPO").class_name == "PPO"
    with pytest.raises(TrainingError, match="did you mean 'maskable_ppo'"):
        get_algorithm("maskable_pp")
    with pytest.raises(TrainingError, match="did you mean 'ppo'"):
        get_algorithm("ppo2")


def test_hyperparameter_file_overrides_the_shipped_block(tmp_path):
    path = tmp_path / "hp.yaml"
    path.write_text("ppo:\n  n_steps: 64\n  policy_kwargs: {net_arch: [32]}\n")
    override = hyperparams_from_file(path, "ppo")
    merged = resolve_hyperparams("ppo", override)
    assert merged["n_steps"] == 64 and merged["policy_kwargs"]["net_arch"] == [32]
    assert merged["gamma"] == resolve_hyperparams("ppo")["gamma"]  # untouched keys keep the shipped value
    with pytest.raises(TrainingError, match="no block for algorithm 'sac'"):
        hyperparams_from_file(path, "sac")
    path.write_text("ppoo:\n  n_steps: 64\n")
    with pytest.raises(TrainingError, match="did you mean 'ppo'"):
        hyperparams_from_file(path, "ppo")


def test_linear_schedules_anneal_learning_rate_clip_range_and_entropy(tmp_path):
    from stable_baselines3 import PPO

    schedules = {"learning_rate": {"start": 1e-3, "end": 0.0}, "clip_range": {"start": 0.3, "end": 0.1}, "ent_coef": {"start": 0.05, "end": 0.01}}
    run = train(tiny_config(tmp_path / "run", hyperparams={**TINY["ppo"], **schedules}), progress=False)
    model = PPO.load(run / "model.zip", device="cpu")
    assert model.lr_schedule(1.0) == pytest.approx(1e-3) and model.lr_schedule(0.5) == pytest.approx(5e-4)
    assert model.lr_schedule(0.0) == 0.0 and model.clip_range(0.0) == pytest.approx(0.1)
    assert model.ent_coef == pytest.approx(0.01)  # the last update happens at the run's last step: the end value
    recorded = yaml.safe_load((run / "config.yml").read_text())["hyperparams"]
    assert recorded["ent_coef"] == {"start": 0.05, "end": 0.01}  # the run folder keeps the schedule as written


def test_schedules_are_checked_before_training(tmp_path):
    from launchsim.agents.sb3.algorithms import sb3_kwargs

    with pytest.raises(TrainingError, match="only learning_rate, clip_range, ent_coef take one"):
        sb3_kwargs({"gamma": {"start": 1.0, "end": 0.9}})
    with pytest.raises(TrainingError, match="a schedule is a mapping"):
        sb3_kwargs({"learning_rate": {"start": 1e-3}})
    with pytest.raises(TrainingError, match="must be numbers"):
        sb3_kwargs({"learning_rate": {"start": "fast", "end": 0.0}})
    with pytest.raises(TrainingError, match="on-policy"):  # SAC tunes its own entropy coefficient
        train(tiny_config(tmp_path / "sac", "sac", hyperparams={**TINY["sac"], "ent_coef": {"start": 0.1, "end": 0.0}}), progress=False)
    assert not (tmp_path / "sac" / "model.zip").exists()


def test_flattened_actions_round_trip():
    nvec = np.array([2, 6, 5, 5, 3])
    every = np.stack(np.meshgrid(*[np.arange(n) for n in nvec], indexing="ij"), axis=-1).reshape(-1, len(nvec))
    index = flatten_action(every, nvec)
    assert sorted(index.tolist()) == list(range(int(np.prod(nvec))))
    np.testing.assert_array_equal(unflatten_action(index, nvec), every)


@pytest.mark.parametrize("path", list_scenarios(), ids=[p.stem for p in list_scenarios()])
def test_masks_rebuilt_from_observations_match_the_env(path):
    scenario = load_scenario(path)
    env = LaunchMarketEnv(scenario)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=1)
    done = False
    while not done:
        masks = env.action_masks()
        np.testing.assert_array_equal(ObservedMasks(scenario, 0)(obs), masks)
        parts = np.split(masks, np.cumsum(env.layout.nvec)[:-1])
        action = [rng.choice(np.flatnonzero(m)) for m in parts]
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algorithm_trains_and_acts_in_the_native_env(tmp_path, algo):
    run = train(tiny_config(tmp_path / algo, algo, vec_kind="batched"), progress=False)
    for name in ("config.yml", "command.txt", "versions.json", "history.jsonl", "model.zip", "evaluation.json"):
        assert (run / name).is_file(), name
    assert (run / "scenarios" / "food_coffee_bundle.yaml").is_file()
    assert (run / "vecnormalize.json").is_file() and latest_checkpoint(run) is not None
    assert any((run / "tensorboard").rglob("events.out.tfevents.*"))
    config = yaml.safe_load((run / "config.yml").read_text())
    assert config["algorithm"] == algo and config["env"]["action_type"] == get_algorithm(algo).action_type
    assert config["env"]["kind"] == "batched"
    assert config["env"]["rollouts"] == ("device" if algo in ("ppo", "a2c", "maskable_ppo") else "vecenv")
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["evaluator"].startswith("quick") and np.isfinite(evaluation["markets"][0]["training_market"]["profit_mean"])

    scenario = load_scenario("food_coffee_bundle")
    policy = load_trained_policy(run, scenario)
    env = LaunchMarketEnv(scenario, action_type=get_algorithm(algo).action_type)
    obs, _ = env.reset(seed=0)
    action, _ = policy.predict(obs)
    assert env.action_space.contains(np.asarray(action, dtype=env.action_space.dtype))
    weekly = run_episode(env, policy, seed=0)
    assert len(weekly) == scenario.n_steps


def test_dqn_sees_one_discrete_action(tmp_path):
    from launchsim.envs.vector import make_market_vec_env

    venv = FlattenedActions(make_market_vec_env(load_scenario("food_coffee_bundle"), 2, market="structural", kind="dummy"))
    assert venv.action_space.n == int(np.prod(venv.nvec))
    venv.reset()
    _, rewards, _, _ = venv.step(np.array([0, venv.action_space.n - 1]))
    assert rewards.shape == (2,)


def test_same_seed_gives_the_same_run(tmp_path):
    first = train(tiny_config(tmp_path / "a"), progress=False)
    np.random.seed(12345)  # global NumPy state must not matter
    np.random.random(7)
    second = train(tiny_config(tmp_path / "b"), progress=False)
    assert json.loads((first / "evaluation.json").read_text()) == json.loads((second / "evaluation.json").read_text())
    scenario = load_scenario("food_coffee_bundle")
    env = LaunchMarketEnv(scenario)
    a = run_episode(env, load_trained_policy(first, scenario), seed=5)
    b = run_episode(env, load_trained_policy(second, scenario), seed=5)
    assert a.drop(columns="ignored").equals(b.drop(columns="ignored"))
    other = train(tiny_config(tmp_path / "c", seed=4), progress=False)
    pa = load_trained_policy(first, scenario).model.policy.state_dict()
    pc = load_trained_policy(other, scenario).model.policy.state_dict()
    assert any(not np.array_equal(pa[k].numpy(), pc[k].numpy()) for k in pa)


def test_demand_spread_and_outcomes_defaults_and_old_runs_keep_none(tmp_path):
    from launchsim.agents.run_folder import open_run
    from launchsim.models.learned_market import DEFAULT_MARKET_DEMAND_SPREAD

    assert TrainConfig(out=tmp_path).demand_spread == DEFAULT_MARKET_DEMAND_SPREAD == 0.34
    assert TrainConfig(out=tmp_path, market="structural").demand_spread == 0.0  # the truth needs no randomising
    assert TrainConfig(out=tmp_path, demand_spread=0).demand_spread == 0.0
    with pytest.raises(ValueError, match="demand_spread"):
        TrainConfig(out=tmp_path, demand_spread=-0.1)
    run = train(tiny_config(tmp_path / "run"), progress=False)
    document = yaml.safe_load((run / "config.yml").read_text())
    assert document["config"]["demand_spread"] == 0.0  # structural: resolved and recorded
    assert document["config"]["outcomes"] == "expected"  # train's default
    del document["config"]["demand_spread"], document["config"]["outcomes"]  # a learned-market run folder from before the options
    document["config"]["market"] = "learned"
    (run / "config.yml").write_text(yaml.safe_dump(document))
    opened = open_run(run)
    assert opened.config.demand_spread == 0.0  # it trained without randomisation; resume must too
    assert opened.config.outcomes == "sampled"  # and on sampled outcomes


def test_expected_outcomes_reach_the_training_envs(tmp_path):
    from launchsim.agents.sb3.algorithms import get_algorithm, resolve_hyperparams
    from launchsim.agents.training.runs import _make_env
    from launchsim.scenarios import load_scenario

    assert TrainConfig(out=tmp_path).outcomes == "expected"
    with pytest.raises(ValueError, match="outcomes"):
        TrainConfig(out=tmp_path, outcomes="mean")
    algorithm = get_algorithm("ppo")
    for outcomes in ("expected", "sampled"):
        config = tiny_config(tmp_path / outcomes, outcomes=outcomes, n_envs=2)
        venv = _make_env(config, algorithm, resolve_hyperparams("ppo"), [load_scenario("food_coffee_bundle")], None, seed=0, kind="dummy")
        assert venv.get_attr("outcomes") == [outcomes, outcomes]


def test_resuming_a_run_from_an_older_env_version_warns(tmp_path):
    run = train(tiny_config(tmp_path / "run"), progress=False)
    (run / "model.zip").unlink(), (run / "evaluation.json").unlink()  # as if killed mid-run
    document = yaml.safe_load((run / "config.yml").read_text())
    del document["env"]["version"]  # a run folder from env v1, which did not record it
    (run / "config.yml").write_text(yaml.safe_dump(document))
    with pytest.warns(UserWarning, match=f"trained so far in env v1; it continues in env v{ENV_VERSION}"):
        resume(run, progress=False)


def test_run_folder_is_not_overwritten_and_resume_needs_a_run(tmp_path):
    run = train(tiny_config(tmp_path / "run"), progress=False)
    with pytest.raises(TrainingError, match="already holds a run"):
        train(tiny_config(run), progress=False)
    with pytest.raises(TrainingError, match="has finished"):
        resume(run, progress=False)
    with pytest.raises(TrainingError, match="not a training run folder"):
        resume(tmp_path, progress=False)
    assert default_run_dir(["food_coffee_bundle"], "ppo", 3, root=tmp_path).name == "ppo_food_coffee_bundle_seed3"


def test_resume_continues_from_the_last_checkpoint_after_a_kill(tmp_path):
    hp = tmp_path / "hp.yaml"
    hp.write_text(yaml.safe_dump({"ppo": TINY["ppo"]}))
    run = tmp_path / "run"
    steps, rollout = 3000, 32 * 2
    command = [
        sys.executable, str(ROOT / "run_sim.py"), "train", "--scenario", "food_coffee_bundle", "--market", "structural",
        "--steps", str(steps), "--n-envs", "2", "--seed", "1", "--checkpoint-every", "128", "--hyperparams", str(hp),
        "--eval-episodes", "2", "--evaluation", "quick", "--demand-spread", "0.3", "--outcomes", "expected", "--out", str(run),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while latest_checkpoint(run) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"training ended before the kill: {process.stderr.read().decode()[-2000:]}"
    killed_at = latest_checkpoint(run)
    assert killed_at is not None and not (run / "model.zip").exists()
    _, _, step = killed_at

    result = subprocess.run(
        [sys.executable, str(ROOT / "run_sim.py"), "train", "--resume", str(run)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "evaluation" in result.stdout
    events = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    resumed = next(e for e in events if e["event"] == "resume")
    assert resumed["from_checkpoint"] == killed_at[0].name and resumed["steps_done"] == step
    after = [e["step"] for e in events[events.index(resumed) :] if e["event"] == "checkpoint"]
    assert after and min(after) > step  # it went on from there, not from scratch
    finish = events[-1]
    assert finish["event"] == "finish" and finish["steps"] == -(-steps // rollout) * rollout  # as an unbroken run
    assert len((run / "command.txt").read_text().splitlines()) == 2
    from launchsim.agents.run_folder import open_run

    opened = open_run(run)  # what resume built its envs from
    assert opened.config.demand_spread == 0.3 and opened.env["version"] == ENV_VERSION
    assert opened.config.outcomes == "expected"


def test_a_kill_before_the_first_checkpoint_leaves_a_folder_resume_completes(tmp_path):
    # kill -9 as soon as the run folder exists (no checkpoint is due before 100,000 steps): resume starts
    # the run again in the same folder and finishes it.
    hp = tmp_path / "hp.yaml"
    hp.write_text(yaml.safe_dump({"ppo": TINY["ppo"]}))
    run = tmp_path / "run"
    command = [
        sys.executable, str(ROOT / "run_sim.py"), "train", "--scenario", "food_coffee_bundle", "--market", "structural",
        "--steps", "2000", "--n-envs", "2", "--checkpoint-every", "100000", "--hyperparams", str(hp),
        "--eval-episodes", "2", "--evaluation", "quick", "--out", str(run),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (run / "config.yml").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, f"training ended before the kill: {process.stderr.read().decode()[-2000:]}"
    assert latest_checkpoint(run) is None and not (run / "model.zip").exists()
    result = subprocess.run([sys.executable, str(ROOT / "run_sim.py"), "train", "--resume", str(run)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line)["event"] for line in (run / "history.jsonl").read_text().splitlines()]
    assert "restart" in events and events[-1] == "finish" and (run / "evaluation.json").exists()


def test_multi_scenario_policy_runs_on_a_scenario_it_never_saw(tmp_path, tiny_bert, tiny_logs):
    from launchsim.models.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(encoder=str(tiny_bert), mode="frozen", head_epochs=1, hidden=16, latent=4, device="cpu")
    predictor_dir = finetune(tiny_logs[tiny_logs["split"] == "train"], cfg).save(tmp_path / "predictor")
    run = train(
        tiny_config(
            tmp_path / "multi", scenarios=["food_coffee_bundle", "apparel_sneaker_drop"], market="learned",
            predictor=str(predictor_dir), device="cpu",
        ),
        progress=False,
    )  # fmt: skip
    config = yaml.safe_load((run / "config.yml").read_text())
    assert config["env"]["product_features"] and config["env"]["critic_fields"] == 1  # PPO's shipped critic reads the draw
    assert config["env"]["observation_size"] == 25 + 4 + 1
    assert json.loads((run / "predictor.json").read_text())["path"] == str(Path(predictor_dir).resolve())
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert [m["scenario"] for m in evaluation["markets"]] == ["food_coffee_bundle", "apparel_sneaker_drop"]

    unseen = load_scenario("beauty_serum_flash_sale")
    policy = load_trained_policy(run, unseen)
    assert policy.traits is not None and policy.traits.shape == (4,)
    env = LaunchMarketEnv(unseen)
    obs, _ = env.reset(seed=0)
    for _ in range(unseen.n_steps):
        action, _ = policy.predict(obs)
        assert env.action_space.contains(np.asarray(action, dtype=np.int64))
        obs, _, terminated, _, _ = env.step(action)
    assert terminated


def test_resume_and_traits_follow_the_recorded_predictor_when_the_configured_folder_changes(tmp_path, tiny_ensemble_dirs):
    # What happens to runs trained on the default learned market when the default changes: the configured
    # predictor is now another one (here: the run's config is pointed at the other fit); the folder the
    # run recorded still holds its own. (Other folder names, not changed files: predictors load once per path.)
    import shutil

    from launchsim.agents.run_folder import open_run, run_predictor

    fit0, fit1, _ = tiny_ensemble_dirs
    market = tmp_path / "market"
    shutil.copytree(fit0, market)
    run = tmp_path / "run"
    config = tiny_config(
        run, scenarios=["food_coffee_bundle", "apparel_sneaker_drop"], market="learned", predictor=str(market), device="cpu",
        steps=64, evaluation="quick",
    )  # fmt: skip
    train(config, progress=False)
    recorded = json.loads((run / "predictor.json").read_text())
    assert recorded["identity"] == recorded["traits_identity"]  # a single fit gives its own traits
    before = load_trained_policy(run, "beauty_serum_flash_sale").traits

    document = yaml.safe_load((run / "config.yml").read_text())
    document["config"]["predictor"] = str(fit1)
    (run / "config.yml").write_text(yaml.safe_dump(document, sort_keys=False))
    assert run_predictor(open_run(run)).identity == recorded["identity"]  # the recorded folder, not the configured one
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # same traits as trained: no warning
        np.testing.assert_array_equal(load_trained_policy(run, "beauty_serum_flash_sale").traits, before)

    (run / "predictor.json").write_text(json.dumps({**recorded, "path": str(tmp_path / "gone")}))
    with pytest.raises(TrainingError, match="that folder no longer holds the recorded one"):
        run_predictor(open_run(run))
    with pytest.warns(UserWarning, match="product traits now come from predictor"):
        load_trained_policy(run, "beauty_serum_flash_sale")


def test_an_off_policy_replay_buffer_round_trips_as_plain_arrays(tmp_path):
    # Resume refills the replay buffer from checkpoints/replay_buffer.npz, read with allow_pickle=False.
    import numpy as np

    from launchsim.agents.sb3.buffers import load_replay_buffer, save_replay_buffer
    from launchsim.agents.training.callbacks import REPLAY_BUFFER

    run = tmp_path / "dqn"
    train(tiny_config(run, "dqn", checkpoint_every=64), progress=False)
    saved = run / "checkpoints" / REPLAY_BUFFER
    assert saved.exists() and not list(run.rglob("*.pkl"))
    with np.load(saved, allow_pickle=False) as arrays:
        filled = int(arrays["pos"])
        assert filled > 0 and arrays["observations"][:filled].any()
    model = load_trained_policy(run, "food_coffee_bundle").model
    load_replay_buffer(model, saved)
    again = tmp_path / "again.npz"
    save_replay_buffer(model, again)
    with np.load(saved) as a, np.load(again) as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
    (tmp_path / "bad.npz").write_bytes(b"not a buffer")
    with pytest.raises(TrainingError, match="not a readable replay buffer"):
        load_replay_buffer(model, tmp_path / "bad.npz")


def test_hyperparameters_sb3_refuses_leave_no_run_folder(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="hyperparameters of ppo"):
        train(tiny_config(out, n_envs=1, hyperparams={**TINY["ppo"], "n_steps": 1}), progress=False)
    assert not (out / "config.yml").exists()
    assert (train(tiny_config(out), progress=False) / "evaluation.json").exists()  # the same --out is free


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_the_start(tmp_path, monkeypatch):
    from launchsim.agents.training import runs

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "_learn", killed)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(out), progress=False)
    assert (out / "config.yml").exists() and latest_checkpoint(out) is None
    monkeypatch.undo()
    assert (resume(out, progress=False) / "evaluation.json").exists()
    assert '"restart"' in (out / "history.jsonl").read_text()


def test_resume_passes_over_a_truncated_newest_checkpoint(tmp_path):
    run = train(tiny_config(tmp_path / "run", checkpoint_every=32, steps=256), progress=False)
    checkpoints = sorted((run / "checkpoints").glob("step_*.zip"))
    assert len(checkpoints) == 3
    oldest, previous, newest = checkpoints
    newest.write_bytes(newest.read_bytes()[:100])  # killed during its write
    assert latest_checkpoint(run)[0] == previous
    previous.with_suffix(".json").write_text('{"obs_rms": ')  # its statistics truncated too
    assert latest_checkpoint(run)[0] == oldest


# A training process that sends itself SIGKILL at a chosen point: half-way through writing its second
# checkpoint's zip, or in the middle of its final evaluation (after model.zip is written).
_KILL_DURING = {
    "checkpoint": """
from stable_baselines3.common.base_class import BaseAlgorithm
saves = []
def save(self, path, *args, **kwargs):
    saves.append(path)
    if len(saves) == 2:
        with open(path, "wb") as half:
            half.write(b"PK\\x03\\x04" + bytes(64))
            half.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(self, path, *args, **kwargs)
real_save, BaseAlgorithm.save = BaseAlgorithm.save, save
""",
    "evaluation": """
from launchsim.agents.training import runs
def killed(*args, **kwargs):
    if os.path.exists(sys.argv[-1] + "/model.zip"):  # the final evaluation, not a progress bar's
        os.kill(os.getpid(), signal.SIGKILL)
    return real_profit(*args, **kwargs)
real_profit, runs.quick_profit = runs.quick_profit, killed
""",
}


@pytest.mark.parametrize("point", sorted(_KILL_DURING))
def test_a_kill_during_a_checkpoint_write_or_the_evaluation_leaves_a_folder_resume_completes(tmp_path, point):
    hp = tmp_path / "hp.yaml"
    hp.write_text(yaml.safe_dump({"ppo": TINY["ppo"]}))
    run = tmp_path / "run"
    arguments = [
        "train", "--scenario", "food_coffee_bundle", "--market", "structural", "--steps", "256", "--n-envs", "2",
        "--checkpoint-every", "64", "--hyperparams", str(hp), "--eval-episodes", "2", "--evaluation", "quick",
        "--out", str(run),
    ]  # fmt: skip
    script = "import os, signal, sys\n" + _KILL_DURING[point] + "\nfrom launchsim.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    killed = subprocess.run([sys.executable, "-c", script, *arguments], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, f"training was not killed: {killed.stderr[-2000:]}"
    assert not (run / "evaluation.json").exists()
    if point == "checkpoint":
        assert list((run / "checkpoints").glob("tmp_step_*.zip"))  # the half-written one
        assert not (run / "model.zip").exists()
        first = latest_checkpoint(run)
        assert first is not None and first[2] == 64
    else:
        assert (run / "model.zip").exists()
    result = subprocess.run([sys.executable, str(ROOT / "run_sim.py"), "train", "--resume", str(run)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert np.isfinite(evaluation["markets"][0]["training_market"]["profit_mean"])
    events = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    if point == "checkpoint":
        resumed = next(e for e in events if e["event"] == "resume")
        assert resumed["from_checkpoint"] == "step_000000064.zip" and events[-1]["event"] == "finish"
        assert events[-1]["steps"] == 256
