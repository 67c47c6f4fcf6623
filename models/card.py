"""Predictor and ensemble folders on disk: the card every folder holds, and the identity of a folder.

A predictor folder holds ``card.json`` (``CARD_FORMAT``), ``heads.safetensors`` and the encoder
(``adapter/`` for LoRA, ``encoder/`` for a full fine-tune, nothing for a frozen encoder); an ensemble
folder holds only ``card.json`` (``ENSEMBLE_FORMAT``) naming its member folders.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from launchsim.errors import PredictorError

CARD_FORMAT = "launchsim-predictor"
CARD_VERSION = 1
ENSEMBLE_FORMAT = "launchsim-ensemble"
ENSEMBLE_VERSION = 1


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


def is_ensemble(directory: Path) -> bool:
    return load_card(directory).get("format") == ENSEMBLE_FORMAT


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


def combined_identity(identities: list[str]) -> str:
    """The identity of an ensemble of predictors with these identities."""
    return "ens-" + hashlib.sha256("|".join(identities).encode()).hexdigest()[:12]
