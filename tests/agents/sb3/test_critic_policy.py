"""The asymmetric actor-critic: a critic that reads the episode's demand draw, an actor that cannot."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces

from launchsim.agents.sb3.critic_policy import CriticFieldsPolicy, HideTrailingFields, MaskableCriticFieldsPolicy
from launchsim.agents.policies.trained import load_trained_policy
from launchsim.agents.training.runs import resume, train
from launchsim.errors import TrainingError
from launchsim.scenarios import load_scenario
from tests.agents.training.test_runs import TINY, tiny_config


@pytest.mark.parametrize("policy_class", [CriticFieldsPolicy, MaskableCriticFieldsPolicy])
def test_actor_ignores_the_critic_fields_and_the_critic_reads_them(policy_class):
    obs_space = spaces.Box(-10, 10, (6,), np.float32)
    policy = policy_class(obs_space, spaces.MultiDiscrete([3, 4]), lambda _: 3e-4, critic_only=2)
    obs = torch.tensor(np.random.default_rng(0).normal(size=(5, 6)), dtype=torch.float32)
    moved = obs.clone()
    moved[:, -2:] += torch.tensor([3.0, -2.0])
    actions = torch.tensor([[0, 1], [1, 3], [2, 0], [2, 2], [0, 3]])

    def log_probs(o: torch.Tensor) -> torch.Tensor:
        return policy.get_distribution(o).log_prob(actions)

    torch.testing.assert_close(log_probs(obs), log_probs(moved))  # the actor's view is the same
    assert not torch.allclose(policy.predict_values(obs), policy.predict_values(moved))
    moved[:, 0] += 1.0  # an ordinary field still reaches the actor
    assert not torch.allclose(log_probs(obs), log_probs(moved))


def test_hiding_needs_at_least_one_field_for_each_side():
    with pytest.raises(ValueError, match="between 1 and 3"):
        HideTrailingFields(spaces.Box(-1, 1, (4,), np.float32), 4)


@pytest.mark.parametrize(("algo", "policy_class"), [("ppo", CriticFieldsPolicy), ("maskable_ppo", MaskableCriticFieldsPolicy)])
def test_a_run_whose_critic_reads_the_draw_trains_resumes_and_acts_on_native_envs(tmp_path, algo, policy_class):
    from launchsim.agents.sb3.algorithms import get_algorithm

    hp = {**TINY[algo], "critic_sees_demand_draw": True}
    config = tiny_config(tmp_path / "run", algo, hyperparams=hp, demand_spread=0.3, steps=128, checkpoint_every=64)
    run = train(config, progress=False)
    env = yaml.safe_load((run / "config.yml").read_text())["env"]
    assert env["critic_fields"] == 1 and env["observation_size"] == 26 and not env["product_features"]
    model_class = get_algorithm(algo).load_class()
    model = model_class.load(run / "model.zip", device="cpu")
    assert isinstance(model.policy, policy_class) and model.policy.critic_only == 1
    policy = load_trained_policy(run, "food_coffee_bundle")
    from launchsim.agents.rollout import run_episode
    from launchsim.envs.launch_market import LaunchMarketEnv

    weekly = run_episode(LaunchMarketEnv(load_scenario("food_coffee_bundle")), policy, seed=0)
    assert len(weekly) == load_scenario("food_coffee_bundle").n_steps
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert np.isfinite(evaluation["markets"][0]["training_market"]["profit_mean"])
    # More steps on the same run: the checkpointed policy class and its normaliser come back.
    (run / "model.zip").unlink(), (run / "evaluation.json").unlink()  # as if killed after its last checkpoint
    resumed = resume(run, progress=False)
    assert isinstance(model_class.load(resumed / "model.zip", device="cpu").policy, policy_class)


def test_the_draw_needs_an_actor_critic_with_an_mlp_policy(tmp_path):
    with pytest.raises(TrainingError, match="needs an actor-critic algorithm"):
        train(tiny_config(tmp_path / "dqn", "dqn", hyperparams={**TINY["dqn"], "critic_sees_demand_draw": True}), progress=False)
    with pytest.raises(TrainingError, match="builds on MlpPolicy"):
        train(tiny_config(tmp_path / "cnn", hyperparams={**TINY["ppo"], "policy": "CnnPolicy", "critic_sees_demand_draw": True}), progress=False)
