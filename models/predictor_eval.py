"""Evaluating a predictor on held-out products, next to two baselines that read less.

Baselines: gradient boosting on the numeric context alone (no text), and TF-IDF of the texts
(reduced by truncated SVD) plus the numeric context into gradient boosting. Both are trained on
the same training rows. Metrics per split: R² of predicted vs the structural market's expected
demand and CTR (when the logs carry them; otherwise R² vs the observed values, labelled so),
Poisson deviance explained on observed units, and calibration by decile of predicted demand.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from launchsim.models.context_features import context_features
from launchsim.models.predictor import LaunchPredictor
from launchsim.models.user_logs import season_profile, with_season

from launchsim.files import save_figure

HELDOUT_SHARE = 5  # user logs: one product in five (by a hash of its id) is held out


def is_heldout_product(product_ids: pd.Series) -> pd.Series:
    """The fixed held-out rule for logs without a ``split`` column: sha1(product_id) mod 5 == 0."""
    return product_ids.astype(str).map(lambda p: int(hashlib.sha1(p.encode()).hexdigest(), 16) % HELDOUT_SHARE == 0)


def with_splits(logs: pd.DataFrame) -> pd.DataFrame:
    """Logs with a ``split`` column: kept if present (generated logs), else the hash rule (user logs)."""
    if "split" in logs:
        return logs
    out = logs.copy()
    out["split"] = np.where(is_heldout_product(out["product_id"]), "heldout", "train")
    return out


def r2(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(1.0 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum())


def poisson_deviance_explained(y: np.ndarray, mu: np.ndarray) -> float:
    """D² = 1 - deviance(model) / deviance(a constant mean), on observed counts."""

    def dev(y: np.ndarray, m: np.ndarray) -> float:
        m = np.maximum(m, 1e-9)
        return float(2 * (np.where(y > 0, y * np.log(np.maximum(y, 1e-12) / m), 0.0) - (y - m)).sum())

    return 1.0 - dev(y, mu) / dev(y, np.full_like(y, y.mean()))


def calibration(y: np.ndarray, mu: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted vs mean observed units in each decile of predicted demand."""
    order = np.argsort(mu, kind="stable")
    bins = min(bins, len(order))  # fewer rows than bins: one row each, no empty bin
    return [
        {"decile": i + 1, "predicted": float(mu[ix].mean()), "observed": float(y[ix].mean()), "rows": int(len(ix))}
        for i, ix in enumerate(np.array_split(order, bins))
    ]


