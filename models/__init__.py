"""Response models of the market: the structural ground truth here; the fine-tuned predictors and their
ensembles in ``models.predictor`` and ``models.ensemble``."""

from launchsim.models.outcomes import Outcome, expected_outcome, sample_outcome
from launchsim.models.response import MarketContext, MarketResponse, ResponseModel
from launchsim.models.structural_market import StructuralMarket

__all__ = [
    "MarketContext",
    "MarketResponse",
    "Outcome",
    "ResponseModel",
    "StructuralMarket",
    "expected_outcome",
    "sample_outcome",
]
