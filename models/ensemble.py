"""Several fitted predictors as one learned market: the mixture of their expected responses.

Two fine-tunes of the same logs (different seeds) are about equally good on held-out products but
wrong in different places, and a policy trained in one fit learns to exploit that fit's own errors.
Training in the mean of several fits leaves less to exploit (docs/EVALUATION.md measures it).
On disk an ensemble is a folder holding only ``card.json``: its format, and its member predictor
folders as paths relative to it. Every command that takes ``--predictor DIR`` accepts one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from launchsim.models.card import ENSEMBLE_FORMAT, ENSEMBLE_VERSION, combined_identity, load_card
from launchsim.models.predictor import LaunchPredictor
from launchsim.models.response import MarketContext, MarketResponse, MarketTexts, TextRole

from launchsim.errors import PredictorError
from launchsim.files import atomic_write


class PredictorEnsemble:
    """The learned market of several ``LaunchPredictor`` fits, behind the ``ResponseModel`` interface.

    Its expected response is the mean of the members' (``mean_response``); an encoded text is the
    tuple of the members' encodings. Product traits in observations come from the first member.
    """

    def __init__(self, members: Sequence[Any], card: dict[str, Any] | None = None):
        if len(members) < 2:
            raise PredictorError(f"an ensemble needs at least two member predictors, found {len(members)}")
        devices = {str(m.device) for m in members}
        if len(devices) > 1:
            raise PredictorError(f"ensemble members are on different devices: {sorted(devices)}")
        self.members = list(members)
        self.device = self.members[0].device
        self.identity = combined_identity([m.identity for m in self.members])
        self.card = card or {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION}
        self.source: Path | None = None  # the folder it was loaded from
        # The mixture's variance is larger than the mean member's; the mean k keeps each member's noise model.
        self.demand_overdispersion = float(np.mean([m.demand_overdispersion for m in self.members]))

    @property
    def traits_source(self) -> Any:
        """The member whose latent product traits go into multi-scenario observations."""
        return self.members[0]

    def encode(self, texts: Sequence[str], role: TextRole = "product") -> list[tuple[Any, ...]]:
        """One tuple per text: each member's encoding (each member caches its own)."""
        per_member = [m.encode(texts, role) for m in self.members]
        return list(zip(*per_member))

    def responder(self, x: Any, markets: Sequence[MarketTexts], head_dtype: Any = None) -> EnsembleResponder:
        """Each member bound to the markets (its own encodings); responses are their mean (``mean_response``)."""
        members = []
        for i, member in enumerate(self.members):
            own = [MarketTexts(m.product[i], [c[i] for c in m.creatives], [(None if p is None else p[i], d) for p, d in m.options]) for m in markets]
            members.append(member.responder(x, own, head_dtype))
        return EnsembleResponder(members, self.demand_overdispersion)

    def predict_frame(self, logs: Any, batch_rows: int = 65536) -> dict[str, Any]:
        """Expected demand, first-purchase share, CTR and impressions per logs row: the members' mean (the
        share weighted by demand, CTR by impressions)."""
        preds = [m.predict_frame(logs, batch_rows) for m in self.members]
        demand = np.mean([p["demand"] for p in preds], axis=0)
        first_share = _weighted([p["first_share"] for p in preds], [p["demand"] for p in preds])
        impressions = np.mean([p["impressions"] for p in preds], axis=0)
        ctr = _weighted([p["ctr"] for p in preds], [p["impressions"] for p in preds])
        return {"demand": demand, "first_share": first_share, "ctr": ctr, "impressions": impressions}

    # ------------------------------------------------------------------ saving and loading

    @staticmethod
    def write(directory: str | Path, members: Sequence[str | Path], measured: dict[str, Any] | None = None) -> Path:
        """Write an ensemble folder over existing predictor folders (stored relative to it) and return it;
        ``measured`` adds what was measured of the ensemble as a whole (its ``demand_level_log_sd``)."""
        directory = Path(directory)
        if len(members) < 2:
            raise PredictorError(f"an ensemble needs at least two member predictors, found {len(members)}")
        check_ensemble_folder(directory)
        paths = [Path(os.path.relpath(Path(m).resolve(), directory.resolve())).as_posix() for m in members]
        card = {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "members": paths, **(measured or {})}
        member_dirs(directory, card)  # a missing or nested member fails now, not when the ensemble is first loaded
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "card.json", json.dumps(card, indent=2) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> PredictorEnsemble:
        """Load an ensemble folder and each of its members; fail clearly on a missing or nested member."""
        directory = Path(directory)
        card = load_card(directory)
        if card.get("format") != ENSEMBLE_FORMAT or card.get("version") != ENSEMBLE_VERSION:
            raise PredictorError(
                f"{directory / 'card.json'}: format {card.get('format')!r} v{card.get('version')}, "
                f"expected {ENSEMBLE_FORMAT!r} v{ENSEMBLE_VERSION}"
            )
        ensemble = cls([LaunchPredictor.load(path, device=device) for path in member_dirs(directory, card)], card=card)
        ensemble.source = directory
        return ensemble


