"""Reading logs whose products are decided in steps of several weeks."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from launchsim.errors import LogsError
from launchsim.models.user_logs import canonical_logs, read_logs


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


_BAD_CELLS = {
    "units": ["-1", "inf", "-inf", "1e308", "nan?", "2e13"],
    "price": ["0", "-2.5", "inf", "1e308", "free"],
    "launched": ["7", "-1", "0.5"],
    "market_estimate": ["-5", "inf"],
    "product_id": [""],
    "week": ["10000000", "2.5", "-3"],
    "description": ["", "   "],
}


@settings(max_examples=120, deadline=None)
@given(st.integers(0, 11), st.sampled_from([(c, v) for c, values in _BAD_CELLS.items() for v in values]))
def test_a_bad_cell_is_refused_naming_its_column_and_row(tmp_path_factory, row, cell):
    # 12 rows of two products; one cell replaced by a bad value: the error names that column and row.
    column, value = cell
    rows = [{"product_id": f"p{i // 6}", "description": f"mug {i // 6}", "week": i % 6, "price": 4.5, "units": i, "launched": 1, "market_estimate": 900}
            for i in range(12)]  # fmt: skip
    rows[row][column] = value
    path = tmp_path_factory.mktemp("logs") / "logs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(LogsError) as err:
        read_logs(path)
    assert f"column '{column}', row {row + 1}:" in str(err.value), str(err.value)


def test_a_file_without_rows_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("product_id,description,week,price,units\n")
    with pytest.raises(LogsError, match="no rows"):
        read_logs(path)
