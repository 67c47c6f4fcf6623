"""Vectorised launch markets for SB3: many (scenario, product) markets behind one VecEnv.

``make_market_vec_env`` is the one way training code builds its envs. Markets of different
scenarios share one action space (the elementwise maximum of their ``MultiDiscrete`` sizes; an
index beyond a market's own range is clipped to its last value) and, when products are mixed, one
observation: the 25 ``OBSERVATION_NAMES`` fields followed by the product's latent traits from the
predictor (a compact text embedding, so a policy can be tried on a product it never saw).
With ``critic_demand_draw`` the observation ends with one more number, the log of the episode's
demand multiplier under randomisation (``CRITIC_FIELDS``): only the critic of an actor-critic policy
reads it (``agents.critic_policy``), so that its baseline knows the demand level the actor cannot see.
``kind="batched"`` steps every market in one tensor call (``envs.batched_market``);
``kind="dummy"`` is SB3's ``DummyVecEnv`` of single envs, the reference it is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from launchsim.envs.actions import ActionLayout, ActionType
from launchsim.envs.launch_market import OBS_HIGH, OBS_LOW, OBSERVATION_NAMES, LaunchMarketEnv
from launchsim.scenarios.schema import Scenario

MarketKind = Literal["learned", "structural"]
TRAIT_SCALE = 0.25  # latent traits are O(1-5); scaled into about [-1.5, 1.5]
TRAIT_BOUND = 3.0
# Fields after the traits that only a critic reads (training only; a trained actor is given 0 there).
CRITIC_FIELDS = ("log_demand_draw",)
DRAW_BOUND = 10.0  # the log multiplier is spread x N(0, 1) with spread <= 2: 5 sigma


def market_pairs(markets: Scenario | Sequence[Scenario] | Sequence[tuple[Scenario, int]]) -> list[tuple[Scenario, int]]:
    """(scenario, product index) pairs: every product of each scenario given, or the pairs given."""
    if isinstance(markets, Scenario):
        markets = [markets]
    pairs: list[tuple[Scenario, int]] = []
    for m in markets:
        if isinstance(m, Scenario):
            pairs += [(m, i) for i in range(len(m.products))]
        else:
            scenario, product = m
            pairs.append((scenario, int(product)))
    if not pairs:
        raise ValueError("make_market_vec_env needs at least one scenario")
    return pairs


def union_nvec(pairs: Sequence[tuple[Scenario, int]]) -> np.ndarray:
    """The shared MultiDiscrete sizes: elementwise maximum over the markets' own layouts."""
    return np.max([ActionLayout(s, "multidiscrete").nvec for s, _ in pairs], axis=0)


def clip_action(action: Any, native_nvec: np.ndarray) -> np.ndarray:
    """Map a shared-space MultiDiscrete action onto one market's layout (each index clipped to its range)."""
    return np.minimum(np.asarray(action, dtype=np.int64), np.asarray(native_nvec) - 1)


def product_traits(scenario: Scenario, product_index: int, predictor: Any = None) -> np.ndarray:
    """The predictor's latent traits of a product's text, scaled for an observation (float32)."""
    import torch

    if predictor is None:
        predictor = _default_predictor()
    predictor = getattr(predictor, "traits_source", predictor)  # an ensemble: its first member's traits
    emb = predictor.encode([scenario.products[product_index].text], "product")[0]
    heads = predictor.heads
    with torch.inference_mode():
        traits = heads.product_traits(heads.norm(emb.reshape(1, -1).to(predictor.device)))[0].float().cpu().numpy()
    return np.clip(traits * TRAIT_SCALE, -TRAIT_BOUND, TRAIT_BOUND).astype(np.float32)


def observation_space(n_traits: int, critic_fields: int = 0) -> spaces.Box:
    """The market observation, with ``n_traits`` product-trait numbers appended (0 for none), then
    ``critic_fields`` numbers for the critic only (0 or ``len(CRITIC_FIELDS)``)."""
    n = len(OBSERVATION_NAMES)
    low = np.concatenate([np.full(n, OBS_LOW), np.full(n_traits, -TRAIT_BOUND), np.full(critic_fields, -DRAW_BOUND)])
    high = np.concatenate([np.full(n, OBS_HIGH), np.full(n_traits, TRAIT_BOUND), np.full(critic_fields, DRAW_BOUND)])
    return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


def log_demand_draw(scale: Any) -> Any:
    """The critic's field: log of the episode's demand multiplier, clipped to its bound."""
    return np.clip(np.log(scale), -DRAW_BOUND, DRAW_BOUND)


