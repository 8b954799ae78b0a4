"""Every enum-like option and manifest field answers a near miss with the close
choices, ``(did you mean 'threads'?)``, through the CLI in a subprocess (issue 15:
"``Value error, 'thread' is not one of ...`` without a suggestion")."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

STAGES = "def prepare(ctx):\n    ctx.audit_trail.append('prepared')\n    return ctx\n"
MANIFEST = {"pipelines": {"tiny": {"steps": ["prepare"]}},
            "stages": {"prepare": "my_stages:prepare"}}
TYPOS = {"pipelines": {"tiny": {"steps": ["prepare"], "merge": {"audit_trail": "last_win"},
                                "resources": {"prepare": {"num_cpu": 2}}}},
         "stages": {"prepare": "my_stages:prepare"}}
K8S = ("--image", "ghcr.io/acme/runner:0.1.0", "--artifacts", "s3://quant/runner",
       "--dry-run")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RUNNER_", "OTEL_"))}
    full.update(PYTHONPATH=str(ROOT), COLUMNS="300", RUNNER_ARTIFACT_KEY="k" * 32,
                **(env or {}))
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "typos.json").write_text(json.dumps(TYPOS))
    return tmp_path


CASES = {
    "--executor": (["run", "tiny", "-m", "manifest.json", "-e", "thread"], ["threads"]),
    "--format": (["graph", "tiny", "-m", "manifest.json", "-f", "mermaind"], ["mermaid"]),
    "--log-format": (["--log-format", "jsn", "list", "-m", "manifest.json"], ["json"]),
    "--log-level": (["--log-level", "warn", "list", "-m", "manifest.json"], ["WARNING"]),
    "--concurrency-policy": (["schedule", "tiny", "-m", "manifest.json", "--cron", "@daily",
                              *K8S, "--concurrency-policy", "forbid"], ["Forbid"]),
    "--image-pull-policy": (["submit", "tiny", "-m", "manifest.json", *K8S,
                             "--image-pull-policy", "always"], ["Always"]),
    "manifest merge rule and resources": (["validate", "-m", "typos.json", "--no-cache"],
                                          ["last_wins", "num_cpus"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_near_miss_gets_the_close_choices(case: str, project: Path) -> None:
    args, meant = CASES[case]
    if args[0] in ("submit", "schedule"):
        pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
    proc = cli(*args, cwd=project)
    assert proc.returncode == 2, proc.stderr
    text = re.sub(r"\s+", " ", proc.stderr.replace("│", " "))
    for word in meant:
        assert re.search(rf"\(did you mean [^)]*'{word}'", text), proc.stderr
    assert "Value error" not in text and "Traceback" not in text


def test_a_checkpoint_or_field_near_miss_gets_the_close_names(project: Path) -> None:
    ran = cli("run", "tiny", "-m", "manifest.json", "--artifacts", "art", "--json",
              cwd=project)
    assert ran.returncode == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]
    step = cli("artifacts", "get", run_id, "prepar", "audit_trail", "--artifacts", "art",
               cwd=project)
    assert step.returncode == 2 and "(did you mean 'prepare'" in step.stderr, step.stderr
    field = cli("artifacts", "get", run_id, "prepare", "audit_trial", "--artifacts", "art",
                cwd=project)
    assert field.returncode == 2 and "(did you mean 'audit_trail'" in field.stderr, field.stderr


def test_an_otlp_protocol_near_miss_gets_the_close_one(project: Path) -> None:
    env = {"OTEL_EXPORTER_OTLP_PROTOCOL": "grcp", "RUNNER_OTLP_EXIT_WAIT": "0",
           "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    proc = cli("run", "tiny", "-m", "manifest.json", "--artifacts", "art", "-q", cwd=project,
               env=env)
    assert proc.returncode == 0, proc.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grcp is not supported (did you mean 'grpc'?)" \
        in proc.stderr
    assert "(OTLP http/protobuf)" in proc.stderr  # what it fell back to
