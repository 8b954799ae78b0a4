"""What reading from and putting on S3 cost in requests (moto's server, s3fs's own
calls counted).

s3fs reads a whole file past its block size in concurrent ranges, so by default it
asks every file's size first: a HEAD before each GET. The store reads a document,
and an object its reference says is small, with the GET alone; a large object still
goes through s3fs's ranges. A fully cached run reads its cache entries and restores
its outputs without a HEAD. Putting an object asks whether it is there with one HEAD,
once: an object found young (it cannot be swept yet) is not asked about again. The
journal, rewritten whole on an object store, is written once for the checkpoints
queued on the commit thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import s3fs
from fsspec.asyn import sync_wrapper

from runner.artifacts.objects import ObjectStore, object_path
from runner.artifacts.store import ArtifactStore
from runner.sdk import QuantSDK
from tests.integration.conftest import S3Root

pytestmark = pytest.mark.integration


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """Every S3 API call s3fs makes meanwhile: (operation, key)."""
    seen: list[tuple[str, str]] = []
    real = s3fs.S3FileSystem._call_s3

    async def counted(self: s3fs.S3FileSystem, method: str, *args: Any, **kwargs: Any) -> Any:
        seen.append((method, str(kwargs.get("Key", ""))))
        return await real(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    monkeypatch.setattr(s3fs.S3FileSystem, "call_s3", sync_wrapper(counted))
    yield seen


def _store(s3_root: S3Root, **options: Any) -> ArtifactStore:
    return ArtifactStore(s3_root.url, {**s3_root.storage_options, **options,
                                       "skip_instance_cache": True})


def test_a_document_is_read_with_one_get(s3_root: S3Root,
                                         calls: list[tuple[str, str]]) -> None:
    store = _store(s3_root)
    store.write_bytes("runs/r1/run.json", b'{"a": 1}')
    calls.clear()
    assert store.read_bytes("runs/r1/run.json") == b'{"a": 1}'
    assert [m for m, _ in calls] == ["get_object"]


def test_a_small_object_is_read_with_one_get(s3_root: S3Root,
                                             calls: list[tuple[str, str]]) -> None:
    objects = ObjectStore(_store(s3_root))
    ref = objects.put_bytes(b"x" * 5000)
    calls.clear()
    assert objects.get_bytes(ref.digest, size=ref.size) == b"x" * 5000
    assert calls == [("get_object", f"prefix/{object_path(ref.digest)}")]


def test_a_large_object_is_still_read_in_ranges(s3_root: S3Root,
                                                calls: list[tuple[str, str]]) -> None:
    """Past the block size (here 1 KiB) s3fs's concurrent ranged read is kept: it asks
    the size, then GETs the ranges; the bytes are whole either way."""
    objects = ObjectStore(_store(s3_root, default_block_size=1024))
    payload = bytes(range(256)) * 20  # 5,120 bytes: five ranges
    ref = objects.put_bytes(payload)
    calls.clear()
    assert objects.get_bytes(ref.digest, size=ref.size) == payload
    methods = [m for m, _ in calls]
    assert methods[0] == "head_object" and methods.count("get_object") == 5
    calls.clear()  # what its reference says is small is read in one GET, whatever it is
    assert objects.get_bytes(ref.digest, size=100) == payload
    assert [m for m, _ in calls] == ["get_object"]


def test_a_new_object_is_a_head_and_a_put_and_one_there_a_head(
        s3_root: S3Root, calls: list[tuple[str, str]]) -> None:
    """s3fs's ``info`` lists the key as a prefix when a HEAD finds nothing (a folder?),
    and the object's check asked twice: five requests to put a new object, now two."""
    objects = ObjectStore(_store(s3_root))
    calls.clear()
    ref = objects.put_bytes(b"new object")
    key = f"prefix/{object_path(ref.digest)}"
    assert ref.written and calls == [("head_object", key), ("put_object", key)]
    calls.clear()
    assert not ObjectStore(objects.store).put_bytes(b"new object").written  # as another run
    assert calls == [("head_object", key)]


