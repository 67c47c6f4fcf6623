"""Sampling a step's observed outcomes from expected ones, by inversion of pre-drawn uniforms.

Every step of an episode owns ``NOISE_SLOTS`` uniforms, drawn in one block at reset from the env's
``np_random`` (``draw_noise``). Each count is the inverse CDF of its own uniform, so
- the same seed gives the same trajectory whichever levers are pulled (common random numbers: a
  what-if replay changes outcomes only through their expectations, never by shifting the stream);
- one market stepped alone (Python floats, ``sample_outcome``) and N markets stepped as tensors
  (``sample_outcomes_batch``, torch) draw the same counts from the same uniforms.

Demand is Poisson, or Poisson with a mean-one gamma multiplier (variance mu + k mu^2, negative
binomial) when the market is over-dispersed; the multiplier is the Wilson-Hilferty transform of a
normal quantile, which matches the gamma quantile to about 1e-3 for the shapes used (1/k >= 5).
Demand splits into solo and bundle buyers (independent Poissons by thinning); impressions split
into clicks and non-clicks the same way, so impressions are Poisson and clicks binomial given them.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

from typing import TYPE_CHECKING

import numpy as np
from scipy.special import gammaincc, ndtri

from models.response import MarketResponse

if TYPE_CHECKING:  # the batch functions import torch when called; single envs never need it
    import torch

NOISE_SLOTS = 5
GAMMA, SOLO, BUNDLE, CLICKS, NON_CLICKS = range(NOISE_SLOTS)
_U_EDGE = 1e-12  # u is capped at 1 - _U_EDGE, and kept above _U_EDGE for the normal starting guess
_TABLE = 256  # log k! is tabulated below this, and from Stirling's series above (error < 1e-20)
_LOG_FACTORIAL = [math.lgamma(k + 1.0) for k in range(_TABLE)]
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class Outcome(NamedTuple):
    demand: float  # units wanted, solo + bundle buyers
    bundle_demand: float  # of which want the bundle
    impressions: float
    clicks: float


def draw_noise(rng: np.random.Generator, n_steps: int) -> np.ndarray:
    """One episode's uniforms: (n_steps, NOISE_SLOTS), consumed one row per step."""
    return rng.random((n_steps, NOISE_SLOTS))


def poisson_quantile(u: float, mu: float) -> float:
    """Smallest k with P(Poisson(mu) <= k) >= u: a normal (Cornish-Fisher) guess, then an exact walk."""
    if mu <= 0.0:
        return 0.0
    u = min(u, 1.0 - _U_EDGE)  # beyond this, float cdf sums cannot resolve u
    z = float(ndtri(max(u, _U_EDGE)))
    k = max(float(math.floor(mu + math.sqrt(mu) * z + (z * z - 1.0) / 6.0)), 0.0)
    cdf = float(gammaincc(k + 1.0, mu))
    pmf = math.exp(k * math.log(mu) - mu - log_factorial(k))
    if u > cdf:
        while u > cdf and pmf > 0.0:
            k += 1.0
            pmf = pmf * mu / k
            cdf = cdf + pmf
    else:
        while k > 0.0 and u <= cdf - pmf:
            cdf = cdf - pmf
            pmf = pmf * k / mu
            k -= 1.0
    return k


def log_factorial(k: float) -> float:
    """log k! for a whole number k: a table for small k, Stirling's series for large (the batch path does the same)."""
    if k < _TABLE:
        return _LOG_FACTORIAL[int(k)]
    x = k + 1.0
    return (x - 0.5) * math.log(x) - x + _HALF_LOG_2PI + 1.0 / (12.0 * x) - 1.0 / (360.0 * x**3) + 1.0 / (1260.0 * x**5)


def gamma_multiplier(u: float, overdispersion: float) -> float:
    """Mean-one gamma (shape 1/k) multiplier for demand, by the Wilson-Hilferty transform; 1 without over-dispersion."""
    if overdispersion <= 0.0:
        return 1.0
    z = float(ndtri(min(max(u, _U_EDGE), 1.0 - _U_EDGE)))
    c = overdispersion / 9.0  # 1 / (9 * shape)
    return max(1.0 - c + z * math.sqrt(c), 0.0) ** 3


