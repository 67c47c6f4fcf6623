"""A scenario's public calendar laid out per decision step: season, holidays, competitor, windows.

Computed once per scenario so that an env step reads plain floats from lists instead of
re-deriving dates; the batched env and the log generator read the same tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from launchsim.models.ops import NEVER
from launchsim.scenarios.schema import Scenario

__all__ = ["NEVER", "Timeline"]


@dataclass(frozen=True)
class Timeline:
    n_steps: int
    step_weeks: int
    week_of_year: list[int]  # ISO-like week (1..52) at the start of each step
    season: list[float]  # category season index, mean over the step's weeks
    holiday: list[float]  # summed holiday uplift, mean over the step's weeks
    competitor_strength: list[float]
    competitor_price: list[float]  # currency; 0.0 while absent
    flash_open: list[bool]
    partner_open: list[list[bool]]  # [catalogue item][step]
    earliest_launch_step: int
    latest_launch_step: int  # NEVER without a launch window's end
    deadline_step: int  # NEVER when there is no deadline

    def launch_open(self, t: int) -> bool:
        """Whether a launch may happen at step ``t`` (inside the launch window)."""
        return self.earliest_launch_step <= t <= self.latest_launch_step

    @classmethod
    def from_scenario(cls, s: Scenario) -> Timeline:
        k, n = s.step_weeks, s.n_steps
        weeks = [[t * k + j for j in range(k)] for t in range(n)]  # weeks since start, per step
        woy = [[(s.calendar.start_week_of_year - 1 + w) % 52 + 1 for w in ws] for ws in weeks]

        def season_of(week_of_year: int) -> float:
            sea = s.calendar.season
            if sea.weekly_index is not None:
                return sea.weekly_index[week_of_year - 1]
            return 1.0 + sea.amplitude * math.cos(2 * math.pi * (week_of_year - sea.peak_week_of_year) / 52)

        def holiday_of(week_of_year: int) -> float:
            total = 0.0
            for h in s.calendar.holidays:
                if 0 <= (week_of_year - h.week_of_year) % 52 < h.duration_weeks:
                    total += h.uplift
            return total

        strength, price = [0.0] * n, [0.0] * n
        for event in s.competitor.events:  # sorted by week (validated)
            for t in range(min(event.week // k, n), n):
                strength[t], price[t] = event.strength, event.price
        flash = s.pricing.flash_sale
        flash_open = [
            flash is not None and flash.start_week // k <= t <= flash.end_week // k for t in range(n)
        ]
        deadline = s.launch.deadline_week
        return cls(
            n_steps=n,
            step_weeks=k,
            week_of_year=[w[0] for w in woy],
            season=[sum(map(season_of, w)) / k for w in woy],
            holiday=[sum(map(holiday_of, w)) / k for w in woy],
            competitor_strength=strength,
            competitor_price=price,
            flash_open=flash_open,
            partner_open=[[t >= item.available_from_week // k for t in range(n)] for item in s.catalogue],
            earliest_launch_step=s.launch.earliest_week // k,
            latest_launch_step=NEVER if s.launch.latest_week is None else s.launch.latest_week // k,
            deadline_step=NEVER if deadline is None else deadline // k,
        )
