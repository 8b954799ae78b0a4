"""Context types of the shipped quant pillars, and the adapters between them.

===========================  =======================================================
Type                         Used by
===========================  =======================================================
:class:`PortfolioContext`    ``alpha.*`` pipelines: foundation, alpha and risk stages
:class:`DataOpsContext`      ``dataops.*`` pipelines: load, validate, clean
``MetaContext``              ``meta.full``: chains the DataOps and alpha pillars
===========================  =======================================================

Data layouts (all labels are strings, so every frame pickles and writes to Parquet):

- ``prices``: wide daily adjusted closes, ``DatetimeIndex`` named ``date``, one float
  column per ticker (columns named ``ticker``).
- ``feature_store``: long panel, ``MultiIndex`` (``date``, ``ticker``), one column per
  feature (``ret_1``, ``mom_21``, ``vol_63``, ...).
- ``inference_outputs``: long panel on the rebalance dates, ``MultiIndex`` (``date``,
  ``ticker``), one column per model (``pred_ridge``, ``pred_gbm``) plus ``pred``, the
  ensemble: predicted log return over the next month.
- ``signals``, ``target_weights``, ``weights``: ``pd.Series`` indexed by ticker.
- ``backtest``: the daily curve of ``risk.backtest``, ``DatetimeIndex`` named
  ``date``, columns ``equity``, ``drawdown``, ``returns``, ``turnover`` (on
  rebalance dates) and ``benchmark``; its figures in ``backtest_stats``.

The adapters carry ``run_id``, ``workspace``, ``params`` and the audit trail across a
pillar boundary; DataOps -> alpha also carries the cleaned prices, which
``foundation.ingest`` then reuses instead of loading them again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import pandas as pd
from pydantic import Field

from runner.context import MetaContext, SelectionContext
from runner.prices.params import param_float, param_int
from runner.registry import context_adapter

if TYPE_CHECKING:
    FloatSeries: TypeAlias = pd.Series[float]
else:
    FloatSeries = pd.Series

__all__ = [
    "DataOpsContext",
    "FloatSeries",
    "PortfolioContext",
    "dataops_to_portfolio",
    "empty_series",
    "meta_to_dataops",
    "meta_to_portfolio",
    "param_float",
    "param_int",
]


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame()


def empty_series() -> FloatSeries:
    return pd.Series(dtype="float64")


class PortfolioContext(SelectionContext):
    """Context of the alpha pipelines: from prices to final portfolio weights."""

    prices: pd.DataFrame = Field(
        default_factory=empty_frame, description="Daily adjusted closes, date x ticker"
    )
    clusters: dict[str, int] = Field(
        default_factory=dict, description="Correlation cluster of each ticker"
    )
    regime: str = Field(default="", description="Volatility regime: calm, normal or stressed")
    signals: FloatSeries = Field(
        default_factory=empty_series, description="Cross-sectional signal per ticker"
    )
    target_weights: FloatSeries = Field(
        default_factory=empty_series, description="Long-only target weights from the signals"
    )
    weights: FloatSeries = Field(
        default_factory=empty_series, description="Final optimised weights, summing to 1"
    )
    risk: dict[str, float] = Field(
        default_factory=dict, description="Risk summary of the final weights (annualised)"
    )
    backtest: pd.DataFrame = Field(
        default_factory=empty_frame,
        description="Walk-forward backtest, daily: equity, drawdown, returns, turnover, "
        "benchmark (risk.backtest)",
    )
    backtest_stats: dict[str, float] = Field(
        default_factory=dict, description="Annualised figures of the backtest (risk.backtest)"
    )

    def report(self) -> dict[str, Any]:
        """The run's outcome in plain data: what ``runner run`` prints at the end and
        ``--json`` returns under ``result``."""
        weights = self.weights.sort_values(ascending=False, kind="stable")
        doc: dict[str, Any] = {
            "weights": {str(t): round(float(w), 6) for t, w in weights.items()},
            "risk": {k: round(float(v), 6) for k, v in self.risk.items()},
            "regime": self.regime,
            "universe": len(self.prices.columns),
        }
        if self.backtest_stats:
            doc["backtest"] = {k: int(v) if k == "rebalances" else round(float(v), 6)
                               for k, v in self.backtest_stats.items()}
        return doc

    def charts(self) -> dict[str, pd.DataFrame]:
        """Time series the HTML report draws (``runner report``): the backtest's
        equity curve and drawdown."""
        if self.backtest.empty:
            return {}
        return {"backtest": self.backtest[["equity", "benchmark", "drawdown"]]}


class DataOpsContext(MetaContext):
    """Context of the DataOps pillar: raw prices in, checked and cleaned prices out."""

    raw_prices: pd.DataFrame = Field(
        default_factory=empty_frame, description="Prices as loaded, before any check"
    )
    prices: pd.DataFrame = Field(
        default_factory=empty_frame, description="Cleaned prices, date x ticker"
    )
    quality: dict[str, Any] = Field(
        default_factory=dict, description="Data quality report of dataops.validate/clean"
    )


# ---------------------------------------------------------------- adapters


def _carried(ctx: MetaContext | DataOpsContext) -> dict[str, Any]:
    """What crosses every pillar boundary: ids, scratch folder, params, trail, stores."""
    return {
        "run_id": ctx.run_id,
        "workspace": ctx.workspace,
        "audit_trail": list(ctx.audit_trail),
        "feature_store": ctx.feature_store,
        "inference_outputs": ctx.inference_outputs,
        "params": dict(ctx.params),
    }


@context_adapter(MetaContext, DataOpsContext)
def meta_to_dataops(ctx: MetaContext) -> DataOpsContext:
    """Enter the DataOps pillar from the meta pipeline."""
    out = DataOpsContext(
        **_carried(ctx),
        pillars=[*ctx.pillars, "dataops"],
    )
    out.log("adapter MetaContext -> DataOpsContext: entering the dataops pillar")
    return out


@context_adapter(DataOpsContext, PortfolioContext)
def dataops_to_portfolio(ctx: DataOpsContext) -> PortfolioContext:
    """Hand the cleaned prices of the DataOps pillar to the alpha pillar."""
    out = PortfolioContext(
        **_carried(ctx),
        prices=ctx.prices,
        universe=[str(c) for c in ctx.prices.columns],
    )
    out.log(
        f"adapter DataOpsContext -> PortfolioContext: handing over {ctx.prices.shape[0]} days "
        f"x {ctx.prices.shape[1]} tickers of cleaned prices (pillars so far: "
        f"{', '.join(ctx.pillars) or 'none'})"
    )
    return out


@context_adapter(MetaContext, PortfolioContext)
def meta_to_portfolio(ctx: MetaContext) -> PortfolioContext:
    """Enter the alpha pillar straight from the meta pipeline (no DataOps step)."""
    out = PortfolioContext(
        **_carried(ctx),
    )
    out.log("adapter MetaContext -> PortfolioContext: entering the alpha pillar")
    return out

