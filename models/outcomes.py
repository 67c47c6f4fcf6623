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
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from scipy.special import gammaincc, ndtri

from launchsim.models.response import MarketResponse

if TYPE_CHECKING:  # the batch functions import torch when called; single envs never need it
    import torch

NOISE_SLOTS = 5
GAMMA, SOLO, BUNDLE, CLICKS, NON_CLICKS = range(NOISE_SLOTS)
_U_EDGE = 1e-12  # u is capped at 1 - _U_EDGE, and kept above _U_EDGE for the normal starting guess
_TABLE = 256  # log k! is tabulated below this, and from Stirling's series above (error < 1e-20), in Horner form
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


# The walk starts from a normal quantile; its exactness only sets where the walk starts (the count is the
# walk's), so Acklam's rational approximation (relative error below 1.2e-9) stands in for ``ndtri``: a
# third of its cost on a batch, and no ufunc call per scalar. Central region, then the lower tail.
_ACKLAM_A = (
    -3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02, -3.066479806614716e01,
    2.506628277459239e00,
)
_ACKLAM_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01, -1.328068155288572e01)
_ACKLAM_C = (
    -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00, 4.374664141464968e00,
    2.938163982698783e00,
)
_ACKLAM_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_ACKLAM_LOW = 0.02425


def normal_quantile_guess(u: float) -> float:
    """The standard normal quantile of u in (0, 1) to a relative 1.2e-9 (Acklam); the batch path computes the same."""
    q = u - 0.5
    if abs(q) <= 0.5 - _ACKLAM_LOW:
        return q * _acklam_central(q * q)
    t = _acklam_tail(math.sqrt(-2.0 * math.log(min(u, 1.0 - u))))
    return t if u < 0.5 else -t


def _acklam_central(r: Any) -> Any:
    a, b = _ACKLAM_A, _ACKLAM_B
    numerator = ((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]
    return numerator / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)


def _acklam_tail(s: Any) -> Any:
    c, d = _ACKLAM_C, _ACKLAM_D
    numerator = ((((c[0] * s + c[1]) * s + c[2]) * s + c[3]) * s + c[4]) * s + c[5]
    return numerator / ((((d[0] * s + d[1]) * s + d[2]) * s + d[3]) * s + 1.0)


def poisson_quantile(u: float, mu: float) -> float:
    """Smallest k with P(Poisson(mu) <= k) >= u: a normal (Cornish-Fisher) guess, then an exact walk."""
    if mu <= 0.0:
        return 0.0
    u = min(u, 1.0 - _U_EDGE)  # beyond this, float cdf sums cannot resolve u
    z = normal_quantile_guess(max(u, _U_EDGE))
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
    r = 1.0 / x
    r2 = r * r
    return (x - 0.5) * math.log(x) - x + _HALF_LOG_2PI + r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 / 1260.0))


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


# ---------------------------------------------------------------------- batched (NumPy on a CPU, torch elsewhere)
#
# The batch functions take and return torch tensors. On a CPU they run on the tensors' memory as NumPy
# arrays (zero-copy): at a few thousand elements an op costs about 1 us there against 2-15 us through
# torch's dispatcher, and scipy's ``gammaincc`` is the very function the scalar path calls. On a GPU
# the same code runs through torch. ``_numpy_ops``/``_torch_ops`` are the few names the code needs.


def _numpy_ops() -> SimpleNamespace:
    from scipy.special import erfc

    return SimpleNamespace(
        where=np.where, exp=np.exp, log=np.log, log1p=np.log1p, sqrt=np.sqrt, floor=np.floor, copysign=np.copysign,
        maximum=np.maximum, minimum=np.minimum, erfc=erfc, ndtri=ndtri, gammaincc=gammaincc,
        zeros_like=np.zeros_like, flatnonzero=np.flatnonzero, as_index=lambda x: x.astype(np.int64), eps=lambda x: float(np.finfo(x.dtype).eps),
        table=lambda x: _LOG_FACTORIAL_NP,
    )  # fmt: skip


