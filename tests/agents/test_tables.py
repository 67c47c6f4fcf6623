"""Lookup tables: grid observations match the env, files round-trip, TablePolicy acts like its source."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from launchsim.agents.policies.heuristics import make_heuristic
from launchsim.agents.policies.table import (
    ACTION_COLUMNS,
    STATE_COLUMNS,
    Cell,
    GridObserver,
    TableGrid,
    TablePolicy,
    cell_of,
    grid_cells,
    read_table,
    sidecar_path,
)
from launchsim.agents.tables import export_table
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.envs.spaces import OBSERVATION_NAMES
from launchsim.errors import PolicyError
from launchsim.scenarios import load_scenario, scenario_hash

_OBS = {name: i for i, name in enumerate(OBSERVATION_NAMES)}
_OFF_GRID = {
    "adoption",
    "stock",
    "budget_left",
    "weeks_since_launch",
    "adstock",
    "last_sales",
    "last_clicks",
    "last_price",
    "since_flash",
}


def _visited(s, policy, seeds=(0, 1)):
    env = LaunchMarketEnv(s)
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            yield obs
            obs, _, done, _, _ = env.step(policy.predict(obs)[0])


def test_grid_observation_calendar_fields_match_the_env(scenario_path):
    s = load_scenario(scenario_path)
    grid = TableGrid()
    observer = GridObserver(s, 0, grid)
    for obs in _visited(s, make_heuristic("random", s, seed=3)):
        cell = cell_of(obs, s.n_steps, grid, observer.flash_max)
        built = observer.observation(cell)
        answers = s.truth is not None and s.truth.rival is not None  # a rival's price follows our moves: off the grid
        for name, i in _OBS.items():
            if name not in _OFF_GRID | ({"competitor_price"} if answers else set()):
                assert built[i] == pytest.approx(obs[i], abs=1e-6), name
        if cell.launched:  # on sale: the grid fields sit at the centres of the bins the state falls in
            for axis in ("adoption", "stock"):
                assert built[_OBS[axis]] == pytest.approx(grid.centre(axis, grid.bin_of(axis, obs[_OBS[axis]])))
        else:  # before launch nothing has sold: the env's own values
            assert (
                built[_OBS["adoption"]] == obs[_OBS["adoption"]] == 0.0
                and built[_OBS["stock"]] == obs[_OBS["stock"]] == 1.0
            )
        if s.ads.budget > 0:
            centre = grid.centre("budget_left", grid.bin_of("budget_left", obs[_OBS["budget_left"]]))
            assert built[_OBS["budget_left"]] == pytest.approx(centre)


def test_grid_covers_the_reachable_states():
    s = load_scenario("electronics_smartwatch_deadline")  # deadline at week 6
    cells = grid_cells(s, TableGrid())
    unlaunched_steps = {c.step for c in cells if not c.launched}
    assert unlaunched_steps == set(range(s.launch.deadline_week + 1))
    assert {c.step for c in cells if c.launched} == set(range(s.n_steps))
    keys = {c.key for c in cells}
    for obs in _visited(s, make_heuristic("random", s, seed=1), seeds=range(4)):
        assert cell_of(obs, s.n_steps, TableGrid(), 0).key in keys


@pytest.fixture
def coffee_table(tmp_path):
    s = load_scenario("food_coffee_bundle")
    policy = make_heuristic("bundle_first", s)
    path = export_table(
        policy, s, out=tmp_path / "table.csv", policy_spec="bundle_first", context_episodes=2, fidelity_episodes=3
    )
    return s, policy, path


def test_table_columns_metadata_and_business_units(coffee_table):
    s, _, path = coffee_table
    frame, meta = read_table(path)
    assert list(frame.columns) == STATE_COLUMNS + ACTION_COLUMNS
    assert meta["scenario_hash"] == scenario_hash(s) and meta["policy"]["spec"] == "bundle_first"
    assert meta["grid"]["budget_left"] == list(TableGrid().budget_left) and meta["created"].endswith("+00:00")
    assert meta["rows"] == len(frame) and meta["fidelity"]["episodes"] == 3
    on_sale = frame[frame["launched"]]
    assert set(on_sale["bundle_partner"]) == {s.catalogue[0].name}  # bundle_first: the first option, by name
    assert (on_sale["price"] == s.products[0].reference_price).all()  # list price, in currency
    expected_spend = on_sale["ad_share"] * (on_sale["budget_left_from"] + on_sale["budget_left_to"]) / 2
    assert np.allclose(on_sale["ad_spend"], expected_spend, atol=0.01)  # share x budget left at the bin centre
    assert frame["creative"].isin([c.name for c in s.ads.creatives]).all()


def test_csv_parquet_and_json_round_trip_to_identical_actions(coffee_table, tmp_path):
    s, _, csv_path = coffee_table
    frame, meta = read_table(csv_path)
    from launchsim.agents.tables import write_table

    policies = [TablePolicy.load(csv_path, s)]
    for suffix in (".parquet", ".json"):
        policies.append(TablePolicy.load(write_table(frame, meta, tmp_path / f"table{suffix}"), s))
    for other in policies[1:]:
        pd.testing.assert_frame_equal(other.table[frame.columns], frame, check_dtype=False)
    observer = GridObserver(s, 0, TableGrid())
    states = [observer.observation(c) for c in grid_cells(s, TableGrid())]
    states += list(_visited(s, make_heuristic("random", s, seed=5)))
    reference = policies[0].predict(np.stack(states))[0]
    for other in policies[1:]:
        assert np.array_equal(other.predict(np.stack(states))[0], reference)


@pytest.mark.parametrize(
    ("scenario", "heuristic"),
    [
        ("beauty_serum_flash_sale", "flash_in_window"),
        ("electronics_smartwatch_deadline", "holiday_launch"),
        ("food_coffee_bundle", "bundle_first"),
    ],
)
def test_table_of_a_deterministic_heuristic_matches_it(tmp_path, scenario, heuristic):
    s = load_scenario(scenario)
    path = export_table(
        make_heuristic(heuristic, s), s, out=tmp_path / "t.json", context_episodes=1, fidelity_episodes=2
    )
    fidelity = json.loads(path.read_text())["metadata"]["fidelity"]
    assert fidelity["agreement"] == fidelity["raw_agreement"] == 1.0 and fidelity["states"] == 2 * s.n_steps
    assert fidelity["table_profit_mean"] == fidelity["source_profit_mean"]  # same actions, same seeds


def test_table_of_a_box_action_policy(tmp_path):
    s = load_scenario("food_coffee_bundle")
    box = make_heuristic("bundle_first", s, action_type="box")
    table = TablePolicy.load(
        export_table(box, s, out=tmp_path / "t.parquet", fidelity_episodes=1, context_episodes=1), s
    )
    md = make_heuristic("bundle_first", s)
    for obs in _visited(s, md, seeds=(0,)):
        assert np.array_equal(table.predict(obs)[0], md.predict(obs)[0])


def test_mismatched_scenario_or_product_is_refused(coffee_table):
    _, _, path = coffee_table
    other = load_scenario("apparel_sneaker_drop")
    with pytest.raises(
        PolicyError,
        match=r"exported for scenario 'food_coffee_bundle' \(hash [0-9a-f]+\), but the scenario given is 'apparel_sneaker_drop'",
    ):
        TablePolicy.load(path, other)
    from launchsim.scenarios.overrides import apply_overrides

    with pytest.raises(PolicyError, match="export the table again"):
        TablePolicy.load(path, apply_overrides(load_scenario("food_coffee_bundle"), ["ads.budget=*2"]))
    assert TablePolicy.load(path).scenario.name == "food_coffee_bundle"  # default: the scenario named in the table


def test_unreadable_tables_raise_policy_errors(coffee_table, tmp_path):
    s, _, path = coffee_table
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(PolicyError, match=r"bad.parquet: cannot read the table"):
        TablePolicy.load(bad, s)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(PolicyError, match=r"bad.json: cannot read the table"):
        TablePolicy.load(tmp_path / "bad.json", s)
    with pytest.raises(PolicyError, match="table file not found"):
        TablePolicy.load(tmp_path / "missing.csv", s)
    path.write_text(path.read_text().replace("ceramic_dripper", "teapot", 1))
    with pytest.raises(PolicyError, match="does not match its metadata"):
        TablePolicy.load(path, s)
    sidecar_path(path).unlink()
    with pytest.raises(PolicyError, match="metadata sidecar table.meta.json not found"):
        TablePolicy.load(path, s)


def test_rows_that_do_not_fit_the_scenario_name_the_column(coffee_table, tmp_path):
    s, _, path = coffee_table
    frame, meta = read_table(path)
    frame.loc[3, "bundle_partner"] = "teapot"
    from launchsim.agents.tables import write_table

    with pytest.raises(PolicyError, match=r"row 3: column 'bundle_partner': found 'teapot'"):
        TablePolicy.load(write_table(frame, meta, tmp_path / "edited.json"), s)


def test_writes_are_atomic(coffee_table, monkeypatch):
    _, _, path = coffee_table
    before = path.read_bytes()
    frame, meta = read_table(path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    from launchsim.agents.tables import write_table

    from launchsim.errors import OutputError

    with pytest.raises(OutputError, match="cannot write: disk full"):  # exit 2 naming the file, not a traceback
        write_table(frame.iloc[:5], meta, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["table.csv", "table.meta.json"]  # no temp files left


def test_grid_options():
    grid = TableGrid.parse(["stock=0,0.1,0.5,1"])
    assert grid.stock == (0.0, 0.1, 0.5, 1.0) and grid.adoption == TableGrid().adoption
    assert grid.bin_of("stock", 0.05) == 0 and grid.bin_of("stock", 0.7) == 2 and grid.bin_of("stock", 3.0) == 2
    with pytest.raises(PolicyError, match="expected adoption, stock or budget_left"):
        TableGrid.parse(["week=0,1"])
    with pytest.raises(PolicyError, match="increasing"):
        TableGrid.parse(["stock=0,0.5,0.5"])


def test_unlisted_state_falls_back_to_the_nearest_cell_that_week(coffee_table):
    s, _, path = coffee_table
    table = TablePolicy.load(path, s)
    cell = Cell(step=3, launched=True, adoption=4, stock=4, budget=4, flash_left=0)
    obs = GridObserver(s, 0, TableGrid()).observation(cell)
    obs[_OBS["flash_uses_left"]] = 1.0  # no flash sale in this scenario: never on the grid
    assert table.predict(obs)[0].shape == (5,)


def test_agreement_counts_only_the_levers_in_effect():
    from launchsim.agents.tables import effective_levers

    obs = np.zeros(len(OBSERVATION_NAMES), dtype=np.float32)
    obs[_OBS["launch_allowed"]] = 1.0
    wait, wait_other_price = np.array([0, 1, 0, 2, 0]), np.array([0, 3, 1, 2, 0])
    live = effective_levers(obs, wait, wait_other_price)
    assert np.array_equal(wait[live], wait_other_price[live])  # before launch the price and bundle are ignored
    go, go_other_price = np.array([1, 1, 0, 2, 0]), np.array([1, 3, 0, 2, 0])
    live = effective_levers(obs, go, go_other_price)
    assert not np.array_equal(go[live], go_other_price[live])  # launching now: the price takes effect
    obs[_OBS["launched"]] = 1.0
    live = effective_levers(obs, go, np.array([0, 1, 0, 2, 0]))
    assert live.tolist() == [False, True, True, True, True]  # once on sale the launch lever is ignored


class _StockRule:
    """A state-reading policy: list price while more than 40% of the stock is left, else the top price
    level; spends more while more than 60% of the budget is left. Its thresholds sit on bin edges."""

    def __init__(self, s):
        from launchsim.envs.actions import ActionLayout

        self.layout = ActionLayout(s, "multidiscrete")
        self.top = len(self.layout.price_levels) - 1
        self.list = self.layout.price_levels.index(1.0)

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        obs = np.asarray(obs)
        if obs.ndim == 2:
            return np.stack([self.predict(row)[0] for row in obs]), state
        price = self.list if obs[_OBS["stock"]] > 0.4 else self.top
        ad = 2 if obs[_OBS["budget_left"]] > 0.6 else 1
        return np.array([1, price, 0, ad, 0]), state


def test_table_of_a_state_reading_policy_matches_it_when_its_thresholds_are_bin_edges(tmp_path):
    s = load_scenario("apparel_sneaker_drop")  # stock binds: the stock rule switches within episodes
    policy = _StockRule(s)
    table = TablePolicy.load(
        export_table(policy, s, out=tmp_path / "t.csv", context_episodes=1, fidelity_episodes=3), s
    )
    fidelity = table.metadata["fidelity"]
    assert fidelity["agreement"] == 1.0 and fidelity["table_profit_mean"] == fidelity["source_profit_mean"]
    prices = {round(float(p), 2) for p in table.table.loc[table.table["launched"], "price"]}
    assert len(prices) == 2  # both sides of the stock threshold are in the table
    from launchsim.agents.rollout import run_episode

    played = run_episode(LaunchMarketEnv(s), table, seed=1)
    assert played["price"].nunique() == 2  # the rule switches within an episode
    sold_out_before = played["stock_left"].shift(fill_value=s.products[0].stock).eq(0)
    assert (played["ad_spend"].gt(0) | sold_out_before).all()  # it spends every week with stock to sell (v2)


def test_an_edited_csv_plays_once_its_hash_is_removed(coffee_table):
    s, _, path = coffee_table
    frame, _ = read_table(path)
    frame["price"] = 20.0  # a hand-set price in every row (level 1.25 of 16.00)
    frame.to_csv(path, index=False)
    with pytest.raises(PolicyError, match="does not match its metadata"):
        TablePolicy.load(path, s)
    side = json.loads(sidecar_path(path).read_text())
    del side["csv_sha256"]
    sidecar_path(path).write_text(json.dumps(side))
    from launchsim.agents.rollout import run_episode

    weekly = run_episode(LaunchMarketEnv(s), TablePolicy.load(path, s), seed=0)
    assert (weekly.loc[weekly["launched"], "price"] == 20.0).all()
