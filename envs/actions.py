"""The four levers as action spaces, and their translation into one business decision.

``MultiDiscrete([2, P, B, A, C])``: launch (wait/launch), price level (the scenario's levels, then
the flash sale if the scenario has one), bundle option (none, then every catalogue item x allowed
discount), ad-budget share level, and ad creative. The ``Box`` variant holds the same levers as six
numbers in [-1, 1] for continuous agents (SAC, TD3): launch > 0, price mapped onto the level range,
flash > 0, bundle and creative binned to an option, ad share mapped onto [0, max level].

``decode`` is the one translation of actions into lever values: for one market on Python numbers
(``ActionLayout.decode``, the single env) and for a batch on arrays (the batched env stacks every
market's ``ActionLayout.tables``); an index beyond a market's own range is clipped to its last value.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np
from gymnasium import spaces
from launchsim.models.ops import SCALAR
from launchsim.scenarios.schema import Scenario

ActionType = Literal["multidiscrete", "box"]


class Decision(NamedTuple):
    launch: Any  # bool
    price_ratio: Any  # price / reference price for a regular week
    flash: Any  # bool
    bundle: Any  # 0 = none, else 1 + index into ActionLayout.bundle_options
    ad_share: Any  # share of the remaining ad budget to spend this step
    creative: Any


class BundleOption(NamedTuple):
    item: int  # index into scenario.catalogue
    discount: float


class DecodeTables(NamedTuple):
    """One market's lever values per action index of a (possibly wider, shared) MultiDiscrete space, and the
    Box mapping. Python lists and numbers; the batched env stacks them per market."""

    price: list[float]  # price ratio per price index (the flash index reads the last level), moved inside the constraints
    is_flash: list[bool]
    price_allowed: list[bool]  # whether the constraints allow the index's own level (or flash price)
    spend: list[float]  # ad share per ad index
    native_max: list[int]  # the market's own largest index per dimension
    box_lo: float  # lowest Box price ratio (the lowest level, or the constraints' bound above it)
    box_span: float  # highest - lowest Box price ratio
    box_options: int  # bundle options (without "none")
    box_share: float  # largest ad share
    box_creatives: int  # creatives - 1
    has_flash: bool


class ActionLayout:
    """Builds the action space of a scenario and translates between actions and Decisions."""

    def __init__(self, scenario: Scenario, action_type: ActionType, nvec: np.ndarray | None = None, product: int = 0):
        if action_type not in ("multidiscrete", "box"):
            raise ValueError(f"action_type must be 'multidiscrete' or 'box', found {action_type!r}")
        self.action_type = action_type
        # The scenario's constraints bound the price ratio (per product: floors in currency, margins on its cost);
        # an index whose level they forbid sells at the nearest level they allow.
        rules, item = scenario.constraints, scenario.products[product]
        lo, hi = rules.price_ratio_bounds(item)
        levels = [float(x) for x in scenario.pricing.levels]
        self.price_allowed = [rules.allows(item, v) for v in levels]
        self._allowed_index = [i for i, ok in enumerate(self.price_allowed) if ok]
        allowed = [levels[i] for i in self._allowed_index]
        if not allowed:
            raise ValueError(f"{scenario.source}: the constraints allow no price level of product {product}")
        self.price_levels = [v if ok else min(allowed, key=lambda a, v=v: abs(a - v)) for v, ok in zip(levels, self.price_allowed)]
        flash = scenario.pricing.flash_sale
        self.has_flash = flash is not None
        self.flash_allowed = flash is not None and rules.allows(item, 1.0 - flash.discount)
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
        self._lo, self._hi = max(min(levels), lo), min(max(levels), hi)  # the Box price range
        self._max_share = max(self.spend_levels)
        self.tables = self.decode_tables(self.nvec if nvec is None else np.asarray(nvec))

    def decode_tables(self, nvec: np.ndarray) -> DecodeTables:
        """The lever values of every index of a MultiDiscrete space ``nvec`` at least as wide as this market's."""
        own = self.nvec
        n_levels = len(self.price_levels)
        price_index = [min(a, own[1] - 1) for a in range(int(nvec[1]))]
        return DecodeTables(
            price=[self.price_levels[min(j, n_levels - 1)] for j in price_index],
            is_flash=[self.flash_allowed and j == n_levels for j in price_index],
            price_allowed=[self.price_allowed[j] if j < n_levels else self.flash_allowed for j in price_index],
            spend=[self.spend_levels[min(a, own[3] - 1)] for a in range(int(nvec[3]))],
            native_max=[int(v) - 1 for v in own],
            box_lo=self._lo, box_span=self._hi - self._lo, box_options=len(self.bundle_options),
            box_share=self._max_share, box_creatives=self.n_creatives - 1, has_flash=self.flash_allowed,
        )  # fmt: skip

    @property
    def price_bounds(self) -> tuple[float, float]:
        """The lowest and highest price ratio a Box action sells at (the levels' range inside the constraints)."""
        return self._lo, self._hi

    def decode(self, action: Any) -> Decision:
        """Translate a raw action of this layout's space into a Decision (no validity checks)."""
        return decode(SCALAR, self.tables, action, self.action_type)

    def encode(self, d: Decision) -> np.ndarray:
        """The action of this layout's space that decodes to (the nearest representable) ``d``."""
        if self.action_type == "multidiscrete":
            allowed = self._allowed_index
            price = len(self.price_levels) if d.flash else allowed[_nearest([self.price_levels[i] for i in allowed], d.price_ratio)]
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


def decode(x: Any, a: DecodeTables, actions: Any, action_type: ActionType) -> Decision:
    """Lever values of actions: one market's (``x`` = ``SCALAR``, ``a`` its tables) or a batch's (rows of
    actions, ``a`` the tables stacked per market)."""
    if action_type == "multidiscrete":
        act = x.index_actions(actions, a.native_max)  # each index clipped to the market's own range
        price = x.col(act, 1)  # launch, price ratio, flash, bundle, ad share, creative:
        return Decision(x.col(act, 0) > 0, x.take(a.price, price), x.take(a.is_flash, price), x.col(act, 2), x.take(a.spend, x.col(act, 3)), x.col(act, 4))
    v = x.box_actions(actions)  # clipped to [-1, 1]
    unit = lambda j: (x.col(v, j) + 1.0) / 2.0  # noqa: E731
    return Decision(
        launch=x.col(v, 0) > 0, price_ratio=a.box_lo + unit(1) * a.box_span, flash=a.has_flash & (x.col(v, 2) > 0),
        bundle=x.minimum(x.i64(x.round(unit(3) * a.box_options)), x.col(a.native_max, 2)), ad_share=unit(4) * a.box_share,
        creative=x.minimum(x.i64(x.round(unit(5) * a.box_creatives)), x.col(a.native_max, 4)),
    )  # fmt: skip


def _nearest(levels: list[float], value: float) -> int:
    return int(np.argmin([abs(x - value) for x in levels]))
