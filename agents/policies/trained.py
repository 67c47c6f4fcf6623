"""A trained SB3 model acting in the native single env of one (scenario, product).

Training may have seen the market through adapters: observation normalisation, product traits
appended to the observation, fields only the critic read, a shared action space over several
scenarios, DQN's flattened action.
``TrainedPolicy`` applies the same adapters around ``model.predict`` so that the policy runs on a
plain ``LaunchMarketEnv`` like a heuristic does (``agents.rollout.Policy``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces
from launchsim.agents.run_folder import (
    FINAL_MODEL,
    FINAL_STATS,
    latest_checkpoint,
    open_run,
    predictor_info,
    run_predictor,
    traits_identity,
)
from launchsim.agents.sb3.algorithms import Algorithm, resolve_hyperparams, unflatten_action
from launchsim.agents.sb3.loading import detect_algorithm, load_model, read_vecnormalize_pickle, serialized_entries
from launchsim.envs.dynamics import ObservedMasks
from launchsim.agents.sb3.normalizer_stats import ObservationScaler
from launchsim.envs.actions import ActionLayout
from launchsim.envs.spaces import OBSERVATION_NAMES, observation_space, clip_action
from launchsim.scenarios import load_scenario, product_index
from launchsim.scenarios.schema import Scenario

from launchsim.errors import TrainingError


class TrainedPolicy:
    """SB3's ``predict`` on native observations and actions of ``scenario``'s product ``product``."""

    def __init__(
        self,
        model: Any,
        algorithm: Algorithm,
        scenario: Scenario,
        product: int = 0,
        normalizer: Any = None,
        traits: np.ndarray | None = None,
        shared_nvec: np.ndarray | None = None,
        critic_fields: int = 0,
    ):
        self.model = model
        self.algorithm = algorithm
        self.action_type = algorithm.action_type  # the native env's action space: multidiscrete or box
        self.scenario = scenario
        self.product = product
        self.normalizer = normalizer  # anything with normalize_obs: a VecNormalize or an ObservationScaler; or None
        self.traits = None if traits is None or len(traits) == 0 else np.asarray(traits, dtype=np.float32)
        self.native_nvec = ActionLayout(scenario, "multidiscrete").nvec
        self.shared_nvec = self.native_nvec if shared_nvec is None else np.asarray(shared_nvec, dtype=np.int64)
        # What follows the native fields in every observation, built once: the traits, then 0 for each field
        # only the critic read in training (agents.critic_policy; the actor ignores them).
        critic_pad = np.zeros(int(critic_fields), dtype=np.float32)
        self._appended = critic_pad if self.traits is None else np.concatenate([self.traits, critic_pad])
        self._masks = ObservedMasks(scenario, product, self.shared_nvec) if algorithm.action_masks else None

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        """Actions for one observation (or a batch) of the native env, in that env's action space."""
        raw = np.asarray(observation, dtype=np.float32)
        single = raw.ndim == 1
        batch = np.atleast_2d(raw)[:, : len(OBSERVATION_NAMES)]
        obs = np.hstack([batch, np.tile(self._appended, (len(batch), 1))]) if len(self._appended) else batch
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs).astype(np.float32)
        extra = {}
        if self.algorithm.action_masks:
            extra["action_masks"] = np.stack([self._masks(row) for row in batch])
        action, state = self.model.predict(obs, state=state, episode_start=episode_start, deterministic=deterministic, **extra)
        if self.algorithm.flatten_actions:
            action = unflatten_action(action, self.shared_nvec)
        if self.algorithm.action_type == "multidiscrete":
            action = clip_action(action, self.native_nvec)
        return (action[0] if single else action), state


