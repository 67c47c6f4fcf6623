"""Predictors end to end on tiny data: logs, user-log validation, fine-tuning (frozen and LoRA),
save/load with card checks, partial targets, the env on a learned market, and evaluation."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from launchsim.envs import LaunchMarketEnv
from launchsim.errors import PredictorError
from launchsim.models import product_text as pt
from launchsim.models.context_features import context_features
from launchsim.models.finetune import FinetuneConfig, finetune
from launchsim.models.predictor import LaunchPredictor
from launchsim.models.predictor_eval import evaluate, plot_report, strip_predictions
from launchsim.errors import LogsError
from launchsim.models.user_logs import canonical_logs, read_logs

SHARED = __import__("pathlib").Path(__file__).resolve().parents[3] / "shared" / "data" / "online_retail_weekly.csv"


def test_logs_have_splits_texts_and_expectations(tiny_logs):
    assert set(tiny_logs["split"]) == {"train", "heldout", "paraphrase"}
    assert tiny_logs.groupby("product_id").size().eq(20).all()
    for col in ("description", "creative_text", "units", "impressions", "clicks", "expected_demand", "expected_ctr", "adopters"):
        assert col in tiny_logs
    assert (tiny_logs.loc[tiny_logs["launched"] == 0, "units"] == 0).all()


def test_paraphrased_descriptions_use_unseen_wording(tiny_logs):
    train_phrases = {p for table in (pt.POSITIONING, pt.GIFT, pt.BUZZ) for tr, _ in table.values() for p in tr}
    for text in tiny_logs.loc[tiny_logs["split"] == "paraphrase", "description"].unique():
        used = [p for p in train_phrases if f" {p} " in f" {text.replace(';', ' ').replace(':', ' ').replace('.', ' ')} "]
        assert not [p for p in used if len(p.split()) > 1 or p in pt.POSITIONING], (text, used)


def test_logs_generation_is_seeded():
    from launchsim.envs.log_generator import generate_logs

    a = generate_logs(3, 0, 0, seed=9, progress=False)
    b = generate_logs(3, 0, 0, seed=9, progress=False)
    pd.testing.assert_frame_equal(a, b)


BAD_LOGS = {
    "missing_column": (lambda d: d.drop(columns=["description"]), "column 'description': missing"),
    "negative_units": (lambda d: d.assign(units=[3, -1, 2]), "column 'units', row 2: expected a count ≥ 0 (found -1.0)"),
    "empty_text": (lambda d: d.assign(description=["mug", " ", "mug"]), "column 'description', row 2: empty text"),
    "price_not_numeric": (lambda d: d.assign(price=["1.5", "cheap", "2"]), "column 'price', row 2: not a number (found 'cheap')"),
    "no_target": (lambda d: d.drop(columns=["units"]), "no target column"),
}


@pytest.mark.parametrize("case", BAD_LOGS, ids=list(BAD_LOGS))
def test_bad_logs_name_column_and_row(case):
    good = pd.DataFrame({"product_id": ["a", "a", "a"], "description": ["mug"] * 3, "week": [0, 1, 2], "price": [1.5, 1.5, 2.0], "units": [3, 1, 2]})
    make, message = BAD_LOGS[case]
    with pytest.raises(LogsError, match=re.escape(message)):
        canonical_logs(make(good), source="my.csv")


def test_missing_weeks_count_as_zero_units():
    df = canonical_logs(pd.DataFrame({"sku": ["a", "a"], "title": ["mug", "mug"], "week_start": ["2011-01-03", "2011-01-24"], "median_price": [2.0, 2.0], "units": [5, 7]}))
    assert list(df["units"]) == [5, 0, 0, 7] and list(df["adopters"]) == [0, 5, 5, 5]


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data not beside the checkout")
def test_online_retail_reads_through_the_logs_path(tmp_path):
    sample = pd.read_csv(SHARED, nrows=3000)
    path = tmp_path / "retail.csv"
    sample.to_csv(path, index=False)
    df = read_logs(path)
    assert df["product_id"].nunique() == sample["sku"].nunique()
    assert (df["units"] >= 0).all() and df["season"].between(0.05, 20).all()


def test_finetune_trains_every_head_and_changes_the_encoder(tiny_predictor, tiny_bert):
    from launchsim.models.text_encoder import TextEncoder

    card = tiny_predictor.card
    assert card["targets_trained"] == ["bundled_units", "clicks", "impressions", "new_customers", "units"]
    assert card["encoder"]["mode"] == "lora" and card["encoder"]["base"] == str(tiny_bert.resolve())
    base = TextEncoder(tiny_bert).encode(["premium wool coat"])
    tuned = tiny_predictor.encoder.encode(["premium wool coat"])
    assert not torch.allclose(base.cpu(), tuned.cpu())  # the tuned one is on the GPU where there is one


def test_save_load_round_trip(tiny_predictor, tiny_logs, tmp_path):
    tiny_predictor.save(tmp_path / "pred")
    loaded = LaunchPredictor.load(tmp_path / "pred", device="cpu")
    assert loaded.identity == tiny_predictor.identity
    a, b = tiny_predictor.predict_frame(tiny_logs.head(60)), loaded.predict_frame(tiny_logs.head(60))
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5)
    assert sum(f.stat().st_size for f in (tmp_path / "pred").rglob("*") if f.is_file()) < 2_000_000
    # Loading folds the LoRA adapters into the encoder (plain products, the same function): saving that
    # again would write a whole encoder where adapters belong, so it is refused.
    assert not hasattr(loaded.encoder.model, "peft_config")
    with pytest.raises(PredictorError, match="copy its folder instead"):
        loaded.save(tmp_path / "again")


def test_card_mismatch_fails_clearly(tiny_predictor, tmp_path):
    folder = tiny_predictor.save(tmp_path / "pred")
    card = json.loads((folder / "card.json").read_text())
    card["feature_names"] = card["feature_names"][:-1]
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(PredictorError, match="feature_names"):
        LaunchPredictor.load(folder)
    with pytest.raises(PredictorError, match="no card.json"):
        LaunchPredictor.load(tmp_path)


def test_partial_targets_train_only_their_heads(tiny_bert, tiny_logs):
    logs = tiny_logs[tiny_logs["split"] == "train"].drop(columns=["impressions", "clicks", "bundled_units", "new_customers"])
    cfg = FinetuneConfig(encoder=str(tiny_bert), mode="frozen", head_epochs=2, hidden=16, latent=4, device="cpu")
    assert finetune(logs, cfg).card["targets_trained"] == ["units"]


def test_env_runs_on_the_learned_market(tiny_predictor):
    from gymnasium.utils.env_checker import check_env

    env = LaunchMarketEnv("food_coffee_bundle", response_model=tiny_predictor)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    total, done = 0.0, False
    while not done:
        obs, reward, done, _, info = env.step(env.action_space.sample())
        total += reward
    assert np.isfinite(total)


def test_embedding_cache_encodes_each_text_once(tiny_predictor, monkeypatch):
    calls = []
    original = tiny_predictor.encoder.encode
    monkeypatch.setattr(tiny_predictor.encoder, "encode", lambda texts, **kw: calls.append(list(texts)) or original(texts))
    tiny_predictor.encode(["a brand new text", "another new text", "a brand new text"])
    tiny_predictor.encode(["a brand new text"])
    assert calls == [["a brand new text", "another new text"]]


def test_evaluation_report_and_plot(tiny_predictor, tiny_logs, tmp_path):
    report = evaluate(tiny_predictor, tiny_logs)
    assert set(report["splits"]) == {"heldout", "paraphrase"}
    for split in report["splits"].values():
        assert {"predictor", "numeric_only_gbm", "tfidf_gbm"} <= set(split)
        assert len(split["predictor"]["demand_calibration"]) == 10 and "demand_r2" in split["predictor"] and "ctr_r2" in split["predictor"]
        assert split["predictor"]["demand_level_log_sd"] > 0
    json.dumps(strip_predictions(report))
    assert plot_report(report, tiny_logs, tmp_path / "eval.png").stat().st_size > 10_000


def test_demand_level_error_is_the_spread_of_per_product_log_ratios():
    from launchsim.models.predictor_eval import demand_level_log_sd

    # Two products, predicted at half and at twice their true level: log ratios +-log 2.
    df = pd.DataFrame({"product_id": ["a", "a", "b", "b"], "expected_demand": [10.0, 30.0, 8.0, 2.0], "units": [0, 0, 0, 0]})
    mu = np.array([5.0, 15.0, 16.0, 4.0])
    assert demand_level_log_sd(df, mu) == pytest.approx(np.std([np.log(2), -np.log(2)], ddof=1))
    assert demand_level_log_sd(df, mu * 3.0) == pytest.approx(demand_level_log_sd(df, mu))  # a common bias is not spread
    assert demand_level_log_sd(df.drop(columns="expected_demand").assign(units=[10, 30, 8, 2]), mu) == pytest.approx(np.log(4) / np.sqrt(2))


def _contexts(n: int, rng: np.random.Generator) -> dict:
    return dict(
        launched=rng.choice([0.0, 1.0], n), step_weeks=rng.choice([1.0, 2.0], n), season=rng.uniform(0.7, 1.3, n),
        holiday=rng.uniform(0, 1, n), price_ratio=rng.uniform(0.7, 1.3, n), reference_price=rng.uniform(5.0, 200.0, n),
        flash=rng.choice([0.0, 1.0], n), weeks_since_flash=rng.choice([1.0, 2.0, 3.0, 1e4], n),
        competitor_strength=rng.uniform(0, 1, n), competitor_price_ratio=rng.uniform(0, 1.2, n),
        adstock=rng.choice([0.0, 800.0, 6000.0], n), adopters=rng.uniform(0, 5000, n), bundle_discount=np.zeros(n),
        market_estimate=rng.choice([0.0, 900.0, 25_000.0], n),
    )  # fmt: skip


@pytest.mark.parametrize("head_dtype", [torch.float32, torch.bfloat16])
def test_one_market_a_numpy_batch_a_torch_batch_and_training_compute_the_same_heads(tiny_predictor, head_dtype):
    # The heads are written once: bound to one market (Python numbers, NumPy float64 vectors), to a
    # batch on NumPy (torch MLP rows, markets not on sale skipped) or on torch (the GPU's route, here
    # on CPU tensors), and in training's forward pass, they give the same responses.
    from launchsim.models.heads import HeadsResponder
    from launchsim.models.ops import SCALAR, NumpyOps, TorchOps
    from launchsim.models.response import MarketContext, MarketTexts

    rng = np.random.default_rng(0)
    n = 40
    p = tiny_predictor
    (prod,) = p.encode(["Norvik premium wool coat"])
    creatives = p.encode(["Meet the Norvik wool coat.", "Cosy and warm."], "creative")
    partners = p.encode(["knitted scarf", "leather gloves"], "partner")
    options = [(None, 0.0), (partners[0], 0.1), (partners[1], 0.3)]
    texts = MarketTexts(prod, creatives, options)
    fields = _contexts(n, rng)
    creative, option = rng.integers(0, 2, n), rng.integers(0, 3, n)
    fields["bundle_discount"] = np.array([options[o][1] for o in option])
    numpy_route = HeadsResponder(p, NumpyOps(), [texts] * n, head_dtype).respond(MarketContext(**fields), creative, option)
    torch_ops = TorchOps("cpu", torch.float64)
    as_tensors = MarketContext(**{k: torch.as_tensor(v) for k, v in fields.items()})
    torch_route = HeadsResponder(p, torch_ops, [texts] * n, head_dtype).respond(as_tensors, torch.as_tensor(creative), torch.as_tensor(option))
    one = HeadsResponder(p, SCALAR, [texts])
    tol = 1e-5 if head_dtype == torch.float32 else 0.05
    for i in range(n):
        single = one.respond(MarketContext(**{k: float(v[i]) for k, v in fields.items()}), int(creative[i]), int(option[i]))
        for name in ("demand", "impressions", "ctr", "bundle_uplift", "bundle_take", "cannibalisation"):
            want = getattr(single, name)
            assert float(numpy_route.__getattribute__(name)[i]) == pytest.approx(want, rel=tol, abs=1e-6), name
            assert float(torch_route.__getattribute__(name)[i]) == pytest.approx(want, rel=tol, abs=1e-6), name
        if fields["launched"][i]:  # a market not on sale has no demand: its share is not computed
            assert float(numpy_route.first_purchase_share[i]) == pytest.approx(single.first_purchase_share, rel=tol)
    # Training's forward pass on the same embeddings and context features.
    feats = context_features(MarketContext(**fields), p.feature_names, p.default_market_estimate)
    partner_emb = torch.stack([torch.zeros_like(prod) if options[o][0] is None else options[o][0] for o in option])
    with torch.inference_mode():
        out = p.heads.eval()(prod.expand(n, -1), torch.stack([creatives[c] for c in creative]), partner_emb, feats, torch.as_tensor(fields["bundle_discount"], dtype=torch.float32))
    on_sale = fields["launched"] > 0
    np.testing.assert_allclose(np.log(numpy_route.demand[on_sale]), out["log_demand"].double().numpy()[on_sale], rtol=tol, atol=1e-4)
    np.testing.assert_allclose(numpy_route.ctr, torch.sigmoid(out["ctr_logit"]).double().numpy(), rtol=1e-5)


def test_unsaved_predictors_do_not_share_cached_embeddings(tiny_bert, tiny_logs):
    train = tiny_logs[tiny_logs["split"] == "train"]
    a = finetune(train, FinetuneConfig(encoder=str(tiny_bert), mode="frozen", head_epochs=1, hidden=16, latent=4, device="cpu"))
    b = finetune(train, FinetuneConfig(encoder=str(tiny_bert), mode="lora", lora_rank=2, head_epochs=1, encoder_epochs=1, polish_epochs=1, hidden=16, latent=4, device="cpu"))
    assert a.identity != b.identity
    (ea,), (eb,) = a.encode(["premium wool coat"]), b.encode(["premium wool coat"])
    assert not torch.allclose(ea, eb)  # b's LoRA-tuned encoder, not a's cached embedding


def test_feature_versions_and_the_market_estimate(tiny_predictor):
    from launchsim.models.context_features import FEATURE_NAMES, FEATURE_NAMES_V1, FEATURE_NAMES_V2, PENETRATION_CAP
    from launchsim.models.response import MarketContext

    assert tiny_predictor.card["feature_names"] == list(FEATURE_NAMES) and tiny_predictor.card["features_version"] == 3
    base = dict(
        launched=1.0, step_weeks=1.0, season=1.0, holiday=0.0, price_ratio=1.0, reference_price=50.0, flash=0.0,
        weeks_since_flash=1e4, competitor_strength=0.0, competitor_price_ratio=0.0, adstock=0.0, adopters=100.0,
        bundle_discount=0.0,
    )  # fmt: skip
    assert context_features(MarketContext(**base), FEATURE_NAMES_V1).shape == (1, 13)
    assert context_features(MarketContext(**base, market_estimate=20_000.0), FEATURE_NAMES_V2).shape == (1, 14)
    feats = context_features(MarketContext(**base, market_estimate=20_000.0))
    assert feats.shape == (1, 15) and feats[0, -2].item() == pytest.approx(np.log1p(20_000.0) / 10, rel=1e-6)
    assert feats[0, -1].item() == pytest.approx(100.0 / 20_000.0)  # penetration: buyers so far / estimate
    unknown = context_features(MarketContext(**base))[0]
    assert unknown[-2].item() == 0.0  # an unknown estimate
    assert unknown[-1].item() == PENETRATION_CAP  # capped
    with pytest.raises(ValueError, match="unknown feature list"):
        context_features(MarketContext(**base), ("season",))
    # A logs frame without the column reads as unknown (0).
    assert context_features(pd.DataFrame([base]))[0, -2].item() == 0.0


def test_single_market_responders_of_one_predictor_share_its_weights_until_a_weight_changes(tiny_predictor):
    # A DummyVecEnv holds one responder per market: they share one float64 copy of the heads, and a
    # change to the predictor's weights (fine-tuning between two envs) is seen by the next responder.
    import copy

    from launchsim.models.heads import HeadsResponder
    from launchsim.models.ops import SCALAR
    from launchsim.models.response import MarketContext, MarketTexts

    p = copy.deepcopy(tiny_predictor)
    (prod,) = p.encode(["Norvik premium wool coat"])
    texts = MarketTexts(prod, p.encode(["Meet the Norvik wool coat."], "creative"), [(None, 0.0)])
    fields = {k: float(v[0]) for k, v in _contexts(1, np.random.default_rng(1)).items()}
    ctx = MarketContext(**{**fields, "launched": 1.0})
    a, b = HeadsResponder(p, SCALAR, [texts]), HeadsResponder(p, SCALAR, [texts])
    assert a.demand_layers[0][0] is b.demand_layers[0][0]
    before = a.respond(ctx, 0, 0).demand
    with torch.no_grad():
        p.heads.demand[-1].bias[0] += 1.0  # e^1 more demand
    c = HeadsResponder(p, SCALAR, [texts])
    assert c.demand_layers[0][0] is not a.demand_layers[0][0]
    assert c.respond(ctx, 0, 0).demand == pytest.approx(before * np.e, rel=1e-9)
    assert a.respond(ctx, 0, 0).demand == before
