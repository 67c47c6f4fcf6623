"""A launch market's step, written once: the rules of launch, price, flash sale, bundle, ads and stock,
the profit, and the observation, for one market on Python numbers or for N markets on arrays.

The functions take an ops backend ``x`` (``models.ops``): ``SCALAR`` for the single env
(``LaunchMarketEnv``), NumPy or torch for the batched VecEnv (``BatchedMarketVecEnv``, whose CUDA graph
captures the torch form). A market is described by ``MarketConstants`` (numbers, or one column per
market) and ``MarketTables`` (per step and per action index); its state is a ``MarketState`` that each
step replaces (never mutates), so that a copy of it is a snapshot.

Where each part of a step lives:
- action -> lever values: ``envs.actions.decode``;
- launch timing, flash sale, bundle, ad spend, the context the market reads, stock-out, profit and the
  next state: ``step`` below, with the optional parts some scenarios use (a predecessor,
  ``predecessor_step``; a teaser's waitlist; a rival's answers, ``rival_price``; an ad budget released
  by period; a limit on price changes), run only where a market of the env has them (``MarketTables.parts``);
- the expected response: the responder of a response model (``models.structural_market`` or
  ``models.heads`` with ``models.context_features``), bound to the markets once;
- sampled counts from the step's uniforms: ``models.outcomes``;
- the observation: ``observe`` below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from launchsim.envs.actions import ActionLayout, DecodeTables, decode
from launchsim.envs.spaces import OBS, OBS_HIGH, OBS_LOW, OBSERVATION_NAMES
from launchsim.envs.timeline import Timeline
from launchsim.models.ops import NEVER
from launchsim.models.outcomes import expected_outcome, sample_outcome
from launchsim.models.response import MarketContext, MarketTexts
from launchsim.models.rollover import LITERATURE_ELASTICITY, kept_share
from launchsim.models.structural_market import StructuralMarket
from launchsim.scenarios.schema import Scenario

# A regular price within this of the one in force (a share of the reference price) keeps it: no change
# under constraints.max_price_changes (so a Box policy's jitter spends none).
PRICE_CHANGE_TOLERANCE = 0.005
# Per-step columns the dynamics (and the observation's deadline) read, in this order.
DYNAMICS_COLUMNS = ("season", "holiday", "competitor_strength", "competitor_price_ratio", "flash_open", "deadline_left", "released")
# Observation columns that depend only on the market and the step (tabulated): the rest come from the state.
TABLED_OBSERVATION = (
    "progress", "steps_left", "week_sin", "week_cos", "season", "holiday_now", "holiday_next", "competitor_present",
    "competitor_price", "competitor_strength", "flash_open", "deadline_left", "launch_allowed", "bundles_open",
)  # fmt: skip


class MarketConstants(NamedTuple):
    """What a market's step reads that never changes: numbers for one market, one column per market for a batch."""

    n: Any  # steps in the horizon (float, for the observation's ratios)
    n_i: Any  # the same, whole
    k: Any  # weeks per step
    ref: Any  # reference price
    cost: Any  # unit cost
    stock0: Any
    budget0: Any
    decay: Any  # adstock carried over per step
    flash_ratio: Any  # price / reference price in a flash sale
    flash_max: Any  # flash sales allowed (whole)
    holding: Any  # holding cost per unit and step
    salvage: Any  # per unit left at the end
    launch_cost: Any
    min_spend: Any  # a step's committed ad spend and its pacing cap (constraints; 0 and inf without)
    max_spend: Any
    log_stock: Any  # log1p(max(stock0, 1)): the observation's scale of sales
    earliest: Any  # earliest launch step (whole)
    latest: Any  # latest launch step (whole; NEVER without a window's end)
    deadline: Any  # launch deadline step (whole; NEVER without one)
    max_changes: Any  # regular-price changes allowed after the first regular price (whole; NEVER without a limit)
    market_estimate: Any  # the seller's estimate of addressable buyers (0 = unknown)
    old_stock0: Any  # the predecessor (a rollover; all 0 without one): its stock, units a step at its price
    old_rate: Any
    old_price: Any  # its price before the launch and after it (a markdown)
    old_price_after: Any
    old_kept: Any  # its rate's multiplier once the new product is on sale (0 when retired; set by the response model)
    old_retire: Any  # 1.0 when it is retired at the launch (what is left goes for salvage), else 0.0
    old_salvage: Any
    waitlist_conversion: Any  # a teaser's waitlist (0 and 1 without): the share of sign-ups that buys at the launch,
    waitlist_keep: Any  # and the share kept a step
    rival_launch_cut: Any  # the competitor's answers (0 without; set by the response model): its price cut after
    rival_lag: Any  # our launch, from rival_lag steps after it for rival_steps steps (whole), and after a flash sale
    rival_steps: Any
    rival_flash_cut: Any
    rival_chance: Any  # the chance that it answers in an episode (drawn once per episode; 1 without a draw)
    rival_match: Any  # the share of the gap below its price that it matches, a step after our price
    reads_adopters: Any  # 1.0 when the market reads its buyers so far, 0.0 for a weekly pool
    stock_scale: Any  # the observation's divisors: max(stock0, 1), the budget (1 without), max(flash uses, 1)
    budget_scale: Any
    flash_scale: Any
    table_row: Any  # where the market's rows start in the per-step tables (0 for one market)


