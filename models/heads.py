"""The predictor's heads on [text embedding, numeric context], and the same heads answering an env.

``PredictorHeads`` holds the trainable parameters:
- traits: each text is squeezed into a few latent traits (LayerNorm, then a linear map per role);
- demand: an MLP on (product traits, context features) -> log expected weekly units and the logit of
  the share that are first purchases (Poisson likelihood);
- CTR: an MLP on (product traits, creative traits) -> click-through logit (binomial likelihood);
- impressions: an MLP on (log adstock, step weeks) -> log impressions (Poisson likelihood);
- bundle: an MLP on (product traits, partner traits, discount) -> log uplift on demand and take logit.

Inside an env a market's texts do not change within an episode, so everything that depends on texts
only (traits, CTR per creative, uplift and take per bundle option) is computed once when the heads
are bound to the markets (``HeadsResponder``); a step then runs the context part: the demand MLP on
(traits, features) rows and the tiny impressions MLP, on one market's Python numbers, on NumPy arrays
or on tensors (``models.ops``). Training (``forward``) and the env compose the same parts.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from launchsim.models.context_features import FEATURE_NAMES, feature_columns, log_adstock
from launchsim.models.ops import SCALAR, NumpyOps, TorchOps
from launchsim.models.response import MarketContext, MarketResponse, MarketTexts
from torch import nn


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class TextParts(NamedTuple):
    """What the heads make of texts alone (computed once per text)."""

    latent: torch.Tensor  # (..., latent) product traits: the text columns of the demand MLP's input
    ctr_logit: torch.Tensor  # (...) for the (product, creative) pair
    log_uplift: torch.Tensor  # (...) log lift on demand of the (product, partner, discount) bundle; 0 without one
    take_logit: torch.Tensor  # (...) logit of the share of buyers who take it


class PredictorHeads(nn.Module):
    """The trainable heads; texts arrive as embeddings, context as ``context_features``."""

    def __init__(
        self, text_dim: int, hidden: int = 128, latent: int = 32, creative_latent: int = 8, dropout: float = 0.1,
        feature_names: tuple[str, ...] = FEATURE_NAMES, ctr_hidden: int = 64,
    ):  # fmt: skip
        super().__init__()
        self.feature_names = tuple(feature_names)
        n = len(self.feature_names)
        self.text_dim, self.hidden, self.latent, self.creative_latent = text_dim, hidden, latent, creative_latent
        self.ctr_hidden = ctr_hidden
        # A narrow bottleneck: with thousands (not millions) of distinct products, a few latent traits
        # generalise to new texts far better than the raw 384-d embedding fed to every head.
        self.norm = nn.LayerNorm(text_dim)
        self.drop = nn.Dropout(dropout)
        self.product_traits = nn.Linear(text_dim, latent)
        self.creative_traits = nn.Linear(text_dim, creative_latent)  # an ad's style needs few dimensions
        self.partner_traits = nn.Linear(text_dim, latent)
        self.demand = _mlp([latent + n, hidden, hidden, 2])
        # ctr_hidden 0: the CTR logit is linear in the traits, a product term plus a creative term.
        self.ctr = _mlp([latent + creative_latent, *([ctr_hidden] if ctr_hidden else []), 1])
        self.impressions = _mlp([2, 32, 1])
        self.bundle = _mlp([2 * latent + 1, 64, 2])

    def traits(self, role: str, emb: torch.Tensor) -> torch.Tensor:
        """A text's latent traits (dropout while training); a zero embedding (no text) has none."""
        proj = {"product": self.product_traits, "creative": self.creative_traits, "partner": self.partner_traits}[role]
        out = proj(self.drop(self.norm(emb)))
        return out * (emb.abs().sum(-1, keepdim=True) > 0).to(out.dtype) if role == "partner" else out

    def text_parts(
        self, product: torch.Tensor, creative: torch.Tensor | None, partner: torch.Tensor | None, discount: torch.Tensor, ctr: bool = True,
        bundle: bool = True,
    ) -> TextParts:  # fmt: skip
        """Everything that depends on the texts and the bundle discount alone (embeddings (..., D)).
        ``ctr=False`` or ``bundle=False`` (training on logs without clicks or without bundle offers)
        skips that part and its texts (which may be None): its outputs are zeros, as they would be for
        rows without a bundle."""
        p = self.traits("product", product)
        zeros = torch.zeros(p.shape[:-1], dtype=p.dtype, device=p.device)
        ctr_logit = self.ctr(torch.cat([p, self.traits("creative", creative)], dim=-1))[..., 0] if ctr else zeros
        if not bundle:
            return TextParts(p, ctr_logit, zeros, zeros)
        raw = self.bundle(torch.cat([p, self.traits("partner", partner), discount[..., None].to(p.dtype)], dim=-1))
        has_bundle = (discount > 0).to(p.dtype)
        return TextParts(p, ctr_logit, nn.functional.softplus(raw[..., 0]) * has_bundle, raw[..., 1])

    def forward(
        self, product: torch.Tensor, creative: torch.Tensor | None, partner: torch.Tensor | None, feats: torch.Tensor,
        discount: torch.Tensor, ctr: bool = True, bundle: bool = True,
    ) -> dict[str, torch.Tensor]:  # fmt: skip
        """Training and batch prediction: every output as a log or logit, one row per logs row (``ctr``
        and ``bundle`` as in ``text_parts``)."""
        parts = self.text_parts(product, creative, partner, discount, ctr, bundle)
        demand = self.demand(torch.cat([parts.latent, feats], dim=1))
        ad_in = feats[:, [FEATURE_NAMES.index("log_adstock"), FEATURE_NAMES.index("step_weeks")]]
        return {
            "log_demand": demand[:, 0] + parts.log_uplift,
            "first_share_logit": demand[:, 1],
            "ctr_logit": parts.ctr_logit,
            "log_impressions": self.impressions(ad_in)[:, 0],
            "log_uplift": parts.log_uplift,
            "take_logit": parts.take_logit,
        }


