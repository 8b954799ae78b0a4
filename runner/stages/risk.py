"""Risk pillar: constrained mean-variance optimisation and a risk summary.

``risk.optimize`` solves::

    maximise    mu'w - (risk_aversion / 2) w'Sigma w - target_penalty * |w - target|^2
    subject to  sum(w) = 1,  0 <= w_i <= max_weight

- ``mu``: the latest ensemble forecast (``inference_outputs["pred"]``), a monthly log
  return, annualised (x 12).
- ``Sigma``: Ledoit-Wolf shrunk covariance of daily log returns over the last
  ``cov_window`` days (default 252), annualised (x 252).
- ``target``: ``target_weights`` from ``alpha.synthesis`` (equal weight if absent);
  the penalty keeps the optimum close to the policy's intent.

The objective is strictly convex, so its optimum is unique: the stage finds it with
:func:`runner.stages.weights_qp.solve_weights_fast` (projected gradient, then the
exact solve of the active set), tested against SciPy's SLSQP (:func:`solve_weights`),
whose cost per iteration grows with the cube of the universe (2 s for 300 tickers).

Params: ``max_weight`` (default 0.15, or 2/n for a universe of fewer than 14
tickers), ``risk_aversion`` (4), ``target_penalty`` (2),
``cov_window`` (252), ``risk_free`` (annual rate for the Sharpe ratio, 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from runner.orchestration.native_threads import blas_thread_limit
from runner.registry import stage
from runner.stages._deferred import deferred_imports
from runner.stages.alpha import PERIODS_PER_YEAR, latest_forecast, ranked
from runner.stages.contexts import PortfolioContext, param_float, param_int
from runner.stages.foundation import TRADING_DAYS, log_returns
from runner.stages.weights_qp import solve_weights_fast

__all__ = ["optimize", "risk_summary", "shrunk_covariance", "solve_weights", "weight_cap"]

Vector = npt.NDArray[np.float64]


def risk_summary(
    w: Vector, mu: Vector, cov: Vector, daily: pd.DataFrame, target: Vector, risk_free: float
) -> dict[str, float]:
    """Ex-ante and trailing historical risk figures of the weights ``w``."""
    vol = float(np.sqrt(w @ cov @ w))
    expected = float(mu @ w)
    port = (np.expm1(daily.to_numpy()) @ w).astype("float64")
    cutoff = float(np.quantile(port, 0.05))
    return {
        "expected_return": expected,
        "volatility": vol,
        "sharpe": (expected - risk_free) / vol if vol > 0 else 0.0,
        "diversification_ratio": float(w @ np.sqrt(np.diag(cov))) / vol if vol > 0 else 1.0,
        "effective_n": float(1.0 / (w @ w)),
        "n_holdings": float((w > 1e-4).sum()),
        "max_weight": float(w.max()),
        "var_95_daily": -cutoff,
        "cvar_95_daily": -float(port[port <= cutoff].mean()),
        "realized_volatility": float(port.std(ddof=1) * np.sqrt(TRADING_DAYS)),
        "distance_to_target": float(0.5 * np.abs(w - target).sum()),
    }


def shrunk_covariance(daily: pd.DataFrame) -> Vector:
    """Ledoit-Wolf shrunk covariance of daily log returns, annualised.

    scikit-learn's ``LedoitWolf().fit`` in a few lines of NumPy (the same formula,
    tested against it): its input validation cost 40 times the sums on a year of
    20 tickers, which the backtest pays on every rebalance date. Its fourth-moment
    sum is taken per day (O(n p), not sklearn's p x p product). Callers that solve
    many small problems cap BLAS at one thread meanwhile (:func:`blas_thread_limit`):
    multi-threaded BLAS on matrices this small spin-waits on a busy machine.
    """
    x = daily.to_numpy(dtype="float64")
    x = x - x.mean(axis=0)
    n, p = x.shape
    emp = (x.T @ x) / n
    trace = np.einsum("ij,ij->j", x, x) / n
    mu = trace.sum() / p
    # sum_ij sum_k x_ki^2 x_kj^2 = sum_k (sum_i x_ki^2)^2
    beta_ = float(np.sum(np.square(np.einsum("ki,ki->k", x, x))))
    delta_ = float(np.sum(emp * emp))
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace.sum() + p * mu**2) / p
    shrinkage = 0.0 if beta == 0 else min(beta, delta) / delta
    cov: Vector = (1.0 - shrinkage) * emp
    cov.flat[:: p + 1] += shrinkage * mu
    return cov * TRADING_DAYS


def solve_weights(mu: Vector, cov: Vector, target: Vector, *, cap: float, aversion: float,
                  pull: float) -> tuple[Vector, int]:
    """The long-only, capped mean-variance optimum pulled towards ``target`` (SLSQP),
    and the solver's iteration count: the reference the fast solver is tested against."""
    with deferred_imports:
        from scipy.optimize import minimize

    n = len(mu)

    def objective(w: Vector) -> float:
        d = w - target
        return float(-mu @ w + 0.5 * aversion * (w @ cov @ w) + pull * (d @ d))

    def gradient(w: Vector) -> Vector:
        grad: Vector = -mu + aversion * (cov @ w) + 2.0 * pull * (w - target)
        return grad

    result = minimize(
        objective, np.full(n, 1.0 / n), jac=gradient, method="SLSQP",
        bounds=[(0.0, cap)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                      "jac": np.ones_like}],
        options={"ftol": 1e-12, "maxiter": 1000},
    )
    if not result.success:
        raise RuntimeError(f"SLSQP did not converge: {result.message}")
    w = np.clip(np.asarray(result.x, dtype="float64"), 0.0, cap)
    w[w < 1e-10] = 0.0
    return w / w.sum(), int(result.nit)


