"""Reading a user's own launch logs (CSV or Parquet) into the canonical training schema.

Required: ``product_id``, ``description``, ``week`` (an integer week or a date) and ``price`` (or
``price_ratio`` with ``reference_price``), plus at least one target: ``units`` (demand head),
``impressions`` + ``clicks`` (CTR head), ``bundled_units`` (bundle take), ``new_customers``.
Aliases are accepted (``sku``, ``week_start``, ``median_price``, ...), so the Online Retail file
reads as it is. Missing context columns get neutral defaults (see ``OPTIONAL``); a product's missing
weeks between its first and last row count as zero units (``zero_fill``). A product whose
``market_estimate_basis`` is ``weekly`` (a steady staple) gets 0 adopters, as the env passes its
market. Problems raise a ``LogsError`` naming the file, the column and the first bad row (1-based
data row).
"""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pandas as pd
from launchsim.scenarios.schema import LARGEST, EstimateBasis

from launchsim.errors import LogsError

ALIASES = {
    "sku": "product_id", "product": "product_id", "item_id": "product_id",
    "title": "description", "text": "description", "product_text": "description",
    "week_start": "week", "date": "week",
    "median_price": "price", "unit_price": "price",
    "quantity": "units", "sales": "units",
    "creative": "creative_text", "ad_text": "creative_text", "partner": "partner_text",
}  # fmt: skip
CARRIED_FORWARD = ("product_id", "description", "price", "price_ratio", "reference_price", "market_estimate_basis")
BASES = typing.get_args(EstimateBasis)  # what a product's market_estimate counts, as in a scenario (docs/MARKET.md)
TARGET_COLUMNS = ("units", "impressions", "clicks", "bundled_units", "new_customers")
MAX_SPAN_WEEKS = 2600  # 50 years: a week further from the file's first one is a typo, not history
NON_NEGATIVE = ("market_estimate", "adstock", "competitor_strength", "competitor_price_ratio", "weeks_since_flash", "adopters", "holiday", "flash")
OPTIONAL = {  # column -> default when absent (None = derived, see read_logs)
    "creative_text": "", "partner_text": "", "launched": 1.0, "step_weeks": 1.0, "holiday": 0.0, "flash": 0.0,
    "weeks_since_flash": 1e4, "competitor_strength": 0.0, "competitor_price_ratio": 0.0, "adstock": 0.0,
    "bundle_discount": 0.0, "market_estimate": 0.0, "season": None, "adopters": None, "reference_price": None, "price_ratio": None,
}  # fmt: skip


def read_logs(path: str | Path, zero_fill: bool = True) -> pd.DataFrame:
    """Read and validate a logs file into the canonical schema (one row per product-week)."""
    path = Path(path)
    if not path.exists():
        raise LogsError(f"{path}: file not found")
    try:
        if path.suffix == ".parquet":
            raw = pd.read_parquet(path)
        elif path.suffix == ".csv":
            raw = pd.read_csv(path)
        else:
            raise LogsError(f"{path}: expected a .csv or .parquet file, found {path.suffix or 'no extension'!r}")
    except LogsError:
        raise
    except Exception as err:  # pandas/pyarrow raise many types for unreadable files
        raise LogsError(f"{path}: cannot read as {path.suffix[1:]}: {str(err).splitlines()[0]}") from err
    return canonical_logs(raw, source=str(path), zero_fill=zero_fill)


