"""Alpha pillar: walk-forward return forecasts, clusters and regimes, signals, targets.

Forecasts
---------
Portfolios are formed on *rebalance dates*: the last trading day of every month,
plus the last day of the data (today). Each model predicts, from the features of
date ``t``, the log return of a ticker from ``t`` to the next rebalance date.

The walk-forward never looks ahead: the model used on rebalance date ``d_k`` is fit
only on samples ``(d_j, ticker)`` whose outcome is already known on ``d_k``, i.e.
``j < k`` (the outcome of ``d_j`` is realised on ``d_{j+1} <= d_k``), over a rolling
window of ``train_window_months`` (default 60). Models are refit every
``refit_months`` (default 3) once ``min_train_months`` (default 24) of history exist;
in between, the latest fit is reused.

- ``alpha.inference_model_a``: standardised ridge regression, its penalty chosen by
  efficient leave-one-out CV (scikit-learn ``RidgeCV``) -> column ``pred_ridge``.
- ``alpha.inference_model_b``: histogram gradient boosting (scikit-learn
  ``HistGradientBoostingRegressor``, fixed seed) -> column ``pred_gbm``.
- ``alpha.ensemble`` (merge adapter): the mean of every ``pred_*`` column -> ``pred``.
- ``alpha.inference``: both models and the ensemble in sequence, so ``alpha.full``
  and the parallel ``alpha.parallel`` produce the same weights.

Then ``alpha.clustering`` groups tickers by return correlation (k-means) and finds
the volatility regime, ``alpha.policy`` turns the latest forecasts into signals, and
``alpha.synthesis`` turns signals into long-only target weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, cast

import numpy as np
import pandas as pd

from runner.context import field_rules
from runner.merge import BranchValue, merge_contexts
from runner.orchestration.native_threads import map_on_cores
from runner.registry import merge_adapter, stage
from runner.stages._deferred import deferred_imports
from runner.stages.contexts import FloatSeries, PortfolioContext, param_float, param_int
from runner.stages.foundation import TRADING_DAYS, log_prices, log_returns

__all__ = [
    "MODEL_FEATURES",
    "clustering",
    "ensemble",
    "inference",
    "inference_model_a",
    "inference_model_b",
    "latest_forecast",
    "next_period_returns",
    "one_openmp_thread",
    "policy",
    "rank_ic",
    "ranked",
    "rebalance_dates",
    "synthesis",
    "walk_forward",
]

MODEL_FEATURES = ["rev_5", "mom_21", "mom_63", "mom_252", "vol_21", "vol_63", "dd_252"]
"""Feature columns the forecasting models read."""

PERIODS_PER_YEAR = 12
REGIMES = ("calm", "normal", "stressed")
REGIME_SCALE = {"calm": 1.0, "normal": 0.75, "stressed": 0.5}
SEED = 0

Model = Any  # a scikit-learn regressor
_INFERENCE_WRITES = ["inference_outputs", "audit_trail"]
_INFERENCE_READS = ["feature_store", "prices", "inference_outputs", "params.min_train_months",
                    "params.train_window_months", "params.refit_months"]
_RIDGE_IMPORTS = ["sklearn.linear_model", "sklearn.pipeline", "sklearn.preprocessing"]
_GBM_IMPORTS = ["sklearn.ensemble"]


# ---------------------------------------------------------------- walk-forward


def one_openmp_thread() -> AbstractContextManager[Any]:
    """Run scikit-learn's OpenMP code (k-means, gradient boosting) on one thread.

    These fits are tiny: OpenMP threads only add spin-waiting, badly so on a busy
    machine (a 2-thread gradient boosting took 10-50x longer than one thread on a
    loaded 2-core host), and one thread keeps k-means' sums in a fixed order, so
    every executor gives the same bits. Call it once the estimator's module is
    imported: the limiter holds only the OpenMP libraries loaded when it is made
    (in a fresh worker, scikit-learn's OpenMP loads with scikit-learn). It leaves
    BLAS alone: BLAS's thread count is process-wide, and the executor sizes it to
    the branch's CPU share (``threadpoolctl.threadpool_limits`` here would race
    with the BLAS limit scikit-learn's k-means sets in another branch). OpenMP's
    count is per calling thread, so this leaves other branches alone.
    """
    with deferred_imports:
        from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController().select(user_api="openmp").limit(limits=1)  # type: ignore[no-any-return]


def rebalance_dates(index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The last trading day of each month in ``index``, including its last day."""
    days = pd.Series(index, index=index)
    last = days.groupby(index.to_period("M")).max()
    return pd.DatetimeIndex(last.to_numpy(), name="date")


def next_period_returns(prices: pd.DataFrame, dates: pd.DatetimeIndex) -> FloatSeries:
    """Log return of each ticker from each date to the next one, (date, ticker); NaN last."""
    logp = log_prices(prices.loc[dates])
    fwd = cast(FloatSeries, (logp.shift(-1) - logp).stack())
    fwd.index = fwd.index.set_names(["date", "ticker"])
    return fwd.rename("realized")


def walk_forward(
    panel: pd.DataFrame,
    prices: pd.DataFrame,
    make_model: Callable[[], Model],
    params: dict[str, Any],
) -> tuple[FloatSeries, int]:
    """Out-of-sample forecasts on every rebalance date with enough history.

    Returns the forecasts, indexed (date, ticker), and the number of fits.
    """
    min_train = param_int(params, "min_train_months", 24)
    window = param_int(params, "train_window_months", 60)
    refit = param_int(params, "refit_months", 3)
    dates = rebalance_dates(pd.DatetimeIndex(prices.index))
    label = next_period_returns(prices, dates)
    on_dates = panel.index.get_level_values("date").isin(dates)
    x_all = panel.loc[on_dates, MODEL_FEATURES].dropna()
    y_all = label.reindex(x_all.index)
    x, y = x_all.to_numpy(), y_all.to_numpy()
    x_dates = x_all.index.get_level_values("date").to_numpy()
    known = ~np.isnan(y)
    segments: list[tuple[Any, list[np.datetime64]]] = []  # a fit's rows and the dates it serves
    for k, today in enumerate(dates.to_numpy()):
        # samples whose outcome is known today: j < k, within the rolling window
        first = dates.to_numpy()[max(0, k - window)]
        train = (x_dates < today) & (x_dates >= first) & known
        if len(np.unique(x_dates[train])) < min_train:
            continue
        if not segments or len(segments[-1][1]) >= refit:
            segments.append((train, []))
        segments[-1][1].append(today)
    make_model()  # imports the model's modules, so the limiters below see their OpenMP
    # the fits are independent: on the cores this stage may use, more as they free up
    models = map_on_cores(lambda rows: make_model().fit(x[rows], y[rows]),
                          [rows for rows, _ in segments])
    with one_openmp_thread():
        out: list[FloatSeries] = []
        for model, (_, served) in zip(models, segments, strict=True):
            rows = np.isin(x_dates, served)
            if rows.any():
                out.append(pd.Series(model.predict(x[rows]), index=x_all.index[rows]))
    if not out:
        raise ValueError(
            f"not enough history for a walk-forward forecast: need features on at least "
            f"{min_train} month-ends before the first forecast (param 'min_train_months'); "
            f"the data has {len(dates)} month-ends, of which the first ~12 are spent on "
            "the 12-month momentum feature"
        )
    return pd.concat(out).astype("float64"), len(segments)


def rank_ic(pred: FloatSeries, realized: FloatSeries) -> FloatSeries:
    """Spearman correlation of forecasts and outcomes across tickers, per date."""
    both = pd.DataFrame({"p": pred, "y": realized}).dropna()
    ranks = both.groupby(level="date").rank()
    ranks = ranks - ranks.groupby(level="date").transform("mean")
    num = (ranks["p"] * ranks["y"]).groupby(level="date").sum()
    den = (
        (ranks["p"] ** 2).groupby(level="date").sum()
        * (ranks["y"] ** 2).groupby(level="date").sum()
    ) ** 0.5
    return (num / den.where(den > 0)).dropna()


def _ic_summary(ctx: PortfolioContext, column: str) -> str:
    realized = next_period_returns(ctx.prices, rebalance_dates(pd.DatetimeIndex(ctx.prices.index)))
    ic = rank_ic(ctx.inference_outputs[column], realized)
    if ic.empty:
        return "no realised outcome yet"
    return f"mean rank IC {ic.mean():+.3f} over {len(ic)} realised months"


def _with_column(frame: pd.DataFrame, name: str, values: FloatSeries) -> pd.DataFrame:
    if frame.columns.empty:
        return values.rename(name).to_frame()
    out = frame.copy()
    out[name] = values.reindex(out.index)
    return out


def _make_ridge() -> Model:
    with deferred_imports:
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 11)))


