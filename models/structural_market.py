"""The structural market: the ground truth that generates logs and judges policies.

Weekly demand comes from Bass diffusion (or a constant weekly pool) scaled by seasonality, holiday
uplift (by gift appeal), a logit price response against the competitor, ad clicks converted into
purchases, bundle uplift and flash-sale spikes with a post-sale dip. The equations, their parameter
ranges and sources are in docs/MARKET.md. It implements ``models.response.ResponseModel``; its
"encoding" of a text is the hidden parameter record that the scenario's ``truth`` block holds for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
from launchsim.models.response import MarketContext, MarketResponse, MarketTexts, TextRole
from launchsim.scenarios.schema import Scenario

from launchsim.errors import PredictorError


class ScenarioParams(NamedTuple):
    """The scenario-level truth every product of a scenario shares: ads platform, bundle and flash-sale
    responses, demand over-dispersion."""

    ads: Any
    bundle: Any
    flash: Any
    overdispersion: float


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
    scenario: ScenarioParams


class CreativeParams(NamedTuple):
    ctr: float


class PartnerParams(NamedTuple):
    affinity: float
    cannibalisation: float


NO_PARTNER = PartnerParams(0.0, 0.0)  # option 0: no bundle


class StructuralMarket:
    """Ground-truth response model of one scenario (``ResponseModel``)."""

    def __init__(self, scenario: Scenario):
        truth = scenario.require_truth("the structural (ground-truth) market")
        self.scenario = scenario
        self.demand_overdispersion = float(truth.demand_overdispersion)
        shared = ScenarioParams(truth.ads, truth.bundle, truth.flash, self.demand_overdispersion)
        texts = {}
        for product in scenario.products:
            t = truth.products[product.name]
            texts[("product", product.text)] = ProductParams(
                t.market_size, float(t.diffusion == "constant"), t.bass_p, t.bass_q, t.repeat_rate,
                t.price_alpha, t.price_beta, t.gift_appeal, t.season_sensitivity, t.ad_responsiveness, shared,
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

    def responder(self, x: Any, markets: Sequence[MarketTexts]) -> StructuralResponder:
        """The markets' hidden parameters laid out for stepping (``models.response.ResponseModel``)."""
        return StructuralResponder(x, markets)


class StructuralResponder:
    """The structural market's equations bound to N markets (their encodings may come from the structural
    markets of several scenarios): parameters as numbers for one market, as per-market columns for a batch."""

    def __init__(self, x: Any, markets: Sequence[MarketTexts]):
        self.x = x
        creatives = max(len(m.creatives) for m in markets)
        options = max(len(m.options) for m in markets)
        ctr = [[m.creatives[min(c, len(m.creatives) - 1)].ctr for c in range(creatives)] for m in markets]
        partners = [[m.options[min(o, len(m.options) - 1)][0] or NO_PARTNER for o in range(options)] for m in markets]
        if x.kind == "scalar":
            (m,) = markets
            self.product, self.scenario = m.product, m.product.scenario
            self.ctr, self.affinity, self.cannibalisation = ctr[0], [p.affinity for p in partners[0]], [p.cannibalisation for p in partners[0]]
            self.overdispersion = self.scenario.overdispersion
            return
        column = lambda values: x.asarray(np.asarray(values, dtype=np.float64), float_type=True)  # noqa: E731
        products = [m.product for m in markets]
        self.product = ProductParams(*(column([getattr(p, f) for p in products]) for f in ProductParams._fields[:-1]), None)
        scenarios = [p.scenario for p in products]
        self.scenario = ScenarioParams(
            *(_record_columns([getattr(s, group) for s in scenarios], column) for group in ("ads", "bundle", "flash")),
            column([s.overdispersion for s in scenarios]),
        )  # fmt: skip
        self.ctr = column(ctr)
        self.affinity = column([[p.affinity for p in row] for row in partners])
        self.cannibalisation = column([[p.cannibalisation for p in row] for row in partners])
        self.overdispersion = self.scenario.overdispersion

    def respond(self, ctx: MarketContext, creative: Any, option: Any) -> MarketResponse:
        x = self.x
        s = self.scenario
        partner = (x.take(self.affinity, option), x.take(self.cannibalisation, option))
        return structural_response(x, self.product, (x.take(self.ctr, creative),), partner, s.ads, s.bundle, s.flash, ctx)


