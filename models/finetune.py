"""Fine-tuning a predictor on launch logs (the canonical schema of ``models.user_logs``).

Three phases, all grouped by text so that each distinct text is encoded once per pass:
1. encode every distinct text with the frozen encoder and train the heads on the cached embeddings;
2. (``mode`` lora or full) fine-tune the encoder with the heads: each batch is a group of products
   whose descriptions are encoded with gradients, with all of their rows; creative and partner
   embeddings come from a cache refreshed every epoch;
3. re-encode every text with the final encoder and polish the heads on those embeddings, so that
   training ends on exactly what inference will see.
Rows carry only the targets they have: a loss term whose target column is missing or NaN is skipped,
so logs with demand but no clicks train only the demand head. Runs on CUDA with bf16 autocast when
present, on CPU otherwise.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from launchsim.models.card import CARD_FORMAT, CARD_VERSION
from launchsim.models.closed_loop import rollout
from launchsim.models.context_features import FEATURE_NAMES, FEATURES_VERSION, context_features
from launchsim.models.heads import PredictorHeads
from launchsim.models.predictor import DEFAULT_BASE, LaunchPredictor
from launchsim.models.text_encoder import TextEncoder
from launchsim.models.training_data import TARGETS, TrainingData, gather
from launchsim.models.user_logs import season_profile, with_season
from torch.nn import functional as F
from tqdm import tqdm


@dataclass
class FinetuneConfig:
    encoder: str | None = None  # a local BERT-family folder; None = the embedded all-MiniLM-L6-v2
    mode: Literal["frozen", "lora", "full"] = "lora"
    lora_rank: int = 16
    head_epochs: int = 150
    encoder_epochs: int = 3
    polish_epochs: int = 40
    batch_rows: int = 1024
    products_per_batch: int = 16
    lr_heads: float = 2e-3
    lr_encoder: float = 2e-3  # LoRA; a full fine-tune uses a hundredth of it
    hidden: int = 256
    # A narrow, regularised text bottleneck: measured on 2,000 generated products (frozen encoder),
    # latent 32 / dropout 0.1 / weight decay 1e-3 gave held-out demand R² 0.738; 12 / 0.3 / 1e-2 gave 0.825.
    latent: int = 12
    creative_latent: int = 4
    # 0: the CTR logit is linear in the product and creative traits (a product term plus a creative
    # term); > 0: an MLP with that hidden width on both. Measured on runs/v2_logs.parquet at a reduced
    # budget (40/1/15 epochs), 0 vs 64 gave paraphrased CTR R² 0.216 vs 0.169 but held-out 0.679 vs
    # 0.705: no clear gain, so the MLP stays the default.
    ctr_hidden: int = 64
    dropout: float = 0.3
    weight_decay: float = 1e-2
    max_length: int = 64
    # Buyers so far as the env computes them for a new product (the heads' own rollout, models.closed_loop)
    # rather than as observed, from this share of the heads' epochs on; 1.0 trains on observed ones only.
    closed_loop_from: float = 1.0
    seed: int = 0
    device: str | None = None


def losses(out: dict[str, torch.Tensor], data: TrainingData, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Likelihood terms for the rows that carry each target (Poisson counts, binomial shares)."""
    y = {k: v[rows] for k, v in data.y.items()}
    launched = data.launched[rows]
    terms: dict[str, torch.Tensor] = {}
    m = launched & torch.isfinite(y["units"])
    if m.any():
        terms["demand"] = F.poisson_nll_loss(out["log_demand"][m], y["units"][m], log_input=True, full=False) / data.units_scale
    m = m & (y["units"] > 0) & torch.isfinite(y["new_customers"])
    if m.any():
        share = (y["new_customers"][m] / y["units"][m]).clamp(0, 1)
        terms["first_share"] = _weighted_bce(out["first_share_logit"][m], share, y["units"][m])
    m = (y["impressions"] > 0) & torch.isfinite(y["clicks"])
    if m.any():
        terms["ctr"] = _weighted_bce(out["ctr_logit"][m], y["clicks"][m] / y["impressions"][m], y["impressions"][m])
    m = (data.adstock[rows] > 0) & torch.isfinite(y["impressions"])
    if m.any():
        terms["impressions"] = F.poisson_nll_loss(out["log_impressions"][m], y["impressions"][m], log_input=True) / data.imp_scale
    m = launched & (data.discount[rows] > 0) & (y["units"] > 0) & torch.isfinite(y["bundled_units"])
    if m.any():
        terms["take"] = _weighted_bce(out["take_logit"][m], y["bundled_units"][m] / y["units"][m], y["units"][m])
    return terms


