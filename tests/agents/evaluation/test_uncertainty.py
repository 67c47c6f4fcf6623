"""The learned market's model uncertainty: draws of a member and a demand level, the figures over them,
and where they appear (evaluate, replay)."""

from __future__ import annotations

import numpy as np
import pytest

from launchsim.agents.evaluation.uncertainty import delta_uncertainty, level_log_sd, model_draws, profit_draws, spread_summary
from launchsim.agents.policies.heuristics import make_heuristic
from launchsim.agents.rollout import run_episode
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.models.ensemble import PredictorEnsemble
from launchsim.scenarios import load_scenario


@pytest.fixture(scope="module")
def ensemble(tiny_ensemble_dirs):
    return PredictorEnsemble.load(tiny_ensemble_dirs[2], device="cpu")


def test_draws_take_the_members_in_turn_and_levels_at_the_cards_spread(ensemble):
    draws = model_draws(ensemble, draws=4000, seed=1)
    assert [model for model, _ in draws[:4]] == [ensemble.members[0], ensemble.members[1]] * 2
    logs = np.log([scale for _, scale in draws])
    assert level_log_sd(ensemble) == 0.34 and abs(logs.std() - 0.34) < 0.015 and abs(logs.mean()) < 0.02
    ensemble.card["demand_level_log_sd"] = 0.8  # a fine-tune that measured its own error
    try:
        assert level_log_sd(ensemble) == 0.8
    finally:
        del ensemble.card["demand_level_log_sd"]
    assert model_draws(ensemble, 10, seed=5) == model_draws(ensemble, 10, seed=5)


def test_a_draw_plays_the_member_at_that_level_with_expected_outcomes(ensemble):
    s = load_scenario("food_coffee_bundle")
    policy = lambda: make_heuristic("list_price", s)  # noqa: E731
    member = ensemble.members[1]
    direct = run_episode(LaunchMarketEnv(s, response_model=member, outcomes="expected", demand_scale=1.5), policy(), seed=0)
    (value,) = profit_draws(s, 0, policy, [(member, 1.5)])
    assert value == pytest.approx(direct["profit"].sum(), rel=1e-12)
    low, high = profit_draws(s, 0, policy, [(member, 0.5), (member, 2.0)])
    assert low < value < high  # more demand, more profit for a price-taker below its stock


def test_summaries_order_their_figures_and_say_when_a_sign_is_uncertain():
    values = np.arange(100, dtype=float)
    summary = spread_summary(values, 0.34, 2)
    assert summary["cvar10"] == pytest.approx(4.5) and summary["p10"] == pytest.approx(9.9)
    assert summary["interval90"] == pytest.approx([4.95, 94.05]) and summary["cvar10"] <= summary["p10"] <= summary["mean"]
    assert delta_uncertainty(values + 10, 0.34, 2)["sign"] == "positive"
    assert delta_uncertainty(-values - 1, 0.34, 2)["sign"] == "negative"
    assert delta_uncertainty(values - 50, 0.34, 2)["sign"] == "uncertain"


def test_evaluate_and_replay_carry_the_models_spread(ensemble):
    from launchsim.agents.evaluation.evaluate import evaluate, markdown_table
    from launchsim.agents.evaluation.replay import replay

    s = load_scenario("food_coffee_bundle")
    result = evaluate(s, "list_price", episodes=2, predictor=ensemble, heuristics=False)
    model = result["learned"]["model_uncertainty"]
    assert model["draws"] == 40 and model["members"] == 2 and model["interval90"][0] < model["mean"] < model["interval90"][1]
    assert "90% interval" in markdown_table(result)
    summary = replay(s, "list_price", overrides=["ads.budget=*0"], episodes=2, predictor=ensemble, markets=["learned"]).summary
    delta = summary["model_uncertainty"]
    assert delta["market"] == "learned" and delta["sign"] in ("positive", "negative", "uncertain") and delta["draws"] == 40


def test_a_demand_scale_is_a_market_size_in_the_structural_market():
    # The closed-form board (a steady pool, no ads bought by list_price) with stock that never binds: the
    # market read at 1.7 times its size is the scenario whose truth says 1.7 times the size.
    from launchsim.scenarios.overrides import apply_overrides

    s = apply_overrides(load_scenario("home_cutting_board_closed_form"), ["products.0.stock=1000000000"])
    bigger = apply_overrides(s, ["truth.products.bamboo_board_set.market_size=*1.7"])
    scaled = run_episode(LaunchMarketEnv(s, outcomes="expected", demand_scale=1.7), make_heuristic("list_price", s), seed=0)
    sized = run_episode(LaunchMarketEnv(bigger, outcomes="expected"), make_heuristic("list_price", bigger), seed=0)
    np.testing.assert_allclose(scaled["units_sold"], sized["units_sold"], rtol=1e-12)
    with pytest.raises(ValueError, match="demand_scale"):
        LaunchMarketEnv(s, demand_scale=0.0)


def test_coverage_scores_each_plan_against_the_true_expected_profit(ensemble):
    from launchsim.agents.evaluation.uncertainty import coverage

    summary, frame = coverage(ensemble, products=2, seed=3, draws=6)
    from launchsim.scenarios import list_scenarios

    assert len(frame) == 2 * (2 + sum(len(load_scenario(path).products) for path in list_scenarios()))
    assert set(frame["plan"]) == {"list_price", "launch_now"} and (frame["group"] == "generated").sum() == 4
    # The truth of a shipped case is its plan's episode in the structural market with expected outcomes.
    row = frame[(frame["scenario"] == "food_coffee_bundle") & (frame["plan"] == "list_price")].iloc[0]
    s = load_scenario("food_coffee_bundle")
    truth = run_episode(LaunchMarketEnv(s, outcomes="expected"), make_heuristic("list_price", s), seed=0)["profit"].sum()
    assert row["true_expected_profit"] == pytest.approx(truth, rel=1e-12)
    inside = (frame["low90"] <= frame["true_expected_profit"]) & (frame["true_expected_profit"] <= frame["high90"])
    assert (frame["inside"] == inside).all() and (frame["low90"] <= frame["learned_mean"]).all()
    assert (frame.loc[~inside, "side"] == np.where(frame.loc[~inside, "true_expected_profit"] < frame.loc[~inside, "low90"], "below", "above")).all()
    for key, part in (("all", frame), ("generated", frame[frame["group"] == "generated"]), ("shipped", frame[frame["group"] == "shipped"])):
        assert summary[key]["cases"] == len(part) and summary[key]["inside90"] == pytest.approx(part["inside"].mean())
        assert summary[key]["below"] + summary[key]["above"] == (~part["inside"]).sum()
    assert sum(c["cases"] for c in summary["by_plan"].values()) == len(frame)
    assert coverage(ensemble, products=2, seed=3, draws=6, shipped=False)[1].equals(frame[frame["group"] == "generated"].reset_index(drop=True))


def test_coverage_intervals_widen_with_the_level_error(ensemble):
    from launchsim.agents.evaluation.uncertainty import coverage

    narrow = coverage(ensemble, products=3, seed=4, draws=10, shipped=False)[1]
    ensemble.card["demand_level_log_sd"] = 3.0
    try:
        summary, wide = coverage(ensemble, products=3, seed=4, draws=10, shipped=False)
    finally:
        del ensemble.card["demand_level_log_sd"]
    assert summary["level_log_sd"] == 3.0 and (wide["high90"] - wide["low90"] > narrow["high90"] - narrow["low90"]).all()
