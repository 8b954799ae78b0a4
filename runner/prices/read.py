"""Read a price file, wide or long, into wide daily prices.

Only shapes the table: which column holds the dates, whether the file is wide (one
column per ticker) or long (a ticker and a price column), and the refusals that no
cleaning could fix (:class:`~runner.errors.DataError`). Missing, non-positive or
constant prices and duplicate dates are left to :mod:`runner.prices.prepare`, so that
``dataops.validate`` still sees the file as it is.
"""

from __future__ import annotations

import csv
import io
import re
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from runner.digest import sha256_file
from runner.errors import DataError
from runner.words import plural

__all__ = ["DATE_NAMES", "EXPECTED", "PRICE_NAMES", "TICKER_NAMES", "file_version",
           "parse_prices", "read_price_file"]

EXPECTED = ("wide: a date column, then one column of adjusted closes per ticker "
            "(date,AAPL,MSFT); or long: one row per date and ticker (date,ticker,close)")
"""The accepted shapes, in a line: every refusal of a file's shape ends with it."""

DATE_NAMES = ("date", "datetime", "timestamp", "time", "day", "trade_date", "dt")
TICKER_NAMES = ("ticker", "symbol", "sym", "asset", "instrument", "security", "stock",
                "secid", "code")
PRICE_NAMES = ("adj_close", "adjclose", "adjusted_close", "adj_price", "close", "price",
               "px_last", "last", "value")
"""Column names (case-insensitive, spaces and dashes as underscores) a long file's
dates, tickers and prices may have, the preferred price first."""
FIELD_NAMES = (*PRICE_NAMES, "open", "high", "low", "volume", "adj_open", "vwap", "returns",
               "return")
"""Names that are fields of one ticker, never tickers: a wide file with them is refused."""

_PARQUET = (".parquet", ".pq")
_SHOWN = 4  # values named in a message before "and N more"


def _key(name: object) -> str:
    return re.sub(r"[\s\-/.]+", "_", str(name).strip().lower())


def _listed(items: Sequence[object], limit: int = _SHOWN) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ---------------------------------------------------------------- files


_CACHE: dict[tuple[Any, ...], tuple[pd.DataFrame, tuple[str, ...]]] = {}
_CACHE_LOCK = threading.Lock()
_VERSIONS: dict[tuple[Any, ...], str] = {}


def _stamp(source: str) -> tuple[Any, ...] | None:
    """A local file's path, size, modification time and inode; None for a URL (or a
    file that is not there)."""
    if "://" in source and not source.startswith("file://"):
        return None
    try:
        st = Path(source.removeprefix("file://")).stat()
    except OSError:
        return None
    return (source, st.st_size, st.st_mtime_ns, st.st_ino)


def file_version(source: str) -> str:
    """What a step-cache key holds for the price file at ``source``: a local file's
    sha256 (its content: a copy elsewhere has the same), hashed once while its size
    and modification time stay; for a URL, the checksum its store gives from the
    object's info (an S3 object's ETag: fsspec's ``checksum``)."""
    stamp = _stamp(source)
    if stamp is None:
        import fsspec

        fs, path = fsspec.core.url_to_fs(source)
        fs.invalidate_cache(path)  # a listing this process keeps must not answer for it
        return f"checksum:{fs.checksum(path)}"
    with _CACHE_LOCK:
        known = _VERSIONS.get(stamp)
    if known is None:
        known = "sha256:" + sha256_file(source.removeprefix("file://"))
        with _CACHE_LOCK:
            _VERSIONS.clear()
            _VERSIONS[stamp] = known
    return known


def read_price_file(source: str) -> tuple[pd.DataFrame, list[str]]:
    """Wide prices from a CSV or Parquet file (path or fsspec URL), and what was done.

    A local file read twice unchanged (the up-front check on the driver, then the
    stage) is parsed once.
    """
    import fsspec

    parquet = source.lower().endswith(_PARQUET)
    key = _stamp(source)
    if key is not None:
        with _CACHE_LOCK:
            hit = _CACHE.get(key)
        if hit is not None:
            return hit[0].copy(), list(hit[1])
    try:
        with fsspec.open(source, "rb", compression="infer") as fh:
            frame, notes = parse_prices(fh, name=source, parquet=parquet)
    except FileNotFoundError as exc:
        raise DataError(source, "file not found") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        kind = "Parquet" if parquet else "CSV"
        raise DataError(source, f"cannot be read as {kind}: {exc}", expected=EXPECTED) from exc
    if key is not None:
        with _CACHE_LOCK:
            _CACHE.clear()  # one file at a time: the cache only spares the second read
            _CACHE[key] = (frame, tuple(notes))
        frame = frame.copy()
    return frame, notes


