"""Walk-forward backtest of the portfolio rule: ``risk.backtest``.

The pipeline chooses today's weights once; the backtest asks how that rule would
have done. On every rebalance date ``d_k`` that has an out-of-sample forecast
(``inference_outputs["pred"]``: the walk-forward models only saw outcomes known
on ``d_k``), it replays the decision with the prices up to ``d_k`` only:

1. signals: the forecasts' cross-sectional z-scores, clipped at ``signal_clip``
   (as ``alpha.policy``; without the regime scale, whose k-means is fit on the
   whole history);
2. target: ``softmax(tilt * signal)`` over the universe (as ``alpha.synthesis``
   with one cluster: the clusters are fit on the last year, so they would look
   ahead);
3. weights: the same long-only capped mean-variance optimum as ``risk.optimize``
   (found by :func:`solve_weights_fast`, a solver whose cost does not grow with
   the cube of the universe), with the Ledoit-Wolf covariance of the
   ``cov_window`` days up to ``d_k``.

The weights chosen on ``d_k`` are held (drifting with prices) over the days after
``d_k`` up to ``d_{k+1}``, so a return is never earned by a decision taken after
it (:func:`equity_curve`). Turnover at ``d_k`` is half the sum of absolute
differences between the new weights and the drifted old ones (buying in on the
first date does not count). An equal-weight portfolio rebalanced on the same
dates is the benchmark. No transaction costs.

The stage writes ``backtest`` (the daily curve: ``equity``, ``drawdown``,
``returns``, ``turnover``, ``benchmark``; index ``date``) and ``backtest_stats``
(annualised return, volatility, Sharpe, max drawdown, mean turnover, and the
benchmark's). It is cheap: a small solve per month-end, no model fitting.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pandas as pd

from runner.orchestration.native_threads import blas_thread_limit
from runner.registry import stage
from runner.stages._deferred import deferred_imports
from runner.stages.contexts import PortfolioContext, param_float, param_int
from runner.stages.foundation import TRADING_DAYS, log_returns
from runner.stages.risk import RULE_PARAMS, shrunk_covariance, weight_cap
from runner.stages.weights_qp import project_capped_simplex, solve_weights_fast

__all__ = ["backtest", "backtest_stats", "equity_curve", "project_capped_simplex",
           "rebalance_weights", "solve_weights_fast"]

Vector = npt.NDArray[np.float64]
PERIODS_PER_YEAR = 12


def rebalance_weights(pred: pd.Series, prices: pd.DataFrame,
                      params: dict[str, Any]) -> pd.DataFrame:
    """The weights the rule chooses on each forecast date (date x ticker), each from
    the forecasts of that date and the prices up to it.

    BLAS runs on one thread meanwhile: the products are small, and a multi-threaded
    BLAS spin-waits on them (3-8 s instead of 0.1 s for this loop on a busy
    two-core machine). scikit-learn's k-means limits BLAS the same way.
    """
    clip = param_float(params, "signal_clip", 2.5)
    tilt = param_float(params, "tilt", 1.0)
    aversion = param_float(params, "risk_aversion", 4.0)
    pull = param_float(params, "target_penalty", 2.0)
    window = param_int(params, "cov_window", TRADING_DAYS, minimum=2)
    universe = [str(c) for c in prices.columns]
    cap = weight_cap(params, len(universe))
    daily = log_returns(prices)
    with deferred_imports:  # loaded before the limit, so that it limits its BLAS too
        import scipy.special  # noqa: F401

    rows: dict[pd.Timestamp, Vector] = {}
    w: Vector | None = None  # the last date's weights: the next solve starts there
    with blas_thread_limit(1):
        for date, today in pred.groupby(level="date"):
            decided = _decide(
                today.droplevel("date").reindex(universe).to_numpy(dtype="float64"),
                daily.loc[:date].tail(window), clip=clip, tilt=tilt, cap=cap,
                aversion=aversion, pull=pull, start=w)
            if decided is not None:
                w = rows[pd.Timestamp(cast(str, date))] = decided
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=universe, dtype="float64")
    frame.index = pd.DatetimeIndex(frame.index, name="date")
    return frame.sort_index()


def _decide(mu: Vector, history: pd.DataFrame, *, clip: float, tilt: float, cap: float,
            aversion: float, pull: float, start: Vector | None) -> Vector | None:
    """One date's weights from its forecasts ``mu`` and the returns up to it; None
    when a ticker has no forecast or there is no history yet."""
    with deferred_imports:
        from scipy.special import softmax

    if np.isnan(mu).any() or len(history) < 2:
        return None
    spread = mu.std()
    z = (mu - mu.mean()) / spread if spread > 0 else np.zeros_like(mu)
    target = softmax(tilt * np.clip(z, -clip, clip))
    return solve_weights_fast(mu * PERIODS_PER_YEAR, shrunk_covariance(history), target,
                              cap=cap, aversion=aversion, pull=pull, start=start)


def _hold(prices: pd.DataFrame, weights: pd.DataFrame) -> tuple[Vector, Vector]:
    """Daily returns of holding each date's weights until the next date, and the
    turnover on each rebalance date (NaN on the other days)."""
    px = prices.to_numpy(dtype="float64")
    where = prices.index.get_indexer(weights.index)
    if (where < 0).any():
        raise ValueError("a rebalance date is not a trading day of the prices")
    w_all = weights.reindex(columns=prices.columns).fillna(0.0).to_numpy(dtype="float64")
    returns = np.zeros(len(prices))
    turnover = np.full(len(prices), np.nan)
    held: Vector | None = None  # weights drifted to the current rebalance date
    for k, start in enumerate(where):
        w = w_all[k]
        turnover[start] = 0.0 if held is None else 0.5 * float(np.abs(w - held).sum())
        end = where[k + 1] if k + 1 < len(where) else len(prices) - 1
        growth = px[start:end + 1] / px[start]  # each ticker since the rebalance
        value = growth @ w  # the portfolio, 1 on the rebalance date
        returns[start + 1:end + 1] = value[1:] / value[:-1] - 1.0
        drifted = growth[-1] * w
        held = drifted / drifted.sum()
    return returns, turnover


def equity_curve(prices: pd.DataFrame, weights: pd.DataFrame) -> pd.DataFrame:
    """The daily curve from the first rebalance date to the last price: ``equity``
    (1 on the first date), ``drawdown`` (from the running peak, <= 0), ``returns``,
    ``turnover`` (on rebalance dates; NaN between), and the equal-weight
    ``benchmark`` rebalanced on the same dates."""
    if weights.empty:
        raise ValueError("no rebalance weights to backtest")
    span = prices.loc[weights.index[0]:]
    returns, turnover = _hold(span, weights)
    equal = pd.DataFrame(1.0 / span.shape[1], index=weights.index, columns=span.columns)
    bench, _ = _hold(span, equal)
    equity = np.cumprod(1.0 + returns)
    return pd.DataFrame({
        "equity": equity,
        "drawdown": equity / np.maximum.accumulate(equity) - 1.0,
        "returns": returns,
        "turnover": turnover,
        "benchmark": np.cumprod(1.0 + bench),
    }, index=pd.DatetimeIndex(span.index, name="date"))


def _annualised(returns: Vector, equity_end: float, risk_free: float) -> dict[str, float]:
    days = max(len(returns) - 1, 1)  # the first day only sets the start
    vol = float(returns[1:].std(ddof=1) * np.sqrt(TRADING_DAYS)) if days > 1 else 0.0
    mean = float(returns[1:].mean() * TRADING_DAYS) if days else 0.0
    return {
        "annual_return": float(equity_end ** (TRADING_DAYS / days) - 1.0),
        "annual_volatility": vol,
        "sharpe": (mean - risk_free) / vol if vol > 0 else 0.0,
    }


def backtest_stats(curve: pd.DataFrame, *, risk_free: float = 0.0) -> dict[str, float]:
    """Annualised return (compound), volatility and Sharpe, max drawdown, turnover;
    the same for the equal-weight benchmark."""
    trades = curve["turnover"].dropna()
    bench = curve["benchmark"].to_numpy()
    bench_returns = np.r_[0.0, bench[1:] / bench[:-1] - 1.0]
    ours = _annualised(curve["returns"].to_numpy(), float(curve["equity"].iloc[-1]), risk_free)
    theirs = _annualised(bench_returns, float(bench[-1]), risk_free)
    return {
        **ours,
        "max_drawdown": float(curve["drawdown"].min()),
        "total_return": float(curve["equity"].iloc[-1] - 1.0),
        "mean_turnover": float(trades.iloc[1:].mean()) if len(trades) > 1 else 0.0,
        "rebalances": float(len(trades)),
        "years": float((len(curve) - 1) / TRADING_DAYS),
        "benchmark_annual_return": theirs["annual_return"],
        "benchmark_sharpe": theirs["sharpe"],
        "benchmark_max_drawdown": float((bench / np.maximum.accumulate(bench) - 1.0).min()),
    }


@stage(
    "risk.backtest",
    reads=["prices", "inference_outputs", "params.signal_clip", "params.tilt", *RULE_PARAMS],
    writes=["backtest", "backtest_stats", "audit_trail"],
    imports=["scipy.special"],
)
def backtest(ctx: PortfolioContext) -> PortfolioContext:
    """Out-of-sample equity curve of the portfolio rule over the walk-forward dates."""
    outputs = ctx.inference_outputs
    if "pred" not in outputs.columns:
        raise ValueError("no ensemble forecast ('pred' in inference_outputs): run "
                         "alpha.inference first")
    weights = rebalance_weights(outputs["pred"], ctx.prices, ctx.params)
    if weights.empty:  # no date with a forecast for every ticker: nothing to replay
        ctx.log("risk.backtest: no rebalance date has a forecast for every ticker: "
                "no backtest")
        return ctx
    curve = equity_curve(ctx.prices, weights)
    stats = backtest_stats(curve, risk_free=param_float(ctx.params, "risk_free", 0.0))
    ctx.backtest = curve
    ctx.backtest_stats = stats
    first, last = curve.index[0], curve.index[-1]
    ctx.log(
        f"risk.backtest: walk-forward out-of-sample {first:%Y-%m-%d}..{last:%Y-%m-%d} "
        f"({stats['years']:.1f} years, {stats['rebalances']:.0f} monthly rebalances, weights "
        f"from data up to each date): annual return {stats['annual_return']:.2%}, volatility "
        f"{stats['annual_volatility']:.2%}, Sharpe {stats['sharpe']:.2f}, max drawdown "
        f"{stats['max_drawdown']:.2%}, mean turnover {stats['mean_turnover']:.1%} per "
        f"rebalance; equal weight: {stats['benchmark_annual_return']:.2%} a year, Sharpe "
        f"{stats['benchmark_sharpe']:.2f}"
    )
    return ctx
