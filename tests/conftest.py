"""Shared fixtures: the shipped scenarios, tiny generated logs, and a tiny BERT checkpoint built in
the test (random weights, small vocabulary) that loads like any other checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from launchsim.models import product_text as pt
from launchsim.envs.log_generator import generate_logs

from launchsim.scenarios import DEFAULT_SCENARIO, list_scenarios, load_scenario

SCENARIO_PATHS = list_scenarios()
SCENARIO_IDS = [p.stem for p in SCENARIO_PATHS]


def tree_items(node, path=()):
    """Every node of parsed YAML with its path (dict keys and list positions), the root first."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from tree_items(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from tree_items(v, (*path, i))


def with_value(data, path, value):
    """A deep copy of parsed YAML with the node at ``path`` replaced by ``value`` (the root: ``value`` itself)."""
    if not path:
        return value
    data = yaml.safe_load(yaml.safe_dump(data))  # a deep copy with plain types
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return data


@pytest.fixture(autouse=True)
def _sb3_logs_in_tmp_path(tmp_path, monkeypatch):
    """SB3 models learning without a TensorBoard folder make an empty SB3-<time> folder in the system's
    temporary directory each time; keep them in the test's own folder."""
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3"))


@pytest.fixture(params=SCENARIO_PATHS, ids=SCENARIO_IDS)
def scenario_path(request) -> Path:
    return request.param


@pytest.fixture
def default_scenario():
    return load_scenario(DEFAULT_SCENARIO)


@pytest.fixture
def default_data() -> dict:
    return yaml.safe_load(DEFAULT_SCENARIO.read_text())


@pytest.fixture(scope="session")
def tiny_logs() -> pd.DataFrame:
    return generate_logs(n_train=24, n_heldout=6, n_paraphrase=6, seed=3, progress=False)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, tiny_logs):
    """A 2-layer, 32-wide BERT folder that AutoModel/AutoTokenizer load like any checkpoint."""
    texts = [str(t) for col in ("description", "creative_text", "partner_text") for t in tiny_logs[col]]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), texts)


def build_tiny_bert(folder: Path, texts: list[str]) -> Path:
    """Save a 2-layer, 32-wide BERT with random weights and a vocabulary of the generator's phrases and
    ``texts`` into ``folder``."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = set()
    for table in (pt.POSITIONING, pt.SEASONAL, pt.GIFT, pt.BUZZ, pt.DEMAND):
        for train, para in table.values():
            for phrase in train + para:
                words.update(re.findall(r"[a-z0-9]+", phrase.lower()))
    for text in texts:
        words.update(re.findall(r"[a-z0-9]+", text.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(words), *"abcdefghijklmnopqrstuvwxyz0123456789:;,.'-%"]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(dict.fromkeys(vocab)), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_predictor(tiny_bert, tiny_logs):
    """A LoRA predictor fine-tuned for a few epochs from the tiny BERT (shared by models/ and envs/ tests),
    on the CPU also where a GPU is present: the tests that compare it with CPU expectations stay exact."""
    from launchsim.models.finetune import FinetuneConfig, finetune

    cfg = FinetuneConfig(
        encoder=str(tiny_bert), mode="lora", lora_rank=2, head_epochs=3, encoder_epochs=1, polish_epochs=1, hidden=16, latent=4,
        products_per_batch=8, device="cpu",
    )  # fmt: skip
    return finetune(tiny_logs[tiny_logs["split"] == "train"], cfg)


@pytest.fixture(scope="session")
def tiny_ensemble_dirs(tmp_path_factory, tiny_bert, tiny_logs):
    """Two saved fits of the tiny logs (seeds 0 and 1) and an ensemble folder over them."""
    from launchsim.models.ensemble import PredictorEnsemble
    from launchsim.models.finetune import FinetuneConfig, finetune

    root = tmp_path_factory.mktemp("ensemble")
    dirs = []
    for seed in (0, 1):
        cfg = FinetuneConfig(
            encoder=str(tiny_bert), mode="lora", lora_rank=2, head_epochs=3, encoder_epochs=1, polish_epochs=1, hidden=16, latent=4,
            products_per_batch=8, device="cpu", seed=seed,
        )  # fmt: skip
        dirs.append(finetune(tiny_logs[tiny_logs["split"] == "train"], cfg).save(root / f"fit{seed}"))
    first_dir, second_dir = dirs
    ens_dir = PredictorEnsemble.write(root / "ens", [first_dir, second_dir])
    return first_dir, second_dir, ens_dir
