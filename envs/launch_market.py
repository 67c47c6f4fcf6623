"""LaunchMarketEnv: one new-product launch as a Gymnasium environment."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from launchsim.envs.actions import ActionLayout, ActionType
from launchsim.envs.dynamics import (
    action_masks,
    describe_market,
    initial_state,
    market_texts,
    observe,
    stack_markets,
    step,
    with_model_terms,
)
from launchsim.envs.spaces import CRITIC_FIELDS, log_demand_draw, observation_space
from launchsim.envs.timeline import Timeline
from launchsim.models.ops import SCALAR, NumpyOps
from launchsim.models.outcomes import draw_noise
from launchsim.models.response import ResponseModel
from launchsim.models.structural_market import StructuralMarket
from launchsim.scenarios import DEFAULT_SCENARIO, Scenario, load_scenario, product_index

# The dynamics' version: registered ids end in it; runs, evaluations and sweep trials record it.
ENV_VERSION = 2
_SCALE_KEY = 0x5CA1E  # the spawn key of the demand-multiplier generator
_RIVAL_KEY = 0x41BA1  # the spawn key of the generator that decides whether a rival answers
MARKETS = ("structural", "learned")


class LaunchMarketEnv(gym.Env):
    """Launch one new product: when to launch it, at what price, with what bundle and how much ad spend.

    Each step is ``scenario.step_weeks`` weeks (usually one); an episode covers the scenario's
    horizon. The market's responses come from a response model: the structural ground-truth market
    (``market="structural"``, the default), the shipped learned market (``market="learned"``, or a
    predictor or ensemble folder with ``predictor=DIR``), or any ``models.response.ResponseModel``
    (``response_model=``). Outcomes are counts sampled by inversion from uniforms that ``reset`` draws,
    one row per step, with the env's own ``np_random`` (``models.outcomes``): a seed fixes the whole
    trajectory, and two runs with the same seed share their random numbers step by step whatever the
    levers do. The step itself is ``envs.dynamics``, the code the batched VecEnv runs for N markets.

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
    Invalid choices never crash: a launch outside ``launch.earliest_week``..``latest_week``, a flash sale outside
    its window or beyond its uses, a bundle whose partner is not yet available, and a price or
    bundle before launch are ignored and listed in ``info["ignored"]``; so is a price level outside
    the scenario's ``constraints`` (it sells at the nearest level inside; a week's ad spend is kept
    between their committed minimum and pacing cap), and a change of the regular price beyond their
    ``max_price_changes`` (it sells at the price in force; flash sales do not count, and a price
    within ``PRICE_CHANGE_TOLERANCE`` of the reference price of it is no change). At the launch deadline an
    unlaunched product is launched (``info["forced_launch"]``). ``action_masks()`` gives the
    valid values for MaskablePPO. Ads may run before launch: they build adstock but sell nothing.
    Ads do not run while the product is sold out (stock is never replenished): whatever share is
    chosen, nothing of the budget is spent, as ad platforms pause ads for out-of-stock items
    (``info["ads_paused"]``). With ``nvec`` (a wider space shared with other scenarios) an index
    beyond this market's own range is clipped to its last value and masked.

    ## Observation space
    ``Box(-1, 10, (25,), float32)``; the fields are named in ``OBSERVATION_NAMES`` (calendar,
    launch state, adoption, stock, budget, adstock, competitor, last sales/clicks/price, flash-sale
    and deadline state), each scaled to about [0, 1]. With ``traits`` the product's latent traits
    follow, and with ``critic_demand_draw`` the log of the episode's demand multiplier (a field only
    a critic reads, ``envs.spaces.CRITIC_FIELDS``).

    ## Reward
    The step's profit in currency: product revenue + bundled partner revenue - cost of goods -
    partner margin cannibalised by the bundle - ad spend - holding cost on stock left - launch
    cost (once), plus salvage value of unsold stock at the last step. ``info`` holds each term.
    With a ``predecessor`` (the product the launch replaces) its sales until the launch, and after it
    when kept on sale, add their revenue (``predecessor_revenue``), and its stock left at a retirement
    or at the end its salvage value (``predecessor_salvage``); its stock pays holding cost. With
    ``ads.waitlist`` clicks before the launch sign up, and a share buys in the launch step
    (``waitlist_buyers``). In the structural market a ``truth.rival`` competitor answers our launch and
    flash sales with price cuts and may match our price a step later; the observation's competitor
    price is what it charges. Whether it answers in an episode is drawn at ``reset`` with its
    ``answer_probability``, from a child generator of the seed (``rival_answers=True`` or ``False``
    fixes it: the oracle weighs the two).

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
    learned market's own (``train --demand-spread``); evaluation never does. ``demand_scale=c`` (default
    1) multiplies the market's size by ``c`` in every episode: demand times ``c`` at the same penetration
    (the market reads its buyers so far divided by ``c``), one draw of the learned market's level
    (``agents.evaluation.uncertainty``).

    ## Example
    >>> import gymnasium as gym, launchsim.envs
    >>> env = gym.make("LaunchSim/Market-v2", scenario="food_coffee_bundle")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> learned = gym.make("LaunchSim/Market-v2", scenario="food_coffee_bundle", market="learned")

    ## Version history
    - v0: first release (structural market, Bass diffusion, logit price, Hill ads, bundles, flash sales).
    - v1: outcomes sampled by inversion of per-step uniforms drawn at reset (same distributions, except
      a Wilson-Hilferty gamma multiplier for over-dispersed demand and bundle buyers thinned from
      demand), so that the batched VecEnv reproduces single envs and replays share random numbers.
    - v2: no ad spend while sold out (v1 spent the chosen share of the budget on a product with
      nothing left to sell; a policy that never met a sell-out in training could waste its budget).
      A scenario's ``constraints`` (``max_price_changes`` included), ``launch.latest_week``,
      ``predecessor``, ``ads.waitlist`` and ``truth.rival`` are read within v2: a scenario without
      them steps as before.
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
        market: str = "structural",
        predictor: str | Path | None = None,
        nvec: np.ndarray | None = None,
        traits: np.ndarray | None = None,
        critic_demand_draw: bool = False,
        demand_scale: float = 1.0,
        rival_answers: bool | None = None,
    ):
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        s = self.scenario
        self.product_index = product_index(s, product)
        self.product = s.products[self.product_index]
        if outcomes not in ("sampled", "expected"):
            raise ValueError(f"outcomes must be 'sampled' or 'expected', found {outcomes!r}")
        if market not in MARKETS:
            raise ValueError(f"market must be one of {MARKETS}, found {market!r}")
        self.demand_spread = checked_demand_spread(demand_spread)
        if not (math.isfinite(demand_scale) and demand_scale > 0.0):
            raise ValueError(f"demand_scale must be a finite number > 0, found {demand_scale!r}")
        self._fixed_scale = float(demand_scale)
        self.outcomes, self.render_mode = outcomes, render_mode  # another mode than ansi: render() warns and returns None
        if response_model is None and market == "learned":
            from launchsim.models.learned_market import load_shared

            response_model = load_shared(predictor)
        elif predictor is not None and response_model is None:
            raise ValueError("predictor= needs market='learned'")
        self._own_model = response_model is None  # structural, built here: rebuilt after unpickling, not shipped
        self.market: ResponseModel = response_model if response_model is not None else StructuralMarket(s)
        if not isinstance(self.market, StructuralMarket):
            from launchsim.models.learned_market import check_levers

            check_levers(self.market, s)  # a lever the predictor never learned is refused, not answered
        self._action_type = action_type
        self.layout = ActionLayout(s, action_type, nvec=nvec, product=self.product_index)
        self.nvec = self.layout.nvec if nvec is None else np.asarray(nvec)
        if action_type == "multidiscrete" and nvec is not None:
            self.action_space = gym.spaces.MultiDiscrete(self.nvec)
        else:
            self.action_space = self.layout.space
        self.timeline = Timeline.from_scenario(s)
        self._traits = np.zeros(0, dtype=np.float32) if traits is None else np.asarray(traits, dtype=np.float32)
        self.critic_demand_draw = bool(critic_demand_draw)
        self.observation_space = observation_space(len(self._traits), len(CRITIC_FIELDS) if self.critic_demand_draw else 0)
        self._bind()
        self._n = self.timeline.n_steps
        self._scale_rng: np.random.Generator | None = None
        self._noise: list[list[float]] | None = None
        self._demand_scale = 1.0
        if rival_answers not in (None, True, False):
            raise ValueError(f"rival_answers must be None, True or False, found {rival_answers!r}")
        self.rival_answers = rival_answers
        self._rival_rng: np.random.Generator | None = None
        self._rival_draw: float | None = None  # the episode's uniform that decides whether a rival answers
        self._state = initial_state(self._m.constants)
        self._last_info: dict[str, Any] = {}
        self.last_context = self.last_response = None

    def _bind(self) -> None:
        """The market's constants and tables, and its texts bound to the response model (encoded once)."""
        m = with_model_terms(describe_market(self.scenario, self.product_index, self.nvec), self.market, self.scenario, self.product_index)
        self._m = m._replace(tables=m.tables._replace(observation=m.tables.observation.tolist()))  # rows as lists: one market
        self._responder = self.market.responder(SCALAR, [market_texts(self.market, self.scenario, self.product_index, self._m.option_items)])

    # ------------------------------------------------------------------ Gymnasium API

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._scale_rng is None:
            self._scale_rng = demand_scale_generator(self.np_random)
            self._rival_rng = rival_generator(self.np_random)
        self._state = initial_state(self._m.constants)
        self._noise = draw_noise(self.np_random, self._n).tolist()  # this episode's uniforms, one row per step
        if self.demand_spread > 0.0:
            self._demand_scale = float(draw_demand_scales(self._scale_rng, self.demand_spread, 1)[0])
        if self.rival_answers is not None:
            self._rival_draw = 0.0 if self.rival_answers else 1.0
        elif self._m.constants.rival_chance < 1.0:
            self._rival_draw = float(self._rival_rng.random())
        self._last_info = {}
        return self._observe(), {"week": 0, "ignored": []}

    def step(self, action):
        if self._noise is None or self._state.t >= self._n:
            raise RuntimeError("step() called before reset() or after the episode ended; call reset() first")
        m, t = self._m, self._state.t
        r = step(
            SCALAR, m.constants, m.tables, m.decode, self._state, action, self._action_type, self._responder, self._noise[t],
            demand_scale=self._demand_scale if self.demand_spread > 0.0 else None, sampled=self.outcomes == "sampled", explain=True,
            size_scale=self._fixed_scale if self._fixed_scale != 1.0 else None, rival_draw=self._rival_draw,
        )  # fmt: skip
        self._state = r.state
        info = StepInfo(r.quantities)
        self.last_context, self.last_response = info.pop("context"), info.pop("response")  # read by the log generator
        s = self.scenario
        item = m.option_items[info.pop("bundle_option")]
        info["ignored"] = [reason for flag, reason in _REFUSALS if info.pop(flag)]
        info["week"], info["bundle_partner"] = t * s.step_weeks, s.catalogue[item].name if item >= 0 else ""
        info["creative"], info["lost_sales"] = s.ads.creatives[info["creative"]].name, info["demand"] - info["units_sold"]
        self._last_info = info
        return self._observe(), float(r.profit), r.terminated, False, info

    @property
    def demand_scale(self) -> float:
        """This episode's multiplier of expected demand (1 without ``demand_spread``): what a critic that
        reads the draw is told (``critic_demand_draw``)."""
        return self._demand_scale

    def action_masks(self) -> np.ndarray:
        """Valid values of each MultiDiscrete dimension, concatenated (sb3-contrib's MaskablePPO format)."""
        if not hasattr(self, "_mask_tables"):  # the masks run on one-row arrays: not on the hot path
            self._mask_tables = stack_markets(NumpyOps(), [describe_market(self.scenario, self.product_index, self.nvec)], np.zeros(1, dtype=np.int64))
        x, (c, tab, a) = NumpyOps(), self._mask_tables
        state = type(self._state)(*(np.array([v]) for v in self._state))
        return action_masks(x, c, tab, a, state, self.nvec)[0]

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            gym.logger.warn(f"render() returns None for render_mode {self.render_mode!r} (supported: {self.metadata['render_modes']})")
            return None
        i = self._last_info
        return (
            f"week {i.get('week', 0):>3}  launched={int(self._state.launched)}  price={i.get('price', 0):8.2f}  "
            f"sold={i.get('units_sold', 0):8.0f}  stock={self._state.stock:8.0f}  profit={i.get('profit', 0):10.2f}"
        )

    def _observe(self) -> np.ndarray:
        m = self._m
        obs = observe(SCALAR, m.constants, m.tables, self._state, None, self._rival_draw)
        if not len(self._traits) and not self.critic_demand_draw:
            return obs
        extra = [np.array([log_demand_draw(SCALAR, self._demand_scale)], dtype=np.float32)] if self.critic_demand_draw else []
        return np.concatenate([obs, self._traits, *extra])

    # ------------------------------------------------------------------ pickling

    def __copy__(self) -> LaunchMarketEnv:
        """A snapshot (the state is replaced, never changed, at each step), sharing the bound market."""
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """A learned market loaded from a folder travels as that folder (reloaded once per process), the
        structural one is rebuilt from the scenario: the env pickles small (``SubprocVecEnv``)."""
        state = dict(self.__dict__)
        source = None if self._own_model else getattr(self.market, "source", None)
        if self._own_model or source is not None:
            state["_reload_from"] = None if source is None else str(source)
            for key in ("market", "_responder", "_m", "_mask_tables"):
                state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        reload_from = state.pop("_reload_from", None)
        self.__dict__.update(state)
        if "market" not in state:
            if self._own_model:
                self.market = StructuralMarket(self.scenario)
            else:
                from launchsim.models.learned_market import load_shared

                self.market = load_shared(reload_from)
            self._bind()


