"""The shipped quant stages and the pipelines of configs/manifest.json, end to end."""

from __future__ import annotations

import math
import pickle
import time
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from threadpoolctl import threadpool_info

import runner.stages  # noqa: F401 - registers the stages
from runner.context import MetaContext, fork_context
from runner.errors import StageFailedError
from runner.manifest import load_manifest
from runner.orchestration.plan import ParallelGroup, compile_all, compile_plan
from runner.orchestration.runner import DAGRunner
from runner.registry import REGISTRY
from runner.stages import risk
from runner.stages.alpha import REGIMES, rebalance_dates
from runner.stages.contexts import DataOpsContext, PortfolioContext
from runner.stages.foundation import FEATURES, read_prices

MANIFEST = Path(__file__).resolve().parents[3] / "configs" / "manifest.json"
ALPHA_FULL = [
    "foundation.ingest",
    "foundation.features",
    "alpha.inference",
    "alpha.clustering",
    "alpha.policy",
    "alpha.synthesis",
    "risk.optimize",
    "risk.backtest",
]


def run(pipeline, root, executor="inline", context=None):
    plan = compile_plan(load_manifest(MANIFEST), pipeline)
    runner_ = DAGRunner(
        plan, executor=executor, workspace_root=root / "workspaces"
    )
    return runner_.run(context)


def assert_valid_weights(ctx, cap=0.15):
    w = ctx.weights
    assert isinstance(w, pd.Series)
    assert list(w.index) == ctx.universe
    assert not w.isna().any()
    assert abs(w.sum() - 1.0) < 1e-6
    assert (w >= 0.0).all()
    assert (w <= cap + 1e-9).all()


def trail(ctx, prefix):
    return [line for line in ctx.audit_trail if line.startswith(prefix)]


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """alpha.full on the bundled data, inline, and how long it took."""
    start = time.perf_counter()
    result = run("alpha.full", tmp_path_factory.mktemp("full"))
    return result.context, time.perf_counter() - start


@pytest.fixture(scope="module")
def ctx(full):
    return full[0]


@pytest.fixture
def small_prices():
    """Six tickers, 2016-2022, from the bundled data: a user's own price file."""
    prices = read_prices()
    return prices.loc["2016-01-01":, ["AAPL", "JPM", "KO", "MSFT", "PFE", "XOM"]]


# ---------------------------------------------------------------- manifest


def test_every_pipeline_compiles_and_is_described():
    manifest = load_manifest(MANIFEST)
    plans = compile_all(manifest)
    assert {"alpha.full", "alpha.parallel", "dataops.full", "meta.full"} <= set(plans)
    assert all(spec.description for spec in manifest.pipelines.values())
    assert manifest.pipelines["alpha.full"].steps == ALPHA_FULL
    assert plans["alpha.full"].context_type is PortfolioContext
    assert plans["dataops.full"].context_type is DataOpsContext
    assert plans["meta.full"].context_type is MetaContext
    groups = [s for s in plans["alpha.parallel"].walk() if isinstance(s, ParallelGroup)]
    assert groups and groups[0].merge_adapter is not None
    assert groups[0].merge_adapter.name == "alpha.ensemble"
    meta_steps = [s.name for s in plans["meta.full"].walk()]
    assert "adapt:MetaContext->DataOpsContext" in meta_steps
    assert "adapt:DataOpsContext->PortfolioContext" in meta_steps


def test_stage_writes_are_declared():
    writes = {}
    for name in [*ALPHA_FULL, "alpha.inference_model_a", "alpha.inference_model_b"]:
        entry = REGISTRY.get(name)
        assert entry is not None and entry.writes, name
        writes[name] = entry.writes
    # the parallel models touch only fields that merge: columns and an append-only list
    model_a, model_b = writes["alpha.inference_model_a"], writes["alpha.inference_model_b"]
    assert model_a == model_b == {"inference_outputs", "audit_trail"}


# ---------------------------------------------------------------- alpha.full


def test_alpha_full_produces_valid_weights(full):
    ctx, seconds = full
    print(f"alpha.full inline: {seconds:.1f} s")  # a figure, not a test: the machine is shared
    assert isinstance(ctx, PortfolioContext)
    assert len(ctx.universe) == 20
    assert_valid_weights(ctx)
    assert set(ctx.risk) >= {"expected_return", "volatility", "sharpe", "var_95_daily"}
    assert all(math.isfinite(v) for v in ctx.risk.values())
    assert ctx.risk["volatility"] > 0
    assert ctx.regime in REGIMES
    assert set(ctx.clusters) == set(ctx.universe)


