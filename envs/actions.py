"""The four levers as action spaces, and their translation into one business decision.

``MultiDiscrete([2, P, B, A, C])``: launch (wait/launch), price level (the scenario's levels, then
the flash sale if the scenario has one), bundle option (none, then every catalogue item x allowed
discount), ad-budget share level, and ad creative. The ``Box`` variant holds the same levers as six
numbers in [-1, 1] for continuous agents (SAC, TD3): launch > 0, price mapped onto the level range,
flash > 0, bundle and creative binned to an option, ad share mapped onto [0, max level].
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from gymnasium import spaces

from launchsim.scenarios.schema import Scenario

ActionType = Literal["multidiscrete", "box"]


class Decision(NamedTuple):
    launch: bool
    price_ratio: float  # price / reference price for a regular week
    flash: bool
    bundle: int  # 0 = none, else 1 + index into ActionLayout.bundle_options
    ad_share: float  # share of the remaining ad budget to spend this step
    creative: int


class BundleOption(NamedTuple):
    item: int  # index into scenario.catalogue
    discount: float


class ActionLayout:
    """Builds the action space of a scenario and decodes actions into Decisions."""

    def __init__(self, scenario: Scenario, action_type: ActionType):
        if action_type not in ("multidiscrete", "box"):
            raise ValueError(f"action_type must be 'multidiscrete' or 'box', found {action_type!r}")
        self.action_type = action_type
        self.price_levels = [float(x) for x in scenario.pricing.levels]
        self.has_flash = scenario.pricing.flash_sale is not None
        self.bundle_options = [
            BundleOption(i, float(d)) for i, item in enumerate(scenario.catalogue) for d in item.discounts
        ]
        self.spend_levels = [float(x) for x in scenario.ads.spend_levels]
        self.n_creatives = len(scenario.ads.creatives)
        self.nvec = np.array(
            [2, len(self.price_levels) + self.has_flash, 1 + len(self.bundle_options), len(self.spend_levels), self.n_creatives],
            dtype=np.int64,
        )
        if action_type == "multidiscrete":
            self.space: spaces.Space = spaces.MultiDiscrete(self.nvec)
        else:
            self.space = spaces.Box(-1.0, 1.0, shape=(6,), dtype=np.float32)
        self._lo, self._hi = min(self.price_levels), max(self.price_levels)
        self._max_share = max(self.spend_levels)

    def decode(self, action) -> Decision:
        """Translate a raw action of this layout's space into a Decision (no validity checks)."""
        if self.action_type == "multidiscrete":
            launch, price, bundle, ad, creative = (int(a) for a in action)
            flash = self.has_flash and price == len(self.price_levels)
            ratio = self.price_levels[min(price, len(self.price_levels) - 1)]
            return Decision(bool(launch), ratio, flash, bundle, self.spend_levels[ad], creative)
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        unit = (a + 1.0) / 2.0
        return Decision(
            launch=bool(a[0] > 0),
            price_ratio=float(self._lo + unit[1] * (self._hi - self._lo)),
            flash=bool(self.has_flash and a[2] > 0),
            bundle=int(round(unit[3] * len(self.bundle_options))),
            ad_share=float(unit[4] * self._max_share),
            creative=int(round(unit[5] * (self.n_creatives - 1))),
        )

    def encode(self, d: Decision) -> np.ndarray:
        """The action of this layout's space that decodes to (the nearest representable) ``d``."""
        if self.action_type == "multidiscrete":
            price = len(self.price_levels) if d.flash else _nearest(self.price_levels, d.price_ratio)
            return np.array([int(d.launch), price, d.bundle, _nearest(self.spend_levels, d.ad_share), d.creative])
        span = self._hi - self._lo
        unit = [
            1.0 if d.launch else 0.0,
            (d.price_ratio - self._lo) / span if span > 0 else 0.5,
            1.0 if d.flash else 0.0,
            d.bundle / len(self.bundle_options) if self.bundle_options else 0.0,
            d.ad_share / self._max_share if self._max_share > 0 else 0.0,
            d.creative / (self.n_creatives - 1) if self.n_creatives > 1 else 0.0,
        ]
        return (np.clip(unit, 0.0, 1.0) * 2.0 - 1.0).astype(np.float32)


def _nearest(levels: list[float], value: float) -> int:
    return int(np.argmin([abs(x - value) for x in levels]))
