"""The benchmark universe: deterministic, realistic, and what the shipped stages run on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from runner.manifest import load_manifest
from runner.orchestration.plan import compile_plan
from runner.orchestration.runner import DAGRunner
from runner.stages.contexts import PortfolioContext
from runner.stages.foundation import read_prices
from runner.stages.universe import SECTORS, extended_prices

ROOT = Path(__file__).resolve().parents[3]


def test_the_same_seed_gives_the_same_prices_and_another_seed_others():
    a, b = extended_prices(60), extended_prices(60)
    assert_frame_equal(a, b, check_exact=True)
    assert not extended_prices(60, seed=1).iloc[:, 20:].equals(a.iloc[:, 20:])


def test_the_universe_extends_the_bundled_prices_with_plausible_tickers():
    bundled = read_prices()
    prices = extended_prices(120)
    assert prices.shape == (len(bundled), 120)
    assert prices.index.equals(bundled.index) and prices.index.name == "date"
    assert_frame_equal(prices.iloc[:, :20], bundled, check_exact=True, check_names=False)
    assert prices.columns.is_unique
    assert not prices.isna().any().any()
    assert (prices > 0).all().all()
    synthetic = prices.columns[20:]
    assert {c[:3] for c in synthetic} <= set(SECTORS)
    rets = np.log(prices).diff().dropna()
    vol = rets.std() * np.sqrt(252)  # annualised: a stock's, not a bond's or a coin's
    assert vol[synthetic].min() > 0.05 and vol[synthetic].max() < 1.5
    assert abs(vol[synthetic].median() - vol.iloc[:20].median()) < 0.15
    corr = rets.corr().to_numpy()
    mean_corr = corr[np.triu_indices_from(corr, 1)].mean()
    assert 0.15 < mean_corr < 0.7  # stocks move together, not as one
    same_sector = rets[[c for c in synthetic if c.startswith("ENE")]].corr().to_numpy()
    energy = same_sector[np.triu_indices_from(same_sector, 1)].mean()
    assert energy > mean_corr  # a sector's tickers move together more


def test_the_command_writes_a_file_the_data_option_reads(tmp_path):
    out = tmp_path / "prices.parquet"
    subprocess.run([sys.executable, "-m", "runner.stages.universe", "--tickers", "30", "-o",
                    str(out)], cwd=ROOT, check=True, capture_output=True, timeout=120)
    assert_frame_equal(read_prices(str(out)), extended_prices(30), check_freq=False)


@pytest.fixture(scope="module")
def small_universe(tmp_path_factory):
    path = tmp_path_factory.mktemp("universe") / "prices.parquet"
    extended_prices(32).to_parquet(path)
    return path


def run(pipeline: str, executor: str, data: Path, root: Path):
    plan = compile_plan(load_manifest(ROOT / "configs" / "manifest.json"), pipeline)
    runner = DAGRunner(plan, executor=executor, workspace_root=root / "w")
    return runner.run(PortfolioContext(params={"data": str(data)})).context


@pytest.fixture(scope="module")
def reference(small_universe, tmp_path_factory):
    return run("alpha.full", "inline", small_universe, tmp_path_factory.mktemp("ref"))


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_alpha_parallel_on_the_universe_gives_the_same_weights_on_every_executor(
        small_universe, reference, executor, tmp_path):
    ctx = run("alpha.parallel", executor, small_universe, tmp_path)
    assert len(ctx.weights) == 32 and not ctx.weights.isna().any()
    assert_series_equal(ctx.weights, reference.weights, check_exact=True)
    assert_frame_equal(ctx.inference_outputs, reference.inference_outputs, check_exact=True)
    assert ctx.clusters == reference.clusters and ctx.regime == reference.regime
