"""Checkpoint fields as content-addressed objects: an equal frame stored once (across
steps, fields and runs), a damaged object named in the error, runs written before
objects still read, and ``runs prune`` sweeping exactly the unreferenced objects, on a
local folder and on S3 (moto)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.artifacts import ArtifactStore, read_index, read_run, sweep_store
from runner.artifacts.codec import decode, encode, sha256
from runner.artifacts.layout import RunPaths
from runner.artifacts.objects import ObjectStore, object_binding, object_path
from runner.artifacts.reading import field_binding
from runner.artifacts.signing import PICKLE_HEADER, sign_document, sign_pickle
from runner.cache.entries import OutputRef, referenced_objects, write_entry
from runner.cache.keys import step_key
from runner.context import Context, SelectionContext
from runner.errors import IntegrityError, StageFailedError
from runner.manifest import parse_manifest
from runner.registry import StageEntry, StageRegistry
from runner.sdk import QuantSDK
from tests.integration.store_shapes import StoreContext, write_manifest
from tests.integration.store_shapes import load_ckpt as load_checkpoint

pytestmark = pytest.mark.integration

LONG_AGO = "2020-01-01T00:00:00+00:00"
DAY = 86400.0


def _objects_named(store: ArtifactStore, run_id: str) -> set[str]:
    """Every object the checkpoints of ``run_id`` name."""
    found: set[str] = set()
    for ckpt in read_run(store, run_id).checkpoints:
        index = read_index(store, run_id, ckpt)
        found.update(e.object for e in index.fields.values() if e.object)
    return found


def _sdk(manifest: Path, root: Any) -> QuantSDK:
    return QuantSDK(manifest, artifacts=root.url, storage_options=root.storage_options)


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A local folder and a moto S3 bucket."""
    from tests.integration.conftest import StoreRoot
    if request.param == "local":
        return StoreRoot(str(tmp_path / "store"), {})
    s3 = request.getfixturevalue("s3_root")
    return StoreRoot(s3.url, s3.storage_options)


# ---------------------------------------------------------------- stored once


def test_two_runs_of_equal_data_store_each_object_once(tmp_path, root):
    sdk = _sdk(write_manifest(tmp_path), root)
    sdk.run_pipeline("main", StoreContext(), run_id="one-1")
    store = ArtifactStore(root.url, root.storage_options)
    objects = ObjectStore(store)
    first = set(objects.digests())
    assert first == _objects_named(store, "one-1") and first
    sdk.run_pipeline("main", StoreContext(), run_id="two-1")
    assert set(objects.digests()) == first  # the second run added no object
    assert _objects_named(store, "two-1") == first


def test_equal_frames_in_two_fields_and_steps_are_one_object(tmp_path):
    registry = StageRegistry()
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0]}, index=pd.Index([3, 1, 2], name="k"))

    def make(ctx: Context) -> Context:
        ctx.feature_store = frame.copy()
        return ctx

    def copy(ctx: Context) -> Context:
        ctx.inference_outputs = ctx.feature_store.copy()  # another field, equal frame
        return ctx

    registry.register("make", make, writes=["feature_store"])
    registry.register("copy", copy, writes=["inference_outputs"])
    manifest = parse_manifest(json.dumps({"pipelines": {"p": {"steps": ["make", "copy"]}}}))
    sdk = QuantSDK(manifest, registry=registry, artifacts=tmp_path / "store",
                   workspace_root=tmp_path / "ws")
    result = sdk.run_pipeline("p", Context(), executor="inline", checkpoints=True)
    store = ArtifactStore(tmp_path / "store")
    last = read_run(store, result.run_id).last_main_checkpoint()
    assert last is not None
    fields = read_index(store, result.run_id, last).fields
    assert fields["inference_outputs"].object == fields["feature_store"].object is not None
    assert fields["feature_store"].object in ObjectStore(store).digests()