def _record_columns(records: list[Any], column: Any) -> SimpleNamespace:
    """Per-market columns of the numeric fields of pydantic records."""
    dumps = [r.model_dump() for r in records]
    return SimpleNamespace(**{k: column([d[k] for d in dumps]) for k, v in dumps[0].items() if isinstance(v, int | float)})


def structural_response(
    x: Any, pr: ProductParams, creative: CreativeParams, partner: PartnerParams, ads: Any, bundle: Any, flash: Any, ctx: MarketContext
) -> MarketResponse:
    """The market's equations for one market (Python numbers, ``x`` = ``SCALAR``) or a batch (the
    parameters and the scenario-level ``ads``, ``bundle`` and ``flash`` truth as per-market columns).
    ``creative`` is (ctr,) and ``partner`` (affinity, cannibalisation), as records or plain tuples."""
    k = ctx.step_weeks
    # Ads: adstock (per week) through Hill saturation into impressions, then clicks.
    weekly_stock = ctx.adstock / k
    a_h = weekly_stock**ads.hill_shape
    hill = a_h / (a_h + ads.half_saturation**ads.hill_shape)
    impressions = k * ads.max_impressions * hill
    ctr = x.minimum(creative[0] * pr.ad_responsiveness, 0.5)

    # Price: logit share against the competitor and the outside option, relative to the
    # share at the reference price with no competitor (so the Bass rates describe that case).
    exp_u = x.exp(pr.price_alpha - pr.price_beta * ctx.price_ratio)
    rival = ctx.competitor_strength * x.exp(pr.price_alpha - pr.price_beta * ctx.competitor_price_ratio)
    exp_ref = x.exp(pr.price_alpha - pr.price_beta)
    price_factor = (exp_u / (1.0 + exp_u + rival)) / (exp_ref / (1.0 + exp_ref))

    # Calendar, flash sale, bundle: multiplicative on the purchase hazard.
    season = x.maximum(1.0 + pr.season_sensitivity * (ctx.season - 1.0), 0.05)
    holiday = 1.0 + pr.gift_appeal * ctx.holiday
    in_dip = (ctx.weeks_since_flash >= 1) * (ctx.weeks_since_flash <= flash.dip_weeks)
    flash_factor = (1.0 + flash.spike * ctx.flash) * (1.0 - flash.dip * in_dip)
    affinity, cannibalisation = partner
    d = ctx.bundle_discount
    has_bundle = d > 0
    bundle_uplift = 1.0 + has_bundle * affinity * (bundle.lift_base + bundle.lift_per_discount * d)
    bundle_take = has_bundle * affinity * d / (d + bundle.take_half_discount)
    mix = season * holiday * price_factor * flash_factor * bundle_uplift

    # Clicks convert into purchases at the going price.
    ad_buyers = impressions * ctr * ads.click_conversion * price_factor * flash_factor

    # Diffusion: Bass hazard (p + q N/M) on the remaining pool, saturating so that new adopters
    # never exceed it; or, for a constant pool, M weekly potential buyers at reference terms.
    remaining = x.maximum(pr.market_size - ctx.adopters, 0.0)
    hazard = (pr.bass_p + pr.bass_q * ctx.adopters / pr.market_size) * k
    total_hazard = hazard * mix + ad_buyers / x.maximum(remaining, 1.0)
    bass_new = remaining * (1.0 - x.exp(-total_hazard))
    constant_new = pr.market_size * k * mix + ad_buyers
    new = pr.constant_pool * constant_new + (1.0 - pr.constant_pool) * bass_new
    repeat = pr.repeat_rate * k * ctx.adopters * price_factor * season * holiday

    demand = ctx.launched * (new + repeat)
    first_share = new / x.maximum(new + repeat, 1e-12)
    return MarketResponse(
        demand=demand,
        first_purchase_share=first_share,
        impressions=impressions,
        ctr=ctr,
        bundle_uplift=bundle_uplift,
        bundle_take=bundle_take,
        cannibalisation=has_bundle * cannibalisation,
    )