class Baseline:
    """Gradient boosting on numeric context, optionally with TF-IDF+SVD text features."""

    def __init__(self, with_text: bool, seed: int = 0):
        self.with_text, self.seed = with_text, seed

    def _x(self, df: pd.DataFrame, fit: bool) -> np.ndarray:
        x = context_features(df).numpy()
        if not self.with_text:
            return x
        text = (df["description"] + " | " + df["creative_text"]).to_numpy()
        if fit:
            from sklearn.decomposition import TruncatedSVD
            from sklearn.feature_extraction.text import TfidfVectorizer

            self.tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
            self.svd = TruncatedSVD(64, random_state=self.seed)
            uniq = pd.unique(text)
            self.svd.fit(self.tfidf.fit_transform(uniq))
        uniq, inverse = np.unique(text, return_inverse=True)
        z = self.svd.transform(self.tfidf.transform(uniq))[inverse]
        return np.hstack([x, z])

    def fit(self, df: pd.DataFrame) -> Baseline:
        from sklearn.ensemble import HistGradientBoostingRegressor

        launched = df["launched"].to_numpy() > 0
        x = self._x(df, fit=True)
        self.demand = HistGradientBoostingRegressor(loss="poisson", max_iter=400, random_state=self.seed)
        self.demand.fit(x[launched], df["units"].to_numpy()[launched])
        # Poisson boosting can return absurd values on feature combinations it never saw; clipping at
        # the largest weekly count in training keeps the comparison fair to the baselines.
        self.max_units = float(df["units"].max())
        self.ctr = None
        if "clicks" in df and (df["impressions"] > 0).any():
            m = (df["impressions"] > 0).to_numpy()
            self.ctr = HistGradientBoostingRegressor(max_iter=400, random_state=self.seed)
            self.ctr.fit(x[m], (df["clicks"] / df["impressions"]).to_numpy()[m], sample_weight=df["impressions"].to_numpy()[m])
        return self

    def predict(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        x = self._x(df, fit=False)
        out = {"demand": np.clip(self.demand.predict(x), 0.0, self.max_units) * (df["launched"].to_numpy() > 0)}
        if self.ctr is not None:
            out["ctr"] = np.clip(self.ctr.predict(x), 0.0, 1.0)
        return out


def evaluate(predictor: LaunchPredictor, logs: pd.DataFrame, seed: int = 0) -> dict[str, Any]:
    """Metrics of the predictor and both baselines on every non-training split of ``logs``."""
    logs = with_splits(logs)
    if logs.attrs.get("season_derived"):  # the season index of the training rows, not of the scored ones
        card = getattr(predictor, "card", None) or predictor.members[0].card
        logs = with_season(logs, card.get("season_profile") or season_profile(logs[logs["split"] == "train"]))
    train = logs[logs["split"] == "train"]
    models: dict[str, Any] = {"numeric_only_gbm": Baseline(False, seed).fit(train), "tfidf_gbm": Baseline(True, seed).fit(train)}
    report: dict[str, Any] = {"splits": {}, "rows": {}}
    for split in [s for s in ("heldout", "paraphrase") if s in set(logs["split"])]:
        df = logs[logs["split"] == split].reset_index(drop=True)
        preds = {"predictor": predictor.predict_frame(df), **{k: m.predict(df) for k, m in models.items()}}
        if "expected_demand_known_except_scale" in df:  # logs made with `run_sim.py logs --reference`
            preds["known_except_scale"] = {"demand": df["expected_demand_known_except_scale"].to_numpy()}
        report["splits"][split] = {name: _metrics(df, p) for name, p in preds.items()}
        report["rows"][split] = {"rows": len(df), "products": int(df["product_id"].nunique())}
        report["splits"][split]["_predictions"] = preds  # for the plot; dropped before JSON
    return report


def _metrics(df: pd.DataFrame, pred: dict[str, np.ndarray]) -> dict[str, Any]:
    launched = df["launched"].to_numpy() > 0
    y = df["units"].to_numpy()[launched]
    mu = pred["demand"][launched]
    out: dict[str, Any] = {
        "demand_deviance_explained": poisson_deviance_explained(y, mu),
        "demand_r2_vs_observed": r2(y, mu),
        "demand_calibration": calibration(y, mu),
    }
    if "expected_demand" in df:
        out["demand_r2"] = r2(df["expected_demand"].to_numpy()[launched], mu)
    out["demand_level_log_sd"] = demand_level_log_sd(df[launched], mu)
    if "ctr" in pred and "impressions" in df:
        m = df["impressions"].to_numpy() > 0
        if "expected_ctr" in df:
            out["ctr_r2"] = r2(df["expected_ctr"].to_numpy()[m], pred["ctr"][m])
        if "clicks" in df:
            out["ctr_r2_vs_observed"] = r2((df["clicks"] / df["impressions"]).to_numpy()[m], pred["ctr"][m])
    return out


def demand_level_log_sd(df: pd.DataFrame, mu: np.ndarray) -> float | None:
    """How far off a product's demand level is: the standard deviation over products of
    log(true / predicted demand summed over the product's rows), true = the expected demand where
    the logs have it, else the units sold. It sizes training's ``--demand-spread``."""
    truth = df["expected_demand"] if "expected_demand" in df else df["units"]
    sums = pd.DataFrame({"product": df["product_id"].to_numpy(), "truth": truth.to_numpy(), "pred": mu})
    sums = sums.groupby("product")[["truth", "pred"]].sum()
    sums = sums[(sums["truth"] > 0) & (sums["pred"] > 0)]
    return float(np.log(sums["truth"] / sums["pred"]).std()) if len(sums) > 1 else None


def strip_predictions(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the raw prediction arrays (for JSON)."""
    return {
        **report,
        "splits": {s: {k: v for k, v in models.items() if k != "_predictions"} for s, models in report["splits"].items()},
    }


def plot_report(report: dict[str, Any], logs: pd.DataFrame, path: str | Path) -> Path:
    """Predicted vs true demand (log scale) and decile calibration, per split, for all three models."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = with_splits(logs)
    splits = list(report["splits"])
    fig, axes = plt.subplots(2, len(splits), figsize=(6 * len(splits), 10), squeeze=False)
    colours = {"predictor": "tab:blue", "tfidf_gbm": "tab:orange", "numeric_only_gbm": "tab:grey", "known_except_scale": "tab:green"}
    for col, split in enumerate(splits):
        df = logs[logs["split"] == split].reset_index(drop=True)
        launched = df["launched"].to_numpy() > 0
        truth_name = "expected_demand" if "expected_demand" in df else "units"
        truth = df[truth_name].to_numpy()[launched]
        ax = axes[0, col]
        for name, pred in report["splits"][split]["_predictions"].items():
            metrics = report["splits"][split][name]
            score = metrics.get("demand_r2", metrics["demand_r2_vs_observed"])
            ax.scatter(truth + 1, pred["demand"][launched] + 1, s=3, alpha=0.25, color=colours[name], label=f"{name} (R² {score:.3f})")
        lim = [1, max(truth.max(), 1) * 1.5]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel=f"{truth_name} + 1", ylabel="predicted demand + 1", title=f"{split}: predicted vs true")
        ax.legend(markerscale=4, fontsize=8)
        ax = axes[1, col]
        for name in report["splits"][split]["_predictions"]:
            cal = report["splits"][split][name]["demand_calibration"]
            ax.plot([c["predicted"] for c in cal], [c["observed"] for c in cal], "o-", color=colours[name], label=name)
        top = max(c["observed"] for n in report["splits"][split]["_predictions"] for c in report["splits"][split][n]["demand_calibration"])
        ax.plot([0, top], [0, top], "k--", lw=1)
        ax.set(xlabel="mean predicted units (decile)", ylabel="mean observed units", title=f"{split}: calibration by decile")
        ax.legend(fontsize=8)
    return save_figure(fig, path)