def parse_prices(fh: BinaryIO, *, name: str, parquet: bool = False
                 ) -> tuple[pd.DataFrame, list[str]]:
    """Wide prices from an open binary file, and what was done, in words."""
    if parquet:
        frame = pd.read_parquet(fh)
        if isinstance(frame.columns, pd.MultiIndex):
            raise DataError(name, _multiindex(frame.columns), expected=EXPECTED)
        header = [str(c) for c in frame.columns]
        if not isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index()
            header = [str(c) for c in frame.columns]
    else:
        data = fh.read()
        first_line = data.partition(b"\n")[0].decode("utf-8-sig", errors="replace")
        header = next(csv.reader(io.StringIO(first_line)), [])
        frame = pd.read_csv(io.BytesIO(data))
    if frame.shape[1] < 2 or frame.shape[0] == 0:
        raise DataError(name, f"{frame.shape[0]} rows x {frame.shape[1]} columns: no prices",
                        expected=EXPECTED)
    return _to_wide(frame, header=header, name=name)


def _multiindex(columns: pd.MultiIndex) -> str:
    levels = [_listed(list(dict.fromkeys(str(v) for v in columns.get_level_values(i))), 3)
              for i in range(columns.nlevels)]
    return (f"the columns have {columns.nlevels} levels ({'; '.join(levels)}), as a "
            "multi-field download (e.g. yfinance) has: keep one price field with one "
            "column per ticker, e.g. frame['Adj Close'] or frame.xs('Close', axis=1, level=0)")


# ---------------------------------------------------------------- shapes


def _to_wide(frame: pd.DataFrame, *, header: list[str], name: str
             ) -> tuple[pd.DataFrame, list[str]]:
    keys = [_key(c) for c in frame.columns]
    date_col = next((c for c, k in zip(frame.columns, keys, strict=True) if k in DATE_NAMES),
                    frame.columns[0])
    ticker_col = next((c for c, k in zip(frame.columns, keys, strict=True)
                       if k in TICKER_NAMES), None)
    dates = _parse_dates(frame[date_col], name=name, column=str(date_col))
    rest = frame.drop(columns=[date_col])
    if ticker_col is not None:
        return _from_long(rest, dates, ticker_col=ticker_col, name=name)
    fields = [str(c) for c in rest.columns if _key(c) in FIELD_NAMES]
    if fields:
        raise DataError(name, f"no ticker column, and {_listed(fields)} "
                        f"{'is a price field' if len(fields) == 1 else 'are price fields'}, "
                        "not tickers: add a ticker column (long format) or put one "
                        "column per ticker (wide format)", expected=EXPECTED)
    header = [h for h in header if h != str(date_col)]
    notes = _duplicate_tickers(rest, header=header, name=name)
    if notes:  # the copies pandas renamed (``AAPL.1``) go; one column per ticker stays
        rest = rest[[c for c in rest.columns if str(c) in set(header)]]
        rest = rest.loc[:, ~rest.columns.duplicated()]
    wide = rest.apply(pd.to_numeric, errors="coerce").astype("float64")
    notes += _not_numbers(rest, wide)
    wide.index = dates
    wide.columns = pd.Index([str(c) for c in wide.columns], name="ticker")
    return wide, notes


def _not_numbers(raw: pd.DataFrame, parsed: pd.DataFrame) -> list[str]:
    """A note on values that are there but are not numbers (read as missing)."""
    lost = raw.notna().to_numpy() & parsed.isna().to_numpy()
    if not lost.any():
        return []
    per = pd.Series(lost.sum(axis=0), index=[str(c) for c in parsed.columns])
    per = per[per > 0]
    count = int(lost.sum())
    return [f"{plural(count, 'value')} that {_are_not_numbers(count)} read as missing "
            f"({_listed([f'{t} {n}' for t, n in per.items()])})"]


def _are_not_numbers(count: int) -> str:
    return "is not a number," if count == 1 else "are not numbers"


def _tickers(names: list[str]) -> str:
    """``ticker AAPL appears`` or ``tickers AAPL, MSFT appear``."""
    if len(names) == 1:
        return f"ticker {_listed(names)} appears"
    return f"tickers {_listed(names)} appear"


