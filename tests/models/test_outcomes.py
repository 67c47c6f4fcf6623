"""Inverse-CDF sampling: exact Poisson quantiles, scalar and batched paths equal, right moments."""

import numpy as np
import pytest
import torch
from scipy import stats

from models.outcomes import (
    gamma_multiplier,
    gamma_multiplier_batch,
    poisson_quantile,
    poisson_quantile_batch,
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
