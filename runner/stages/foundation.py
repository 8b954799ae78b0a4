"""Foundation pillar: daily prices in, a feature panel out.

Prices
------
By default ``foundation.ingest`` loads the bundled data set: daily adjusted closes of
20 S&P 500 constituents, 2013-01-02 to 2022-12-28 (``runner/stages/data/SOURCE.md``).

To use your own prices, set ``params["data"]`` to a path or any fsspec URL
(``/data/prices.csv``, ``s3://bucket/prices.parquet``, ``gs://...``, ``memory://...``;
remote schemes need their fsspec package, e.g. ``s3fs``): a CSV or Parquet file, wide
(``date,AAPL,MSFT``) or long (``date,ticker,close``), read and checked by
:mod:`runner.prices`, which documents the format. Rows need not be sorted. Missing
values are forward-filled over gaps of at most ``max_gap_days`` rows; a ticker missing
more than ``max_missing`` of its rows, or whose price never changes, is dropped, and
the history starts on the first day every remaining ticker has a price.

Other params: ``start``, ``end`` (dates, inclusive) and ``tickers`` (a list) select a
window and a subset of the universe.

When the context already holds prices (handed over by the DataOps pillar in
``meta.full``, or set by the caller), ``foundation.ingest`` reuses them and does not
read ``params["data"]``.

Features
--------
``foundation.features`` writes a long panel to ``feature_store``: ``MultiIndex``
(``date``, ``ticker``), one float column per feature, all computed from prices up to
and including the row's date (no look-ahead):

=============  =================================================================
``ret_1``      1-day log return
``rev_5``      5-day log return (short-term reversal)
``mom_21``     21-day log return (1-month momentum)
``mom_63``     63-day log return (3-month momentum)
``mom_252``    log return from t-252 to t-21 (12-1 month momentum)
``vol_21``     annualised volatility of daily log returns over 21 days
``vol_63``     annualised volatility of daily log returns over 63 days
``dd_252``     log distance from the 252-day high (drawdown, <= 0)
=============  =================================================================
"""

from __future__ import annotations

import functools
import gzip
import io
from importlib import resources
from typing import Any, cast

import numpy as np
import pandas as pd

from runner.digest import sha256
from runner.prices import (
    check_history,
    data_source,
    file_version,
    parse_prices,
    prepare_prices,
    read_price_file,
    select_prices,
)
from runner.registry import stage
from runner.stages._deferred import deferred_imports
from runner.stages.contexts import PortfolioContext

__all__ = [
    "BUNDLED_DATA",
    "FEATURES",
    "compute_features",
    "data_source",
    "describe_source",
    "features",
    "ingest",
    "load_prices",
    "log_prices",
    "log_returns",
    "observe_data",
    "prepare_prices",
    "read_prices",
    "select_prices",
]

BUNDLED_DATA = "sp500_prices_2013_2022.csv.gz"
"""File name of the bundled prices in ``runner/stages/data``."""

FEATURES = ("ret_1", "rev_5", "mom_21", "mom_63", "mom_252", "vol_21", "vol_63", "dd_252")
"""Names of the feature columns, in ``feature_store`` order."""

TRADING_DAYS = 252


# ---------------------------------------------------------------- loading


def log_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Natural log of the prices, as a frame."""
    return cast(pd.DataFrame, np.log(prices))


def log_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Daily log returns (the first day, which has none, dropped)."""
    return log_prices(prices).diff().iloc[1:]


def read_prices(source: str | None = None) -> pd.DataFrame:
    """Wide daily prices from ``source`` (path or fsspec URL, wide or long), or the
    bundled set: a ``DatetimeIndex`` named ``date``, one float column per ticker.

    Only reads and shapes (see :mod:`runner.prices`): sorting and gap filling are left
    to :func:`prepare_prices`, so that ``dataops.validate`` can still see the raw file.
    """
    return load_prices(source)[0]


def load_prices(source: str | None) -> tuple[pd.DataFrame, list[str]]:
    """:func:`read_prices`, and what reading did in words (a long file pivoted...)."""
    if source is None:
        return parse_prices(io.BytesIO(gzip.decompress(_bundled())),
                            name=f"bundled {BUNDLED_DATA}")
    with deferred_imports:  # only for a user's file: ``runner validate`` imports this module
        import fsspec  # noqa: F401 - imported whole under the lock, used by read_price_file
    return read_price_file(source)


