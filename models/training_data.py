"""Launch logs as tensors for training and batch prediction: one table of distinct texts, row
indices into it, context features, targets and masks. Grouping rows by text is what lets every
distinct text be encoded once per pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from launchsim.models.context_features import FEATURE_NAMES, context_features

TARGETS = ("units", "new_customers", "impressions", "clicks", "bundled_units")


class TrainingData:
    """Logs as tensors: text indices into one table of distinct texts, features, targets and masks."""

    def __init__(self, logs: pd.DataFrame, feature_names: tuple[str, ...] = FEATURE_NAMES):
        texts = pd.unique(pd.concat([logs["description"], logs["creative_text"], logs["partner_text"]]))
        self.texts = [t for t in texts if isinstance(t, str) and t != ""]
        index = {t: i for i, t in enumerate(self.texts)}
        self.desc = torch.tensor(logs["description"].map(index).to_numpy(), dtype=torch.long)
        self.creative = torch.tensor(logs["creative_text"].map(lambda t: index.get(t, -1)).to_numpy(), dtype=torch.long)
        self.partner = torch.tensor(logs["partner_text"].map(lambda t: index.get(t, -1)).to_numpy(), dtype=torch.long)
        self.feats = context_features(logs, feature_names)
        self.discount = torch.tensor(logs["bundle_discount"].to_numpy(np.float32))
        self.launched = torch.tensor(logs["launched"].to_numpy(np.float32)) > 0
        self.adstock = torch.tensor(logs["adstock"].to_numpy(np.float32))
        self.y = {k: torch.tensor(logs[k].to_numpy(np.float32)) if k in logs else torch.full((len(logs),), float("nan")) for k in TARGETS}
        self.n = len(logs)
        self.product_rows = [torch.as_tensor(ix) for ix in logs.groupby("description", sort=False).indices.values()]
        self.units_scale = float(np.nanmean(logs["units"])) + 1.0 if "units" in logs else 1.0
        self.imp_scale = float(np.nanmean(logs["impressions"])) + 1.0 if "impressions" in logs else 1.0
        # The heads' text parts that any row trains (``PredictorHeads.forward``'s flags): the CTR needs
        # clicks; the bundle part moves demand on rows that offer a bundle.
        self.parts = {"ctr": self.has("clicks"), "bundle": bool((self.discount > 0).any())}

    def has(self, target: str) -> bool:
        return bool(torch.isfinite(self.y[target]).any())

    def to(self, device: torch.device | str) -> TrainingData:
        """Move every tensor to ``device`` (the heads' device), in place; returns self."""
        for name in ("desc", "creative", "partner", "feats", "discount", "launched", "adstock"):
            setattr(self, name, getattr(self, name).to(device))
        self.y = {k: v.to(device) for k, v in self.y.items()}
        self.product_rows = [rows.to(device) for rows in self.product_rows]
        return self


def gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows of an embedding table; index -1 (no text) gives a zero vector."""
    out = table[idx.clamp(min=0)]
    return out * (idx >= 0).float()[:, None]
