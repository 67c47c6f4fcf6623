"""Policy lookup tables: a policy's decisions on a grid of market states, readable without Python.

``export_table`` asks a policy what it would do in every cell of a grid over the state that
matters for a launch (decision week, launched or not, adoption, stock left, ad budget left, flash
sales left) and writes one row per cell: the state bins and the decision in business units
(launch yes/no, price in currency, flash sale, bundle partner and discount, ad spend in currency,
ad creative). ``TablePolicy`` reads such a file back and acts with it in the native env by binning
the observation, so a pricing team's spreadsheet and the simulator run the same rules.

How a grid cell becomes the 25-field observation a policy reads (``OBSERVATION_NAMES``):
- calendar fields (progress, week of year, season, holidays, competitor, flash window, deadline,
  launch allowed, bundles open) come from the scenario's ``Timeline`` at the cell's week, exactly;
- adoption, stock and budget left are the centres of the cell's bins, flash sales left its value;
- the rest (weeks since launch, adstock, last sales/clicks/price, steps since a flash sale, the
  competitor's price, which a rival that answers our moves changes) is not on the grid: it is the
  mean of the source policy's own observations in that cell over a few ground-truth episodes, else in
  the same week and launch status, else a rule (launched at the earliest allowed week, no adstock, no
  sales or clicks yet, list price, no flash sale so far, the competitor's scripted price).
Competitor presence is a column, not an axis: in a scenario it is a public date, so the week fixes it.

Files: ``.csv`` (metadata in a ``.meta.json`` sidecar that records the CSV's SHA-256),
``.parquet`` (metadata in the schema) or ``.json`` (``{"metadata": ..., "rows": [...]}``); each file
is written to a temporary name and moved into place, so a crash never leaves a half-written table.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from launchsim.envs.actions import ActionLayout, Decision
from launchsim.envs.spaces import OBSERVATION_NAMES
from launchsim.envs.timeline import NEVER, Timeline
from launchsim.scenarios import product_index
from launchsim.scenarios.loader import load_scenario, scenario_hash
from launchsim.scenarios.schema import Scenario

from launchsim.errors import PolicyError

TABLE_FORMAT = "launchsim-policy-table"
TABLE_VERSION = 1
TABLE_SUFFIXES = (".csv", ".parquet", ".json")
_OBS = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
_PARQUET_KEY = b"launchsim_table"
_SHARE_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

STATE_COLUMNS = [
    "week", "launched", "adoption_bin", "adopters_from", "adopters_to", "stock_bin", "stock_from", "stock_to",
    "budget_bin", "budget_left_from", "budget_left_to", "flash_uses_left", "competitor_present",
]  # fmt: skip
ACTION_COLUMNS = [
    "launch",
    "price",
    "flash_sale",
    "bundle_partner",
    "bundle_discount",
    "ad_spend",
    "ad_share",
    "creative",
]


@dataclass(frozen=True)
class TableGrid:
    """Bin edges of the continuous state axes, as shares of initial stock (adoption, stock) and of
    the total ad budget (budget left). Values beyond the last edge fall in the last bin."""

    adoption: tuple[float, ...] = _SHARE_EDGES
    stock: tuple[float, ...] = _SHARE_EDGES
    budget_left: tuple[float, ...] = _SHARE_EDGES

    def __post_init__(self):
        for name in ("adoption", "stock", "budget_left"):
            edges = tuple(float(x) for x in getattr(self, name))
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)) or edges[0] < 0:
                raise PolicyError(
                    f"grid {name}: found edges {list(edges)}, expected at least two increasing shares ≥ 0"
                )
            object.__setattr__(self, name, edges)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> TableGrid:
        """Grid from ``AXIS=e0,e1,...`` options (``adoption=0,0.1,0.3,1``); other axes keep their defaults."""
        edges: dict[str, tuple[float, ...]] = {}
        for spec in specs:
            axis, _, values = spec.partition("=")
            if axis.strip() not in ("adoption", "stock", "budget_left"):
                raise PolicyError(
                    f"--bins {spec}: found axis {axis.strip()!r}, expected adoption, stock or budget_left"
                )
            try:
                edges[axis.strip()] = tuple(float(v) for v in values.split(","))
            except ValueError as err:
                raise PolicyError(f"--bins {spec}: expected comma-separated numbers after '='") from err
        return cls(**edges)

    def bin_of(self, axis: str, value: float) -> int:
        edges = getattr(self, axis)
        return int(min(max(np.searchsorted(edges[1:-1], value, side="right"), 0), len(edges) - 2))

    def centre(self, axis: str, index: int) -> float:
        edges = getattr(self, axis)
        return (edges[index] + edges[index + 1]) / 2.0


# ---------------------------------------------------------------- grid cells and their observations


@dataclass(frozen=True)
class Cell:
    step: int
    launched: bool
    adoption: int  # bin indices
    stock: int
    budget: int
    flash_left: int  # flash sales left (0 without flash sales)

    @property
    def key(self) -> tuple:
        return (self.step, self.launched, self.adoption, self.stock, self.budget, self.flash_left)


def grid_cells(scenario: Scenario, grid: TableGrid) -> list[Cell]:
    """Every reachable cell: unlaunched up to the deadline (stock full, no adoption, all flash sales
    left); launched from the earliest launch week on, over every adoption x stock x budget bin."""
    tl = Timeline.from_scenario(scenario)
    flash = scenario.pricing.flash_sale
    uses = flash.max_uses if flash else 0
    pre_a, pre_s = grid.bin_of("adoption", 0.0), grid.bin_of("stock", 1.0)
    cells = []
    for t in range(tl.n_steps):
        for b in range(len(grid.budget_left) - 1):
            if t <= tl.deadline_step:
                cells.append(Cell(t, False, pre_a, pre_s, b, uses))
        if t < tl.earliest_launch_step:
            continue
        for a in range(len(grid.adoption) - 1):
            for s in range(len(grid.stock) - 1):
                for b in range(len(grid.budget_left) - 1):
                    for f in range(uses, -1, -1):
                        cells.append(Cell(t, True, a, s, b, f))
    return cells


def cell_of(obs: np.ndarray, n_steps: int, grid: TableGrid, flash_max: int) -> Cell:
    """The grid cell an observation falls in (how ``TablePolicy`` reads the native env)."""
    launched = bool(obs[_OBS["launched"]] > 0.5)
    return Cell(
        step=min(max(round(float(obs[_OBS["progress"]]) * n_steps), 0), n_steps - 1),
        launched=launched,
        adoption=grid.bin_of("adoption", float(obs[_OBS["adoption"]]) if launched else 0.0),
        stock=grid.bin_of("stock", float(obs[_OBS["stock"]]) if launched else 1.0),
        budget=grid.bin_of("budget_left", float(obs[_OBS["budget_left"]])),
        flash_left=round(float(obs[_OBS["flash_uses_left"]]) * flash_max) if flash_max else 0,
    )


_CONTEXT_FIELDS = ("weeks_since_launch", "adstock", "last_sales", "last_clicks", "last_price", "since_flash", "competitor_price")


class GridObserver:
    """Builds the native env's observation for a grid cell (see the module docstring for the choices)."""

    def __init__(self, scenario: Scenario, product: int, grid: TableGrid):
        self.scenario, self.grid = scenario, grid
        self.product = scenario.products[product]
        self.timeline = Timeline.from_scenario(scenario)
        self.n_steps = self.timeline.n_steps
        flash = scenario.pricing.flash_sale
        self.flash_max = flash.max_uses if flash else 0
        self._cell_context: dict[tuple, np.ndarray] = {}
        self._step_context: dict[tuple, np.ndarray] = {}

    def learn_context(self, observations: Iterable[np.ndarray]) -> int:
        """Average the off-grid fields of visited observations per cell and per (week, launched)."""
        by_cell: dict[tuple, list] = defaultdict(list)
        by_step: dict[tuple, list] = defaultdict(list)
        count = 0
        for obs in observations:
            cell = cell_of(obs, self.n_steps, self.grid, self.flash_max)
            values = np.array([obs[_OBS[f]] for f in _CONTEXT_FIELDS], dtype=np.float64)
            by_cell[cell.key].append(values)
            by_step[(cell.step, cell.launched)].append(values)
            count += 1
        self._cell_context = {k: np.mean(v, axis=0) for k, v in by_cell.items()}
        self._step_context = {k: np.mean(v, axis=0) for k, v in by_step.items()}
        return count

    def context(self, cell: Cell) -> dict[str, float]:
        found = self._cell_context.get(cell.key)
        if found is None:
            found = self._step_context.get((cell.step, cell.launched))
        if found is not None:
            return dict(zip(_CONTEXT_FIELDS, map(float, found)))
        n, tl = self.n_steps, self.timeline
        return {  # rules for a state the source policy never reached
            "weeks_since_launch": max(cell.step - tl.earliest_launch_step, 1) / n if cell.launched else 0.0,
            "adstock": 0.0,
            "last_sales": 0.0,
            "last_clicks": 0.0,
            "last_price": 1.0 if cell.launched else 0.0,
            "since_flash": 1.0,
            "competitor_price": tl.competitor_price[cell.step] / self.product.reference_price,
        }

    def observation(self, cell: Cell) -> np.ndarray:
        t, tl, n, g = cell.step, self.timeline, self.n_steps, self.grid
        angle = 2.0 * math.pi * (tl.week_of_year[t] - 1) / 52.0
        options = [(i, d) for i, item in enumerate(self.scenario.catalogue) for d in item.discounts]
        deadline = tl.deadline_step
        fields = {
            "progress": t / n,
            "steps_left": (n - t) / n,
            "week_sin": math.sin(angle),
            "week_cos": math.cos(angle),
            "season": tl.season[t],
            "holiday_now": tl.holiday[t],
            "holiday_next": tl.holiday[t + 1] if t + 1 < n else 0.0,
            "launched": 1.0 if cell.launched else 0.0,
            "adoption": g.centre("adoption", cell.adoption) if cell.launched else 0.0,
            "stock": g.centre("stock", cell.stock) if cell.launched else 1.0,
            "budget_left": g.centre("budget_left", cell.budget) if self.scenario.ads.budget > 0 else 0.0,
            "competitor_present": 1.0 if tl.competitor_strength[t] > 0 else 0.0,
            "competitor_price": tl.competitor_price[t] / self.product.reference_price,
            "competitor_strength": tl.competitor_strength[t],
            "flash_uses_left": cell.flash_left / self.flash_max if self.flash_max else 0.0,
            "flash_open": 1.0 if tl.flash_open[t] else 0.0,
            "deadline_left": 0.0 if cell.launched else (min(max(deadline - t, 0), n) / n if deadline < NEVER else 1.0),
            "launch_allowed": 1.0 if tl.launch_open(t) else 0.0,
            "bundles_open": sum(tl.partner_open[i][t] for i, _ in options) / len(options) if options else 0.0,
            **self.context(cell),
        }
        missing = set(OBSERVATION_NAMES) - set(fields)
        if missing:  # the env grew a field this builder does not know: fail loudly, never guess
            raise PolicyError(f"lookup tables cannot yet build the observation fields {sorted(missing)}")
        return np.array([fields[name] for name in OBSERVATION_NAMES], dtype=np.float32)