class SharedSpaceMarket(gym.Wrapper):
    """A single market presented in the shared action space, with its product traits in the observation
    (and the critic's field, the episode's demand draw, with ``critic_demand_draw``)."""

    def __init__(self, env: LaunchMarketEnv, nvec: np.ndarray | None, traits: np.ndarray | None, critic_demand_draw: bool = False):
        super().__init__(env)
        self._native = env.layout.nvec
        self._nvec = nvec
        self._traits = traits if traits is not None else np.zeros(0, dtype=np.float32)
        self._critic = bool(critic_demand_draw)
        if nvec is not None:
            self.action_space = spaces.MultiDiscrete(nvec)
        self.observation_space = observation_space(len(self._traits), len(CRITIC_FIELDS) if self._critic else 0)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._extend(obs), info

    def step(self, action):
        if self._nvec is not None:
            action = clip_action(action, self._native)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._extend(obs), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """The market's own masks, padded with False for indices it does not have."""
        own = np.split(self.env.unwrapped.action_masks(), np.cumsum(self._native)[:-1])
        nvec = self._nvec if self._nvec is not None else self._native
        return np.concatenate([np.pad(m, (0, int(n) - len(m))) for m, n in zip(own, nvec)])

    def _extend(self, obs: np.ndarray) -> np.ndarray:
        if not len(self._traits) and not self._critic:
            return obs
        parts = [obs, self._traits]
        if self._critic:
            parts.append(np.array([log_demand_draw(self.env.unwrapped.demand_scale)], dtype=np.float32))
        return np.concatenate(parts)


def make_market_vec_env(
    markets: Scenario | Sequence[Scenario] | Sequence[tuple[Scenario, int]],
    n_envs: int,
    market: MarketKind = "learned",
    predictor: Any = None,
    seed: int = 0,
    action_type: ActionType = "multidiscrete",
    kind: Literal["batched", "dummy"] = "batched",
    product_features: bool | None = None,
    device: str | None = None,
    demand_spread: float = 0.0,
    outcomes: Literal["sampled", "expected"] = "sampled",
    critic_demand_draw: bool = False,
) -> VecEnv:
    """``n_envs`` markets (assigned round-robin over the (scenario, product) pairs) as one SB3 VecEnv.

    ``demand_spread`` > 0 multiplies each episode's expected demand by exp(N(0, spread^2)), so that a
    policy trained on it meets demand levels around the market's own (domain randomisation).
    ``outcomes="expected"`` steps the markets on expected outcomes instead of sampled counts.
    ``critic_demand_draw`` appends the log of that multiplier for the critic (``CRITIC_FIELDS``)."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, found {n_envs}")
    if market not in ("learned", "structural"):
        raise ValueError(f"market must be 'learned' or 'structural', found {market!r}")
    if kind not in ("batched", "dummy"):
        raise ValueError(f"kind must be 'batched' or 'dummy', found {kind!r}")
    pairs = market_pairs(markets)
    if product_features is None:
        product_features = len(pairs) > 1
    if market == "learned" and predictor is None:
        predictor = _default_predictor(device)
    slots = [pairs[i % len(pairs)] for i in range(n_envs)]
    if kind == "batched":
        from launchsim.envs.batched_market import BatchedMarketVecEnv

        venv: VecEnv = BatchedMarketVecEnv(
            slots, market=market, predictor=predictor, action_type=action_type, product_features=product_features,
            device=device, nvec=union_nvec(pairs), demand_spread=demand_spread, outcomes=outcomes,
            critic_demand_draw=critic_demand_draw,
        )  # fmt: skip
    else:
        nvec = union_nvec(pairs) if action_type == "multidiscrete" else None
        traits = {}
        if product_features:
            for s, i in pairs:
                traits[(id(s), i)] = product_traits(s, i, predictor)

        def factory(pair: tuple[Scenario, int]):
            def make() -> gym.Env:
                response = predictor if market == "learned" else None
                env = LaunchMarketEnv(
                    pair[0], product=pair[1], response_model=response, action_type=action_type,
                    outcomes=outcomes, demand_spread=demand_spread,
                )
                return Monitor(SharedSpaceMarket(env, nvec, traits.get((id(pair[0]), pair[1])), critic_demand_draw))

            return make

        venv = DummyVecEnv([factory(p) for p in slots])
    venv.seed(seed)
    return venv


def _default_predictor(device: str | None = None) -> Any:
    """The shipped learned market (models/default_ensemble), loaded once per process and device."""
    from launchsim.models.predictor import load_shared

    return load_shared(device=device)
