"""Ensembles of predictor fits: the mixture's response, the folder format, and the env on one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from launchsim.envs import LaunchMarketEnv
from launchsim.envs.spaces import market_pairs, product_traits
from launchsim.envs.vector import make_market_vec_env
from launchsim.errors import PredictorError
from launchsim.models.ensemble import PredictorEnsemble, mean_response
from launchsim.models.predictor import LaunchPredictor
from launchsim.models.learned_market import load_predictor, load_shared
from launchsim.models.response import MarketContext, MarketResponse, respond_once
from launchsim.scenarios import load_scenario
from tests.conftest import SCENARIO_PATHS


def _response(demand, share, impressions, ctr, take) -> MarketResponse:
    return MarketResponse(
        demand=demand, first_purchase_share=share, impressions=impressions, ctr=ctr, bundle_uplift=1.2, bundle_take=take,
        cannibalisation=0.2,
    )  # fmt: skip


def test_mean_response_keeps_expected_units_and_clicks_the_members_mean():
    a = _response(10.0, 0.5, 100.0, 0.02, 0.4)
    b = _response(30.0, 0.1, 300.0, 0.06, 0.0)
    mixed = mean_response([a, b])
    assert mixed.demand == 20.0 and mixed.impressions == 200.0
    assert mixed.demand * mixed.first_purchase_share == pytest.approx((10 * 0.5 + 30 * 0.1) / 2)  # first purchases
    assert mixed.clicks == pytest.approx((100 * 0.02 + 300 * 0.06) / 2)
    assert mixed.demand * mixed.bundle_take == pytest.approx((10 * 0.4 + 0) / 2)  # bundled units
    # No demand or no impressions anywhere: the shares fall back to the plain mean instead of 0/0.
    idle = mean_response([_response(0.0, 0.5, 0.0, 0.02, 0.4), _response(0.0, 0.1, 0.0, 0.06, 0.0)])
    assert idle.first_purchase_share == pytest.approx(0.3) and idle.ctr == pytest.approx(0.04) and idle.bundle_take == pytest.approx(0.2)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_mean_response_on_a_batch_equals_it_market_by_market(kind):
    rng = np.random.default_rng(0)
    fields = [rng.uniform(0, 5, (4, 3)) for _ in range(2)]  # two members, 4 fields x 3 markets
    for f in fields:
        f[0, 1] = 0.0  # market 1 has no demand in either member
    as_batch = (lambda x: x) if kind == "numpy" else torch.from_numpy
    batch = mean_response([_response(*(as_batch(f[i]) for i in range(3)), as_batch(f[3] / 10), as_batch(f[3] / 9)) for f in fields])
    for m in range(3):
        one = mean_response([_response(*(float(f[i, m]) for i in range(3)), float(f[3, m] / 10), float(f[3, m] / 9)) for f in fields])
        for name in ("demand", "first_purchase_share", "impressions", "ctr", "bundle_take"):
            assert float(getattr(batch, name)[m]) == pytest.approx(getattr(one, name)), (name, m)


def test_folder_round_trip_and_identity(tiny_ensemble_dirs):
    first, second, ens_dir = tiny_ensemble_dirs
    card = json.loads((ens_dir / "card.json").read_text())
    assert card["members"] == ["../fit0", "../fit1"]  # relative: the folders move together
    ens = load_predictor(ens_dir, device="cpu")
    assert isinstance(ens, PredictorEnsemble) and len(ens.members) == 2
    assert [m.identity for m in ens.members] == [LaunchPredictor.load(d, device="cpu").identity for d in (first, second)]
    assert ens.identity == load_predictor(ens_dir, device="cpu").identity  # stable across loads
    swapped = PredictorEnsemble.write(ens_dir.parent / "swapped", [second, first])
    assert load_predictor(swapped, device="cpu").identity != ens.identity
    assert isinstance(load_shared(first, device="cpu"), LaunchPredictor)
    assert isinstance(load_shared(ens_dir, device="cpu"), PredictorEnsemble)


def test_identity_from_the_files_alone_is_the_loaded_identity(tiny_ensemble_dirs):
    from launchsim.models.learned_market import folder_identity

    first, _, ens_dir = tiny_ensemble_dirs
    assert folder_identity(ens_dir) == load_predictor(ens_dir, device="cpu").identity
    assert folder_identity(first) == LaunchPredictor.load(first, device="cpu").identity


def test_bad_ensembles_fail_clearly(tiny_ensemble_dirs, tmp_path):
    first, second, ens_dir = tiny_ensemble_dirs
    with pytest.raises(PredictorError, match="holds a predictor; write the ensemble to a folder of its own"):
        PredictorEnsemble.write(first, [first, second])  # would overwrite a member's card
    with pytest.raises(PredictorError, match="at least two member predictors, found 1"):
        PredictorEnsemble.write(tmp_path / "one", [first])
    with pytest.raises(PredictorError, match="is itself an ensemble"):
        PredictorEnsemble.write(tmp_path / "nested", [first, ens_dir])
    with pytest.raises(PredictorError, match="no card.json"):
        PredictorEnsemble.write(tmp_path / "missing", [first, tmp_path / "nowhere"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "card.json").write_text(json.dumps({"format": "launchsim-ensemble", "version": 1, "members": [str(first), "../gone"]}))
    with pytest.raises(PredictorError, match=r"member '../gone'.*no card.json"):
        load_predictor(broken)


def test_single_market_response_is_the_mean_of_the_members(tiny_ensemble_dirs):
    ens = load_predictor(tiny_ensemble_dirs[2], device="cpu")
    s = load_scenario(SCENARIO_PATHS[0])
    texts = [s.products[0].text, s.ads.creatives[0].text]
    ctx = MarketContext(
        launched=1.0, step_weeks=1.0, season=1.1, holiday=0.0, price_ratio=0.9, reference_price=40.0, flash=0.0, weeks_since_flash=99.0,
        competitor_strength=0.0, competitor_price_ratio=1.0, adstock=500.0, adopters=30.0, bundle_discount=0.0, market_estimate=2000.0,
    )  # fmt: skip
    got = respond_once(ens, ctx, *texts)
    members = [respond_once(m, ctx, *texts) for m in ens.members]
    assert members[0].demand != pytest.approx(members[1].demand)  # two different fits, or the test shows nothing
    want = mean_response(members)
    for name in ("demand", "first_purchase_share", "impressions", "ctr"):
        assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-9)


def test_batched_env_on_an_ensemble_matches_single_envs(tiny_ensemble_dirs):
    scenarios = [load_scenario(p) for p in SCENARIO_PATHS]
    ens = load_predictor(tiny_ensemble_dirs[2], device="cpu")
    n = len(market_pairs(scenarios))
    kw = dict(market="learned", predictor=ens, seed=5, product_features=True, device="cpu")
    batched = make_market_vec_env(scenarios, n, kind="batched", **kw)
    dummy = make_market_vec_env(scenarios, n, kind="dummy", **kw)
    ob, od = batched.reset(), dummy.reset()
    np.testing.assert_allclose(ob, od, atol=1e-6)
    assert ob.shape[1] == 25 + ens.members[0].heads.latent  # the first member's traits
    np.testing.assert_allclose(ob[0, 25:], product_traits(*market_pairs(scenarios)[0], ens.members[0]), rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(40):
        actions = np.stack([rng.integers(0, batched.action_space.nvec) for _ in range(n)])
        ob, rb, _, _ = batched.step(actions)
        od, rd, _, _ = dummy.step(actions)
        np.testing.assert_allclose(rb, rd, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(ob, od, atol=1e-4)


def test_ensemble_market_differs_from_each_member(tiny_ensemble_dirs):
    """The env really runs the mixture: one episode's expected profit under fixed actions equals neither
    member's (a guard against an env that silently uses only the first member)."""
    s = load_scenario(SCENARIO_PATHS[0])
    ens = load_predictor(tiny_ensemble_dirs[2], device="cpu")

    def profit(model) -> float:
        env = LaunchMarketEnv(s, response_model=model, outcomes="expected")
        env.reset(seed=0)
        total, done, t = 0.0, False, 0
        while not done:
            action = np.minimum([1, 2, 0, 1, 0], env.action_space.nvec - 1)
            _, r, term, trunc, _ = env.step(action)
            total, done, t = total + r, term or trunc, t + 1
        return total

    got = profit(ens)
    assert got != pytest.approx(profit(ens.members[0])) and got != pytest.approx(profit(ens.members[1]))
