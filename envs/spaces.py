"""The observation, and the spaces that several markets share.

One market observes the 25 ``OBSERVATION_NAMES`` fields. Markets of different scenarios trained as
one VecEnv share one action space (the elementwise maximum of their ``MultiDiscrete`` sizes; an index
beyond a market's own range is clipped to its last value) and, when products are mixed, one
observation: the 25 fields followed by the product's latent traits from the predictor (a compact
text embedding, so a policy can be tried on a product it never saw). With the critic's field the
observation ends with one more number, the log of the episode's demand multiplier under demand
randomisation (``CRITIC_FIELDS``): only the critic of an actor-critic policy reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from launchsim.envs.actions import ActionLayout
from launchsim.scenarios.schema import Scenario

OBSERVATION_NAMES: tuple[str, ...] = (
    "progress",  # steps done / steps in the horizon
    "steps_left",  # steps left / steps in the horizon
    "week_sin",  # calendar week of year, as a point on the circle
    "week_cos",
    "season",  # category season index this step (1 = average)
    "holiday_now",  # holiday uplift this step
    "holiday_next",  # holiday uplift next step
    "launched",
    "weeks_since_launch",  # / horizon
    "adoption",  # first purchases so far / initial stock
    "stock",  # stock left / initial stock
    "budget_left",  # ad budget left / total budget
    "adstock",  # carried-over ad spend / total budget
    "competitor_present",
    "competitor_price",  # competitor price / our reference price (0 while absent)
    "competitor_strength",
    "last_sales",  # log1p(units sold last step) / log1p(initial stock)
    "last_clicks",  # log1p(clicks last step) / 16
    "last_price",  # last price / reference price (0 before launch)
    "flash_uses_left",  # / max uses (0 without flash sales)
    "flash_open",  # 1 while the flash-sale window is open
    "since_flash",  # steps since the last flash sale / horizon (1 before any)
    "deadline_left",  # steps to the launch deadline / horizon (1 without deadline, 0 once launched)
    "launch_allowed",  # 1 from the earliest launch week on
    "bundles_open",  # share of bundle options whose partner is available now
)
OBS = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
OBS_LOW, OBS_HIGH = -1.0, 10.0
TRAIT_SCALE = 0.25  # latent traits are O(1-5); scaled into about [-1.5, 1.5]
TRAIT_BOUND = 3.0
# Fields after the traits that only a critic reads (training only; a trained actor is given 0 there).
CRITIC_FIELDS = ("log_demand_draw",)
DRAW_BOUND = 10.0  # the log multiplier is spread x N(0, 1) with spread <= 2: 5 sigma


def observation_space(n_traits: int = 0, critic_fields: int = 0) -> spaces.Box:
    """The market observation, with ``n_traits`` product-trait numbers appended (0 for none), then
    ``critic_fields`` numbers for the critic only (0 or ``len(CRITIC_FIELDS)``)."""
    n = len(OBSERVATION_NAMES)
    low = np.concatenate([np.full(n, OBS_LOW), np.full(n_traits, -TRAIT_BOUND), np.full(critic_fields, -DRAW_BOUND)])
    high = np.concatenate([np.full(n, OBS_HIGH), np.full(n_traits, TRAIT_BOUND), np.full(critic_fields, DRAW_BOUND)])
    return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


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
        raise ValueError("a vector of markets needs at least one scenario")
    return pairs


def union_nvec(pairs: Sequence[tuple[Scenario, int]]) -> np.ndarray:
    """The shared MultiDiscrete sizes: elementwise maximum over the markets' own layouts."""
    return np.max([ActionLayout(s, "multidiscrete").nvec for s, _ in pairs], axis=0)


def clip_action(action: Any, native_nvec: np.ndarray) -> np.ndarray:
    """Map a shared-space MultiDiscrete action onto one market's layout (each index clipped to its range)."""
    return np.minimum(np.asarray(action, dtype=np.int64), np.asarray(native_nvec) - 1)


def product_traits(scenario: Scenario, product_index: int, predictor: Any) -> np.ndarray:
    """The predictor's latent traits of a product's text, scaled for an observation (float32)."""
    from launchsim.models.heads import product_latent

    traits = product_latent(predictor, scenario.products[product_index].text)
    return np.clip(traits * TRAIT_SCALE, -TRAIT_BOUND, TRAIT_BOUND).astype(np.float32)


def log_demand_draw(x: Any, scale: Any) -> Any:
    """The critic's field: log of the episode's demand multiplier, clipped to its bound."""
    return x.minimum(x.maximum(x.log(scale), -DRAW_BOUND), DRAW_BOUND)