def load_trained_policy(
    run_dir: str | Path, scenario: Scenario | str | Path, product: int | str = 0, predictor: Any = None
) -> TrainedPolicy:
    """The run's final model (or, while it trains, its last checkpoint) as a policy on the native single
    env of ``scenario``/``product``: observation normalisation, product traits and action clipping applied.

    Product traits always come from the run's own predictor; ``predictor`` only saves loading it
    again when it is that same predictor (same identity)."""
    run = open_run(run_dir)
    scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    index = product_index(scenario, product)
    if (run.dir / FINAL_MODEL).exists():
        zip_path, stats_path = run.dir / FINAL_MODEL, run.dir / FINAL_STATS
    else:
        found = latest_checkpoint(run.dir)
        if found is None:
            raise TrainingError(f"{run.dir}: no {FINAL_MODEL} and no checkpoint yet")
        zip_path, stats_path, _ = found
    model = load_model(run.algorithm, zip_path, *run_spaces(run), params=run.params)
    normalizer = ObservationScaler(stats_path) if stats_path.exists() else None
    traits = None
    if run.env["product_features"]:
        from launchsim.envs.spaces import product_traits

        info = predictor_info(run.dir)
        recorded = info.get("traits_identity", info.get("identity"))  # runs before ensembles: one identity
        if predictor is None or traits_identity(predictor) != recorded:
            predictor = run_predictor(run, strict=False)
            if recorded and traits_identity(predictor) != recorded:
                warnings.warn(
                    f"{run.dir}: product traits now come from predictor {traits_identity(predictor)}, not the one "
                    f"trained with ({recorded}); they may not match what the policy saw",
                    stacklevel=2,
                )
        traits = product_traits(scenario, index, predictor)
    shared = np.asarray(run.env["action_nvec"], dtype=np.int64) if run.env["action_nvec"] else None
    return TrainedPolicy(
        model, run.algorithm, scenario, index, normalizer=normalizer, traits=traits, shared_nvec=shared,
        critic_fields=run.env.get("critic_fields", 0),
    )  # fmt: skip


def run_spaces(run: Any) -> tuple[spaces.Space, spaces.Space]:
    """The observation and action spaces a run's model was trained on, from its recorded env layout."""
    critic = int(run.env.get("critic_fields", 0))
    observation = observation_space(int(run.env["observation_size"]) - len(OBSERVATION_NAMES) - critic, critic)
    if run.algorithm.action_type == "box":
        return observation, spaces.Box(-1.0, 1.0, (6,), np.float32)
    nvec = np.asarray(run.env["action_nvec"], dtype=np.int64)
    return observation, spaces.Discrete(int(np.prod(nvec))) if run.algorithm.flatten_actions else spaces.MultiDiscrete(nvec)


def load_sb3_model(zip_path: str | Path, scenario: Scenario, product: int | str = 0) -> TrainedPolicy:
    """A plain SB3 model file trained on the native env of ``scenario`` (its registered id, rl-baselines3-zoo,
    or a user's own script) as a policy: the algorithm read from the file, its VecNormalize statistics
    used when they lie beside it (``vecnormalize.json`` in launchsim's form, or SB3's ``vecnormalize.pkl``,
    also in rl-baselines3-zoo's folder named after the model), nothing unpickled."""
    zip_path = Path(zip_path)
    index = product_index(scenario, product)
    algorithm = detect_algorithm(serialized_entries(zip_path), zip_path)
    layout = ActionLayout(scenario, algorithm.action_type, product=index)
    action = spaces.Discrete(int(np.prod(layout.nvec))) if algorithm.flatten_actions else layout.space
    plain = {**resolve_hyperparams(algorithm.name), "critic_sees_demand_draw": False, "policy": "MlpPolicy"}  # an SB3 default policy
    model = load_model(algorithm, zip_path, observation_space(), action, params=plain)
    normalizer = None
    for candidate in (zip_path.with_name("vecnormalize.json"), zip_path.with_name("vecnormalize.pkl"), zip_path.with_suffix("") / "vecnormalize.pkl"):
        if candidate.is_file():
            normalizer = ObservationScaler(read_vecnormalize_pickle(candidate) if candidate.suffix == ".pkl" else candidate)
            break
    return TrainedPolicy(model, algorithm, scenario, index, normalizer=normalizer)
