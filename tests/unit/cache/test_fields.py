"""A field's content hash: equal content gives an equal hash, in any process; a changed
cell, dtype, column name, index value or type gives another."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cache.fields import field_digest

ROWS = st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**40, 2**40),
                 st.booleans(), st.text(max_size=5))
FRAMES = st.lists(ROWS, min_size=1, max_size=30).map(
    lambda rows: pd.DataFrame({"a": np.array([r[0] for r in rows], dtype=float),
                               "b": np.array([r[1] for r in rows], dtype=np.int64),
                               "c": np.array([r[2] for r in rows], dtype=bool),
                               "d": pd.Series([r[3] for r in rows], dtype=object)}))


def _changed(old: object, col: str) -> object:
    """Another value of column ``col``'s type than ``old``."""
    if col == "a":
        return float(old) + 1.0 if np.isfinite(float(old)) and abs(float(old)) < 1e15 else 0.5
    if col == "b":
        return int(old) + 1
    if col == "c":
        return not old
    return str(old) + "x"


def _rebuilt(frame: pd.DataFrame) -> pd.DataFrame:
    """The same content in new memory, built column by column (no shared buffers)."""
    out = pd.DataFrame({c: frame[c].to_numpy(copy=True) for c in frame.columns},
                       index=frame.index.copy())
    return out.astype(frame.dtypes.to_dict())


@settings(max_examples=30, deadline=None)
@given(FRAMES)
def test_equal_frames_hash_equal(frame: pd.DataFrame) -> None:
    assert field_digest(frame) == field_digest(_rebuilt(frame))
    assert field_digest(frame) == field_digest(frame.copy(deep=True))


@settings(max_examples=30, deadline=None)
@given(FRAMES, st.data())
def test_any_changed_cell_changes_the_hash(frame: pd.DataFrame, data: st.DataObject) -> None:
    row = data.draw(st.integers(0, len(frame) - 1))
    col = data.draw(st.sampled_from(list(frame.columns)))
    changed = frame.copy(deep=True)
    changed.at[row, col] = _changed(changed.at[row, col], col)
    assert field_digest(changed) != field_digest(frame)


@settings(max_examples=25, deadline=None)
@given(FRAMES, st.data())
def test_labels_and_dtypes_count(frame: pd.DataFrame, data: st.DataObject) -> None:
    base = field_digest(frame)
    assert field_digest(frame.rename(columns={"a": "a2"})) != base
    assert field_digest(frame.astype({"b": "float64"})) != base
    assert field_digest(frame.astype({"b": "int32"})) != base
    shifted = frame.copy()
    shifted.index = shifted.index + data.draw(st.integers(1, 5))
    assert field_digest(shifted) != base
    named = frame.copy()
    named.index.name = "when"
    assert field_digest(named) != base
    assert field_digest(frame[list(reversed(frame.columns))]) != base


BLOCKS = st.integers(1, 20).flatmap(lambda n: st.lists(
    st.lists(st.floats(allow_nan=True), min_size=3, max_size=3), min_size=n, max_size=n)).map(
    lambda rows: pd.DataFrame(rows, columns=["x", "y", "z"],
                              index=pd.date_range("2024-01-01", periods=len(rows), name="d")))


@settings(max_examples=30, deadline=None)
@given(BLOCKS, st.data())
def test_a_frame_of_one_dtype_hashes_as_a_block(frame: pd.DataFrame,
                                                data: st.DataObject) -> None:
    """Prices and features (every column float) are hashed in one block: equal frames
    equal, a changed cell, column order or column name not."""
    assert field_digest(frame) == field_digest(_rebuilt(frame))
    row = data.draw(st.integers(0, len(frame) - 1))
    col = data.draw(st.sampled_from(["x", "y", "z"]))
    changed = frame.copy(deep=True)
    changed.at[changed.index[row], col] = _changed(changed.at[changed.index[row], col], "a")
    assert field_digest(changed) != field_digest(frame)
    assert field_digest(frame[["y", "x", "z"]]) != field_digest(frame)
    assert field_digest(frame.rename(columns={"z": "w"})) != field_digest(frame)


