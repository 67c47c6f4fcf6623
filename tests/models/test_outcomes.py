"""Inverse-CDF sampling: exact Poisson quantiles, scalar and batched paths equal, right moments."""

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import gammaincc

from launchsim.models.outcomes import (
    gamma_multiplier,
    gamma_multiplier_batch,
    poisson_quantile,
    poisson_quantile_batch,
    poisson_quantile_dense,
)

MEANS = [0.0, 1e-6, 0.3, 2.5, 17.0, 29.9, 30.1, 140.0, 2_500.0, 81_000.0]


@pytest.mark.parametrize("mu", MEANS)
def test_poisson_quantile_is_the_exact_inverse_cdf(mu):
    u = np.random.default_rng(0).random(400)
    ours = np.array([poisson_quantile(float(x), mu) for x in u])
    np.testing.assert_array_equal(ours, stats.poisson.ppf(u, mu) if mu > 0 else np.zeros_like(u))


def test_batch_quantiles_equal_the_scalar_ones():
    rng = np.random.default_rng(1)
    mu = np.concatenate([rng.choice(MEANS, 2000), rng.gamma(0.7, 300.0, 2000)])
    u = rng.random(mu.size)
    u[:5] = [0.0, 1e-300, 0.5, 1 - 1e-16, 0.999999]
    scalar = np.array([poisson_quantile(float(a), float(m)) for a, m in zip(u, mu)])
    batch = poisson_quantile_batch(torch.tensor(u), torch.tensor(mu)).numpy()
    np.testing.assert_array_equal(batch, scalar)


def test_gamma_multiplier_has_mean_one_and_variance_k():
    u = (np.arange(200_000) + 0.5) / 200_000
    for k in (0.05, 0.15):
        g = gamma_multiplier_batch(torch.tensor(u), torch.full((u.size,), k, dtype=torch.float64)).numpy()
        assert g.mean() == pytest.approx(1.0, abs=2e-3)
        assert g.var() == pytest.approx(k, rel=0.02)
        assert gamma_multiplier(float(u[1234]), k) == pytest.approx(g[1234], rel=1e-12)
    assert gamma_multiplier(0.3, 0.0) == 1.0


def _exact_and_boundaries(u: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts with every walk anchored on gammaincc, and the CDF values just below and at each count."""
    from launchsim.models.outcomes import _NP, _poisson_quantile

    counts = _poisson_quantile(_NP, u, mu, 64, exact_anchor=True)
    return counts, gammaincc(counts, mu), gammaincc(counts + 1.0, mu)


def test_cheap_anchor_gives_the_counts_of_the_exact_anchor():
    # The batch path anchors its walk on an approximate CDF and falls back to gammaincc wherever u is
    # close to a CDF boundary: u placed exactly on the boundaries (and one float either side) must
    # still give the counts of the exact anchor, over means from tiny to beyond the approximation's range.
    rng = np.random.default_rng(2)
    mu = np.concatenate([np.geomspace(1e-3, 5e6, 3000), rng.gamma(0.7, 300.0, 3000), rng.uniform(3.0, 8.0, 1000)])
    u = rng.random(mu.size)
    counts, below, at = _exact_and_boundaries(u, mu)
    for probe in (u, at, np.nextafter(at, 0.0), np.nextafter(at, 1.0), below, np.nextafter(below, 1.0), at - 1e-9, below + 1e-9):
        probe = np.clip(probe, 0.0, 1.0)
        expected = _exact_and_boundaries(probe, mu)[0]
        np.testing.assert_array_equal(poisson_quantile_batch(torch.tensor(probe), torch.tensor(mu)).numpy(), expected)
        np.testing.assert_array_equal(poisson_quantile_batch(probe, mu), expected)  # NumPy arrays in, NumPy out


def test_torch_route_equals_the_numpy_route():
    # On a GPU the same code runs through torch; here on CPU tensors, against the NumPy route.
    from launchsim.models.outcomes import _torch_ops, _poisson_quantile

    rng = np.random.default_rng(3)
    mu = np.concatenate([rng.choice(MEANS, 2000), rng.gamma(0.7, 300.0, 2000), np.geomspace(1e-3, 5e6, 500)])
    u = rng.random(mu.size)
    via_torch = _poisson_quantile(_torch_ops(), torch.tensor(u), torch.tensor(mu), 64).numpy()
    np.testing.assert_array_equal(via_torch, poisson_quantile_batch(torch.tensor(u), torch.tensor(mu)).numpy())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_dense_gpu_form_gives_the_counts_of_the_cpu_form(dtype):
    # The GPU's lockstep walk, run here on CPU tensors: the same counts as the CPU form on the same
    # (rounded) inputs, over means from 1e-3 to 1e6, zeros, and uniforms a hair below 1.
    rng = np.random.default_rng(0)
    mu = np.exp(rng.uniform(np.log(1e-3), np.log(1e6), 20_000))
    mu[::7] = 0.0
    u = rng.random(20_000)
    u[:20] = 1.0 - rng.random(20) * 1e-9  # float32 rounds these to 1: they must stay finite
    u_t, mu_t = torch.tensor(u, dtype=dtype), torch.tensor(mu, dtype=dtype)
    dense = poisson_quantile_dense(u_t, mu_t)
    assert dense.dtype == dtype and torch.isfinite(dense).all()
    reference = poisson_quantile_batch(u_t.double(), mu_t.double())
    np.testing.assert_array_equal(dense.double().numpy(), reference.numpy())
