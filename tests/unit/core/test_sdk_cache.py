"""The step cache through the SDK: who asks for it (the run, the pipeline, a stage), and
a cached run's checkpoints are the uncached run's, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.artifacts import read_index, read_run
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


def _files(sdk: QuantSDK, run_id: str) -> dict[tuple[str, str], str]:
    """Per checkpoint folder and field: the stored object's digest (a value: its repr)."""
    store = sdk.store()
    out = {}
    for ref in read_run(store, run_id).checkpoints:
        for name, entry in read_index(store, run_id, ref).fields.items():
            if name not in ("run_id", "workspace"):
                out[ref.dir, name] = entry.digest or repr(entry.value)
    return out


def test_a_cached_run_stores_the_same_checkpoint_files(sdk: QuantSDK) -> None:
    plain = _run(sdk, "plain")
    _run(sdk, "asked")
    cached = _run(sdk, "asked")
    assert _stages(cached) == {("cached", True)}
    stored = _files(sdk, cached.run_id)
    assert any(entry for entry in stored.values() if len(entry) == 64)  # objects, not values
    assert stored == _files(sdk, plain.run_id)
    refs = read_run(sdk.store(), cached.run_id).checkpoints
    main_hits = {r.path for r in cached.records if r.status == "cached" and r.branch is None}
    assert main_hits and {ref.path for ref in refs if ref.cached} == main_hits
    assert not any(ref.cached for ref in read_run(sdk.store(), plain.run_id).checkpoints)
    assert _files(sdk, plain.run_id)  # there is something to compare


def test_a_cached_steps_checkpoint_names_the_objects_it_was_restored_from(
        tmp_path: Path) -> None:
    """The fields a hit restored are not encoded and written again for its checkpoint:
    the checkpoint names the objects they were read from (the uncached run's objects)."""
    from runner.telemetry import SPANS_FILE, decode_jsonl

    manifest = Path(__file__).resolve().parents[3] / "configs" / "manifest.json"
    sdk = QuantSDK(manifest, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    plain = sdk.run_pipeline("alpha.full", cache=True)
    cached = sdk.run_pipeline("alpha.full", cache=True)
    hits = [r for r in cached.records if r.status == "cached" and r.branch is None]
    assert len(hits) == len([r for r in plain.records if r.branch is None])
    restored = {r.path: set(r.restored or {}) for r in hits}
    assert {"prices", "feature_store"} <= set().union(*restored.values())
    spans = decode_jsonl((tmp_path / "art/runs" / cached.run_id / SPANS_FILE).read_bytes())
    writes = {s["attributes"]["runner.path"]: set(s["attributes"]["runner.fields_written"])
              for s in spans if s["attributes"].get("runner.kind") == "checkpoint.write"}
    assert set(writes) == set(restored)
    for path, names in restored.items():
        assert not writes[path] & names, path
    assert _files(sdk, cached.run_id) == _files(sdk, plain.run_id)