def test_pandas_strings_and_a_multiindex() -> None:
    text = pd.DataFrame({"t": pd.array(["a", None, "c"], dtype="string"), "v": [1, 2, 3]})
    assert field_digest(text) == field_digest(text.copy(deep=True))
    other = text.copy()
    other.loc[1, "t"] = "b"
    assert field_digest(other) != field_digest(text)
    assert field_digest(text.set_index("t")) != field_digest(other.set_index("t"))
    panel = pd.DataFrame({"v": [1.0, 2.0, 3.0, 4.0]}, index=pd.MultiIndex.from_product(
        [pd.date_range("2024-01-01", periods=2), ["A", "B"]], names=["date", "ticker"]))
    swapped = panel.copy()
    swapped.index = panel.index.set_levels(["A", "C"], level="ticker")
    assert field_digest(swapped) != field_digest(panel)
    assert field_digest(panel) == field_digest(panel.copy(deep=True))


def test_types_are_told_apart() -> None:
    digests = {field_digest(v) for v in (1, "1", 1.0, True, [1], (1,), {"1": 1}, None, 0.0,
                                         -0.0, np.array([1]), np.array([1.0]))}
    assert len(digests) == 12
    ints, strs = pd.DataFrame({"v": [1, 2]}, dtype=object), pd.DataFrame({"v": ["1", "2"]})
    assert field_digest(ints) != field_digest(strs)  # hash_pandas_object alone says equal
    assert field_digest(pd.Series([1.0], name="a")) != field_digest(pd.Series([1.0], name="b"))
    assert field_digest({"a": 1, "b": 2}) != field_digest({"b": 2, "a": 1})  # key order
    tagged = pd.DataFrame({"v": [1.0]})
    tagged.attrs["source"] = "vendor"
    assert field_digest(tagged) != field_digest(pd.DataFrame({"v": [1.0]}))


def test_indexes_of_every_kind() -> None:
    values = {"x": [1.0, 2.0, 3.0, 4.0]}
    multi = pd.MultiIndex.from_product([["2024-01-01", "2024-01-02"], ["A", "B"]],
                                       names=["date", "ticker"])
    dates = pd.date_range("2024-01-01", periods=4, name="date")
    kinds = [pd.DataFrame(values), pd.DataFrame(values, index=multi),
             pd.DataFrame(values, index=dates),
             pd.DataFrame(values, index=dates.tz_localize("UTC")),
             pd.DataFrame(values, index=pd.Index([0, 1, 2, 3])),
             pd.DataFrame(values, index=pd.CategoricalIndex(list("abcd")))]
    digests = [field_digest(k) for k in kinds]
    assert len(set(digests)) == len(digests)  # a RangeIndex and Index([0..3]) differ too
    assert digests == [field_digest(k.copy(deep=True)) for k in kinds]


def test_extension_columns() -> None:
    cats = pd.DataFrame({"c": pd.Categorical(["x", "y", "x"])})
    assert field_digest(cats) == field_digest(cats.copy(deep=True))
    assert field_digest(cats) != field_digest(pd.DataFrame({"c": ["x", "y", "x"]}))
    nullable = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    other = pd.DataFrame({"n": pd.array([1, 2, 3], dtype="Int64")})
    assert field_digest(nullable) != field_digest(other)


STABLE = ("import pandas as pd; from runner.cache.fields import field_digest; "
          "print(field_digest(pd.DataFrame({'a': [1.5, 2.5], 'b': ['x', 'y']}, "
          "index=pd.date_range('2024-01-01', periods=2, name='date'))))")


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_same_hash_in_another_process(seed: str) -> None:
    """Stable across processes and hash seeds (a laptop and a pod compute the same)."""
    here = field_digest(pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]},
                                     index=pd.date_range("2024-01-01", periods=2, name="date")))
    out = subprocess.run([sys.executable, "-c", STABLE], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin",
                                          "PYTHONPATH": ":".join(sys.path)})
    assert out.stdout.strip() == here