def _duplicate_tickers(rest: pd.DataFrame, *, header: list[str], name: str) -> list[str]:
    """pandas renames a repeated column ``AAPL.1``: same prices, one is kept (a note);
    different prices cannot be told apart, so the file is refused."""
    counts = pd.Series(header, dtype="object").value_counts()
    repeated = [str(t) for t in counts.index[counts > 1]]
    if not repeated:
        return []
    differ = []
    for ticker in repeated:
        copy = re.compile(re.escape(ticker) + r"(\.\d+)?")
        same = [c for c in rest.columns
                if str(c) == ticker or (copy.fullmatch(str(c)) and str(c) not in header)]
        first = pd.to_numeric(rest[same[0]], errors="coerce")
        if any(not first.equals(pd.to_numeric(rest[c], errors="coerce")) for c in same[1:]):
            differ.append(ticker)
    if differ:
        raise DataError(name, f"{_tickers(differ)} in more than one column "
                        "with different prices: keep one column per ticker",
                        expected=EXPECTED)
    return [f"{_tickers(repeated)} in more than one column with the same "
            "prices: kept one"]


def _parse_dates(values: pd.Series, *, name: str, column: str) -> pd.DatetimeIndex:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(
            values):
        parsed = pd.Series(values)
    else:
        with warnings.catch_warnings():  # "could not infer format": the bad rows say it
            warnings.simplefilter("ignore", UserWarning)
            parsed = pd.to_datetime(values, errors="coerce")
    bad = parsed.isna() & values.notna()
    blank = values.isna()
    if bad.any() or blank.any():
        rows = list(bad[bad | blank].index[:_SHOWN])
        shown = ", ".join(f"row {int(r) + 2} " + ("empty" if pd.isna(values[r]) else
                                                   repr(values[r])) for r in rows)
        count = int((bad | blank).sum())
        top = bad.iloc[:3].any() and not bad.iloc[3:].any()
        hint = (": the file seems to have several header rows (a multi-field download, e.g. "
                "yfinance, saved to CSV); keep one header row of tickers" if top else
                ": use one date format, e.g. 2021-01-04")
        raise DataError(name, f"{plural(count, 'value')} of column {column!r} "
                        f"{'is not a date' if count == 1 else 'are not dates'} ({shown})"
                        + hint, expected=EXPECTED)
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:
        index = index.tz_convert(None)
    return index.rename("date")


def _from_long(rest: pd.DataFrame, dates: pd.DatetimeIndex, *, ticker_col: Any, name: str
               ) -> tuple[pd.DataFrame, list[str]]:
    by_key = {_key(c): c for c in rest.columns if c != ticker_col}
    price_key = next((k for k in PRICE_NAMES if k in by_key), None)
    if price_key is None:
        raise DataError(name, f"a ticker column ({ticker_col!r}) but no price column among "
                        f"{_listed([str(c) for c in rest.columns if c != ticker_col])} (one "
                        f"of {', '.join(PRICE_NAMES[:6])}... is needed)", expected=EXPECTED)
    notes: list[str] = []
    others = [str(by_key[k]) for k in PRICE_NAMES if k in by_key and k != price_key]
    if others:
        notes.append(f"long format: used column {str(by_key[price_key])!r} for prices "
                     f"(not {', '.join(map(repr, others))})")
    tickers = rest[ticker_col]
    if tickers.isna().any():
        rows = list(tickers.index[tickers.isna()][:_SHOWN])
        raise DataError(name, f"{plural(int(tickers.isna().sum()), 'row')} "
                        f"{'has' if int(tickers.isna().sum()) == 1 else 'have'} no ticker "
                        f"({', '.join(f'row {int(r) + 2}' for r in rows)})", expected=EXPECTED)
    raw_price = rest[by_key[price_key]]
    price = pd.to_numeric(raw_price, errors="coerce").astype("float64")
    lost = int((raw_price.notna() & price.isna()).sum())
    if lost:
        notes.append(f"{plural(lost, 'price')} that {_are_not_numbers(lost)} read as missing")
    long = pd.DataFrame({"date": dates, "ticker": tickers.astype(str).str.strip().to_numpy(),
                         "price": price.to_numpy()})
    dup = long.duplicated(["date", "ticker"], keep="last")
    if dup.any():
        conflicting = long[long.duplicated(["date", "ticker"], keep=False)].groupby(
            ["date", "ticker"])["price"].nunique(dropna=False).gt(1).sum()
        notes.append(f"{plural(int(dup.sum()), 'repeated (date, ticker) row')}"
                     + (f", {int(conflicting)} with different prices" if conflicting else "")
                     + ": kept the last of each")
        long = long[~dup]
    wide = long.pivot(index="date", columns="ticker", values="price")
    wide = wide.reindex(columns=list(dict.fromkeys(long["ticker"])))
    wide.index = pd.DatetimeIndex(wide.index).rename("date")
    wide.columns = pd.Index([str(c) for c in wide.columns], name="ticker")
    return wide.astype("float64"), notes
