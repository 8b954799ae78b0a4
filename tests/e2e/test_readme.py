"""Every command the README shows is run here, in order, as a new user would."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
pytestmark = pytest.mark.slow


def commands() -> list[str]:
    out = []
    for lang, body in BLOCKS:
        if lang != "bash":
            continue
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def block_after(marker: str, lang: str) -> str:
    for block_lang, body in BLOCKS:
        if block_lang == lang and marker in body:
            return body
    raise AssertionError(f"README has no {lang} block containing {marker!r}")


def test_the_two_commands_are_first_and_ci_runs_the_test_one():
    first = commands()[:2]
    assert first == ["make run", "make test"]
    ci = (ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert ci == "make test"
    makefile = (ROOT / "Makefile").read_text()
    assert "PIPELINE ?= alpha.full" in makefile
    assert re.search(r"^run: .*\n\t\$\(BIN\)/runner run \$\(PIPELINE\)$", makefile, re.M)
    assert re.search(r"^test: check browser\n\t\$\(BIN\)/python -m pytest \$\(PYTEST_ARGS\)\n"
                     r"\t\./scripts/container-e2e\.sh$", makefile, re.M)
    assert re.search(r"^PYTEST_ARGS \?= -n 2 --dist loadfile$", makefile, re.M)


def test_every_readme_command_runs(tmp_path):
    """`make run` is `runner run alpha.full` after installing; it runs here as such."""
    (tmp_path / "my_stages.py").write_text(block_after("# my_stages.py", "python"))
    (tmp_path / "demo.json").write_text(block_after('"demo"', "json"))
    prices = pd.read_csv(ROOT / "runner/stages/data/sp500_prices_2013_2022.csv.gz",
                         index_col=0, parse_dates=True)
    prices.to_parquet(tmp_path / "my_prices.parquet")
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "RUNNER_MANIFEST": str(ROOT / "configs/manifest.json")}
    env.pop("TV_ORCH_PARALLEL", None)
    for key in [k for k in env if k.startswith("OTEL_") or k == "TRACEPARENT"]:
        env.pop(key)
    ran, ran_output = [], []
    for line in commands():
        if line.startswith("make "):
            line = {"make run": "runner run alpha.full"}.get(line)
            if line is None:
                continue  # `make test` is what CI runs around this very test
        argv = shlex.split(line)
        assigned = {}
        while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", argv[0]):
            key, _, value = argv.pop(0).partition("=")
            assigned[key] = value
        assert argv[0] == "runner", line
        proc = subprocess.run([sys.executable, "-m", "runner.cli", *argv[1:]], cwd=tmp_path,
                              env={**env, **assigned}, capture_output=True, text=True,
                              timeout=300, check=False)
        assert proc.returncode == 0, f"{line}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, line
        ran.append(line)
        ran_output.append(proc.stdout)
    assert "runner run alpha.full" in ran and len(ran) >= 14
    assert (tmp_path / "fs.parquet").exists()
    assert (tmp_path / "demo-trace.html").stat().st_size > 10_000
    (joined,) = [out for line, out in zip(ran, ran_output, strict=True) if "TRACEPARENT=" in line]
    assert json.loads(joined)["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    # `runs prune --older-than 30` kept the fresh runs
    assert (tmp_path / "data/artifacts/runs/demo-1/run.json").exists()


def test_the_python_snippet_runs(tmp_path):
    (tmp_path / "my_stages.py").write_text(block_after("# my_stages.py", "python"))
    (tmp_path / "demo.json").write_text(block_after('"demo"', "json"))
    snippet = block_after("QuantSDK(\"demo.json\")", "python")
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"})
    assert proc.returncode == 0, proc.stderr
    assert "trend" in proc.stdout and "ret" in proc.stdout


def test_make_run_says_how_to_get_runner_on_the_path():
    """After `make run` the README's next commands call `runner`: both say how to get it."""
    dry = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "source .venv/bin/activate" in dry and ".venv/bin/runner" in dry
    readme = (ROOT / "README.md").read_text()
    first_use = readme.index("runner run alpha.parallel")
    assert readme.index("source .venv/bin/activate") < first_use
