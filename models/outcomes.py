"""Sampling a step's observed outcomes from expected ones, by inversion of pre-drawn uniforms.

Every step of an episode owns ``NOISE_SLOTS`` uniforms, drawn in one block at reset from the env's
``np_random`` (``draw_noise``). Each count is the inverse CDF of its own uniform, so
- the same seed gives the same trajectory whichever levers are pulled (common random numbers: a
  what-if replay changes outcomes only through their expectations, never by shifting the stream);
- one market on Python numbers and N markets on arrays or tensors (``models.ops``) run this same
  code and draw the same counts from the same uniforms.

Demand is Poisson, or Poisson with a mean-one gamma multiplier (variance mu + k mu^2, negative
binomial) when the market is over-dispersed; the multiplier is the Wilson-Hilferty transform of a
normal quantile, which matches the gamma quantile to about 1e-3 for the shapes used (1/k >= 5).
Demand splits into solo and bundle buyers (independent Poissons by thinning); impressions split
into clicks and non-clicks the same way, so impressions are Poisson and clicks binomial given them.

The Poisson quantile: a normal (Cornish-Fisher) guess, the exact CDF there, then a walk of one unit
at a time to the smallest k with P(X <= k) >= u. A batch on a CPU anchors its walk on a cheap
approximation of the CDF first and repeats the walk from the exact CDF only where the approximation
cannot decide the count (``_cheap_cdf``); the counts are those of the exact anchor either way.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from launchsim.models.ops import SCALAR

NOISE_SLOTS = 5
GAMMA, SOLO, BUNDLE, CLICKS, NON_CLICKS = range(NOISE_SLOTS)
_U_EDGE = 1e-12  # u is capped at 1 - _U_EDGE (``ops.u_cap``), and kept above _U_EDGE for the normal starting guess
GRAPH_WALK = 8  # walk steps inside a CUDA graph (no device sync): enough for means up to 1e6 (measured on 2M draws)


class Outcome(NamedTuple):
    demand: Any  # units wanted, solo + bundle buyers
    bundle_demand: Any  # of which want the bundle
    impressions: Any
    clicks: Any


def draw_noise(rng: np.random.Generator, n_steps: int) -> np.ndarray:
    """One episode's uniforms: (n_steps, NOISE_SLOTS), consumed one row per step."""
    return rng.random((n_steps, NOISE_SLOTS))


def sample_outcome(
    x: Any, u: Any, demand: Any, take: Any, impressions: Any, ctr: Any, overdispersion: Any,
    with_impressions: bool = True, graph_walk: bool = False,
) -> tuple[Outcome, Any]:  # fmt: skip
    """Counts from one row of uniforms per market (``u``: the step's ``NOISE_SLOTS`` uniforms). Without
    ``with_impressions`` the impressions stay expected (they reach neither observation nor reward).
    ``graph_walk``: a fixed walk with no device sync (a CUDA graph). Returns the outcome and the number
    of counts the walk left unfinished (0 outside a graph)."""
    mu = x.maximum(demand, 0.0) * gamma_multiplier(x, x.col(u, GAMMA), overdispersion)
    take = x.minimum(x.maximum(take, 0.0), 1.0)
    imp, ctr = x.maximum(impressions, 0.0), x.minimum(x.maximum(ctr, 0.0), 1.0)
    slots, means = [SOLO, BUNDLE, CLICKS], [mu * (1.0 - take), mu * take, imp * ctr]
    if with_impressions:
        slots.append(NON_CLICKS), means.append(imp * (1.0 - ctr))
    counts, unfinished = poisson_quantiles(x, u, slots, means, graph_walk)
    solo, bundle, clicks = counts[:3]
    return Outcome(solo + bundle, bundle, clicks + counts[3] if with_impressions else imp, clicks), unfinished


def expected_outcome(x: Any, demand: Any, take: Any, impressions: Any, ctr: Any) -> Outcome:
    """The expectations themselves, for planning and for noise-free evaluation."""
    return Outcome(demand, demand * x.minimum(x.maximum(take, 0.0), 1.0), impressions, impressions * ctr)


def poisson_quantiles(x: Any, u: Any, slots: list[int], means: list[Any], graph_walk: bool = False) -> tuple[list[Any], Any]:
    """Several Poisson quantiles of one step (uniform column ``slots[i]``, mean ``means[i]``). A batch
    computes them in one call, so that per-call costs are paid once."""
    if x.kind == "scalar":
        return [_quantile_one(u[s], m) if m > 0.0 else 0.0 for s, m in zip(slots, means)], 0
    counts, unfinished = poisson_quantile(x, x.columns(u, slots), x.cat_flat(means), graph_walk=graph_walk, unfinished=True)
    n = len(means[0])
    return [counts[i * n : (i + 1) * n] for i in range(len(means))], unfinished