def test_frames_have_the_documented_layout(ctx):
    assert list(ctx.feature_store.columns) == list(FEATURES)
    assert ctx.feature_store.index.names == ["date", "ticker"]
    assert list(ctx.inference_outputs.columns) == ["pred_ridge", "pred_gbm", "pred"]
    assert ctx.inference_outputs.index.names == ["date", "ticker"]
    out = ctx.inference_outputs
    assert_series_equal(out["pred"], out[["pred_ridge", "pred_gbm"]].mean(axis=1),
                        check_names=False)
    assert not out.isna().any().any()
    last = out.index.get_level_values("date").max()
    assert last == ctx.prices.index[-1]


def test_audit_trail_explains_the_decisions(ctx):
    (policy,) = trail(ctx, "alpha.policy:")
    assert "z-scores" in policy and ctx.regime in policy
    (synthesis,) = trail(ctx, "alpha.synthesis:")
    assert "cluster budgets" in synthesis and "softmax" in synthesis
    (optimize,) = trail(ctx, "risk.optimize:")
    assert "mean-variance optimum" in optimize and "Sharpe" in optimize
    assert trail(ctx, "alpha.ensemble:") and trail(ctx, "alpha.clustering:")


def test_same_weights_on_every_run(ctx, tmp_path):
    again = run("alpha.full", tmp_path).context
    assert_series_equal(again.weights, ctx.weights, check_exact=True)
    assert_frame_equal(again.inference_outputs, ctx.inference_outputs, check_exact=True)
    assert again.risk == ctx.risk


def test_results_pickle_and_write_parquet(ctx, tmp_path):
    back = pickle.loads(pickle.dumps(ctx))
    assert_series_equal(back.weights, ctx.weights, check_exact=True)
    for name in ("feature_store", "inference_outputs", "prices"):
        frame = getattr(ctx, name)
        frame.to_parquet(tmp_path / f"{name}.parquet")
        assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"), frame,
                           check_freq=False, check_index_type=False)


# ---------------------------------------------------------------- parallel pipelines


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_parallel_models_give_the_same_weights_on_every_executor(ctx, executor, tmp_path):
    result = run("alpha.parallel", tmp_path, executor)
    par = result.context
    assert_valid_weights(par)
    assert_series_equal(par.weights, ctx.weights, check_exact=True)
    assert_frame_equal(par.inference_outputs, ctx.inference_outputs, check_exact=True)
    assert [r.name for r in result.records if r.kind == "merge"] == ["alpha.ensemble"]
    if executor == "processes":
        driver = {r.pid for r in result.records if r.name == "alpha.ensemble"}
        workers = {r.pid for r in result.records if r.name.startswith("alpha.inference_model")}
        assert driver.isdisjoint(workers)


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_nested_fanout_gives_the_same_weights(ctx, executor, tmp_path):
    blas_threads = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    result = run("alpha.fanout", tmp_path, executor)
    # k-means (one branch) limits BLAS process-wide while the models run (other branch):
    # the thread count must come back, or later results change in their last bits
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == blas_threads
    fan = result.context
    assert_series_equal(fan.weights, ctx.weights, check_exact=True)
    assert_frame_equal(fan.feature_store, ctx.feature_store, check_exact=True)
    assert fan.clusters == ctx.clusters and fan.regime == ctx.regime
    pids = {r.name: r.pid for r in result.records}
    # the nested group (two models, then the ensemble) ran inside the first branch
    assert pids["alpha.ensemble"] == pids["foundation.features"]
    if executor == "processes":
        assert pids["alpha.ensemble"] != pids["risk.optimize"]


# ---------------------------------------------------------------- no look-ahead


def test_forecasts_never_use_later_data(ctx, tmp_path):
    cut = "2020-06-15"
    short = run("alpha.full", tmp_path, context=PortfolioContext(params={"end": cut})).context
    assert short.prices.index[-1] == pd.Timestamp(cut)
    assert_valid_weights(short)

    def before(frame, inclusive):
        dates = frame.index.get_level_values("date")
        return frame[dates <= pd.Timestamp(cut)] if inclusive else frame[dates < pd.Timestamp(cut)]

    # every feature up to the cut, every forecast made before it: unchanged
    assert_frame_equal(before(short.feature_store, True), before(ctx.feature_store, True),
                       check_exact=True)
    old = before(short.inference_outputs, False)
    assert old.index.get_level_values("date").nunique() > 40
    assert_frame_equal(old, before(ctx.inference_outputs, False), check_exact=True)
    # and the truncated run forecasts on its own last day
    assert pd.Timestamp(cut) in short.inference_outputs.index.get_level_values("date")


def test_rebalance_dates_are_month_ends_and_today():
    index = pd.bdate_range("2021-01-01", "2021-03-10")
    dates = rebalance_dates(index)
    assert list(dates) == [pd.Timestamp("2021-01-29"), pd.Timestamp("2021-02-26"),
                           pd.Timestamp("2021-03-10")]


# ---------------------------------------------------------------- user data


