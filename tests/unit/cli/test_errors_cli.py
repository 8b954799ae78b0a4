"""The reclassified errors through the CLI, in a subprocess: one clear line on stderr,
the exit code the table gives the error's family, no traceback (issue 16 §3)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from runner.errors import EXIT_CODES, InfrastructureError

ROOT = Path(__file__).resolve().parents[3]

STAGES = """from runner.errors import DataError


def prepare(ctx):
    return ctx


def left(ctx):
    return ctx


def right(ctx):
    return ctx


def too_short(ctx):
    raise DataError("prices.csv", "too few rows", expected="250 rows or more")
"""
MANIFEST = {"pipelines": {"fan": {"steps": ["prepare", ["left", "right"]]},
                          "short": {"steps": ["prepare", ["too_short", "right"]]}},
            "stages": {"prepare": "my_stages:prepare", "left": "my_stages:left",
                       "right": "my_stages:right", "too_short": "my_stages:too_short"}}

REFUSED_FORK = """
import errno, sys
import runner.orchestration.executors.processes as processes

def refused(*args, **kwargs):
    raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

processes.ProcessPoolExecutor = refused  # as os.fork() fails when the process limit is hit
sys.argv = ["runner", *sys.argv[1:]]
from runner.cli import main
main()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUNNER_", "KUBERNETES_", "OTEL_", "RAY_"))}
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", OTEL_SDK_DISABLED="true", **extra)
    return env


def _run(args: list[str], *, cwd: Path, env: dict[str, str],
         script: str | None = None) -> subprocess.CompletedProcess[str]:
    head = ["-c", script] if script else ["-m", "runner.cli"]
    return subprocess.run([sys.executable, *head, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _free_port() -> int:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_infrastructure_has_its_own_exit_code() -> None:
    assert EXIT_CODES[InfrastructureError] == 4
    assert sorted(set(EXIT_CODES.values())) == [1, 2, 4, 128]


def test_a_worker_pool_that_will_not_start_is_one_line_exit_4_not_a_bug(project: Path) -> None:
    proc = _run(["run", "fan", "-m", "manifest.json", "--executor", "processes", "--run-id",
                 "nopool", "--artifacts", "art", "--quiet"],
                cwd=project, env=_env(), script=REFUSED_FORK)
    assert proc.returncode == 4, proc.stderr[-3000:]
    workers = os.cpu_count() or 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: the worker pool ({workers} forkserver processes) did not start: "
        "BlockingIOError: [Errno 11] Resource temporarily unavailable")
    assert "Traceback" not in proc.stderr and "bug in runner" not in proc.stderr
    run = json.loads((project / "art/runs/nopool/run.json").read_text())
    assert (run["status"], run["completed"]) == ("failed", ["fan[0]"])


def test_a_ray_address_where_nothing_answers_is_one_line_exit_4(project: Path) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_free_port()}"
    proc = _run(["run", "fan", "-m", "manifest.json", "--executor", "ray", "--run-id", "noray",
                 "--artifacts", "art", "--quiet", "--json"], cwd=project,
                env=_env(RAY_ADDRESS=address, RUNNER_RAY_CONNECT_ATTEMPTS="1"))
    assert proc.returncode == 4, proc.stderr[-3000:]
    line = (f"cannot start or reach Ray ({address}): ConnectionRefusedError: [Errno 111] "
            "Connection refused")
    assert proc.stderr.strip().splitlines()[-1] == f"error: {line}"
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)
    assert (doc["status"], doc["error"], doc["exit_code"]) == ("failed", line, 4)


def test_a_runner_error_a_stage_raises_in_a_worker_process_reaches_the_driver_whole(
        project: Path) -> None:
    """It was unpickled by calling its constructor with its message: the driver saw a
    worker that died (BrokenProcessPool) instead of the stage's error."""
    proc = _run(["run", "short", "-m", "manifest.json", "--executor", "processes",
                 "--run-id", "short", "--artifacts", "art", "--quiet"], cwd=project, env=_env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    said = proc.stderr.splitlines()
    assert said[0] == ("error: stage 'too_short' at short[1][0] failed: DataError: prices.csv: "
                       "too few rows")
    assert said[1:3] == ["  expected: 250 rows or more", "  at my_stages.py line 17, in too_short"]
    assert "BrokenProcessPool" not in proc.stderr and "died" not in proc.stderr