def test_an_object_found_young_is_not_asked_about_again(
        s3_root: S3Root, calls: list[tuple[str, str]]) -> None:
    """The first checkpoint of a run puts the starting context's empty frames, several
    of them the same bytes: one HEAD for them all."""
    objects = ObjectStore(_store(s3_root))
    key = f"prefix/{object_path(objects.put_bytes(b'twice').digest)}"
    calls.clear()
    assert not objects.put_bytes(b"twice").written
    assert calls == []
    assert not ObjectStore(objects.store).put_bytes(b"twice").written  # another asks
    assert calls == [("head_object", key)]


def test_an_object_past_half_the_grace_is_still_refreshed(
        s3_root: S3Root, calls: list[tuple[str, str]]) -> None:
    objects = ObjectStore(_store(s3_root), grace=0.0)  # every object is past it
    key = f"prefix/{object_path(objects.put_bytes(b'old').digest)}"
    calls.clear()
    objects.put_bytes(b"old")
    assert calls == [("head_object", key), ("put_object", key)]  # written again


def test_an_object_found_missing_is_put_again(s3_root: S3Root) -> None:
    from runner.errors import ArtifactError

    objects = ObjectStore(_store(s3_root))
    ref = objects.put_bytes(b"gone soon")
    s3_root.server.admin().rm(f"{s3_root.bucket}/prefix/{object_path(ref.digest)}")
    with pytest.raises(ArtifactError) as info:
        objects.get_bytes(ref.digest, size=ref.size)
    assert info.value.missing
    assert objects.put_bytes(b"gone soon").written
    assert objects.get_bytes(ref.digest) == b"gone soon"


def test_whether_a_file_exists_is_one_head(s3_root: S3Root,
                                           calls: list[tuple[str, str]]) -> None:
    store = _store(s3_root)
    store.write_bytes("runs/r1/run.json", b"{}")
    calls.clear()
    assert store.exists("runs/r1/run.json") and not store.exists("runs/r2/run.json")
    assert calls == [("head_object", "prefix/runs/r1/run.json"),
                     ("head_object", "prefix/runs/r2/run.json")]


def test_presence_asks_with_the_stores_own_request_options(
        s3_root: S3Root, monkeypatch: pytest.MonkeyPatch) -> None:
    """``s3_additional_kwargs`` (requester pays, server-side encryption keys) go with
    the HEAD, as with every request s3fs makes."""
    sent: list[tuple[str, dict[str, Any]]] = []
    real = s3fs.S3FileSystem._get_s3_method_kwargs

    def seen(self: s3fs.S3FileSystem, method: Any, *args: Any, **kwargs: Any) -> Any:
        out = real(self, method, *args, **kwargs)
        sent.append((method.__name__, out))
        return out

    monkeypatch.setattr(s3fs.S3FileSystem, "_get_s3_method_kwargs", seen)
    store = _store(s3_root, s3_additional_kwargs={"RequestPayer": "requester"})
    assert store.presence("runs/none/run.json") is False
    assert [(m, kw.get("RequestPayer")) for m, kw in sent] == [("head_object", "requester")]


def test_presence_on_every_back_end(s3_root: S3Root, tmp_path: Path) -> None:
    """The time a file was last modified, False when it is missing, on S3, a local
    folder and fsspec's memory filesystem."""
    for root, options in ((s3_root.url, s3_root.storage_options),
                          (str(tmp_path / "store"), {}), ("memory://presence-test", {})):
        store = ArtifactStore(root, options)
        assert store.presence("a/missing.json") is False
        before = time.time()
        store.write_bytes("a/b.json", b"{}")
        stamp = store.presence("a/b.json")
        assert not isinstance(stamp, bool) and abs(stamp - before) < 120, root


