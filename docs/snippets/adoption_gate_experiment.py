"""A tried idea, not adopted: a product-specific gate on the adoption features of the demand head.

The gate, sigmoid(w · product latent + b), multiplies the `log_adopters` and `penetration` features, so
that a product the text marks as a steady staple could switch its adoption response off. Fits the
heads on frozen embeddings (``--mode frozen``; 7-8 min each on 2 CPU cores) with and without the gate,
then prints demand R² on the evaluation splits, staple_adoption_response's table and the gate's
values by kind of product. Results: docs/PREDICTORS.md, "Staples' response to earlier buyers".

    PYTHONPATH=.:docs/snippets python docs/snippets/adoption_gate_experiment.py --logs runs/v32_logs.parquet --gated
"""

import argparse
import json

import numpy as np
import pandas as pd
import torch
from staple_adoption_response import response_table
from torch import nn

from models import finetune
from models.context_features import FEATURE_NAMES
from models.predictor import PredictorHeads

GATED = [FEATURE_NAMES.index("log_adopters"), FEATURE_NAMES.index("penetration")]


class GatedHeads(PredictorHeads):
    """The default heads with the adoption features scaled by a gate read from the product latent."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adoption_gate = nn.Linear(self.latent, 1)
        nn.init.zeros_(self.adoption_gate.weight)
        nn.init.constant_(self.adoption_gate.bias, 2.0)  # starts open (0.88): the default's behaviour

    def gate(self, product: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.adoption_gate(self.product_traits(self.norm(product))))

    def forward(self, product, creative, partner, feats, discount):
        scale = torch.ones_like(feats)
        scale[:, GATED] = self.gate(product).expand(-1, len(GATED))
        return super().forward(product, creative, partner, feats * scale, discount)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", required=True)
    parser.add_argument("--gated", action="store_true")
    args = parser.parse_args()
    if args.gated:
        finetune.PredictorHeads = GatedHeads
    logs = pd.read_parquet(args.logs)
    predictor = finetune.finetune(logs[logs["split"] == "train"], finetune.FinetuneConfig(mode="frozen"), source=args.logs)
    evaluated = logs[(logs["split"] != "train") & (logs["launched"] > 0)]
    mu = np.asarray(predictor.predict_frame(evaluated)["demand"])
    result = {}
    for split in ("heldout", "paraphrase"):
        rows = (evaluated["split"] == split).to_numpy()
        y = evaluated["expected_demand"].to_numpy()[rows]
        result[f"{split} demand R²"] = round(float(1 - ((y - mu[rows]) ** 2).sum() / ((y - y.mean()) ** 2).sum()), 3)
    print(json.dumps(result))
    table = response_table(predictor, logs)
    print("median demand / demand at 0 adopters:\n" + table.groupby(level=0).median().round(3).to_string())
    if args.gated:
        products = logs[logs["split"] == "train"].groupby("product_id").first()
        with torch.no_grad():
            gate = predictor.heads.gate(torch.stack(predictor.encode(list(products["description"]))))[:, 0].cpu().numpy()
        print("gate by kind:\n" + pd.Series(gate, index=products.index).groupby(products["trait_demand"]).describe().round(3).to_string())


if __name__ == "__main__":
    main()
