"""A recorded plan: a fixed decision per week, read from a CSV file, played as a policy.

One row per decision week (``week`` = 0, step_weeks, 2 x step_weeks, ... up to the horizon).
Columns, all optional except ``week`` (a missing column takes the default in brackets):
- ``launch`` (or ``launched``): yes/no, true/false or 1/0 [yes: launch as soon as allowed];
- ``price``: price in currency, snapped to the nearest of the scenario's price levels [reference price];
- ``flash_sale``: yes/no [no];
- ``bundle_partner`` (catalogue name, empty for none) and ``bundle_discount`` [no bundle];
- ``ad_share`` (share of the ad budget left) or ``ad_spend`` (currency, turned into a share of the
  budget left at that week, snapped to the scenario's spend levels) [0];
- ``creative``: the creative's name or position [the first].
The weekly table that ``simulate --csv`` and ``replay`` write has these columns, so a recorded
episode plays back as a plan. Problems name the file, row and column.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from launchsim.envs.actions import ActionLayout, Decision
from launchsim.envs.spaces import OBSERVATION_NAMES
from launchsim.scenarios import product_index
from launchsim.scenarios.schema import Scenario

from launchsim.errors import PolicyError

_PROGRESS = OBSERVATION_NAMES.index("progress")
_BUDGET = OBSERVATION_NAMES.index("budget_left")
_TRUE, _FALSE = {"true", "yes", "y", "1", "1.0"}, {"false", "no", "n", "0", "0.0", ""}


class RecordedPlan:
    """Plays one recorded decision per week (SB3's ``predict`` signature); open-loop by design."""

    def __init__(self, frame: pd.DataFrame, scenario: Scenario, product: int | str = 0, source: str = "<plan>"):
        self.scenario, self.source = scenario, source
        self.product_index = product_index(scenario, product)
        self.layout = ActionLayout(scenario, "multidiscrete", product=self.product_index)
        self.n_steps = scenario.n_steps
        self._budget0 = float(scenario.ads.budget)
        self._plan: list[tuple[Decision, float | None]] = self._read(frame)

    @classmethod
    def load(cls, path: Path | str, scenario: Scenario, product: int | str = 0) -> RecordedPlan:
        """Read a plan CSV; PolicyError when it is missing, unreadable or does not fit the scenario."""
        path = Path(path)
        if not path.is_file():
            raise PolicyError(f"{path}: actions file not found")
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as err:  # every parser failure is the same user problem
            raise PolicyError(f"{path}: cannot read the actions CSV ({type(err).__name__})") from err
        return cls(frame, scenario, product, source=str(path))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        obs = np.asarray(observation, dtype=np.float64)
        if obs.ndim == 1:
            return self._act(obs), state
        return np.stack([self._act(row) for row in obs]), state

    def _act(self, obs: np.ndarray) -> np.ndarray:
        t = min(max(round(obs[_PROGRESS] * self.n_steps), 0), self.n_steps - 1)
        decision, spend = self._plan[t]
        if spend is not None:  # currency: a share of what is left now
            left = float(obs[_BUDGET]) * self._budget0
            decision = decision._replace(ad_share=min(spend / left, 1.0) if left > 0 else 0.0)
        return self.layout.encode(decision)

    # ------------------------------------------------------------------ reading

    def _read(self, frame: pd.DataFrame) -> list[tuple[Decision, float | None]]:
        s, k = self.scenario, self.scenario.step_weeks
        frame = frame.rename(columns=lambda c: str(c).strip())
        if "week" not in frame.columns:
            raise PolicyError(f"{self.source}: missing column 'week' (expected one row per week: 0, {k}, {2 * k}, ...)")
        weeks = [self._number(v, i, "week") for i, v in enumerate(frame["week"])]
        expected = [t * k for t in range(self.n_steps)]
        if sorted(weeks) != expected:
            extra = sorted(set(weeks) - set(expected))
            missing = sorted(set(expected) - set(weeks))
            raise PolicyError(
                f"{self.source}: column 'week': found weeks {_brief(weeks)}, expected one row for each of {_brief(expected)}"
                + (f" (missing {_brief(missing)})" if missing else "")
                + (f" (not decision weeks: {_brief(extra)})" if extra else "")
            )
        ref = s.products[self.product_index].reference_price
        partners = [c.name for c in s.catalogue]
        creatives = [c.name for c in s.ads.creatives]
        plan: list[Any] = [None] * self.n_steps
        for i, row in enumerate(frame.to_dict(orient="records")):
            launch_column = "launch" if "launch" in row else "launched"
            launch = self._flag(row.get(launch_column, "yes"), i, launch_column)
            price = row.get("price", "")
            ratio = self._number(price, i, "price") / ref if str(price).strip() not in ("", "0", "0.0") else 1.0
            flash = self._flag(row.get("flash_sale", "no"), i, "flash_sale")
            bundle = self._bundle(
                str(row.get("bundle_partner", "")).strip(), row.get("bundle_discount", ""), partners, i
            )
            spend: float | None = None
            if str(row.get("ad_share", "")).strip():
                share = self._number(row.get("ad_share"), i, "ad_share")
            elif str(row.get("ad_spend", "")).strip():
                spend, share = self._number(row.get("ad_spend"), i, "ad_spend"), 0.0
            else:
                share = 0.0
            creative = self._creative(str(row.get("creative", "")).strip(), creatives, i)
            t = int(weeks[i]) // k
            plan[t] = (
                Decision(launch, ratio, flash and s.pricing.flash_sale is not None, bundle, share, creative),
                spend,
            )
        return plan

    def _where(self, i: int, column: str) -> str:
        return f"{self.source}: row {i + 2}, column {column!r}"  # row 1 is the header, as a spreadsheet counts

    def _number(self, value: Any, i: int, column: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise PolicyError(f"{self._where(i, column)}: found {value!r}, expected a number") from None
        if not math.isfinite(number) or number < 0:
            raise PolicyError(f"{self._where(i, column)}: found {value!r}, expected a number ≥ 0")
        return number

    def _flag(self, value: Any, i: int, column: str) -> bool:
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise PolicyError(f"{self._where(i, column)}: found {value!r}, expected yes/no, true/false or 1/0")

    def _bundle(self, partner: str, discount: Any, partners: list[str], i: int) -> int:
        if not partner:
            return 0
        if partner not in partners:
            close = difflib.get_close_matches(partner, partners, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PolicyError(
                f"{self._where(i, 'bundle_partner')}: found {partner!r}{hint} (expected one of {partners} or empty)"
            )
        item = partners.index(partner)
        allowed = self.scenario.catalogue[item].discounts
        d = self._number(discount, i, "bundle_discount") if str(discount).strip() else allowed[0]
        for j, option in enumerate(self.layout.bundle_options):
            if option.item == item and abs(option.discount - d) < 1e-6:
                return j + 1
        raise PolicyError(
            f"{self._where(i, 'bundle_discount')}: found {discount!r} for {partner!r}, expected one of {allowed}"
        )

    def _creative(self, value: str, creatives: list[str], i: int) -> int:
        if not value:
            return 0
        if value in creatives:
            return creatives.index(value)
        if value.isdigit() and int(value) < len(creatives):
            return int(value)
        close = difflib.get_close_matches(value, creatives, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise PolicyError(f"{self._where(i, 'creative')}: found {value!r}{hint} (expected one of {creatives})")


def _brief(values: list) -> str:
    shown = ", ".join(str(int(v)) if float(v).is_integer() else str(v) for v in values[:8])
    return f"[{shown}{', ...' if len(values) > 8 else ''}]"
