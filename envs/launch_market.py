"""LaunchMarketEnv: one new-product launch as a Gymnasium environment."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from launchsim.envs.actions import ActionLayout, ActionType, Decision
from launchsim.envs.timeline import NEVER, Timeline
from launchsim.errors import ScenarioError
from launchsim.models.outcomes import draw_noise, expected_outcome, sample_outcome
from launchsim.models.response import MarketContext, ResponseModel
from launchsim.models.structural_market import StructuralMarket
from launchsim.scenarios import DEFAULT_SCENARIO, Scenario, load_scenario

OBSERVATION_NAMES: tuple[str, ...] = (
    "progress",  # steps done / steps in the horizon
    "steps_left",  # steps left / steps in the horizon
    "week_sin",  # calendar week of year, as a point on the circle
    "week_cos",
    "season",  # category season index this step (1 = average)
    "holiday_now",  # holiday uplift this step
    "holiday_next",  # holiday uplift next step
    "launched",
    "weeks_since_launch",  # / horizon
    "adoption",  # first purchases so far / initial stock
    "stock",  # stock left / initial stock
    "budget_left",  # ad budget left / total budget
    "adstock",  # carried-over ad spend / total budget
    "competitor_present",
    "competitor_price",  # competitor price / our reference price (0 while absent)
    "competitor_strength",
    "last_sales",  # log1p(units sold last step) / log1p(initial stock)
    "last_clicks",  # log1p(clicks last step) / 16
    "last_price",  # last price / reference price (0 before launch)
    "flash_uses_left",  # / max uses (0 without flash sales)
    "flash_open",  # 1 while the flash-sale window is open
    "since_flash",  # steps since the last flash sale / horizon (1 before any)
    "deadline_left",  # steps to the launch deadline / horizon (1 without deadline, 0 once launched)
    "launch_allowed",  # 1 from the earliest launch week on
    "bundles_open",  # share of bundle options whose partner is available now
)
OBS_LOW, OBS_HIGH = -1.0, 10.0
# The dynamics' version: registered ids end in it; runs, evaluations and sweep trials record it.
ENV_VERSION = 2
_SCALE_KEY = 0x5CA1E  # the spawn key of the demand-multiplier generator


class LaunchMarketEnv(gym.Env):
    """Launch one new product: when to launch it, at what price, with what bundle and how much ad spend.

    Each step is ``scenario.step_weeks`` weeks (usually one); an episode covers the scenario's
    horizon. The market's responses come from a response model: the structural ground-truth
    market by default, or any other ``models.response.ResponseModel`` (the fine-tuned predictors).
    Outcomes are counts sampled by inversion from uniforms that ``reset`` draws, one row per step,
    with the env's own ``np_random`` (``models.outcomes``): a seed fixes the whole trajectory, and
    two runs with the same seed share their random numbers step by step whatever the levers do.

    ## Action space
    ``MultiDiscrete([2, P, B, A, C])`` (``action_type="multidiscrete"``, id ``LaunchSim/Market-v2``):

    | index | lever    | values                                                                   |
    |-------|----------|--------------------------------------------------------------------------|
    | 0     | launch   | 0 wait, 1 launch now (ignored once launched)                              |
    | 1     | price    | ``pricing.levels[i]`` x reference price; the last value is the flash sale |
    |       |          | when the scenario has one                                                 |
    | 2     | bundle   | 0 none, then each (catalogue item, allowed discount) pair in file order   |
    | 3     | ad share | ``ads.spend_levels[i]`` of the remaining budget, spent this step          |
    | 4     | creative | which of ``ads.creatives`` the ads show                                   |

    ``Box(-1, 1, (6,))`` (``action_type="box"``, id ``LaunchSim/MarketContinuous-v2``) holds
    launch, price, flash, bundle, ad share and creative as numbers; see ``envs.actions``.
    Invalid choices never crash: a launch before ``launch.earliest_week``, a flash sale outside
    its window or beyond its uses, a bundle whose partner is not yet available, and a price or
    bundle before launch are ignored and listed in ``info["ignored"]``. At the launch deadline an
    unlaunched product is launched (``info["forced_launch"]``). ``action_masks()`` gives the
    valid values for MaskablePPO. Ads may run before launch: they build adstock but sell nothing.
    Ads do not run while the product is sold out (stock is never replenished): whatever share is
    chosen, nothing of the budget is spent, as ad platforms pause ads for out-of-stock items
    (``info["ads_paused"]``).

    ## Observation space
    ``Box(-1, 10, (25,), float32)``; the fields are named in ``OBSERVATION_NAMES`` (calendar,
    launch state, adoption, stock, budget, adstock, competitor, last sales/clicks/price, flash-sale
    and deadline state), each scaled to about [0, 1].

    ## Reward
    The step's profit in currency: product revenue + bundled partner revenue - cost of goods -
    partner margin cannibalised by the bundle - ad spend - holding cost on stock left - launch
    cost (once), plus salvage value of unsold stock at the last step. ``info`` holds each term.

    ## Episode end
    Terminates after ``scenario.n_steps`` steps (time is in the observation); never truncates.

    ## Buyers so far
    The market reads the product's first purchases so far (its adoption state), except for a product
    whose ``market_estimate_basis`` is ``weekly`` (a steady staple's weekly pool, which has none): its
    market is passed 0. The observation's adoption field counts the buyers either way.

    ## Domain randomisation
    ``demand_spread=sigma`` (default 0: off) multiplies each episode's expected demand by one draw
    of exp(N(0, sigma^2)), from a generator that is a child of the env's seed (the outcome uniforms
    stay those of ``sigma=0``). Training uses it so that a policy meets demand levels around the
    learned market's own (``train --demand-spread``); evaluation never does.

    ## Example
    >>> import gymnasium as gym, envs
    >>> env = gym.make("LaunchSim/Market-v2", scenario="food_coffee_bundle")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

    ## Version history
    - v0: first release (structural market, Bass diffusion, logit price, Hill ads, bundles, flash sales).
    - v1: outcomes sampled by inversion of per-step uniforms drawn at reset (same distributions, except
      a Wilson-Hilferty gamma multiplier for over-dispersed demand and bundle buyers thinned from
      demand), so that the batched VecEnv reproduces single envs and replays share random numbers.
    - v2: no ad spend while sold out (v1 spent the chosen share of the budget on a product with
      nothing left to sell; a policy that never met a sell-out in training could waste its budget).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(
        self,
        scenario: Scenario | str | Path = DEFAULT_SCENARIO,
        product: int | str = 0,
        response_model: ResponseModel | None = None,
        action_type: ActionType = "multidiscrete",
        outcomes: Literal["sampled", "expected"] = "sampled",
        render_mode: str | None = None,
        demand_spread: float = 0.0,
    ):
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        s = self.scenario
        self.product_index = product_index(s, product)
        self.product = s.products[self.product_index]
        if outcomes not in ("sampled", "expected"):
            raise ValueError(f"outcomes must be 'sampled' or 'expected', found {outcomes!r}")
        self.demand_spread = checked_demand_spread(demand_spread)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, found {render_mode!r}")
        self.outcomes = outcomes
        self.render_mode = render_mode
        self.market: ResponseModel = response_model if response_model is not None else StructuralMarket(s)

        self.layout = ActionLayout(s, action_type)
        self.action_space = self.layout.space
        self.observation_space = spaces.Box(OBS_LOW, OBS_HIGH, shape=(len(OBSERVATION_NAMES),), dtype=np.float32)
        self.timeline = Timeline.from_scenario(s)

        # Texts are encoded once here, never per step.
        self._product_enc = self.market.encode([self.product.text], "product")[0]
        self._creative_enc = self.market.encode([c.text for c in s.ads.creatives], "creative")
        self._partner_enc = self.market.encode([c.text for c in s.catalogue], "partner")

        # Plain-float constants read in the step.
        self._n = self.timeline.n_steps
        self._k = float(s.step_weeks)
        self._ref = float(self.product.reference_price)
        self._cost = float(self.product.unit_cost)
        self._stock0 = float(self.product.stock)
        self._budget0 = float(s.ads.budget)
        self._decay = float(s.ads.carryover) ** s.step_weeks
        flash = s.pricing.flash_sale
        self._flash_ratio = 1.0 - flash.discount if flash else 1.0
        self._flash_max = flash.max_uses if flash else 0
        self._holding = float(s.reward.holding_cost_per_unit_week) * s.step_weeks
        self._salvage = float(s.reward.salvage_value_per_unit)
        self._launch_cost = float(s.launch.launch_cost)
        self._log_stock = math.log1p(max(self._stock0, 1.0))
        self._market_estimate = float(self.product.market_estimate or 0.0)
        self._prelaunch_signups = float(self.product.prelaunch_signups or 0.0)
        self._reads_adopters = self.product.reads_adopters  # a weekly pool (a steady staple) has no adoption state
        self._noise: np.ndarray | None = None
        self._scale_rng: np.random.Generator | None = None
        self._demand_scale = 1.0
        self._state_reset()

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._scale_rng is None:
            self._scale_rng = demand_scale_generator(self.np_random)
        self._state_reset()
        self._noise = draw_noise(self.np_random, self._n)  # this episode's uniforms, one row per step
        if self.demand_spread > 0.0:
            self._demand_scale = float(draw_demand_scales(self._scale_rng, self.demand_spread, 1)[0])
        return self._observe(), {"week": 0, "ignored": []}

    def step(self, action):
        if self._t >= self._n or self._noise is None:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset() first")
        return self._apply(self.layout.decode(action))

    @property
    def demand_scale(self) -> float:
        """This episode's multiplier of expected demand (1 without ``demand_spread``): what a critic
        that reads the draw is told (``envs.vector``, ``critic_demand_draw``)."""
        return self._demand_scale

    def action_masks(self) -> np.ndarray:
        """Valid values of each MultiDiscrete dimension, concatenated (sb3-contrib's MaskablePPO format)."""
        t, tl = self._t, self.timeline
        if self._launched:
            launch = [False, True]
        else:
            may_launch = t >= tl.earliest_launch_step
            launch = [t < tl.deadline_step, may_launch]
        price = [True] * len(self.layout.price_levels)
        if self.layout.has_flash:
            price.append(bool(tl.flash_open[t]) and self._flash_left > 0)
        bundle = [True] + [tl.partner_open[o.item][t] for o in self.layout.bundle_options]
        ads = [True] * len(self.layout.spend_levels)
        creative = [True] * self.layout.n_creatives
        return np.array(launch + price + bundle + ads + creative, dtype=bool)

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            i = self._last_info
            return (
                f"week {i.get('week', 0):>3}  launched={int(self._launched)}  price={i.get('price', 0):8.2f}  "
                f"sold={i.get('units_sold', 0):8.0f}  stock={self._stock:8.0f}  profit={i.get('profit', 0):10.2f}"
            )
        return None

    # ------------------------------------------------------------------ dynamics

    def _state_reset(self) -> None:
        self._t = 0
        self._launched = False
        self._launch_step = NEVER
        self._stock = self._stock0
        self._budget = self._budget0
        self._adstock = 0.0
        self._adopters = 0.0
        self._flash_left = self._flash_max
        self._since_flash = NEVER
        self._last_sales = self._last_clicks = self._last_price = 0.0
        self._last_info: dict[str, Any] = {}
        self.last_context: MarketContext | None = None
        self.last_response = None

    def _apply(self, d: Decision):
        t, tl, layout = self._t, self.timeline, self.layout
        ignored: list[str] = []

        # Launch timing.
        launch_cost, forced = 0.0, False
        if not self._launched:
            if d.launch and t < tl.earliest_launch_step:
                ignored.append("launch: before launch.earliest_week")
            elif d.launch:
                self._launched, launch_cost = True, self._launch_cost
            elif t >= tl.deadline_step:
                self._launched, launch_cost, forced = True, self._launch_cost, True
            if self._launched:
                self._launch_step = t
        launched = self._launched

        # Price, flash sale and bundle only mean something once on sale.
        flash = False
        partner = None
        discount = 0.0
        bundle_option = None
        if launched:
            ratio = d.price_ratio
            if d.flash:
                if tl.flash_open[t] and self._flash_left > 0:
                    flash, ratio = True, self._flash_ratio
                    self._flash_left -= 1
                else:
                    ignored.append("flash_sale: outside its window or no uses left")
            if d.bundle > 0:
                if d.bundle > len(layout.bundle_options):
                    ignored.append("bundle: no such option")
                else:
                    option = layout.bundle_options[d.bundle - 1]
                    if tl.partner_open[option.item][t]:
                        bundle_option, discount = option, option.discount
                        partner = self._partner_enc[option.item]
                    else:
                        ignored.append("bundle: partner not available yet")
        else:
            ratio = 0.0
            if d.flash or d.bundle > 0:
                ignored.append("price/bundle: product not launched")
        creative = min(max(d.creative, 0), layout.n_creatives - 1)

        # Ads: spend a share of what is left; adstock carries over between steps. Paused when sold out.
        paused = self._stock <= 0.0
        spend = 0.0 if paused else min(max(d.ad_share, 0.0), 1.0) * self._budget
        self._budget -= spend
        self._adstock = self._decay * self._adstock + spend

        ctx = MarketContext(
            launched=1.0 if launched else 0.0,
            step_weeks=self._k,
            season=tl.season[t],
            holiday=tl.holiday[t],
            price_ratio=ratio if launched else 1.0,
            reference_price=self._ref,
            flash=1.0 if flash else 0.0,
            weeks_since_flash=float(self._since_flash),
            competitor_strength=tl.competitor_strength[t],
            competitor_price_ratio=tl.competitor_price[t] / self._ref,
            adstock=self._adstock,
            adopters=self._adopters if self._reads_adopters else 0.0,
            bundle_discount=discount,
            market_estimate=self._market_estimate,
            prelaunch_signups=self._prelaunch_signups,
        )
        resp = self.market.expected(self._product_enc, self._creative_enc[creative], partner, ctx)
        if self._demand_scale != 1.0:
            resp = dataclasses.replace(resp, demand=resp.demand * self._demand_scale)
        self.last_context, self.last_response = ctx, resp  # read by the log generator
        take = float(resp.bundle_take) if bundle_option is not None else 0.0
        if self.outcomes == "sampled":
            out = sample_outcome(resp, self._noise[t], self.market.demand_overdispersion, take)
        else:
            out = expected_outcome(resp, take)

        # A stock-out serves solo and bundle buyers in proportion.
        sold = min(out.demand, self._stock)
        bundled = bundled_units(sold, out.demand, out.bundle_demand, self.outcomes == "sampled")
        self._stock -= sold
        self._adopters += sold * float(resp.first_purchase_share)

        # Profit and its parts.
        price = ratio * self._ref
        revenue = price * (sold - bundled) + price * (1.0 - discount) * bundled
        partner_revenue = partner_cost = cannibalised = 0.0
        partner_name = ""
        if bundle_option is not None:
            item = self.scenario.catalogue[bundle_option.item]
            partner_name = item.name
            partner_revenue = item.price * (1.0 - discount) * bundled
            partner_cost = item.unit_cost * bundled
            cannibalised = float(resp.cannibalisation) * bundled * (item.price - item.unit_cost)
        cogs = self._cost * sold
        holding = self._holding * self._stock
        self._t += 1
        terminated = self._t >= self._n
        salvage = self._salvage * self._stock if terminated else 0.0
        profit = (
            revenue + partner_revenue - cogs - partner_cost - cannibalised - spend - holding - launch_cost + salvage
        )

        self._since_flash = 0 if flash else min(self._since_flash + 1, NEVER)
        self._last_sales, self._last_clicks = sold, out.clicks
        self._last_price = ratio if launched else 0.0
        info = {
            "week": t * self.scenario.step_weeks,
            "launched": launched,
            "forced_launch": forced,
            "price": price,
            "flash_sale": flash,
            "bundle_partner": partner_name,
            "bundle_discount": discount,
            "creative": self.scenario.ads.creatives[creative].name,
            "ad_spend": spend,
            "ads_paused": paused,
            "impressions": out.impressions,
            "clicks": out.clicks,
            "demand": out.demand,
            "units_sold": sold,
            "lost_sales": out.demand - sold,
            "bundled_units": bundled,
            "stock_left": self._stock,
            "budget_left": self._budget,
            "revenue": revenue,
            "partner_revenue": partner_revenue,
            "cogs": cogs,
            "partner_cogs": partner_cost,
            "cannibalised_margin": cannibalised,
            "holding_cost": holding,
            "launch_cost": launch_cost,
            "salvage": salvage,
            "profit": profit,
            "expected_demand": float(resp.demand),
            "ignored": ignored,
        }
        self._last_info = info
        return self._observe(), float(profit), terminated, False, info

    def _observe(self) -> np.ndarray:
        t, tl, n = self._t, self.timeline, self._n
        tc = min(t, n - 1)  # after the last step, describe the last week
        woy = tl.week_of_year[tc]
        angle = 2.0 * math.pi * (woy - 1) / 52.0
        launched = self._launched
        deadline = tl.deadline_step
        obs = [
            t / n,
            (n - t) / n,
            math.sin(angle),
            math.cos(angle),
            tl.season[tc],
            tl.holiday[tc],
            tl.holiday[tc + 1] if tc + 1 < n else 0.0,
            1.0 if launched else 0.0,
            (t - self._launch_step) / n if launched else 0.0,
            self._adopters / max(self._stock0, 1.0),
            self._stock / max(self._stock0, 1.0),
            self._budget / self._budget0 if self._budget0 > 0 else 0.0,
            self._adstock / self._budget0 if self._budget0 > 0 else 0.0,
            1.0 if tl.competitor_strength[tc] > 0 else 0.0,
            tl.competitor_price[tc] / self._ref,
            tl.competitor_strength[tc],
            math.log1p(self._last_sales) / self._log_stock,
            math.log1p(self._last_clicks) / 16.0,
            self._last_price,
            self._flash_left / self._flash_max if self._flash_max else 0.0,
            1.0 if tl.flash_open[tc] else 0.0,
            min(self._since_flash, n) / n,
            0.0 if launched else (min(max(deadline - t, 0), n) / n if deadline < NEVER else 1.0),
            1.0 if t >= tl.earliest_launch_step else 0.0,
            _share_open(tl, self.layout.bundle_options, tc),
        ]
        return np.clip(np.array(obs, dtype=np.float32), OBS_LOW, OBS_HIGH)