# ---------------------------------------------------------------- decisions in business units


def decode_action(action: Any, scenario: Scenario) -> Decision:
    """A policy's raw action (MultiDiscrete, 5 numbers, or Box, 6 numbers) as a business Decision."""
    a = np.asarray(action).reshape(-1)
    return ActionLayout(scenario, "box" if a.size == 6 else "multidiscrete").decode(a)


def decision_row(
    d: Decision, scenario: Scenario, product: int, budget_left: float, layout: ActionLayout | None = None
) -> dict[str, Any]:
    """The action columns of one table row; ``budget_left`` in currency prices the ad share."""
    ref = scenario.products[product].reference_price
    flash = scenario.pricing.flash_sale
    layout = layout or ActionLayout(scenario, "multidiscrete", product=product)
    partner, discount = "", 0.0
    if 0 < d.bundle <= len(layout.bundle_options):
        option = layout.bundle_options[d.bundle - 1]
        partner, discount = scenario.catalogue[option.item].name, option.discount
    creative = scenario.ads.creatives[min(max(d.creative, 0), layout.n_creatives - 1)].name
    ratio = (1.0 - flash.discount) if (d.flash and flash) else d.price_ratio
    share = min(max(d.ad_share, 0.0), 1.0)
    low, cap = scenario.constraints.spend_bounds(scenario.step_weeks)
    return {
        "launch": bool(d.launch),
        "price": round(ratio * ref, 2),
        "flash_sale": bool(d.flash and flash is not None),
        "bundle_partner": partner,
        "bundle_discount": discount,
        "ad_spend": round(min(max(share * budget_left, low), cap, budget_left), 2),
        "ad_share": share,
        "creative": creative,
    }


