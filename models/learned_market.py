"""The learned market a command runs on: a predictor folder or an ensemble folder, by default the one
this package ships (``DEFAULT_MARKET_DIR``: two fits of the same generated logs and their ensemble)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launchsim.models.card import combined_identity, is_ensemble, load_card, predictor_identity
from launchsim.models.ensemble import PredictorEnsemble, member_dirs
from launchsim.models.predictor import LaunchPredictor

_HERE = Path(__file__).resolve().parent
DEFAULT_PREDICTOR_DIR = _HERE / "default_predictor"  # the shipped fit (seed 0)
# What every command uses without --predictor: the ensemble of that fit and a second fit of the same
# logs (seed 1); a policy trained in the mean of two fits has less of one fit's errors to exploit.
DEFAULT_MARKET_DIR = _HERE / "default_ensemble"
# How far off that market reads a new product's demand level: the standard deviation over held-out
# products of log(true / predicted demand) (predictors-eval's demand_level_log_sd, 0.335). Training in
# the learned market randomises demand by this much by default.
DEFAULT_MARKET_DEMAND_SPREAD = 0.34


def load_predictor(directory: str | Path | None = None, device: Any = None) -> Any:
    """A predictor folder or an ensemble folder, default the shipped learned market: what ``--predictor
    DIR`` loads everywhere."""
    directory = Path(directory or DEFAULT_MARKET_DIR)
    if is_ensemble(directory):
        return PredictorEnsemble.load(directory, device=device)
    return LaunchPredictor.load(directory, device=device)


_SHARED: dict[tuple[str, str], Any] = {}


def load_shared(directory: str | Path | None = None, device: str | None = None) -> Any:
    """``load_predictor`` once per process and device, for callers that each need "the" predictor (vector
    envs, training runs, evaluations in a sweep worker)."""
    key = (str(Path(directory or DEFAULT_MARKET_DIR).resolve()), device or "auto")
    if key not in _SHARED:
        _SHARED[key] = load_predictor(key[0], device=device)
    return _SHARED[key]


def folder_identity(directory: str | Path | None = None) -> str:
    """The identity a predictor or ensemble folder loads with, computed from its files without loading any
    model (what sweeps key their trials by)."""
    directory = Path(directory or DEFAULT_MARKET_DIR)
    if is_ensemble(directory):
        return combined_identity([predictor_identity(path) for path in member_dirs(directory, load_card(directory))])
    return predictor_identity(directory)