def _bundled() -> bytes:
    return resources.files("runner.stages").joinpath("data").joinpath(BUNDLED_DATA).read_bytes()


@functools.cache
def _bundled_version() -> str:
    """The bundled set's content hash: package data, the same for the process's life."""
    return f"bundled:{sha256(_bundled())}"


def observe_data(ctx: Any) -> str:
    """For the step cache (``@stage(observe=...)``): the version of the prices a stage
    reads, ``params["data"]``'s file (its content hash; a URL: its store's checksum) or
    the bundled set, so that a run after the file was edited runs the stage again."""
    source = data_source(ctx.params)
    return _bundled_version() if source is None else file_version(source)


def describe_source(source: str | None) -> str:
    """How the audit trail names a price source."""
    return source if source is not None else f"bundled {BUNDLED_DATA}"


# ---------------------------------------------------------------- stages


@stage(
    "foundation.ingest",
    reads=["prices", "params.data", "params.tickers", "params.start", "params.end",
           "params.max_gap_days", "params.max_missing"],
    writes=["prices", "universe", "audit_trail"],
    observe=observe_data,
)
def ingest(ctx: PortfolioContext) -> PortfolioContext:
    """Load daily prices (or reuse the ones already in the context) and prepare them."""
    notes: list[str] = []
    if not ctx.prices.empty:
        raw, source = ctx.prices, "the context (prepared upstream)"
    else:
        source = describe_source(data_source(ctx.params))
        raw, read_notes = load_prices(data_source(ctx.params))
        notes = read_notes
    prices, more = prepare_prices(select_prices(raw, ctx.params, source=source), ctx.params,
                                  source=source)
    notes = [*notes, *more]
    check_history(prices, stages=["foundation.ingest"], params=ctx.params, source=source)
    ctx.prices = prices
    ctx.universe = [str(c) for c in prices.columns]
    ctx.log(
        f"foundation.ingest: {len(prices)} days x {prices.shape[1]} tickers from {source}, "
        f"{prices.index[0]:%Y-%m-%d} to {prices.index[-1]:%Y-%m-%d}"
        + (f"; {'; '.join(notes)}" if notes else "")
    )
    return ctx


def compute_features(prices: pd.DataFrame) -> pd.DataFrame:
    """The feature panel of :data:`FEATURES`, (date, ticker) x feature.

    Every row of the (date, ticker) grid, dates outer, tickers in column order (as
    ``stack`` orders them); each wide feature frame is laid out row-major into one
    column of a single float block, which costs a copy, where stacking eight frames
    and aligning their indexes cost most of the stage at a few hundred tickers.
    """
    logp = log_prices(prices)
    ret = logp.diff()
    wide = {
        "ret_1": ret,
        "rev_5": logp.diff(5),
        "mom_21": logp.diff(21),
        "mom_63": logp.diff(63),
        "mom_252": logp.shift(21) - logp.shift(TRADING_DAYS),
        "vol_21": ret.rolling(21).std() * np.sqrt(TRADING_DAYS),
        "vol_63": ret.rolling(63).std() * np.sqrt(TRADING_DAYS),
        "dd_252": logp - logp.rolling(TRADING_DAYS, min_periods=1).max(),
    }
    block = np.empty((len(wide), prices.size), dtype="float64")
    for row, frame in zip(block, wide.values(), strict=True):
        row[:] = frame.to_numpy(dtype="float64").ravel()
    index = pd.MultiIndex.from_product([prices.index, prices.columns], names=["date", "ticker"])
    return pd.DataFrame(block.T, index=index, columns=list(wide))


@stage(
    "foundation.features",
    reads=["prices", "feature_store"],
    writes=["feature_store", "audit_trail"],
)
def features(ctx: PortfolioContext) -> PortfolioContext:
    """Compute momentum, reversal, volatility and drawdown features per ticker and day."""
    if ctx.prices.empty:
        raise ValueError("no prices in the context: run foundation.ingest first")
    panel = compute_features(ctx.prices)
    kept = ctx.feature_store.drop(columns=list(panel.columns), errors="ignore")
    ctx.feature_store = panel if kept.columns.empty else pd.concat([kept, panel], axis=1)
    complete = panel.dropna().index.get_level_values("date")
    ctx.log(
        f"foundation.features: {panel.shape[1]} features ({', '.join(panel.columns)}) for "
        f"{ctx.prices.shape[1]} tickers over {ctx.prices.shape[0]} days; complete from "
        f"{complete.min():%Y-%m-%d}"
    )
    return ctx
