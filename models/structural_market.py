"""The structural market: the ground truth that generates logs and judges policies.

Weekly demand comes from Bass diffusion (or a constant weekly pool) scaled by seasonality, holiday
uplift (by gift appeal), a logit price response against the competitor, ad clicks converted into
purchases, bundle uplift and flash-sale spikes with a post-sale dip. The equations, their parameter
ranges and sources are in docs/MARKET.md. It implements ``models.response.ResponseModel``; its
"encoding" of a text is the hidden parameter record that the scenario's ``truth`` block holds for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np

from launchsim.errors import PredictorError
from launchsim.models.response import MarketContext, MarketResponse, TextRole
from launchsim.scenarios.schema import Scenario


class ProductParams(NamedTuple):
    market_size: float
    constant_pool: float  # 1.0 for a constant weekly pool, 0.0 for Bass diffusion
    bass_p: float
    bass_q: float
    repeat_rate: float
    price_alpha: float
    price_beta: float
    gift_appeal: float
    season_sensitivity: float
    ad_responsiveness: float


class CreativeParams(NamedTuple):
    ctr: float


class PartnerParams(NamedTuple):
    affinity: float
    cannibalisation: float


# Scalar stand-ins for the NumPy functions the equations use, so one market runs on plain floats
# (several times faster than NumPy scalars) and a batch runs on arrays with the same code.
_SCALAR = SimpleNamespace(exp=math.exp, maximum=max, minimum=min, where=lambda c, a, b: a if c else b)


def _torch_ops() -> SimpleNamespace:
    import torch

    # A number bound is a clamp, not a tensor made from it: copying a number to the GPU is not allowed
    # while a CUDA graph is being captured.
    return SimpleNamespace(
        exp=torch.exp, where=torch.where,
        maximum=lambda a, b: torch.maximum(a, b) if isinstance(b, torch.Tensor) else a.clamp(min=b),
        minimum=lambda a, b: torch.minimum(a, b) if isinstance(b, torch.Tensor) else a.clamp(max=b),
    )  # fmt: skip


def _ops(x: Any) -> Any:
    if isinstance(x, float | int):
        return _SCALAR
    return np if isinstance(x, np.ndarray | np.generic) else _torch_ops()


class StructuralMarket:
    """Ground-truth response model of one scenario (``ResponseModel``)."""

    def __init__(self, scenario: Scenario):
        truth = scenario.truth
        self.scenario = scenario
        self.demand_overdispersion = float(truth.demand_overdispersion)
        self._ads = truth.ads
        self._bundle = truth.bundle
        self._flash = truth.flash
        texts = {}
        for product in scenario.products:
            t = truth.products[product.name]
            texts[("product", product.text)] = ProductParams(
                t.market_size, float(t.diffusion == "constant"), t.bass_p, t.bass_q, t.repeat_rate,
                t.price_alpha, t.price_beta, t.gift_appeal, t.season_sensitivity, t.ad_responsiveness,
            )  # fmt: skip
        for creative in scenario.ads.creatives:
            texts[("creative", creative.text)] = CreativeParams(truth.creatives_ctr[creative.name])
        for item in scenario.catalogue:
            t = truth.partners[item.name]
            texts[("partner", item.text)] = PartnerParams(t.affinity, t.cannibalisation)
        self._texts = texts

    def encode(self, texts: Sequence[str], role: TextRole) -> list[Any]:
        """Look up the hidden parameters of each text; the structural market knows only its scenario's texts."""
        out = []
        for text in texts:
            try:
                out.append(self._texts[(role, text)])
            except KeyError:
                raise PredictorError(
                    f"the structural market of scenario {self.scenario.name!r} has no {role} text "
                    f"{text[:40]!r}...; it can only answer for the texts its truth block describes"
                ) from None
        return out

    def expected(
        self, product: ProductParams, creative: CreativeParams, partner: PartnerParams | None, ctx: MarketContext
    ) -> MarketResponse:
        """Expected outcomes of one step; floats for one market, arrays (fields stacked) for many."""
        return structural_response(product, creative, partner, self._ads, self._bundle, self._flash, ctx)


