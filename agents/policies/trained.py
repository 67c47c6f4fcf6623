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
from launchsim.agents.run_folder import (
    FINAL_MODEL,
    FINAL_STATS,
    latest_checkpoint,
    open_run,
    predictor_info,
    run_predictor,
    traits_identity,
)
from launchsim.agents.sb3.algorithms import Algorithm, unflatten_action
from launchsim.envs.dynamics import ObservedMasks
from launchsim.agents.sb3.normalizer_stats import ObservationScaler
from launchsim.envs.actions import ActionLayout
from launchsim.envs.spaces import OBSERVATION_NAMES, clip_action
from launchsim.scenarios import load_scenario
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
            extra["action_masks"] = np.stack(
                [self._masks(row) for row in batch]
            )
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
    from launchsim.scenarios import product_index

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
    model = run.algorithm.load_class().load(zip_path, device="cpu")
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