def canonical_logs(raw: pd.DataFrame, source: str = "<logs>", zero_fill: bool = True) -> pd.DataFrame:
    """Validate a DataFrame of logs and bring it to the canonical schema (see module docstring)."""
    df = raw.rename(columns={k: v for k, v in ALIASES.items() if k in raw.columns and v not in raw.columns}).copy()
    df.index = pd.RangeIndex(len(df))
    if df.empty:
        raise LogsError(f"{source}: no rows (expected one row per product and week)")
    for col in ("product_id", "description", "week"):
        if col not in df:
            raise LogsError(f"{source}: column {col!r}: missing (expected columns include product_id, description, week, price, units)")
    if "price" not in df and not {"price_ratio", "reference_price"} <= set(df):
        raise LogsError(f"{source}: column 'price': missing (or give price_ratio and reference_price)")
    if not any(t in df for t in TARGET_COLUMNS):
        raise LogsError(f"{source}: no target column: expected at least one of {', '.join(TARGET_COLUMNS)}")
    if "clicks" in df and "impressions" not in df:
        raise LogsError(f"{source}: column 'impressions': missing, but 'clicks' is given (CTR needs both)")

    ids = df["product_id"]
    _check(source, "product_id", ids.isna() | (ids.astype(str).str.strip() == ""), "empty product id")
    df["product_id"] = ids.astype(str).str.strip()
    text = df["description"]
    _check(source, "description", text.isna() | (text.astype(str).str.strip() == ""), "empty text")
    df["description"] = text.astype(str).str.strip()
    for col in ("creative_text", "partner_text"):
        df[col] = df[col].fillna("").astype(str).str.strip() if col in df else ""

    df["week"], week_of_year = _weeks(df["week"], source)
    numeric = [c for c in ("price", "price_ratio", "reference_price", *TARGET_COLUMNS, *OPTIONAL) if c in df and c not in ("creative_text", "partner_text")]
    for col in numeric:
        converted = pd.to_numeric(df[col], errors="coerce")
        _check(source, col, converted.isna() & df[col].notna(), "not a number", found=df[col])
        _check(source, col, converted.notna() & ~np.isfinite(converted.astype(float)), "not a finite number", found=df[col])
        _check(source, col, converted.abs() > LARGEST, f"too large (at most {LARGEST:.0e})", found=df[col])
        df[col] = converted.astype(float)
    for col in ("price", "price_ratio", "reference_price"):
        if col in df:
            _check(source, col, df[col].isna() | (df[col] <= 0), "expected a positive price", found=df[col])
    for col in TARGET_COLUMNS:
        if col in df:
            _check(source, col, df[col] < 0, "expected a count ≥ 0", found=df[col])
    for col in NON_NEGATIVE:
        if col in df:
            _check(source, col, df[col] < 0, "expected a value ≥ 0", found=df[col])
    if "launched" in df:
        _check(source, "launched", ~df["launched"].isin([0.0, 1.0]) & df["launched"].notna(), "expected 0 (not on sale) or 1 (on sale)", found=df["launched"])
    if "bundle_discount" in df:
        _check(source, "bundle_discount", df["bundle_discount"] >= 1, "expected a discount below 1", found=df["bundle_discount"])
    if "clicks" in df:
        _check(source, "clicks", df["clicks"] > df["impressions"], "more clicks than impressions", found=df["clicks"])
    dup = df.duplicated(["product_id", "week"])
    _check(source, "week", dup, "a second row for the same product and week", found=df["week"])
    if "step_weeks" in df:
        _check(source, "step_weeks", df["step_weeks"].isna() | (df["step_weeks"] < 1) | (df["step_weeks"] % 1 != 0), "expected a whole number of weeks ≥ 1", found=df["step_weeks"])
        step = df["step_weeks"].groupby(df["product_id"]).transform("first")
        _check(source, "step_weeks", df["step_weeks"] != step, "a product's step length changes", found=df["step_weeks"])
        offset = df["week"] - df["week"].groupby(df["product_id"]).transform("min")
        _check(source, "week", offset % step != 0, "not on the product's grid of step_weeks from its first week", found=df["week"])

    if "market_estimate_basis" in df:
        basis = df["market_estimate_basis"].fillna("total").astype(str).str.strip().str.lower()
        _check(source, "market_estimate_basis", ~basis.isin(BASES), "expected 'total' or 'weekly'", found=df["market_estimate_basis"])
        df["market_estimate_basis"] = basis

    df["week_of_year"] = week_of_year
    if zero_fill and "units" in df:
        df = _zero_fill(df)
    if "reference_price" not in df:
        df["reference_price"] = df.groupby("product_id")["price"].transform("median")
    if "price_ratio" not in df:
        df["price_ratio"] = df["price"] / df["reference_price"]
    if "price" not in df:
        df["price"] = df["price_ratio"] * df["reference_price"]
    for col, default in OPTIONAL.items():
        if default is not None:  # an absent column, or an empty cell of a context column: its neutral default
            df[col] = df[col].fillna(default) if col in df else default
    df = df.sort_values(["product_id", "week"]).reset_index(drop=True)
    if "adopters" not in df:  # cumulative first purchases before the week; units stand in without new_customers
        first = df["new_customers"] if "new_customers" in df else df.get("units", pd.Series(0.0, index=df.index))
        df["adopters"] = first.fillna(0).groupby(df["product_id"]).cumsum() - first.fillna(0)
    if "market_estimate_basis" in df:  # a weekly pool has no adoption state: the env passes its market 0
        df.loc[df["market_estimate_basis"] == "weekly", "adopters"] = 0.0
    derived = "season" not in df
    if derived:
        df = with_season(df, season_profile(df))
    df.attrs["season_derived"] = derived  # a model scored on other logs takes its season from its training logs
    return df


