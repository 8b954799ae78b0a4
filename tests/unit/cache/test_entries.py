"""Cache entries: written once (create-if-absent), read back verified and typed, listed
and cleared per stage; concurrent fills from real processes leave one whole entry."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pandas as pd
import pytest

from runner.artifacts.objects import ObjectStore, sweep_objects
from runner.artifacts.signing import canonical_json, sign_document
from runner.artifacts.store import ArtifactStore
from runner.cache.entries import (
    CACHE_DIR,
    OutputRef,
    clear_entries,
    entry_path,
    list_entries,
    read_entry,
    referenced_objects,
    write_entry,
)
from runner.cache.keys import StepKey, step_key
from runner.cache.outputs import store_outputs
from runner.context import SelectionContext
from runner.errors import IntegrityError
from runner.registry import StageEntry
from tests.unit.cache import workers


def _stage(context: object) -> object:
    return context


def _key(stage: str, n: int) -> StepKey:
    entry = StageEntry(stage, _stage, reads=frozenset({"params"}))
    return step_key(entry, SelectionContext(params={"n": n}))


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "store")


def test_written_once_and_read_back(store: ArtifactStore) -> None:
    key = _key("alpha.policy", 1)
    refs = store_outputs(ObjectStore(store), {"signals": pd.Series([1.0, 2.0]), "regime": "calm"})
    assert read_entry(store, "alpha.policy", key.key) is None
    assert write_entry(store, key, refs, runner_version="0.1.0") is True
    doc = read_entry(store, "alpha.policy", key.key)
    assert doc is not None and doc.stage == "alpha.policy" and doc.key == key.key
    assert doc.outputs == refs and doc.inputs == key.inputs.as_json()
    path = Path(store.path(entry_path("alpha.policy", key.key)))
    before = path.read_bytes()
    other = {"regime": OutputRef(format="value", value="stressed")}
    assert write_entry(store, key, other, runner_version="0.1.0") is False
    assert path.read_bytes() == before  # the first fill stays


def test_a_tampered_or_moved_entry_is_refused(store: ArtifactStore) -> None:
    key, other = _key("s.one", 1), _key("s.one", 2)
    write_entry(store, key, {"x": OutputRef(format="value", value=1)}, runner_version="t")
    path = Path(store.path(entry_path("s.one", key.key)))
    doc = json.loads(path.read_bytes())
    doc["outputs"]["x"]["value"] = 2  # edited without the key
    path.write_bytes(canonical_json(doc))
    with pytest.raises(IntegrityError, match=f"{key.key}.json does not verify"):
        read_entry(store, "s.one", key.key)
    # a validly signed entry copied to another key's place
    write_entry(store, other, {"x": OutputRef(format="value", value=1)}, runner_version="t")
    moved = Path(store.path(entry_path("s.one", other.key)))
    path.write_bytes(moved.read_bytes())
    with pytest.raises(IntegrityError, match="not of this place"):
        read_entry(store, "s.one", key.key)
    # a signed entry that points outside objects/
    bad = json.loads(moved.read_bytes())
    bad.pop("signature")
    bad["outputs"]["x"] = {"format": "parquet", "object": "../../runs/r/run.json"}
    moved.write_bytes(canonical_json(sign_document(bad)))
    with pytest.raises(IntegrityError, match=r"outputs\.x\.object"):
        read_entry(store, "s.one", other.key)


def test_list_clear_and_the_objects_they_keep(store: ArtifactStore) -> None:
    objects = ObjectStore(store, grace=0)
    for i, (stage, n) in enumerate((("a.one", 1), ("a.one", 2), ("b.two", 1))):
        refs = store_outputs(objects, {"f": pd.DataFrame({"v": [float(i), 0.5]}), "s": stage})
        write_entry(store, _key(stage, n), refs, runner_version="t")
    (Path(store.path(CACHE_DIR, "a.one")) / ".tmp-file").write_bytes(b"x")
    assert sorted(e.doc.stage for e in list_entries(store) if e.doc) == ["a.one", "a.one",
                                                                        "b.two"]
    assert [e.doc.stage for e in list_entries(store, stage="b.two") if e.doc] == ["b.two"]
    assert len(referenced_objects(store)) == 3
    assert len(clear_entries(store, stage="a.one")) == 2
    assert [e.doc.stage for e in list_entries(store) if e.doc] == ["b.two"]
    kept = referenced_objects(store)
    report = sweep_objects(objects, kept, now=4e9)
    assert len(report.deleted) == 2 and sorted(objects.digests()) == sorted(kept)
    assert clear_entries(store) and list(list_entries(store)) == []


def test_concurrent_fills_from_processes_leave_one_whole_entry(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    folders = [tmp_path / f"machine{i}" for i in range(4)]
    for folder in folders:
        folder.mkdir()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(workers.fill_entry, [(root, {}, str(f), 50) for f in folders])
    assert len({r["key"] for r in results}) == 1
    assert sum(r["wrote"] for r in results) == 1
    assert all(r["frame"] == workers.frame(50).to_dict() for r in results)
    assert all(r["note"] == ("a", "tuple") for r in results)
    store = ArtifactStore(root)
    entries = list(list_entries(store))
    assert len(entries) == 1 and entries[0].doc is not None
