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
A third protocol, **known level**, rescales the closed loop's predictions to each product's observed
total: what the week-to-week shape scores when only a new product's level is left out (a bound).

A market predicts a week's expected units and samples the week from a negative binomial around them
(the predictor's over-dispersion k, var = mu + k mu²), and a new product's level is uncertain (the
spread of log(true / predicted) over products). The best guess of log1p(units) is therefore
E[log1p(units)] under that distribution, not log1p of the mean, which is far above it on over-dispersed
weeks (Jensen). R² log1p scores that expectation (given units > 0 on sale weeks), with k and the level
spread each model shows on the training logs (none without them); ``r2_log1p_of_mean`` keeps log1p of
the mean beside it.
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
        x, y = self._x(logs, fit=True)[on_sale], logs["units"].to_numpy()[on_sale]
        self.model.fit(x, y)
        self.max_units = float(logs["units"].max())  # Poisson boosting can explode on unseen combinations
        mu = np.clip(self.model.predict(x), 0.0, self.max_units)
        self.overdispersion = _overdispersion(y, mu, logs["product_id"].to_numpy()[on_sale])
        self.level_log_sd = demand_level_log_sd(logs[on_sale], mu) or 0.0
        return self

    def predict(self, logs: pd.DataFrame) -> np.ndarray:
        return np.clip(self.model.predict(self._x(logs, fit=False)), 0.0, self.max_units) * (logs["launched"].to_numpy() > 0)


def expected_log1p(mu: np.ndarray, overdispersion: float, level_sd: float = 0.0, positive: bool = False, nodes: int = 300) -> np.ndarray:
    """E[log1p(Y)], or E[log1p(Y) | Y > 0] with ``positive``, for Y Poisson with mean mu·G·L: G a mean-one
    gamma of shape 1 / k (negative binomial weeks, var = mu + k mu²; none at k = 0) and L a mean-one
    lognormal of log-sd ``level_sd`` (a product's demand-level error). Integrated on a grid of log(G·L),
    where both densities are smooth, of a tabulated E[log1p(Poisson(lambda))]."""
    from scipy.special import gammaln
    from scipy.stats import gamma

    mu = np.maximum(np.asarray(mu, np.float64), 0.0)
    if overdispersion <= 0 and level_sd <= 0:
        t, weight = np.zeros(1), np.ones(1)
    else:
        shape = 1.0 / overdispersion if overdispersion > 0 else None
        low, high = (0.0, 0.0) if shape is None else np.log(gamma.ppf([1e-12, 1 - 1e-12], shape, scale=1 / shape))
        t = np.linspace(low - 7 * level_sd - level_sd**2 / 2, high + 7 * level_sd, nodes)
        if shape is None:  # the level alone: a normal density of log L
            weight = np.exp(-0.5 * ((t + level_sd**2 / 2) / level_sd) ** 2)
        else:
            weight = np.exp(shape * np.log(shape) + shape * t - shape * np.exp(t) - gammaln(shape))  # density of log G
            if level_sd > 0:  # convolved with the density of log L
                kernel = np.exp(-0.5 * ((t[:, None] - t[None, :] + level_sd**2 / 2) / level_sd) ** 2)
                weight = kernel @ weight
        weight = weight / weight.sum()
    out = np.empty_like(mu)
    for start in range(0, len(mu), _ROWS_PER_CHUNK):  # rows x nodes at a time, bounded memory
        rows = slice(start, start + _ROWS_PER_CHUNK)
        lam = mu[rows, None] * np.exp(t)[None, :]
        log1p_mean = _poisson_log1p_table(lam) @ weight
        if positive:
            p_positive = (-np.expm1(-lam)) @ weight
            log1p_mean = np.where(p_positive > 1e-12, log1p_mean / np.maximum(p_positive, 1e-12), 0.0)
        out[rows] = log1p_mean
    return out


_ROWS_PER_CHUNK = 8192


def _poisson_log1p_table(lam: np.ndarray) -> np.ndarray:
    """E[log1p(Poisson(lambda))] elementwise: exact sums on a log grid of lambda up to 1e4, interpolated
    in log lambda; lambda log 2 below it, and the second-order expansion above it."""
    global _LOG1P_GRID
    if _LOG1P_GRID is None:
        from scipy.stats import poisson

        grid = np.logspace(-6, 4, 801)
        values = np.empty_like(grid)
        for i, g in enumerate(grid):
            k = np.arange(int(g + 12 * np.sqrt(g) + 40))
            values[i] = poisson.pmf(k, g) @ np.log1p(k)
        _LOG1P_GRID = (np.log(grid), values)
    log_grid, values = _LOG1P_GRID
    safe = np.maximum(lam, 1e-300)
    inside = np.interp(np.log(safe), log_grid, values)
    above = np.log1p(lam) - lam / (2 * (1 + lam) ** 2)
    return np.where(lam < 1e-6, lam * np.log(2.0), np.where(lam > 1e4, above, inside))


_LOG1P_GRID: tuple[np.ndarray, np.ndarray] | None = None


def poisson_deviance(y: np.ndarray, mu: np.ndarray) -> float:
    mu = np.maximum(mu, 1e-9)
    return float(2 * (np.where(y > 0, y * np.log(np.maximum(y, 1e-12) / mu), 0.0) - (y - mu)).sum())


def metrics(
    logs: pd.DataFrame, mu: np.ndarray, train_means: dict[str, float], overdispersion: float = 0.0, level_sd: float = 0.0
) -> dict[str, dict[str, Any]]:
    """The scores of predictions ``mu`` of the logs' on-sale rows, on all weeks and on sale weeks; deviance
    is explained against the training logs' mean units of the same kind of week (``train_means``), R² log1p
    scores the expected log1p(units) under the model's ``overdispersion`` and ``level_sd``."""
    y_all = logs["units"].to_numpy(np.float64)
    on_sale = logs["launched"].to_numpy() > 0
    out = {}
    for name, keep in (("all_weeks", on_sale), ("sale_weeks", on_sale & (y_all > 0))):
        y, m = y_all[keep], mu[keep]
        out[name] = {
            "rows": int(keep.sum()),
            "r2_log1p": r2(np.log1p(y), expected_log1p(m, overdispersion, level_sd, positive=name == "sale_weeks")),
            "r2_log1p_of_mean": r2(np.log1p(y), np.log1p(m)),
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
    per on-sale week (the predictor's card's when ``train_logs`` is None); each model's level spread for
    R² log1p is measured on ``train_logs`` (0 without them)."""
    if "units" not in logs:
        raise ValueError("a backtest needs a units column in the logs")
    card = _card(predictor)
    logs = _with_training_season(logs, card, train_logs)
    train_means = _training_means(card, train_logs, logs)
    predictions = {"closed_loop": rollout(logs, predictor.predict_frame).units, "open_loop": predictor.predict_frame(logs)["demand"]}
    k = float(getattr(predictor, "demand_overdispersion", 0.0))
    spread = 0.0 if train_logs is None else closed_loop_level_log_sd(predictor, train_logs) or 0.0
    report: dict[str, Any] = {
        "rows": len(logs), "products": int(logs["product_id"].nunique()), "training_mean_units": train_means,
        "season": logs.attrs.get("season_source", "logs"), "distribution": {"predictor": {"overdispersion": k, "level_log_sd": spread}},
        "protocols": {p: {"predictor": metrics(logs, mu, train_means, k, spread)} for p, mu in predictions.items()},
    }  # fmt: skip
    if train_logs is not None:
        train = with_season(train_logs, season_profile(train_logs)) if train_logs.attrs.get("season_derived") else train_logs
        encoder = encoder or _frozen_encoder()
        for name, text in zip(BASELINES, ("none", "tfidf", "encoder")):
            baseline = ClosedLoopBaseline(text, seed, encoder).fit(train)
            predictions[name] = mu = baseline.predict(logs)
            report["distribution"][name] = {"overdispersion": baseline.overdispersion, "level_log_sd": baseline.level_log_sd}
            report["protocols"]["closed_loop"][name] = metrics(logs, mu, train_means, baseline.overdispersion, baseline.level_log_sd)
    report["protocols"]["known_level"] = {"predictor": metrics(logs, _at_known_level(logs, predictions["closed_loop"]), train_means, k)}
    report["_predictions"] = predictions  # for the plot; dropped before JSON
    return report


def _at_known_level(logs: pd.DataFrame, mu: np.ndarray) -> np.ndarray:
    """Closed-loop predictions rescaled to each product's observed total over its on-sale weeks: the
    predictor's week-to-week shape at a known level, a bound on what reading the level better can gain."""
    on_sale = logs["launched"].to_numpy() > 0
    product = pd.factorize(logs["product_id"])[0]
    observed = np.bincount(product[on_sale], logs["units"].to_numpy(np.float64)[on_sale], product.max() + 1)
    predicted = np.bincount(product[on_sale], mu[on_sale], product.max() + 1)
    return mu * (observed / np.maximum(predicted, 1e-12))[product]


def closed_loop_level_log_sd(predictor: Any, logs: pd.DataFrame) -> float | None:
    """How far off the predictor reads a product's demand level in the closed loop the env runs: the
    standard deviation over the products of ``logs`` (held out of its training) of log(true / predicted
    demand), each summed over the product's weeks (true: the logs' expected demand where they have it,
    else units sold). ``finetune`` records it on the card; the
    learned market's model draws use it (``agents.evaluation.uncertainty``)."""
    logs = _with_training_season(logs, _card(predictor), None)
    return demand_level_log_sd(logs, rollout(logs, predictor.predict_frame).units)


def _overdispersion(y: np.ndarray, mu: np.ndarray, product: np.ndarray) -> float:
    """A baseline's k around its training predictions, measured as a fine-tune measures a predictor's."""
    import torch
    from launchsim.models.finetune import overdispersion

    codes = torch.as_tensor(pd.factorize(product)[0])
    return overdispersion(torch.as_tensor(y, dtype=torch.float64), torch.as_tensor(mu, dtype=torch.float64), codes)


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