class StepInfo(dict):
    """A step's ``info``. Its values are numbers, strings and the list of ignored parts, so a deep copy
    (SB3's DummyVecEnv deep-copies every env's info on every step) is one pass over the keys."""

    def __deepcopy__(self, memo):
        return StepInfo({k: v if type(v) in _IMMUTABLE else copy.deepcopy(v, memo) for k, v in self.items()})


_IMMUTABLE = frozenset((bool, int, float, str, type(None)))

_REFUSALS = (
    ("refused_launch", "launch: before launch.earliest_week"),
    ("refused_late_launch", "launch: after launch.latest_week (the product stays out)"),
    ("refused_flash", "flash_sale: outside its window or no uses left"),
    ("refused_bundle", "bundle: partner not available yet"),
    ("refused_unlaunched", "price/bundle: product not launched"),
    ("refused_price", "price: outside the constraints, sold at the nearest level they allow"),
    ("refused_price_change", "price: no change left (constraints.max_price_changes), sold at the price in force"),
    ("clipped_spend", "ad spend: moved inside the constraints' weekly minimum and cap"),
)


def expected_markets(
    scenario: Scenario, product: int = 0, response_model: ResponseModel | None = None, action_type: ActionType = "multidiscrete"
) -> list[tuple[float, LaunchMarketEnv]]:
    """Expected-outcome envs of one (scenario, product), each with its weight: the weighted sum of a
    plan's profits in them is its expected profit. In the structural market (``response_model`` None)
    a rival that answers by chance gives two, one per outcome; otherwise there is one of weight 1."""
    rival = scenario.truth.rival if response_model is None and scenario.truth is not None else None
    chance = 1.0 if rival is None else rival.answer_probability
    branches = [(1.0, None)] if chance >= 1.0 else [(chance, True), (1.0 - chance, False)]
    return [
        (w, LaunchMarketEnv(scenario, product, response_model=response_model, action_type=action_type, outcomes="expected", rival_answers=b))
        for w, b in branches
    ]  # fmt: skip


