"""BatchedHeads: the CPU's NumPy route (features written into the input rows, fused layers, rows not on
sale skipped) computes what the torch route and the predictor's own heads compute."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from launchsim.models.batched_heads import BatchedHeads, _linear_silu
from launchsim.models.context_features import context_features
from launchsim.models.response import MarketContext


def _context(n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> MarketContext:
    """A batch of varied contexts as CPU tensors (what the batched env passes)."""
    rng = np.random.default_rng(seed)
    ctx = MarketContext(
        launched=(rng.random(n) < 0.7).astype(float), step_weeks=rng.choice([1.0, 2.0], n), season=rng.uniform(0.5, 1.5, n),
        holiday=rng.uniform(0, 0.3, n), price_ratio=rng.uniform(0.6, 1.4, n), reference_price=rng.uniform(5, 200, n),
        flash=(rng.random(n) < 0.1).astype(float), weeks_since_flash=rng.integers(0, 6, n).astype(float),
        competitor_strength=rng.uniform(0, 1, n), competitor_price_ratio=rng.uniform(0.5, 1.5, n),
        adstock=np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0, 5000, n)), adopters=rng.uniform(0, 3000, n),
        bundle_discount=np.zeros(n), market_estimate=np.where(rng.random(n) < 0.3, 0.0, rng.uniform(100, 1e5, n)),
        prelaunch_signups=np.where(rng.random(n) < 0.3, 0.0, rng.uniform(10, 5000, n)),
    )  # fmt: skip
    return dataclasses.replace(ctx, **{f.name: torch.as_tensor(getattr(ctx, f.name), dtype=dtype) for f in dataclasses.fields(ctx)})


def _heads_and_parts(predictor, n: int, dtype: torch.dtype):
    heads = BatchedHeads(predictor.heads, predictor.cannibalisation, dtype=dtype, unknown_estimate=2000.0)
    g = torch.Generator().manual_seed(0)
    d = predictor.heads.text_dim
    product, creatives, partners = torch.randn(n, d, generator=g), torch.randn(n, 2, d, generator=g), torch.randn(n, 3, d, generator=g)
    partners[:, 0] = 0.0
    discounts = torch.tensor([0.0, 0.1, 0.2]).expand(n, 3)
    return heads, heads.prepare(product, creatives, partners, discounts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_numpy_route_writes_the_features_of_context_features(tiny_predictor, dtype):
    heads, parts = _heads_and_parts(tiny_predictor, 97, dtype)
    ctx = _context(97)
    rows = heads._rows(parts.latent)
    assert heads._write_features(ctx, rows) is not None  # CPU tensors: the NumPy route
    expected = context_features(ctx, heads.feature_names, heads.unknown_estimate).to(dtype)
    assert torch.equal(rows.inputs[:, heads.latent :], expected)
    assert torch.equal(rows.inputs[:, : heads.latent], parts.latent)
    as_arrays = dataclasses.replace(ctx, **{f.name: getattr(ctx, f.name).numpy() for f in dataclasses.fields(ctx)})
    assert heads._write_features(as_arrays, rows) is None  # NumPy arrays: context_features itself
    assert torch.equal(rows.inputs[:, heads.latent :], context_features(as_arrays, heads.feature_names, heads.unknown_estimate).to(dtype))


def test_numpy_route_equals_the_torch_route_and_the_predictor(tiny_predictor):
    n = 97
    heads, parts = _heads_and_parts(tiny_predictor, n, torch.float32)
    ctx = _context(n, seed=1)
    creative, option = torch.arange(n) % 2, torch.arange(n) % 3
    fast = heads.respond(parts, ctx, creative, option)  # CPU tensors: the NumPy route
    as_arrays = dataclasses.replace(ctx, **{f.name: getattr(ctx, f.name).numpy() for f in dataclasses.fields(ctx)})
    slow = heads.respond(parts, as_arrays, creative, option)  # NumPy arrays: the torch route
    heads._fused = False
    plain = heads.respond(parts, ctx, creative, option)  # the unfused layers
    for field in ("demand", "first_purchase_share", "impressions", "ctr", "bundle_take", "cannibalisation"):
        a, b, c = (np.asarray(getattr(r, field), dtype=np.float64) for r in (fast, slow, plain))
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-9, err_msg=field)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=field)
    launched = ctx.launched.numpy() > 0
    assert np.all(np.asarray(fast.demand)[~launched] == 0.0) and np.all(np.asarray(fast.demand)[launched] > 0.0)
    assert np.all(np.asarray(fast.impressions)[ctx.adstock.numpy() == 0] == 0.0)
    # The predictor's own heads on the same embeddings and context.
    g = torch.Generator().manual_seed(0)
    d = tiny_predictor.heads.text_dim
    product, creatives, partners = torch.randn(n, d, generator=g), torch.randn(n, 2, d, generator=g), torch.randn(n, 3, d, generator=g)
    partners[:, 0] = 0.0
    feats = context_features(ctx, heads.feature_names, heads.unknown_estimate)  # float32, as the predictor's heads read them
    discount = torch.tensor([0.0, 0.1, 0.2])[option]
    with torch.inference_mode():
        out = tiny_predictor.heads.eval()(product, creatives[torch.arange(n), creative], partners[torch.arange(n), option], feats, discount)
    np.testing.assert_allclose(np.log(np.asarray(fast.demand)[launched]), out["log_demand"].double().numpy()[launched], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(fast.ctr), torch.sigmoid(out["ctr_logit"]).double().numpy(), rtol=1e-5)


def test_fused_layer_equals_the_plain_layer():
    layer = torch.nn.Linear(27, 16)
    x = torch.randn(33, 27)
    with torch.inference_mode():
        np.testing.assert_allclose(_linear_silu(x, layer, True).numpy(), _linear_silu(x, layer, False).numpy(), rtol=1e-5, atol=1e-6)