class HeadsResponder:
    """A predictor's heads bound to N markets (``models.response.Responder``): the text parts of every
    market, creative and bundle option computed once, then one step's responses from the context.

    ``x`` is the markets' backend (``SCALAR`` for one market, ``NumpyOps`` or ``TorchOps`` for a batch).
    The demand MLP runs on a matrix backend of its own: NumPy float64 for one market (matrix-vector
    products), torch in ``head_dtype`` for a batch (on a CPU each hidden layer as one oneDNN product
    with its SiLU fused in, rows written in place, markets not on sale skipped)."""

    def __init__(
        self, predictor: Any, x: Any, markets: Sequence[MarketTexts], head_dtype: torch.dtype = torch.float32,
    ):  # fmt: skip
        heads: PredictorHeads = predictor.heads
        self.x, self.n = x, len(markets)
        self.feature_names, self.unknown_estimate = heads.feature_names, predictor.default_market_estimate
        self.use_estimate = self.unknown_estimate > 0  # logs without any estimate: the scenario's is read as unknown
        self.cannibalisation = predictor.cannibalisation
        self.learned_first_share = predictor.learned_first_share
        self.overdispersion = predictor.demand_overdispersion
        device = predictor.device if x.kind != "torch" else x.device
        text = _float64_heads(heads, device)
        creatives = max(len(m.creatives) for m in markets)
        options = max(len(m.options) for m in markets)
        dim = heads.text_dim
        zero = torch.zeros(dim, dtype=torch.float64, device=device)
        emb = lambda e: zero if e is None else torch.as_tensor(e, device=device).double().reshape(-1)  # noqa: E731
        product = torch.stack([emb(m.product) for m in markets])
        creative = torch.stack([torch.stack([emb(m.creatives[min(c, len(m.creatives) - 1)]) for c in range(creatives)]) for m in markets])
        partner = torch.stack([torch.stack([emb(m.options[min(o, len(m.options) - 1)][0]) for o in range(options)]) for m in markets])
        discount = torch.tensor([[m.options[min(o, len(m.options) - 1)][1] for o in range(options)] for m in markets], dtype=torch.float64, device=device)
        with torch.inference_mode():
            latent = text.traits("product", product)
            ctr = torch.sigmoid(text.text_parts(product[:, None].expand(-1, creatives, -1), creative, zero.expand(self.n, creatives, dim), torch.zeros(self.n, creatives, dtype=torch.float64, device=device)).ctr_logit)
            bundle = text.text_parts(product[:, None].expand(-1, options, -1), creative[:, :1].expand(-1, options, -1), partner, discount)
        has_bundle = (discount > 0).double()
        take = torch.sigmoid(bundle.take_logit) * has_bundle
        self._layers_of = {"demand": _linears(heads.demand), "impressions": _linears(heads.impressions)}
        if x.kind == "scalar":  # one market: Python numbers and float64 NumPy vectors
            self.m = self.mi = NumpyOps()
            self.latent = latent[0].cpu().numpy()
            self.ctr, self.log_uplift, self.take, self.has_bundle = (v[0].tolist() for v in (ctr, bundle.log_uplift, take, has_bundle))
            self.demand_layers, self.impressions_layers = _numpy_layers(heads)
            return
        self.m = TorchOps(device, head_dtype, fused=device.type == "cpu")
        self.mi = NumpyOps() if x.kind == "numpy" else TorchOps(device, torch.float64)
        self.demand_layers = self._weights("demand", self.m, head_dtype)
        self.impressions_layers = self._weights("impressions", self.mi, np.float64 if x.kind == "numpy" else torch.float64)
        self.latent = latent.to(head_dtype)
        host = (lambda t: t.cpu().numpy()) if x.kind == "numpy" else (lambda t: t)
        self.ctr, self.log_uplift, self.take, self.has_bundle = (host(v) for v in (ctr, bundle.log_uplift, take, has_bundle))
        self._rows = self.m.rows(self.latent, len(self.feature_names))

    def _weights(self, name: str, m: Any, dtype: Any) -> list[tuple[Any, Any]]:
        return [m.weights(w, b, dtype) for w, b in self._layers_of[name]]

    def respond(self, ctx: MarketContext, creative: Any, option: Any) -> MarketResponse:
        """Expected outcomes of one step for every market (``creative``/``option``: chosen indices)."""
        x = self.x
        feats = feature_columns(x, ctx, self.feature_names, self.unknown_estimate, self.use_estimate)
        launched = ctx.launched
        if x.kind == "scalar":
            out = self.m.mlp(self.demand_layers, np.concatenate([self.latent, feats])) if launched else _NOT_ON_SALE
            log_demand, first_logit = float(out[0]), float(out[1])
        else:
            out = self.m.mlp(self.demand_layers, self._rows.write(feats, x), active=launched if x.kind == "numpy" else None)
            log_demand, first_logit = x.f(self.m.to(x, out[:, 0])), self.m.to(x, out[:, 1])
        adstock = ctx.adstock
        ad_in = (log_adstock(x, adstock), ctx.step_weeks)
        impressions = x.masked(adstock > 0, self._impressions, ad_in, 0.0)  # no ads, no impressions
        log_uplift, take, has_bundle = x.take(self.log_uplift, option), x.take(self.take, option), x.take(self.has_bundle, option)
        return MarketResponse(
            demand=launched * x.exp(log_demand + log_uplift),
            first_purchase_share=x.sigmoid(first_logit) if self.learned_first_share else 1.0,
            impressions=impressions,
            ctr=x.take(self.ctr, creative),
            bundle_uplift=x.exp(log_uplift),
            bundle_take=take,
            cannibalisation=self.cannibalisation * has_bundle,
        )


    def _impressions(self, x: Any, ad_log: Any, step_weeks: Any) -> Any:
        """The impressions MLP on (log adstock, step weeks), in float64."""
        return x.exp(x.col(self.mi.mlp(self.impressions_layers, self.mi.mlp_input([ad_log, step_weeks], x)), 0))


