"""Heuristic baselines: the rules a seller would use without a simulator.

Each is a policy with SB3's ``predict(obs, state, episode_start, deterministic)`` signature, so it
runs wherever a trained model runs (one observation or a batch). It reads only the observation
and the scenario's public part, never the hidden ``truth`` block, and it only chooses valid actions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from launchsim.envs.actions import ActionLayout, ActionType, Decision
from launchsim.envs.spaces import OBSERVATION_NAMES
from launchsim.envs.timeline import Timeline
from launchsim.scenarios.schema import Scenario

from launchsim.errors import lookup

_OBS = {name: i for i, name in enumerate(OBSERVATION_NAMES)}


class HeuristicPolicy:
    """Base class: decodes observations, asks ``decide`` for a Decision, encodes it as an action."""

    name = "heuristic"

    def __init__(
        self, scenario: Scenario, product: int = 0, action_type: ActionType = "multidiscrete", seed: int = 0
    ):
        self.scenario = scenario
        self.product = scenario.products[product]
        self.layout = ActionLayout(scenario, action_type, product=product)
        self.timeline = Timeline.from_scenario(scenario)
        self.n_steps = self.timeline.n_steps
        self.rng = np.random.default_rng(seed)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        obs = np.asarray(observation, dtype=np.float64)
        if obs.ndim == 1:
            return self._act(obs), state
        return np.stack([self._act(row) for row in obs]), state

    def _act(self, obs: np.ndarray) -> np.ndarray:
        t = min(int(round(obs[_OBS["progress"]] * self.n_steps)), self.n_steps - 1)
        return self.layout.encode(self.decide(t, obs))

    def decide(self, t: int, obs: np.ndarray) -> Decision:
        raise NotImplementedError

    # Building blocks shared by the rules.

    def list_price(self) -> float:
        return 1.0

    def even_share(self, t: int) -> float:
        """Spend the budget left evenly over the steps left (rounded to the nearest level by the layout)."""
        return 1.0 / max(self.n_steps - t, 1)

    def can_launch(self, obs: np.ndarray) -> bool:
        return obs[_OBS["launch_allowed"]] > 0.5


class LaunchNow(HeuristicPolicy):
    """Launch as soon as allowed at a fixed markup on unit cost, spend the budget evenly, never bundle."""

    name = "launch_now"
    markup = 2.5  # price = markup x unit cost, snapped to the nearest price level

    def decide(self, t: int, obs: np.ndarray) -> Decision:
        ratio = self.markup * self.product.unit_cost / self.product.reference_price
        return Decision(self.can_launch(obs), ratio, False, 0, self.even_share(t), 0)


class ListPrice(HeuristicPolicy):
    """Launch as soon as allowed at the reference (list) price, even spend, no bundle."""

    name = "list_price"

    def decide(self, t: int, obs: np.ndarray) -> Decision:
        return Decision(self.can_launch(obs), self.list_price(), False, 0, self.even_share(t), 0)


class HolidayLaunch(HeuristicPolicy):
    """Hold the launch and the ad budget until ``lead`` steps before the biggest holiday (or season
    peak) in the horizon, then launch at list price and spend evenly; launch at once if there is none."""

    name = "holiday_launch"
    lead = 3

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        tl = self.timeline
        peak_signal = tl.holiday if max(tl.holiday, default=0.0) > 0 else tl.season
        peak = int(np.argmax(peak_signal)) if max(peak_signal) > min(peak_signal) else 0
        self.launch_step = min(max(peak - self.lead, tl.earliest_launch_step, 0), tl.deadline_step, tl.latest_launch_step)

    def decide(self, t: int, obs: np.ndarray) -> Decision:
        go = t >= self.launch_step and self.can_launch(obs)
        launched = obs[_OBS["launched"]] > 0.5 or go
        return Decision(go, self.list_price(), False, 0, self.even_share(t) if launched else 0.0, 0)


class BundleFirst(HeuristicPolicy):
    """Launch now at list price with the first available bundle option (file order), even spend."""

    name = "bundle_first"

    def decide(self, t: int, obs: np.ndarray) -> Decision:
        bundle = next(
            (i + 1 for i, o in enumerate(self.layout.bundle_options) if self.timeline.partner_open[o.item][t]), 0
        )
        return Decision(self.can_launch(obs), self.list_price(), False, bundle, self.even_share(t), 0)


class FlashInWindow(HeuristicPolicy):
    """Launch now at list price and run the flash sale as soon as its window opens, even spend."""

    name = "flash_in_window"

    def decide(self, t: int, obs: np.ndarray) -> Decision:
        flash = obs[_OBS["flash_open"]] > 0.5 and obs[_OBS["flash_uses_left"]] > 0
        return Decision(self.can_launch(obs), self.list_price(), bool(flash), 0, self.even_share(t), 0)


class RandomValid(HeuristicPolicy):
    """Uniformly random levers among the valid ones: the floor any policy should clear."""

    name = "random"

    def decide(self, t: int, obs: np.ndarray) -> Decision:
        lay, tl = self.layout, self.timeline
        last_chance = t >= min(tl.deadline_step, tl.latest_launch_step)  # a random launch still happens in its window
        launch = bool(self.can_launch(obs) and (last_chance or self.rng.random() < 0.5))
        on_sale = launch or obs[_OBS["launched"]] > 0.5  # price, flash and bundle only matter on sale
        options = [0] + [i + 1 for i, o in enumerate(lay.bundle_options) if tl.partner_open[o.item][t]]
        flash_ok = obs[_OBS["flash_open"]] > 0.5 and obs[_OBS["flash_uses_left"]] > 0
        return Decision(
            launch=launch,
            price_ratio=float(self.rng.choice(lay.price_levels)),
            flash=bool(on_sale and flash_ok and self.rng.random() < 0.5),
            bundle=int(self.rng.choice(options)) if on_sale else 0,
            ad_share=float(self.rng.choice(lay.spend_levels)),
            creative=int(self.rng.integers(lay.n_creatives)),
        )


HEURISTICS: dict[str, type[HeuristicPolicy]] = {
    cls.name: cls for cls in (LaunchNow, ListPrice, HolidayLaunch, BundleFirst, FlashInWindow, RandomValid)
}


def make_heuristic(
    name: str, scenario: Scenario, product: int = 0, action_type: ActionType = "multidiscrete", seed: int = 0
) -> HeuristicPolicy:
    """Build the heuristic ``name`` for a scenario; an unknown name suggests the closest one."""
    return lookup(HEURISTICS, name, "policy")(scenario, product=product, action_type=action_type, seed=seed)