def season_profile(df: pd.DataFrame) -> np.ndarray:
    """A season index for each week of year (52 values) from logs: mean units per product-week in that
    week, relative to the mean over weeks (1.0 = an average week), 3-week smoothed; 1.0 for a week
    without rows, and everywhere when the logs have no units."""
    if "units" not in df:
        return np.ones(52)
    by_week = df.groupby("week_of_year")["units"].mean()
    smooth = (by_week / by_week.mean()).rolling(3, center=True, min_periods=1).mean()
    return smooth.reindex(range(1, 53)).fillna(1.0).to_numpy(np.float64)


def with_season(df: pd.DataFrame, profile: np.ndarray) -> pd.DataFrame:
    """The logs with their ``season`` read from a profile of 52 weekly values."""
    out = df.copy()
    out["season"] = np.asarray(profile, dtype=np.float64)[out["week_of_year"].to_numpy(int) - 1]
    return out


def _weeks(col: pd.Series, source: str) -> tuple[pd.Series, pd.Series]:
    """Week indices (0 = the earliest week in the file) and week of year (1..52)."""
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        _check(source, "week", numeric < 0, "expected a week ≥ 0", found=col)
        _check(source, "week", (numeric % 1 != 0) | (numeric > LARGEST), "expected a whole week number", found=col)
        weeks = numeric.astype(np.int64)
        _check_span(source, weeks - weeks.min(), col)
        return weeks - weeks.min(), ((weeks % 52) + 1).astype(int)
    dates = pd.to_datetime(col, errors="coerce")
    _check(source, "week", dates.isna(), "neither a week number nor a date", found=col)
    start = dates.min()
    weeks = ((dates - start).dt.days // 7).astype(int)
    _check_span(source, weeks, col)
    return weeks, dates.dt.isocalendar().week.clip(upper=52).astype(int)


def _check_span(source: str, weeks: pd.Series, found: pd.Series) -> None:
    """The zero-fill lays out every week of a product's span: a week decades away is refused here."""
    far = weeks > MAX_SPAN_WEEKS
    _check(source, "week", far, f"more than {MAX_SPAN_WEEKS:,} weeks after the file's first week", found=found)


def _zero_fill(df: pd.DataFrame) -> pd.DataFrame:
    """Add zero-unit rows for a product's missing steps between its first and last logged week (a step
    is the product's ``step_weeks``, 1 when the logs do not say)."""
    frames = []
    for _, g in df.groupby("product_id", sort=False):
        step = int(g["step_weeks"].iloc[0]) if "step_weeks" in g else 1
        full = pd.RangeIndex(g["week"].min(), g["week"].max() + 1, step, name="week")
        g = g.set_index("week").reindex(full)
        filled = g["units"].isna()
        if not filled.any():
            frames.append(g.reset_index())
            continue
        keep = [c for c in g.columns if c in CARRIED_FORWARD or (c in OPTIONAL and c != "adopters")]
        g[keep] = g[keep].ffill()
        for col in g.columns:
            if col in TARGET_COLUMNS:
                g.loc[filled, col] = 0.0
            elif col not in keep and col != "week_of_year":
                g.loc[filled, col] = np.nan  # a count we know nothing about in a week without sales
        first_woy = int(g["week_of_year"].iloc[0])  # a product's range starts at a logged week
        g["week_of_year"] = (first_woy - 1 + step * np.arange(len(g))) % 52 + 1
        frames.append(g.reset_index())
    return pd.concat(frames, ignore_index=True)


def _check(source: str, column: str, bad: pd.Series, problem: str, found: pd.Series | None = None) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        item = found.iloc[row] if found is not None else None
        item = item.item() if hasattr(item, "item") else item  # numpy scalars print as plain numbers
        value = f" (found {item!r})" if found is not None else ""
        more = int(bad.sum()) - 1
        tail = f"; {more} more row(s) like it" if more else ""
        raise LogsError(f"{source}: column {column!r}, row {row + 1}: {problem}{value}{tail}")
