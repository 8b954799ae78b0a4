"""The long-only capped mean-variance solve the backtest repeats on every rebalance date.

    minimise  0.5 w'Hw + c'w   subject to  sum(w) = 1,  0 <= w_i <= cap

with ``H = aversion * Sigma + 2 * pull * I`` (strictly convex) and ``c = -mu - 2 *
pull * target``: :func:`runner.stages.risk.solve_weights` states it for SLSQP, whose
cost grows with the cube of the universe on every one of its iterations.
:func:`solve_weights_fast` runs accelerated projected gradient (FISTA with adaptive
restart, a matrix-vector product and an O(n log n) projection per iteration) only
(with a backtracking step from a power-iteration estimate of the curvature)
until the set of coordinates at a bound settles, then solves the KKT system of that
active set exactly and keeps the answer only if it passes every optimality check;
otherwise it goes on iterating. A warm start (the previous date's weights) usually
has the right active set already.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["project_capped_simplex", "solve_weights_fast"]

Vector = npt.NDArray[np.float64]
SETTLED = 3
"""Iterations with the same active set before its exact solve is tried."""
RETRY = 10
"""Iterations to wait after an exact solve that failed its checks."""
GROWTH = 1.25
"""The factor a step's curvature check raises the Lipschitz estimate by."""


def project_capped_simplex(v: Vector, cap: float) -> Vector:
    """The point of {0 <= w <= cap, sum(w) = 1} nearest to ``v`` (needs cap * n >= 1).

    It is ``clip(v - tau, 0, cap)`` for the ``tau`` where the sum is 1; the sum is
    piecewise linear and non-increasing in ``tau`` with breakpoints ``v`` and
    ``v - cap``, so it is evaluated at every breakpoint at once (sorted ``v`` and its
    suffix sums) and interpolated between the two around 1: O(n log n), no loop.
    """
    n = len(v)
    ordered = np.sort(v)
    above = np.concatenate([np.cumsum(ordered[::-1])[::-1], [0.0]])  # sum of ordered[k:]
    points = np.sort(np.concatenate([v - cap, v]))
    # the sum at tau: cap for each v_i >= tau + cap, v_i - tau for each tau < v_i < tau + cap
    # (continuous, so ties at a breakpoint count either way)
    free = np.searchsorted(ordered, points, side="right")
    full = np.searchsorted(ordered, points + cap, side="left")
    totals = (cap * (n - full) + (above[free] - above[full])
              - points * ((n - free) - (n - full)))
    lo = max(int(np.searchsorted(-totals, -1.0, side="right")) - 1, 0)  # last >= 1
    hi = min(lo + 1, len(points) - 1)
    a, b = float(points[lo]), float(points[hi])
    sa, sb = float(totals[lo]), float(totals[hi])
    tau = a if sa == sb else a + (sa - 1.0) * (b - a) / (sa - sb)
    return np.clip(v - tau, 0.0, cap)


