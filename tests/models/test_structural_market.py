"""The structural market reproduces textbook behaviour: the Bass peak, downward-sloping demand,
saturating ads, holiday lifts, and the closed-form logit optimum; arrays give the same answers as floats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launchsim.models.ops import ops_for
from launchsim.models.response import MarketContext, MarketResponse
from launchsim.models.structural_market import NO_PARTNER, CreativeParams, PartnerParams, ProductParams, StructuralMarket, structural_response
from launchsim.scenarios import load_scenario, scenario_from_dict


def ctx(**overrides) -> MarketContext:
    base = dict(
        launched=1.0, step_weeks=1.0, season=1.0, holiday=0.0, price_ratio=1.0, reference_price=100.0, flash=0.0, weeks_since_flash=1e4,
        competitor_strength=0.0, competitor_price_ratio=0.0, adstock=0.0, adopters=0.0, bundle_discount=0.0,
    )  # fmt: skip
    base.update(overrides)
    return MarketContext(**base)


def product(**overrides) -> ProductParams:
    base = dict(
        market_size=10_000.0, constant_pool=0.0, bass_p=0.03, bass_q=0.38, repeat_rate=0.0, price_alpha=1.5,
        price_beta=3.0, gift_appeal=0.5, season_sensitivity=1.0, ad_responsiveness=1.0, scenario=None,
    )  # fmt: skip
    base.update(overrides)
    return ProductParams(**base)


def expected(market: StructuralMarket, pr: ProductParams, creative: CreativeParams, partner: PartnerParams | None, c: MarketContext) -> MarketResponse:
    """The market's equations for these parameters under the scenario-level truth of ``market``."""
    truth = market.scenario.truth
    return structural_response(ops_for(c.price_ratio), pr, creative, partner or NO_PARTNER, truth.ads, truth.bundle, truth.flash, c)


CREATIVE = CreativeParams(ctr=0.02)


@pytest.fixture
def market(default_scenario):
    return StructuralMarket(default_scenario)


def test_bass_adoption_peaks_near_closed_form(market):
    p, q = 0.03, 0.38
    pr = product(bass_p=p, bass_q=q)
    adopters, weekly = 0.0, []
    for _ in range(40):
        new = expected(market, pr, CREATIVE, None, ctx(adopters=adopters)).demand
        weekly.append(new)
        adopters += new
    t_star = math.log(q / p) / (p + q)  # 6.19 weeks
    assert abs(int(np.argmax(weekly)) - t_star) <= 1.0
    assert adopters == pytest.approx(10_000.0, rel=0.01)  # the pool is exhausted, never exceeded
    assert max(weekly) > 3 * weekly[0]  # imitation, not innovation alone, drives the peak


@settings(max_examples=60, deadline=None)
@given(
    alpha=st.floats(-3, 5), beta=st.floats(0.5, 8), adopters=st.floats(0, 9000),
    low=st.floats(0.5, 1.5), step=st.floats(0.01, 0.5), rival=st.floats(0, 2),
)  # fmt: skip
def test_demand_falls_with_price(alpha, beta, adopters, low, step, rival):
    m = StructuralMarket(load_scenario("apparel_winter_coat_holiday"))
    pr = product(price_alpha=alpha, price_beta=beta)
    common = dict(adopters=adopters, competitor_strength=rival, competitor_price_ratio=0.9)
    cheap = expected(m, pr, CREATIVE, None, ctx(price_ratio=low, **common)).demand
    dear = expected(m, pr, CREATIVE, None, ctx(price_ratio=low + step, **common)).demand
    assert cheap > dear >= 0.0


def test_ad_response_saturates(market):
    ads = market.scenario.truth.ads
    spend = np.linspace(0, 30 * ads.half_saturation, 301)
    imps = np.array([expected(market, product(), CREATIVE, None, ctx(adstock=float(a))).impressions for a in spend])
    assert imps[0] == 0.0
    assert np.all(np.diff(imps) > 0)  # more spend, more impressions
    assert imps[-1] < ads.max_impressions  # but never more than the ceiling
    assert imps[-1] > 0.95 * ads.max_impressions
    gains = np.diff(imps)
    half = int(np.searchsorted(spend, 2 * ads.half_saturation))
    assert np.all(np.diff(gains[half:]) < 0)  # diminishing returns past the half-saturation point
    at_half = expected(market, product(), CREATIVE, None, ctx(adstock=ads.half_saturation)).impressions
    assert at_half == pytest.approx(ads.max_impressions / 2)


def test_clicks_lift_demand(market):
    quiet = expected(market, product(), CREATIVE, None, ctx(adopters=100.0)).demand
    loud = expected(market, product(), CREATIVE, None, ctx(adopters=100.0, adstock=8000.0)).demand
    assert loud > quiet


def test_holiday_lifts_demand_by_gift_appeal(market):
    plain = expected(market, product(gift_appeal=0.8), CREATIVE, None, ctx(adopters=500.0)).demand
    holiday = expected(market, product(gift_appeal=0.8), CREATIVE, None, ctx(adopters=500.0, holiday=1.0)).demand
    no_gift = expected(market, product(gift_appeal=0.0), CREATIVE, None, ctx(adopters=500.0, holiday=1.0)).demand
    assert holiday > 1.5 * plain
    assert no_gift == pytest.approx(plain)


