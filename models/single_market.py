"""A predictor's heads evaluated for one market at a time, on NumPy.

A single env asks for one market's response every step; through torch that costs far more in call
overhead than in arithmetic. Here everything that depends only on texts (the trait latents, the
text part of the demand head's first layer, CTR per creative, uplift and take per bundle option) is
computed once per text and cached, so a step runs the context part of the demand head and the tiny
impressions head on plain arrays. It computes the same function as ``PredictorHeads`` (in float64;
tested against the torch path).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from launchsim.models.context_features import FEATURE_NAMES, log_market_estimate, log_prelaunch_signups, penetration
from launchsim.models.response import MarketContext, MarketResponse

_ADSTOCK, _STEP = FEATURE_NAMES.index("log_adstock"), FEATURE_NAMES.index("step_weeks")


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


class SingleMarketHeads:
    """``PredictorHeads`` for one market, with every text-only quantity cached per text."""

    def __init__(
        self, heads: torch.nn.Module, cannibalisation: float, feature_names: tuple[str, ...] = FEATURE_NAMES,
        unknown_estimate: float = 0.0,
    ):
        sd = {k: v.detach().cpu().double().numpy() for k, v in heads.state_dict().items()}
        self.ln = (sd["norm.weight"], sd["norm.bias"], float(heads.norm.eps))
        self.proj = {role: (sd[f"{role}_traits.weight"], sd[f"{role}_traits.bias"]) for role in ("product", "creative", "partner")}
        self.layers = {name: _layers(sd, name) for name in ("demand", "ctr", "impressions", "bundle")}
        self.latent = int(heads.latent)
        self.cannibalisation = cannibalisation
        self.market_feature = "log_market_estimate" in feature_names
        self.penetration_feature = "penetration" in feature_names
        self.signups_feature = "log_prelaunch_signups" in feature_names
        self.unknown_estimate = unknown_estimate
        # Keyed by id() of the embedding tensors, which the predictor's embedding cache keeps alive.
        self._cache: dict[tuple, Any] = {}

    def _trait(self, role: str, emb: torch.Tensor) -> np.ndarray:
        key = (role, id(emb))
        if key not in self._cache:
            x = emb.detach().cpu().double().numpy().reshape(-1)
            w, b, eps = self.ln
            x = (x - x.mean()) / math.sqrt(x.var() + eps) * w + b
            pw, pb = self.proj[role]
            self._cache[key] = pw @ x + pb
        return self._cache[key]

    def _demand_text_part(self, product: torch.Tensor) -> np.ndarray:
        key = ("demand", id(product))
        if key not in self._cache:
            w, b = self.layers["demand"][0]
            self._cache[key] = w[:, : self.latent] @ self._trait("product", product) + b
        return self._cache[key]

    def _ctr(self, product: torch.Tensor, creative: torch.Tensor) -> float:
        key = ("ctr", id(product), id(creative))
        if key not in self._cache:
            x = np.concatenate([self._trait("product", product), self._trait("creative", creative)])
            self._cache[key] = _sigmoid(float(_mlp(self.layers["ctr"], x)[0]))
        return self._cache[key]

    def _bundle(self, product: torch.Tensor, partner: torch.Tensor, discount: float) -> tuple[float, float]:
        key = ("bundle", id(product), id(partner), discount)
        if key not in self._cache:
            x = np.concatenate([self._trait("product", product), self._trait("partner", partner), [discount]])
            raw = _mlp(self.layers["bundle"], x)
            log_uplift = math.log1p(math.exp(-abs(raw[0]))) + max(raw[0], 0.0)  # softplus
            self._cache[key] = (log_uplift, _sigmoid(float(raw[1])))
        return self._cache[key]

    def expected(self, product: torch.Tensor, creative: torch.Tensor, partner: torch.Tensor | None, ctx: MarketContext) -> MarketResponse:
        since = ctx.weeks_since_flash
        estimate = ctx.market_estimate if ctx.market_estimate > 0 else self.unknown_estimate
        feats = np.array([
            ctx.season, ctx.holiday, ctx.price_ratio, ctx.flash, since == 1, since == 2, since == 3,
            ctx.competitor_strength, ctx.competitor_price_ratio, math.log1p(ctx.adstock / 1000.0),
            math.log1p(ctx.adopters) / 5.0, ctx.step_weeks, math.log(max(ctx.reference_price, 0.01)) / 5.0,
            *((log_market_estimate(estimate),) if self.market_feature else ()),
            *((penetration(ctx.adopters, estimate),) if self.penetration_feature else ()),
            *((log_prelaunch_signups(ctx.prelaunch_signups),) if self.signups_feature else ()),
        ], dtype=np.float64)  # fmt: skip  (the order of FEATURE_NAMES)
        layers = self.layers["demand"]
        w1 = layers[0][0]
        h = _silu(self._demand_text_part(product) + w1[:, self.latent :] @ feats)
        out = _mlp(layers[1:], h)
        log_demand, first_logit = float(out[0]), float(out[1])
        discount = float(ctx.bundle_discount)
        uplift, take = (0.0, 0.0)
        if partner is not None and discount > 0:
            uplift, take = self._bundle(product, partner, discount)
        impressions = 0.0
        if ctx.adstock > 0:
            impressions = math.exp(float(_mlp(self.layers["impressions"], feats[[_ADSTOCK, _STEP]])[0]))
        return MarketResponse(
            demand=float(ctx.launched) * math.exp(log_demand + uplift),
            first_purchase_share=_sigmoid(first_logit),
            impressions=impressions,
            ctr=self._ctr(product, creative),
            bundle_uplift=math.exp(uplift),
            bundle_take=take,
            cannibalisation=self.cannibalisation if discount > 0 and partner is not None else 0.0,
        )


def _layers(sd: dict[str, np.ndarray], name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of each Linear in an ``nn.Sequential`` of Linear/SiLU, in order."""
    indices = sorted({int(k.split(".")[1]) for k in sd if k.startswith(name + ".")})
    return [(sd[f"{name}.{i}.weight"], sd[f"{name}.{i}.bias"]) for i in indices]


def _mlp(layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Linear, SiLU, ..., Linear."""
    for i, (w, b) in enumerate(layers):
        x = w @ x + b
        if i < len(layers) - 1:
            x = _silu(x)
    return x
