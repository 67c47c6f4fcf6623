"""The log generator covers the kinds of market the scenarios use: 2-week steps, steady staples and limited drops."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from launchsim.models import product_text as pt
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.envs.log_generator import AD_TRUTH, ESTIMATE_SIGMA, HORIZON, _explore, demand_known_except_scale, generate_logs, synthetic_scenario
from launchsim.scenarios import scenario_from_dict


@pytest.fixture(scope="module")
def logs():
    return generate_logs(n_train=60, n_heldout=0, n_paraphrase=30, seed=5, progress=False)


def test_every_product_has_the_same_number_of_decision_steps(logs):
    assert logs.groupby("product_id").size().eq(HORIZON).all()


def test_two_week_steps_staples_and_drops_all_occur(logs):
    per_product = logs.groupby("product_id").first()
    assert set(per_product["step_weeks"]) == {1.0, 2.0}
    assert set(per_product["trait_demand"]) == {"launch", "staple", "drop"}
    two_week = logs[logs["step_weeks"] == 2]
    assert (two_week.groupby("product_id")["week"].diff().dropna() == 2).all()


def test_a_staple_sells_to_a_weekly_pool_that_adoption_does_not_deplete(logs):
    # with the price and calendar held, a staple's expected demand per step is the same late in the
    # launch as early on; its market estimate is of the weekly pool, not of all buyers
    staples = logs[(logs["trait_demand"] == "staple") & (logs["launched"] > 0)]
    launches = logs[(logs["trait_demand"] == "launch") & (logs["launched"] > 0)]
    assert staples["truth_market_size"].median() < launches["truth_market_size"].median() / 5
    ratio = staples["market_estimate"] / staples["truth_market_size"]
    assert 0.5 < float(np.exp(np.log(ratio).mean())) < 2.0
    plain = staples[(staples["flash"] == 0) & (staples["weeks_since_flash"] > 3)
                    & (staples["bundle_discount"] == 0) & (staples["competitor_strength"] == 0)
                    & (staples["holiday"] == 0) & (staples["price_ratio"] == 1.0) & ((staples["season"] - 1).abs() > 0.02)]
    # at list price with nothing else going on, demand per step = pool x weeks x (1 + s (season - 1)) with
    # one season sensitivity s per product, however many buyers came before (plus the ad clicks' buyers)
    organic = plain["expected_demand"] - plain["expected_impressions"] * plain["expected_ctr"] * AD_TRUTH["click_conversion"]
    sensitivity = (organic / (plain["truth_market_size"] * plain["step_weeks"]) - 1) / (plain["season"] - 1)
    spread = sensitivity.groupby(plain["product_id"]).agg(["min", "max", "size"])
    spread = spread[spread["size"] >= 2]
    assert len(spread) >= 2
    assert np.allclose(spread["min"], spread["max"], rtol=1e-6)

def test_a_staple_declares_a_weekly_estimate_and_logs_no_buyers_so_far(logs):
    # what the env passes its market for a weekly pool (docs/MARKET.md); launches log their adopters
    staple = logs["trait_demand"] == "staple"
    assert staple.any() and (logs.loc[staple, "adopters"] == 0).all()
    sold = logs[~staple & (logs["launched"] > 0)]
    assert (sold.groupby("product_id")["adopters"].max() > 0).all()
    traits = dataclasses.replace(pt.sample_traits(np.random.default_rng(3)), demand="staple")
    assert synthetic_scenario(traits, np.random.default_rng(4), "train")["products"][0]["market_estimate_basis"] == "weekly"


def test_a_staple_always_says_so_and_a_launch_only_sometimes(logs):
    phrases = {kind: [p for tr, pa in [pt.DEMAND[kind]] for p in tr + pa] for kind in pt.DEMAND}
    per_product = logs.groupby("product_id").first()
    says = {kind: per_product.loc[per_product["trait_demand"] == kind, "description"].map(
        lambda text, kind=kind: any(p in text for p in phrases[kind])) for kind in pt.DEMAND}  # fmt: skip
    assert says["staple"].all()
    assert says["launch"].any() and not says["launch"].all()
    assert says["drop"].any() and not says["drop"].all()


def test_a_drop_is_a_launch_that_diffuses_faster_with_every_other_draw_the_same():
    traits = pt.sample_traits(np.random.default_rng(3))
    launch = synthetic_scenario(dataclasses.replace(traits, demand="launch"), np.random.default_rng(4), "train")
    drop = synthetic_scenario(dataclasses.replace(traits, demand="drop"), np.random.default_rng(4), "train")
    truth_launch, truth_drop = launch["truth"]["products"]["product"], drop["truth"]["products"]["product"]
    assert truth_drop["bass_p"] == pytest.approx(truth_launch["bass_p"] * pt.DROP_INNOVATION)
    assert truth_drop["bass_q"] == pytest.approx(truth_launch["bass_q"] * pt.DROP_IMITATION)
    for key in set(truth_launch) - {"bass_p", "bass_q"}:
        assert truth_drop[key] == truth_launch[key], key
    assert drop["products"][0]["market_estimate"] == launch["products"][0]["market_estimate"]
    assert drop["ads"] == launch["ads"] and drop["calendar"] == launch["calendar"]


def test_drops_leave_the_other_products_of_the_logs_as_they_were(logs, monkeypatch):
    monkeypatch.setattr(pt, "DROP_SHARE", 0.0)
    without = generate_logs(n_train=60, n_heldout=0, n_paraphrase=30, seed=5, progress=False)
    kept = (logs["trait_demand"] != "drop").to_numpy()
    assert 0 < (~kept).sum() and set(without["trait_demand"]) == {"launch", "staple"}
    pd.testing.assert_frame_equal(logs[kept].reset_index(drop=True), without[kept].reset_index(drop=True))
    assert (without.loc[~kept, "trait_demand"] == "launch").all()


def test_paraphrased_staples_and_launches_use_unseen_wording(logs):
    train = [p for tr, _ in pt.DEMAND.values() for p in tr]
    for text in logs.loc[logs["split"] == "paraphrase", "description"].unique():
        assert not [p for p in train if p in text], text
    paraphrase = [p for _, pa in pt.DEMAND.values() for p in pa]
    assert not set(train) & set(paraphrase)


def test_the_reference_column_adds_nothing_else_to_the_logs(logs):
    with_reference = generate_logs(n_train=60, n_heldout=0, n_paraphrase=30, seed=5, progress=False, reference=True)
    reference = with_reference.pop("expected_demand_known_except_scale")
    pd.testing.assert_frame_equal(with_reference, logs)  # the same draws
    evaluated = with_reference["split"] != "train"
    assert reference[~evaluated].isna().all() and reference[evaluated].notna().all()
    launched = with_reference["launched"] > 0
    assert (reference[evaluated & ~launched] == 0).all()
    # a staple's demand is linear in its pool, so without ads its reference is the expected demand
    # times E[estimate e^(σz)] / pool = estimate / pool x e^(σ²/2)
    rng = np.random.default_rng(7)
    traits = dataclasses.replace(pt.sample_traits(rng), demand="staple")
    data = synthetic_scenario(traits, rng, "train")
    data["ads"]["budget"] = 0.0  # no ad buyers, whose number does not scale with the pool
    scenario = scenario_from_dict(data)
    env = LaunchMarketEnv(scenario)
    env.reset(seed=1)
    rows = pd.DataFrame(_explore(env, rng))
    reference = pd.Series(demand_known_except_scale(scenario, rows.to_dict("records")))
    on_sale = rows["launched"] > 0
    assert on_sale.sum() >= 5
    product = scenario.products[0]
    factor = product.market_estimate / scenario.truth.products[product.name].market_size * np.exp(ESTIMATE_SIGMA**2 / 2)
    assert np.allclose(reference[on_sale], rows.loc[on_sale, "expected_demand"] * factor, rtol=1e-6)
    assert (reference[~on_sale] == 0).all()
