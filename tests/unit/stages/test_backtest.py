"""risk.backtest: the walk-forward equity curve, on series whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import runner.stages  # noqa: F401 - registers the stages
from runner.stages.backtest import backtest, backtest_stats, equity_curve, rebalance_weights
from runner.stages.contexts import PortfolioContext

DAYS = pd.bdate_range("2020-01-01", periods=300, name="date")


def _prices(**daily_returns: float) -> pd.DataFrame:
    """Prices compounding at a constant daily return per ticker."""
    steps = np.arange(len(DAYS))
    return pd.DataFrame({t: 100.0 * (1.0 + r) ** steps for t, r in daily_returns.items()},
                        index=DAYS)


def _month_ends(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    last = pd.Series(index, index=index).groupby(index.to_period("M")).max()
    return pd.DatetimeIndex(last.to_numpy(), name="date")


def test_a_constant_return_gives_a_straight_log_equity_line() -> None:
    prices = _prices(A=0.001, B=0.001)
    dates = _month_ends(DAYS)
    weights = pd.DataFrame({"A": 0.3, "B": 0.7}, index=dates)
    curve = equity_curve(prices, weights)
    assert curve.index[0] == dates[0]
    np.testing.assert_allclose(curve["returns"].iloc[1:], 0.001, rtol=1e-9)
    steps = np.arange(len(curve))
    np.testing.assert_allclose(curve["equity"], 1.001 ** steps, rtol=1e-9)  # log-linear
    assert (curve["drawdown"] == 0).all()
    stats = backtest_stats(curve)
    assert stats["annual_return"] == pytest.approx(1.001 ** 252 - 1, rel=1e-6)
    assert stats["max_drawdown"] == 0
    assert stats["rebalances"] == len(dates)


def test_drawdown_of_a_known_path() -> None:
    """Up 10%, down to 99 (-10% from the peak of 110), back to 121: max drawdown -10%."""
    index = pd.bdate_range("2021-01-04", periods=4, name="date")
    prices = pd.DataFrame({"A": [100.0, 110.0, 99.0, 121.0]}, index=index)
    curve = equity_curve(prices, pd.DataFrame({"A": [1.0]}, index=index[:1]))
    np.testing.assert_allclose(curve["equity"], [1.0, 1.1, 0.99, 1.21])
    np.testing.assert_allclose(curve["drawdown"], [0.0, 0.0, -0.1, 0.0], atol=1e-12)
    assert backtest_stats(curve)["max_drawdown"] == pytest.approx(-0.1)


def test_turnover_counts_the_trade_against_drifted_weights() -> None:
    index = pd.bdate_range("2021-01-04", periods=3, name="date")
    prices = pd.DataFrame({"A": [100.0, 200.0, 200.0], "B": [100.0, 100.0, 100.0]}, index=index)
    weights = pd.DataFrame({"A": [0.5, 0.5], "B": [0.5, 0.5]}, index=index[[0, 1]])
    curve = equity_curve(prices, weights)
    # A doubled: held 2/3 A, 1/3 B; back to 50/50 trades 1/6 of the portfolio
    assert curve["turnover"].iloc[0] == 0.0
    assert curve["turnover"].iloc[1] == pytest.approx(1 / 6)
    assert np.isnan(curve["turnover"].iloc[2])


def test_future_returns_do_not_change_past_equity() -> None:
    """No look-ahead: changing the prices after day t changes neither the weights
    chosen up to t nor the equity up to t."""
    rng = np.random.default_rng(0)
    prices = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(DAYS), 4)), axis=0)),
                          index=DAYS, columns=["A", "B", "C", "D"])
    dates = _month_ends(DAYS)[1:]
    pred = pd.Series(rng.normal(0, 0.02, len(dates) * 4), name="pred",
                     index=pd.MultiIndex.from_product([dates, prices.columns],
                                                      names=["date", "ticker"]))
    cut = dates[len(dates) // 2]
    shocked = prices.copy()
    shocked.loc[shocked.index > cut] *= np.exp(rng.normal(0, 0.2, shocked.loc[
        shocked.index > cut].shape))
    before = rebalance_weights(pred, prices, {})
    after = rebalance_weights(pred, shocked, {})
    pd.testing.assert_frame_equal(before.loc[:cut], after.loc[:cut])
    assert not before.loc[cut:].iloc[1:].equals(after.loc[cut:].iloc[1:])  # the future did move
    curve, moved = equity_curve(prices, before), equity_curve(shocked, after)
    pd.testing.assert_frame_equal(curve.loc[:cut], moved.loc[:cut])
    assert not np.allclose(curve["equity"].iloc[-1], moved["equity"].iloc[-1])


def test_weights_are_long_only_capped_and_fully_invested() -> None:
    rng = np.random.default_rng(1)
    tickers = [f"T{i}" for i in range(10)]
    prices = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(DAYS), 10)), axis=0)),
                          index=DAYS, columns=tickers)
    dates = _month_ends(DAYS)[2:]
    pred = pd.Series(rng.normal(0, 0.02, len(dates) * 10),
                     index=pd.MultiIndex.from_product([dates, tickers], names=["date", "ticker"]))
    weights = rebalance_weights(pred, prices, {"max_weight": 0.2})
    assert list(weights.index) == list(dates)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert (weights >= 0).all().all() and (weights <= 0.2 + 1e-9).all().all()


def test_the_stage_writes_the_curve_and_stats_into_the_report() -> None:
    prices = _prices(A=0.0005, B=0.001, C=-0.0002)
    dates = _month_ends(DAYS)[1:]
    pred = pd.Series(0.01, name="pred",
                     index=pd.MultiIndex.from_product([dates, ["A", "B", "C"]],
                                                      names=["date", "ticker"]))
    ctx = PortfolioContext(prices=prices, inference_outputs=pred.to_frame())
    ctx = backtest(ctx)
    assert list(ctx.backtest.columns) == ["equity", "drawdown", "returns", "turnover",
                                          "benchmark"]
    assert ctx.backtest.index[0] == dates[0] and ctx.backtest.index[-1] == DAYS[-1]
    report = ctx.report()
    assert report["backtest"]["rebalances"] == len(dates)
    assert set(ctx.charts()["backtest"].columns) == {"equity", "benchmark", "drawdown"}
    assert ctx.audit_trail[-1].startswith("risk.backtest: walk-forward out-of-sample")


def test_the_stage_needs_the_ensemble_forecast() -> None:
    with pytest.raises(ValueError, match=r"run alpha\.inference first"):
        backtest(PortfolioContext(prices=_prices(A=0.001)))


@pytest.mark.parametrize("tickers", [20, 300])  # 300: more tickers than days
def test_the_shrunk_covariance_is_scikit_learns_ledoit_wolf(tickers: int) -> None:
    from sklearn.covariance import LedoitWolf

    from runner.stages.risk import shrunk_covariance

    rng = np.random.default_rng(2)
    daily = pd.DataFrame(rng.normal(0, 0.01, (252, tickers))
                         + rng.normal(0, 0.01, (252, 1)))
    expected = LedoitWolf().fit(daily.to_numpy()).covariance_ * 252
    np.testing.assert_allclose(shrunk_covariance(daily), expected, rtol=1e-10)


def test_without_a_complete_forecast_the_stage_says_so_and_writes_nothing() -> None:
    prices = _prices(A=0.001, B=0.002)
    dates = _month_ends(DAYS)[1:]
    pred = pd.Series(0.01, name="pred",
                     index=pd.MultiIndex.from_product([dates, ["A"]], names=["date", "ticker"]))
    ctx = backtest(PortfolioContext(prices=prices, inference_outputs=pred.to_frame()))
    assert ctx.backtest.empty and ctx.backtest_stats == {}
    assert "backtest" not in ctx.report() and ctx.charts() == {}
    assert ctx.audit_trail == ["risk.backtest: no rebalance date has a forecast for every "
                               "ticker: no backtest"]


@pytest.mark.parametrize("n", [3, 20, 60])
def test_the_fast_solver_finds_risk_optimizes_optimum(n: int) -> None:
    """The backtest replays risk.optimize's rule: its solver lands on SLSQP's point."""
    from runner.stages.backtest import solve_weights_fast
    from runner.stages.risk import shrunk_covariance, solve_weights

    rng = np.random.default_rng(n)
    daily = pd.DataFrame(rng.normal(0, 0.01, (252, n)) + rng.normal(0, 0.01, (252, 1)))
    cov = shrunk_covariance(daily)
    mu = rng.normal(0.0, 0.3, n)
    target = np.exp(rng.normal(0, 1, n))
    target /= target.sum()
    cap = max(0.15, 2.0 / n)
    slsqp, _ = solve_weights(mu, cov, target, cap=cap, aversion=4.0, pull=2.0)
    fast = solve_weights_fast(mu, cov, target, cap=cap, aversion=4.0, pull=2.0)
    np.testing.assert_allclose(fast, slsqp, atol=1e-6)
    assert fast.sum() == pytest.approx(1.0) and fast.min() >= 0 and fast.max() <= cap + 1e-12


def test_the_projection_lands_on_the_capped_simplex() -> None:
    from runner.stages.backtest import project_capped_simplex

    rng = np.random.default_rng(3)
    for _ in range(50):
        v = rng.normal(0, 1, 12)
        w = project_capped_simplex(v, 0.2)
        assert w.sum() == pytest.approx(1.0) and w.min() >= 0 and w.max() <= 0.2 + 1e-15
        # optimality: moving mass from a coordinate below the cap to one above zero
        # never gets closer to v
        inside = (w > 1e-12) & (w < 0.2 - 1e-12)
        if inside.sum() >= 2:
            residual = (v - w)[inside]
            assert np.ptp(residual) < 1e-9  # the same shift for every free coordinate
