"""A product rollover (a scenario's ``predecessor``): the old product sells its weekly rate until the
launch, then is retired (its stock cleared for salvage) or kept on sale beside the new one; the same
in the single and batched envs; the oracle meets the closed-form launch week of the shipped case."""

from __future__ import annotations

import math

import numpy as np
import pytest

from launchsim.agents.policies.oracle import OraclePlanner
from launchsim.envs import LaunchMarketEnv
from launchsim.errors import ScenarioError
from launchsim.models.rollover import LITERATURE_ELASTICITY, kept_share, rollover_terms, text_similarity
from launchsim.models.structural_market import StructuralMarket
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides
from tests.envs.parity import assert_batch_steps_as_single_envs

ROLLOVER = "home_cutting_board_rollover"
WAIT, LAUNCH = np.array([0, 1, 0, 0, 0]), np.array([1, 1, 0, 0, 0])  # price level 0.75


def board_week(ratio: float) -> float:
    """The bamboo set's weekly profit at a constant price ratio: 500 * s(x)/s(1) * (40x - 12)."""
    share = lambda x: math.exp(2.2 - 3.6 * x) / (1.0 + math.exp(2.2 - 3.6 * x))  # noqa: E731
    return 500 * share(ratio) / share(1.0) * (40.0 * ratio - 12.0)


def rollover_value(launch: int, ratio: float = 0.75) -> float:
    """V(L) of the scenario's comment: (12 - L) * pi + 25 * min(1200 L, 6000) + 4 * max(6000 - 1200 L, 0)."""
    return (12 - launch) * board_week(ratio) + 25.0 * min(1200 * launch, 6000) + 4.0 * max(6000 - 1200 * launch, 0)


def test_the_oracle_launches_when_the_old_stock_sells_out_at_the_closed_form_value():
    s = load_scenario(ROLLOVER)
    assert rollover_value(5) == pytest.approx(270_238.25, abs=0.01)  # the figures in the file's comment
    assert rollover_value(4) == pytest.approx(262_215.14, abs=0.01) and rollover_value(6) == pytest.approx(
        253_061.35, abs=0.01
    )
    assert max(range(13), key=rollover_value) == 5
    plan = OraclePlanner(s).plan()
    assert plan.launch_step == 5 and plan.expected_profit == pytest.approx(rollover_value(5), rel=1e-9)
    box = OraclePlanner(s, action_type="box", warm_starts=False, starts=1, kicks=0).plan()
    x_star = 0.747670  # the closed-form price ratio (home_cutting_board_closed_form)
    assert box.launch_step == 5 and box.expected_profit == pytest.approx(rollover_value(5, x_star), rel=1e-6)


def test_a_retired_predecessor_sells_until_the_launch_and_its_stock_is_cleared_then():
    env = LaunchMarketEnv(load_scenario(ROLLOVER), outcomes="expected")
    env.reset(seed=0)
    for _ in range(2):
        _, reward, _, _, info = env.step(WAIT)
        assert info["predecessor_units"] == 1200 and info["predecessor_revenue"] == 30_000 and reward == 30_000
    _, reward, _, _, info = env.step(LAUNCH)
    assert (
        info["predecessor_units"] == 0 and info["predecessor_salvage"] == 4.0 * 3600 and info["predecessor_stock"] == 0
    )
    assert reward == pytest.approx(board_week(0.75) + 4.0 * 3600, rel=1e-12)
    _, reward, _, _, info = env.step(LAUNCH)
    assert (
        info["predecessor_units"] == 0
        and info["predecessor_salvage"] == 0
        and reward == pytest.approx(board_week(0.75), rel=1e-12)
    )


def test_a_kept_predecessor_sells_on_at_its_markdown_and_is_cleared_at_the_end():
    s = apply_overrides(load_scenario(ROLLOVER), [
        "predecessor.after_launch=keep", "predecessor.markdown=0.2", "predecessor.stock=20000",
        "truth.predecessor={cannibalisation: 0.6, markdown_elasticity: 2.0}",
    ])  # fmt: skip
    kept = (1 - 0.6) * 0.8**-2.0
    assert kept_share(StructuralMarket(s), s, 0) == pytest.approx(kept)
    env = LaunchMarketEnv(s, outcomes="expected")
    env.reset(seed=0)
    env.step(WAIT)
    stock = 20000 - 1200
    for t in range(1, s.n_steps):
        _, _, done, _, info = env.step(LAUNCH)
        sold = min(1200 * kept, stock)
        stock -= sold
        assert info["predecessor_units"] == pytest.approx(sold) and info["predecessor_revenue"] == pytest.approx(
            20.0 * sold
        )
        assert info["predecessor_salvage"] == pytest.approx(4.0 * stock if done else 0.0)


def test_without_a_predecessor_nothing_changes():
    env = LaunchMarketEnv(load_scenario("home_cutting_board_closed_form"), outcomes="expected")
    env.reset(seed=0)
    info = env.step(LAUNCH)[4]
    assert (
        info["predecessor_units"]
        == info["predecessor_revenue"]
        == info["predecessor_salvage"]
        == info["predecessor_stock"]
        == 0.0
    )


@pytest.mark.parametrize("mode", ["retire", "keep"])
def test_the_batched_env_steps_a_rollover_as_the_single_env(mode):
    s = apply_overrides(
        load_scenario(ROLLOVER), [f"predecessor.after_launch={mode}", "reward.holding_cost_per_unit_week=0.05"]
    )
    assert_batch_steps_as_single_envs(s, seed=5, actions_seed=1, launch_share=0.3)


def test_the_learned_market_reads_cannibalisation_from_text_similarity():
    class Encoder:
        def __init__(self, vectors):
            self.vectors = vectors

        def encode(self, texts, role):
            return [self.vectors[t] for t in texts]

    s = apply_overrides(load_scenario(ROLLOVER), ["predecessor.after_launch=keep"])
    old, new = s.predecessor.text, s.products[0].text
    model = Encoder({old: np.array([1.0, 0.0]), new: np.array([0.6, 0.8])})
    assert text_similarity(model, old, new) == pytest.approx(0.6)
    assert rollover_terms(model, s, 0) == pytest.approx((0.6, LITERATURE_ELASTICITY))
    opposite = Encoder({old: np.array([1.0, 0.0]), new: np.array([-1.0, 0.0])})
    assert text_similarity(opposite, old, new) == 0.0  # clipped: a text unlike the old one takes none of its sales
    members = Encoder(
        {old: (np.array([1.0, 0.0]), np.array([0.0, 1.0])), new: (np.array([1.0, 0.0]), np.array([1.0, 0.0]))}
    )
    assert text_similarity(members, old, new) == pytest.approx(0.5)  # an ensemble: its members' mean


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (["predecessor.markdown=0.3"], "predecessor.markdown", "a markdown needs 'keep'"),
        (["predecessor.name=bamboo_board_set"], "predecessor.name", "the name of a product to launch"),
        (["predecessor.after_launch=sell"], "predecessor.after_launch", ""),
        (["predecessor.weekly_sales=0"], "predecessor.weekly_sales", ""),
        (["predecessor=null", "truth.predecessor={cannibalisation: 0.5}"], "truth.predecessor", "no predecessor block"),
    ],
)
def test_bad_predecessors_are_refused_naming_the_field(overrides, field, message):
    with pytest.raises(ScenarioError) as err:
        apply_overrides(load_scenario(ROLLOVER), overrides)
    assert any(field in line and message in line for line in err.value.problems), err.value.problems