def test_season_and_competitor(market):
    base = expected(market, product(), CREATIVE, None, ctx(adopters=500.0)).demand
    peak = expected(market, product(), CREATIVE, None, ctx(adopters=500.0, season=1.3)).demand
    rival = expected(market, product(), CREATIVE, None, ctx(adopters=500.0, competitor_strength=1.0, competitor_price_ratio=0.9)).demand
    cheap_rival = expected(market, product(), CREATIVE, None, ctx(adopters=500.0, competitor_strength=1.0, competitor_price_ratio=0.6)).demand
    assert peak > base > rival > cheap_rival


def test_bundle_uplift_and_take_rate(market):
    partner = PartnerParams(affinity=0.7, cannibalisation=0.25)
    none = expected(market, product(), CREATIVE, None, ctx(adopters=500.0))
    small = expected(market, product(), CREATIVE, partner, ctx(adopters=500.0, bundle_discount=0.1))
    big = expected(market, product(), CREATIVE, partner, ctx(adopters=500.0, bundle_discount=0.3))
    assert none.bundle_uplift == 1.0 and none.bundle_take == 0.0
    assert big.demand > small.demand > none.demand
    assert 0 < small.bundle_take < big.bundle_take < 0.7
    assert small.cannibalisation == 0.25


def test_flash_spike_then_dip(market):
    dip_weeks = market.scenario.truth.flash.dip_weeks
    base = expected(market, product(), CREATIVE, None, ctx(adopters=500.0)).demand
    flash = expected(market, product(), CREATIVE, None, ctx(adopters=500.0, flash=1.0, price_ratio=0.7)).demand
    after = expected(market, product(), CREATIVE, None, ctx(adopters=500.0, weeks_since_flash=1.0)).demand
    later = expected(market, product(), CREATIVE, None, ctx(adopters=500.0, weeks_since_flash=dip_weeks + 1.0)).demand
    assert flash > 2 * base
    assert after < base
    assert later == pytest.approx(base)


def test_unlaunched_sells_nothing_but_ads_run(market):
    r = expected(market, product(), CREATIVE, None, ctx(launched=0.0, adstock=5000.0))
    assert r.demand == 0.0 and r.impressions > 0


def test_batch_equals_scalar(market):
    rng = np.random.default_rng(0)
    n = 64
    fields = dict(
        adopters=rng.uniform(0, 9000, n), price_ratio=rng.uniform(0.6, 1.4, n), adstock=rng.uniform(0, 20000, n),
        holiday=rng.uniform(0, 1.5, n), season=rng.uniform(0.7, 1.3, n), competitor_strength=rng.uniform(0, 1, n),
        competitor_price_ratio=rng.uniform(0.7, 1.2, n), bundle_discount=rng.choice([0.0, 0.1, 0.2], n),
        flash=rng.choice([0.0, 1.0], n), weeks_since_flash=rng.choice([1.0, 2.0, 5.0], n),
    )  # fmt: skip
    pr = product(repeat_rate=0.03)
    partner = PartnerParams(affinity=0.6, cannibalisation=0.2)
    batch = expected(market, 
        ProductParams(*(np.full(n, v) for v in pr[:-1]), None), CreativeParams(np.full(n, 0.02)),
        PartnerParams(np.full(n, 0.6), np.full(n, 0.2)), ctx(**fields),
    )  # fmt: skip
    for i in range(n):
        one = expected(market, pr, CREATIVE, partner, ctx(**{k: float(v[i]) for k, v in fields.items()}))
        for name in ("demand", "impressions", "ctr", "bundle_uplift", "bundle_take", "first_purchase_share"):
            assert getattr(batch, name)[i] == pytest.approx(getattr(one, name), rel=1e-12, abs=1e-12)


def lambert_w(x: float) -> float:
    w = math.log1p(x)
    for _ in range(50):
        w -= (w * math.exp(w) - x) / (math.exp(w) * (w + 1))
    return w


def test_closed_form_optimal_price():
    s = load_scenario("home_cutting_board_closed_form")
    m = StructuralMarket(s)
    prod = s.products[0]
    t = s.truth.products[prod.name]
    enc = m.encode([prod.text], "product")[0]
    c = prod.unit_cost / prod.reference_price
    x_star = c + (1 + lambert_w(math.exp(t.price_alpha - t.price_beta * c - 1))) / t.price_beta
    grid = np.linspace(0.6, 1.4, 8001)
    demand = expected(m, ProductParams(*(np.full(grid.size, v) for v in enc[:-1]), None), CreativeParams(0.01), None, ctx(price_ratio=grid)).demand
    profit = demand * (grid - c) * prod.reference_price
    assert grid[np.argmax(profit)] == pytest.approx(x_star, abs=2e-4)
    assert x_star == pytest.approx(0.74767, abs=1e-5)  # the figure the scenario file states


def test_encode_unknown_text_is_a_predictor_error(market):
    from launchsim.errors import PredictorError

    with pytest.raises(PredictorError, match="no product text"):
        market.encode(["a text the scenario never mentions"], "product")


def test_constant_pool_ignores_adoption():
    data = load_scenario("home_cutting_board_closed_form").model_dump()
    s = scenario_from_dict(data)
    m = StructuralMarket(s)
    enc = m.encode([s.products[0].text], "product")[0]
    assert expected(m, enc, CreativeParams(0.01), None, ctx(adopters=0.0)).demand == pytest.approx(
        expected(m, enc, CreativeParams(0.01), None, ctx(adopters=5000.0)).demand
    )