class MarketTables(NamedTuple):
    """Per step and per action index: lists for one market, arrays (rows of every market, one after
    another; columns per option) for a batch."""

    dynamics: Any  # row (table_row + t) -> DYNAMICS_COLUMNS
    observation: Any  # row (table_row + t) -> the observation with its TABLED_OBSERVATION columns filled
    steps: int  # rows per market in the per-step tables (steps in the horizon + 1)
    partner_open: Any  # (option * steps + t) -> whether the option's partner is available
    discount: Any  # per bundle option (0 for option 0, no bundle)
    item_price: Any
    item_cost: Any
    parts: frozenset[str] = frozenset()  # optional parts of a step some market uses: "predecessor", "waitlist", "rival", "budget_periods", "price_changes"


class MarketState(NamedTuple):
    """A market's state between steps (numbers, or one column per market)."""

    t: Any
    launched: Any
    launch_step: Any
    since_flash: Any
    flash_left: Any
    stock: Any
    budget: Any
    adstock: Any
    adopters: Any
    last_sales: Any
    last_clicks: Any
    last_price: Any
    old_stock: Any  # the predecessor's stock (0 without one)
    waitlist: Any  # a teaser's sign-ups so far (0 without one)
    list_price: Any  # the regular price in force / reference price (0 until the first regular price; kept only with a limit on changes)
    changes_left: Any  # regular-price changes left (whole)


class Market(NamedTuple):
    """One (scenario, product) as plain Python: its constants, tables, decoding tables and texts."""

    constants: MarketConstants
    tables: MarketTables
    decode: DecodeTables
    option_items: list[int]  # catalogue item per bundle option (-1 for none)


