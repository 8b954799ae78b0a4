"""Context fields to files and back: Parquet for frames, JSON for plain data,
pickle (optionally signed) for everything else.

Parquet files are standard: pandas' own metadata carries the index and dtypes,
so pandas, pyarrow and DuckDB all read the frame the stage produced.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pandas.api.types import is_object_dtype

from runner.errors import IntegrityError

__all__ = ["KEY_ENV", "Encoded", "decode", "encode", "sha256"]

KEY_ENV = "RUNNER_ARTIFACT_KEY"
SIGNED = b"RUNNER-PICKLE-HMAC-SHA256\n"
PARQUET_OPTIONS: dict[str, Any] = {"use_dictionary": False, "compression": "snappy"}
"""Dictionary encoding rarely pays on floats and halves write speed; snappy is cheap."""


@dataclass(frozen=True)
class Encoded:
    """One field ready to be written: its format and how to write it to a file."""

    format: str  # parquet | series | json | pickle
    write: Callable[[Any], None]
    rows: int | None = None
    series_name: Any = None

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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key() -> bytes | None:
    key = os.environ.get(KEY_ENV)
    return key.encode() if key else None


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


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Any], None]:
    """Convert now (so a frame Parquet cannot hold falls back to pickle), write later.

    A default RangeIndex is kept as metadata, any other index as columns: every
    reader sees exactly the data columns, and pandas gets the index back.
    """
    table = pa.Table.from_pandas(frame, preserve_index=None)

    def write(fh: Any) -> None:
        pq.write_table(table, fh, **PARQUET_OPTIONS)

    return write


def _bytes_writer(data: bytes) -> Callable[[Any], None]:
    def write(fh: Any) -> None:
        fh.write(data)

    return write


def _pickle(value: Any) -> bytes:
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    key = _key()
    if key is None:
        return payload
    return SIGNED + hmac.new(key, payload, hashlib.sha256).digest() + payload


def encode(value: Any) -> Encoded:
    """The best format for one field's value."""
    if isinstance(value, pd.DataFrame) and not _has_object(value):
        try:
            return Encoded("parquet", _parquet_writer(value), rows=len(value))
        except (pa.ArrowException, TypeError, ValueError):
            pass  # mixed-type object columns and the like: pickle keeps them exactly
    elif isinstance(value, pd.Series) and not _has_object(value.to_frame()) \
            and _is_plain(value.name):
        try:
            write = _parquet_writer(value.to_frame("value"))
            return Encoded("series", write, rows=len(value),
                           series_name=_plain_or_none(value.name))
        except (pa.ArrowException, TypeError, ValueError):
            pass
    elif _is_plain(value):
        return Encoded("json", _bytes_writer(json.dumps(value, separators=(",", ":")).encode()))
    return Encoded("pickle", _bytes_writer(_pickle(value)))


def _has_object(frame: pd.DataFrame) -> bool:
    """Object columns or labels: Parquet would turn them into floats or strings."""
    return (any(is_object_dtype(dtype) for dtype in frame.dtypes)
            or any(is_object_dtype(level.dtype) for level in _levels(frame.index))
            or any(is_object_dtype(level.dtype) for level in _levels(frame.columns)))


def _levels(index: pd.Index) -> list[pd.Index]:
    return list(index.levels) if isinstance(index, pd.MultiIndex) else [index]


def _plain_or_none(name: Any) -> Any:
    return name if _is_plain(name) else None


def unpickle(data: bytes, *, where: str) -> Any:
    """Unpickle, refusing unsigned or tampered data when a key is set."""
    key = _key()
    signed = data.startswith(SIGNED)
    if signed:
        digest, payload = data[len(SIGNED):len(SIGNED) + 32], data[len(SIGNED) + 32:]
        if key is not None and not hmac.compare_digest(
            digest, hmac.new(key, payload, hashlib.sha256).digest()
        ):
            raise IntegrityError(f"{where}: pickle signature does not verify with "
                                 f"{KEY_ENV}; refusing to unpickle it", url=where)
    elif key is not None:
        raise IntegrityError(f"{where}: pickle is not signed but {KEY_ENV} is set; "
                             "refusing to unpickle it", url=where)
    else:
        payload = data
    try:
        return pickle.loads(payload)
    except Exception as exc:
        raise IntegrityError(f"{where}: cannot unpickle: {type(exc).__name__}: {exc}",
                             url=where) from exc


def decode(fmt: str, data: bytes, *, where: str, series_name: Any = None) -> Any:
    """Read one field back."""
    try:
        if fmt == "json":
            return json.loads(data)
        if fmt in ("parquet", "series"):
            frame = pq.read_table(io.BytesIO(data)).to_pandas()
            return frame["value"].rename(series_name) if fmt == "series" else frame
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise IntegrityError(f"{where}: cannot read {fmt}: {exc}", url=where) from exc
    if fmt == "pickle":
        return unpickle(data, where=where)
    raise IntegrityError(f"{where}: unknown format {fmt!r}", url=where)
