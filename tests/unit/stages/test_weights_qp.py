"""The capped mean-variance solver of risk.optimize and the backtest: SLSQP's optimum,
whatever its start, exact on its active set, and the projection it stands on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runner.stages.risk import shrunk_covariance, solve_weights
from runner.stages.weights_qp import project_capped_simplex, solve_weights_fast

AVERSION, PULL = 4.0, 2.0


def _problem(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    daily = pd.DataFrame(rng.normal(0, 0.01, (252, n)) + rng.normal(0, 0.01, (252, 1)))
    target = np.exp(rng.normal(0, 1, n))
    return rng.normal(0.0, 0.3, n), shrunk_covariance(daily), target / target.sum(), \
        max(0.15, 2.0 / n)


def _kkt_gap(w: np.ndarray, mu: np.ndarray, cov: np.ndarray, target: np.ndarray,
             cap: float) -> float:
    """How far ``w`` is from optimal: the largest violation of the KKT conditions."""
    gradient = -mu + AVERSION * (cov @ w) + 2.0 * PULL * (w - target)
    free = (w > 0) & (w < cap)
    nu = float(np.median(gradient[free]))  # free coordinates share one multiplier
    return max(float(np.ptp(gradient[free])),
               float(np.clip(nu - gradient[w <= 0], 0, None).max(initial=0.0)),
               float(np.clip(gradient[w >= cap] - nu, 0, None).max(initial=0.0)))


@pytest.mark.parametrize(("n", "seed"), [(5, 0), (40, 1), (150, 2)])
def test_from_any_start_the_solver_lands_on_slsqps_optimum(n: int, seed: int) -> None:
    mu, cov, target, cap = _problem(n, seed)
    slsqp, _ = solve_weights(mu, cov, target, cap=cap, aversion=AVERSION, pull=PULL)
    rng = np.random.default_rng(seed + 100)
    starts = [None, np.full(n, 1.0 / n), project_capped_simplex(rng.normal(0, 1, n), cap),
              slsqp]
    for start in starts:
        fast = solve_weights_fast(mu, cov, target, cap=cap, aversion=AVERSION, pull=PULL,
                                  start=start)
        np.testing.assert_allclose(fast, slsqp, atol=1e-6)
        assert fast.sum() == pytest.approx(1.0) and fast.min() >= 0
        assert fast.max() <= cap + 1e-12


@pytest.mark.parametrize(("n", "seed"), [(20, 3), (300, 4)])
def test_the_optimum_is_exact_not_just_close(n: int, seed: int) -> None:
    """The active set's KKT solve leaves no optimality gap a gradient method would."""
    mu, cov, target, cap = _problem(n, seed)
    w = solve_weights_fast(mu, cov, target, cap=cap, aversion=AVERSION, pull=PULL)
    gap = _kkt_gap(w, mu, cov, target, cap)
    print(f"n={n}: KKT gap {gap:.2e}")
    assert gap < 1e-10


def _project_by_bisection(v: np.ndarray, cap: float) -> np.ndarray:
    lo, hi = float(v.min()) - cap, float(v.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.clip(v - mid, 0, cap).sum() >= 1.0 else (lo, mid)
    return np.clip(v - 0.5 * (lo + hi), 0, cap)


@pytest.mark.parametrize(("n", "cap"), [(3, 0.5), (20, 0.15), (300, 0.15), (300, 1 / 300),
                                        (5, 1.0)])
def test_the_projection_is_the_nearest_capped_simplex_point(n: int, cap: float) -> None:
    rng = np.random.default_rng(n)
    for scale in (1e-3, 1.0, 10.0):
        v = rng.normal(0, scale, n)
        v[: n // 3] = v[n // 3]  # ties between breakpoints
        w = project_capped_simplex(v, cap)
        np.testing.assert_allclose(w, _project_by_bisection(v, cap), atol=1e-9)
        assert w.sum() == pytest.approx(1.0, abs=1e-12)


def test_a_curvature_the_first_estimate_misses_still_gives_the_optimum() -> None:
    """The step starts from the curvature along equal weights; a covariance whose
    largest eigenvector is long-short (orthogonal to it) has 25 times more: the
    solver still lands on SLSQP's optimum, exactly."""
    n = 30
    rng = np.random.default_rng(11)
    long_short = np.where(np.arange(n) % 2 == 0, 1.0, -1.0) / np.sqrt(n)
    cov = np.diag(rng.uniform(0.01, 0.03, n)) + 25.0 * np.outer(long_short, long_short)
    mu = rng.normal(0.0, 0.5, n)
    target = np.full(n, 1.0 / n)
    cap = 0.15
    slsqp, _ = solve_weights(mu, cov, target, cap=cap, aversion=AVERSION, pull=PULL)
    fast = solve_weights_fast(mu, cov, target, cap=cap, aversion=AVERSION, pull=PULL)
    np.testing.assert_allclose(fast, slsqp, atol=1e-6)
    assert _kkt_gap(fast, mu, cov, target, cap) < 1e-10
