"""Reading logs whose products are decided in steps of several weeks."""

from __future__ import annotations

import pandas as pd
import pytest

from launchsim.errors import LogsError
from launchsim.models.user_logs import canonical_logs


def two_week_logs(**change) -> pd.DataFrame:
    frame = pd.DataFrame({
        "product_id": ["a"] * 3 + ["b"] * 3, "description": ["mug"] * 3 + ["jug"] * 3,
        "week": [0, 2, 6, 0, 1, 2], "price": [10.0] * 6, "units": [3, 1, 2, 4, 5, 6], "step_weeks": [2] * 3 + [1] * 3,
    })  # fmt: skip
    return frame.assign(**change)


def test_zero_fill_adds_only_the_missing_steps_of_each_product():
    df = canonical_logs(two_week_logs())
    a = df[df["product_id"] == "a"]
    assert a["week"].tolist() == [0, 2, 4, 6] and a["units"].tolist() == [3, 1, 0, 2]
    assert a["week_of_year"].diff().dropna().eq(2).all()
    assert df[df["product_id"] == "b"]["week"].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"week": [0, 3, 6, 0, 1, 2]}, "column 'week', row 2: not on the product's grid of step_weeks"),
        ({"step_weeks": [2, 1, 2, 1, 1, 1]}, "column 'step_weeks', row 2: a product's step length changes"),
        ({"step_weeks": [2, 2, 2, 0.5, 0.5, 0.5]}, "column 'step_weeks', row 4: expected a whole number of weeks"),
    ],
    ids=["off_grid_week", "changing_step", "fractional_step"],
)
def test_bad_steps_name_the_column_and_row(change, message):
    with pytest.raises(LogsError, match=message):
        canonical_logs(two_week_logs(**change))


def test_a_weekly_estimate_logs_no_buyers_so_far():
    # As the env passes a market for a product whose estimate counts weekly buyers (a steady staple).
    df = canonical_logs(two_week_logs(market_estimate_basis=["weekly"] * 3 + [" Total "] * 3))
    a, b = df[df["product_id"] == "a"], df[df["product_id"] == "b"]
    assert len(a) == 4 and (a["market_estimate_basis"] == "weekly").all()  # carried into the zero-filled week
    assert (a["adopters"] == 0).all() and b["adopters"].tolist() == [0, 4, 9]
    with pytest.raises(LogsError, match="column 'market_estimate_basis', row 1: expected 'total' or 'weekly' \\(found 'daily'\\)"):
        canonical_logs(two_week_logs(market_estimate_basis=["daily"] * 6))
