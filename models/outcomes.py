"""Sampling one step's observed outcomes from expected ones, with a caller-owned random generator.

Demand is Poisson, or negative binomial (Gamma-Poisson, variance mu + k mu^2) when the market is
over-dispersed; impressions are Poisson and clicks binomial given impressions. The env passes its
own ``np_random`` so that the same seed gives the same trajectory whichever market it holds.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from models.response import MarketResponse


class Outcome(NamedTuple):
    demand: float
    impressions: float
    clicks: float


def sample_outcome(resp: MarketResponse, rng: np.random.Generator, overdispersion: float) -> Outcome:
    """Draw one market's demand, impressions and clicks (floats holding whole numbers)."""
    mu = max(float(resp.demand), 0.0)
    if mu <= 0.0:
        demand = 0.0
    elif overdispersion > 0.0:
        shape = 1.0 / overdispersion
        demand = float(rng.negative_binomial(shape, shape / (shape + mu)))
    else:
        demand = float(rng.poisson(mu))
    impressions = float(rng.poisson(max(float(resp.impressions), 0.0)))
    clicks = float(rng.binomial(int(impressions), float(resp.ctr))) if impressions > 0 else 0.0
    return Outcome(demand, impressions, clicks)


def expected_outcome(resp: MarketResponse) -> Outcome:
    """The expectations themselves, for planning and for noise-free evaluation."""
    return Outcome(float(resp.demand), float(resp.impressions), float(resp.impressions * resp.ctr))