def describe_market(scenario: Scenario, product: int, nvec: np.ndarray | None = None, steps: int | None = None) -> Market:
    """The constants and tables of one (scenario, product) for an action space ``nvec`` (default its own)
    and per-step tables of ``steps`` rows (default its horizon + 1)."""
    tl = Timeline.from_scenario(scenario)
    layout = ActionLayout(scenario, "multidiscrete", product=product)
    nvec = layout.nvec if nvec is None else np.asarray(nvec)
    prod, n, old, waitlist = scenario.products[product], tl.n_steps, scenario.predecessor, scenario.ads.waitlist
    min_spend, max_spend = scenario.constraints.spend_bounds(scenario.step_weeks)
    steps = n + 1 if steps is None else steps
    ref, stock0, budget0 = float(prod.reference_price), float(prod.stock), float(scenario.ads.budget)
    flash = scenario.pricing.flash_sale
    flash_max = flash.max_uses if flash else 0
    constants = MarketConstants(
        n=float(n), n_i=n, k=float(scenario.step_weeks), ref=ref, cost=float(prod.unit_cost), stock0=stock0, budget0=budget0,
        decay=float(scenario.ads.carryover) ** scenario.step_weeks, flash_ratio=1.0 - flash.discount if flash else 1.0,
        flash_max=flash_max, holding=float(scenario.reward.holding_cost_per_unit_week) * scenario.step_weeks,
        salvage=float(scenario.reward.salvage_value_per_unit), launch_cost=float(scenario.launch.launch_cost),
        min_spend=float(min_spend), max_spend=float(max_spend),
        log_stock=math.log1p(max(stock0, 1.0)), earliest=tl.earliest_launch_step, latest=tl.latest_launch_step, deadline=tl.deadline_step,
        max_changes=NEVER if scenario.constraints.max_price_changes is None else scenario.constraints.max_price_changes,
        market_estimate=float(prod.market_estimate or 0.0),
        old_stock0=float(old.stock) if old else 0.0, old_rate=float(old.weekly_sales) * scenario.step_weeks if old else 0.0,
        old_price=float(old.price) if old else 0.0, old_price_after=float(old.price) * (1.0 - old.markdown) if old else 0.0,
        old_kept=0.0, old_retire=1.0 if old and old.after_launch == "retire" else 0.0,
        old_salvage=float(old.salvage_value_per_unit) if old else 0.0,
        waitlist_conversion=float(waitlist.conversion) if waitlist else 0.0,
        waitlist_keep=float(waitlist.retention) ** scenario.step_weeks if waitlist else 1.0,
        rival_launch_cut=0.0, rival_lag=1, rival_steps=0, rival_flash_cut=0.0, rival_chance=1.0, rival_match=0.0, reads_adopters=float(prod.reads_adopters),
        stock_scale=max(stock0, 1.0), budget_scale=budget0 if budget0 > 0 else 1.0, flash_scale=float(max(flash_max, 1)), table_row=0,
    )  # fmt: skip
    options = [-1, *(o.item for o in layout.bundle_options)]
    option_of = [options[min(o, layout.nvec[2] - 1)] for o in range(int(nvec[2]))]  # shared index -> own option
    discounts = [0.0, *(o.discount for o in layout.bundle_options)]
    own_option = [min(o, layout.nvec[2] - 1) for o in range(int(nvec[2]))]
    dynamics, observation = [], np.zeros((steps, len(OBSERVATION_NAMES)), dtype=np.float32)
    for t in range(steps):
        tc = min(t, n - 1)  # after the last step, describe the last week
        deadline_left = min(max(tl.deadline_step - t, 0), n) / n if tl.deadline_step < NEVER else 1.0
        released = scenario.constraints.released((tc + 1) * scenario.step_weeks - 1, budget0)  # by the step's last week
        dynamics.append((tl.season[tc], tl.holiday[tc], tl.competitor_strength[tc], tl.competitor_price[tc] / ref, float(tl.flash_open[tc]), deadline_left, released))
        angle = 2.0 * math.pi * (tl.week_of_year[tc] - 1) / 52.0
        own = layout.bundle_options
        row = {
            "progress": t / n, "steps_left": (n - t) / n, "week_sin": math.sin(angle), "week_cos": math.cos(angle),
            "season": tl.season[tc], "holiday_now": tl.holiday[tc], "holiday_next": tl.holiday[tc + 1] if tc + 1 < n else 0.0,
            "competitor_present": 1.0 if tl.competitor_strength[tc] > 0 else 0.0, "competitor_price": tl.competitor_price[tc] / ref,
            "competitor_strength": tl.competitor_strength[tc], "flash_open": 1.0 if tl.flash_open[tc] else 0.0,
            "deadline_left": deadline_left,
            "launch_allowed": 1.0 if tl.launch_open(t) else 0.0,
            "bundles_open": sum(tl.partner_open[o.item][tc] for o in own) / len(own) if own else 0.0,
        }  # fmt: skip
        for name in TABLED_OBSERVATION:
            observation[t, OBS[name]] = row[name]
    partner_open = [item >= 0 and t < n and tl.partner_open[item][t] for item in option_of for t in range(steps)]
    item_price = [scenario.catalogue[i].price if i >= 0 else 0.0 for i in option_of]
    item_cost = [scenario.catalogue[i].unit_cost if i >= 0 else 0.0 for i in option_of]
    tables = MarketTables(
        dynamics=dynamics, observation=observation, steps=steps, partner_open=partner_open,
        discount=[discounts[o] for o in own_option], item_price=[float(v) for v in item_price], item_cost=[float(v) for v in item_cost],
        parts=frozenset(part for part, used in (
            ("predecessor", old is not None), ("waitlist", waitlist is not None), ("budget_periods", scenario.constraints.ad_budget_periods is not None),
            ("price_changes", scenario.constraints.max_price_changes is not None),
        ) if used),
    )  # fmt: skip
    return Market(constants, tables, layout.decode_tables(nvec), option_of)