def row_decision(
    row: dict[str, Any], scenario: Scenario, product: int, where: str, layout: ActionLayout | None = None
) -> Decision:
    """Read the action columns of one row back into a Decision; PolicyError names what does not fit."""
    ref = scenario.products[product].reference_price
    layout = layout or ActionLayout(scenario, "multidiscrete", product=product)
    partner = row["bundle_partner"]
    partner = "" if partner is None or (isinstance(partner, float) and math.isnan(partner)) else str(partner)
    bundle = 0
    if partner:
        names = [c.name for c in scenario.catalogue]
        if partner not in names:
            raise PolicyError(f"{where}: column 'bundle_partner': found {partner!r}, expected one of {names} or empty")
        matches = [
            i + 1 for i, o in enumerate(layout.bundle_options)
            if o.item == names.index(partner) and abs(o.discount - float(row["bundle_discount"])) < 1e-6
        ]  # fmt: skip
        if not matches:
            raise PolicyError(
                f"{where}: column 'bundle_discount': found {row['bundle_discount']} for {partner!r}, "
                f"expected one of {scenario.catalogue[names.index(partner)].discounts}"
            )
        bundle = matches[0]
    creatives = [c.name for c in scenario.ads.creatives]
    if str(row["creative"]) not in creatives:
        raise PolicyError(f"{where}: column 'creative': found {row['creative']!r}, expected one of {creatives}")
    return Decision(
        launch=_truthy(row["launch"]),
        price_ratio=float(row["price"]) / ref,
        flash=_truthy(row["flash_sale"]),
        bundle=bundle,
        ad_share=float(row["ad_share"]),
        creative=creatives.index(str(row["creative"])),
    )


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    return bool(value)


