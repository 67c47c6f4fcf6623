"""The backtest: the closed loop feeds a product's own predicted first purchases back as buyers so far,
the open loop its observed ones; the baselines read only closed-loop inputs; the report's keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from launchsim.models.backtest import BASELINES, WEEK_SETS, backtest, closed_loop_inputs, closed_loop_level_log_sd, expected_log1p, metrics
from launchsim.models.closed_loop import rollout
from launchsim.models.user_logs import canonical_logs


def _logs(rows: list[tuple[str, int, float]], **extra) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["product_id", "week", "units"])
    frame["description"] = "a mug " + frame["product_id"]
    frame["price"] = 10.0
    for k, v in extra.items():
        frame[k] = v
    return canonical_logs(frame, zero_fill=False)


def test_rollout_feeds_back_the_predicted_first_purchases_of_earlier_weeks():
    logs = _logs([("a", 0, 5), ("a", 1, 9), ("a", 2, 1), ("b", 3, 2), ("b", 4, 2)])
    seen = []

    def predict(frame):
        seen.append(frame[["product_id", "adopters"]].to_numpy().tolist())
        return {"demand": 2.0 + frame["adopters"].to_numpy(), "first_share": np.full(len(frame), 0.5)}

    units, adopters = rollout(logs, predict)
    np.testing.assert_allclose(adopters, [0.0, 1.0, 2.5, 0.0, 1.0])
    # a: 2, then 2 + 0.5*2 = 3, then 2 + 0.5*(2+3) = 4.5; b: 2, then 3 (each from its own first week)
    np.testing.assert_allclose(units, [2.0, 3.0, 4.5, 2.0, 3.0])
    assert seen[0] == [["a", 0.0], ["b", 0.0]]  # week k of every product at once
    assert logs["adopters"].tolist() == [0.0, 5.0, 14.0, 0.0, 2.0]  # the logs themselves are not touched


def test_rollout_passes_a_weekly_pool_no_buyers():
    logs = _logs([("a", 0, 5), ("a", 1, 9)], market_estimate=100.0, market_estimate_basis="weekly")
    units = rollout(logs, lambda f: {"demand": 2.0 + f["adopters"].to_numpy(), "first_share": np.ones(len(f))}).units
    np.testing.assert_allclose(units, [2.0, 2.0])


def test_closed_loop_inputs_hold_no_observed_sales():
    logs = _logs([("a", 0, 5), ("a", 1, 9), ("b", 3, 2)])
    changed = logs.assign(units=[50.0, 90.0, 20.0], adopters=[0.0, 50.0, 0.0])
    np.testing.assert_array_equal(closed_loop_inputs(logs), closed_loop_inputs(changed))
    assert closed_loop_inputs(logs)[:, -4].tolist() == [0.0, 1.0, 0.0]  # age: weeks since the product's first row


def test_metrics_on_perfect_and_on_constant_predictions():
    logs = _logs([("a", 0, 0), ("a", 1, 4), ("a", 2, 10), ("b", 3, 3)])
    y = logs["units"].to_numpy()
    perfect = metrics(logs, y.astype(float), {"all_weeks": 4.25, "sale_weeks": 17 / 3})
    assert perfect["all_weeks"]["r2_log1p_of_mean"] == pytest.approx(1.0)
    assert perfect["all_weeks"]["r2_log1p"] < 1.0  # a Poisson week's expected log1p lies below log1p of its mean
    assert perfect["all_weeks"]["deviance_explained"] == pytest.approx(1.0)
    assert perfect["sale_weeks"]["rows"] == 3 and perfect["all_weeks"]["rows"] == 4
    flat = metrics(logs, np.full(4, 4.25), {"all_weeks": 4.25, "sale_weeks": 17 / 3})
    assert flat["all_weeks"]["deviance_explained"] == pytest.approx(0.0)
    assert flat["all_weeks"]["mean_predicted_over_observed"] == pytest.approx(1.0)


@pytest.mark.parametrize("k", [0.0, 0.3, 3.0])
def test_expected_log1p_is_the_negative_binomials_own(k):
    from scipy.stats import nbinom, poisson

    mu = np.array([0.02, 0.7, 5.0, 60.0])
    y = np.arange(20000)
    pmf = np.array([poisson.pmf(y, m) if k == 0 else nbinom.pmf(y, 1 / k, 1 / (1 + k * m)) for m in mu])
    np.testing.assert_allclose(expected_log1p(mu, k), pmf @ np.log1p(y), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(expected_log1p(mu, k, positive=True), (pmf @ np.log1p(y)) / (1 - pmf[:, 0]), rtol=1e-4)
    assert expected_log1p(np.zeros(1), k)[0] == 0.0
    many = np.repeat(mu, 5000)  # more rows than one chunk: the same values
    np.testing.assert_array_equal(expected_log1p(many, k), np.repeat(expected_log1p(mu, k), 5000))


def test_expected_log1p_averages_over_a_lognormal_level():
    from numpy.polynomial.hermite_e import hermegauss

    z, w = hermegauss(60)
    mu, s = np.array([0.3, 4.0, 80.0]), 1.2
    level = np.exp(s * z - s * s / 2)  # mean one
    nested = sum(wi * expected_log1p(mu * li, 0.6) for li, wi in zip(level, w / w.sum()))
    np.testing.assert_allclose(expected_log1p(mu, 0.6, level_sd=s), nested, rtol=1e-5)
    assert (expected_log1p(mu, 0.6, level_sd=s) < expected_log1p(mu, 0.6)).all()  # a wider spread, a lower log


def test_r2_log1p_scores_the_expected_log_of_the_models_distribution():
    logs = _logs([("a", 0, 0), ("a", 1, 4), ("a", 2, 10), ("b", 3, 3)])
    mu = np.array([1.0, 5.0, 8.0, 2.0])
    m = metrics(logs, mu, {"all_weeks": 4.25, "sale_weeks": 17 / 3}, overdispersion=0.8, level_sd=0.5)
    y = np.log1p(logs["units"].to_numpy())
    guess = expected_log1p(mu, 0.8, 0.5)
    assert m["all_weeks"]["r2_log1p"] == pytest.approx(1 - ((y - guess) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    assert m["all_weeks"]["r2_log1p_of_mean"] == pytest.approx(1 - ((y - np.log1p(mu)) ** 2).sum() / ((y - y.mean()) ** 2).sum())
    sale = expected_log1p(mu[1:], 0.8, 0.5, positive=True)
    assert m["sale_weeks"]["r2_log1p"] == pytest.approx(1 - ((y[1:] - sale) ** 2).sum() / ((y[1:] - y[1:].mean()) ** 2).sum())


def test_backtest_reports_both_protocols_and_the_baselines(tiny_predictor, tiny_logs):
    logs = canonical_logs(tiny_logs)  # as the logs reader gives them
    train = logs[logs["split"] == "train"].reset_index(drop=True)
    scored = logs[logs["split"] == "heldout"].reset_index(drop=True)
    report = backtest(tiny_predictor, scored, train, encoder=tiny_predictor.encoder)
    assert set(report["protocols"]) == {"closed_loop", "open_loop", "known_level"}
    assert set(report["protocols"]["closed_loop"]) == {"predictor", *BASELINES}
    assert set(report["protocols"]["open_loop"]) == set(report["protocols"]["known_level"]) == {"predictor"}
    known = report["protocols"]["known_level"]["predictor"]["all_weeks"]
    assert known["mean_predicted_over_observed"] == pytest.approx(1.0)  # every product at its observed total
    for models in report["protocols"].values():
        for m in models.values():
            assert set(m) == set(WEEK_SETS)
            assert {"r2_log1p", "r2_log1p_of_mean", "deviance_explained", "mean_predicted_over_observed", "product_level_log_sd", "calibration"} <= set(m["all_weeks"])
            assert np.isfinite(m["all_weeks"]["r2_log1p"])
    preds = report["_predictions"]
    np.testing.assert_allclose(preds["open_loop"], tiny_predictor.predict_frame(scored)["demand"])
    first = (scored.groupby("product_id").cumcount() == 0).to_numpy()  # no buyers yet in either protocol
    np.testing.assert_allclose(preds["closed_loop"][first], preds["open_loop"][first], rtol=1e-6)
    assert not np.allclose(preds["closed_loop"], preds["open_loop"])
    dist = report["distribution"]
    assert dist["predictor"] == {"overdispersion": tiny_predictor.demand_overdispersion, "level_log_sd": closed_loop_level_log_sd(tiny_predictor, train)}
    assert set(dist) == {"predictor", *BASELINES}
    assert all(0 <= d["overdispersion"] <= 5 and d["level_log_sd"] > 0 for d in dist.values())
    on_sale = train.loc[train["launched"] > 0, "units"]
    assert report["training_mean_units"] == pytest.approx({"all_weeks": on_sale.mean(), "sale_weeks": on_sale[on_sale > 0].mean()})


def test_a_predictor_without_first_purchases_counts_every_unit_as_one(tiny_bert, tiny_logs):
    from launchsim.envs import LaunchMarketEnv
    from launchsim.models.finetune import FinetuneConfig, finetune
    from launchsim.scenarios import load_scenario

    logs = tiny_logs[tiny_logs["split"] == "train"].drop(columns=["new_customers"])
    cfg = FinetuneConfig(encoder=str(tiny_bert), mode="frozen", head_epochs=2, hidden=16, latent=4, device="cpu")
    predictor = finetune(logs, cfg)
    assert "new_customers" not in predictor.card["targets_trained"] and not predictor.learned_first_share
    np.testing.assert_array_equal(predictor.predict_frame(logs.head(20))["first_share"], 1.0)
    env = LaunchMarketEnv(load_scenario("food_coffee_bundle"), response_model=predictor, outcomes="expected")
    env.reset(seed=0)
    info = env.step(np.array([1, 2, 0, 0, 0]))[4]
    assert env._state.adopters == pytest.approx(info["units_sold"])


def test_a_derived_season_comes_from_the_training_logs_not_the_scored_ones(tiny_predictor):
    scored = _logs([("a", 0, 5), ("a", 1, 90), ("b", 1, 2)])
    train = _logs([("c", 0, 1), ("c", 1, 1), ("d", 0, 1)])
    assert scored.attrs["season_derived"]
    report = backtest(tiny_predictor, scored, train, encoder=tiny_predictor.encoder)
    assert report["season"] == "training logs"
