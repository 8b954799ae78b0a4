"""The step cache on S3 (moto), shared by two "machines": processes with their own
working folders that meet only on the store. One fills the entry, the other hits it;
racing fills leave one whole entry; a swapped object is refused by name; the sweep
works on an object store."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from runner.artifacts.objects import ObjectStore, object_path, sweep_objects
from runner.artifacts.store import ArtifactStore
from runner.cache.entries import list_entries, referenced_objects
from runner.errors import IntegrityError
from tests.integration.conftest import S3Root
from tests.unit.cache import workers

pytestmark = pytest.mark.integration


def _machines(tmp_path: Path, n: int) -> list[str]:
    folders = [tmp_path / f"machine{i}" for i in range(n)]
    for folder in folders:
        folder.mkdir()
    return [str(f) for f in folders]


def _pool(n: int) -> Any:
    return multiprocessing.get_context("spawn").Pool(n)


def test_a_second_machine_hits_what_the_first_filled(s3_root: S3Root, tmp_path: Path) -> None:
    one, two = _machines(tmp_path, 2)
    with _pool(1) as pool:
        first = pool.apply(workers.fill_entry, (s3_root.url, s3_root.storage_options, one, 40))
    with _pool(1) as pool:
        second = pool.apply(workers.fill_entry, (s3_root.url, s3_root.storage_options, two, 40))
    assert first["hit"] is False and first["wrote"] is True
    assert second["hit"] is True and second["key"] == first["key"]
    assert second["frame"] == first["frame"] == workers.frame(40).to_dict()


def test_racing_fills_on_s3_leave_one_whole_entry(s3_root: S3Root, tmp_path: Path) -> None:
    folders = _machines(tmp_path, 3)
    with _pool(3) as pool:
        results = pool.starmap(workers.fill_entry,
                               [(s3_root.url, s3_root.storage_options, f, 60) for f in folders])
    assert len({r["key"] for r in results}) == 1
    assert sum(r["wrote"] for r in results) == 1
    assert all(r["frame"] == workers.frame(60).to_dict() for r in results)
    store = ArtifactStore(s3_root.url, s3_root.storage_options)
    entries = list(list_entries(store))
    assert len(entries) == 1 and entries[0].doc is not None


def test_concurrent_puts_on_s3(s3_root: S3Root, tmp_path: Path) -> None:
    folders = _machines(tmp_path, 3)
    size = 2 * 1024 * 1024
    with _pool(3) as pool:
        results = pool.starmap(workers.put_many, [(s3_root.url, s3_root.storage_options, f, 3,
                                                   size, 3) for f in folders])
    digests = {d for r in results for d in r}
    objects = ObjectStore(ArtifactStore(s3_root.url, s3_root.storage_options))
    assert len(digests) == 1
    assert objects.get_bytes(digests.pop()) == workers.big_payload(3, size)


def test_a_swapped_object_on_s3_is_refused_and_the_sweep_works(s3_root: S3Root) -> None:
    store = ArtifactStore(s3_root.url, s3_root.storage_options)
    objects = ObjectStore(store, grace=3600)
    a, b = objects.put_bytes(b"a" * 64), objects.put_bytes(b"b" * 64)
    admin = s3_root.server.admin()
    admin.pipe(f"{s3_root.bucket}/prefix/{object_path(a.digest)}", b"b" * 64)
    with pytest.raises(IntegrityError, match=f"s3://.*{a.digest[2:]} does not match"):
        objects.get_bytes(a.digest)
    assert sweep_objects(objects, set()).deleted == []  # young: kept
    report = sweep_objects(objects, {b.digest} | referenced_objects(store), now=4e9)
    assert report.deleted == [a.digest] and objects.digests() == [b.digest]
