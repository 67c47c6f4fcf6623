"""The response-model interface shared by the structural market and the fine-tuned predictors.

A response model reads a market's texts once (``encode``) and binds them, with the market's creatives
and bundle options, to a ``Responder`` (``responder``): from then on each step maps the numeric
context and the chosen creative and bundle option to expected weekly outcomes. The env holds one and
never knows which kind: that is what lets a policy trained on the learned market be judged in the
structural one. A responder answers for one market on Python numbers or for N markets on arrays or
tensors, as its ops backend (``models.ops``) says.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np

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


class MarketTexts(NamedTuple):
    """One market's encoded texts: its product, its creatives (by index), and its bundle options (by
    index; option 0 is no bundle: ``(None, 0.0)``), each a partner's encoding and its discount."""

    product: Any
    creatives: Sequence[Any]
    options: Sequence[tuple[Any, float]]


class Responder(Protocol):
    """A response model bound to N markets (or one): one step's expected outcomes from the context."""

    overdispersion: Any  # per market: 0 = Poisson demand; k > 0 = negative binomial, var = mu + k mu^2

    def respond(self, ctx: MarketContext, creative: Any, option: Any) -> MarketResponse:
        """Expected outcomes of one step (``creative``/``option``: the chosen indices)."""
        ...


@runtime_checkable
class ResponseModel(Protocol):
    """What the env needs from a market: text encodings (once) and a responder bound to its markets."""

    demand_overdispersion: float  # 0 = Poisson demand; k > 0 = negative binomial, var = mu + k mu^2

    def encode(self, texts: Sequence[str], role: TextRole) -> list[Any]:
        """One encoding per text, computed once per episode or scenario, never per step."""
        ...

    def responder(self, x: Any, markets: Sequence[MarketTexts]) -> Responder:
        """The markets' texts bound for stepping on the ops backend ``x`` (``models.ops``)."""
        ...


def respond_once(model: ResponseModel, ctx: MarketContext, product: str, creative: str, partner: str | None = None) -> MarketResponse:
    """A response model's expected outcomes for one set of texts in context ``ctx`` (numbers for one
    market, arrays for several), with the bundle of ``partner`` at ``ctx.bundle_discount`` where that is
    above 0: for one-off questions; an env binds its texts once instead."""
    from launchsim.models.ops import ops_for

    x = ops_for(ctx.price_ratio)
    (p,), (c,) = model.encode([product], "product"), model.encode([creative], "creative")
    j = None if partner is None else model.encode([partner], "partner")[0]
    discounts = np.atleast_1d(np.asarray(ctx.bundle_discount if j is not None else 0.0, dtype=np.float64))
    n = 1 if x.kind == "scalar" else len(np.atleast_1d(np.asarray(ctx.price_ratio)))
    discounts = np.broadcast_to(discounts, (n,))
    markets = [MarketTexts(p, [c], [(None, 0.0), (j, float(d))]) for d in discounts]
    options = (discounts > 0).astype(np.int64)
    responder = model.responder(x, markets)
    if x.kind == "scalar":
        return responder.respond(ctx, 0, int(options[0]))
    return responder.respond(ctx, x.asarray(np.zeros(n, dtype=np.int64)), x.asarray(options))