def _weighted_bce(logit: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(logit, target, reduction="none") * weight).sum() / weight.sum()


def _forward(
    heads: PredictorHeads, table: torch.Tensor, data: TrainingData, rows: torch.Tensor, desc: torch.Tensor | None = None,
    feats: torch.Tensor | None = None,
):  # fmt: skip
    """The heads on ``rows`` (their product embeddings ``desc`` and features ``feats`` where given); the
    creative and partner texts are read only where the logs train that part (``TrainingData.parts``)."""
    product = gather(table, data.desc[rows]) if desc is None else desc
    creative = gather(table, data.creative[rows]) if data.parts["ctr"] else None
    partner = gather(table, data.partner[rows]) if data.parts["bundle"] else None
    return heads(product, creative, partner, data.feats[rows] if feats is None else feats, data.discount[rows], **data.parts)


def closed_loop_features(heads: PredictorHeads, table: torch.Tensor, data: TrainingData, logs: pd.DataFrame) -> torch.Tensor:
    """Every row's context features with buyers so far from the heads' own predictions of the product's
    earlier weeks (the closed loop the env runs for a new product), instead of the observed ones."""
    was_training = heads.training
    heads.eval()
    device = data.feats.device

    @torch.no_grad()
    def predict(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        rows = torch.as_tensor(frame.index.to_numpy(copy=True), device=device)
        feats = context_features(frame, heads.feature_names).to(device)
        out = _forward(heads, table, data, rows, feats=feats)
        demand = (out["log_demand"].exp() * data.launched[rows]).double().cpu().numpy()
        share = torch.sigmoid(out["first_share_logit"]).double().cpu().numpy() if data.has("new_customers") else np.ones(len(frame))
        return {"demand": demand, "first_share": share}

    adopters = rollout(logs, predict).adopters
    heads.train(was_training)
    return context_features(logs.assign(adopters=adopters), heads.feature_names).to(device)


def _train_heads(
    heads: PredictorHeads, table: torch.Tensor, data: TrainingData, epochs: int, cfg: FinetuneConfig, desc: str, logs: pd.DataFrame,
) -> dict[str, float]:  # fmt: skip
    """From ``cfg.closed_loop_from`` of the epochs on (when below 1), each epoch reads the features of a
    fresh closed-loop rollout (``closed_loop_features``)."""
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr_heads, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * ((data.n + cfg.batch_rows - 1) // cfg.batch_rows)))
    last: dict[str, float] = {}
    heads.train()
    for epoch in tqdm(range(epochs), desc=desc, leave=False):
        if cfg.closed_loop_from < 1.0 and epoch >= cfg.closed_loop_from * epochs:
            data.feats = closed_loop_features(heads, table, data, logs)
        totals: dict[str, float] = {}
        for rows in torch.randperm(data.n, device=data.feats.device).split(cfg.batch_rows):
            terms = losses(_forward(heads, table, data, rows), data, rows)
            loss = sum(terms.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            for k, v in terms.items():
                totals[k] = totals.get(k, 0.0) + v.item() * len(rows) / data.n
        last = totals
    return last


def _train_encoder(
    encoder: TextEncoder, heads: PredictorHeads, data: TrainingData, cfg: FinetuneConfig, device: torch.device, logs: pd.DataFrame
) -> None:
    params = [p for p in encoder.parameters() if p.requires_grad]
    lr = cfg.lr_encoder if cfg.mode == "lora" else cfg.lr_encoder / 100
    opt = torch.optim.AdamW([{"params": params, "lr": lr}, {"params": heads.parameters(), "lr": cfg.lr_heads / 4}])
    steps = cfg.encoder_epochs * ((len(data.product_rows) + cfg.products_per_batch - 1) // cfg.products_per_batch)
    warmup = max(1, steps // 20)
    # Warm-up then cosine decay, and clipped gradients: at a constant rate, a longer run (1,000 steps
    # on 4,000 products) drifted and fitted far worse than a 375-step one.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i / steps, 1.0)))
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    for epoch in range(cfg.encoder_epochs):
        # refreshed each epoch: creatives and partners
        table = encoder.encode(data.texts, desc=f"re-encoding texts, epoch {epoch + 1}").to(device)
        if cfg.closed_loop_from < 1.0:
            data.feats = closed_loop_features(heads, table, data, logs)
        groups = [data.product_rows[i] for i in torch.randperm(len(data.product_rows))]
        for start in tqdm(range(0, len(groups), cfg.products_per_batch), desc=f"fine-tuning encoder, epoch {epoch + 1}", leave=False):
            chunk = groups[start : start + cfg.products_per_batch]
            rows = torch.cat(chunk)
            first = torch.stack([g[0] for g in chunk])
            texts = [data.texts[i] for i in data.desc[first].tolist()]
            encoder.train()
            with autocast:
                emb = encoder(texts).float()
            desc = torch.cat([emb[i].expand(len(g), -1) for i, g in enumerate(chunk)])
            terms = losses(_forward(heads, table, data, rows, desc=desc), data, rows)
            loss = sum(terms.values())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params + list(heads.parameters()), 1.0)
            opt.step()
            sched.step()
    encoder.eval()


def finetune(logs: pd.DataFrame, cfg: FinetuneConfig, source: str = "<logs>") -> LaunchPredictor:
    """Fine-tune a predictor on logs in the canonical schema and return it (unsaved)."""
    set_seed(cfg.seed)
    profile = None
    if logs.attrs.get("season_derived"):  # a season index from these training rows only, kept on the card
        profile = np.round(season_profile(logs), 6)
        logs = with_season(logs, profile)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    logs = logs.sort_values(["product_id", "week"], kind="stable").reset_index(drop=True)  # the closed loop's order
    data = TrainingData(logs).to(device)  # the current FEATURE_NAMES
    encoder = TextEncoder(cfg.encoder, max_length=cfg.max_length).to(device)
    heads = PredictorHeads(encoder.dim, cfg.hidden, cfg.latent, cfg.creative_latent, cfg.dropout, ctr_hidden=cfg.ctr_hidden).to(device)
    _init_bias(heads, logs)
    table = encoder.encode(data.texts, desc="encoding texts").to(device)
    head_loss = _train_heads(heads, table, data, cfg.head_epochs, cfg, "training heads on frozen embeddings", logs)
    if cfg.mode != "frozen" and cfg.encoder_epochs > 0:
        if cfg.mode == "lora":
            encoder.add_lora(cfg.lora_rank)
            encoder.to(device)
        _train_encoder(encoder, heads, data, cfg, device, logs)
        table = encoder.encode(data.texts, desc="encoding texts with the fine-tuned encoder").to(device)
        head_loss = _train_heads(heads, table, data, cfg.polish_epochs, cfg, "polishing heads on fine-tuned embeddings", logs)
    card = {
        "format": CARD_FORMAT,
        "version": CARD_VERSION,
        "encoder": {
            "mode": cfg.mode,
            "base": DEFAULT_BASE if cfg.encoder is None else str(Path(cfg.encoder).resolve()),
            "max_length": cfg.max_length,
            "lora_rank": cfg.lora_rank if cfg.mode == "lora" else 0,
            "pooling": "mean",
        },
        "text_dim": encoder.dim,
        "hidden": cfg.hidden,
        "latent": cfg.latent,
        "creative_latent": cfg.creative_latent,
        "ctr_hidden": cfg.ctr_hidden,
        "feature_names": list(FEATURE_NAMES),
        "default_market_estimate": _median_estimate(logs),
        "features_version": FEATURES_VERSION,
        "text_fields": ["description", "creative_text", "partner_text"],
        "targets_trained": sorted(k for k in TARGETS if data.has(k)),
        "training_data": {
            "source": source, "sha256": logs_hash(logs), "rows": len(logs), "products": int(logs["product_id"].nunique()),
            **_units_means(logs),
        },  # fmt: skip
        "season_profile": None if profile is None else profile.tolist(),
        "train_loss": head_loss,
        "demand_overdispersion": _overdispersion(heads, table, data),
        "cannibalisation": 0.2,  # not identifiable from logs without partner sales; an assumption
        "config": {k: v for k, v in asdict(cfg).items() if k != "device"},
    }
    return LaunchPredictor(encoder, heads, card)


@torch.no_grad()
def _overdispersion(heads: PredictorHeads, table: torch.Tensor, data: TrainingData) -> float:
    """The demand over-dispersion of the training rows around the fitted heads (``overdispersion``)."""
    rows = torch.arange(data.n, device=data.feats.device)
    mu = _forward(heads.eval(), table, data, rows)["log_demand"].exp()
    y = data.y["units"]
    m = data.launched & torch.isfinite(y)
    return overdispersion(y[m], mu[m], data.desc[m])  # rows of one product share its description


def overdispersion(y: torch.Tensor, mu: torch.Tensor, product: torch.Tensor) -> float:
    """Negative-binomial k (var = mu + k mu^2) of counts ``y`` around predictions ``mu``, by maximum
    likelihood on a grid of k from 1e-4 to 5 (steps of 2.3%; 0 when 1e-4 fits best).

    Each product's predictions are first rescaled to its own total: a predictor's scale error is
    constant over a product's weeks, not week-to-week noise, and counting it as noise made the learned
    market sample far noisier weeks than the truth (k = 1.77 against 0.05 for the v2 default).
    Likelihood, not moments: the moment estimate is a ratio of sums of squares that one extreme week
    sets (a 74,215-unit order in the Online Retail logs gave fits of the same logs k 0.06 or 0.59).
    """
    if y.numel() == 0:
        return 0.0
    y, mu = y.double(), mu.double()
    n = int(product.max()) + 1
    y_sum = torch.zeros(n, dtype=y.dtype, device=y.device).index_add_(0, product, y)
    mu_sum = torch.zeros(n, dtype=y.dtype, device=y.device).index_add_(0, product, mu)
    scaled = (mu * (y_sum / mu_sum.clamp(min=1e-9))[product]).clamp(min=1e-9)
    grid = torch.logspace(-4, math.log10(5.0), 241, dtype=y.dtype, device=y.device)
    loglik = torch.stack([_nb_loglik(y, scaled, k) for k in grid])
    best = int(torch.argmax(loglik))
    return 0.0 if best == 0 else float(grid[best])


def _nb_loglik(y: torch.Tensor, mu: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Negative-binomial log-likelihood of counts ``y`` at means ``mu`` and over-dispersion ``k``, summed
    (the terms in y alone dropped)."""
    r = 1.0 / k
    return (torch.lgamma(y + r) - torch.lgamma(r) + r * torch.log(r / (r + mu)) + y * torch.log(mu / (r + mu))).sum()


def _init_bias(heads: PredictorHeads, logs: pd.DataFrame) -> None:
    """Start the demand and impressions outputs at the data's mean log level (faster, stabler training)."""
    with torch.no_grad():
        if "units" in logs:
            units = logs.loc[logs["launched"] > 0, "units"]
            heads.demand[-1].bias[0] = float(np.log(units.mean() + 1.0))
        if "impressions" in logs:
            imp = logs.loc[logs["adstock"] > 0, "impressions"]
            if len(imp):
                heads.impressions[-1].bias[0] = float(np.log(imp.mean() + 1.0))


def logs_hash(logs: pd.DataFrame) -> str:
    """A content hash of the training rows (recorded in the predictor's card)."""
    return hashlib.sha256(pd.util.hash_pandas_object(logs, index=False).values.tobytes()).hexdigest()[:16]


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (and CUDA) for a reproducible run, through transformers' set_seed."""
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def _units_means(logs: pd.DataFrame) -> dict[str, float | None]:
    """Mean units per on-sale week and per sale week of the training rows (what a backtest's deviance is
    explained against)."""
    if "units" not in logs:
        return {"units_mean": None, "units_mean_sale_weeks": None}
    units = logs.loc[logs["launched"] > 0, "units"].dropna()
    return {"units_mean": float(units.mean()), "units_mean_sale_weeks": float(units[units > 0].mean())}


def _median_estimate(logs) -> float:
    """The median market estimate of the training products (0 when the logs have none): what an
    unknown estimate reads as at prediction time."""
    if "market_estimate" not in logs:
        return 0.0
    known = logs.loc[logs["market_estimate"] > 0].groupby("description")["market_estimate"].first()
    return float(known.median()) if len(known) else 0.0
