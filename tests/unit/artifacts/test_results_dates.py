"""The charts' dates (results.json): daily data is written as days by one vectorised
call, and every index gets exactly the strings it got one label at a time (a day for
a midnight, the full timestamp otherwise)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given
from hypothesis import strategies as st

from runner.artifacts.results import _cell, _dates

UNITS = st.sampled_from(["s", "ms", "us", "ns"])


def _one_by_one(index: pd.Index) -> list[str]:
    """The reference: a day per label when every label is a naive midnight, else each
    label as the results write a single timestamp."""
    if isinstance(index, pd.DatetimeIndex) and index.tz is None \
            and bool((index == index.normalize()).all()):
        return list(index.strftime("%Y-%m-%d"))
    return [_cell(pd.Timestamp(d)) for d in index]


@given(st.lists(st.integers(-200_000, 2_500_000), min_size=1, max_size=40), UNITS,
       st.booleans())
def test_days_and_timestamps_read_as_one_by_one(hours: list[int], unit: str,
                                                midnights: bool) -> None:
    step = 24 if midnights else 1
    values = (np.array(hours, dtype="int64") * step).astype("timedelta64[h]") \
        + np.datetime64("1970-01-01T00", "h")
    index = pd.DatetimeIndex(values.astype(f"datetime64[{unit}]"))
    assert _dates(index) == _one_by_one(index)


def test_daily_business_days_are_days() -> None:
    index = pd.date_range("2019-01-01", periods=1742, freq="B")
    days = _dates(index)
    assert days[:2] == ["2019-01-01", "2019-01-02"] and len(days) == 1742


def test_aware_missing_and_early_dates() -> None:
    aware = pd.date_range("2019-01-01", periods=3, tz="UTC")
    assert _dates(aware) == [_cell(d) for d in aware]
    missing = pd.DatetimeIndex(["2020-01-01", None])
    assert _dates(missing) == [_cell(pd.Timestamp(d)) for d in missing]
    early = pd.DatetimeIndex(np.array(["0990-01-01", "0990-01-02"], dtype="datetime64[s]"))
    assert _dates(early) == ["0990-01-01", "0990-01-02"]  # as pandas writes the day
