"""The head of a frame in results.json: a MultiIndex's row labels are read from its
levels at the rows shown, and read exactly as iterating the index reads them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.artifacts.results import HEAD_COLUMNS, HEAD_ROWS, _cell, _head, _label


def _reference(value: pd.DataFrame | pd.Series) -> dict[str, Any]:
    """The head as it was written before: the index iterated whole, named tuples."""
    frame = value.to_frame() if isinstance(value, pd.Series) else value
    part = frame.iloc[:HEAD_ROWS, :HEAD_COLUMNS]
    return {
        "index": [str(n) for n in part.index.names if n is not None],
        "columns": [_label(c) for c in part.columns],
        "rows": [[_label(i), *(_cell(v) for v in row)]
                 for i, row in zip(part.index, part.itertuples(index=False), strict=True)],
        "more_columns": max(0, frame.shape[1] - HEAD_COLUMNS),
    }


LEVELS = st.sampled_from(["dates", "hours", "text", "ints", "floats", "missing"])


def _level(kind: str, n: int) -> pd.Index:
    if kind == "dates":
        return pd.date_range("2019-01-31", periods=n, freq="ME")
    if kind == "hours":
        return pd.date_range("2019-01-01 09:30", periods=n, freq="h", tz="UTC")
    if kind == "text":
        return pd.Index([f"T{i:03d}" for i in range(n)])
    if kind == "ints":
        return pd.Index(np.arange(n, dtype="int64") * 7)
    if kind == "floats":
        return pd.Index(np.linspace(-1.5, 2.5, n))
    return pd.Index([None if i % 3 == 0 else f"x{i}" for i in range(n)], dtype=object)


@settings(max_examples=60, deadline=None)
@given(st.lists(LEVELS, min_size=1, max_size=3), st.integers(1, 9), st.integers(1, 11),
       st.integers(0, 2**32 - 1))
def test_a_multiindex_head_reads_as_the_whole_index_iterated(kinds: list[str], rows: int,
                                                             columns: int, seed: int) -> None:
    index = pd.MultiIndex.from_product([_level(k, 3) for k in kinds],
                                       names=[f"l{i}" if i else None for i in range(len(kinds))])
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(index))[:rows]
    frame = pd.DataFrame(rng.normal(size=(len(order), columns)), index=index[order],
                         columns=[f"c{j}" for j in range(columns)])
    frame["when"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(order, unit="D")
    assert _head(frame) == _reference(frame)
    assert _head(frame["c0"]) == _reference(frame["c0"])


def test_a_panel_head_shows_its_first_rows_by_date_and_ticker() -> None:
    dates = pd.date_range("2019-01-31", periods=400, freq="ME")
    index = pd.MultiIndex.from_product([dates, ["AAPL", "MSFT"]], names=["date", "ticker"])
    frame = pd.DataFrame({"pred": np.arange(len(index), dtype="float64") / 8}, index=index)
    head = _head(frame)
    assert head["index"] == ["date", "ticker"]
    assert head["rows"][:2] == [["2019-01-31 / AAPL", "0"], ["2019-01-31 / MSFT", "0.125"]]
    assert len(head["rows"]) == HEAD_ROWS and head == _reference(frame)


def test_a_plain_index_and_a_series_are_unchanged() -> None:
    frame = pd.DataFrame({"a": [1.0, np.nan], "b": ["x", "y"]},
                         index=pd.DatetimeIndex(["2020-01-01", "2020-01-01 12:00"]))
    assert _head(frame) == _reference(frame)
    assert _head(frame)["rows"] == [["2020-01-01", "1", "x"], ["2020-01-01T12:00:00", "NaN", "y"]]
    assert _head(frame["b"]) == _reference(frame["b"])
