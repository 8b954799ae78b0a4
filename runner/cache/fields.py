"""The content hash of one context field: equal content, equal hash; any change, another.

A field's hash is the sha256 of a canonical description of its value, never of its
stored file: Parquet bytes change with the pyarrow version (its ``created_by``, pandas'
metadata), and a cache shared by a laptop and a pod must give both the same keys.

Frames and series hash their labels (names, dtypes, index values; a MultiIndex by its
levels and codes) in canonical JSON, their ``attrs``, and their data:

- a frame whose columns all have one NumPy dtype (prices, features): one block of
  raw bits, row by row;
- otherwise column by column. NumPy-backed columns (floats, ints, bools, datetimes):
  their raw bits, so a changed cell, even ``0.0`` to ``-0.0``, changes the hash;
- pandas strings (the default string dtype): the texts, missing ones as null;
- other extension columns (categorical, nullable): ``hash_pandas_object``, exact for
  them, with the dtype and where values are missing beside it;
- object columns: JSON when their values are plain (strings, mostly), else each
  value's pickle; both tell ``1`` from ``"1"`` (``hash_pandas_object`` does not).

Other values: JSON for plain data, dicts in their own order (``1``, ``"1"`` and ``1.0``
differ; so do ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}``: a stage may iterate over
the keys), the bits of NumPy arrays, and their pickle for anything else. Equal values
may describe differently (a set pickled in another order, two equal MultiIndexes with
levels in another order): that costs a cache miss, never a wrong hit.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any, cast

import numpy as np
import pandas as pd

from runner.artifacts.signing import canonical_json
from runner.digest import sha256

__all__ = ["field_digest"]


def field_digest(value: Any) -> str:
    """The hex sha256 of ``value``'s canonical description (see the module docstring)."""
    return sha256(canonical_json(_describe(value)))


def _describe(value: Any) -> Any:
    """A JSON-plain description of ``value`` whose sha256 stands for it."""
    kind = type(value)
    if kind is pd.DataFrame:
        return {"frame": {
            "columns": _labels(value.columns),
            "index": _labels(value.index),
            "data": _frame_data(value),
            **({"attrs": _describe(value.attrs)} if value.attrs else {}),
        }}
    if kind is pd.Series:
        return {"series": {"name": _label(value.name), "index": _labels(value.index),
                           "data": _column(value),
                           **({"attrs": _describe(value.attrs)} if value.attrs else {})}}
    if isinstance(value, np.ndarray) and value.dtype.kind != "O":
        return {"ndarray": {"dtype": value.dtype.str, "shape": list(value.shape),
                            "data": _bits(value)}}
    if _plain(value):  # in its own order: a stage may iterate over a dict's keys
        return {"json": sha256(json.dumps(value, separators=(",", ":"), ensure_ascii=True,
                                          allow_nan=False).encode())}
    return {"pickle": {"type": f"{kind.__module__}.{kind.__qualname__}",
                       "data": sha256(pickle.dumps(value, protocol=5))}}


