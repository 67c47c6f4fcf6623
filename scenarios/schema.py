"""The scenario schema: every market fact a user may change, typed and checked.

A scenario has a public part (calendar, products, catalogue, competitor, ads, pricing, launch
rules, reward) that a seller knows and a policy may observe, and an optional ``truth`` block with the
structural market's hidden parameters, which only the ground-truth market reads (a seller's own
product has none: it runs in the learned market). Unknown keys are
errors everywhere, so a typo is never silently ignored. Weeks are counted from the start of the
horizon (week 0) unless the name says ``week_of_year``; with ``step_weeks`` > 1, week w falls in
decision step w // step_weeks.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints

Category = Literal["apparel", "home", "food", "beauty", "electronics"]
EstimateBasis = Literal["total", "weekly"]  # what a product's market_estimate counts (Product below)
CATEGORIES: tuple[str, ...] = ("apparel", "home", "food", "beauty", "electronics")

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
# A scenario's name names run folders and files: no path separator, no leading dot (no "..").
FILE_NAME_PATTERN = r"^[^/\\.][^/\\]*$"
FileName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80, pattern=FILE_NAME_PATTERN)]
# Amounts and counts stop at a trillion: beyond it float64 arithmetic of a week's demand, stock and profit
# loses units and the samplers' quantile walks stop converging.
LARGEST = 1e12
PositiveMoney = Annotated[float, Field(gt=0, le=LARGEST)]
Money = Annotated[float, Field(ge=0, le=LARGEST)]
Share = Annotated[float, Field(ge=0, le=1)]
Week = Annotated[int, Field(ge=0)]


class Strict(BaseModel):
    """Base of every schema block: unknown keys are errors; values are not coerced (``'12.0'`` is not a
    number, ``true`` is not a count; a whole number is a valid float); numbers are finite."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


# ---------------------------------------------------------------- public part


class Season(Strict):
    """Yearly demand profile of the category: a cosine around a peak, or 52 explicit weekly indices."""

    peak_week_of_year: Annotated[int, Field(ge=1, le=52)] = 50
    amplitude: Annotated[float, Field(ge=0, lt=1)] = 0.0
    weekly_index: list[Annotated[float, Field(gt=0, le=100)]] | None = Field(
        default=None, min_length=52, max_length=52
    )


class Holiday(Strict):
    """A dated event that lifts demand for gift-worthy products (uplift scaled by gift appeal)."""

    name: Name
    week_of_year: Annotated[int, Field(ge=1, le=52)]
    uplift: Annotated[float, Field(ge=0, le=5)]
    duration_weeks: Annotated[int, Field(ge=1, le=8)] = 1


class Calendar(Strict):
    start_week_of_year: Annotated[int, Field(ge=1, le=52)]
    season: Season = Season()
    holidays: list[Holiday] = []


class Product(Strict):
    """A new product to launch."""

    name: Name
    text: Text
    unit_cost: PositiveMoney
    reference_price: PositiveMoney
    stock: Annotated[int, Field(ge=0, le=LARGEST)]
    # Public: the seller's estimate of the buyers the product can reach (market research). The learned
    # market reads it as the scale a text cannot carry; the structural market ignores it.
    market_estimate: PositiveMoney | None = None
    # What the estimate counts: "total", every buyer a launch can reach; "weekly", the buyers of each week
    # of a steady staple (a constant pool). A weekly pool has no adoption state, so the markets read no
    # buyers so far for it (its truth must be a constant pool without repeat purchases).
    market_estimate_basis: EstimateBasis = "total"

    @property
    def reads_adopters(self) -> bool:
        """Whether the markets read this product's buyers so far (a weekly pool has no adoption state)."""
        return self.market_estimate_basis == "total"


class CatalogueItem(Strict):
    """An existing (or later) catalogue item that may be bundled with the new product."""

    name: Name
    text: Text
    price: PositiveMoney
    unit_cost: Money
    discounts: list[Annotated[float, Field(gt=0, lt=1)]] = Field(min_length=1)
    available_from_week: Week = 0


class CompetitorEvent(Strict):
    """From ``week`` on, the competitor sells at ``price`` with attractiveness ``strength`` (0 = absent)."""

    week: Week
    price: PositiveMoney
    strength: Annotated[float, Field(ge=0, le=10)]


class Competitor(Strict):
    name: Name = "competitor"
    text: Text | None = None
    events: list[CompetitorEvent] = []


class Creative(Strict):
    name: Name
    text: Text


class Waitlist(Strict):
    """A teaser campaign's waitlist, as the seller's past launches measured it: ad clicks before the
    launch sign up, keep ``retention`` of themselves a week, and in the launch step ``conversion`` of
    them buy (at the reference price or below; fewer above it)."""

    conversion: Share
    retention: Share = 1.0