def test_a_missing_file_is_still_missing(s3_root: S3Root) -> None:
    from runner.errors import ArtifactError

    with pytest.raises(ArtifactError, match="does-not-exist") as info:
        _store(s3_root).read_bytes("runs/does-not-exist/run.json")
    assert info.value.missing


def test_other_back_ends_read_as_they_did(tmp_path: Path) -> None:
    """A local folder and fsspec's memory filesystem read with one call anyway."""
    for root in (str(tmp_path / "store"), "memory://requests-test"):
        store = ArtifactStore(root)
        assert store._ranges_past is None
        store.write_bytes("a.json", b"{}")
        assert store.read_bytes("a.json", size=2) == b"{}"


def test_a_cached_run_on_s3_heads_no_entry_and_no_restored_object(
        s3_root: S3Root, tmp_path: Path, calls: list[tuple[str, str]]) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"pipelines": {"p": {
        "context": "runner.stages.contexts:PortfolioContext",
        "steps": ["foundation.ingest", "foundation.features"]}}}))
    sdk = QuantSDK(manifest, artifacts=s3_root.url, storage_options=s3_root.storage_options)
    sdk.run_pipeline("p", cache=True)
    calls.clear()  # without checkpoints, a cached run only reads from the store
    result = sdk.run_pipeline("p", cache=True, checkpoints=False)
    assert {r.status for r in result.records} == {"cached"}
    read = {key for method, key in calls if method == "get_object"}
    entries = {key for key in read if "/cache/" in key}
    restored = {key for key in read if "/objects/" in key}
    assert len(entries) == 2 and restored  # both steps' entries, their outputs' objects
    headed = [key for method, key in calls if method == "head_object"]
    assert not [key for key in headed if "/cache/" in key or "/objects/" in key], headed


def test_checkpoints_queued_on_an_object_store_share_one_journal_write(
        s3_root: S3Root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first checkpoint's index is held until the next checkpoint's commit waits
    behind it: the first line then waits for the second, one journal write for both;
    the run's record lists every checkpoint, and a resume finds nothing to do."""
    from runner.artifacts import read_run
    from runner.artifacts.durability import Lane
    from runner.artifacts.journal import JournalWriter

    submitted = threading.Semaphore(0)
    real_submit, real_write, real_append = Lane.submit, ArtifactStore.write_bytes, \
        JournalWriter.append
    held = threading.Event()
    lines: list[int] = []

    def submit(self: Lane, job: Any) -> None:
        real_submit(self, job)
        if self.name == "runner-checkpoint-commit":
            submitted.release()

    def write_bytes(self: ArtifactStore, rel: str, data: bytes, **kwargs: Any) -> None:
        if rel.endswith("/index.json") and not held.is_set():
            held.set()
            assert submitted.acquire(timeout=30) and submitted.acquire(timeout=30)
        real_write(self, rel, data, **kwargs)

    def append(self: JournalWriter, entries: Any, **kwargs: Any) -> None:
        entries = list(entries)
        lines.append(len(entries))
        real_append(self, entries, **kwargs)

    monkeypatch.setattr(Lane, "submit", submit)
    monkeypatch.setattr(ArtifactStore, "write_bytes", write_bytes)
    monkeypatch.setattr(JournalWriter, "append", append)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"pipelines": {"p": {
        "context": "runner.stages.contexts:PortfolioContext",
        "steps": ["foundation.ingest", "foundation.features"]}}}))
    sdk = QuantSDK(manifest, artifacts=s3_root.url, storage_options=s3_root.storage_options)
    result = sdk.run_pipeline("p", run_id="grouped")
    assert held.is_set() and 2 in lines, lines  # two checkpoints' lines in one write
    doc = read_run(ArtifactStore(s3_root.url, s3_root.storage_options), "grouped")
    assert doc.status == "succeeded" and len(doc.checkpoints) == len(result.records) == 2
    again = sdk.run_pipeline("p", run_id="grouped", resume=True)
    assert again.already_complete
