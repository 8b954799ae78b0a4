"""``--json`` on error: stdout holds one JSON object with the error and the exit code,
stderr the human line, and the exit code is the error's (issue 15, "Small things").

Every command that has ``--json`` is found by walking the command tree, and each is
made to fail as a user would make it fail, through the CLI in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from runner.cli import app

ROOT = Path(__file__).resolve().parents[3]

STAGES = "def prepare(ctx):\n    return ctx\n\n\ndef broken(ctx):\n    raise ValueError('no')\n"
MANIFEST = {"pipelines": {"tiny": {"steps": ["prepare"]}, "bad": {"steps": ["broken"]}},
            "stages": {"prepare": "my_stages:prepare", "broken": "my_stages:broken"}}

FAILING = {
    # command: (arguments that fail, words of the error, exit code)
    "list": (["-m", "missing.json"], "missing.json", 2),
    "run": (["nope", "-m", "manifest.json"], "no pipeline named 'nope'", 2),
    "runs list": (["--storage-option", "bad"], "expected KEY=VALUE", 2),
    "runs show": (["nope", "--artifacts", "art"], "nope", 2),
    "trace": (["nope", "--artifacts", "art"], "no run 'nope'", 2),
    "submit": (["nope", "--image", "x", "--dry-run", "-m", "manifest.json"],
               "no pipeline named 'nope'", 2),
    "status": (["r1"], "no usable Kubernetes configuration", 2),
    "cache list": (["--storage-option", "bad"], "expected KEY=VALUE", 2),
    "cache clear": (["--artifacts", "art"], "give --stage STAGE or --all", 2),
}


def _json_commands() -> set[str]:
    found: set[str] = set()

    def walk(path: tuple[str, ...], command: object) -> None:
        params = getattr(command, "params", [])
        if any("--json" in getattr(p, "opts", ()) for p in params):
            found.add(" ".join(path))
        for name, sub in getattr(command, "commands", {}).items():
            walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUNNER_", "KUBERNETES_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT), KUBECONFIG="/nonexistent/kubeconfig", COLUMNS="200",
               OTEL_SDK_DISABLED="true")
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def test_every_json_command_is_checked_here() -> None:
    assert _json_commands() == set(FAILING)


@pytest.mark.parametrize("command", sorted(FAILING))
def test_a_json_command_that_fails_prints_a_json_error(command: str, project: Path) -> None:
    if command in ("submit", "status"):
        pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
    args, words, code = FAILING[command]
    proc = cli(*command.split(), *args, "--json", cwd=project)
    assert proc.returncode == code, proc.stderr
    doc = json.loads(proc.stdout)  # one JSON object, nothing else
    assert doc["exit_code"] == code
    assert words in doc["error"]
    assert proc.stderr.startswith("error: ") and words in proc.stderr


def test_a_usage_error_with_json_is_a_json_error_too(project: Path) -> None:
    proc = cli("run", "tiny", "-m", "manifest.json", "-e", "thread", "--json", cwd=project)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["exit_code"] == 2
    assert "'thread' is not one of" in doc["error"] and "did you mean 'threads'" in doc["error"]
    assert "Invalid value" in proc.stderr


def test_a_failed_run_keeps_its_document_with_the_exit_code(project: Path) -> None:
    proc = cli("run", "bad", "-m", "manifest.json", "--artifacts", "art", "--json",
               cwd=project)
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)  # the run's own document, not a second object
    assert doc["status"] == "failed" and doc["exit_code"] == 1
    assert "no" in doc["error"] and doc["steps"]
