"""Vectorised launch markets for SB3: many (scenario, product) markets behind one VecEnv.

``make_market_vec_env`` is the one way training code builds its envs. Markets of different
scenarios share one action space and, when products are mixed, one observation with the product's
latent traits (``envs.spaces``). ``kind="batched"`` steps every market in one array call
(``envs.batched_market``); ``kind="dummy"`` is SB3's ``DummyVecEnv`` of single envs, running the same
step code one market at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
from launchsim.envs.actions import ActionType
from launchsim.envs.batched_market import BatchedMarketVecEnv
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.envs.spaces import market_pairs, product_traits, union_nvec
from launchsim.scenarios.schema import Scenario
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

MarketKind = Literal["learned", "structural"]


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
    ``critic_demand_draw`` appends the log of that multiplier for the critic (``envs.spaces.CRITIC_FIELDS``)."""
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, found {n_envs}")
    if market not in ("learned", "structural"):
        raise ValueError(f"market must be 'learned' or 'structural', found {market!r}")
    if kind not in ("batched", "dummy"):
        raise ValueError(f"kind must be 'batched' or 'dummy', found {kind!r}")
    pairs = market_pairs(markets)
    if product_features is None:
        product_features = len(pairs) > 1
    if (market == "learned" or product_features) and predictor is None:
        from launchsim.models.learned_market import load_shared

        predictor = load_shared(device=device)
    slots = [pairs[i % len(pairs)] for i in range(n_envs)]
    nvec = union_nvec(pairs)
    if kind == "batched":
        venv: VecEnv = BatchedMarketVecEnv(
            slots, market=market, predictor=predictor, action_type=action_type, product_features=product_features,
            device=device, nvec=nvec, demand_spread=demand_spread, outcomes=outcomes, critic_demand_draw=critic_demand_draw,
        )  # fmt: skip
    else:
        traits = {(id(s), i): product_traits(s, i, predictor) for s, i in pairs} if product_features else {}

        def factory(pair: tuple[Scenario, int]):
            def make() -> gym.Env:
                return Monitor(LaunchMarketEnv(
                    pair[0], product=pair[1], response_model=predictor if market == "learned" else None, action_type=action_type,
                    outcomes=outcomes, demand_spread=demand_spread, nvec=nvec if action_type == "multidiscrete" else None,
                    traits=traits.get((id(pair[0]), pair[1])), critic_demand_draw=critic_demand_draw,
                ))  # fmt: skip

            return make

        venv = DummyVecEnv([factory(p) for p in slots])
    venv.seed(seed)
    return venv
