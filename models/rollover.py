"""How a predecessor kept on sale beside the new product sells (a dual rollover), as each market reads it.

Once the new product is on sale, a kept predecessor sells its weekly rate times
(1 - cannibalisation) * (1 - markdown)^-elasticity:
- the structural market reads both from the scenario's ``truth.predecessor`` (defaults 0.5 and 2.62);
- any other response model (the learned market) has no truth to read: the cannibalisation is the
  cosine similarity of the two product texts under the model's own text encoder (clipped to [0, 1];
  an ensemble's members' mean), and the elasticity is 2.62, the mean price elasticity of the
  meta-analysis of Bijmolt, van Heerde and Pieters (2005, Journal of Marketing Research 42:141-156).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from launchsim.scenarios.schema import PredecessorTruth, Scenario

LITERATURE_ELASTICITY = 2.62


def kept_share(model: Any, scenario: Scenario, product: int) -> float:
    """The multiplier of the predecessor's weekly rate once the new product is on sale: 0 when it is
    retired at the launch (or there is none)."""
    old = scenario.predecessor
    if old is None or old.after_launch != "keep":
        return 0.0
    cannibalisation, elasticity = rollover_terms(model, scenario, product)
    return (1.0 - cannibalisation) * (1.0 - old.markdown) ** -elasticity


def rollover_terms(model: Any, scenario: Scenario, product: int) -> tuple[float, float]:
    """The share of the predecessor's sales the new product takes, and its markdown elasticity, as the
    market ``model`` reads them."""
    from launchsim.models.structural_market import StructuralMarket

    if isinstance(model, StructuralMarket):
        truth = scenario.require_truth("the structural market's predecessor").predecessor or PredecessorTruth()
        return truth.cannibalisation, truth.markdown_elasticity
    return text_similarity(model, scenario.predecessor.text, scenario.products[product].text), LITERATURE_ELASTICITY


def text_similarity(model: Any, a: str, b: str) -> float:
    """The cosine similarity of two product texts under a response model's encoder, clipped to [0, 1]."""
    ea, eb = model.encode([a, b], "product")
    members = zip(ea, eb) if isinstance(ea, tuple) else [(ea, eb)]
    cosines = []
    for u, v in ((_vector(u), _vector(v)) for u, v in members):
        cosines.append(float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-12)))
    return min(max(float(np.mean(cosines)), 0.0), 1.0)


def _vector(encoding: Any) -> np.ndarray:
    """An encoding (a torch tensor or an array) as a flat float64 array."""
    if hasattr(encoding, "detach"):
        encoding = encoding.detach().float().cpu().numpy()
    return np.asarray(encoding, dtype=np.float64).ravel()