def _make_gbm() -> Model:
    with deferred_imports:
        from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(
        max_iter=40, learning_rate=0.075, max_depth=3, min_samples_leaf=40,
        l2_regularization=1.0, early_stopping=False, random_state=SEED,
    )


def _run_model(ctx: PortfolioContext, column: str, make_model: Callable[[], Model],
               what: str) -> PortfolioContext:
    missing = [f for f in MODEL_FEATURES if f not in ctx.feature_store.columns]
    if missing:
        raise ValueError(f"feature_store lacks {', '.join(missing)}: run foundation.features")
    pred, fits = walk_forward(ctx.feature_store, ctx.prices, make_model, ctx.params)
    ctx.inference_outputs = _with_column(ctx.inference_outputs, column, pred)
    dates = pred.index.get_level_values("date")
    ctx.log(
        f"{what}: walk-forward {column} on {dates.nunique()} rebalance dates "
        f"{dates.min():%Y-%m-%d}..{dates.max():%Y-%m-%d} ({fits} fits, no look-ahead); "
        f"{_ic_summary(ctx, column)}"
    )
    return ctx


@stage("alpha.inference_model_a", reads=_INFERENCE_READS, writes=_INFERENCE_WRITES,
       imports=_RIDGE_IMPORTS)
def inference_model_a(ctx: PortfolioContext) -> PortfolioContext:
    """Model A: ridge regression forecasts of next-month returns -> ``pred_ridge``."""
    return _run_model(ctx, "pred_ridge", _make_ridge, "alpha.inference_model_a (ridge)")


