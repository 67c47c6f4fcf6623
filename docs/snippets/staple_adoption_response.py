"""How a predictor's demand for a steady staple moves with the buyers it has already had.

A staple sells to a constant weekly pool: in the structural market its demand does not depend on its
adopters at all. For up to 60 staples per split of the logs (their first week on sale, every other
feature held) and for the cutting-board scenario's product, this predicts the week's demand with the
adopters set to 0, 0.5, 1, ... 20 times the market estimate, and prints each as a multiple of the
demand at 0 adopters: the median and the 10th percentile over the products, and the board's own row.
The truth is 1.0 in every column.

    PYTHONPATH=. python docs/snippets/staple_adoption_response.py --predictor models/default_ensemble \
        --logs runs/v32_logs.parquet   # logs v3.2, the shipped fits' (commit 9e74533 or before)
"""

import argparse

import numpy as np
import pandas as pd

from models.predictor import load_predictor
from scenarios import load_scenario

MULTIPLES = [0.0, 0.5, 1.0, 2.0, 3.0, 3.9, 4.5, 6.0, 10.0, 20.0]


def board_row(template: pd.Series) -> pd.Series:
    """The cutting board's first week at its closed-form price level (0.75 of the reference)."""
    scenario = load_scenario("home_cutting_board_closed_form")
    product = scenario.products[0]
    row = template.copy()
    row["product_id"], row["split"] = "board", "board"
    row["description"], row["creative_text"], row["partner_text"] = product.text, scenario.ads.creatives[0].text, ""
    row["market_estimate"], row["reference_price"], row["price_ratio"] = product.market_estimate, product.reference_price, 0.75
    for column, value in {"season": 1.0, "holiday": 0.0, "adstock": 0.0, "competitor_strength": 0.0, "competitor_price_ratio": 0.0,
                          "step_weeks": 1.0, "flash": 0.0, "weeks_since_flash": 10000.0, "bundle_discount": 0.0}.items():  # fmt: skip
        row[column] = value
    return row


def response_table(predictor, logs: pd.DataFrame, per_split: int = 60) -> pd.DataFrame:
    """Demand / demand at 0 adopters, one row per (split, product), one column per multiple."""
    staples = logs[(logs["trait_demand"] == "staple") & (logs["launched"] > 0) & (logs["flash"] == 0)]
    rng = np.random.default_rng(0)
    chosen = []
    for split in ("train", "heldout", "paraphrase"):
        ids = staples.loc[staples["split"] == split, "product_id"].unique()
        ids = rng.choice(ids, size=min(per_split, len(ids)), replace=False)
        chosen.append(staples[staples["product_id"].isin(ids)].groupby("product_id").head(1))
    base = pd.concat(chosen)
    base = pd.concat([base, board_row(base.iloc[0]).to_frame().T.astype(base.dtypes)])
    frames = [base.assign(adopters=base["market_estimate"] * m, multiple=m) for m in MULTIPLES]
    grid = pd.concat(frames, ignore_index=True)
    grid["demand"] = np.asarray(predictor.predict_frame(grid)["demand"])
    table = grid.pivot_table(index=["split", "product_id"], columns="multiple", values="demand")
    return table.div(table[0.0], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", default="models/default_ensemble")
    parser.add_argument("--logs", required=True)
    parser.add_argument("--per-split", type=int, default=60)
    args = parser.parse_args()
    table = response_table(load_predictor(args.predictor), pd.read_parquet(args.logs), args.per_split)
    pd.set_option("display.width", 160)
    print("adopters as a multiple of the market estimate -> demand / demand at 0 adopters (truth: 1.0)")
    print("median:\n" + table.groupby(level=0).median().round(3).to_string())
    print("10th percentile:\n" + table.groupby(level=0).quantile(0.1).round(3).to_string())


if __name__ == "__main__":
    main()