@functools.cache
def _torch_ops() -> SimpleNamespace:
    import torch

    return SimpleNamespace(
        where=torch.where, exp=torch.exp, log=torch.log, log1p=torch.log1p, sqrt=torch.sqrt, floor=torch.floor, copysign=torch.copysign,
        maximum=lambda a, b: torch.maximum(a, b) if isinstance(b, torch.Tensor) else a.clamp(min=b),
        minimum=lambda a, b: torch.minimum(a, b) if isinstance(b, torch.Tensor) else a.clamp(max=b), erfc=torch.special.erfc,
        ndtri=torch.special.ndtri, gammaincc=torch.special.gammaincc, zeros_like=torch.zeros_like, flatnonzero=lambda x: x.nonzero().squeeze(1),
        as_index=lambda x: x.long(), eps=lambda x: torch.finfo(x.dtype).eps, table=lambda x: _log_factorial_table(x.dtype, x.device),
    )  # fmt: skip


_LOG_FACTORIAL_NP = np.array(_LOG_FACTORIAL)
_NP = _numpy_ops()


def _on_host(*tensors: torch.Tensor) -> bool:
    import torch

    return all(t.device.type == "cpu" and t.dtype in (torch.float64, torch.float32) for t in tensors)


def _batch(fn: Any, *tensors: Any, **kwargs: Any) -> Any:
    """Run ``fn(xp, *arrays)`` on NumPy arrays as they are, on NumPy views of CPU tensors, or on the
    tensors themselves elsewhere; the result has the inputs' kind."""
    import torch

    if isinstance(tensors[0], np.ndarray):
        return np.asarray(fn(_NP, *tensors, **kwargs), dtype=tensors[0].dtype)
    if _on_host(*tensors):
        arrays = [t.detach().numpy() if t.is_contiguous() else t.detach().contiguous().numpy() for t in tensors]
        return torch.from_numpy(np.asarray(fn(_NP, *arrays, **kwargs), dtype=arrays[0].dtype))
    return fn(_torch_ops(), *tensors, **kwargs)


# The batch path anchors its walk on a cheap approximation of the Poisson CDF (Temme's uniform expansion
# of Q(k + 1, mu), first order) instead of ``gammaincc`` (about 100 ns an element on a CPU). Its error,
# measured against scipy's ``gammaincc`` over mu from 0.5 to 1e10 and every k a quantile can reach, is
# below 7.4e-4 * a**-1.5 (a = k + 1) for 5 <= a <= 5e5 and rounding adds less than 4e-11; a count is
# accepted only where u lies more than the tolerance ``tol`` (over 5 times that) from both CDF values
# around it, so the exact walk would end on the same k. The rest (guesses with a outside that range,
# nearly all small means, and draws within the tolerance of a boundary: about 4% of the draws in the
# benchmark's market) is recomputed with ``gammaincc``.
_TEMME_MIN, _TEMME_MAX = 5.0, 5e5


def poisson_quantile_batch(u: torch.Tensor, mu: torch.Tensor, max_walk: int = 64) -> torch.Tensor:
    """``poisson_quantile`` elementwise on tensors or NumPy arrays: the same guess and walk, so the same counts."""
    if not isinstance(u, np.ndarray) and not _on_host(u, mu):
        return poisson_quantile_dense(u, mu, max_walk)
    return _batch(_poisson_quantile, u, mu, max_walk=max_walk)


