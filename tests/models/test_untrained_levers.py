"""A predictor answers only for what its logs trained: a lever it never learned is refused with the file and
field, and a market estimate its logs never carried is read as unknown."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from launchsim.agents.rollout import run_episode
from launchsim.agents.policies.heuristics import make_heuristic
from launchsim.cli import main
from launchsim.envs.batched_market import BatchedMarketVecEnv
from launchsim.envs.launch_market import LaunchMarketEnv
from launchsim.errors import PredictorError
from launchsim.models.finetune import FinetuneConfig, finetune
from launchsim.models.learned_market import trained_targets
from launchsim.scenarios import load_scenario
from launchsim.scenarios.overrides import apply_overrides


@pytest.fixture(scope="module")
def units_only(tiny_bert, tiny_logs, tmp_path_factory):
    """A fit of logs that carry units only (as a shop's sales export): no ads, bundles, first purchases or estimates."""
    logs = tiny_logs[tiny_logs["split"] == "train"].drop(columns=["impressions", "clicks", "bundled_units", "new_customers"])
    logs = logs.assign(market_estimate=0.0)
    predictor = finetune(logs, FinetuneConfig(encoder=str(tiny_bert), mode="frozen", head_epochs=2, hidden=16, latent=4, device="cpu"))
    folder = predictor.save(tmp_path_factory.mktemp("units_only") / "predictor")
    return predictor, folder


def test_an_untrained_head_never_answers(units_only):
    predictor, _ = units_only
    coffee = load_scenario("food_coffee_bundle")  # an ad budget and bundle partners
    assert trained_targets(predictor) == {"units"}
    with pytest.raises(PredictorError) as refused:
        LaunchMarketEnv(coffee, response_model=predictor)
    message = str(refused.value)
    assert f"{coffee.source}: ads.budget: found 20,000" in message and "without impressions and clicks" in message
    assert f"{coffee.source}: catalogue: found 3 bundle partner(s)" in message and "without bundled_units" in message
    with pytest.raises(PredictorError, match="ads.budget"):
        BatchedMarketVecEnv([(coffee, 0)] * 2, market="learned", predictor=predictor)


def test_an_ads_what_if_on_a_units_only_predictor_exits_2_naming_the_lever(units_only, tmp_path, capsys):
    _, folder = units_only
    code = main(["replay", "--scenario", "food_coffee_bundle", "--markets", "learned", "--predictor", str(folder), "--set", "ads.budget=*10", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "ads.budget" in err and "nothing says what ads buy" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_without_the_levers_it_never_learned_the_market_runs_and_ignores_an_estimate(units_only):
    predictor, _ = units_only
    plain = apply_overrides(load_scenario("food_coffee_bundle"), ["ads.budget=0", "products.0.market_estimate=null"])
    plain = plain.model_copy(update={"catalogue": []})
    estimated = plain.model_copy(update={"products": [plain.products[0].model_copy(update={"market_estimate": 50_000.0})]})
    profits = []
    for scenario in (plain, estimated):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            env = LaunchMarketEnv(scenario, response_model=predictor, outcomes="expected")
        profits.append(run_episode(env, make_heuristic("list_price", scenario), seed=0)["profit"].sum())
        said = [str(w.message) for w in caught if "market estimates" in str(w.message)]
        assert said == ([] if scenario is plain else [f"the predictor {predictor.identity} was trained on logs without market estimates: it reads {scenario.source}'s market_estimate as unknown"])
    assert np.isfinite(profits[0]) and profits[0] == profits[1]  # the estimate changed nothing