# ---------------------------------------------------------------- files


def sidecar_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".meta.json")


def read_table(path: Path | str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a table file and its metadata; PolicyError (never a traceback) when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"{path}: table file not found")
    try:
        if path.suffix == ".csv":
            data = path.read_bytes()
            side = sidecar_path(path)
            if not side.is_file():
                raise PolicyError(
                    f"{path}: metadata sidecar {side.name} not found (written next to the CSV by export-table)"
                )
            metadata = json.loads(side.read_text())
            if metadata.get("csv_sha256") not in (None, hashlib.sha256(data).hexdigest()):
                raise PolicyError(
                    f"{path}: the table does not match its metadata {side.name} (edited, or an interrupted export); export it again"
                )
            frame = pd.read_csv(
                io.BytesIO(data),
                keep_default_na=False,
                na_values={
                    c: ["", "nan"] for c in STATE_COLUMNS + ACTION_COLUMNS if c not in ("bundle_partner", "creative")
                },
            )
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(_PARQUET_KEY)
            if raw is None:
                raise PolicyError(
                    f"{path}: no launchsim table metadata in the Parquet schema; was it written by export-table?"
                )
            metadata, frame = json.loads(raw), table.to_pandas()
        elif path.suffix == ".json":
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict) or "metadata" not in doc or "rows" not in doc:
                raise PolicyError(f"{path}: expected a JSON object with 'metadata' and 'rows'")
            metadata, frame = doc["metadata"], pd.DataFrame(doc["rows"])
        else:
            raise PolicyError(f"{path}: found suffix {path.suffix!r}, expected one of {', '.join(TABLE_SUFFIXES)}")
    except PolicyError:
        raise
    except Exception as err:  # any parser's failure is the same user problem: an unreadable file
        raise PolicyError(
            f"{path}: cannot read the table ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'})"
        ) from err
    if not isinstance(metadata, dict) or metadata.get("format") != TABLE_FORMAT:
        raise PolicyError(f"{path}: found no {TABLE_FORMAT!r} metadata, expected a table written by export-table")
    if metadata.get("version") != TABLE_VERSION:
        raise PolicyError(f"{path}: found table version {metadata.get('version')}, expected {TABLE_VERSION}")
    missing = [c for c in STATE_COLUMNS + ACTION_COLUMNS if c not in frame.columns]
    if missing:
        raise PolicyError(f"{path}: missing column(s) {', '.join(missing)}")
    return frame, metadata


