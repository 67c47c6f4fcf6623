"""The learned market a command runs on: a predictor folder or an ensemble folder, by default the one
this package ships (``DEFAULT_MARKET_DIR``: two fits of the same generated logs and their ensemble)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from launchsim.models.card import ENSEMBLE_FORMAT, combined_identity, is_ensemble, load_card, predictor_identity
from launchsim.models.ensemble import PredictorEnsemble, member_dirs
from launchsim.models.predictor import LaunchPredictor
from launchsim.models.training_data import TARGETS

from launchsim.errors import PredictorError

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


def card_demand_spread(cards: list[dict[str, Any]]) -> float:
    """The demand-level error a fine-tune measured (the first card that has ``demand_level_log_sd``: an
    ensemble's own, then its first member's), else the shipped market's."""
    for card in cards:
        if card.get("demand_level_log_sd") is not None:
            return float(card["demand_level_log_sd"])
    return DEFAULT_MARKET_DEMAND_SPREAD


def folder_demand_spread(directory: str | Path | None = None) -> float:
    """``card_demand_spread`` of a predictor or ensemble folder, read from its cards without loading a model."""
    directory = Path(directory or DEFAULT_MARKET_DIR)
    card = load_card(directory)
    cards = [card, *([load_card(member_dirs(directory, card)[0])] if card.get("format") == ENSEMBLE_FORMAT else [])]
    return card_demand_spread(cards)


def market_members(predictor: Any) -> list[Any]:
    """An ensemble's member predictors, or the predictor itself as its only member."""
    return list(getattr(predictor, "members", None) or [predictor])


def trained_targets(predictor: Any) -> set[str]:
    """The outcomes the predictor's logs trained (an ensemble: those every member trained); a card from
    before the field was recorded counts as trained on all of them."""
    cards = [getattr(m, "card", None) or {} for m in market_members(predictor)]
    return set.intersection(*(set(card.get("targets_trained", TARGETS)) for card in cards))


def check_levers(predictor: Any, scenario: Any) -> None:
    """Refuse a lever whose responses the predictor never learned, rather than let an untrained head answer:
    ads without impressions and clicks in its logs, bundles without bundled units. A scenario market estimate
    that the predictor's logs never carried is read as unknown, with a warning (once per predictor)."""
    trained, name = trained_targets(predictor), _name(predictor)
    heads = ", ".join(sorted(trained))
    problems = []
    missing = [t for t in ("impressions", "clicks") if t not in trained]
    if missing and scenario.ads.budget > 0:
        problems.append(
            f"{scenario.source}: ads.budget: found {scenario.ads.budget:,.0f}, but {name} was trained on logs without "
            f"{' and '.join(missing)} (trained heads: {heads}), so nothing says what ads buy; set ads.budget: 0, or use a "
            "predictor fine-tuned on logs with ad spend, impressions and clicks"
        )
    if "bundled_units" not in trained and scenario.catalogue:
        problems.append(
            f"{scenario.source}: catalogue: found {len(scenario.catalogue)} bundle partner(s), but {name} was trained on logs "
            f"without bundled_units (trained heads: {heads}), so nothing says what a bundle sells; remove the catalogue, or "
            "use a predictor fine-tuned on logs with bundled units"
        )
    if problems:
        raise PredictorError("\n".join(problems))
    estimates = [p.market_estimate for p in scenario.products if p.market_estimate]
    if estimates and all(getattr(m, "default_market_estimate", 1.0) <= 0 for m in market_members(predictor)) and name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(
            f"{name} was trained on logs without market estimates: it reads {scenario.source}'s market_estimate as unknown",
            UserWarning, stacklevel=2,
        )


_WARNED: set[str] = set()


def _name(predictor: Any) -> str:
    return f"the predictor {predictor.source}" if getattr(predictor, "source", None) else f"the predictor {getattr(predictor, 'identity', '')}".rstrip()
