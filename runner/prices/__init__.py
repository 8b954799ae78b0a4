"""Your own prices: the file ``--data`` (``params["data"]``) names, read and checked once.

The command line and :meth:`QuantSDK.run_pipeline` check the file up front, before a
run takes its id, with the same code the shipped stages (``foundation.ingest``,
``dataops.load``) then read it with: a file they cannot use is refused there (exit 2,
:class:`~runner.errors.DataError`, one message saying what is wrong and the expected
shape), and every fix they will apply is said as a note.

A CSV (compression from the suffix: ``.gz``, ``.bz2``, ``.zip``, ``.xz``, ``.zst``) or
Parquet (``.parquet``/``.pq``) file, any fsspec URL, in one of two shapes:

*wide*: a date column, then one column of adjusted close prices per ticker::

    date,AAPL,MSFT,XOM
    2021-01-04,129.41,217.69,41.50
    2021-01-05,131.01,217.90,43.50

*long* (tidy): one row per date and ticker::

    date,ticker,close
    2021-01-04,AAPL,129.41
    2021-01-04,MSFT,217.69

Column names are matched case-insensitively: the dates ``date`` (or ``datetime``,
``timestamp``, ``day``...; in a wide file, else the first column; in Parquet, also
the index), the tickers ``ticker`` (or ``symbol``, ``asset``...), the prices
``adj_close`` (preferred), ``close``, ``price``... A file with a ticker column is long;
without one, a column named like a price field (``close``, ``open``, ``volume``...)
is refused rather than taken for a ticker. ``configs/example_prices.csv`` is an example.
"""

from __future__ import annotations

from runner.prices.params import param_float, param_int
from runner.prices.prepare import (
    PRICE_STAGES,
    WALK_FORWARD_STAGES,
    check_history,
    data_source,
    preflight,
    prepare_prices,
    select_prices,
)
from runner.prices.read import EXPECTED, file_version, parse_prices, read_price_file

__all__ = [
    "EXPECTED",
    "PRICE_STAGES",
    "WALK_FORWARD_STAGES",
    "check_history",
    "data_source",
    "file_version",
    "param_float",
    "param_int",
    "parse_prices",
    "preflight",
    "prepare_prices",
    "read_price_file",
    "select_prices",
]
