"""Context fields to files and back: Parquet for frames, JSON for plain data,
pickle (signed, bound to its place: :mod:`runner.artifacts.signing`) for everything else.

Parquet files are standard: pandas' own metadata carries the index and dtypes,
so pandas, pyarrow and DuckDB all read the frame the stage produced.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import is_object_dtype

from runner.artifacts.signing import sign_pickle, verify_pickle
from runner.digest import sha256
from runner.errors import IntegrityError

__all__ = ["INLINE_MAX", "Encoded", "decode", "encode", "fits_inline", "pickle_signed", "sha256",
           "unpickle"]

INLINE_MAX = 256
"""Characters up to which a string field is kept in the checkpoint's record itself
(its journal line, run.json), like any number, flag or None, instead of a file."""

PARQUET_OPTIONS: dict[str, Any] = {"use_dictionary": False, "compression": "snappy"}
"""Dictionary encoding rarely pays on floats and halves write speed; snappy is cheap."""


@dataclass(frozen=True)
class Encoded:
    """One field ready to be written: its format and how to write it to a file."""

    format: str  # parquet | series | json | pickle
    write: Callable[[Any], None]
    rows: int | None = None
    series_name: Any = None
    write_file: Callable[[str], None] | None = None
    """Writes to a local path with the format library's own file (Parquet: Arrow's,
    about twice as fast as through a Python file object); None for small formats."""

    @property
    def suffix(self) -> str:
        return {"parquet": "parquet", "series": "parquet", "json": "json"}.get(
            self.format, "pkl")

    @property
    def data(self) -> bytes:
        """The encoded bytes (for small fields and tests; checkpoints stream instead)."""
        sink = io.BytesIO()
        self.write(sink)
        return sink.getvalue()


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Data that survives a JSON round trip exactly (no tuples, NaN or int keys)."""
    if depth > 50:
        return False
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is list:
        return all(_is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def fits_inline(value: Any) -> bool:
    """A small scalar that a JSON round trip keeps exactly (a counter, a flag, a short
    string): recorded inline, without a file of its own (see :data:`INLINE_MAX`)."""
    kind = type(value)
    if value is None or kind is bool:
        return True
    if kind is int:
        return bool(-(2**63) <= value < 2**63)
    if kind is float:
        return math.isfinite(value)
    return kind is str and len(value) <= INLINE_MAX


def _parquet_writers(frame: pd.DataFrame) -> tuple[Callable[[Any], None],
                                                   Callable[[str], None]]:
    """Convert now (so a frame Parquet cannot hold falls back to pickle), write later:
    to a file object, or to a local path through Arrow's own file.

    A default RangeIndex is kept as metadata, any other index as columns: every
    reader sees exactly the data columns, and pandas gets the index back.
    """
    table = pa.Table.from_pandas(frame, preserve_index=None)

    def write(fh: Any) -> None:
        pq.write_table(table, fh, **PARQUET_OPTIONS)

    def write_file(path: str) -> None:
        with pa.OSFile(path, "wb") as sink:
            pq.write_table(table, sink, **PARQUET_OPTIONS)

    return write, write_file


def _bytes_writer(data: bytes) -> Callable[[Any], None]:
    def write(fh: Any) -> None:
        fh.write(data)

    return write


def pickle_signed(value: Any, *, binding: Mapping[str, Any]) -> bytes:
    """``value`` pickled and signed for ``binding`` (what the file is and where)."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return sign_pickle(payload, binding=binding)


def encode(value: Any, *, binding: Mapping[str, Any]) -> Encoded:
    """The best format for one field's value; a pickle is signed for ``binding``."""
    if isinstance(value, pd.DataFrame) and not _has_object(value):
        try:
            write, write_file = _parquet_writers(value)
            return Encoded("parquet", write, rows=len(value), write_file=write_file)
        except (pa.ArrowException, TypeError, ValueError):
            pass  # mixed-type object columns and the like: pickle keeps them exactly
    elif isinstance(value, pd.Series) and not _has_object(value.to_frame()) \
            and _is_plain(value.name):
        try:
            write, write_file = _parquet_writers(value.to_frame("value"))
            return Encoded("series", write, rows=len(value),
                           series_name=_plain_or_none(value.name), write_file=write_file)
        except (pa.ArrowException, TypeError, ValueError):
            pass
    elif _is_plain(value):
        return Encoded("json", _bytes_writer(json.dumps(value, separators=(",", ":")).encode()))
    return Encoded("pickle", _bytes_writer(pickle_signed(value, binding=binding)))


def _has_object(frame: pd.DataFrame) -> bool:
    """Object columns or labels: Parquet would turn them into floats or strings."""
    return (any(is_object_dtype(dtype) for dtype in frame.dtypes)
            or any(is_object_dtype(level.dtype) for level in _levels(frame.index))
            or any(is_object_dtype(level.dtype) for level in _levels(frame.columns)))


def _levels(index: pd.Index) -> list[pd.Index]:
    return list(index.levels) if isinstance(index, pd.MultiIndex) else [index]


def _plain_or_none(name: Any) -> Any:
    return name if _is_plain(name) else None


def unpickle(data: bytes, *, where: str, binding: Mapping[str, Any],
             allow_unsigned: bool = False) -> Any:
    """Unpickle once the signature verifies for ``binding``; never before."""
    payload = verify_pickle(data, binding=binding, where=where, allow_unsigned=allow_unsigned)
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise IntegrityError(f"{where}: cannot unpickle: {type(exc).__name__}: {exc}",
                             url=where) from exc


THREADED_READ = 8 << 20
"""Parquet bigger than this (bytes) is read and converted on Arrow's threads; smaller,
on the caller's: a few small fields read faster without waking the pool."""


def decode(fmt: str, data: bytes, *, where: str, binding: Mapping[str, Any],
           allow_unsigned: bool = False, series_name: Any = None) -> Any:
    """Read one field back (its sha256 already checked against a verified index)."""
    try:
        if fmt == "json":
            return json.loads(data)
        if fmt in ("parquet", "series"):
            threads = len(data) > THREADED_READ  # small: no thread pool to wake
            frame = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=threads) \
                .to_pandas(use_threads=threads)
            return frame["value"].rename(series_name) if fmt == "series" else frame
    except (pa.ArrowException, ValueError, OSError, RecursionError, KeyError) as exc:
        raise IntegrityError(f"{where}: cannot read {fmt}: {exc}", url=where) from exc
    if fmt == "pickle":
        return unpickle(data, where=where, binding=binding, allow_unsigned=allow_unsigned)
    raise IntegrityError(f"{where}: unknown format {fmt!r}", url=where)
