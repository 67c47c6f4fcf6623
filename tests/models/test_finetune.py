"""The CTR head's shape: additive in the traits on request (``ctr_hidden=0``), the MLP head by default
and loaded from cards that predate the ``ctr_hidden`` field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from launchsim.models.finetune import FinetuneConfig, finetune
from launchsim.models.predictor import LEGACY_CTR_HIDDEN, LaunchPredictor
from launchsim.models.heads import PredictorHeads


def _tiny(tiny_bert, tiny_logs, **kw) -> LaunchPredictor:
    kw = {"device": "cpu", "head_epochs": 1, **kw}  # CPU also where a GPU is present: the tests compare exact values
    cfg = FinetuneConfig(encoder=str(tiny_bert), mode="frozen", hidden=16, latent=4, **kw)
    return finetune(tiny_logs[tiny_logs["split"] == "train"], cfg)


def test_linear_ctr_logit_is_a_product_term_plus_a_creative_term(tiny_bert, tiny_logs):
    predictor = _tiny(tiny_bert, tiny_logs, ctr_hidden=0)
    heads = predictor.heads.eval()
    assert predictor.card["ctr_hidden"] == 0 and [type(m) for m in heads.ctr] == [nn.Linear]
    gen = torch.Generator().manual_seed(0)
    p, c = torch.randn(2, heads.text_dim, generator=gen), torch.randn(2, heads.text_dim, generator=gen)
    feats, zero = torch.zeros(4, len(heads.feature_names)), torch.zeros(4, heads.text_dim)
    with torch.no_grad():
        logit = heads(p[[0, 0, 1, 1]], c[[0, 1, 0, 1]], zero, feats, torch.zeros(4))["ctr_logit"]
    # No interaction: swapping creatives between two products changes both logits by the same amount.
    assert torch.isclose(logit[0] + logit[3], logit[1] + logit[2], atol=1e-5)
    assert not torch.isclose(logit[0], logit[1])  # the creative still matters


def test_mlp_ctr_head_by_default_and_from_older_cards(tiny_bert, tiny_logs, tmp_path):
    predictor = _tiny(tiny_bert, tiny_logs)
    assert predictor.card["ctr_hidden"] == LEGACY_CTR_HIDDEN
    assert [type(m) for m in predictor.heads.ctr] == [nn.Linear, nn.SiLU, nn.Linear]
    folder = predictor.save(tmp_path / "pred")
    card = json.loads((folder / "card.json").read_text())
    del card["ctr_hidden"]  # as written before the field existed (the shipped v2 default)
    (folder / "card.json").write_text(json.dumps(card))
    loaded = LaunchPredictor.load(folder, device="cpu")
    assert loaded.heads.ctr[0].out_features == LEGACY_CTR_HIDDEN
    rows = tiny_logs.head(60)
    np.testing.assert_allclose(loaded.predict_frame(rows)["ctr"], predictor.predict_frame(rows)["ctr"], rtol=1e-5)


def test_heads_keep_their_state_dict_layout_for_the_fast_paths():
    """The single-market and batched fast paths read ``ctr.<i>.weight``: both shapes keep that layout."""
    for width, keys in ((0, {"ctr.0.weight", "ctr.0.bias"}), (8, {"ctr.0.weight", "ctr.0.bias", "ctr.2.weight", "ctr.2.bias"})):
        heads = PredictorHeads(16, hidden=8, latent=4, creative_latent=2, ctr_hidden=width)
        assert {k for k in heads.state_dict() if k.startswith("ctr.")} == keys


def test_overdispersion_ignores_a_per_product_scale_error_and_finds_the_weekly_noise():
    from launchsim.models.finetune import overdispersion

    gen = torch.Generator().manual_seed(0)
    products, weeks, k = 400, 20, 0.1
    product = torch.arange(products).repeat_interleave(weeks)
    mean = torch.exp(torch.rand(products * weeks, generator=gen) * 3 + 2)  # 7 to 150 units a week
    gamma = torch.distributions.Gamma(torch.full_like(mean, 1 / k), torch.full_like(mean, 1 / k)).sample()
    y = torch.poisson(mean * gamma, generator=gen)
    scale_error = torch.exp(torch.randn(products, generator=gen) * 0.5)[product]  # a predictor off by a factor per product
    assert overdispersion(y, mean, product) == pytest.approx(k, abs=0.02)
    assert overdispersion(y, mean * scale_error, product) == pytest.approx(k, abs=0.02)
    assert overdispersion(torch.poisson(mean, generator=gen), mean * scale_error, product) < 0.01


def test_closed_loop_training_reads_buyers_from_the_heads_own_rollout(tiny_bert, tiny_logs):
    # From closed_loop_from of the epochs on, the demand head is trained on the buyers so far that the
    # env would compute for a new product: its own predicted first purchases, never the observed ones.
    from launchsim.models.finetune import closed_loop_features
    from launchsim.models.text_encoder import TextEncoder
    from launchsim.models.training_data import TrainingData

    observed = _tiny(tiny_bert, tiny_logs, head_epochs=2)
    closed = _tiny(tiny_bert, tiny_logs, head_epochs=2, closed_loop_from=0.5)
    assert closed.card["config"]["closed_loop_from"] == 0.5 and observed.card["config"]["closed_loop_from"] == 1.0
    first = next(iter(closed.heads.parameters()))
    assert not torch.equal(first, next(iter(observed.heads.parameters())))

    logs = tiny_logs[tiny_logs["split"] == "train"].sort_values(["product_id", "week"], kind="stable").reset_index(drop=True)
    data = TrainingData(logs)
    table = TextEncoder(str(tiny_bert)).encode(data.texts)
    feats = closed_loop_features(closed.heads, table, data, logs)
    other = logs.assign(units=logs["units"] * 3 + 1, new_customers=logs["new_customers"] * 3 + 1, adopters=logs["adopters"] * 7 + 5)
    torch.testing.assert_close(feats, closed_loop_features(closed.heads, table, TrainingData(other), other))
    assert not torch.equal(feats, data.feats)  # the observed buyers differ from the rollout's
    starts = torch.as_tensor((logs.groupby("product_id").cumcount() == 0).to_numpy())
    torch.testing.assert_close(feats[starts], data.feats[starts])  # a product's first week: no buyers in either


def test_training_skips_the_text_parts_that_the_logs_do_not_train(tiny_logs):
    from launchsim.models.training_data import TrainingData

    full = TrainingData(tiny_logs)
    demand_only = TrainingData(tiny_logs.drop(columns=["clicks"]).assign(bundle_discount=0.0))
    assert full.parts == {"ctr": True, "bundle": True} and demand_only.parts == {"ctr": False, "bundle": False}
    heads = PredictorHeads(16, hidden=8, latent=4, creative_latent=2).eval()
    gen = torch.Generator().manual_seed(0)
    p, c, j = (torch.randn(6, 16, generator=gen) for _ in range(3))
    feats, discount = torch.randn(6, len(heads.feature_names), generator=gen), torch.tensor([0.0, 0.0, 0.0, 0.2, 0.0, 0.1])
    with torch.no_grad():
        every = heads(p, c, j, feats, discount)
        demand = heads(p, None, None, feats, discount * 0, ctr=False, bundle=False)
        no_ctr = heads(p, None, j, feats, discount, ctr=False)
    # Without clicks or bundle offers the skipped parts change nothing the loss reads.
    torch.testing.assert_close(demand["log_demand"], heads(p, c, j, feats, discount * 0)["log_demand"], rtol=0, atol=0)
    torch.testing.assert_close(no_ctr["log_demand"], every["log_demand"], rtol=0, atol=0)
    assert every["log_uplift"][3] > 0 and (demand["log_uplift"] == 0).all() and (no_ctr["ctr_logit"] == 0).all()


def test_overdispersion_is_not_set_by_one_extreme_week():
    from launchsim.models.finetune import overdispersion

    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)  # the gamma draws
    products, weeks, k = 300, 20, 0.3
    product = torch.arange(products).repeat_interleave(weeks)
    mean = torch.exp(torch.rand(products * weeks, generator=gen) * 3 + 1)
    gamma = torch.distributions.Gamma(torch.full_like(mean, 1 / k), torch.full_like(mean, 1 / k)).sample()
    y = torch.poisson(mean * gamma, generator=gen)
    alone = overdispersion(y, mean, product)
    y[7] = 50 * y.max()  # one order far beyond every other week, as a one-off bulk order
    # By moments this one week alone would add about (50 * max)^2 / sum(mean^2), several times k.
    assert alone == pytest.approx(k, abs=0.04) and overdispersion(y, mean, product) == pytest.approx(alone, rel=0.15)
