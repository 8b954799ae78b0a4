"""Prepare wide prices for the shipped stages, and check there is enough of them.

:func:`prepare_prices` is what ``foundation.ingest`` and ``dataops.clean`` do to the
prices: each fix it applies is said in a note (the audit trail, and a warning on the
command line before the run); what no fix can save is a :class:`DataError`.
:func:`preflight` runs the whole of it on the driver before a run starts, so a file
the stages cannot use is refused (exit 2) before any stage runs.

What is an error and what a fix with a note, decided as a desk would:

===========================  ====================================================
duplicate dates              fix: the last row of each date is kept (a correction
                             is usually appended)
non-positive prices          fix: read as missing, then filled like any gap
a ticker with no prices      fix: dropped (an empty column is a ticker the vendor
                             had nothing for)
a ticker with too many gaps  fix: dropped (param ``max_missing``, 10%)
constant prices              fix: dropped (a stale or placeholder series: no
                             returns, zero volatility)
nothing left, or too short   error: says how many days the pipeline needs
===========================  ====================================================
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pandas as pd

from runner.errors import DataError, UsageError
from runner.prices.params import param_float, param_int
from runner.prices.read import EXPECTED, read_price_file
from runner.words import plural

__all__ = ["FEATURE_DAYS", "PRICE_STAGES", "WALK_FORWARD_STAGES", "check_history",
           "data_source", "preflight", "prepare_prices", "select_prices"]

PRICE_STAGES = frozenset({"foundation.ingest", "dataops.load"})
"""The shipped stages that read ``params["data"]``."""
WALK_FORWARD_STAGES = frozenset({"alpha.inference", "alpha.inference_model_a",
                                 "alpha.inference_model_b"})
"""The shipped stages that fit walk-forward models on the features."""
FEATURE_DAYS = 252
"""Rows before the first complete feature row: the 12-1 month momentum looks back 252."""


def data_source(params: dict[str, Any]) -> str | None:
    """``params["data"]`` as a path or URL string; None for the bundled data set."""
    data = params.get("data")
    return str(data) if data else None


def select_prices(prices: pd.DataFrame, params: dict[str, Any], *, source: str = "prices"
                  ) -> pd.DataFrame:
    """Apply the ``start``, ``end`` and ``tickers`` params."""
    out = prices
    if params.get("tickers"):
        wanted = [str(t) for t in params["tickers"]]
        missing = [t for t in wanted if t not in out.columns]
        if missing:
            raise DataError(source, f"param 'tickers': no prices for {', '.join(missing)}")
        out = out[wanted]
    if params.get("start") is not None:
        out = out[out.index >= pd.Timestamp(params["start"])]
    if params.get("end") is not None:
        out = out[out.index <= pd.Timestamp(params["end"])]
    return out


def _named(counts: pd.Series) -> str:
    items = [f"{t} {int(n)}" for t, n in counts.items() if n]
    return ", ".join(items[:4]) + (f" and {len(items) - 4} more" if len(items) > 4 else "")


def prepare_prices(raw: pd.DataFrame, params: dict[str, Any], *, source: str = "prices"
                   ) -> tuple[pd.DataFrame, list[str]]:
    """Sorted, de-duplicated, gap-filled prices with no NaN, and what was done, in words."""
    notes: list[str] = []
    max_gap = param_int(params, "max_gap_days", 5)
    max_missing = param_float(params, "max_missing", 0.1)
    prices = raw
    if prices.empty:
        raise DataError(source, "no prices (after params start, end and tickers)",
                        expected=EXPECTED)
    if not prices.index.is_monotonic_increasing:
        prices = prices.sort_index(kind="stable")
        notes.append("sorted the rows by date")
    dup = prices.index.duplicated(keep="last")
    if dup.any():
        prices = prices[~dup]
        notes.append(f"dropped {plural(int(dup.sum()), 'duplicate date')}, keeping the last row")
    non_positive = (prices <= 0).sum()
    if non_positive.any():
        prices = prices.where(prices > 0)
        notes.append(f"treated {plural(int(non_positive.sum()), 'non-positive price')} as missing "
                     f"({_named(non_positive)})")
    empty = [str(t) for t in prices.columns[prices.isna().all()]]
    if empty:
        prices = prices.drop(columns=empty)
        notes.append(f"dropped {', '.join(empty)}: no prices at all")
    share_missing = prices.isna().mean()
    dropped = [str(t) for t in share_missing.index[share_missing > max_missing]]
    if dropped:
        prices = prices.drop(columns=dropped)
        notes.append(f"dropped {', '.join(dropped)}: more than {max_missing:.0%} missing")
    constant = [str(t) for t in prices.columns
                if prices[t].nunique() == 1 and prices[t].count() > 1]
    if constant:
        prices = prices.drop(columns=constant)
        notes.append(f"dropped {', '.join(constant)}: the price never changes (a stale or "
                     "placeholder series has no returns to forecast)")
    if prices.shape[1] == 0:
        raise DataError(source, "no ticker is left to use: " + "; ".join(notes),
                        expected=EXPECTED)
    holes = int(prices.isna().sum().sum())
    prices = prices.ffill(limit=max_gap)
    filled = holes - int(prices.isna().sum().sum())
    if filled:
        notes.append(f"forward-filled {plural(filled, 'missing price')} "
                     f"(gaps up to {max_gap} days)")
    complete = prices.notna().all(axis=1)
    if not complete.any():
        raise DataError(source, "no day has a price for every ticker (the tickers' histories "
                        "do not overlap): select tickers with param 'tickers'")
    first = complete.to_numpy().argmax()
    if first:
        notes.append(f"history starts {prices.index[int(first)]:%Y-%m-%d}, the first complete day")
        prices = prices.iloc[first:]
    if prices.isna().any().any():
        gaps = [str(t) for t in prices.columns[prices.isna().any()]]
        raise DataError(source, f"gaps longer than {max_gap} days remain in "
                        f"{', '.join(gaps)}: raise param 'max_gap_days' or drop those tickers")
    return prices, notes


def check_history(prices: pd.DataFrame, *, stages: Collection[str], params: dict[str, Any],
                  source: str = "prices", pipeline: str = "the pipeline") -> None:
    """Refuse prepared ``prices`` too short for the shipped ``stages`` (a DataError
    saying how many days they need and how many there are)."""
    days = len(prices)
    span = (f" ({prices.index[0]:%Y-%m-%d} to {prices.index[-1]:%Y-%m-%d})" if days else "")
    if days < 2:
        raise DataError(source, f"{plural(days, 'day')} of prices{span}: at least 2 are needed")
    if not WALK_FORWARD_STAGES & set(stages):
        return
    min_train = param_int(params, "min_train_months", 24)
    month_ends_needed = min_train + 1  # trained on min_train month-ends, one to forecast
    after = 0
    if days > FEATURE_DAYS:
        index = pd.DatetimeIndex(prices.index)
        ends = pd.Series(index, index=index).groupby(index.to_period("M")).max()
        after = int((ends >= index[FEATURE_DAYS]).sum())
    if after >= month_ends_needed:
        return
    about = FEATURE_DAYS + 1 + 21 * month_ends_needed
    raise DataError(
        source,
        f"{plural(days, 'day')} of prices{span} after cleaning; the walk-forward forecasts of "
        f"{pipeline} need about {about} (3 years): {FEATURE_DAYS + 1} days before the first "
        f"complete features (the 12-month momentum), then {month_ends_needed} month-ends "
        f"({min_train} to train on, param 'min_train_months', and one to forecast); this "
        f"data has {plural(after, 'month-end')} with complete features")


def preflight(params: dict[str, Any], *, stages: Collection[str],
              pipeline: str = "the pipeline") -> list[str]:
    """Read, prepare and check ``params["data"]`` as the shipped ``stages`` will: the
    notes of what will be fixed, or a DataError before anything runs. Nothing is checked
    without ``data`` (the bundled prices) or without a shipped stage that reads it."""
    source = data_source(params)
    if source is None or not PRICE_STAGES & set(stages):
        return []
    raw, notes = read_price_file(source)
    try:
        prices, more = prepare_prices(select_prices(raw, params, source=source), params,
                                      source=source)
        check_history(prices, stages=stages, params=params, source=source,
                      pipeline=pipeline)
    except DataError:
        raise
    except ValueError as exc:  # a param of the wrong type or range, or a bad start date
        raise UsageError(str(exc)) from exc
    return [*notes, *more]