def poisson_quantile(x: Any, u: Any, mu: Any, max_walk: int = 64, graph_walk: bool = False, unfinished: bool = False) -> Any:
    """Smallest k with P(Poisson(mu) <= k) >= u, elementwise (0 where mu <= 0); with ``unfinished``
    also the number of elements the walk did not finish (non-zero only with ``graph_walk``)."""
    if x.kind == "scalar":
        k = _quantile_one(u, mu) if mu > 0.0 else 0.0
        return (k, 0) if unfinished else k
    dtype, (u, mu) = mu.dtype, x.wide(u, mu)  # float64: in float32 k log mu - mu - log k! cancels at large means
    u = x.minimum(u, 1.0 - _U_EDGE)  # a uniform that rounds to 1 would give an infinite quantile
    pos, left = mu > 0, 0
    if x.kind == "numpy":  # zero means (no launch, no ads, no bundle) need no work
        k = x.masked(pos, _quantile_gathered, (u, mu, max_walk), 0.0)
    else:
        m = x.where(pos, mu, 1.0)
        k0 = _guess(x, u, m)
        walk = (GRAPH_WALK, 0) if graph_walk else (max_walk, 4)  # a graph cannot ask the device whether any still moves
        k, cdf, pmf = _walk(x, u, m, k0, x.gammaincc(k0 + 1.0, m), *walk)
        if graph_walk:
            left = x.sum(_moving(u, k, cdf, pmf) & pos)
        k = x.where(pos, k, 0.0)
    counts = x.astype(k, dtype)
    return (counts, left) if unfinished else counts


def _quantile_gathered(x: Any, u: Any, m: Any, max_walk: int) -> Any:
    """The batch on a CPU: the walk anchored on the cheap CDF, then from the exact CDF where that cannot decide."""
    k0 = _guess(x, u, m)
    a = k0 + 1.0
    k, cdf, pmf = _walk(x, u, m, k0, _cheap_cdf(x, a, m), max_walk)
    tol = 4e-3 / (a * x.sqrt(a)) + (1e-8 + 64.0 * x.eps(u))  # truncation, rounding, and the walk's own rounding
    sure = (u < cdf - tol) & ((k == 0) | (u > cdf - pmf + tol)) & (a >= _CHEAP_MIN) & (a <= _CHEAP_MAX)
    exact = lambda x, u, m, k0: _walk(x, u, m, k0, x.gammaincc(k0 + 1.0, m), max_walk)[0]  # noqa: E731
    return x.masked(x.not_(sure), exact, (u, m, k0), k)


def _quantile_one(u: float, mu: float) -> float:
    """``poisson_quantile`` of one positive mean: the guess, the exact anchor and the walk of the batch forms."""
    u = min(u, 1.0 - _U_EDGE)  # beyond this, float cdf sums cannot resolve u
    k = _guess(SCALAR, u, mu)
    return float(_walk(SCALAR, u, mu, k, SCALAR.gammaincc(k + 1.0, mu), _ENDLESS)[0])


_ENDLESS = 1 << 62  # one number's walk always ends: no bound


def _guess(x: Any, u: Any, m: Any) -> Any:
    """The walk's start: a Cornish-Fisher count from the normal quantile of u."""
    u = x.maximum(u, _U_EDGE)
    z = x.choose(abs(u - 0.5) > 0.5 - _ACKLAM_LOW, _normal_tail, _normal_central, (u,))  # normal_quantile(x, u)
    return x.maximum(x.floor(m + x.sqrt(m) * z + (z * z - 1.0) / 6.0), 0.0)


def _moving(u: Any, k: Any, cdf: Any, pmf: Any) -> Any:
    """Whether the walk must still go up (u above the CDF at k) or down (u also at or below the CDF at k - 1)."""
    return ((u > cdf) & (pmf > 0)) | ((k > 0) & (u <= cdf - pmf))


def _walk(x: Any, u: Any, m: Any, k: Any, cdf: Any, max_walk: int, check_every: int = 1) -> tuple[Any, Any, Any]:
    """From the guess k with P(X <= k) = cdf, step up (while u is above the CDF) then down (while u is
    at or below the CDF at k - 1) by the pmf, to the smallest k with u <= cdf; returns k, the CDF and the
    pmf there. ``repeat_while`` moves only the elements still moving (one number loops; a batch on a CPU
    carries just those; a GPU steps all in lockstep under masks, asking whether any still moves every
    ``check_every`` steps, never with 0: no device sync inside a CUDA graph)."""
    pmf = x.exp(k * x.log(m) - m - x.lgamma(k + 1.0))  # log k! = log Gamma(k + 1)
    k, pmf, cdf = x.repeat_while(_WALK, (k, pmf, cdf), (u, m), max_walk, check_every)
    return k, cdf, pmf