class Ads(Strict):
    """The ad budget for the horizon, the weekly spend levels (shares of the budget left) and creatives."""

    budget: Money
    spend_levels: list[Share] = Field(default=[0.0, 0.05, 0.1, 0.2, 0.4], min_length=1)
    carryover: Annotated[float, Field(ge=0, lt=1)] = 0.5
    creatives: list[Creative] = Field(min_length=1)
    waitlist: Waitlist | None = None


class FlashSale(Strict):
    """Rules of the flash-sale price lever: a deep discount allowed inside a window, a few times."""

    discount: Annotated[float, Field(gt=0, lt=1)]
    start_week: Week
    end_week: Week
    max_uses: Annotated[int, Field(ge=1)] = 1


class Pricing(Strict):
    levels: list[Annotated[float, Field(gt=0, le=5)]] = Field(min_length=1)
    flash_sale: FlashSale | None = None


class Launch(Strict):
    earliest_week: Week = 0
    latest_week: Week | None = None  # the last week a launch may happen (a launch window); after it the product stays out
    deadline_week: Week | None = None
    launch_cost: Money = 0.0


class Predecessor(Strict):
    """The product the launch replaces (a rollover): on sale from week 0 with stock already bought, its
    weekly sales known from the seller's own logs. At the launch the seller retires it (a solo rollover:
    what is left goes for salvage) or keeps it on sale beside the new product (a dual rollover), at a
    markdown if one is given; whatever is left at the end goes for salvage."""

    name: Name
    text: Text
    price: PositiveMoney
    stock: Annotated[int, Field(ge=0, le=LARGEST)]
    weekly_sales: PositiveMoney  # expected units a week at its price (times the category's season index)
    after_launch: Literal["retire", "keep"] = "retire"
    markdown: Annotated[float, Field(ge=0, lt=1)] = 0.0  # share off its price once the new product is on sale (keep only)
    salvage_value_per_unit: Money = 0.0


class BudgetPeriod(Strict):
    """An amount of the ad budget released from a week on (the budget released period by period)."""

    from_week: Week
    amount: Money


class Constraints(Strict):
    """Business rules every plan keeps, enforced by the env: masked choices, and a choice outside them
    moved to the nearest allowed one (a price level, a Box price) or clipped (a week's ad spend)."""

    price_floor: PositiveMoney | None = None  # lowest price a unit sells at alone, flash sales included (e.g. a minimum advertised price)
    price_ceiling: PositiveMoney | None = None  # highest such price
    min_margin: Annotated[float, Field(ge=0, lt=1)] | None = None  # (price - unit cost) / price at least this, flash sales included
    min_weekly_ad_spend: Money | None = None  # spent each week while budget is left and ads run (a committed minimum)
    max_weekly_ad_spend: PositiveMoney | None = None  # a pacing cap on each week's spend
    ad_budget_periods: list[BudgetPeriod] | None = None  # the budget released period by period: spend never runs ahead of it
    max_price_changes: Annotated[int, Field(ge=0, le=520)] | None = None  # regular-price changes after the first regular price (flash sales aside)

    def spend_bounds(self, step_weeks: int) -> tuple[float, float]:
        """A step's committed ad spend and its cap (0 and infinity without them)."""
        low = (self.min_weekly_ad_spend or 0.0) * step_weeks
        return low, self.max_weekly_ad_spend * step_weeks if self.max_weekly_ad_spend is not None else math.inf

    def released(self, week: int, budget: float) -> float:
        """The ad budget released by ``week`` (all of ``budget`` without periods)."""
        if self.ad_budget_periods is None:
            return budget
        return sum(p.amount for p in self.ad_budget_periods if p.from_week <= week)

    def allows(self, product: Product, ratio: float) -> bool:
        """Whether ``product`` may sell alone at ``ratio`` times its reference price."""
        lo, hi = self.price_ratio_bounds(product)
        return lo - 1e-9 <= ratio <= hi + 1e-9

    def price_ratio_bounds(self, product: Product) -> tuple[float, float]:
        """The lowest and highest price ratio (price / reference price) ``product`` may sell at alone."""
        lowest = max(self.price_floor or 0.0, product.unit_cost / (1.0 - self.min_margin) if self.min_margin is not None else 0.0)
        highest = self.price_ceiling if self.price_ceiling is not None else math.inf
        return lowest / product.reference_price, highest / product.reference_price


class Reward(Strict):
    """Weekly profit; leftover stock is charged holding cost each week and sold for salvage at the end."""

    holding_cost_per_unit_week: Money = 0.0
    salvage_value_per_unit: Money = 0.0


# ---------------------------------------------------------------- hidden part


class ProductTruth(Strict):
    """Hidden demand parameters of one product; weekly rates."""

    market_size: PositiveMoney
    diffusion: Literal["bass", "constant"] = "bass"
    bass_p: Annotated[float, Field(gt=0, le=1)] = 0.03
    bass_q: Annotated[float, Field(ge=0, le=2)] = 0.38
    repeat_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    price_alpha: Annotated[float, Field(ge=-20, le=20)]
    price_beta: Annotated[float, Field(gt=0, le=50)]
    gift_appeal: Annotated[float, Field(ge=0, le=3)] = 0.5
    season_sensitivity: Annotated[float, Field(ge=0, le=3)] = 1.0
    ad_responsiveness: Annotated[float, Field(ge=0, le=5)] = 1.0