def _plain(value: Any, depth: int = 0) -> bool:
    """JSON that describes the value exactly (types kept apart by JSON's own)."""
    if depth > 50:
        return False
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value) and not (value == 0.0 and math.copysign(1.0, value) < 0)
    if type(value) is list:
        return all(_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def _bits(array: np.ndarray) -> str:
    """The sha256 of an array's memory, in C order (copied only when not contiguous)."""
    contiguous = np.ascontiguousarray(array)
    if not contiguous.size:
        return sha256(b"")
    # hashlib reads the buffer in place: no copy of a large column
    return sha256(cast(bytes, contiguous.view(np.uint8).reshape(-1).data))


def _frame_data(frame: pd.DataFrame) -> Any:
    """A frame's data: one block of bits, row by row, when every column has the same
    NumPy dtype (prices, features: one hash, no Series per column); else column by
    column."""
    dtypes = set(frame.dtypes)
    if len(dtypes) == 1 and frame.shape[1] > 1:
        (dtype,) = dtypes
        if isinstance(dtype, np.dtype) and dtype.kind not in "OmM":
            return {"block": dtype.str, "bits": _bits(frame.to_numpy(dtype=dtype))}
    return [_column(frame.iloc[:, i]) for i in range(frame.shape[1])]


def _column(column: pd.Series) -> dict[str, Any]:
    """One column's data (its labels are described with the frame)."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return {"dtype": dtype.str, "bits": _bits(column.to_numpy(copy=False))}
    if isinstance(dtype, np.dtype):  # object
        return {"dtype": "object", "values": _objects(column.to_list())}
    if isinstance(dtype, pd.StringDtype):  # pandas' own strings: the texts, missing as null
        texts = [t if isinstance(t, str) else None for t in column.tolist()]
        return {"dtype": str(dtype), "values": sha256(canonical_json(texts))}
    hashed = pd.util.hash_pandas_object(column, index=False, categorize=False)
    return {"dtype": str(dtype), "hash": _bits(hashed.to_numpy()),
            "na": _bits(column.isna().to_numpy())}


def _objects(values: list[Any]) -> str:
    """The hash of an object column's values: canonical JSON when they are plain data
    (strings, mostly), else each value's own pickle. One pickle of the whole list would
    depend on which equal strings are the same object (pickle's memo)."""
    if _plain(values):
        return sha256(canonical_json(values))
    parts = [pickle.dumps(v, protocol=5) for v in values]
    return sha256(b"".join(len(p).to_bytes(8, "little") + p for p in parts))


def _labels(index: pd.Index) -> dict[str, Any]:
    """An index: its type, names and values. A MultiIndex by its levels' values and its
    codes (a frame of 50,000 rows has 20 tickers: no 50,000 strings to hash), its unused
    levels left out (a frame read back from storage has none), an empty integer index as
    an empty range (how an empty frame reads back); two equal
    MultiIndexes whose levels are ordered differently hash apart: a miss, never a
    wrong hit."""
    empty = len(index) == 0 and index.dtype == np.int64  # stored empty, read back as Index
    described: dict[str, Any] = {"type": "RangeIndex" if empty else type(index).__name__,
                                 "names": [_label(n) for n in index.names]}
    if empty:
        described["range"] = [0, 0, 1]
    elif isinstance(index, pd.RangeIndex):  # no data to hash: its three numbers say it all
        described["range"] = [index.start, index.stop, index.step]
    elif isinstance(index, pd.MultiIndex):
        # without the levels no row uses: a stored frame (Parquet) keeps only the used ones
        index = index.remove_unused_levels()
        described["levels"] = [_values(level) for level in index.levels]
        described["codes"] = [_bits(np.asarray(codes)) for codes in index.codes]
    else:
        described["values"] = _values(index)
    freq = getattr(index, "freqstr", None)
    if freq:
        described["freq"] = freq
    return described


def _values(index: pd.Index) -> dict[str, Any]:
    """The values of a flat index, as a column's data is described."""
    dtype = index.dtype
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return {"dtype": dtype.str, "bits": _bits(index.to_numpy(copy=False))}
    if isinstance(dtype, np.dtype):
        return {"dtype": "object", "values": _objects(index.tolist())}
    if isinstance(dtype, pd.StringDtype):
        texts = [t if isinstance(t, str) else None for t in index.tolist()]
        return {"dtype": str(dtype), "values": sha256(canonical_json(texts))}
    return _column(pd.Series(index, copy=False))


def _label(label: Any) -> Any:
    """A name or label as JSON that keeps its type (``1`` vs ``"1"`` vs ``(1,)``)."""
    if _plain(label):
        return label if not isinstance(label, list) else {"list": label}
    if isinstance(label, tuple):
        return {"tuple": [_label(v) for v in label]}
    try:
        return {"repr": f"{type(label).__qualname__}:{json.dumps(repr(label))}"}
    except (TypeError, ValueError):  # pragma: no cover - repr always gives a str
        return {"type": type(label).__qualname__}
