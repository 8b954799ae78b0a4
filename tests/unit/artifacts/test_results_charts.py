"""The charts in results.json: dates and numbers as each value alone would be written,
whatever the column's type or the index (the float and daily paths are vectorised)."""

from __future__ import annotations

import math

import hypothesis.strategies as st
import numpy as np
import pandas as pd
from hypothesis import given, settings

from runner.artifacts.results import _cell, _charts, _number


class _Charted:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def charts(self) -> dict[str, pd.DataFrame]:
        return {"equity": self.frame}


def _one_by_one(frame: pd.DataFrame) -> dict[str, object]:
    return {"dates": [_cell(pd.Timestamp(d)) for d in frame.index],
            "columns": {str(c): [_number(v) for v in frame[c]] for c in frame.columns}}


floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(floats, min_size=1, max_size=40), ints=st.booleans(),
       hours=st.lists(st.sampled_from([0, 0, 0, 9, 23]), min_size=40, max_size=40))
def test_charts_write_each_value_as_it_would_alone(values: list[float], ints: bool,
                                                    hours: list[int]) -> None:
    n = len(values)
    index = pd.DatetimeIndex(pd.bdate_range("2020-01-01", periods=n)
                             + pd.to_timedelta(hours[:n], unit="h"))
    frame = pd.DataFrame({"x": values, "y": np.arange(n) if ints else np.linspace(0, 1, n)},
                         index=index)
    assert _charts(_Charted(frame))["equity"] == _one_by_one(frame)


def test_a_daily_curve_is_written_as_days_and_rounded_numbers() -> None:
    frame = pd.DataFrame({"equity": [1.0, 1.1234567891, math.nan, math.inf]},
                         index=pd.bdate_range("2024-01-01", periods=4))
    drawn = _charts(_Charted(frame))["equity"]
    assert drawn == {"dates": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
                     "columns": {"equity": [1.0, 1.123457, None, None]}}