class EnsembleResponder:
    """The members' responders stepped together; the response is their mean."""

    def __init__(self, members: Sequence[Any], overdispersion: float):
        self.members, self.overdispersion = list(members), overdispersion

    def respond(self, ctx: MarketContext, creative: Any, option: Any) -> MarketResponse:
        return mean_response([m.respond(ctx, creative, option) for m in self.members])


def check_ensemble_folder(directory: Path) -> None:
    """Refuse a folder that holds a single predictor: an ensemble is written to a folder of its own."""
    if (directory / "card.json").exists() and load_card(directory).get("format") != ENSEMBLE_FORMAT:
        raise PredictorError(f"{directory}: holds a predictor; write the ensemble to a folder of its own")


def member_dirs(directory: Path, card: dict[str, Any]) -> list[Path]:
    """An ensemble card's member folders, resolved against the ensemble folder; each checked to be a
    predictor folder and not an ensemble."""
    from launchsim.models.card import load_card

    names = card.get("members")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise PredictorError(f"{directory / 'card.json'}: members: expected a list of predictor folders, found {names!r}")
    paths = []
    for name in names:
        path = (directory / name).resolve()
        if load_card(path, where=f"{directory / 'card.json'}: member {name!r}").get("format") == ENSEMBLE_FORMAT:
            raise PredictorError(f"{directory / 'card.json'}: member {name!r} is itself an ensemble")
        paths.append(path)
    return paths


def mean_response(responses: Sequence[MarketResponse]) -> MarketResponse:
    """The expected response of an equal mixture of markets: mean demand, impressions, uplift and
    cannibalisation; each share weighted by what it is a share of (first purchases and bundle take by
    demand, CTR by impressions), so expected first purchases, bundled units and clicks are the means too.
    Cannibalisation is a plain mean, exact while the members share one value (0.2 on every fit that
    ``run_sim.py finetune`` makes). Works on floats (one market), NumPy arrays or tensors (a batch)."""
    n = len(responses)
    mean = lambda name: sum(getattr(r, name) for r in responses) / n  # noqa: E731
    demand = [r.demand for r in responses]
    return MarketResponse(
        demand=mean("demand"),
        first_purchase_share=_weighted([r.first_purchase_share for r in responses], demand),
        impressions=mean("impressions"),
        ctr=_weighted([r.ctr for r in responses], [r.impressions for r in responses]),
        bundle_uplift=mean("bundle_uplift"),
        bundle_take=_weighted([r.bundle_take for r in responses], demand),
        cannibalisation=mean("cannibalisation"),
    )


def _weighted(values: Sequence[Any], weights: Sequence[Any]) -> Any:
    """sum(w v) / sum(w), or the plain mean where the weights sum to zero (no demand, no impressions)."""
    total = sum(weights)
    weighted = sum(w * v for w, v in zip(weights, values))
    plain = sum(values) / len(values)
    if isinstance(total, float | int):
        return weighted / total if total > 0 else plain
    where = torch.where if isinstance(total, torch.Tensor) else np.where
    return where(total > 0, weighted / (total + (total <= 0)), plain)