class AdTruth(Strict):
    """Hill saturation of adstock into impressions, and the clicks' conversion into purchases."""

    max_impressions: PositiveMoney
    half_saturation: PositiveMoney
    hill_shape: Annotated[float, Field(gt=0, le=5)] = 1.0
    click_conversion: Annotated[float, Field(ge=0, le=1)] = 0.03


class PartnerTruth(Strict):
    affinity: Share
    cannibalisation: Share = 0.2


class BundleTruth(Strict):
    """Bundle uplift = 1 + affinity * (lift_base + lift_per_discount * discount)."""

    lift_base: Annotated[float, Field(ge=0, le=2)] = 0.1
    lift_per_discount: Annotated[float, Field(ge=0, le=10)] = 1.5
    take_half_discount: Annotated[float, Field(gt=0, le=1)] = 0.1


class FlashTruth(Strict):
    spike: Annotated[float, Field(ge=0, le=5)] = 0.5
    dip: Share = 0.3
    dip_weeks: Annotated[int, Field(ge=0, le=8)] = 2


class PredecessorTruth(Strict):
    """How the predecessor sells once the new product is on sale beside it (``after_launch: keep``): its
    weekly sales times (1 - cannibalisation) * (1 - markdown)^-markdown_elasticity."""

    cannibalisation: Share = 0.5
    markdown_elasticity: Annotated[float, Field(ge=0, le=10)] = 2.62


class RivalTruth(Strict):
    """How the competitor answers our moves: from ``launch_lag_weeks`` after our launch it cuts its price
    by ``launch_cut`` for ``launch_cut_weeks``, and in the week after each of our flash sales by
    ``flash_cut`` (a promotion answering a launch, undercutting a flash sale); then it matches
    ``price_match`` of the gap down to our price of the step before (price matching, 1: all of it).
    It answers at all in an episode with ``answer_probability``, drawn once per episode."""

    launch_cut: Annotated[float, Field(ge=0, lt=1)] = 0.0
    launch_lag_weeks: Annotated[int, Field(ge=1, le=52)] = 1
    launch_cut_weeks: Annotated[int, Field(ge=1, le=260)] = 4
    flash_cut: Annotated[float, Field(ge=0, lt=1)] = 0.0
    price_match: Annotated[float, Field(ge=0, le=1)] = 0.0
    answer_probability: Annotated[float, Field(gt=0, le=1)] = 1.0


class Truth(Strict):
    products: dict[Name, ProductTruth]
    creatives_ctr: dict[Name, Annotated[float, Field(gt=0, le=0.5)]]
    ads: AdTruth
    partners: dict[Name, PartnerTruth] = {}
    bundle: BundleTruth = BundleTruth()
    flash: FlashTruth = FlashTruth()
    predecessor: PredecessorTruth | None = None
    rival: RivalTruth | None = None
    demand_overdispersion: Annotated[float, Field(ge=0, le=10)] = 0.0


# ---------------------------------------------------------------- the scenario


class Scenario(Strict):
    """One launch problem: what the seller knows and decides, and the hidden market it happens in."""

    name: FileName
    description: Text
    category: Category
    currency: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=8)] | None = None  # shown on money axes and columns
    horizon_weeks: Annotated[int, Field(ge=1, le=260)]
    step_weeks: Annotated[int, Field(ge=1, le=4)] = 1
    calendar: Calendar
    products: list[Product] = Field(min_length=1)
    catalogue: list[CatalogueItem] = []
    competitor: Competitor = Competitor()
    ads: Ads
    pricing: Pricing
    launch: Launch = Launch()
    predecessor: Predecessor | None = None
    constraints: Constraints = Constraints()
    reward: Reward = Reward()
    truth: Truth | None = None  # optional: a seller's own product has none; only the structural market reads it
    _source: str = PrivateAttr(default="<scenario>")  # the file (or label) it was read from, for messages

    def __eq__(self, other: object) -> bool:
        """Scenarios are equal when their fields are: where each was read from is not part of it."""
        if not isinstance(other, Scenario):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # lists inside: never hashable

    @property
    def source(self) -> str:
        """The file the scenario was read from (or the label of its overrides), for messages."""
        return self._source

    def require_truth(self, what: str) -> Truth:
        """The truth block, or a ScenarioError naming the file when there is none and ``what`` needs it."""
        if self.truth is None:
            from launchsim.errors import ScenarioError

            raise ScenarioError([
                f"{self._source}: truth: missing; {what} needs the scenario's hidden truth block "
                "(a scenario without one runs in the learned market: --market learned)"
            ])
        return self.truth

    @property
    def n_steps(self) -> int:
        """Decision steps in an episode (the horizon in steps, rounded down)."""
        return self.horizon_weeks // self.step_weeks