@stage("alpha.inference_model_b", reads=_INFERENCE_READS, writes=_INFERENCE_WRITES,
       imports=_GBM_IMPORTS)
def inference_model_b(ctx: PortfolioContext) -> PortfolioContext:
    """Model B: gradient-boosted trees forecasts of next-month returns -> ``pred_gbm``."""
    return _run_model(ctx, "pred_gbm", _make_gbm, "alpha.inference_model_b (gradient boosting)")


def _add_ensemble(ctx: PortfolioContext) -> PortfolioContext:
    outputs = ctx.inference_outputs
    models = [str(c) for c in outputs.columns if str(c).startswith("pred_")]
    if not models:
        raise ValueError("no model forecasts (pred_* columns) in inference_outputs")
    ctx.inference_outputs = _with_column(outputs, "pred", outputs[models].mean(axis=1))
    ctx.log(f"alpha.ensemble: pred = mean of {', '.join(models)}; {_ic_summary(ctx, 'pred')}")
    return ctx


@merge_adapter("alpha.ensemble")
def ensemble(base: PortfolioContext, branches: Sequence[PortfolioContext]) -> PortfolioContext:
    """Merge the model branches (by the context's merge rules), then average their forecasts."""
    values = [BranchValue(f"branch {i}", i, b) for i, b in enumerate(branches)]
    merged = merge_contexts(base, values, field_rules(type(base)), group="alpha.ensemble")
    return _add_ensemble(merged)


