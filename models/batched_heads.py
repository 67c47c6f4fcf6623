"""A predictor's heads for many markets at once, with every text-only quantity computed once.

The batched env's markets keep their texts for a whole episode, so the trait latents, the text part
of the demand head's first layer, the CTR of each (market, creative) and the uplift and take of each
(market, bundle option) are computed once (``prepare``). A step then runs only the context part of
the demand head and the tiny impressions head on a (markets x features) matrix: the cost that the
benchmark reports as "the head alone". It computes the same function as ``PredictorHeads``.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import NamedTuple

import torch
from torch import nn

from models.context_features import FEATURE_NAMES, context_features
from models.response import MarketContext, MarketResponse


class TextParts(NamedTuple):
    """Per-market quantities that depend on texts only."""

    demand_text: torch.Tensor  # (N, hidden): first demand layer applied to the product traits, plus its bias
    ctr: torch.Tensor  # (N, creatives)
    log_uplift: torch.Tensor  # (N, options); option 0 is "no bundle" (0)
    take: torch.Tensor  # (N, options)
    has_bundle: torch.Tensor  # (N, options) 1.0 where the option is a bundle with a discount


class BatchedHeads(nn.Module):
    """``PredictorHeads`` split into a once-per-episode text part and a per-step context part."""

    def __init__(self, heads: nn.Module, cannibalisation: float, dtype: torch.dtype = torch.float32, unknown_estimate: float = 0.0):
        """``heads``: a ``PredictorHeads`` (its ``feature_names`` say which context features it reads)."""
        super().__init__()
        # Copies: the predictor's own heads stay float32 for single envs and training.
        # Text parts and the tiny impressions head run in float64 (once per episode, or cheap), so
        # that clicks match the single-market NumPy path; the demand MLP runs in ``dtype``.
        self.text_heads = copy.deepcopy(heads).double().eval()
        self.latent = int(heads.latent)
        self.feature_names = tuple(getattr(heads, "feature_names", FEATURE_NAMES))
        self.unknown_estimate = unknown_estimate
        self.cannibalisation = cannibalisation
        self.dtype = dtype
        first = self.text_heads.demand[0]
        # The context columns of the first demand layer, then the demand MLP after its first SiLU, and impressions.
        self.context_in = nn.Linear(first.in_features - self.latent, first.out_features, bias=False)
        self.context_in.weight.data = first.weight.data[:, self.latent :].clone()
        self.context_in.to(dtype=dtype)
        self.demand_rest = copy.deepcopy(self.text_heads.demand[2:]).to(dtype=dtype)
        self._rest_linears = [m for m in self.demand_rest if isinstance(m, nn.Linear)]
        self.impressions = self.text_heads.impressions
        self._buffers_for: dict[tuple[int, torch.device], list[torch.Tensor]] = {}
        self.eval()

    @torch.inference_mode()
    def prepare(
        self, product: torch.Tensor, creatives: torch.Tensor, partners: torch.Tensor, discounts: torch.Tensor
    ) -> TextParts:
        """Text parts for N markets: product (N, D), creatives (N, C, D), partners (N, O, D), discounts (N, O)."""
        h = self.text_heads
        n, c_max, d = creatives.shape
        o_max = partners.shape[1]
        p = h.product_traits(h.norm(product.double()))
        c = h.creative_traits(h.norm(creatives.double().reshape(-1, d))).reshape(n, c_max, -1)
        j = h.partner_traits(h.norm(partners.double().reshape(-1, d))).reshape(n, o_max, -1)
        j = j * (partners.abs().sum(-1, keepdim=True) > 0).double()
        ctr = torch.sigmoid(h.ctr(torch.cat([p[:, None].expand(-1, c_max, -1), c], dim=-1))[..., 0])
        disc = discounts.double()
        raw = h.bundle(torch.cat([p[:, None].expand(-1, o_max, -1), j, disc[..., None]], dim=-1))
        has_bundle = (disc > 0).double()
        log_uplift = nn.functional.softplus(raw[..., 0]) * has_bundle
        take = torch.sigmoid(raw[..., 1]) * has_bundle
        first = h.demand[0]
        demand_text = (p @ first.weight[:, : self.latent].T + first.bias).to(self.dtype)  # the step's bias
        return TextParts(demand_text, ctr, log_uplift, take, has_bundle)

    def _demand_mlp(self, text_bias: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Linear, SiLU, ..., Linear into preallocated hidden buffers: fresh (N, hidden) tensors each step
        would cost page faults on the CPU comparable to the matrix products themselves."""
        key = (feats.shape[0], feats.device)
        if key not in self._buffers_for:
            self._buffers_for[key] = [torch.empty(feats.shape[0], m.in_features, dtype=self.dtype, device=feats.device) for m in self._rest_linears]
        buffers = self._buffers_for[key]
        x = torch.addmm(text_bias, feats, self.context_in.weight.T, out=buffers[0])
        for layer, buffer in zip(self._rest_linears, buffers[1:] + [None]):
            nn.functional.silu(x, inplace=True)
            x = torch.addmm(layer.bias, x, layer.weight.T) if buffer is None else torch.addmm(layer.bias, x, layer.weight.T, out=buffer)
        return x

    @torch.inference_mode()
    def respond(self, parts: TextParts, ctx: MarketContext, creative: torch.Tensor, option: torch.Tensor) -> MarketResponse:
        """Expected outcomes of one step for every market (``creative``/``option``: chosen indices)."""
        with _few_threads(parts.demand_text.device):  # elementwise work on a few thousand numbers
            feats = context_features(ctx, self.feature_names, self.unknown_estimate).to(self.dtype)
            adstock = torch.as_tensor(ctx.adstock).double()
            ad_in = torch.stack([torch.log1p(adstock / 1000.0), torch.as_tensor(ctx.step_weeks).double().expand_as(adstock)], 1)
        out = self._demand_mlp(parts.demand_text, feats)  # matrix products: every thread
        impressions = self.impressions(ad_in)[:, 0]
        with _few_threads(parts.demand_text.device):
            out = out.float()
            log_uplift, has_bundle, take = (_pick(x, option) for x in (parts.log_uplift, parts.has_bundle, parts.take))
            return MarketResponse(
                demand=torch.as_tensor(ctx.launched).double() * torch.exp(out[:, 0].double() + log_uplift),
                first_purchase_share=torch.sigmoid(out[:, 1]),
                impressions=(adstock > 0).double() * impressions.exp(),
                ctr=_pick(parts.ctr, creative),
                bundle_uplift=log_uplift.exp(),
                bundle_take=take,
                cannibalisation=self.cannibalisation * has_bundle,
            )


def _pick(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[i, index[i]]`` for every row i (a gather: cheaper than advanced indexing on a CPU)."""
    return table.gather(1, index.unsqueeze(1)).squeeze(1)


@contextlib.contextmanager
def _few_threads(device: torch.device) -> Iterator[None]:
    """One intra-op thread on a CPU for the duration: torch splits even a 4,096-element exp across its
    threads, and the hand-over costs more than the op (tens of us idle, milliseconds on a busy machine)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
