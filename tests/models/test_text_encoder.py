"""Text pooling: clause splitting, the ``segments`` vector (whole, clause mean, clause max), and a
clause-pooled predictor that fine-tunes with LoRA, saves, and loads with the same outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from launchsim.errors import PredictorError
from launchsim.models.finetune import FinetuneConfig, finetune
from launchsim.models.predictor import LaunchPredictor
from launchsim.models.text_encoder import TextEncoder, text_segments


def test_text_segments_split_clauses_and_keep_short_texts_whole():
    assert text_segments("Norvik premium kettle with fast boil: a perfect gift; trending now.") == [
        "Norvik premium kettle with fast boil", "a perfect gift", "trending now",
    ]  # fmt: skip
    assert text_segments("Retro sneaker, suede. A collectible drop.") == ["Retro sneaker, suede", "A collectible drop"]
    assert text_segments("Discover the Norvik kettle.") == ["Discover the Norvik kettle"]
    assert text_segments("") == [""]


def test_segment_pooling_appends_the_mean_and_max_of_clause_vectors(tiny_bert):
    torch.manual_seed(0)
    pooled = TextEncoder(tiny_bert, pooling="segments")
    plain = TextEncoder(tiny_bert)
    texts = ["Norvik premium kettle with fast boil: a perfect gift; trending now.", "Discover the Norvik kettle."]
    vectors = pooled.encode(texts)
    hidden = plain.dim
    assert pooled.dim == 3 * hidden and vectors.shape == (2, 3 * hidden)
    whole = plain.encode(texts)
    clauses = plain.encode(text_segments(texts[0]))
    torch.testing.assert_close(vectors[:, :hidden], whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vectors[0, hidden : 2 * hidden], clauses.mean(0), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vectors[0, 2 * hidden :], clauses.max(0).values, atol=1e-5, rtol=1e-5)
    one = plain.encode(["Discover the Norvik kettle"])[0]  # a one-clause text: its clause mean is its clause max
    torch.testing.assert_close(vectors[1, hidden : 2 * hidden], one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vectors[1, 2 * hidden :], one, atol=1e-5, rtol=1e-5)


def test_unknown_pooling_fails_clearly(tiny_bert):
    with pytest.raises(PredictorError, match="text pooling 'cls'"):
        TextEncoder(tiny_bert, pooling="cls")


def test_clause_pooled_predictor_fine_tunes_saves_and_loads(tiny_bert, tiny_logs, tmp_path):
    cfg = FinetuneConfig(
        encoder=str(tiny_bert), mode="lora", lora_rank=2, head_epochs=2, encoder_epochs=1, polish_epochs=1,
        hidden=16, latent=4, products_per_batch=8, text_pooling="segments", device="cpu",
    )  # fmt: skip
    predictor = finetune(tiny_logs[tiny_logs["split"] == "train"], cfg)
    assert predictor.card["encoder"]["pooling"] == "segments" and predictor.card["text_dim"] == 3 * 32
    folder = predictor.save(tmp_path / "pred")
    loaded = LaunchPredictor.load(folder, device="cpu")
    assert loaded.encoder.pooling == "segments"
    rows = tiny_logs[tiny_logs["split"] == "paraphrase"].head(40)
    for key in ("demand", "ctr"):
        np.testing.assert_allclose(loaded.predict_frame(rows)[key], predictor.predict_frame(rows)[key], rtol=1e-4)
    card = json.loads((folder / "card.json").read_text())
    del card["encoder"]["pooling"]  # a card written before the field existed reads as mean pooling
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(PredictorError, match="text_dim 96 but encoder"):
        LaunchPredictor.load(folder, device="cpu")


def test_fast_tokenize_gives_the_tokenizers_own_ids_and_mask(tiny_bert, tiny_logs):
    # The Rust batch encoder path must match tokenizer(..., return_tensors="pt"): padding to the longest
    # text, truncation at max_length (a long text below), and the tokenizer's own settings left alone.
    encoder = TextEncoder(tiny_bert, max_length=16)
    texts = [*tiny_logs["description"].unique()[:20], "a", "warm " * 40]
    expected = encoder.tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    got = encoder.tokenize(texts)
    assert encoder._fast_tokenizer() is not None and got["input_ids"].shape == (len(texts), 16)
    assert torch.equal(got["input_ids"], expected["input_ids"]) and torch.equal(got["attention_mask"], expected["attention_mask"])
    assert len(encoder.tokenizer("warm " * 40)["input_ids"]) > 16  # no truncation leaked into the tokenizer
