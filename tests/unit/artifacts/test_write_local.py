"""Parquet checkpoints are written natively by Arrow (``ArtifactStore.write_local``),
hashed from the file before it takes its name, and load back verified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runner.artifacts import ArtifactStore, load_checkpoint, read_index, read_run
from runner.artifacts.objects import object_path
from runner.artifacts.store import ArtifactStore as StoreClass
from runner.context import Context
from runner.errors import ArtifactError
from runner.manifest import parse_manifest
from runner.registry import StageRegistry
from runner.sdk import QuantSDK


def test_write_local_hashes_the_file_and_renames_it_into_place(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    digest, size = store.write_local("a/b.bin", lambda p: Path(p).write_bytes(b"x" * 1000))
    data = (tmp_path / "store" / "a" / "b.bin").read_bytes()
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), 1000)
    assert sorted(p.name for p in (tmp_path / "store" / "a").iterdir()) == ["b.bin"]


def test_write_local_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")

    def half(path: str) -> None:
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(ArtifactError, match="disk full"):
        store.write_local("a/b.bin", half)
    assert list((tmp_path / "store" / "a").iterdir()) == []


def test_a_temporary_file_takes_its_name_only_once_hashed(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    tmp = store.write_temp("a/b.bin", lambda p: Path(p).write_bytes(b"abc"))
    assert not (tmp_path / "store" / "a" / "b.bin").exists() and Path(tmp).exists()
    assert store.publish_temp("a/b.bin", tmp) == (hashlib.sha256(b"abc").hexdigest(), 3)
    assert (tmp_path / "store" / "a" / "b.bin").read_bytes() == b"abc"
    assert not Path(tmp).exists()
    other = store.write_temp("a/c.bin", lambda p: Path(p).write_bytes(b"x"))
    store.discard_temp(other)
    store.discard_temp(other)  # gone already: nothing to do
    assert sorted(p.name for p in (tmp_path / "store" / "a").iterdir()) == ["b.bin"]


def test_write_local_refuses_an_object_store() -> None:
    with pytest.raises(ArtifactError, match="not a local filesystem"):
        ArtifactStore("memory://bucket/x").write_local("a.bin", lambda p: None)


def test_frames_are_checkpointed_natively_and_load_back_verified(tmp_path: Path,
                                                                 monkeypatch: Any) -> None:
    streamed: list[str] = []
    original = StoreClass.open_atomic

    def open_atomic(self: Any, rel: str, **kwargs: Any) -> Any:
        streamed.append(rel)
        return original(self, rel, **kwargs)

    monkeypatch.setattr(StoreClass, "open_atomic", open_atomic)
    registry = StageRegistry()

    def grow(ctx: Context) -> Context:
        ctx.feature_store = pd.DataFrame({"x": np.arange(1000.0)})
        ctx.audit_trail = ["grew"]
        return ctx

    registry.register("grow", grow, writes=["feature_store", "audit_trail"])
    manifest = parse_manifest(json.dumps({"pipelines": {"p": {"steps": ["grow"]}}}))
    sdk = QuantSDK(manifest, registry=registry, artifacts=tmp_path / "store",
                   workspace_root=tmp_path / "ws")
    result = sdk.run_pipeline("p", Context(), executor="inline", checkpoints=True)
    store = ArtifactStore(tmp_path / "store")
    last = read_run(store, result.run_id).last_main_checkpoint()
    assert last is not None
    entry = read_index(store, result.run_id, last.dir).fields["feature_store"]
    assert entry.format == "parquet"
    assert not [rel for rel in streamed if rel.endswith(".parquet")]  # not through Python
    assert entry.object is not None and not entry.file  # a content-addressed object
    file = tmp_path / "store" / object_path(entry.object)
    assert hashlib.sha256(file.read_bytes()).hexdigest() == entry.object
    back = load_checkpoint(store, result.run_id, last.dir,
                           types={f"{Context.__module__}:{Context.__qualname__}": Context})
    pd.testing.assert_frame_equal(back.feature_store, result.context.feature_store)