FRAMES = {
    "floats and ints": lambda: pd.DataFrame({"a": [1.5, float("nan"), 3.0], "b": [1, 2, 3]}),
    "dated index": lambda: pd.DataFrame(
        {"px": [1.0, 2.0, 3.0]}, index=pd.date_range("2024-01-01", periods=3, name="date")),
    "tz column": lambda: pd.DataFrame({"w": pd.date_range("2024-01-01", periods=3, tz="UTC")}),
    "multi-index": lambda: pd.DataFrame({"a": [1.0, 2.0]}, index=pd.MultiIndex.from_tuples(
        [("a", 1), ("b", 2)], names=["s", "n"])),
    "named range": lambda: pd.DataFrame({"a": [1.0, 2.0, 3.0]}).rename_axis("i"),
}


@pytest.mark.parametrize("name", list(FRAMES))
def test_parquet_bytes_are_deterministic_for_equal_frames(name):
    """Deduplication needs it: an equal frame, built anew or read back from its own
    Parquet (a resumed run writes what it loaded), encodes to the same bytes."""
    once = encode(FRAMES[name](), binding=object_binding("f")).data
    assert sha256(encode(FRAMES[name](), binding=object_binding("f")).data) == sha256(once)
    back = decode("parquet", once, where="test", binding=object_binding("f"))
    assert sha256(encode(back, binding=object_binding("f")).data) == sha256(once)


# ---------------------------------------------------------------- hostile objects


@pytest.mark.parametrize("damage", ["swapped", "truncated"])
def test_a_damaged_object_is_refused_naming_object_checkpoint_and_field(tmp_path, damage):
    root = tmp_path / "store"
    QuantSDK(write_manifest(tmp_path), artifacts=root).run_pipeline(
        "main", StoreContext(), run_id="dmg-1")
    store = ArtifactStore(root)
    step = read_run(store, "dmg-1").checkpoints[-1].dir
    fields = read_index(store, "dmg-1", step).fields
    target = root / object_path(fields["feature_store"].object or "")
    other = root / object_path(fields["audit_trail"].object or "")
    if damage == "swapped":
        target.write_bytes(other.read_bytes())  # a whole, valid object: not this one
    else:
        target.write_bytes(target.read_bytes()[:100])
    with pytest.raises(IntegrityError, match="does not match its digest") as info:
        load_checkpoint(store, "dmg-1", step)
    message = str(info.value)
    assert str(target) in message and f"field 'feature_store' of checkpoint {step}" in message


# ---------------------------------------------------------------- runs before objects


def _to_old_layout(store: ArtifactStore, run_id: str) -> set[str]:
    """Rewrite a run as a runner before objects wrote it: each field a file in the
    first checkpoint folder that names it, indexes naming ``file`` and ``sha256``,
    pickles signed for their place in the run. The objects it named."""
    files: dict[str, tuple[str, str]] = {}  # digest -> (file, sha256)

    def convert(name: str, entry: dict[str, Any], step_dir: str) -> dict[str, Any]:
        digest = entry.pop("object", None)
        if digest is None:
            return entry
        if digest not in files:
            data = store.read_bytes(object_path(digest))
            suffix = {"parquet": "parquet", "series": "parquet", "json": "json"}.get(
                entry["format"], "pkl")
            rel = RunPaths.new_field_file(step_dir, name, suffix)
            if entry["format"] == "pickle":
                data = sign_pickle(data[len(PICKLE_HEADER) + 32:],
                                   binding=field_binding(run_id, rel))
            store.write_bytes(f"runs/{run_id}/{rel}", data)
            files[digest] = (rel, sha256(data))
        rel, digest_now = files[digest]
        return {**entry, "file": rel, "sha256": digest_now}

    doc = json.loads(store.read_bytes(f"runs/{run_id}/run.json"))
    for ckpt in doc["checkpoints"]:
        if "fields" in ckpt:  # inline: its record is its index
            ckpt["fields"] = {n: convert(n, e, ckpt["dir"]) for n, e in ckpt["fields"].items()}
            continue
        rel = f"runs/{run_id}/{ckpt['dir']}/index.json"
        index = json.loads(store.read_bytes(rel))
        index["fields"] = {n: convert(n, e, ckpt["dir"]) for n, e in index["fields"].items()}
        store.write_bytes(rel, json.dumps(sign_document(index)).encode())
    store.write_bytes(f"runs/{run_id}/run.json", json.dumps(sign_document(doc)).encode())
    return set(files)


