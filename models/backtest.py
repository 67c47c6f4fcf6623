"""Backtesting a predictor on a logs file the way the env uses it.

Two protocols score every product of the file from its first logged week:
- **closed loop**, what the env does for a new product: every state feature comes from the market's
  own predictions. Buyers so far are the predicted first purchases of the product's earlier weeks
  (the predicted units when the predictor was not trained on first purchases, as the logs reader
  counts them), so an error in one week carries into the next;
- **open loop**, for reference: the product's observed history is fed in (what ``predictors-eval``
  does), which the env never has for a product it launches.

Next to the predictor, three baselines fitted on the training logs read only what the closed loop
may read (text, price, calendar, weeks since the product's first week): gradient boosting on the
numbers alone, on TF-IDF of the texts, and on the frozen base encoder's embeddings. Metrics, on all
weeks and on sale weeks (units > 0): R² of log1p(units), Poisson deviance explained against the
training logs' mean, mean predicted / observed, calibration by decile, and the product-level log-sd.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from launchsim.models.closed_loop import rollout
from launchsim.models.predictor_eval import calibration, demand_level_log_sd, r2
from launchsim.models.user_logs import season_profile, with_season

from launchsim.files import save_figure

BASELINES = ("numeric_gbm", "tfidf_gbm", "encoder_gbm")
WEEK_SETS = ("all_weeks", "sale_weeks")
TEXT_DIMS = 64  # the baselines' text features: TF-IDF or embeddings reduced to this many dimensions

def closed_loop_inputs(logs: pd.DataFrame) -> pd.DataFrame:
    """What a closed loop may know about a row besides the texts: price, calendar and the product's age
    (weeks since its first week on sale)."""
    on_sale = logs["week"].where(logs["launched"] > 0)
    age = (logs["week"] - on_sale.groupby(logs["product_id"], sort=False).transform("min")).clip(lower=0).fillna(0)
    week_of_year = logs["week_of_year"] if "week_of_year" in logs else pd.Series(0, index=logs.index)  # generated logs: their season
    angle = 2 * np.pi * (week_of_year - 1) / 52 * ("week_of_year" in logs)
    return pd.DataFrame(
        {
            "log_price": np.log(logs["price"]), "price_ratio": logs["price_ratio"], "log_reference_price": np.log(logs["reference_price"]),
            "season": logs["season"], "week_sin": np.sin(angle), "week_cos": np.cos(angle), "age": age, "step_weeks": logs["step_weeks"],
            "holiday": logs["holiday"], "flash": logs["flash"],
        }
    ).to_numpy(np.float64)  # fmt: skip


class ClosedLoopBaseline:
    """Poisson gradient boosting on the closed-loop inputs, with text features of one kind:
    ``none``, ``tfidf`` (TF-IDF of the description) or ``encoder`` (the frozen base encoder's embedding), each
    reduced to ``TEXT_DIMS`` dimensions."""

    def __init__(self, text: str, seed: int = 0, encoder: Any = None):
        self.text, self.seed, self.encoder = text, seed, encoder

    def _text_features(self, descriptions: pd.Series, fit: bool) -> np.ndarray:
        uniq, inverse = np.unique(descriptions.to_numpy(str), return_inverse=True)
        if self.text == "tfidf":
            from sklearn.decomposition import TruncatedSVD
            from sklearn.feature_extraction.text import TfidfVectorizer

            if fit:
                self.tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
                counts = self.tfidf.fit_transform(uniq)
                dims = min(TEXT_DIMS, counts.shape[1] - 1)  # a tiny vocabulary stays as it is
                self.reduce = TruncatedSVD(dims, random_state=self.seed).fit(counts) if dims >= 1 else None
            counts = self.tfidf.transform(uniq)
            z = counts.toarray() if self.reduce is None else self.reduce.transform(counts)
        else:
            from sklearn.decomposition import PCA

            emb = self.encoder.encode(list(uniq)).float().numpy()
            if fit:
                self.reduce = PCA(min(TEXT_DIMS, *emb.shape), random_state=self.seed).fit(emb)
            z = self.reduce.transform(emb)
        return z[inverse]

    def _x(self, logs: pd.DataFrame, fit: bool) -> np.ndarray:
        x = closed_loop_inputs(logs)
        return x if self.text == "none" else np.hstack([x, self._text_features(logs["description"], fit)])

    def fit(self, logs: pd.DataFrame) -> ClosedLoopBaseline:
        from sklearn.ensemble import HistGradientBoostingRegressor

        on_sale = logs["launched"].to_numpy() > 0
        self.model = HistGradientBoostingRegressor(loss="poisson", max_iter=400, random_state=self.seed)
        self.model.fit(self._x(logs, fit=True)[on_sale], logs["units"].to_numpy()[on_sale])
        self.max_units = float(logs["units"].max())  # Poisson boosting can explode on unseen combinations
        return self

    def predict(self, logs: pd.DataFrame) -> np.ndarray:
        return np.clip(self.model.predict(self._x(logs, fit=False)), 0.0, self.max_units) * (logs["launched"].to_numpy() > 0)


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    mu = np.maximum(mu, 1e-9)
    return float(2 * (np.where(y > 0, y * np.log(np.maximum(y, 1e-12) / mu), 0.0) - (y - mu)).sum())


def metrics(logs: pd.DataFrame, mu: np.ndarray, train_means: dict[str, float]) -> dict[str, dict[str, Any]]:
    """The scores of predictions ``mu`` of the logs' on-sale rows, on all weeks and on sale weeks; deviance
    is explained against the training logs' mean units of the same kind of week (``train_means``)."""
    y_all = logs["units"].to_numpy(np.float64)
    on_sale = logs["launched"].to_numpy() > 0
    out = {}
    for name, keep in (("all_weeks", on_sale), ("sale_weeks", on_sale & (y_all > 0))):
        y, m = y_all[keep], mu[keep]
        out[name] = {
            "rows": int(keep.sum()),
            "r2_log1p": r2(np.log1p(y), np.log1p(m)),
            "deviance_explained": 1.0 - poisson_deviance(y, m) / poisson_deviance(y, np.full_like(y, train_means[name])),
            "mean_predicted_over_observed": float(m.mean() / y.mean()) if y.mean() > 0 else None,
            "product_level_log_sd": demand_level_log_sd(logs[keep], m),
            "calibration": calibration(y, m),
        }
    return out


def backtest(
    predictor: Any, logs: pd.DataFrame, train_logs: pd.DataFrame | None = None, seed: int = 0, encoder: Any = None
) -> dict[str, Any]:
    """Score ``logs`` with ``predictor`` in the closed and the open loop, and the baselines fitted on
    ``train_logs`` (none without them). Deviance is explained against the training logs' mean units
    per on-sale week (the predictor's card's when ``train_logs`` is None)."""
    if "units" not in logs:
        raise ValueError("a backtest needs a units column in the logs")
    card = _card(predictor)
    logs = _with_training_season(logs, card, train_logs)
    train_means = _training_means(card, train_logs, logs)
    predictions = {"closed_loop": rollout(logs, predictor.predict_frame).units, "open_loop": predictor.predict_frame(logs)["demand"]}
    report: dict[str, Any] = {
        "rows": len(logs), "products": int(logs["product_id"].nunique()), "training_mean_units": train_means,
        "season": logs.attrs.get("season_source", "logs"),
        "protocols": {p: {"predictor": metrics(logs, mu, train_means)} for p, mu in predictions.items()},
    }  # fmt: skip
    if train_logs is not None:
        train = with_season(train_logs, season_profile(train_logs)) if train_logs.attrs.get("season_derived") else train_logs
        encoder = encoder or _frozen_encoder()
        for name, text in zip(BASELINES, ("none", "tfidf", "encoder")):
            mu = ClosedLoopBaseline(text, seed, encoder).fit(train).predict(logs)
            predictions[name] = mu
            report["protocols"]["closed_loop"][name] = metrics(logs, mu, train_means)
    report["_predictions"] = predictions  # for the plot; dropped before JSON
    return report


def closed_loop_level_log_sd(predictor: Any, logs: pd.DataFrame) -> float | None:
    """How far off the predictor reads a product's demand level in the closed loop the env runs: the
    standard deviation over the products of ``logs`` (held out of its training) of log(true / predicted
    demand), each summed over the product's weeks (true: the logs' expected demand where they have it,
    else units sold). ``finetune`` records it on the card; the
    learned market's model draws use it (``agents.evaluation.uncertainty``)."""
    logs = _with_training_season(logs, _card(predictor), None)
    return demand_level_log_sd(logs, rollout(logs, predictor.predict_frame).units)


def _card(predictor: Any) -> dict[str, Any]:
    """The predictor's card (an ensemble's own, or its first member's where it has none)."""
    return getattr(predictor, "card", None) or predictor.members[0].card


def _with_training_season(logs: pd.DataFrame, card: dict[str, Any], train_logs: pd.DataFrame | None) -> pd.DataFrame:
    """A season index the scored file did not give comes from the training logs (the card's profile, or
    ``train_logs``), not from the scored file itself, whose own sales it would leak."""
    if not logs.attrs.get("season_derived"):
        return logs
    if card.get("season_profile"):
        out = with_season(logs, np.asarray(card["season_profile"]))
        out.attrs["season_source"] = "predictor card"
    elif train_logs is not None:
        out = with_season(logs, season_profile(train_logs))
        out.attrs["season_source"] = "training logs"
    else:
        out = logs.copy()
        out.attrs["season_source"] = "scored logs (the predictor's card has no season profile)"
    return out


def _training_means(card: dict[str, Any], train_logs: pd.DataFrame | None, logs: pd.DataFrame) -> dict[str, float]:
    """Mean units per on-sale week, and per sale week, of the training logs (else as the predictor's card
    records them, else of the scored logs themselves)."""
    source = train_logs
    if source is None:
        recorded = card.get("training_data", {})
        if recorded.get("units_mean") is not None and recorded.get("units_mean_sale_weeks") is not None:
            return {"all_weeks": float(recorded["units_mean"]), "sale_weeks": float(recorded["units_mean_sale_weeks"])}
        source = logs
    units = source.loc[source["launched"] > 0, "units"]
    return {"all_weeks": float(units.mean()), "sale_weeks": float(units[units > 0].mean())}


def _frozen_encoder() -> Any:
    from launchsim.models.text_encoder import TextEncoder

    return TextEncoder(None)


def strip_predictions(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "_predictions"}


def plot_backtest(report: dict[str, Any], logs: pd.DataFrame, path: str | Path) -> Path:
    """Calibration by decile of every model (closed loop), and observed vs predicted weekly units of the
    best-selling products in both protocols."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    preds = report["_predictions"]
    colours = {"closed_loop": "tab:blue", "open_loop": "tab:cyan", "numeric_gbm": "tab:grey", "tfidf_gbm": "tab:orange", "encoder_gbm": "tab:green"}
    fig = plt.figure(figsize=(16, 9))
    ax = fig.add_subplot(2, 4, (1, 6))
    top = 0.0
    for name in preds:
        protocol = "closed_loop" if name in BASELINES else name
        model = name if name in BASELINES else "predictor"
        m = report["protocols"][protocol][model]["all_weeks"]
        cal = m["calibration"]
        top = max(top, *(c["observed"] for c in cal), *(c["predicted"] for c in cal))
        label = f"{name} (R² log1p {m['r2_log1p']:.2f}, deviance {m['deviance_explained']:.2f})"
        ax.plot([c["predicted"] for c in cal], [c["observed"] for c in cal], "o-", color=colours[name], label=label)
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set(xscale="symlog", yscale="symlog", xlabel="mean predicted units (decile)", ylabel="mean observed units", title="calibration, all weeks")
    ax.legend(fontsize=8)
    best = logs.groupby("product_id", sort=False)["units"].sum().nlargest(4).index
    slots = [3, 4, 7, 8]
    for slot, product in zip(slots, best):
        ax = fig.add_subplot(2, 4, slot)
        rows = np.flatnonzero((logs["product_id"] == product).to_numpy())
        weeks = logs["week"].to_numpy()[rows]
        ax.bar(weeks, logs["units"].to_numpy()[rows], color="lightgrey", label="observed")
        for name in ("closed_loop", "open_loop"):
            ax.plot(weeks, preds[name][rows], color=colours[name], label=name.replace("_", " "))
        ax.set_title(str(logs["description"].to_numpy()[rows[0]])[:40], fontsize=9)
        ax.set(xlabel="week", ylabel="units")
        if slot == slots[0]:
            ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=100)


def report_markdown(result: dict[str, Any]) -> str:
    """The backtest's tables as Markdown."""
    lines = [f"# Backtest of {result['predictor']} on {result['logs']}", ""]
    means = result["training_mean_units"]
    lines.append(
        f"{result['products']:,} products, {result['rows']:,} product-weeks; deviance explained against the training logs' mean of "
        f"{means['all_weeks']:.2f} units a week ({means['sale_weeks']:.2f} a sale week)."
    )
    lines.append("")
    for weeks in WEEK_SETS:
        lines += [f"## {weeks.replace('_', ' ')}", "", "| protocol | model | R² log1p | deviance explained | mean predicted / observed | product level log-sd |", "|---|---|---:|---:|---:|---:|"]
        for protocol, models in result["protocols"].items():
            for model, m in models.items():
                w = m[weeks]
                ratio = "–" if w["mean_predicted_over_observed"] is None else f"{w['mean_predicted_over_observed']:.3f}"
                level = "–" if w["product_level_log_sd"] is None else f"{w['product_level_log_sd']:.3f}"
                lines.append(f"| {protocol.replace('_', ' ')} | {model} | {w['r2_log1p']:.3f} | {w['deviance_explained']:.3f} | {ratio} | {level} |")
        lines.append("")
    return "\n".join(lines)
