"""Every shipped pipeline through the CLI, in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def runner(*args, cwd, env=None, check_json=True):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("TV_ORCH_PARALLEL", None)
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=300, check=False,
    )
    doc = json.loads(proc.stdout) if check_json and proc.stdout.strip() else None
    return proc, doc


def run_json(pipeline, tmp_path, *extra, env=None):
    proc, doc = runner("run", pipeline, "-m", ROOT / "configs/manifest.json", "--json",
                       "--artifacts", tmp_path / "artifacts", *extra, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return doc


def assert_portfolio(doc):
    weights = doc["result"]["weights"]
    assert len(weights) == doc["result"]["universe"] == 20
    assert all(not math.isnan(w) and -1e-9 <= w <= 0.15 + 1e-9 for w in weights.values())
    assert abs(sum(weights.values()) - 1.0) < 1e-5  # rounded to 6 digits per name
    risk = doc["result"]["risk"]
    assert risk["volatility"] > 0 and not math.isnan(risk["expected_return"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """alpha.full, inline: the weights every other pipeline and executor must match."""
    tmp = tmp_path_factory.mktemp("reference")
    return run_json("alpha.full", tmp, "--run-id", "reference")


def test_alpha_full(reference, tmp_path):
    assert reference["status"] == "succeeded" and reference["run_id"] == "reference"
    assert [s["name"] for s in reference["steps"]] == [
        "foundation.ingest", "foundation.features", "alpha.inference", "alpha.clustering",
        "alpha.policy", "alpha.synthesis", "risk.optimize", "risk.backtest"]
    assert all(s["status"] == "succeeded" for s in reference["steps"])
    assert_portfolio(reference)
    again = run_json("alpha.full", tmp_path)
    assert again["result"] == reference["result"]  # same weights on every run


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_alpha_parallel_matches_alpha_full(reference, tmp_path, executor):
    doc = run_json("alpha.parallel", tmp_path, "--executor", executor)
    names = [s["name"] for s in doc["steps"]]
    assert {"alpha.inference_model_a", "alpha.inference_model_b", "alpha.ensemble"} <= set(names)
    assert doc["result"]["weights"] == reference["result"]["weights"]


def test_tv_orch_parallel_runs_the_fanout_on_ray(reference, tmp_path):
    """The seed's switch: parallel branches go to the RayComputeEngine (a local Ray,
    started for the run on 127.0.0.1 and stopped after it)."""
    proc, doc = runner("run", "alpha.fanout", "-m", ROOT / "configs/manifest.json", "--json",
                       "--artifacts", tmp_path / "a", cwd=tmp_path,
                       env={"TV_ORCH_PARALLEL": "1", "RAY_ADDRESS": ""})
    assert proc.returncode == 0, proc.stderr
    assert "executor=ray" in proc.stderr
    assert doc["result"]["weights"] == reference["result"]["weights"]
    run = json.loads((tmp_path / "a/runs" / doc["run_id"] / "run.json").read_text())
    assert run["executor"] == "ray"


def test_meta_full_chains_dataops_into_alpha(reference, tmp_path):
    doc = run_json("meta.full", tmp_path, "--run-id", "meta")
    names = [s["name"] for s in doc["steps"]]
    assert names[0] == "adapt:MetaContext->DataOpsContext"
    assert "adapt:DataOpsContext->PortfolioContext" in names
    assert names.index("dataops.clean") < names.index("foundation.ingest")
    assert_portfolio(doc)
    # the audit trail crosses both pillars: read it from the last checkpoint
    proc, _ = runner("artifacts", "get", "meta", "risk.optimize", "audit_trail",
                     "--artifacts", tmp_path / "artifacts", cwd=tmp_path, check_json=False)
    trail = json.loads(proc.stdout)
    assert any("dataops" in line for line in trail)
    assert any(line.startswith("alpha.policy: forecasts (") for line in trail)


def test_dataops_full(tmp_path):
    doc = run_json("dataops.full", tmp_path)
    assert [s["name"] for s in doc["steps"]] == ["dataops.load", "dataops.validate",
                                                 "dataops.clean"]


def test_users_own_data(reference, tmp_path):
    prices = ROOT / "runner/stages/data/sp500_prices_2013_2022.csv.gz"
    doc = run_json("alpha.full", tmp_path, "--data", prices)
    assert doc["result"]["weights"] == reference["result"]["weights"]


def test_injected_failing_stage_prints_one_error_block(tmp_path):
    (tmp_path / "broken.py").write_text(
        "def explode(ctx):\n    raise RuntimeError('covariance matrix is singular')\n")
    manifest = json.loads((ROOT / "configs/manifest.json").read_text())
    manifest["pipelines"]["alpha.broken"] = {
        "context": "runner.stages.contexts:PortfolioContext",
        "steps": ["foundation.ingest", "foundation.features", "broken.explode"],
    }
    manifest["stages"] = {"broken.explode": "broken:explode"}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
    proc, _ = runner("run", "alpha.broken", "-m", path, "--run-id", "broken", cwd=tmp_path,
                     env=env, check_json=False)
    assert proc.returncode == 1
    err = proc.stderr
    assert "error: stage 'broken.explode' at alpha.broken[2] failed: RuntimeError: " \
           "covariance matrix is singular" in err
    assert "summaries/runs/broken/error_context.pkl" in err and "load_error_context(" in err
    assert "Traceback (most recent call last)" not in err
    assert err.count("error:") == 1
    # the features computed before the failure are intact in the checkpoints
    proc, _ = runner("artifacts", "get", "broken", "foundation.features", "feature_store",
                     cwd=tmp_path, env=env, check_json=False)
    assert proc.returncode == 0 and "mom_21" in proc.stdout
