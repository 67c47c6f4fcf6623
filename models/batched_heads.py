"""A predictor's heads for many markets at once, with every text-only quantity computed once.

The batched env's markets keep their texts for a whole episode, so the trait latents, the CTR of
each (market, creative) and the uplift and take of each (market, bundle option) are computed once
(``prepare``). A step then runs the demand MLP on (product latent, context features) rows and the
tiny impressions head: the cost that the benchmark reports as "the head alone". It computes the same
function as ``PredictorHeads``.

On a CPU the context features are written straight into the demand head's preallocated input rows
(NumPy, the formulas of ``context_features``, same float32 values), each hidden layer runs as one
oneDNN matrix product with its SiLU fused in (``_linear_silu``; torch's separate SiLU pass costs as
much as the matrix product on a CPU), and markets not yet on sale skip the demand MLP.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from launchsim.models.context_features import FEATURE_NAMES, PENETRATION_CAP, context_features
from launchsim.models.response import MarketContext, MarketResponse


class TextParts(NamedTuple):
    """Per-market quantities that depend on texts only."""

    latent: torch.Tensor  # (N, latent): product traits, the text columns of the demand head's input
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
        # The demand MLP in ``dtype``: Linear, SiLU, ..., Linear over (product latent, context features).
        demand = copy.deepcopy(self.text_heads.demand)
        self.demand_linears = [m.to(dtype=dtype) for m in demand if isinstance(m, nn.Linear)]
        self.demand_mlp = nn.ModuleList(self.demand_linears)
        self.impressions = self.text_heads.impressions
        self._rows_for: dict[tuple[int, torch.device], _InputRows] = {}
        self._fused = _fused_linear_silu_works(dtype)
        self._impressions_np: tuple[np.ndarray, ...] | None = None
        self._starts: dict[torch.Size, np.ndarray] = {}
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
        return TextParts(p.to(self.dtype), ctr, log_uplift, take, has_bundle)

    def _rows(self, latent: torch.Tensor) -> _InputRows:
        """The demand head's input rows for these markets (preallocated per (N, device)), with the
        latent columns copied in whenever ``latent`` is a new tensor (text parts never change in place)."""
        n, width, device = latent.shape[0], len(self.feature_names), latent.device
        if (n, device) not in self._rows_for:
            inputs = torch.empty(n, self.latent + width, dtype=self.dtype, device=device)
            # float32 staging columns on a CPU when the head runs in another dtype: context_features' cast comes first
            staged = self.dtype != torch.float32 and device.type == "cpu"
            self._rows_for[(n, device)] = _InputRows(inputs, torch.empty(n, width) if staged else None)
        rows = self._rows_for[(n, device)]
        if rows.latent_source is not latent:
            rows.inputs[:, : self.latent] = latent
            rows.latent_source = latent
        return rows

    def _demand_mlp(self, inputs: torch.Tensor) -> torch.Tensor:
        """Linear, SiLU, ..., Linear on the input rows: (rows, 2) log demand and first-purchase logit."""
        x = inputs
        for layer in self.demand_linears[:-1]:
            x = _linear_silu(x, layer, self._fused)
        last = self.demand_linears[-1]
        if self._fused and x.device.type == "cpu":  # oneDNN's product is also the quicker one for two outputs
            return torch.ops.mkldnn._linear_pointwise(x, last.weight, last.bias, "none", [], "")
        return torch.addmm(last.bias, x, last.weight.T)

    def _demand(self, inputs: torch.Tensor, launched: torch.Tensor) -> torch.Tensor:
        """The demand MLP's (N, 2) outputs; on a CPU, when at least 1/32 of the markets are not on sale,
        only the rows of those on sale are computed (the others have no demand, and their first-purchase
        share multiplies zero units: their rows read 0). A row's result does not depend on the others."""
        n = inputs.shape[0]
        if inputs.device.type != "cpu" or launched.shape != (n,):
            return self._demand_mlp(inputs)
        on_sale = np.flatnonzero(launched.numpy() if launched.dtype != torch.bfloat16 else launched.float().numpy())
        if n - len(on_sale) < max(1, n // 32):  # gathering and scattering the rows would cost more than it saves
            return self._demand_mlp(inputs)
        index = torch.from_numpy(on_sale)
        with _few_threads(inputs.device):
            out, kept = torch.zeros(n, 2, dtype=self.dtype), inputs.index_select(0, index)
        if len(on_sale):
            rows = self._demand_mlp(kept)
            with _few_threads(inputs.device):
                out.index_copy_(0, index, rows)
        return out

    def _write_features(self, ctx: MarketContext, rows: _InputRows) -> np.ndarray | None:
        """Context features into the input rows; on a CPU with host arrays the NumPy route (returns
        log1p(adstock / 1000) for the impressions head), else ``context_features`` in torch (None)."""
        inputs = rows.inputs
        fields = {name: getattr(ctx, name) for name in _FEATURE_FIELDS}
        if inputs.device.type != "cpu" or not all(_is_host(v) for v in fields.values()):
            inputs[:, self.latent :] = context_features(ctx, self.feature_names, self.unknown_estimate)
            return None
        v = {name: value.numpy() for name, value in fields.items()}
        n = inputs.shape[0]
        cols = (rows.stage if rows.stage is not None else inputs[:, self.latent :]).numpy()
        since, adstock, adopters = v["weeks_since_flash"], v["adstock"], v["adopters"]
        log_adstock = np.log1p(adstock / 1000.0)
        for j, value in enumerate((
            v["season"], v["holiday"], v["price_ratio"], v["flash"], since == 1, since == 2, since == 3,
            v["competitor_strength"], v["competitor_price_ratio"], log_adstock, np.log1p(adopters) / 5.0, v["step_weeks"],
            np.log(np.maximum(v["reference_price"], 0.01)) / 5.0,
        )):  # fmt: skip
            cols[:, j] = value
        names = self.feature_names
        if "log_market_estimate" in names:
            estimate = v["market_estimate"]
            estimate = np.broadcast_to(np.where(estimate > 0, estimate, self.unknown_estimate), (n,))
            cols[:, names.index("log_market_estimate")] = np.log1p(np.maximum(estimate, 0.0)) / 10.0
        if "penetration" in names:
            share = np.maximum(adopters, 0.0) / np.maximum(estimate, 1.0)
            cols[:, names.index("penetration")] = np.minimum(share, PENETRATION_CAP)
        if "log_prelaunch_signups" in names:
            cols[:, names.index("log_prelaunch_signups")] = np.log1p(np.maximum(v["prelaunch_signups"], 0.0)) / 10.0
        if rows.stage is not None:
            inputs[:, self.latent :] = rows.stage
        return log_adstock

    @torch.inference_mode()
    def respond(self, parts: TextParts, ctx: MarketContext, creative: torch.Tensor, option: torch.Tensor) -> MarketResponse:
        """Expected outcomes of one step for every market (``creative``/``option``: chosen indices)."""
        device = parts.latent.device
        with _few_threads(device):  # elementwise work on a few thousand numbers
            rows = self._rows(parts.latent)
            log_adstock = self._write_features(ctx, rows)
        out = self._demand(rows.inputs, torch.as_tensor(ctx.launched))  # matrix products: every thread
        with _few_threads(device):
            if log_adstock is not None:  # the NumPy route
                return self._response_np(parts, ctx, log_adstock, out, creative, option)
            adstock = torch.as_tensor(ctx.adstock).double()
            ad_in = torch.stack([torch.log1p(adstock / 1000.0), torch.as_tensor(ctx.step_weeks).double().expand_as(adstock)], 1)
            impressions = self.impressions(ad_in)[:, 0]
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

    def _response_np(
        self, parts: TextParts, ctx: MarketContext, log_adstock: np.ndarray, out: torch.Tensor,
        creative: torch.Tensor, option: torch.Tensor,
    ) -> MarketResponse:  # fmt: skip
        """``respond``'s outputs on NumPy views (a CPU): the impressions head in float64 with the SiLU written
        as ``models.single_market`` writes it, the per-option lookups as flat gathers."""
        host = lambda v: v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)  # noqa: E731
        adstock, launched = host(ctx.adstock), host(ctx.launched)
        n = len(log_adstock)
        if self._impressions_np is None:
            first, last = (m for m in self.impressions if isinstance(m, nn.Linear))
            weights = (first.weight, first.bias, last.weight[0], last.bias)
            self._impressions_np = tuple(t.detach().double().numpy() for t in weights)
        w, b, w_out, b_out = self._impressions_np
        rows = self._rows_for[(n, parts.latent.device)]
        step_weeks = np.broadcast_to(host(ctx.step_weeks), (n,))
        if rows.hidden is None or not np.array_equal(rows.step_weeks, step_weeks):
            # (hidden, N) layout: a long inner loop; the step-weeks part plus the bias is kept until step_weeks changes
            rows.hidden, rows.scratch = np.empty((len(b), n)), np.empty((len(b), n))
            rows.step_weeks, rows.weeks_part = step_weeks.copy(), w[:, 1:2] * step_weeks[None, :]
            rows.weeks_part += b[:, None]
        hidden, scratch = rows.hidden, rows.scratch  # in place: no fresh 1 MB temporaries each step
        np.multiply(w[:, 0:1], log_adstock[None, :], out=hidden)
        hidden += rows.weeks_part
        np.exp(np.negative(hidden, out=scratch), out=scratch)
        scratch += 1.0
        hidden /= scratch  # SiLU: x / (1 + exp(-x))
        impressions = np.where(adstock > 0, np.exp(w_out @ hidden + b_out), 0.0)
        out = out.float().numpy()
        pick = lambda table, index: table.numpy().reshape(-1)[self._row_starts(table) + index.numpy()]  # noqa: E731
        log_uplift, has_bundle, take = (pick(t, option) for t in (parts.log_uplift, parts.has_bundle, parts.take))
        return MarketResponse(
            demand=torch.from_numpy(launched * np.exp(out[:, 0].astype(np.float64) + log_uplift)),
            first_purchase_share=torch.from_numpy(1.0 / (1.0 + np.exp(-out[:, 1]))),
            impressions=torch.from_numpy(impressions),
            ctr=torch.from_numpy(pick(parts.ctr, creative)),
            bundle_uplift=torch.from_numpy(np.exp(log_uplift)),
            bundle_take=torch.from_numpy(take),
            cannibalisation=torch.from_numpy(self.cannibalisation * has_bundle),
        )

    def _row_starts(self, table: torch.Tensor) -> np.ndarray:
        """Flat offsets of a (N, m) table's rows, cached per shape."""
        if table.shape not in self._starts:
            self._starts[table.shape] = np.arange(table.shape[0], dtype=np.int64) * table.shape[1]
        return self._starts[table.shape]


