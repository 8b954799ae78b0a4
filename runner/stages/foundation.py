"""Foundation pillar: daily prices in, a feature panel out.

Prices
------
By default ``foundation.ingest`` loads the bundled data set: daily adjusted closes of
20 S&P 500 constituents, 2013-01-02 to 2022-12-28 (``runner/stages/data/SOURCE.md``).

To use your own prices, set ``params["data"]`` to a path or any fsspec URL
(``/data/prices.csv``, ``s3://bucket/prices.parquet``, ``gs://...``, ``memory://...``;
remote schemes need their fsspec package, e.g. ``s3fs``). The file is CSV (compression
inferred from the suffix: ``.gz``, ``.bz2``, ``.zip``, ``.xz``, ``.zst``) or Parquet
(``.parquet``/``.pq``), in *wide* format::

    date,AAPL,MSFT,XOM
    2021-01-04,129.41,217.69,41.50
    2021-01-05,131.01,217.90,43.50

one row per trading day, the first column (or, in Parquet, the index or a column named
``date``) the date, then one column of adjusted close prices per ticker. Rows need not
be sorted. Missing values are forward-filled over gaps of at most ``max_gap_days``
rows; a ticker missing more than ``max_missing`` of its rows is dropped, and the
history starts on the first day every remaining ticker has a price.

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

from importlib import resources
from typing import Any, cast

import numpy as np
import pandas as pd

from runner.registry import stage
from runner.stages._deferred import deferred_imports
from runner.stages.contexts import PortfolioContext, param_float, param_int

__all__ = [
    "BUNDLED_DATA",
    "FEATURES",
    "compute_features",
    "data_source",
    "describe_source",
    "features",
    "ingest",
    "log_prices",
    "log_returns",
    "prepare_prices",
    "read_prices",
    "select_prices",
]

BUNDLED_DATA = "sp500_prices_2013_2022.csv.gz"
"""File name of the bundled prices in ``runner/stages/data``."""

FEATURES = ("ret_1", "rev_5", "mom_21", "mom_63", "mom_252", "vol_21", "vol_63", "dd_252")
"""Names of the feature columns, in ``feature_store`` order."""

TRADING_DAYS = 252
_PARQUET = (".parquet", ".pq")


# ---------------------------------------------------------------- loading


def log_prices(prices: pd.DataFrame) -> pd.DataFrame:
    """Natural log of the prices, as a frame."""
    return cast(pd.DataFrame, np.log(prices))


def log_returns(prices: pd.DataFrame) -> pd.DataFrame:
    """Daily log returns (the first day, which has none, dropped)."""
    return log_prices(prices).diff().iloc[1:]


def read_prices(source: str | None = None) -> pd.DataFrame:
    """Read wide daily prices from ``source`` (path or fsspec URL), or the bundled set.

    Only parses: dates become a ``DatetimeIndex`` named ``date``, values floats
    (anything unparseable becomes NaN). Sorting and gap filling are left to
    :func:`prepare_prices`, so that ``dataops.validate`` can still see the raw file.
    """
    if source is None:
        ref = resources.files("runner.stages").joinpath("data").joinpath(BUNDLED_DATA)
        with ref.open("rb") as fh:
            frame = pd.read_csv(fh, compression="gzip", index_col=0)
        return _as_wide_prices(frame, f"bundled {BUNDLED_DATA}")
    with deferred_imports:  # only for a user's file: ``runner validate`` imports this module
        import fsspec

    try:
        with fsspec.open(source, "rb", compression="infer") as fh:
            if source.lower().endswith(_PARQUET):
                frame = pd.read_parquet(fh)
            else:
                frame = pd.read_csv(fh, index_col=0)
    except FileNotFoundError:
        raise FileNotFoundError(f"price file {source!r} not found") from None
    return _as_wide_prices(frame, source)


def _as_wide_prices(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    if not isinstance(frame.index, pd.DatetimeIndex):
        date_cols = [c for c in frame.columns if str(c).lower() == "date"]
        if date_cols:
            frame = frame.set_index(date_cols[0])
        try:
            frame.index = pd.to_datetime(frame.index)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"{source}: the first column (or a column named 'date') must hold dates: {exc}"
            ) from None
    index = pd.DatetimeIndex(frame.index)
    if index.tz is not None:
        index = index.tz_convert(None)
    frame.index = index.rename("date")
    frame.columns = pd.Index([str(c) for c in frame.columns], name="ticker")
    frame = frame.apply(pd.to_numeric, errors="coerce").astype("float64")
    if frame.shape[1] == 0 or frame.shape[0] == 0:
        raise ValueError(f"{source}: no prices (expected one column per ticker, one row per day)")
    return frame


def data_source(params: dict[str, Any]) -> str | None:
    """``params["data"]`` as a path or URL string; None for the bundled data set."""
    data = params.get("data")
    return str(data) if data else None


def describe_source(source: str | None) -> str:
    """How the audit trail names a price source."""
    return source if source is not None else f"bundled {BUNDLED_DATA}"


def select_prices(prices: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Apply the ``start``, ``end`` and ``tickers`` params."""
    out = prices
    if params.get("tickers"):
        wanted = [str(t) for t in params["tickers"]]
        missing = [t for t in wanted if t not in out.columns]
        if missing:
            raise ValueError(f"param 'tickers': no prices for {', '.join(missing)}")
        out = out[wanted]
    if params.get("start") is not None:
        out = out[out.index >= pd.Timestamp(params["start"])]
    if params.get("end") is not None:
        out = out[out.index <= pd.Timestamp(params["end"])]
    return out