def poisson_quantile_fixed(u: torch.Tensor, mu: torch.Tensor, steps: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``poisson_quantile_dense`` with exactly ``steps`` walk steps and no device sync (what a CUDA graph
    can hold), and the number of elements still walking after them (0 when every count is exact).
    From the guess the walk takes at most 6 steps for means up to 1e6 (measured on 2M draws)."""
    return _dense_walk(u, mu, steps, check_every=None)


def poisson_quantile_dense(u: torch.Tensor, mu: torch.Tensor, max_walk: int = 64, check_every: int = 4) -> torch.Tensor:
    """``poisson_quantile`` for tensors on a GPU: the same guess and walk, but every element steps in
    lockstep under masks and the device is asked whether any still moves only every ``check_every``
    steps. The gathers of the CPU form (carrying only moving elements) would cost a device sync per
    step. Anchored on ``gammaincc`` and ``lgamma`` (elementwise kernels, cheap there), in float64 whatever
    the inputs' dtype: in float32, k log mu - mu - log k! cancels to nothing at large means."""
    return _dense_walk(u, mu, max_walk, check_every)[0]


def _dense_walk(u: Any, mu: Any, max_walk: int, check_every: int | None) -> tuple[Any, Any]:
    import torch

    dtype = mu.dtype
    u, mu = u.double(), mu.double()
    pos = mu > 0
    m = torch.where(pos, mu, torch.ones_like(mu))
    u = u.clamp(max=_u_cap(_torch_ops(), u))
    ug = u.clamp(min=_U_EDGE)
    q = ug - 0.5
    tail = _acklam_tail(torch.sqrt(-2.0 * torch.log(torch.minimum(ug, 1.0 - ug))))
    z = torch.where(q.abs() > 0.5 - _ACKLAM_LOW, torch.where(ug < 0.5, tail, -tail), q * _acklam_central(q * q))
    k = torch.floor(m + torch.sqrt(m) * z + (z * z - 1.0) / 6.0).clamp(min=0.0)
    cdf = torch.special.gammaincc(k + 1.0, m)
    pmf = torch.exp(k * torch.log(m) - m - torch.lgamma(k + 1.0))
    for step in range(max_walk):
        up = (u > cdf) & (pmf > 0)
        down = ~up & (k > 0) & (u <= cdf - pmf)
        if check_every is not None and step % check_every == 0 and not bool((up | down).any()):
            break
        k_up = k + 1.0
        pmf_up = pmf * m / k_up
        k, pmf, cdf = (
            torch.where(up, k_up, torch.where(down, k - 1.0, k)),
            torch.where(up, pmf_up, torch.where(down, pmf * k / m, pmf)),
            torch.where(up, cdf + pmf_up, torch.where(down, cdf - pmf, cdf)),
        )
    moving = ((u > cdf) & (pmf > 0)) | ((k > 0) & (u <= cdf - pmf))
    return torch.where(pos, k, torch.zeros_like(k)).to(dtype), (moving & pos).sum()


def _poisson_quantile(xp: Any, u: Any, mu: Any, max_walk: int, exact_anchor: bool = False) -> Any:
    """The batch quantile; ``exact_anchor`` anchors every walk on ``gammaincc`` (the reference the cheap
    anchor must reproduce, used by the tests)."""
    counts = xp.zeros_like(mu)
    where = xp.flatnonzero(mu > 0)  # zero means (no launch, no ads, no bundle) need no work
    m, u = mu[where], xp.minimum(u[where], _u_cap(xp, u))
    z = _normal_quantile_guess(xp, xp.maximum(u, _U_EDGE))
    k0 = xp.maximum(xp.floor(m + xp.sqrt(m) * z + (z * z - 1.0) / 6.0), 0.0)
    a = k0 + 1.0
    if exact_anchor:
        counts[where] = _walk(xp, u, m, k0, xp.gammaincc(a, m), max_walk)[0]
        return counts
    k, cdf, pmf = _walk(xp, u, m, k0, _temme_cdf(xp, a, m), max_walk)
    tol = 4e-3 / (a * xp.sqrt(a)) + (1e-8 + 64.0 * xp.eps(u))  # truncation, rounding, and the walk's own rounding (float32 on a GPU)
    sure = (u < cdf - tol) & ((k == 0) | (u > cdf - pmf + tol)) & (a >= _TEMME_MIN) & (a <= _TEMME_MAX)
    if not bool(sure.all()):
        idx = xp.flatnonzero(~sure)
        mi, ui, ki = m[idx], u[idx], k0[idx]
        k[idx] = _walk(xp, ui, mi, ki, xp.gammaincc(ki + 1.0, mi), max_walk)[0]
    counts[where] = k
    return counts


def _u_cap(xp: Any, u: Any) -> float:
    """1 - _U_EDGE, or 1 - eps where the dtype cannot hold that (float32: a number below 1 it holds):
    a uniform that rounds to 1 would give an infinite quantile."""
    return 1.0 - max(_U_EDGE, xp.eps(u))


def _normal_quantile_guess(xp: Any, u: Any) -> Any:
    """``normal_quantile_guess`` elementwise: the central formula everywhere, the tail formula where needed."""
    q = u - 0.5
    z = q * _acklam_central(q * q)
    tail = xp.flatnonzero(abs(q) > 0.5 - _ACKLAM_LOW)
    if len(tail):
        ut = u[tail]
        t = _acklam_tail(xp.sqrt(-2.0 * xp.log(xp.minimum(ut, 1.0 - ut))))
        z[tail] = xp.where(ut < 0.5, t, -t)
    return z


def _walk(xp: Any, u: Any, m: Any, k: Any, cdf: Any, max_walk: int) -> tuple[Any, Any, Any]:
    """From the guess k with P(X <= k) = cdf, step up or down by the pmf to the smallest k with u <= cdf;
    returns k, the CDF and the pmf there. Only the elements still moving are carried along (most stop
    after one step), with the arithmetic of ``poisson_quantile``'s walk."""
    pmf = xp.exp(k * xp.log(m) - m - _log_factorial(xp, k))
    k, cdf = k + 0.0, cdf + 0.0  # copies: written in place below
    for up in (True, False):
        idx = xp.flatnonzero((u > cdf) & (pmf > 0) if up else (k > 0) & (u <= cdf - pmf))
        kk, pp, cc, uu, mm = k[idx], pmf[idx], cdf[idx], u[idx], m[idx]
        for _ in range(max_walk):
            if len(idx) == 0:
                break
            if up:
                kk = kk + 1.0
                pp = pp * mm / kk
                cc = cc + pp
            else:
                cc = cc - pp
                pp = pp * kk / mm
                kk = kk - 1.0
            k[idx], pmf[idx], cdf[idx] = kk, pp, cc
            go = (uu > cc) & (pp > 0) if up else (kk > 0) & (uu <= cc - pp)
            idx, kk, pp, cc, uu, mm = idx[go], kk[go], pp[go], cc[go], uu[go], mm[go]
    return k, cdf, pmf


def _temme_cdf(xp: Any, a: Any, m: Any) -> Any:
    """Q(a, m) = P(Poisson(m) <= a - 1) to first order in 1/a (Temme): an erfc term plus one correction."""
    d = (m - a) / a  # lambda - 1
    eta2 = 2.0 * (d - xp.log1p(d))
    eta = xp.copysign(xp.sqrt(xp.maximum(eta2, 0.0)), d)
    small = abs(d) < 1e-3  # 1/d - 1/eta cancels there: its series instead
    c0 = 1.0 / xp.where(small, 1.0, d) - 1.0 / xp.where(small, 1.0, eta)
    if bool(small.any()):
        idx = xp.flatnonzero(small)
        e = eta[idx]
        c0[idx] = -1.0 / 3.0 + e / 12.0 - e * e * (2.0 / 135.0)
    root_a = xp.sqrt(a)
    return 0.5 * xp.erfc(eta * root_a * math.sqrt(0.5)) + xp.exp(-0.5 * a * eta2) * c0 / (root_a * math.sqrt(2.0 * math.pi))


@functools.cache
def _log_factorial_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    import torch

    return torch.tensor(_LOG_FACTORIAL, dtype=dtype, device=device)


def log_factorial_batch(k: torch.Tensor) -> torch.Tensor:
    """``log_factorial`` elementwise."""
    return _batch(_log_factorial, k)


def _log_factorial(xp: Any, k: Any) -> Any:
    """The scalar ``log_factorial``'s operations elementwise; each branch only when some k needs it."""
    small = k < _TABLE
    any_small = bool(small.any())
    if any_small:
        tabled = xp.table(k)[xp.as_index(xp.minimum(k, _TABLE - 1.0))]
        if bool(small.all()):
            return tabled
    x = xp.maximum(k, float(_TABLE)) + 1.0
    r = 1.0 / x
    r2 = r * r
    stirling = (x - 0.5) * xp.log(x) - x + _HALF_LOG_2PI + r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 / 1260.0))
    return xp.where(small, tabled, stirling) if any_small else stirling


def gamma_multiplier_batch(u: torch.Tensor, overdispersion: torch.Tensor) -> torch.Tensor:
    """``gamma_multiplier`` elementwise (overdispersion per market)."""
    return _batch(_gamma_multiplier, u, overdispersion)


def _gamma_multiplier(xp: Any, u: Any, overdispersion: Any) -> Any:
    c = xp.maximum(overdispersion, 0.0) / 9.0
    z = xp.ndtri(xp.minimum(xp.maximum(u, _U_EDGE), _u_cap(xp, u)))
    g = xp.maximum(1.0 - c + z * xp.sqrt(c), 0.0) ** 3
    return xp.where(overdispersion > 0, g, 1.0)