def test_a_run_written_before_objects_still_reads_shows_and_resumes(tmp_path, cli):
    manifest, root = write_manifest(tmp_path), tmp_path / "store"
    sdk = QuantSDK(manifest, artifacts=root)
    expected = sdk.run_pipeline("main", StoreContext(), run_id="ref-1").context
    flag = tmp_path / "flag"
    flag.write_text("up")
    with pytest.raises(StageFailedError):
        sdk.run_pipeline("main", StoreContext(params={"flag": str(flag)}), run_id="old-1")
    store = ArtifactStore(root)
    for digest in _to_old_layout(store, "ref-1") | _to_old_layout(store, "old-1"):
        store.delete(object_path(digest))
    assert not ObjectStore(store).digests()  # nothing but files of the runs now
    last = read_run(store, "ref-1").checkpoints[-1]
    assert all(e.file and e.object is None
               for e in read_index(store, "ref-1", last).fields.values() if not e.inline)
    # read: the context, a pickle signed for its file, by the library and the CLI
    back = load_checkpoint(store, "ref-1", last.dir)
    assert back.pair == expected.pair and back.audit_trail == expected.audit_trail
    pd.testing.assert_frame_equal(back.feature_store, expected.feature_store)
    args = ["--artifacts", str(root)]
    shown = cli("runs", "show", "ref-1", *args, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "001-load_frames" in shown.stdout
    got = cli("artifacts", "get", "ref-1", "finish", "audit_trail", *args, cwd=tmp_path)
    assert got.returncode == 0 and json.loads(got.stdout) == expected.audit_trail, got.stderr
    # resume: the failed old-layout run continues from its last checkpoint
    flag.unlink()
    resumed = sdk.run_pipeline("main", StoreContext(params={"flag": str(flag)}),
                               run_id="old-1", resume=True)
    assert resumed.context.audit_trail == expected.audit_trail
    assert read_run(store, "old-1").status == "succeeded"


# ---------------------------------------------------------------- runs prune


def _age_run(store: ArtifactStore, run_id: str) -> None:
    doc = json.loads(store.read_bytes(f"runs/{run_id}/run.json"))
    doc.update(started=LONG_AGO, ended=LONG_AGO, updated=LONG_AGO)
    store.write_bytes(f"runs/{run_id}/run.json", json.dumps(sign_document(doc)).encode())


def _cache_entry(store: ArtifactStore, data: bytes) -> str:
    """A step-cache entry naming an object of its own; the object's digest."""
    put = ObjectStore(store).put_bytes(data)
    key = step_key(StageEntry("s.cached", lambda c: c, reads=frozenset({"params"})),
                   SelectionContext(params={"n": 1}))
    ref = OutputRef(format="json", object=put.digest, bytes=put.size)
    assert write_entry(store, key, {"notes": ref}, runner_version="test")
    return put.digest


def _three_runs(tmp_path: Path, root: Any) -> tuple[ArtifactStore, set[str], set[str]]:
    """``keep-1`` and ``gone-1`` (equal data: shared objects; gone-1 with params of its
    own, so one object only it names), ``gone-1`` aged; the objects of each."""
    sdk = _sdk(write_manifest(tmp_path), root)
    sdk.run_pipeline("main", StoreContext(), run_id="keep-1")
    sdk.run_pipeline("main", StoreContext(params={"mine": "gone"}), run_id="gone-1")
    store = ArtifactStore(root.url, root.storage_options)
    _age_run(store, "gone-1")
    keep, gone = _objects_named(store, "keep-1"), _objects_named(store, "gone-1")
    assert keep & gone and gone - keep  # shared objects, and one of gone-1's own
    return store, keep, gone


def test_sweep_deletes_exactly_what_no_run_nor_cache_entry_references(tmp_path, root):
    store, keep, gone = _three_runs(tmp_path, root)
    cached = _cache_entry(store, b'["kept by the cache"]')
    objects = ObjectStore(store)
    stray = objects.put_bytes(b'"referenced by nobody"').digest
    assert not ({cached, stray} & (keep | gone))
    from runner.artifacts import prune_runs
    assert prune_runs(store, older_than_days=30) == ["gone-1"]
    cache_refs = referenced_objects(store)
    assert cache_refs == {cached}
    # within the grace age nothing goes: a run going on may not have named its objects yet
    young = sweep_store(store, also_referenced=cache_refs)
    assert young.deleted == [] and set(young.kept_young) == (gone - keep) | {stray}
    later = time.time() + 2 * DAY
    dry = sweep_store(store, also_referenced=cache_refs, dry_run=True, now=later)
    assert set(dry.deleted) == (gone - keep) | {stray} and dry.bytes > 0
    assert set(objects.digests()) == keep | gone | {cached, stray}  # dry: nothing deleted
    swept = sweep_store(store, also_referenced=cache_refs, now=later)
    assert set(swept.deleted) == (gone - keep) | {stray} and swept.bytes == dry.bytes
    assert set(objects.digests()) == keep | {cached}
    assert load_checkpoint(store, "keep-1", read_run(store, "keep-1").checkpoints[-1].dir)


def test_sweep_skips_when_a_run_cannot_be_read(tmp_path):
    root = tmp_path / "store"
    QuantSDK(write_manifest(tmp_path), artifacts=root).run_pipeline(
        "main", StoreContext(), run_id="bad-1")
    store = ArtifactStore(root)
    before = set(ObjectStore(store).digests())
    index = root / "runs/bad-1" / read_run(store, "bad-1").checkpoints[0].dir / "index.json"
    index.write_text(index.read_text().replace('"format"', '"formats"', 1))
    report = sweep_store(store, now=time.time() + 2 * DAY)
    assert report.deleted == [] and "cannot be read" in report.skipped
    assert set(ObjectStore(store).digests()) == before


def test_runs_prune_cli_sweeps_and_its_dry_run_counts(tmp_path, cli):
    local = type("Root", (), {"url": str(tmp_path / "store"), "storage_options": {}})()
    store, keep, gone = _three_runs(tmp_path, local)
    objects = ObjectStore(store)
    fresh = objects.put_bytes(b'"put a moment ago"').digest
    old = time.time() - 2 * DAY
    for digest in objects.digests():
        if digest != fresh:
            os.utime(store.path(object_path(digest)), (old, old))
    only_gone = gone - keep
    size = sum(os.path.getsize(store.path(object_path(d))) for d in only_gone)
    args = ["--older-than", "30", "--artifacts", str(tmp_path / "store")]

    dry = cli("runs", "prune", *args, "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 run: gone-1" in dry.stderr
    assert (f"would delete {len(only_gone)} unreferenced object"
            f"{'s' if len(only_gone) > 1 else ''} ({size:,} bytes)") in dry.stderr
    assert "kept 1 unreferenced object newer than 24 h" in dry.stderr
    assert set(objects.digests()) == keep | gone | {fresh}

    done = cli("runs", "prune", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"deleted {len(only_gone)} unreferenced object" in done.stderr
    assert set(objects.digests()) == keep | {fresh}  # the fresh one: within the grace
    shown = cli("runs", "show", "keep-1", "--artifacts", str(tmp_path / "store"),
                cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