@stage("alpha.inference", reads=_INFERENCE_READS, writes=_INFERENCE_WRITES,
       imports=_RIDGE_IMPORTS + _GBM_IMPORTS)
def inference(ctx: PortfolioContext) -> PortfolioContext:
    """Both models and their ensemble, in sequence (``alpha.parallel`` runs them in parallel)."""
    ctx = inference_model_a(ctx)
    ctx = inference_model_b(ctx)
    return _add_ensemble(ctx)


# ---------------------------------------------------------------- clusters and regimes


@stage("alpha.clustering", reads=["prices", "params.cluster_window", "params.n_clusters"],
       writes=["clusters", "regime", "audit_trail"], imports=["sklearn.cluster"])
def clustering(ctx: PortfolioContext) -> PortfolioContext:
    """K-means clusters of return correlations, and the market's volatility regime.

    Clusters: each ticker is described by its row of the correlation matrix of daily
    log returns over the last ``cluster_window`` days (default 252); ``n_clusters``
    (default 4). Regime: 1-d k-means (3 clusters) of the log 21-day volatility of the
    equal-weight portfolio over its whole history; today's cluster, ordered by
    volatility, names the regime calm, normal or stressed.
    """
    with deferred_imports:
        from sklearn.cluster import KMeans

    window = param_int(ctx.params, "cluster_window", TRADING_DAYS, minimum=2)
    rets = log_returns(ctx.prices)
    corr = rets.tail(window).corr().fillna(0.0)
    k = min(param_int(ctx.params, "n_clusters", 4), len(corr))
    with one_openmp_thread():
        labels = KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(corr.to_numpy())
    order = {lab: i for i, lab in enumerate(dict.fromkeys(labels.tolist()))}  # first-seen order
    ctx.clusters = {str(t): order[lab] for t, lab in zip(corr.index, labels.tolist(), strict=True)}

    vol = (rets.mean(axis=1).rolling(21).std() * np.sqrt(TRADING_DAYS)).dropna()
    if len(vol) < len(REGIMES):
        raise ValueError("not enough history to estimate the volatility regime")
    km = KMeans(n_clusters=len(REGIMES), n_init=10, random_state=SEED)
    with one_openmp_thread():
        vol_labels = km.fit_predict(np.log(vol.to_numpy()).reshape(-1, 1))
    rank = np.argsort(np.argsort(km.cluster_centers_.ravel()))
    ctx.regime = REGIMES[int(rank[vol_labels[-1]])]
    centers = np.sort(np.exp(km.cluster_centers_.ravel()))
    members = {c: [t for t, g in ctx.clusters.items() if g == c] for c in range(k)}
    ctx.log(
        f"alpha.clustering: {k} correlation clusters over the last {min(window, len(rets))} days: "
        + "; ".join(f"{c}: {', '.join(m)}" for c, m in members.items())
        + f". Regime {ctx.regime!r}: equal-weight 21d vol {vol.iloc[-1]:.1%} on "
        f"{vol.index[-1]:%Y-%m-%d} (regime centres {', '.join(f'{c:.1%}' for c in centers)})"
    )
    return ctx


# ---------------------------------------------------------------- policy and synthesis


def latest_forecast(outputs: pd.DataFrame) -> tuple[pd.Timestamp, FloatSeries, str]:
    if outputs.empty:
        raise ValueError("no forecasts in inference_outputs: run an alpha.inference stage")
    column = "pred" if "pred" in outputs.columns else ""
    if column:
        pred = outputs[column]
    else:
        models = [str(c) for c in outputs.columns if str(c).startswith("pred_")]
        if not models:
            raise ValueError("inference_outputs has no 'pred' or 'pred_*' column")
        pred, column = outputs[models].mean(axis=1), f"mean of {', '.join(models)}"
    last = pd.Timestamp(pred.index.get_level_values("date").max())
    latest = pred.xs(last, level="date").astype("float64")
    latest.index = latest.index.astype(str)
    return last, latest, column