def structural_response(
    pr: ProductParams, creative: CreativeParams, partner: PartnerParams | None, ads: Any, bundle: Any, flash: Any, ctx: MarketContext
) -> MarketResponse:
    """The market's equations on floats (one market), NumPy arrays or torch tensors (a batch, where the
    scenario-level ``ads``, ``bundle`` and ``flash`` truth records may hold one value per market too)."""
    xp = _ops(ctx.price_ratio)
    k = ctx.step_weeks

    # Ads: adstock (per week) through Hill saturation into impressions, then clicks.
    weekly_stock = ctx.adstock / k
    a_h = weekly_stock**ads.hill_shape
    hill = a_h / (a_h + ads.half_saturation**ads.hill_shape)
    impressions = k * ads.max_impressions * hill
    ctr = xp.minimum(creative.ctr * pr.ad_responsiveness, 0.5)

    # Price: logit share against the competitor and the outside option, relative to the
    # share at the reference price with no competitor (so the Bass rates describe that case).
    exp_u = xp.exp(pr.price_alpha - pr.price_beta * ctx.price_ratio)
    rival = ctx.competitor_strength * xp.exp(pr.price_alpha - pr.price_beta * ctx.competitor_price_ratio)
    exp_ref = math.exp(pr.price_alpha - pr.price_beta) if xp is _SCALAR else xp.exp(pr.price_alpha - pr.price_beta)
    price_factor = (exp_u / (1.0 + exp_u + rival)) / (exp_ref / (1.0 + exp_ref))

    # Calendar, flash sale, bundle: multiplicative on the purchase hazard.
    season = xp.maximum(1.0 + pr.season_sensitivity * (ctx.season - 1.0), 0.05)
    holiday = 1.0 + pr.gift_appeal * ctx.holiday
    in_dip = (ctx.weeks_since_flash >= 1) * (ctx.weeks_since_flash <= flash.dip_weeks)
    flash_factor = (1.0 + flash.spike * ctx.flash) * (1.0 - flash.dip * in_dip)
    if partner is None:
        affinity = cannibalisation = 0.0
    else:
        affinity, cannibalisation = partner.affinity, partner.cannibalisation
    d = ctx.bundle_discount
    has_bundle = d > 0
    bundle_uplift = 1.0 + has_bundle * affinity * (bundle.lift_base + bundle.lift_per_discount * d)
    bundle_take = has_bundle * affinity * d / (d + bundle.take_half_discount)
    mix = season * holiday * price_factor * flash_factor * bundle_uplift

    # Clicks convert into purchases at the going price.
    ad_buyers = impressions * ctr * ads.click_conversion * price_factor * flash_factor

    # Diffusion: Bass hazard (p + q N/M) on the remaining pool, saturating so that new adopters
    # never exceed it; or, for a constant pool, M weekly potential buyers at reference terms.
    remaining = xp.maximum(pr.market_size - ctx.adopters, 0.0)
    hazard = (pr.bass_p + pr.bass_q * ctx.adopters / pr.market_size) * k
    total_hazard = hazard * mix + ad_buyers / xp.maximum(remaining, 1.0)
    bass_new = remaining * (1.0 - xp.exp(-total_hazard))
    constant_new = pr.market_size * k * mix + ad_buyers
    new = pr.constant_pool * constant_new + (1.0 - pr.constant_pool) * bass_new
    repeat = pr.repeat_rate * k * ctx.adopters * price_factor * season * holiday

    demand = ctx.launched * (new + repeat)
    first_share = new / xp.maximum(new + repeat, 1e-12)
    return MarketResponse(
        demand=demand,
        first_purchase_share=first_share,
        impressions=impressions,
        ctr=ctr,
        bundle_uplift=bundle_uplift,
        bundle_take=bundle_take,
        cannibalisation=has_bundle * cannibalisation,
    )