def test_user_csv_via_params(small_prices, tmp_path):
    path = tmp_path / "my_prices.csv"
    small_prices.rename_axis("date").to_csv(path)
    result = run("alpha.full", tmp_path, context=PortfolioContext(params={"data": str(path)}))
    ctx = result.context
    assert ctx.universe == list(small_prices.columns)
    assert_valid_weights(ctx, cap=2 / 6)
    assert str(path) in trail(ctx, "foundation.ingest:")[0]


def test_user_parquet_on_an_fsspec_url(small_prices, tmp_path):
    url = "memory://runner-tests/prices.parquet"
    with fsspec.open(url, "wb") as fh:
        small_prices.to_parquet(fh)
    try:
        params = {"data": url, "tickers": ["KO", "MSFT", "XOM", "AAPL"], "max_weight": 0.4}
        ctx = run("alpha.full", tmp_path, context=PortfolioContext(params=params)).context
    finally:
        fsspec.filesystem("memory").rm(url)
    assert ctx.universe == ["KO", "MSFT", "XOM", "AAPL"]
    assert_valid_weights(ctx, cap=0.4)


def test_an_infeasible_cap_is_refused_in_words(ctx):
    bad = fork_context(ctx)
    bad.params = {"max_weight": 0.01}
    with pytest.raises(ValueError, match=r"max_weight.*0.01.*\[1/20, 1\]"):
        risk.optimize(bad)


def test_a_missing_file_fails_the_stage(tmp_path):
    params = {"data": str(tmp_path / "nope.csv")}
    with pytest.raises(StageFailedError, match="not found"):
        run("alpha.full", tmp_path, context=PortfolioContext(params=params))


# ---------------------------------------------------------------- dataops and meta


@pytest.fixture
def dirty_csv(small_prices, tmp_path):
    """Real prices with planted defects: every check of dataops.validate fires once."""
    p = small_prices.loc["2019-01-01":].copy()
    p.loc["2020-07-06":"2020-07-17"] = np.nan  # two-week hole...
    p = p.dropna(how="all")  # ...that becomes a calendar gap
    p.iloc[100:103, p.columns.get_loc("KO")] = np.nan  # three missing prices
    p.iloc[200, p.columns.get_loc("PFE")] = 0.0  # a non-positive price
    p.iloc[300:308, p.columns.get_loc("JPM")] = p.iloc[300, p.columns.get_loc("JPM")]  # stale
    p.iloc[400, p.columns.get_loc("XOM")] *= 3.0  # a bad print: up 200%, then back
    spike = p.index[400]
    p = pd.concat([p, p.iloc[[50]]])  # a duplicate date
    p = p.iloc[np.r_[1, 0, 2 : len(p)]]  # two rows out of order
    path = tmp_path / "dirty.csv"
    p.rename_axis("date").to_csv(path)
    return path, spike


def test_dataops_reports_and_cleans_defects(dirty_csv, tmp_path):
    path, spike = dirty_csv
    ctx = run("dataops.full", tmp_path, context=DataOpsContext(params={"data": str(path)})).context
    q = ctx.quality
    assert q["sorted"] is False
    assert q["duplicate_dates"] == 1
    assert q["missing"] == {"KO": 3}
    assert q["non_positive"] == {"PFE": 1}
    assert len(q["calendar_gaps"]) == 1 and q["calendar_gaps"][0].startswith("2020-07-02")
    assert q["stale"] == {"JPM": 8}
    assert f"{spike:%Y-%m-%d}" in [o.split()[0] for o in q["outliers"]["XOM"]]
    prices = ctx.prices
    assert prices.index.is_monotonic_increasing and prices.index.is_unique
    assert not prices.isna().any().any() and (prices > 0).all().all()
    (validate,) = trail(ctx, "dataops.validate:")
    assert "NOT sorted" in validate and "1 duplicate" in validate and "XOM" in validate
    (clean,) = trail(ctx, "dataops.clean:")
    assert "duplicate" in clean and "forward-filled 4" in clean


def test_meta_pipeline_chains_dataops_into_alpha(ctx, tmp_path):
    meta = run("meta.full", tmp_path, context=MetaContext()).context
    assert isinstance(meta, PortfolioContext)
    assert_series_equal(meta.weights, ctx.weights, check_exact=True)
    assert trail(meta, "dataops.validate:") and trail(meta, "risk.optimize:")
    assert "the context (prepared upstream)" in trail(meta, "foundation.ingest:")[0]
    assert trail(meta, "adapter DataOpsContext -> PortfolioContext")


def test_meta_pipeline_on_a_dirty_user_file(dirty_csv, tmp_path):
    path, _ = dirty_csv
    params = {"data": str(path), "min_train_months": 12}
    meta = run("meta.full", tmp_path, context=MetaContext(params=params)).context
    assert meta.universe == ["AAPL", "JPM", "KO", "MSFT", "PFE", "XOM"]
    assert meta.params["data"] == str(path)
    assert_valid_weights(meta, cap=2 / 6)