def prepare_prices(raw: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, list[str]]:
    """Sorted, de-duplicated, gap-filled prices with no NaN, and what was done, in words."""
    notes: list[str] = []
    max_gap = param_int(params, "max_gap_days", 5)
    max_missing = param_float(params, "max_missing", 0.1)
    prices = raw
    if not prices.index.is_monotonic_increasing:
        prices = prices.sort_index(kind="stable")
        notes.append("sorted the rows by date")
    dup = prices.index.duplicated(keep="last")
    if dup.any():
        prices = prices[~dup]
        notes.append(f"dropped {int(dup.sum())} duplicate date(s), keeping the last row")
    bad = int((prices <= 0).sum().sum())
    if bad:
        prices = prices.where(prices > 0)
        notes.append(f"treated {bad} non-positive price(s) as missing")
    share_missing = prices.isna().mean()
    dropped = [str(t) for t in share_missing.index[share_missing > max_missing]]
    if dropped:
        prices = prices.drop(columns=dropped)
        notes.append(f"dropped {', '.join(dropped)}: more than {max_missing:.0%} missing")
    holes = int(prices.isna().sum().sum())
    prices = prices.ffill(limit=max_gap)
    filled = holes - int(prices.isna().sum().sum())
    if filled:
        notes.append(f"forward-filled {filled} missing price(s) (gaps up to {max_gap} days)")
    complete = prices.notna().all(axis=1)
    if not complete.any():
        raise ValueError("no day has a price for every ticker")
    first = complete.to_numpy().argmax()
    if first:
        notes.append(f"history starts {prices.index[int(first)]:%Y-%m-%d}, the first complete day")
        prices = prices.iloc[first:]
    if prices.isna().any().any():
        gaps = [str(t) for t in prices.columns[prices.isna().any()]]
        raise ValueError(f"gaps longer than {max_gap} days remain in {', '.join(gaps)}")
    return prices, notes


# ---------------------------------------------------------------- stages


@stage(
    "foundation.ingest",
    reads=["params", "prices"],
    writes=["prices", "universe", "audit_trail"],
)
def ingest(ctx: PortfolioContext) -> PortfolioContext:
    """Load daily prices (or reuse the ones already in the context) and prepare them."""
    if not ctx.prices.empty:
        raw, source = ctx.prices, "the context (prepared upstream)"
    else:
        source = describe_source(data_source(ctx.params))
        raw = read_prices(data_source(ctx.params))
    prices, notes = prepare_prices(select_prices(raw, ctx.params), ctx.params)
    if len(prices) < 2:
        raise ValueError(f"{source}: fewer than two days of prices")
    ctx.prices = prices
    ctx.universe = [str(c) for c in prices.columns]
    ctx.log(
        f"foundation.ingest: {len(prices)} days x {prices.shape[1]} tickers from {source}, "
        f"{prices.index[0]:%Y-%m-%d} to {prices.index[-1]:%Y-%m-%d}"
        + (f"; {'; '.join(notes)}" if notes else "")
    )
    return ctx


def compute_features(prices: pd.DataFrame) -> pd.DataFrame:
    """The feature panel of :data:`FEATURES`, (date, ticker) x feature."""
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
    panel = pd.DataFrame({name: frame.stack() for name, frame in wide.items()})
    panel.index = panel.index.set_names(["date", "ticker"])
    return panel.astype("float64")


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