def checked_demand_spread(spread: float) -> float:
    """The domain-randomisation spread as a float; a ValueError unless finite and >= 0."""
    if not (math.isfinite(spread) and spread >= 0.0):
        raise ValueError(f"demand_spread must be a finite number >= 0, found {spread!r}")
    return float(spread)


def demand_scale_generator(np_random: np.random.Generator) -> np.random.Generator:
    """The generator of an env's per-episode demand multipliers: a child of its seed, so drawing them
    leaves ``np_random``'s stream (the outcome uniforms) as it is without a spread."""
    seq = np_random.bit_generator.seed_seq
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, _SCALE_KEY)))


def draw_demand_scales(rng: np.random.Generator, spread: float, episodes: int) -> np.ndarray:
    """The next episodes' multipliers of expected demand, exp(N(0, spread^2)) each (domain
    randomisation); one array call whatever the count, so single and batched envs agree bit for bit."""
    return np.exp(spread * rng.standard_normal(episodes))


def bundled_units(sold: float, demand: float, bundle_demand: float, whole: bool) -> float:
    """Bundle units among those sold: all bundle buyers, or their share of a stock-out (rounded down for counts)."""
    if sold >= demand:
        return bundle_demand
    share = bundle_demand * sold / demand if demand > 0 else 0.0
    return float(math.floor(share)) if whole else share


def _share_open(tl: Timeline, options, t: int) -> float:
    if not options:
        return 0.0
    return sum(tl.partner_open[o.item][t] for o in options) / len(options)


def product_index(s: Scenario, product: int | str) -> int:
    """Resolve a product given by position or name; a string of digits counts as a position."""
    names = [p.name for p in s.products]
    if isinstance(product, str) and product.isdigit():
        product = int(product)
    if isinstance(product, str):
        if product not in names:
            raise ScenarioError([f"{s.name}: products: found no product {product!r}, expected one of {names}"])
        return names.index(product)
    if not 0 <= product < len(names):
        raise ScenarioError([f"{s.name}: products: found index {product}, expected 0..{len(names) - 1}"])
    return product