# ---------------------------------------------------------------- the table as a policy


class TablePolicy:
    """Acts with an exported table in the native env: bins the observation, looks up the row."""

    def __init__(
        self,
        frame: pd.DataFrame,
        metadata: dict[str, Any],
        scenario: Scenario,
        product: int = 0,
        source: str = "<table>",
    ):
        self.table, self.metadata, self.scenario, self.product = frame, metadata, scenario, product
        g = metadata["grid"]
        self.grid = TableGrid(g["adoption"], g["stock"], g["budget_left"])
        self.layout = ActionLayout(scenario, "multidiscrete", product=product)
        self.n_steps = scenario.n_steps
        flash = scenario.pricing.flash_sale
        self.flash_max = flash.max_uses if flash else 0
        self._actions: dict[tuple, np.ndarray] = {}
        k = scenario.step_weeks
        for i, row in enumerate(frame.to_dict(orient="records")):
            where = f"{source}: row {i + 2 if source.endswith('.csv') else i}"
            step = int(row["week"]) // k
            if not 0 <= step < self.n_steps:
                raise PolicyError(f"{where}: column 'week': found {row['week']}, expected 0..{(self.n_steps - 1) * k}")
            key = (
                step,
                _truthy(row["launched"]),
                int(row["adoption_bin"]),
                int(row["stock_bin"]),
                int(row["budget_bin"]),
                int(row["flash_uses_left"]),
            )
            self._actions[key] = self.layout.encode(row_decision(row, scenario, product, where, self.layout))
        if not self._actions:
            raise PolicyError(f"{source}: the table has no rows")
        self._by_step: dict[int, list[tuple]] = defaultdict(list)
        for key in self._actions:
            self._by_step[key[0]].append(key)

    @classmethod
    def load(cls, path: Path | str, scenario: Scenario | None = None, product: int | str | None = None) -> TablePolicy:
        """Load a table written by ``export_table``; the scenario (default: the one named in the
        table) must be the one it was exported for, checked by content hash."""
        frame, metadata = read_table(path)
        if scenario is None:
            try:
                scenario = load_scenario(metadata["scenario"])
            except Exception as err:
                raise PolicyError(
                    f"{path}: the table was exported for scenario {metadata.get('scenario')!r}, which cannot be loaded; pass --scenario"
                ) from err
        found = scenario_hash(scenario)
        if found != metadata.get("scenario_hash"):
            raise PolicyError(
                f"{path}: exported for scenario {metadata.get('scenario')!r} (hash {metadata.get('scenario_hash')}), "
                f"but the scenario given is {scenario.name!r} (hash {found}); export the table again for this scenario"
            )
        index = metadata.get("product_index", 0) if product is None else product_index(scenario, product)
        if scenario.products[index].name != metadata.get("product"):
            raise PolicyError(
                f"{path}: exported for product {metadata.get('product')!r}, but product {scenario.products[index].name!r} was asked for"
            )
        return cls(frame, metadata, scenario, index, source=str(path))

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True):
        obs = np.asarray(observation, dtype=np.float64)
        if obs.ndim == 1:
            return self._act(obs).copy(), state
        return np.stack([self._act(row) for row in obs]), state

    def _act(self, obs: np.ndarray) -> np.ndarray:
        key = cell_of(obs, self.n_steps, self.grid, self.flash_max).key
        action = self._actions.get(key)
        if action is None:  # a state the grid left out (unreachable by the rules): the nearest cell that week
            candidates = self._by_step.get(key[0]) or list(self._actions)
            nearest = min(candidates, key=lambda c: (c[1] != key[1], sum(abs(a - b) for a, b in zip(c[2:], key[2:]))))
            action = self._actions[key] = self._actions[nearest]
        return action