# One float64 copy of a predictor's heads per device, and one set of NumPy float64 weights, shared by
# every single-market responder of that predictor (a DummyVecEnv of 4,096 markets holds one, not 4,096).
# Copies are remade when a weight changes (fine-tuning between two envs).
_FLOAT64: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _copies(heads: PredictorHeads) -> dict[str, Any]:
    state = tuple((p.data_ptr(), p._version) for p in heads.parameters())
    entry = _FLOAT64.get(heads)
    if entry is None or entry["state"] != state:
        entry = _FLOAT64[heads] = {"state": state}
    return entry


def _float64_heads(heads: PredictorHeads, device: Any) -> PredictorHeads:
    """The heads in float64 on ``device`` (the text parts are computed in float64), copied once."""
    per_device = _copies(heads)
    key = str(device)
    if key not in per_device:
        per_device[key] = copy.deepcopy(heads).double().eval().to(device)
    return per_device[key]


def _numpy_layers(heads: PredictorHeads) -> tuple[list, list]:
    """The demand and impressions MLPs' weights as float64 NumPy arrays (one market), converted once."""
    per_device = _copies(heads)
    if "numpy" not in per_device:
        per_device["numpy"] = tuple([NumpyOps.weights(w, b, np.float64) for w, b in _linears(seq)] for seq in (heads.demand, heads.impressions))
    return per_device["numpy"]


_NOT_ON_SALE = (0.0, 0.0)  # a market not on sale sells nothing: its demand MLP is not run


def _linears(seq: nn.Sequential) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(m.weight.detach(), m.bias.detach()) for m in seq if isinstance(m, nn.Linear)]


def product_latent(predictor: Any, product_text: str) -> np.ndarray:
    """The latent traits of a product text (float32), as the demand MLP reads them."""
    predictor = getattr(predictor, "traits_source", predictor)  # an ensemble: its first member's traits
    emb = predictor.encode([product_text], "product")[0]
    with torch.inference_mode():
        return predictor.heads.eval().traits("product", emb.reshape(1, -1).to(predictor.device))[0].float().cpu().numpy()


__all__ = ["SCALAR", "HeadsResponder", "PredictorHeads", "TextParts", "product_latent"]
