"""The response-model interface shared by the structural market and the fine-tuned predictors.

A response model reads a market's texts once (``encode``) and then maps encoded texts plus numeric
context to expected weekly outcomes (``expected``). The env holds one and never knows which kind:
that is what lets a policy trained on the learned market be judged in the structural one.
Fields are Python floats for one market, or equal-length arrays/tensors for a batch of markets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

TextRole = Literal["product", "creative", "partner"]


@dataclass(slots=True)
class MarketContext:
    """The numeric situation of a market in one step: what the seller did and what the calendar says."""

    launched: Any  # 1.0 once the product is on sale, else 0.0
    step_weeks: Any  # weeks per decision step
    season: Any  # public category season index this step (1.0 = average week)
    holiday: Any  # public holiday uplift this step (0.0 = no holiday)
    price_ratio: Any  # our price / reference price (after any flash discount)
    reference_price: Any  # the product's reference price (currency)
    flash: Any  # 1.0 in a flash-sale week
    weeks_since_flash: Any  # steps since the last flash sale (large if none yet)
    competitor_strength: Any  # 0.0 while no competitor is present
    competitor_price_ratio: Any  # competitor price / our reference price
    adstock: Any  # carried-over ad spend after this step's spend (currency)
    adopters: Any  # first purchases so far (units)
    bundle_discount: Any  # 0.0 when no bundle is offered
    market_estimate: Any = 0.0  # the seller's public estimate of addressable buyers (0.0 = unknown)
    prelaunch_signups: Any = 0.0  # public sign-ups to hear of the launch before it (0.0 = unknown)


@dataclass(slots=True)
class MarketResponse:
    """Expected outcomes of one step (before stock limits and sampling)."""

    demand: Any  # units wanted this step
    first_purchase_share: Any  # share of demand that is new adopters (the rest repeats)
    impressions: Any
    ctr: Any  # clicks per impression
    bundle_uplift: Any  # multiplicative lift on demand from the bundle offer (1.0 = none)
    bundle_take: Any  # share of buyers who take the bundle
    cannibalisation: Any  # share of bundled partner units that would have sold alone at full price

    @property
    def clicks(self) -> Any:
        return self.impressions * self.ctr


@runtime_checkable
class ResponseModel(Protocol):
    """What the env needs from a market: text encodings (once) and expected outcomes (every step)."""

    demand_overdispersion: float  # 0 = Poisson demand; k > 0 = negative binomial, var = mu + k mu^2

    def encode(self, texts: Sequence[str], role: TextRole) -> list[Any]:
        """One encoding per text, computed once per episode or scenario, never per step."""
        ...

    def expected(self, product: Any, creative: Any, partner: Any | None, ctx: MarketContext) -> MarketResponse:
        """Expected outcomes for encoded texts (``partner`` None = no bundle) in context ``ctx``."""
        ...
