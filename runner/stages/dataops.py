"""DataOps pillar: load prices, check their quality, clean them.

Runs on :class:`~runner.stages.contexts.DataOpsContext`. The file format and the
``data``, ``start``, ``end``, ``tickers``, ``max_gap_days`` and ``max_missing`` params
are those of ``foundation.ingest`` (see :mod:`runner.stages.foundation`). The quality
report lands in ``ctx.quality`` (plain JSON-able values) and, in words, in the audit
trail. The cleaned prices travel to the alpha pillar through the
DataOpsContext -> PortfolioContext adapter.

Checks of ``dataops.validate`` (params in brackets):

- order and duplicate dates; missing and non-positive prices per ticker;
- calendar gaps: consecutive rows more than ``max_calendar_gap`` days apart (5);
- stale prices: a price unchanged for at least ``stale_days`` rows in a row (5);
- return outliers: daily log returns more than ``outlier_z`` (15) robust standard
  deviations (scaled median absolute deviation) from the median. They are reported,
  not changed: adjusted prices do jump on real news.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from runner.registry import stage
from runner.stages._deferred import deferred_imports
from runner.stages.contexts import DataOpsContext, param_float, param_int
from runner.stages.foundation import (
    data_source,
    describe_source,
    load_prices,
    log_prices,
    observe_data,
    prepare_prices,
    select_prices,
)
from runner.words import plural

__all__ = ["clean", "load", "quality_report", "validate"]


@stage("dataops.load", reads=["params"], writes=["raw_prices", "audit_trail"],
       observe=observe_data)
def load(ctx: DataOpsContext) -> DataOpsContext:
    """Read the raw prices named by ``params["data"]`` (default: the bundled set)."""
    source = data_source(ctx.params)
    raw, notes = load_prices(source)
    ctx.raw_prices = select_prices(raw, ctx.params, source=describe_source(source))
    ctx.log(
        f"dataops.load: {ctx.raw_prices.shape[0]} rows x {ctx.raw_prices.shape[1]} tickers "
        f"from {describe_source(source)}" + (f"; {'; '.join(notes)}" if notes else "")
    )
    return ctx


def _longest_run(values: pd.Series) -> int:
    """Length of the longest run of one repeated (non-missing) value."""
    same = values.eq(values.shift()) & values.notna()
    runs = (~same).cumsum()
    if not same.any():
        return 1
    return int(same.groupby(runs).sum().max()) + 1


def quality_report(raw: pd.DataFrame, params: dict[str, Any]) -> dict[str, Any]:
    """Every check of ``dataops.validate`` on ``raw`` (wide prices), JSON-able."""
    max_calendar_gap = param_int(params, "max_calendar_gap", 5)
    stale_days = param_int(params, "stale_days", 5, minimum=2)
    outlier_z = param_float(params, "outlier_z", 15.0)

    ordered = raw.sort_index(kind="stable")
    ordered = ordered[~ordered.index.duplicated(keep="last")]
    days = pd.Series(ordered.index, index=ordered.index).diff().dt.days
    gap_at = np.flatnonzero((days > max_calendar_gap).to_numpy())
    positive = ordered.where(ordered > 0)
    rets = log_prices(positive).diff()
    med = rets.median()
    with deferred_imports:
        from scipy.stats import median_abs_deviation

    mad = pd.Series(
        median_abs_deviation(rets.to_numpy(), axis=0, scale="normal", nan_policy="omit"),
        index=rets.columns,
    )
    z = (rets - med) / mad.where(mad > 0)
    outliers: dict[str, list[str]] = {}
    for ticker in z.columns:
        hits = rets.loc[z[ticker].abs() > outlier_z, ticker]
        if len(hits):
            outliers[str(ticker)] = [
                f"{d:%Y-%m-%d} ({np.expm1(float(r)):+.0%})" for d, r in hits.items()
            ]
    stale = {str(t): n for t in ordered.columns if (n := _longest_run(ordered[t])) >= stale_days}
    missing = raw.isna().sum()
    non_positive = (raw <= 0).sum()
    return {
        "rows": len(raw),
        "tickers": raw.shape[1],
        "start": f"{ordered.index[0]:%Y-%m-%d}",
        "end": f"{ordered.index[-1]:%Y-%m-%d}",
        "sorted": bool(raw.index.is_monotonic_increasing),
        "duplicate_dates": int(raw.index.duplicated().sum()),
        "missing": {str(t): int(n) for t, n in missing.items() if n},
        "non_positive": {str(t): int(n) for t, n in non_positive.items() if n},
        "calendar_gaps": [
            f"{ordered.index[i - 1]:%Y-%m-%d}..{ordered.index[i]:%Y-%m-%d} "
            f"({int(days.iloc[i])} days)" for i in gap_at.tolist()
        ],
        "stale": stale,
        "outliers": outliers,
    }


def _describe(items: dict[str, Any], what: str) -> str:
    if not items:
        return f"no {what}"
    return f"{what}: " + ", ".join(
        f"{k} {len(v) if isinstance(v, list) else v}" for k, v in items.items()
    )


def _describe_gaps(gaps: list[str]) -> str:
    if not gaps:
        return "no calendar gaps"
    more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
    return f"{plural(len(gaps), 'calendar gap')}: {', '.join(gaps[:3])}{more}"


@stage(
    "dataops.validate",
    reads=["raw_prices", "quality", "params"],
    writes=["quality", "audit_trail"],
    imports=["scipy.stats"],
)
def validate(ctx: DataOpsContext) -> DataOpsContext:
    """Check the raw prices: order, duplicates, missing, non-positive, gaps, stale, outliers."""
    if ctx.raw_prices.empty:
        raise ValueError("no raw prices: run dataops.load first")
    q = quality_report(ctx.raw_prices, ctx.params)
    ctx.quality = {**ctx.quality, **q}
    n_out = sum(len(v) for v in q["outliers"].values())
    examples = "; ".join(f"{t} {', '.join(v[:2])}" for t, v in list(q["outliers"].items())[:4])
    ctx.log(
        f"dataops.validate: {plural(q['rows'], 'row')} x {plural(q['tickers'], 'ticker')}, "
        f"{q['start']} to "
        f"{q['end']}; {'sorted' if q['sorted'] else 'NOT sorted'}; "
        f"{plural(q['duplicate_dates'], 'duplicate date')}; "
        f"{_describe(q['missing'], 'missing prices')}; "
        f"{_describe(q['non_positive'], 'non-positive prices')}; "
        f"{_describe_gaps(q['calendar_gaps'])}; "
        f"{_describe(q['stale'], 'stale runs (longest, days)')}; "
        f"{plural(n_out, 'return outlier')}"
        + (f" (kept for review: adjusted prices do jump on real news): {examples}"
           if n_out else "")
    )
    return ctx


@stage(
    "dataops.clean",
    reads=["raw_prices", "quality", "params"],
    writes=["prices", "quality", "audit_trail"],
)
def clean(ctx: DataOpsContext) -> DataOpsContext:
    """Sort, de-duplicate, mask non-positive prices, fill short gaps, drop sparse tickers."""
    if ctx.raw_prices.empty:
        raise ValueError("no raw prices: run dataops.load first")
    prices, notes = prepare_prices(ctx.raw_prices, ctx.params,
                                   source=describe_source(data_source(ctx.params)))
    ctx.prices = prices
    ctx.quality = {
        **ctx.quality,
        "clean": {
            "actions": notes,
            "rows": len(prices),
            "tickers": [str(c) for c in prices.columns],
        },
    }
    ctx.log(
        f"dataops.clean: {len(prices)} rows x {prices.shape[1]} tickers ready; "
        + ("; ".join(notes) if notes else "nothing to fix")
    )
    return ctx