def stack_markets(x: Any, markets: Sequence[Market], pid: Any) -> tuple[MarketConstants, MarketTables, DecodeTables]:
    """N markets as arrays of backend ``x``: slot i is ``markets[pid[i]]`` (markets built with the same
    ``steps`` and action space). Per-step tables stay one block per distinct market (``table_row``)."""
    pid = np.asarray(pid)
    steps = markets[0].tables.steps
    whole = {"n_i", "flash_max", "earliest", "latest", "deadline", "max_changes", "rival_lag", "rival_steps"}

    def column(values: list[Any], float_type: bool = True) -> Any:
        """Per-slot values of the markets (floats in the state's type, else whole numbers or flags)."""
        return x.asarray(np.asarray(values, dtype=np.float64 if float_type else None)[pid], float_type=float_type)

    consts = {f: column([getattr(m.constants, f) for m in markets], f not in whole) for f in MarketConstants._fields if f != "table_row"}
    constants = MarketConstants(**consts, table_row=x.asarray((pid * steps).astype(np.int64)))
    tabs = [m.tables for m in markets]
    tables = MarketTables(
        dynamics=x.asarray(np.concatenate([np.asarray(t.dynamics, dtype=np.float64) for t in tabs]), float_type=True),
        observation=x.asarray(np.concatenate([t.observation for t in tabs])),
        steps=steps,
        partner_open=column([t.partner_open for t in tabs], False),
        discount=column([t.discount for t in tabs]), item_price=column([t.item_price for t in tabs]),
        item_cost=column([t.item_cost for t in tabs]), parts=frozenset().union(*(t.parts for t in tabs)),
    )  # fmt: skip
    dec = [m.decode for m in markets]
    decode_tables = DecodeTables(**{
        f: column([getattr(d, f) for d in dec], f not in ("is_flash", "price_allowed", "native_max", "has_flash")) for f in DecodeTables._fields
    })  # fmt: skip
    return constants, tables, decode_tables