def sample_outcome(resp: MarketResponse, noise: np.ndarray, overdispersion: float, take: float = 0.0) -> Outcome:
    """One market's counts from one row of uniforms; ``take`` is the bundle take rate (0 without a bundle)."""
    mu = max(float(resp.demand), 0.0) * gamma_multiplier(float(noise[GAMMA]), overdispersion)
    take = min(max(take, 0.0), 1.0)
    solo = poisson_quantile(float(noise[SOLO]), mu * (1.0 - take))
    bundle = poisson_quantile(float(noise[BUNDLE]), mu * take) if take > 0.0 else 0.0
    imp = max(float(resp.impressions), 0.0)
    ctr = min(max(float(resp.ctr), 0.0), 1.0)
    clicks = poisson_quantile(float(noise[CLICKS]), imp * ctr)
    non_clicks = poisson_quantile(float(noise[NON_CLICKS]), imp * (1.0 - ctr))
    return Outcome(solo + bundle, bundle, clicks + non_clicks, clicks)


def expected_outcome(resp: MarketResponse, take: float = 0.0) -> Outcome:
    """The expectations themselves, for planning and for noise-free evaluation."""
    demand = float(resp.demand)
    return Outcome(demand, demand * min(max(take, 0.0), 1.0), float(resp.impressions), float(resp.impressions * resp.ctr))


# ---------------------------------------------------------------------- batched (torch)


def poisson_quantile_batch(u: torch.Tensor, mu: torch.Tensor, max_walk: int = 64) -> torch.Tensor:
    """``poisson_quantile`` elementwise on tensors (same guess, same walk)."""
    import torch

    mu = mu.clamp(min=0.0)
    pos = mu > 0
    m = torch.where(pos, mu, torch.ones_like(mu))
    u = u.clamp(max=1.0 - _U_EDGE)
    z = torch.special.ndtri(u.clamp(min=_U_EDGE))
    k = torch.floor(m + m.sqrt() * z + (z * z - 1.0) / 6.0).clamp(min=0.0)
    cdf = torch.special.gammaincc(k + 1.0, m)
    pmf = torch.exp(k * m.log() - m - log_factorial_batch(k))
    up = u > cdf
    for _ in range(max_walk):  # one walk: up where the guess was too low, down where too high
        move_up = up & (u > cdf) & (pmf > 0)
        move_down = ~up & (k > 0) & (u <= cdf - pmf)
        if not bool((move_up | move_down).any()):
            break
        k_up = k + 1.0
        pmf_up = pmf * m / k_up
        cdf = torch.where(move_up, cdf + pmf_up, torch.where(move_down, cdf - pmf, cdf))
        pmf = torch.where(move_up, pmf_up, torch.where(move_down, pmf * k / m, pmf))
        k = torch.where(move_up, k_up, torch.where(move_down, k - 1.0, k))
    return torch.where(pos, k, torch.zeros_like(k))


@functools.cache
def _log_factorial_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    import torch

    return torch.tensor(_LOG_FACTORIAL, dtype=dtype, device=device)


def log_factorial_batch(k: torch.Tensor) -> torch.Tensor:
    """``log_factorial`` elementwise."""
    import torch

    table = _log_factorial_table(k.dtype, k.device)
    x = k.clamp(min=float(_TABLE)) + 1.0
    stirling = (x - 0.5) * x.log() - x + _HALF_LOG_2PI + 1.0 / (12.0 * x) - 1.0 / (360.0 * x**3) + 1.0 / (1260.0 * x**5)
    return torch.where(k < _TABLE, table[k.clamp(max=_TABLE - 1).long()], stirling)


def gamma_multiplier_batch(u: torch.Tensor, overdispersion: torch.Tensor) -> torch.Tensor:
    """``gamma_multiplier`` elementwise (overdispersion per market)."""
    import torch

    c = overdispersion.clamp(min=0.0) / 9.0
    z = torch.special.ndtri(u.clamp(_U_EDGE, 1.0 - _U_EDGE))
    g = (1.0 - c + z * c.sqrt()).clamp(min=0.0) ** 3
    return torch.where(overdispersion > 0, g, torch.ones_like(g))
