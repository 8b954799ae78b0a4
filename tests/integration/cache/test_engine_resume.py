"""A run with the step cache, SIGKILLed mid-way and resumed, ends as an uninterrupted
run does; a later run with the cache runs no stage at all (the ledger, one line per
stage execution over every process, says so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.crash_shapes import MANIFEST

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KILLED = -9

_DRIVER = """
import json, sys
from runner.cache.fields import field_digest
from runner.registry import REGISTRY, StageRegistry
from runner.sdk import QuantSDK

manifest, artifacts, workspaces, run_id, resume, cache = sys.argv[1:7]
sdk = QuantSDK(manifest, registry=StageRegistry(_entry_points_loaded=True),
               artifacts=artifacts, workspace_root=workspaces)
result = sdk.run_pipeline("crash", run_id=run_id, resume=resume == "1", tracing=False,
                          cache={"on": True, "off": False}[cache])
print(json.dumps({
    "fields": {n: field_digest(v) for n, v in result.context.__dict__.items()
               if n not in ("run_id", "workspace")},
    "records": [[r.name, r.status] for r in result.records],
}))
"""


def _drive(tmp_path: Path, run_id: str, *, resume: bool = False, cache: str = "on",
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "manifest.json"
    tmp_path.mkdir(exist_ok=True)
    if not manifest.exists():
        manifest.write_text(json.dumps(MANIFEST), encoding="utf-8")
    args = [sys.executable, "-c", _DRIVER, str(manifest), str(tmp_path / "artifacts"),
            str(tmp_path / "ws"), run_id, "1" if resume else "0", cache]
    full = {**os.environ, "CRASH_LEDGER": str(tmp_path / "ledger"), **(env or {}),
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(args, capture_output=True, text=True, env=full, cwd=ROOT,
                          timeout=300, check=False)


def _result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _ledger(tmp_path: Path) -> list[str]:
    path = tmp_path / "ledger"
    return path.read_text(encoding="utf-8").split() if path.exists() else []


def test_a_cached_run_killed_and_resumed_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    plain = _result(_drive(tmp_path / "plain", "plain", cache="off"))
    killed = _drive(tmp_path, "killed", env={"CRASH_AT": "crash.pnl:inside"})
    assert killed.returncode == KILLED, killed.stderr
    before = _ledger(tmp_path)
    assert before[-1] == "crash.pnl" and "crash.summary" not in before
    resumed = _result(_drive(tmp_path, "killed", resume=True))
    assert resumed["fields"] == plain["fields"]
    ran = _ledger(tmp_path)[len(before):]
    assert "crash.summary" in ran and "crash.seed" not in ran  # continued, not restarted
    statuses = dict(map(tuple, resumed["records"]))
    assert statuses.get("crash.summary") == "succeeded"

    again = _result(_drive(tmp_path, "again"))
    assert again["fields"] == plain["fields"]
    assert {s for n, s in again["records"] if n.startswith("crash.")} == {"cached"}
    assert _ledger(tmp_path)[len(before) + len(ran):] == []  # no stage ran