def checked_demand_spread(spread: float) -> float:
    """The domain-randomisation spread as a float; a ValueError unless finite and >= 0."""
    if not (isinstance(spread, int | float) and math.isfinite(spread) and spread >= 0.0):
        raise ValueError(f"demand_spread must be a finite number >= 0, found {spread!r}")
    return float(spread)


def demand_scale_generator(np_random: np.random.Generator) -> np.random.Generator:
    """The generator of an env's per-episode demand multipliers: a child of its seed, so drawing them
    leaves ``np_random``'s stream (the outcome uniforms) as it is without a spread."""
    return child_generator(np_random, _SCALE_KEY)


def rival_generator(np_random: np.random.Generator) -> np.random.Generator:
    """The generator of an env's per-episode draws of whether a rival answers: a child of its seed."""
    return child_generator(np_random, _RIVAL_KEY)


def child_generator(np_random: np.random.Generator, key: int) -> np.random.Generator:
    """A generator that is a child of ``np_random``'s seed under spawn key ``key``: draws from it leave the
    parent's stream as it is."""
    seq = np_random.bit_generator.seed_seq
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, key)))


def draw_demand_scales(rng: np.random.Generator, spread: float, episodes: int) -> np.ndarray:
    """The next episodes' multipliers of expected demand, exp(N(0, spread^2)) each (domain
    randomisation); one array call whatever the count, so single and batched envs agree bit for bit."""
    return np.exp(spread * rng.standard_normal(episodes))