@dataclasses.dataclass
class _InputRows:
    """Per-(N, device) buffers: the demand head's input rows (product latent, context features), the
    float32 staging columns, and the impressions head's hidden layer."""

    inputs: torch.Tensor
    stage: torch.Tensor | None
    latent_source: torch.Tensor | None = None
    hidden: np.ndarray | None = None  # the impressions head's hidden layer, (hidden, N) (NumPy route)
    scratch: np.ndarray | None = None
    step_weeks: np.ndarray | None = None
    weeks_part: np.ndarray | None = None  # step_weeks times its weights plus the bias, (hidden, N)


# The MarketContext fields the context features read.
_FEATURE_FIELDS = (
    "season", "holiday", "price_ratio", "flash", "weeks_since_flash", "competitor_strength", "competitor_price_ratio",
    "adstock", "adopters", "step_weeks", "reference_price", "market_estimate", "prelaunch_signups",
)  # fmt: skip


def _is_host(value: Any) -> bool:
    """A float CPU tensor of markets (what the env passes): ``context_features`` computes in its dtype, as
    the NumPy route does. Anything else (NumPy arrays, which it first casts to float32) takes the torch route."""
    if not isinstance(value, torch.Tensor):
        return False
    return value.device.type == "cpu" and value.dtype in (torch.float64, torch.float32) and value.ndim == 1


def _linear_silu(x: torch.Tensor, layer: nn.Linear, fused: bool) -> torch.Tensor:
    """SiLU(x W^T + b): on a CPU one oneDNN product with the SiLU applied to its tiles as they are
    written (``fused``), elsewhere the product then an in-place SiLU."""
    if fused and x.device.type == "cpu":
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "swish", [], "")
    return nn.functional.silu(torch.addmm(layer.bias, x, layer.weight.T), inplace=True)


def _fused_linear_silu_works(dtype: torch.dtype) -> bool:
    """Whether this torch build has oneDNN's fused linear + SiLU for ``dtype`` and it agrees with the plain ops."""
    try:
        g = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*shape, generator=g).to(dtype) for shape in ((8, 27), (16, 27), (16,)))
        layer = nn.Linear(27, 16).to(dtype)
        layer.weight.data, layer.bias.data = w, b
        with torch.inference_mode():
            fused = _linear_silu(x, layer, True).float()
            plain = _linear_silu(x, layer, False).float()
        tol = 1e-5 if dtype in (torch.float32, torch.float64) else 0.05
        return bool(torch.allclose(fused, plain, rtol=tol, atol=tol))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


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
