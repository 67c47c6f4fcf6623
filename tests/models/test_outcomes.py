"""Inverse-CDF sampling: exact Poisson quantiles, one code on numbers, NumPy and torch with equal counts, right moments."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import gammaincc

from launchsim.models.ops import SCALAR, NumpyOps, TorchOps
from launchsim.models.outcomes import gamma_multiplier, poisson_quantile, sample_outcome

MEANS = [0.0, 1e-6, 0.3, 2.5, 17.0, 29.9, 30.1, 140.0, 2_500.0, 81_000.0]
NUMPY = NumpyOps()


def _scalar(u: np.ndarray, mu: np.ndarray) -> np.ndarray:
    return np.array([poisson_quantile(SCALAR, float(a), float(m)) for a, m in zip(u, mu)])


@pytest.mark.parametrize("mu", MEANS)
def test_poisson_quantile_is_the_exact_inverse_cdf(mu):
    u = np.random.default_rng(0).random(400)
    np.testing.assert_array_equal(_scalar(u, np.full(400, mu)), stats.poisson.ppf(u, mu) if mu > 0 else np.zeros_like(u))


def test_numpy_and_torch_quantiles_equal_the_scalar_ones():
    rng = np.random.default_rng(1)
    mu = np.concatenate([rng.choice(MEANS, 2000), rng.gamma(0.7, 300.0, 2000), np.geomspace(1e-3, 5e6, 500)])
    u = rng.random(mu.size)
    u[:5] = [0.0, 1e-300, 0.5, 1 - 1e-16, 0.999999]
    scalar = _scalar(u, mu)
    np.testing.assert_array_equal(poisson_quantile(NUMPY, u, mu), scalar)
    torch_ops = TorchOps("cpu", torch.float64)
    np.testing.assert_array_equal(poisson_quantile(torch_ops, torch.tensor(u), torch.tensor(mu)).numpy(), scalar)


def test_gamma_multiplier_has_mean_one_and_variance_k():
    u = (np.arange(200_000) + 0.5) / 200_000
    for k in (0.05, 0.15):
        g = gamma_multiplier(NUMPY, u, np.full(u.size, k))
        assert g.mean() == pytest.approx(1.0, abs=2e-3)
        assert g.var() == pytest.approx(k, rel=0.02)
        assert gamma_multiplier(SCALAR, float(u[1234]), k) == g[1234]  # the same numbers on one market
    assert gamma_multiplier(SCALAR, 0.3, 0.0) == 1.0
    assert (gamma_multiplier(NUMPY, u[:10], np.zeros(10)) == 1.0).all()


def _exact_walk(u: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """The counts of the walk anchored on gammaincc everywhere (the one-number form's anchor)."""
    return _scalar(u, mu)


def test_cheap_anchor_gives_the_counts_of_the_exact_anchor():
    # A batch on a CPU anchors its walk on an approximate CDF and walks again from gammaincc wherever u
    # is close to a CDF boundary: u placed exactly on the boundaries (and one float either side) must
    # still give the counts of the exact anchor, over means from tiny to beyond the approximation's range.
    rng = np.random.default_rng(2)
    mu = np.concatenate([np.geomspace(1e-3, 5e6, 600), rng.gamma(0.7, 300.0, 600), rng.uniform(3.0, 8.0, 200)])
    u = rng.random(mu.size)
    counts = _exact_walk(u, mu)
    below, at = gammaincc(counts, mu), gammaincc(counts + 1.0, mu)
    for probe in (u, at, np.nextafter(at, 0.0), np.nextafter(at, 1.0), below, np.nextafter(below, 1.0), at - 1e-9, below + 1e-9):
        probe = np.clip(probe, 0.0, 1.0)
        np.testing.assert_array_equal(poisson_quantile(NUMPY, probe, mu), _exact_walk(probe, mu))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("graph_walk", [False, True], ids=["walk", "graph-walk"])
def test_torch_form_gives_the_counts_of_the_numpy_form(dtype, graph_walk):
    # The GPU's lockstep walk (and the fixed walk a CUDA graph holds), run here on CPU tensors: the same
    # counts as NumPy on the same (rounded) inputs, over means from 1e-3 to 1e6, zeros, and uniforms a
    # hair below 1.
    rng = np.random.default_rng(0)
    mu = np.exp(rng.uniform(np.log(1e-3), np.log(1e6), 20_000))
    mu[::7] = 0.0
    u = rng.random(20_000)
    u[:20] = 1.0 - rng.random(20) * 1e-9  # float32 rounds these to 1: they must stay finite
    u_t, mu_t = torch.tensor(u, dtype=dtype), torch.tensor(mu, dtype=dtype)
    counts, unfinished = poisson_quantile(TorchOps("cpu", dtype), u_t, mu_t, graph_walk=graph_walk, unfinished=True)
    assert counts.dtype == dtype and torch.isfinite(counts).all() and int(unfinished) == 0
    np.testing.assert_array_equal(counts.double().numpy(), poisson_quantile(NUMPY, u_t.double().numpy(), mu_t.double().numpy()))


def test_sampled_counts_have_the_expected_moments_and_thin_into_bundles():
    rng = np.random.default_rng(4)
    u = rng.random((200_000, 5))
    out, _ = sample_outcome(NUMPY, u, np.full(200_000, 50.0), np.full(200_000, 0.3), np.full(200_000, 2000.0), np.full(200_000, 0.02), np.full(200_000, 0.05))
    assert out.demand.mean() == pytest.approx(50.0, rel=0.01)
    assert out.demand.var() == pytest.approx(50.0 + 0.05 * 50.0**2, rel=0.03)  # negative binomial
    assert out.bundle_demand.mean() == pytest.approx(15.0, rel=0.01)
    assert out.clicks.mean() == pytest.approx(40.0, rel=0.01) and out.impressions.mean() == pytest.approx(2000.0, rel=0.01)
    one, _ = sample_outcome(SCALAR, u[7].tolist(), 50.0, 0.3, 2000.0, 0.02, 0.05)
    assert tuple(one) == tuple(float(v[7]) for v in out)  # one market draws the batch's counts
