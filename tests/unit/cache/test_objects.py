"""Content-addressed objects: stored once, read back verified, never torn by concurrent
puts from real processes, and swept when no reference names them and they are old."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.artifacts.codec import pickle_signed
from runner.artifacts.objects import (
    DEFAULT_GRACE,
    ObjectStore,
    object_binding,
    object_path,
    sweep_objects,
)
from runner.artifacts.store import ArtifactStore
from runner.cache.entries import OutputRef
from runner.cache.outputs import restore_outputs, store_outputs
from runner.digest import sha256
from runner.errors import ArtifactError, IntegrityError
from tests.unit.cache import workers


@pytest.fixture(params=["local", "memory"])
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    root = str(tmp_path / "store") if request.param == "local" else \
        f"memory://objects-{tmp_path.name}"
    return ObjectStore(ArtifactStore(root))


def _files(objects: ObjectStore) -> list[str]:
    found = objects.store.fs.find(objects.store.path("objects"))
    return sorted(str(f) for f in found)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_round_trip_and_stored_once(objects: ObjectStore, data: bytes) -> None:
    first = objects.put_bytes(data)
    assert first.digest == sha256(data) and first.size == len(data)
    assert objects.get_bytes(first.digest) == data
    before = objects.store.modified(object_path(first.digest))
    again = objects.put_bytes(data)
    assert again.digest == first.digest and again.written is False
    assert objects.store.modified(object_path(first.digest)) == before
    assert first.digest in objects.digests()


def test_a_local_file_takes_the_objects_name(tmp_path: Path) -> None:
    objects = ObjectStore(ArtifactStore(tmp_path / "store"))
    ref = objects.write_object(lambda path: Path(path).write_bytes(b"parquet bytes"))
    assert ref.written and objects.get_bytes(ref.digest) == b"parquet bytes"
    twice = objects.write_object(lambda path: Path(path).write_bytes(b"parquet bytes"))
    assert twice.digest == ref.digest and not twice.written
    leftovers = [f for f in _files(objects) if "/objects/tmp/" in f]
    assert leftovers == []  # the temporary files are gone


def test_a_truncated_or_swapped_object_is_named(tmp_path: Path) -> None:
    objects = ObjectStore(ArtifactStore(tmp_path / "store"))
    a, b = objects.put_bytes(b"a" * 100), objects.put_bytes(b"b" * 100)
    path_a = Path(objects.store.path(object_path(a.digest)))
    path_a.write_bytes(b"a" * 50)  # truncated
    with pytest.raises(IntegrityError, match=f"object .*{a.digest[2:]} does not match"):
        objects.get_bytes(a.digest)
    path_a.write_bytes(Path(objects.store.path(object_path(b.digest))).read_bytes())  # swapped
    with pytest.raises(IntegrityError, match=a.digest[2:]):
        objects.get_bytes(a.digest)
    with pytest.raises(IntegrityError, match="not an object digest"):
        objects.get_bytes("../../runs/x")
    missing = "0" * 64
    with pytest.raises(ArtifactError, match="not found") as info:
        objects.get_bytes(missing)
    assert info.value.missing


def test_the_sweep_deletes_only_old_unreferenced_objects(tmp_path: Path) -> None:
    objects = ObjectStore(ArtifactStore(tmp_path / "store"), grace=3600)
    kept, old, young = (objects.put_bytes(x).digest for x in (b"kept", b"old", b"young"))
    stale_tmp = Path(objects.store.path("objects", "tmp", ".new.dead"))
    stale_tmp.parent.mkdir(parents=True, exist_ok=True)
    stale_tmp.write_bytes(b"half")
    past = time.time() - 7200
    for digest in (kept, old):
        os.utime(objects.store.path(object_path(digest)), (past, past))
    os.utime(stale_tmp, (past, past))
    dry = sweep_objects(objects, {kept}, dry_run=True)
    assert dry.deleted == [old] and dry.kept_young == [young]
    assert sorted(objects.digests()) == sorted([kept, old, young])
    report = sweep_objects(objects, {kept})
    assert report.deleted == [old]
    assert sorted(objects.digests()) == sorted([kept, young])
    assert not stale_tmp.exists()


def test_a_put_racing_the_sweep_keeps_its_object(tmp_path: Path) -> None:
    """An old unreferenced object put again (a run about to reference it) is refreshed,
    so a sweep that starts now keeps it."""
    objects = ObjectStore(ArtifactStore(tmp_path / "store"), grace=3600)
    digest = objects.put_bytes(b"shared").digest
    past = time.time() - 7200
    os.utime(objects.store.path(object_path(digest)), (past, past))
    assert objects.put_bytes(b"shared").written is False
    assert sweep_objects(objects, set()).deleted == []
    assert objects.get_bytes(digest) == b"shared"
    assert DEFAULT_GRACE >= 3600


def test_concurrent_puts_from_processes_never_tear(tmp_path: Path) -> None:
    root = str(tmp_path / "store")
    size = 4 * 1024 * 1024
    spawn = multiprocessing.get_context("spawn")
    folders = [tmp_path / f"machine{i}" for i in range(3)]
    for folder in folders:
        folder.mkdir()
    with spawn.Pool(3) as pool:
        results = pool.starmap(workers.put_many,
                               [(root, {}, str(f), 7, size, 5) for f in folders])
    digests = {d for r in results for d in r}
    assert len(digests) == 1
    objects = ObjectStore(ArtifactStore(root))
    assert objects.get_bytes(digests.pop()) == workers.big_payload(7, size)
    assert [f for f in _files(objects) if Path(f).name.startswith(".")] == []


def test_outputs_round_trip_and_pickles_bound_to_their_field(tmp_path: Path) -> None:
    objects = ObjectStore(ArtifactStore(tmp_path / "store"))
    frame = pd.DataFrame({"x": [1.0, 2.0]}, index=pd.Index(["a", "b"], name="t"))
    values = {"frame": frame, "series": pd.Series([1.5], name="s"), "plain": {"k": [1, 2]},
              "odd": {"t": (1, 2)}, "small": 3, "text": "short"}
    refs = store_outputs(objects, values)
    assert refs["small"].format == "value" and refs["odd"].format == "pickle"
    back = restore_outputs(objects, refs)
    pd.testing.assert_frame_equal(back["frame"], frame)
    pd.testing.assert_series_equal(back["series"], values["series"])
    assert {k: back[k] for k in ("plain", "odd", "small", "text")} == \
        {k: values[k] for k in ("plain", "odd", "small", "text")}
    # the same frame stored again is the same object
    assert store_outputs(objects, {"frame": frame.copy()})["frame"].object == \
        refs["frame"].object
    # a pickle signed for another field does not unpickle as this one
    foreign = objects.put_bytes(pickle_signed({"t": (9,)}, binding=object_binding("other")))
    wrong = {"odd": OutputRef(format="pickle", object=foreign.digest, bytes=foreign.size)}
    with pytest.raises(IntegrityError, match="does not verify"):
        restore_outputs(objects, wrong)