def _going_up(k: Any, pmf: Any, cdf: Any, u: Any, m: Any) -> Any:
    return (u > cdf) & (pmf > 0)


def _up(k: Any, pmf: Any, cdf: Any, u: Any, m: Any) -> tuple[Any, Any, Any]:
    k = k + 1.0
    pmf = pmf * m / k
    return k, pmf, cdf + pmf


def _going_down(k: Any, pmf: Any, cdf: Any, u: Any, m: Any) -> Any:
    return (k > 0) & (u <= cdf - pmf)


def _down(k: Any, pmf: Any, cdf: Any, u: Any, m: Any) -> tuple[Any, Any, Any]:
    return k - 1.0, pmf * k / m, cdf - pmf


_WALK = ((_going_up, _up), (_going_down, _down))  # up, then down (rounding can leave a step down after steps up)


# The normal quantile only sets where the walk starts (the count is the walk's), so Acklam's rational
# approximation (relative error below 1.2e-9) stands in for ``ndtri``: a third of its cost on a batch.
_ACKLAM_A = (
    -3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01,
    2.506628277459239e00,
)  # fmt: skip
_ACKLAM_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_ACKLAM_C = (
    -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00,
    2.938163982698783e00,
)  # fmt: skip
_ACKLAM_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_ACKLAM_LOW = 0.02425


def _normal_central(x: Any, u: Any) -> Any:
    a, b = _ACKLAM_A, _ACKLAM_B
    q = u - 0.5
    r = q * q
    numerator = ((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]
    return q * numerator / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)


def _normal_tail(x: Any, u: Any) -> Any:
    c, d = _ACKLAM_C, _ACKLAM_D
    s = x.sqrt(-2.0 * x.log(x.minimum(u, 1.0 - u)))
    numerator = ((((c[0] * s + c[1]) * s + c[2]) * s + c[3]) * s + c[4]) * s + c[5]
    t = numerator / ((((d[0] * s + d[1]) * s + d[2]) * s + d[3]) * s + 1.0)
    return x.where(u < 0.5, t, -t)


def normal_quantile(x: Any, u: Any) -> Any:
    """The standard normal quantile of u in (0, 1) to a relative 1.2e-9 (Acklam): the central formula,
    or the tail formula where u is in a tail."""
    return x.choose(abs(u - 0.5) > 0.5 - _ACKLAM_LOW, _normal_tail, _normal_central, (u,))


# The CPU batch anchors its walk on Temme's uniform expansion of Q(k + 1, mu) to first order instead
# of ``gammaincc`` (about 100 ns an element on a CPU). Its error, measured against scipy's ``gammaincc``
# over mu from 0.5 to 1e10 and every k a quantile can reach, is below 7.4e-4 * a**-1.5 (a = k + 1) for
# 5 <= a <= 5e5 and rounding adds less than 4e-11; a count is accepted only where u lies more than the
# tolerance (over 5 times that) from both CDF values around it, so the exact walk would end on the
# same k. The rest (guesses with a outside that range, nearly all small means, and draws within the
# tolerance of a boundary: about 4% of the draws in the benchmark's market) walks again from ``gammaincc``.
_CHEAP_MIN, _CHEAP_MAX = 5.0, 5e5


def _cheap_cdf(x: Any, a: Any, m: Any) -> Any:
    """Q(a, m) to first order in 1/a (Temme): an erfc term plus one correction."""
    d = (m - a) / a  # lambda - 1
    eta2 = 2.0 * (d - x.log1p(d))
    eta = x.copysign(x.sqrt(x.maximum(eta2, 0.0)), d)
    small = abs(d) < 1e-3  # 1/d - 1/eta cancels there: its series instead
    c0 = 1.0 / x.where(small, 1.0, d) - 1.0 / x.where(small, 1.0, eta)
    c0 = x.masked(small, lambda x, e: -1.0 / 3.0 + e / 12.0 - e * e * (2.0 / 135.0), (eta,), c0)
    root_a = x.sqrt(a)
    return 0.5 * x.erfc(eta * root_a * math.sqrt(0.5)) + x.exp(-0.5 * a * eta2) * c0 / (root_a * math.sqrt(2.0 * math.pi))


def gamma_multiplier(x: Any, u: Any, overdispersion: Any) -> Any:
    """Mean-one gamma (shape 1/k) multiplier for demand, by the Wilson-Hilferty transform; 1 without over-dispersion."""
    return x.masked(overdispersion > 0, _wilson_hilferty, (u, overdispersion), 1.0)


def _wilson_hilferty(x: Any, u: Any, overdispersion: Any) -> Any:
    c = overdispersion / 9.0  # 1 / (9 shape)
    z = x.ndtri(x.minimum(x.maximum(u, _U_EDGE), x.u_cap))
    return x.maximum(1.0 - c + z * x.sqrt(c), 0.0) ** 3