def solve_weights_fast(mu: Vector, cov: Vector, target: Vector, *, cap: float,
                       aversion: float, pull: float, start: Vector | None = None,
                       tol: float = 1e-12, max_iter: int = 20_000) -> Vector:
    """The optimum of :func:`runner.stages.risk.solve_weights` (tested against it to
    1e-6): FISTA until the active set settles, then that set's exact KKT solve.

    The objective is strictly convex, so the optimum is unique: ``start`` (the
    previous date's weights in the backtest) only shortens the path. Without an
    exact solve that passes its checks, FISTA stops once a step moves no weight by
    more than ``tol``.
    """
    n = len(mu)
    hessian = aversion * cov + 2.0 * pull * np.eye(n)
    linear = -mu - 2.0 * pull * target
    lipschitz = _largest_eigenvalue_estimate(hessian)
    w = project_capped_simplex(target if start is None else start, cap)
    y, t = w, 1.0
    pattern, same, wait = _active(w, cap), 0, 0
    for _ in range(max_iter):
        gradient = hessian @ y + linear
        while True:  # backtracking: the step must not overshoot the curvature along it
            new = project_capped_simplex(y - gradient / lipschitz, cap)
            d = new - y
            if float(d @ (hessian @ d)) <= lipschitz * float(d @ d) * (1.0 + 1e-12):
                break
            lipschitz *= GROWTH
        if float(np.abs(new - w).max()) < tol:
            w = new
            break
        now = _active(new, cap)
        same = same + 1 if np.array_equal(now, pattern) else 0
        pattern, wait = now, wait - 1
        if same >= SETTLED and wait <= 0:
            exact = _solve_active_set(hessian, linear, now, cap=cap)
            if exact is not None:
                w = exact
                break
            wait = RETRY
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        if float((y - new) @ (new - w)) > 0:  # going uphill: restart the momentum
            t_next, y = 1.0, new
        else:
            y = new + ((t - 1.0) / t_next) * (new - w)
        w, t = new, t_next
    out: Vector = np.where(w < 1e-10, 0.0, w)
    out /= out.sum()
    return out


def _largest_eigenvalue_estimate(hessian: Vector, *, rounds: int = 12) -> float:
    """A close estimate, from below, of the Hessian's largest eigenvalue: the Rayleigh
    quotient after a few power iterations from the equal-weight direction (the market
    factor of a covariance matrix). The backtracking in :func:`solve_weights_fast`
    raises it where a step shows more curvature; a full eigensolve cost more than
    the whole solve at a few hundred tickers."""
    v = np.full(len(hessian), 1.0 / np.sqrt(len(hessian)))
    for _ in range(rounds):
        hv = hessian @ v
        v = hv / float(np.linalg.norm(hv))
    return float(v @ (hessian @ v))


def _active(w: Vector, cap: float) -> npt.NDArray[np.int8]:
    """Each coordinate's place: -1 at zero, 1 at the cap, 0 free (the projection's
    clip puts bound coordinates exactly on their bound)."""
    return (w >= cap).astype(np.int8) - (w <= 0.0).astype(np.int8)


def _solve_active_set(hessian: Vector, linear: Vector, pattern: npt.NDArray[np.int8], *,
                      cap: float) -> Vector | None:
    """The exact optimum if ``pattern`` is the optimum's active set, else None.

    With the bound coordinates fixed, the free ones solve the equality-constrained
    KKT system ``H_FF w_F - nu 1 = -(c_F + cap H_FU 1)``, ``sum(w_F) = 1 - cap |U|``.
    The answer counts only if it is feasible and every bound's multiplier has the
    right sign (the gradient minus ``nu`` is >= 0 at zero, <= 0 at the cap).
    """
    free, upper, lower = pattern == 0, pattern == 1, pattern == -1
    k = int(free.sum())
    if k == 0:
        return None
    system = np.empty((k + 1, k + 1))
    system[:k, :k] = hessian[np.ix_(free, free)]
    system[:k, k] = -1.0
    system[k, :k] = 1.0
    system[k, k] = 0.0
    rhs = np.empty(k + 1)
    rhs[:k] = -(linear[free] + cap * hessian[np.ix_(free, upper)].sum(axis=1))
    rhs[k] = 1.0 - cap * float(upper.sum())
    try:
        solution = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        return None
    w = np.where(upper, cap, 0.0)
    w[free] = solution[:k]
    nu = float(solution[k])
    slack = 1e-12 * max(1.0, float(np.abs(linear).max()), abs(nu))
    gradient = hessian @ w + linear - nu
    if (w[free].min() < -1e-14 or w[free].max() > cap + 1e-14
            or (lower.any() and float(gradient[lower].min()) < -slack)
            or (upper.any() and float(gradient[upper].max()) > slack)):
        return None
    return np.clip(w, 0.0, cap)
