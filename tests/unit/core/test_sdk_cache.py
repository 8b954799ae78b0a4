"""The step cache through the SDK: who asks for it (the run, the pipeline, a stage), and
a cached run's checkpoints are the uncached run's, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.digest import sha256
from runner.orchestration.records import RunResult
from runner.sdk import QuantSDK
from tests.shapes import REG, base_context

STEPS = ["log.a", ["add.x", ["add.y", "log.b"], "add.z"], "log.c"]


@pytest.fixture
def sdk(tmp_path: Path) -> QuantSDK:
    context = "tests.shapes:ShapeContext"
    manifest = {"pipelines": {"plain": {"steps": STEPS, "context": context},
                              "asked": {"steps": STEPS, "context": context, "cache": True}}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return QuantSDK(path, registry=REG, artifacts=tmp_path / "artifacts",
                    workspace_root=tmp_path / "ws")


def _stages(result: RunResult) -> set[tuple[str, bool]]:
    return {(r.status, r.cache_key is not None) for r in result.records if r.kind == "stage"}


def _run(sdk: QuantSDK, name: str, **kw: Any) -> RunResult:
    return sdk.run_pipeline(name, base_context(), tracing=False, **kw)


def test_the_run_the_pipeline_and_no_cache(sdk: QuantSDK) -> None:
    assert _stages(_run(sdk, "plain")) == {("succeeded", False)}  # nobody asked
    assert _stages(_run(sdk, "plain")) == {("succeeded", False)}
    assert _stages(_run(sdk, "plain", cache=True)) == {("succeeded", True)}  # the run asks
    assert _stages(_run(sdk, "plain", cache=True)) == {("cached", True)}
    assert _stages(_run(sdk, "asked")) == {("cached", True)}  # the pipeline asks
    assert _stages(_run(sdk, "asked", cache=False)) == {("succeeded", False)}  # --no-cache
    assert sdk.step_cache("plain") is None and sdk.step_cache("asked", cache=False) is None


def _files(sdk: QuantSDK, run_id: str) -> dict[str, str]:
    steps = Path(sdk.artifacts, "runs", run_id, "steps")
    return {str(p.relative_to(steps)): sha256(p.read_bytes()) for p in sorted(steps.rglob("*"))
            if p.is_file() and p.name != "index.json"}


def test_a_cached_run_stores_the_same_checkpoint_files(sdk: QuantSDK) -> None:
    plain = _run(sdk, "plain")
    _run(sdk, "asked")
    cached = _run(sdk, "asked")
    assert _stages(cached) == {("cached", True)}
    assert _files(sdk, cached.run_id) == _files(sdk, plain.run_id)
    assert _files(sdk, plain.run_id)  # there is something to compare
