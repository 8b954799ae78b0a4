"""What a researcher came for, through the CLI as they run it: alpha.full's weights
and backtest figures on stdout (``> out.txt`` keeps them), a ``run_result`` line
with ``--log-format json``, and ``runner report`` with the Results section and the
backtest's equity curve."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def runner(*args: object, cwd: Path, stdout: object = subprocess.PIPE
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNNER_DEBUG", "RUNNER_LOG_FORMAT", "RUNNER_MANIFEST",
                        "TV_ORCH_PARALLEL")}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=env, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=600, check=False)


def test_alpha_full_results_on_stdout_and_in_the_report(tmp_path: Path) -> None:
    manifest = ROOT / "configs/manifest.json"
    out = tmp_path / "out.txt"
    with out.open("w") as fh:  # runner run alpha.full > out.txt
        proc = runner("run", "alpha.full", "-m", manifest, "--artifacts", tmp_path / "a",
                      "--run-id", "res-1", cwd=tmp_path, stdout=fh)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    for words in ("weights", "AAPL", "risk", "sharpe", "backtest", "annual_return",
                  "max_drawdown", "mean_turnover", "regime:"):
        assert words in text, words
    assert "✓" not in text and "succeeded in" not in text
    assert "✓ risk.backtest" in proc.stderr and "succeeded in" in proc.stderr

    page = tmp_path / "res-1.html"
    made = runner("report", "res-1", "--artifacts", tmp_path / "a", "-o", page, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    html = page.read_text()
    results = re.search(r'<section id="results">.*?</section>', html, re.S).group(0)
    stored = _stored_results(tmp_path / "a", "res-1")
    days = len(stored["charts"]["backtest"]["dates"])
    assert days > 1000  # daily, 2016-2022
    equity = re.search(r'data-series="equity" data-points="(\d+)" points="([^"]+)"', results)
    assert int(equity.group(1)) == len(equity.group(2).split()) == days
    assert "risk.backtest: walk-forward out-of-sample" in results
    assert "<code>backtest</code>" in results and "<caption>weights</caption>" in results


def _stored_results(root: Path, run_id: str) -> dict:
    """The run's results as stored: results.json naming its charts object, which a sweep
    of unreferenced objects keeps (the run references it)."""
    from runner.artifacts import ArtifactStore, read_run, sweep_store
    from runner.artifacts.results import charts_object, read_results

    store = ArtifactStore(str(root), {})
    raw = json.loads(store.read_bytes(f"runs/{run_id}/results.json"))
    assert "charts" not in raw and charts_object(raw) is not None
    assert sweep_store(store, grace=0, dry_run=True).deleted == []
    doc, note = read_results(store, run_id, read_run(store, run_id).results.model_dump())
    assert note is None and doc is not None
    return doc


def test_alpha_full_with_json_logs_has_one_run_result_line(tmp_path: Path) -> None:
    proc = runner("run", "alpha.full", "-m", ROOT / "configs/manifest.json", "--artifacts",
                  tmp_path / "a", "--log-format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    (line,) = [line for line in lines if line.get("event") == "run_result"]
    result = line["result"]
    assert len(result["weights"]) == 20 and result["universe"] == 20
    assert {"annual_return", "annual_volatility", "sharpe", "max_drawdown",
            "mean_turnover"} <= set(result["backtest"])
    assert -1 < result["backtest"]["max_drawdown"] <= 0