RULE_PARAMS = ["params.risk_aversion", "params.target_penalty", "params.cov_window",
               "params.max_weight", "params.risk_free"]
"""The run parameters of the optimiser's rule (``risk.optimize``, and ``risk.backtest``
replaying it), as reads declare them."""


def weight_cap(params: dict[str, Any], n: int) -> float:
    """Param ``max_weight`` (default 0.15, or 2/n under 14 tickers), checked."""
    cap = param_float(params, "max_weight", min(1.0, max(0.15, 2.0 / n)))
    if not 0 < cap <= 1 or cap * n < 1 - 1e-12:
        raise ValueError(
            f"param 'max_weight' = {cap:g} cannot hold a fully invested long-only portfolio "
            f"of {n} tickers: it must lie in [1/{n}, 1] = [{1 / n:.4f}, 1]"
        )
    return cap


@stage(
    "risk.optimize",
    reads=["prices", "inference_outputs", "target_weights", *RULE_PARAMS],
    writes=["weights", "risk", "audit_trail"],
)
def optimize(ctx: PortfolioContext) -> PortfolioContext:
    """Long-only, capped mean-variance weights pulled towards the targets."""
    aversion = param_float(ctx.params, "risk_aversion", 4.0)
    pull = param_float(ctx.params, "target_penalty", 2.0)
    window = param_int(ctx.params, "cov_window", TRADING_DAYS, minimum=2)
    risk_free = param_float(ctx.params, "risk_free", 0.0)
    universe = [str(c) for c in ctx.prices.columns]
    n = len(universe)
    cap = weight_cap(ctx.params, n)

    daily = log_returns(ctx.prices).tail(window)
    last, pred, column = latest_forecast(ctx.inference_outputs)
    missing = [t for t in universe if t not in pred.index]
    if missing:
        raise ValueError(f"no forecast on {last:%Y-%m-%d} for {', '.join(missing)}")
    mu: Vector = np.asarray(pred.reindex(universe), dtype=np.float64) * PERIODS_PER_YEAR
    if ctx.target_weights.empty:
        target = np.full(n, 1.0 / n)
    else:
        target = ctx.target_weights.reindex(universe).fillna(0.0).to_numpy(dtype="float64")

    with blas_thread_limit(1):  # small products: threads would only spin-wait
        cov = shrunk_covariance(daily)
        w = solve_weights_fast(mu, cov, target, cap=cap, aversion=aversion, pull=pull)
    ctx.weights = pd.Series(w, index=pd.Index(universe, name="ticker"), name="weight")
    ctx.risk = risk_summary(w, mu, cov, daily, target, risk_free)
    r = ctx.risk
    ctx.log(
        f"risk.optimize: mean-variance optimum on {last:%Y-%m-%d} (mu = 12 x {column}, "
        f"Ledoit-Wolf covariance of {len(daily)} days, risk aversion {aversion:g}, pull to "
        f"targets {pull:g}, long-only, cap {cap:.0%}); "
        f"expected return {r['expected_return']:.2%}, volatility {r['volatility']:.2%}, "
        f"Sharpe {r['sharpe']:.2f}, {r['n_holdings']:.0f} holdings (effective "
        f"{r['effective_n']:.1f}); weights {ranked(ctx.weights, n=5, fmt='{:.1%}')}"
    )
    return ctx
