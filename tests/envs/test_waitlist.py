"""A teaser's waitlist (``ads.waitlist``): ad clicks before the launch sign up and keep a share of
themselves a week; in the launch step a share of them buys, fewer above the reference price. The same
in the single and batched envs; the oracle finds the teaser in the shipped swimwear line."""

from __future__ import annotations

import numpy as np
import pytest

from launchsim.agents.policies.oracle import ExpectedMarket, OraclePlanner
from launchsim.envs import LaunchMarketEnv
from launchsim.envs.actions import Decision
from launchsim.errors import ScenarioError
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides
from tests.envs.parity import assert_batch_steps_as_single_envs

SWIM = "apparel_swimwear_teaser"


def run(scenario, actions):
    env = LaunchMarketEnv(scenario, outcomes="expected")
    env.reset(seed=0)
    return [env.step(np.array(a))[4] for a in actions]


@pytest.mark.parametrize("level", [2, 4])  # the reference price, and 1.2 times it
def test_sign_ups_gather_before_the_launch_and_a_share_buys_in_the_launch_week(level):
    s = load_scenario(SWIM)
    tease, launch = [0, level, 0, 2, 0], [1, level, 0, 0, 0]
    infos = run(s, [tease, tease, launch, launch])
    keep, ratio = 0.85, s.pricing.levels[level]
    signed = infos[0]["clicks"] * keep + infos[1]["clicks"]
    assert infos[0]["waitlist_buyers"] == infos[1]["waitlist_buyers"] == 0.0 and infos[0]["units_sold"] == 0
    assert infos[2]["waitlist_buyers"] == pytest.approx(0.25 * signed * max(ratio, 1.0) ** -2.62, rel=1e-12)
    assert infos[3]["waitlist_buyers"] == 0.0  # the list is used up at the launch
    without = run(apply_overrides(s, ["ads.waitlist=null"]), [tease, tease, launch, launch])
    assert infos[2]["units_sold"] == pytest.approx(without[2]["units_sold"] + infos[2]["waitlist_buyers"], rel=1e-9)


def test_clicks_after_the_launch_do_not_sign_up():
    infos = run(load_scenario(SWIM), [[1, 2, 0, 2, 0]] * 3)
    assert all(i["waitlist_buyers"] == 0.0 for i in infos)


def test_the_oracle_teases_then_launches_and_beats_launching_at_once():
    s = load_scenario(SWIM)
    market = ExpectedMarket(s)

    def value(launch, share):
        return market.profit(
            [Decision(t >= launch, 1.2, False, 0, share if t < launch else 0.0, 0) for t in range(s.n_steps)]
        )

    assert value(0, 0.0) == pytest.approx(1_386_178, abs=1)  # the figures in the file's comment
    assert value(2, 0.0) == pytest.approx(1_320_309, abs=1) and value(2, 0.1) == pytest.approx(1_517_150, abs=1)
    plan = OraclePlanner(s).plan()
    assert plan.launch_step > 0 and any(d.ad_share > 0 for d in plan.decisions[: plan.launch_step])
    assert plan.expected_profit >= value(2, 0.1)


def test_the_batched_env_steps_a_waitlist_as_the_single_env():
    assert_batch_steps_as_single_envs(load_scenario(SWIM), seed=11, actions_seed=3, launch_share=0.25)


@pytest.mark.parametrize(
    ("value", "field"),
    [("{conversion: 1.5}", "ads.waitlist.conversion"), ("{retention: 0.5}", "ads.waitlist.conversion")],
)
def test_bad_waitlists_are_refused_naming_the_field(value, field):
    with pytest.raises(ScenarioError) as err:
        apply_overrides(load_scenario(SWIM), [f"ads.waitlist={value}"])
    assert any(field in line for line in err.value.problems), err.value.problems
