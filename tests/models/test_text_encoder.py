"""The text encoder: mean pooling over real tokens, the fast tokenizer path, and cards it cannot read."""

from __future__ import annotations

import json

import pytest
import torch

from launchsim.errors import PredictorError
from launchsim.models.predictor import LaunchPredictor
from launchsim.models.text_encoder import TextEncoder


def test_mean_pooling_averages_the_real_tokens(tiny_bert):
    # A text's vector is the mean of its token states over real tokens: padding in a batch changes nothing.
    torch.manual_seed(0)
    encoder = TextEncoder(tiny_bert)
    texts = ["Norvik premium kettle with fast boil: a perfect gift; trending now.", "Discover the Norvik kettle."]
    together = encoder.encode(texts)
    alone = torch.cat([encoder.encode([t]) for t in texts])
    assert together.shape == (2, encoder.dim) == (2, 32)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_a_card_with_another_pooling_fails_clearly(tiny_predictor, tmp_path):
    folder = tiny_predictor.save(tmp_path / "pred")
    card = json.loads((folder / "card.json").read_text())
    card["encoder"]["pooling"] = "segments"
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(PredictorError, match="pooling 'segments', expected 'mean'"):
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