def with_model_terms(market: Market, model: Any, scenario: Scenario, product: int) -> Market:
    """The market with the constants that depend on which market answers (the response model ``model``):
    a kept predecessor's share of sales (``models.rollover``) and the competitor's answers to our moves,
    which only the structural market knows (``truth.rival``; a learned market has no truth of them)."""
    terms: dict[str, Any] = {"old_kept": kept_share(model, scenario, product)}
    rival = scenario.truth.rival if isinstance(model, StructuralMarket) and scenario.truth is not None else None
    tables = market.tables
    if rival is not None:
        tables = tables._replace(parts=tables.parts | {"rival"})
        k = scenario.step_weeks
        terms.update(
            rival_launch_cut=float(rival.launch_cut), rival_lag=-(-rival.launch_lag_weeks // k),
            rival_steps=-(-rival.launch_cut_weeks // k), rival_flash_cut=float(rival.flash_cut),
            rival_chance=float(rival.answer_probability), rival_match=float(rival.price_match),
        )  # fmt: skip
    return market._replace(constants=market.constants._replace(**terms), tables=tables)


class PredecessorStep(NamedTuple):
    """A predecessor's step: units sold, their revenue, the salvage of what was cleared, the stock left."""

    units: Any
    revenue: Any
    salvage: Any
    stock: Any  # left after the step


def predecessor_step(x: Any, c: MarketConstants, state: MarketState, season: Any, launched: Any, launch_now: Any, terminated: Any) -> PredecessorStep:
    """The predecessor's step (its stock already paid for): it sells its expected weekly rate times the
    season index until the launch; then it is retired (what is left goes for salvage at once) or sells
    on at ``old_kept`` of that rate, what is left going for salvage at the end."""
    units = x.minimum(c.old_rate * season * x.where(launched, c.old_kept, 1.0), state.old_stock)
    left = state.old_stock - units
    retired = launch_now & (c.old_retire > 0.5)
    revenue = x.where(launched, c.old_price_after, c.old_price) * units
    salvage = x.where(retired | terminated, c.old_salvage * left, 0.0)
    return PredecessorStep(units, revenue, salvage, x.where(retired, 0.0, left))


def rival_price(x: Any, c: MarketConstants, state: MarketState, comp_price: Any, draw: Any = None) -> Any:
    """The competitor's price (a ratio to our reference price; ``comp_price`` its scripted one) at the
    state's step: its cut answering our launch, its cut in the step after our flash sale, then
    ``rival_match`` of the gap down to our price of the step before. It answers in an episode whose
    uniform ``draw`` is below ``rival_chance`` (always with ``draw`` None)."""
    since_launch = state.t - state.launch_step  # negative before a launch (launch_step NEVER)
    answering = (since_launch >= c.rival_lag) & (since_launch < c.rival_lag + c.rival_steps)
    price = comp_price * (1.0 - c.rival_launch_cut * x.f(answering) - c.rival_flash_cut * x.f(state.since_flash == 0))
    price = price - c.rival_match * x.maximum(price - state.last_price, 0.0) * x.f(state.last_price > 0.0)  # last price 0: not on sale
    return price if draw is None else x.where(draw < c.rival_chance, price, comp_price)


def market_texts(model: Any, scenario: Scenario, product: int, option_items: Sequence[int]) -> MarketTexts:
    """A market's texts as a response model encodes them, its bundle options by (shared) action index."""
    creatives = model.encode([c.text for c in scenario.ads.creatives], "creative")
    partners = model.encode([c.text for c in scenario.catalogue], "partner") if scenario.catalogue else []
    layout = ActionLayout(scenario, "multidiscrete")
    discounts = [0.0, *(o.discount for o in layout.bundle_options)]
    own = [min(o, layout.nvec[2] - 1) for o in range(len(option_items))]
    options = [(partners[item] if item >= 0 else None, discounts[o]) for item, o in zip(option_items, own)]
    return MarketTexts(model.encode([scenario.products[product].text], "product")[0], creatives, options)


def initial_state(c: MarketConstants) -> MarketState:
    """The state of one market at the start of an episode."""
    return MarketState(0, False, NEVER, NEVER, c.flash_max, c.stock0, c.budget0, 0.0, 0.0, 0.0, 0.0, 0.0, c.old_stock0, 0.0, 0.0, c.max_changes)


def reset_state(x: Any, c: MarketConstants, state: MarketState, mask: Any) -> MarketState:
    """The state with the markets in ``mask`` back at the start of an episode (new arrays: the old ones stay intact)."""
    start = initial_state(c)
    return MarketState(*(x.where(mask, s, v) for s, v in zip(start, state)))


class StepResult(NamedTuple):
    state: MarketState
    profit: Any
    terminated: Any
    quantities: dict[str, Any]  # the step's parts, for infos and tables
    unfinished: Any  # Poisson counts a CUDA graph's fixed walk left unfinished (0 elsewhere)


def step(
    x: Any, c: MarketConstants, tab: MarketTables, a: DecodeTables, state: MarketState, actions: Any, action_type: str,
    responder: Any, u: Any, demand_scale: Any = None, sampled: bool = True, with_impressions: bool = True,
    explain: bool = False, graph_walk: bool = False, size_scale: float | None = None, rival_draw: Any = None,
) -> StepResult:  # fmt: skip
    """One decision step of every market: the levers of ``actions``, the market's response from
    ``responder``, counts from the step's uniforms ``u`` (or the expectations with ``sampled`` False),
    stock, profit and the next state. ``demand_scale`` multiplies expected demand (domain randomisation);
    ``size_scale`` multiplies the market's size: demand times it at the same penetration (the market reads
    its buyers so far divided by it; in the structural market, about a Bass market size times it).
    ``explain`` adds why a lever was not applied (``refused_*`` flags) to the quantities. ``rival_draw``:
    the episode's uniform that decides whether a rival answers (``rival_price``)."""
    d = decode(x, a, actions, action_type)
    t = state.t
    row = tab.dynamics[c.table_row + t]
    season, holiday, comp_strength, comp_price, flash_open = x.col(row, 0), x.col(row, 1), x.col(row, 2), x.col(row, 3), x.col(row, 4)
    parts = tab.parts  # the optional parts some market here uses
    if "rival" in parts:
        comp_price = rival_price(x, c, state, comp_price, rival_draw)

    # Launch timing: a launch outside the launch window is refused; at the deadline the market launches.
    before = state.launched
    window = (t >= c.earliest) & (t <= c.latest)
    launch_now = x.not_(before) & x.where(d.launch, window, t >= c.deadline)
    launched = before | launch_now
    launch_cost = x.where(launch_now, c.launch_cost, 0.0)

    # Price, flash sale and bundle only mean something once on sale.
    flash = launched & d.flash & (flash_open > 0) & (state.flash_left > 0)
    regular, list_price, changes_left, refused_change = d.price_ratio, state.list_price, state.changes_left, None
    if "price_changes" in parts:  # a regular price other than the one in force takes a change; none left, it stays
        setting = launched & x.not_(flash)
        in_force = setting & (state.list_price > 0)
        change = in_force & (abs(d.price_ratio - state.list_price) > PRICE_CHANGE_TOLERANCE)
        refused_change = change & (state.changes_left <= 0)
        made = change & x.not_(refused_change)
        regular = x.where(in_force & x.not_(made), state.list_price, d.price_ratio)
        list_price = x.where(setting, regular, state.list_price)
        changes_left = state.changes_left - x.i64(made)
    ratio = x.where(flash, c.flash_ratio, regular)
    partner_open = x.take(tab.partner_open, d.bundle * tab.steps + t)
    active = launched & (d.bundle > 0) & partner_open
    option = x.where(active, d.bundle, 0)
    discount = x.take(tab.discount, option)

    # Ads: a share of what is left, inside the constraints' committed minimum and pacing cap; adstock
    # carries over. Paused when sold out, as ad platforms pause ads for out-of-stock items.
    paused = state.stock <= 0.0
    wanted_spend = x.minimum(x.maximum(d.ad_share, 0.0), 1.0) * state.budget
    spend = x.where(paused, 0.0, x.minimum(x.minimum(x.maximum(wanted_spend, c.min_spend), c.max_spend), state.budget))
    if "budget_periods" in parts:  # never ahead of the budget released so far
        spend = x.minimum(spend, x.maximum(x.col(row, 6) - (c.budget0 - state.budget), 0.0))
    adstock = c.decay * state.adstock + spend

    on_sale_ratio = x.where(launched, ratio, 0.0)
    buyers = state.adopters * c.reads_adopters if size_scale is None else state.adopters * c.reads_adopters / size_scale
    ctx = MarketContext(  # in field order (positional: this runs every step)
        x.f(launched), c.k, season, holiday, x.where(launched, ratio, 1.0), c.ref, x.f(flash), x.f(state.since_flash),
        comp_strength, comp_price, adstock, buyers, discount, c.market_estimate,
    )  # fmt: skip
    resp = responder.respond(ctx, d.creative, option)
    take = x.where(active, resp.bundle_take, 0.0)
    mu = resp.demand if demand_scale is None else resp.demand * demand_scale
    mu = mu if size_scale is None else mu * size_scale
    first_share, from_list = resp.first_purchase_share, None
    if "waitlist" in parts:  # in the launch step a share of the sign-ups buys, fewer above the reference price
        from_list = x.where(launch_now, c.waitlist_conversion * state.waitlist * x.exp(-LITERATURE_ELASTICITY * x.log(x.maximum(ratio, 1.0))), 0.0)
        first_share = x.where(from_list > 0.0, (mu * first_share + from_list) / x.maximum(mu + from_list, 1e-12), first_share)
        mu = mu + from_list
    unfinished = 0
    if sampled:
        out, unfinished = sample_outcome(x, u, mu, take, resp.impressions, resp.ctr, responder.overdispersion, with_impressions, graph_walk)
    else:
        out = expected_outcome(x, mu, take, resp.impressions, resp.ctr)

    # A stock-out serves solo and bundle buyers in proportion (whole units when sampled).
    demand, bundle_demand = out.demand, out.bundle_demand
    sold = x.minimum(demand, state.stock)
    wanted = demand > 0
    share = x.where(wanted, bundle_demand * sold / x.where(wanted, demand, 1.0), 0.0)
    bundled = x.where(sold >= demand, bundle_demand, x.floor(share) if sampled else share)
    stock = state.stock - sold

    # Profit and its parts; option 0 (no bundle) has partner price, cost and discount 0.
    price = on_sale_ratio * c.ref
    revenue = price * (sold - bundled) + price * (1.0 - discount) * bundled
    item_price, item_cost = x.take(tab.item_price, option), x.take(tab.item_cost, option)
    partner_revenue = item_price * (1.0 - discount) * bundled
    partner_cost = item_cost * bundled
    cannibalised = resp.cannibalisation * bundled * (item_price - item_cost)
    cogs = c.cost * sold
    t_next = t + 1
    terminated = t_next >= c.n_i
    salvage = x.where(terminated, c.salvage * stock, 0.0)
    old = predecessor_step(x, c, state, season, launched, launch_now, terminated) if "predecessor" in parts else None
    holding = c.holding * (stock if old is None else stock + old.stock)
    profit = revenue + partner_revenue - cogs - partner_cost - cannibalised - spend - holding - launch_cost + salvage
    if old is not None:
        profit = profit + old.revenue + old.salvage
    zero = 0.0 * sold  # a part no market here uses

    budget = state.budget - spend
    new_state = MarketState(  # t, launched, launch step, steps since a flash sale, flash sales left, stock, budget, adstock, ...
        t_next, launched, x.where(launch_now, t, state.launch_step), x.where(flash, 0, x.minimum(state.since_flash + 1, NEVER)),
        state.flash_left - x.i64(flash), stock, budget, adstock, state.adopters + sold * first_share,
        sold, out.clicks, on_sale_ratio,  # last sales, last clicks, last price
        state.old_stock if old is None else old.stock,
        x.where(launched, 0.0, c.waitlist_keep * state.waitlist + out.clicks) if from_list is not None else state.waitlist,  # sign-ups
        list_price, changes_left,
    )  # fmt: skip
    quantities = {
        "launched": launched, "price": price, "flash_sale": flash, "bundle_option": option, "bundle_discount": discount,
        "creative": d.creative, "ad_spend": spend, "ads_paused": paused, "impressions": out.impressions, "clicks": out.clicks,
        "demand": demand, "expected_demand": mu, "units_sold": sold, "bundled_units": bundled, "stock_left": stock,
        "budget_left": budget, "revenue": revenue, "partner_revenue": partner_revenue, "cogs": cogs,
        "partner_cogs": partner_cost, "cannibalised_margin": cannibalised, "holding_cost": holding, "launch_cost": launch_cost,
        "salvage": salvage, "predecessor_units": zero if old is None else old.units,
        "predecessor_revenue": zero if old is None else old.revenue, "predecessor_salvage": zero if old is None else old.salvage,
        "predecessor_stock": zero if old is None else old.stock, "waitlist_buyers": zero if from_list is None else from_list,
        "profit": profit,
    }  # fmt: skip
    if explain:
        quantities.update(
            forced_launch=launch_now & x.not_(d.launch),
            refused_launch=x.not_(before) & d.launch & (t < c.earliest),
            refused_late_launch=x.not_(before) & d.launch & (t > c.latest),
            refused_flash=launched & d.flash & x.not_(flash),
            refused_bundle=launched & (d.bundle > 0) & x.not_(partner_open),
            refused_unlaunched=x.not_(launched) & (d.flash | (d.bundle > 0)),
            refused_price=launched & x.not_(x.take(a.price_allowed, x.col(x.index_actions(actions, a.native_max), 1)))
            if action_type == "multidiscrete" else launched & x.not_(launched),
            refused_price_change=launched & x.not_(launched) if refused_change is None else refused_change,
            clipped_spend=x.not_(paused) & (spend != x.minimum(wanted_spend, state.budget)),
            context=ctx, response=resp,
        )  # fmt: skip
    return StepResult(new_state, profit, terminated, quantities, unfinished)


_STATE_COLUMNS = tuple(OBS[name] for name in (
    "deadline_left", "launched", "weeks_since_launch", "adoption", "stock", "budget_left", "adstock", "last_sales", "last_clicks",
    "last_price", "flash_uses_left", "since_flash",
))  # fmt: skip


_RIVAL_COLUMNS = (OBS["competitor_price"], *_STATE_COLUMNS)


def observe(x: Any, c: MarketConstants, tab: MarketTables, state: MarketState, out: Any, rival_draw: Any = None) -> Any:
    """The observation of every market (``OBSERVATION_NAMES``): the tabled columns of the step with the
    state's columns written over them (into the float32 buffer ``out`` for a batch); a clipped copy.
    ``rival_draw`` as for ``step``."""
    t, launched = state.t, state.launched
    row = c.table_row + t
    values = [
        x.where(launched, 0.0, x.col(tab.dynamics[row], 5)),  # deadline_left
        x.f(launched),
        x.where(launched, x.f(t - state.launch_step) / c.n, 0.0),
        state.adopters / c.stock_scale,
        state.stock / c.stock_scale,
        state.budget / c.budget_scale,  # 0 without a budget
        state.adstock / c.budget_scale,
        x.log1p(state.last_sales) / c.log_stock,
        x.log1p(state.last_clicks) / 16.0,
        state.last_price,
        x.f(state.flash_left) / c.flash_scale,  # 0 without flash sales
        x.minimum(x.f(state.since_flash), c.n) / c.n,
    ]  # fmt: skip
    if "rival" in tab.parts:  # the competitor's price is what it charges now, answers included
        return x.fill_row(tab.observation, row, _RIVAL_COLUMNS, [rival_price(x, c, state, x.col(tab.dynamics[row], 3), rival_draw), *values], out, OBS_LOW, OBS_HIGH)
    return x.fill_row(tab.observation, row, _STATE_COLUMNS, values, out, OBS_LOW, OBS_HIGH)


def action_masks(x: Any, c: MarketConstants, tab: MarketTables, a: DecodeTables, state: MarketState, nvec: Sequence[int]) -> Any:
    """(N, sum(nvec)) valid values of every MultiDiscrete dimension of the (shared) space ``nvec``,
    concatenated (sb3-contrib's MaskablePPO format), on arrays (one market: arrays of one row). An index
    beyond a market's own range is masked, so a duplicate made by clipping is never offered."""
    t, launched = state.t, state.launched
    tc = x.minimum(t, tab.steps - 1)
    flash_ok = (x.col(tab.dynamics[c.table_row + tc], 4) > 0) & (state.flash_left > 0)
    index = [x.arange(int(width))[None, :] for width in nvec]
    offered = [index[dim] <= x.col(a.native_max, dim)[:, None] for dim in range(len(nvec))]
    price = offered[1] & a.price_allowed & (x.not_(a.is_flash) | flash_ok[:, None])
    if "price_changes" in tab.parts:  # no change left: the regular price in force (and flash sales)
        locked = launched & (state.list_price > 0) & (state.changes_left <= 0)
        price = price & (x.not_(locked)[:, None] | a.is_flash | (abs(a.price - state.list_price[:, None]) <= PRICE_CHANGE_TOLERANCE))
    options = index[2] + 0 * t[:, None]
    bundle = offered[2] & (x.take(tab.partner_open, options * tab.steps + tc[:, None]) | (options == 0))
    launch = x.stack([x.not_(launched) & (t < c.deadline), launched | ((t >= c.earliest) & (t <= c.latest))])
    return x.cat_cols([launch, price, bundle, offered[3], offered[4]])


class ObservedMasks:
    """A market's action masks rebuilt from its observation, for a policy that sees only observations (a
    trained MaskablePPO acting in the native env): ``action_masks`` on the state the observation shows.
    The observation does not show the price changes left under ``constraints.max_price_changes``: these
    masks offer every level, and the env sells a change beyond them at the price in force."""

    def __init__(self, scenario: Scenario, product: int, nvec: np.ndarray | None = None):
        from launchsim.models.ops import NumpyOps

        m = describe_market(scenario, product, nvec)
        self._x = NumpyOps()
        self._nvec = ActionLayout(scenario, "multidiscrete").nvec if nvec is None else np.asarray(nvec)
        self._c, self._tab, self._a = stack_markets(self._x, [m], np.zeros(1, dtype=np.int64))
        self._n = m.constants.n_i

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """The masks (sum(nvec),) of one observation."""
        c = self._c
        t = min(int(round(float(obs[OBS["progress"]]) * self._n)), self._n - 1)
        flash_left = int(round(float(obs[OBS["flash_uses_left"]]) * float(c.flash_scale[0])))
        state = MarketState(
            np.array([t]), np.array([obs[OBS["launched"]] > 0.5]), *(np.zeros(1, dtype=np.int64) for _ in range(2)),
            np.array([flash_left]), *(np.zeros(1) for _ in range(10)), np.array([NEVER]),
        )  # fmt: skip
        return action_masks(self._x, c, self._tab, self._a, state, self._nvec)[0]