def ranked(values: FloatSeries, n: int = 3, fmt: str = "{:+.2f}") -> str:
    """The ``n`` largest and ``n`` smallest values, for the audit trail."""
    ordered = values.sort_values(ascending=False, kind="stable")
    shown = [f"{t} {fmt.format(v)}" for t, v in ordered.items()]
    n = min(n, len(shown) // 2)
    if n == 0:
        return ", ".join(shown)
    return f"strongest {', '.join(shown[:n])}; weakest {', '.join(shown[-n:])}"


@stage(
    "alpha.policy",
    reads=["inference_outputs", "regime", "params.signal_clip"],
    writes=["signals", "audit_trail"],
    imports=["scipy.stats"],
)
def policy(ctx: PortfolioContext) -> PortfolioContext:
    """Latest forecasts -> cross-sectional z-scores, clipped, scaled down in riskier regimes."""
    with deferred_imports:
        from scipy.stats import zscore

    last, pred, column = latest_forecast(ctx.inference_outputs)
    clip = param_float(ctx.params, "signal_clip", 2.5)
    if len(pred) > 1 and pred.std() > 0:
        z = pd.Series(zscore(pred.to_numpy()), index=pred.index)
    else:
        z = pred * 0.0
    scale = REGIME_SCALE.get(ctx.regime, 1.0)
    ctx.signals = (z.clip(-clip, clip) * scale).rename("signal")
    ctx.log(
        f"alpha.policy: forecasts ({column}) of {last:%Y-%m-%d} -> cross-sectional z-scores "
        f"clipped at +/-{clip:g}, scaled by {scale:g} for the {ctx.regime or 'unknown'!s} "
        f"regime; forecast next-month returns {ranked(pred, fmt='{:+.2%}')}; "
        f"signals {ranked(ctx.signals)}"
    )
    return ctx


@stage(
    "alpha.synthesis",
    reads=["signals", "clusters", "params.tilt"],
    writes=["target_weights", "audit_trail"],
    imports=["scipy.special"],
)
def synthesis(ctx: PortfolioContext) -> PortfolioContext:
    """Signals -> long-only target weights: cluster budgets, then a softmax tilt inside each.

    Each correlation cluster gets a budget proportional to the square root of its
    size (between equal weight per ticker and per cluster, so one crowded cluster
    cannot dominate); inside a cluster, weights are ``softmax(tilt * signal)``
    (``tilt`` param, default 1).
    """
    with deferred_imports:
        from scipy.special import softmax

    if ctx.signals.empty:
        raise ValueError("no signals: run alpha.policy first")
    tilt = param_float(ctx.params, "tilt", 1.0)
    clusters = pd.Series({t: ctx.clusters.get(t, -1) for t in ctx.signals.index}, dtype="int64")
    sizes = clusters.value_counts()
    budget = np.sqrt(sizes) / np.sqrt(sizes).sum()
    weights = pd.Series(0.0, index=ctx.signals.index, name="target_weight")
    for c in sorted(sizes.index):
        names = clusters.index[clusters == c]
        inside = softmax(tilt * ctx.signals[names].to_numpy())
        weights[names] = budget[c] * inside
    ctx.target_weights = weights / weights.sum()
    ctx.log(
        "alpha.synthesis: cluster budgets "
        + ", ".join(f"{c}: {budget[c]:.1%} ({sizes[c]} name{'s' if sizes[c] > 1 else ''})"
                    for c in sorted(sizes.index))
        + f"; softmax tilt {tilt:g} on signals inside each cluster; targets "
        + ranked(ctx.target_weights, fmt="{:.1%}")
    )
    return ctx
