"""The artifact store end to end, the same suite on a local folder, memory:// and S3 (moto).

Runs go through :class:`QuantSDK` (and the ``runner`` CLI where a user would
meet the behaviour), with manifests whose stages live in ``tests.shapes`` and
``tests.integration.store_shapes``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from runner.artifacts import ArtifactStore, list_runs, load_error_context
from runner.artifacts.codec import sha256
from runner.artifacts.objects import ObjectStore
from runner.artifacts.signing import KEY_ENV, PICKLE_HEADER
from runner.errors import (
    ArtifactError,
    IntegrityError,
    StageFailedError,
    StorageUnavailableError,
    UsageError,
)
from runner.sdk import QuantSDK
from tests.integration.conftest import AWS_ENV, StoreRoot, free_port
from tests.integration.lease_shapes import ForeignHolder, held_lease, lease_files
from tests.integration.store_shapes import (
    Marker,
    StoreContext,
    stored_path,
    typed_frame,
    write_manifest,
    write_signed,
)
from tests.integration.store_shapes import index_doc as read_index
from tests.integration.store_shapes import load_ckpt as load_checkpoint
from tests.integration.store_shapes import load_entry as load_field
from tests.integration.store_shapes import run_doc as read_run
from tests.shapes import ShapeContext, base_context

pytestmark = pytest.mark.integration

MAIN_DIRS = ["steps/001-load_frames", "steps/002-branch-branch_x", "steps/003-branch-branch_y",
             "steps/004-merge", "steps/005-pickled", "steps/006-flaky", "steps/007-finish"]


# ---------------------------------------------------------------- helpers


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path)


def sdk_for(manifest: Path, root: Any) -> QuantSDK:
    return QuantSDK(manifest, artifacts=root.url, storage_options=root.storage_options)


def store_for(root: Any) -> ArtifactStore:
    return ArtifactStore(root.url, root.storage_options)


def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


def ledger(tmp_path: Path) -> list[str]:
    path = ledger_path(tmp_path)
    return path.read_text().split() if path.exists() else []


def context(tmp_path: Path, **params: Any) -> StoreContext:
    return StoreContext(params={"ledger": str(ledger_path(tmp_path)), **params})


def assert_same_context(got: Any, want: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Field by field: frames and series with pandas.testing, the rest exactly."""
    assert type(got) is type(want)
    assert set(got.__dict__) == set(want.__dict__)
    for name in sorted(set(want.__dict__) - set(skip)):
        a, b = got.__dict__[name], want.__dict__[name]
        if isinstance(b, pd.DataFrame):
            assert_frame_equal(a, b, obj=name)
            assert a.attrs == b.attrs, name
        elif isinstance(b, pd.Series):
            assert_series_equal(a, b, obj=name)
        else:
            assert type(a) is type(b) and a == b, (name, a, b)


def final_dir(store: ArtifactStore, run_id: str) -> str:
    return read_run(store, run_id)["checkpoints"][-1]["dir"]


def replace_field(store: ArtifactStore, run_id: str, step_dir: str, field: str,
                  data: bytes, *, fix_index: bool) -> str:
    """Overwrite a field's object (what anyone with write access to the bucket can
    do); with ``fix_index``, store ``data`` as an object of its own and name it in the
    index instead (what someone holding the key could do). Returns the object's URL."""
    index = read_index(store, run_id, step_dir)
    entry = index["fields"][field]
    if fix_index:
        entry.update(object=sha256(data), bytes=len(data))
    rel = stored_path(run_id, entry)
    store.write_bytes(rel, data)
    if fix_index:
        write_signed(store, f"runs/{run_id}/{step_dir}/index.json", index)  # by a key holder
    return store.url_of(rel)


def local_copy(store: ArtifactStore, rel: str, folder: Path) -> str:
    """A local path holding the stored file (the file itself on a local store)."""
    if store.local:
        return store.path(rel)
    target = folder / rel.replace("/", "__")
    target.write_bytes(store.read_bytes(rel))
    return str(target)


def all_files(store: ArtifactStore) -> list[str]:
    return [str(p) for p in store.fs.find(store.root)]


# ---------------------------------------------------------------- checkpoints


def test_checkpoints_after_every_main_step_and_branch(manifest, store_root):
    sdk = sdk_for(manifest, store_root)
    result = sdk.run_pipeline("shape", base_context(), run_id="shape-1")
    store = store_for(store_root)

    doc = read_run(store, "shape-1")
    assert doc["status"] == "succeeded" and doc["error"] is None and doc["ended"]
    assert doc["pipeline"] == "shape" and doc["run_id"] == "shape-1"
    assert doc["trace_id"] == result.trace_id and doc["attempts"] == 1
    assert doc["manifest_digest"] == sdk.manifest.digest != ""
    assert doc["completed"] == ["shape[0]", "shape[1]", "shape[2]"]
    assert [(c["dir"], c["name"], c["path"], c["kind"]) for c in doc["checkpoints"]] == [
        ("steps/001-log.a", "log.a", "shape[0]", "step"),
        ("steps/002-branch-add.x", "branch-add.x", "shape[1][0]", "branch"),
        ("steps/003-branch-add.y", "branch-add.y", "shape[1][1]", "branch"),
        ("steps/004-merge", "merge", "shape[1]", "step"),
        ("steps/005-log.b", "log.b", "shape[2]", "step"),
    ]
    assert held_lease(store, "shape-1") is None  # released

    fields = set(ShapeContext.model_fields)
    for ckpt in doc["checkpoints"]:
        index = read_index(store, "shape-1", ckpt["dir"])
        assert index["format"] == 1 and index["run_id"] == "shape-1"
        assert index["context_type"] == "tests.shapes:ShapeContext"
        assert (index["name"], index["path"], index["kind"]) == (
            ckpt["name"], ckpt["path"], ckpt["kind"])
        assert set(index["fields"]) == fields
        for name, entry in index["fields"].items():
            if name in ("value", "run_id", "workspace"):  # scalars: kept in the record
                assert entry == {"format": "value", "value": getattr(result.context, name),
                                 **{k: entry[k] for k in entry if k not in ("format", "value")}}
                assert not entry["file"] and entry["object"] is entry["sha256"] is None
                continue
            data = store.read_bytes(stored_path("shape-1", entry))
            assert entry["object"] == sha256(data) and not entry["file"], name
            assert entry["bytes"] == len(data), name
            if name in ("feature_store", "inference_outputs"):
                assert entry["format"] == "parquet"
                assert entry["rows"] == (3 if name == "feature_store" else 0)
            else:
                assert entry["format"] == "json"
                assert entry["rows"] is None

    first_in: dict[str, str] = {}  # object -> the first checkpoint that named it

    def owners(step_dir: str) -> dict[str, str]:
        index = read_index(store, "shape-1", step_dir)
        return {n: first_in.setdefault(e["object"], step_dir)
                for n, e in index["fields"].items() if e["format"] != "value"}

    first = owners("steps/001-log.a")
    assert set(first.values()) == {"steps/001-log.a"}  # the first checkpoint writes all
    x, _, merge, last = (owners("steps/002-branch-add.x"), owners("steps/003-branch-add.y"),
                         owners("steps/004-merge"), owners("steps/005-log.b"))
    # a branch writes what it changed and references the rest of the main line
    assert x["feature_store"] == "steps/002-branch-add.x"
    assert x["audit_trail"] == "steps/001-log.a"
    assert merge["feature_store"] == "steps/004-merge"
    assert merge["audit_trail"] == merge["table"] == "steps/001-log.a"
    assert last["audit_trail"] == "steps/005-log.b"
    assert last["feature_store"] == "steps/004-merge"
    assert last["inference_outputs"] == last["notes"] == "steps/001-log.a"
    # a checkpoint folder holds its index only: the fields are objects, each stored once
    for ckpt in doc["checkpoints"]:
        assert store.listdir(f"runs/shape-1/{ckpt['dir']}") == ["index.json"]
    assert len(ObjectStore(store).digests()) == len(first_in)

    assert_same_context(load_checkpoint(store, "shape-1", "steps/005-log.b"), result.context)
    for step_dir, columns in (("steps/002-branch-add.x", ["p", "x"]),
                              ("steps/003-branch-add.y", ["p", "y"])):
        branch = load_checkpoint(store, "shape-1", step_dir)
        assert isinstance(branch, ShapeContext)
        assert list(branch.feature_store.columns) == columns
        assert branch.audit_trail == ["a"]


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_checkpoints_same_on_parallel_executors(manifest, tmp_path, executor):
    root = StoreRoot(str(tmp_path / "store"), {})
    sdk = sdk_for(manifest, root)
    result = sdk.run_pipeline("main", context(tmp_path), run_id="par-1", executor=executor)
    store = store_for(root)
    doc = read_run(store, "par-1")
    assert doc["executor"] == executor and doc["status"] == "succeeded"
    # branches may finish in any order: their checkpoints are numbered as they land
    assert sorted(c["name"] for c in doc["checkpoints"][1:3]) == ["branch-branch_x",
                                                                  "branch-branch_y"]
    assert [c["dir"] for c in doc["checkpoints"]][3:] == MAIN_DIRS[3:]
    assert_same_context(load_checkpoint(store, "par-1", MAIN_DIRS[-1]), result.context)


def test_stored_frames_read_with_pyarrow_and_duckdb(manifest, store_root, tmp_path):
    result = sdk_for(manifest, store_root).run_pipeline("main", context(tmp_path),
                                                        run_id="fmt-1")
    store = store_for(store_root)
    index = read_index(store, "fmt-1", final_dir(store, "fmt-1"))
    want = typed_frame().assign(x=typed_frame()["px"] * 2, y=typed_frame()["qty"] + 1)
    assert_frame_equal(result.context.feature_store, want)

    expected = {"feature_store": (want, "date"),
                "inference_outputs": (result.context.inference_outputs, "key")}
    for field, (frame, index_name) in expected.items():
        entry = index["fields"][field]
        assert entry["format"] == "parquet" and entry["rows"] == len(frame)
        path = local_copy(store, stored_path("fmt-1", entry), tmp_path)
        # pyarrow alone, through pandas' metadata: index and dtypes as the stage made them
        assert_frame_equal(pq.read_table(path).to_pandas(), frame, check_freq=False)
        # DuckDB knows no pandas index: it comes back as a column of the same name
        got = duckdb.connect().execute("select * from read_parquet(?)", [path]).df()
        assert list(got.columns) == [*frame.columns, index_name]
        assert_frame_equal(got.set_index(index_name), frame, check_freq=False)

    pair = index["fields"]["pair"]
    assert pair["format"] == "pickle" and pair["object"]
    assert load_field(store, "fmt-1", pair, name="pair") == ("alpha", 1, frozenset({"a", "b"}))
    series = index["fields"]["series"]
    assert series["format"] == "series" and series["series_name"] == "sig"
    assert_series_equal(load_field(store, "fmt-1", series), result.context.series)
    assert index["fields"]["value"]["format"] == "value"  # a number: inline, no file
    assert load_field(store, "fmt-1", index["fields"]["value"]) == 111
    notes = index["fields"]["notes"]
    assert notes["format"] == "json" and notes["object"]
    assert load_field(store, "fmt-1", notes) == result.context.notes


def test_no_temporary_files_left(manifest, store_root, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    sdk = sdk_for(manifest, store_root)
    sdk.run_pipeline("main", context(tmp_path), run_id="tmp-1")
    flag = tmp_path / "flag"
    flag.write_text("up")
    with pytest.raises(StageFailedError):
        sdk.run_pipeline("main", context(tmp_path, flag=str(flag)), run_id="tmp-2")
    store = store_for(store_root)
    # forensics are signed with the key file's key (no RUNNER_ARTIFACT_KEY needed)
    received = load_error_context(store.url_of("summaries/runs/tmp-2/error_context.pkl"),
                                  store.storage_options)
    assert isinstance(received, StoreContext) and received.value == 1
    assert json.loads(store.read_bytes("summaries/runs/tmp-2/error.json"))["signed"] is True
    files = all_files(store)
    assert any(f.endswith("/runs/tmp-1/steps/007-finish/index.json") for f in files)
    assert any(f.endswith("/summaries/runs/tmp-2/error.json") for f in files)
    hidden = [f for f in files if f.rsplit("/", 1)[-1].startswith(".")]
    assert hidden == []  # no temporary names, no store probes, no half-written files
    if store_root.kind == "local":
        on_disk = list(Path(store_root.url).rglob(".*"))
        assert on_disk == []


# ---------------------------------------------------------------- integrity


def test_corrupted_files_are_refused(manifest, store_root, tmp_path):
    sdk_for(manifest, store_root).run_pipeline("main", context(tmp_path), run_id="bad-1")
    store = store_for(store_root)
    step = final_dir(store, "bad-1")
    fields = read_index(store, "bad-1", step)["fields"]

    # a Parquet file with flipped bytes
    data = bytearray(store.read_bytes(stored_path("bad-1", fields["feature_store"])))
    footer = len(data) - 12
    data[footer:footer + 4] = bytes(b ^ 0xFF for b in data[footer:footer + 4])
    url = replace_field(store, "bad-1", step, "feature_store", bytes(data), fix_index=False)
    with pytest.raises(IntegrityError, match="does not match its digest") as info:
        load_checkpoint(store, "bad-1", step)
    assert url in str(info.value) and info.value.url == url
    assert f"field 'feature_store' of checkpoint {step}" in str(info.value)
    # bytes that match a (rewritten) index but are no Parquet file: still refused
    url = replace_field(store, "bad-1", step, "feature_store", bytes(data[: len(data) // 2]),
                        fix_index=True)
    with pytest.raises(IntegrityError, match="cannot read parquet") as info:
        load_checkpoint(store, "bad-1", step)
    assert url in str(info.value)
    replace_field(store, "bad-1", step, "feature_store", typed_frame().to_parquet(),
                  fix_index=True)  # repaired: the next field's failure is its own

    # a truncated pickle
    assert fields["pair"]["format"] == "pickle"
    data = store.read_bytes(stored_path("bad-1", fields["pair"]))
    assert data.startswith(PICKLE_HEADER)  # signed although no RUNNER_ARTIFACT_KEY is set
    url = replace_field(store, "bad-1", step, "pair", data[:-5], fix_index=False)
    with pytest.raises(IntegrityError, match="does not match its digest") as info:
        load_checkpoint(store, "bad-1", step)
    assert url in str(info.value)
    url = replace_field(store, "bad-1", step, "pair", data[:-5], fix_index=True)
    with pytest.raises(IntegrityError, match="does not verify") as info:
        load_checkpoint(store, "bad-1", step)
    assert url in str(info.value)


def test_signed_pickle_tampered_is_never_unpickled(manifest, store_root, tmp_path,
                                                   monkeypatch):
    monkeypatch.setenv(KEY_ENV, "k-one-0123456789")
    sdk_for(manifest, store_root).run_pipeline("main", context(tmp_path), run_id="sig-1")
    store = store_for(store_root)
    step = final_dir(store, "sig-1")
    entry = read_index(store, "sig-1", step)["fields"]["pair"]
    data = store.read_bytes(stored_path("sig-1", entry))
    assert data.startswith(PICKLE_HEADER)
    assert load_checkpoint(store, "sig-1", step).pair == ("alpha", 1, frozenset({"a", "b"}))

    monkeypatch.setenv(KEY_ENV, "k-two-0123456789")  # another key: nothing verifies
    with pytest.raises(IntegrityError, match="another key"):
        load_checkpoint(store, "sig-1", step)

    monkeypatch.setenv(KEY_ENV, "k-one-0123456789")
    marker = tmp_path / "unpickled.txt"
    hostile = pickle.dumps(Marker(str(marker)))
    header = data[: len(PICKLE_HEADER) + 32]  # the genuine signature of the genuine payload
    url = replace_field(store, "sig-1", step, "pair", header + hostile, fix_index=True)
    with pytest.raises(IntegrityError, match="does not verify") as info:
        load_checkpoint(store, "sig-1", step)
    assert url in str(info.value)
    assert not marker.exists()


def test_unsigned_pickle_refused_by_default(manifest, store_root, tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    sdk_for(manifest, store_root).run_pipeline("main", context(tmp_path), run_id="uns-1")
    store = store_for(store_root)
    step = final_dir(store, "uns-1")
    marker = tmp_path / "unpickled.txt"
    url = replace_field(store, "uns-1", step, "pair", pickle.dumps(Marker(str(marker))),
                        fix_index=True)
    with pytest.raises(IntegrityError, match="not a signed pickle") as info:
        load_checkpoint(store, "uns-1", step)
    assert url in str(info.value)
    assert not marker.exists()
    # the control: --allow-unsigned reads it (a store the user vouches for), and it runs
    load_checkpoint(store, "uns-1", step, allow_unsigned=True)
    assert marker.read_text() == "unpickled!"


# ---------------------------------------------------------------- run lock


def test_live_lock_refuses_a_second_run(manifest, store_root, tmp_path):
    """A lease another host keeps renewing is refused within one renewal interval."""
    store = store_for(store_root)
    holder = ForeignHolder(store, "lock-1", renew=True, interval=0.2, seconds=30)
    try:
        began = time.monotonic()
        with pytest.raises(UsageError, match="being run by pid 4242 on build-box-7") as info:
            sdk_for(manifest, store_root).run_pipeline("main", context(tmp_path),
                                                       run_id="lock-1")
        took = time.monotonic() - began
    finally:
        holder.stop()
    print(f"\nlive foreign lease refused after {took:.2f}s ({store_root.kind})")
    assert took < 20  # a safety bound: far below the holder's 30 s lease
    assert info.value.exit_code == 2
    assert "keeps renewing" in str(info.value)
    assert ledger(tmp_path) == []  # nothing ran
    assert held_lease(store, "lock-1") == holder.doc  # the owner keeps its lease
    assert lease_files(store, "lock-1") == ["00000001.json"]
    assert not store.exists("runs/lock-1/run.json")


@pytest.mark.parametrize("how", ["unrenewed-elsewhere", "dead-pid-on-this-host"])
def test_stale_lock_is_broken(manifest, store_root, tmp_path, how, caplog):
    store = store_for(store_root)
    if how == "unrenewed-elsewhere":  # another host's run that stopped renewing
        ForeignHolder(store, "lock-2", renew=False, interval=0.25, seconds=1.0)
    else:
        proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
        ForeignHolder(store, "lock-2", renew=False, interval=60, seconds=600,
                      pid=int(proc.stdout), host=socket.gethostname(),
                      pid_namespace=os.readlink("/proc/self/ns/pid"))
    began = time.monotonic()
    result = sdk_for(manifest, store_root).run_pipeline("main", context(tmp_path),
                                                        run_id="lock-2")
    print(f"\n{how}: lease taken over, run done in {time.monotonic() - began:.2f}s")
    assert result.context.value == 111
    assert read_run(store, "lock-2")["status"] == "succeeded"
    assert held_lease(store, "lock-2") is None
    assert lease_files(store, "lock-2") == ["00000001.json", "00000002.json"]
    assert "taking over the lease of pid" in caplog.text


def test_concurrent_run_of_one_run_id_is_refused(manifest, store_root, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    sdk = sdk_for(manifest, store_root)
    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            outcome["result"] = sdk.run_pipeline(
                "blocking", context(tmp_path, started=str(started), release=str(release)),
                run_id="lock-3")
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    try:
        for _ in range(3000):
            if started.exists() or not thread.is_alive():
                break
            time.sleep(0.01)
        assert started.exists(), outcome
        store = store_for(store_root)
        assert held_lease(store, "lock-3") is not None
        with pytest.raises(UsageError) as info:
            sdk_for(manifest, store_root).run_pipeline(
                "blocking", context(tmp_path, started=str(started), release=str(release)),
                run_id="lock-3", resume=True)
        message = str(info.value)
        assert f"pid {os.getpid()} on {socket.gethostname()}" in message
    finally:
        release.write_text("go")
        thread.join(timeout=120)
    assert "error" not in outcome, outcome
    assert outcome["result"].context.value == 100
    assert ledger(tmp_path) == ["load_frames", "block", "finish"]  # the refused run ran nothing
    assert read_run(store, "lock-3")["status"] == "succeeded"
    assert held_lease(store, "lock-3") is None


def test_finished_run_id_is_refused_and_its_resume_runs_nothing(manifest, store_root,
                                                                  tmp_path):
    """A new run under a finished id is refused; resuming it (a pod retried after the
    run succeeded) runs nothing, is no error, and leaves the run as it was."""
    sdk = sdk_for(manifest, store_root)
    sdk.run_pipeline("main", context(tmp_path), run_id="done-1")
    before = ledger(tmp_path)
    doc = read_run(store_for(store_root), "done-1")
    with pytest.raises(UsageError, match=r"run 'done-1' already exists .*--resume"):
        sdk.run_pipeline("main", context(tmp_path), run_id="done-1")
    again = sdk.run_pipeline("main", context(tmp_path), run_id="done-1", resume=True)
    assert again.already_complete is True
    assert again.status == "succeeded" and again.records == () and again.context is None
    assert ledger(tmp_path) == before
    assert read_run(store_for(store_root), "done-1") == doc  # not even attempts changed
    assert not store_for(store_root).exists("runs/done-1/lock.json")


# ---------------------------------------------------------------- resume


def _fail_at_flaky(manifest: Path, root: Any, tmp_path: Path, run_id: str) -> Path:
    flag = tmp_path / "flag"
    flag.write_text("up")
    with pytest.raises(StageFailedError, match=r"flag .* is up") as info:
        sdk_for(manifest, root).run_pipeline("main", context(tmp_path, flag=str(flag)),
                                             run_id=run_id)
    assert info.value.stage == "flaky" and info.value.path == "main[3]"
    assert info.value.error_context == store_for(root).url_of(
        f"summaries/runs/{run_id}/error_context.pkl")
    return flag


def test_resume_skips_completed_steps(manifest, store_root, tmp_path):
    flag = _fail_at_flaky(manifest, store_root, tmp_path, "res-1")
    store = store_for(store_root)
    doc = read_run(store, "res-1")
    assert doc["status"] == "failed" and doc["ended"]
    assert doc["error"]["type"] == "StageFailedError" and "flag" in doc["error"]["message"]
    assert doc["completed"] == ["main[0]", "main[1]", "main[2]"]
    assert held_lease(store, "res-1") is None
    first = ["load_frames", "branch_x", "branch_y", "pickled", "flaky"]
    assert ledger(tmp_path) == first

    flag.unlink()
    resumed = sdk_for(manifest, store_root).run_pipeline(
        "main", context(tmp_path, flag=str(flag)), run_id="res-1", resume=True)
    assert ledger(tmp_path) == [*first, "flaky", "finish"]  # done steps did not run again
    doc = read_run(store, "res-1")
    assert doc["status"] == "succeeded" and doc["attempts"] == 2 and doc["error"] is None
    assert doc["completed"] == [f"main[{i}]" for i in range(5)]
    assert [c["dir"] for c in doc["checkpoints"]] == MAIN_DIRS

    whole = sdk_for(manifest, store_root).run_pipeline(
        "main", context(tmp_path, flag=str(flag)), run_id="res-whole")
    assert_same_context(resumed.context, whole.context, skip=("run_id", "workspace"))
    assert resumed.context.run_id == "res-1"
    assert_same_context(load_checkpoint(store, "res-1", MAIN_DIRS[-1]), resumed.context)


def test_resume_refuses_a_changed_manifest_unless_forced(manifest, store_root, tmp_path):
    flag = _fail_at_flaky(manifest, store_root, tmp_path, "res-2")
    flag.unlink()
    before = ledger(tmp_path)
    changed = write_manifest(tmp_path, description="edited since the run started")
    with pytest.raises(UsageError, match="manifest changed since run 'res-2' started"):
        sdk_for(changed, store_root).run_pipeline("main", context(tmp_path), run_id="res-2",
                                                  resume=True)
    assert ledger(tmp_path) == before
    result = sdk_for(changed, store_root).run_pipeline(
        "main", context(tmp_path), run_id="res-2", resume=True, force=True)
    assert result.context.value == 111
    assert ledger(tmp_path) == [*before, "flaky", "finish"]
    doc = read_run(store_for(store_root), "res-2")
    assert doc["status"] == "succeeded"
    assert doc["manifest_digest"] == sdk_for(changed, store_root).manifest.digest


def test_resume_of_an_unknown_run_is_refused_unless_asked_to_start(manifest, store_root,
                                                                     tmp_path):
    with pytest.raises(UsageError, match=r"--resume: no run 'res-3' in .*runner runs list"):
        sdk_for(manifest, store_root).run_pipeline(
            "main", context(tmp_path), run_id="res-3", resume=True)
    assert ledger(tmp_path) == []
    result = sdk_for(manifest, store_root).run_pipeline(
        "main", context(tmp_path), run_id="res-3", resume=True, start_if_new=True)
    assert result.context.value == 111
    assert ledger(tmp_path) == ["load_frames", "branch_x", "branch_y", "pickled", "flaky",
                                "finish"]
    doc = read_run(store_for(store_root), "res-3")
    assert doc["attempts"] == 1 and doc["status"] == "succeeded"


# ---------------------------------------------------------------- forensics


def test_forensics_on_the_store(manifest, store_root, tmp_path, monkeypatch):
    key = "k-forensics-0123456789"
    monkeypatch.setenv(KEY_ENV, key)
    monkeypatch.chdir(tmp_path)  # a local fallback would land here: it must not be used
    _fail_at_flaky(manifest, store_root, tmp_path, "for-1")
    store = store_for(store_root)
    pkl = "summaries/runs/for-1/error_context.pkl"
    assert not (tmp_path / "data").exists()
    doc = json.loads(store.read_bytes("summaries/runs/for-1/error.json"))
    assert doc["run_id"] == "for-1" and doc["pipeline"] == "main"
    assert (doc["stage"], doc["path"], doc["exception_type"]) == ("flaky", "main[3]",
                                                                  "RuntimeError")
    assert "is up" in doc["message"] and "RuntimeError" in doc["traceback"]
    assert doc["error_context"] == store.url_of(pkl)
    assert doc["signed"] is True
    data = store.read_bytes(pkl)
    assert data.startswith(PICKLE_HEADER)  # signed with the key, like checkpoint pickles
    received = load_error_context(store.url_of(pkl), store.storage_options)
    assert isinstance(received, StoreContext)
    assert received.value == 1 and received.notes == []  # what flaky received
    assert list(received.feature_store.columns) == ["px", "qty", "sym", "live", "x", "y"]


# ---------------------------------------------------------------- unusable storage


def _closed_port_root(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, str]:
    url = "s3://no-server-here/prefix"
    opts = {"client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
            "key": "testing", "secret": "testing",
            "config_kwargs": {"retries": {"max_attempts": 1}}}
    return url, opts


def _missing_bucket_root(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, str]:
    server = request.getfixturevalue("s3_server")
    return "s3://no-such-bucket-here/prefix", server.storage_options()


def _file_root(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, str]:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    return str(blocker), {}


def _under_file_root(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, str]:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    return str(blocker / "store"), {}


def _read_only_root(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Any, str]:
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    request.addfinalizer(lambda: folder.chmod(0o755))
    return str(folder), {}


UNUSABLE = {"s3-closed-port": _closed_port_root, "s3-missing-bucket": _missing_bucket_root,
            "local-root-is-a-file": _file_root, "local-root-under-a-file": _under_file_root,
            "local-read-only": _read_only_root}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_storage_fails_before_any_stage(manifest, tmp_path, request, case):
    url, opts = UNUSABLE[case](tmp_path, request)
    sdk = QuantSDK(manifest, artifacts=url, storage_options=opts)
    with pytest.raises(ArtifactError) as info:
        sdk.run_pipeline("main", context(tmp_path), run_id="gone-1")
    no_answer = case == "s3-closed-port"  # infrastructure, not the user's input
    assert url in str(info.value) and info.value.exit_code == (4 if no_answer else 2)
    assert isinstance(info.value, StorageUnavailableError) is no_answer
    assert "not usable" in str(info.value)
    assert ledger(tmp_path) == []


@pytest.mark.parametrize("case", ["s3-closed-port", "local-root-is-a-file", "local-read-only"])
def test_unusable_storage_through_the_cli(manifest, tmp_path, request, case, cli):
    url, opts = UNUSABLE[case](tmp_path, request)
    args = ["--artifacts", url]
    endpoint = opts.get("client_kwargs", {}).get("endpoint_url")
    if endpoint:
        args += ["--storage-option", f"endpoint_url={endpoint}"]
    proc = cli("run", "main", "-m", manifest, "--run-id", "gone-2", *args,
               "--param", f"ledger={ledger_path(tmp_path)}", cwd=tmp_path,
               env={**AWS_ENV, "AWS_MAX_ATTEMPTS": "1"})
    assert proc.returncode == (4 if case == "s3-closed-port" else 2), proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: artifact store is not usable") and url in lines[0]
    assert "Traceback" not in proc.stderr
    assert ledger(tmp_path) == []


# ---------------------------------------------------------------- storage failing mid-run


class OutageStore(ArtifactStore):
    """A store that refuses writes from the first path containing ``match`` on: that
    checkpoint, every later one, and forensics. Commits of earlier checkpoints still
    land (they may trail behind on the background writer's commit thread)."""

    LATER = re.compile(r"/steps/(00[5-9]|0[1-9]\d)-|^summaries/")

    def __init__(self, *args: Any, match: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.match = match
        self.refused: list[str] = []

    def _gate(self, rel: str) -> None:
        if self.match in rel or (self.refused and self.LATER.search(rel)):
            if rel not in self.refused:
                self.refused.append(rel)
            raise ArtifactError(f"cannot write {self.url_of(rel)}: injected outage",
                                url=self.url_of(rel))

    def write_bytes(self, rel: str, data: bytes, **kwargs: Any) -> None:
        self._gate(rel)
        super().write_bytes(rel, data, **kwargs)

    def open_atomic(self, rel: str, **kwargs: Any) -> Any:  # streamed writes, if the store has them
        self._gate(rel)
        return super().open_atomic(rel, **kwargs)  # type: ignore[misc]

    def write_temp(self, rel: str, write: Any) -> Any:  # Parquet, natively
        self._gate(rel)
        return super().write_temp(rel, write)


def test_storage_failing_mid_run(manifest, store_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stores: list[OutageStore] = []

    class OutageSDK(QuantSDK):
        def store(self) -> ArtifactStore:
            stores.append(OutageStore(self.artifacts, self.storage_options,
                                      match="/steps/005-"))
            return stores[-1]

    sdk = OutageSDK(manifest, artifacts=store_root.url,
                    storage_options=store_root.storage_options)
    with pytest.raises(StageFailedError, match="injected outage") as info:
        sdk.run_pipeline("main", context(tmp_path), run_id="out-1")
    error = info.value
    # the failed write fails the run at a step boundary (at once, or at the next one
    # when checkpoints are written in the background), never later than the last step
    assert error.stage == "CheckpointHook.on_step_end"
    assert error.path in ("main[2]", "main[3]", "main[4]")
    assert stores[0].refused[0].startswith("runs/out-1/steps/005-pickled/")
    # forensics: the store refused them, so they are in the local fallback folder
    local = tmp_path / "data/artifacts/summaries/runs/out-1"
    assert error.error_context is not None
    assert Path(error.error_context).resolve() == (local / "error_context.pkl").resolve()
    assert json.loads((local / "error.json").read_text())["stage"] == "CheckpointHook.on_step_end"
    # signed like any forensics: the fallback is an ArtifactStore on a local folder
    assert (local / "error_context.pkl").read_bytes().startswith(PICKLE_HEADER)
    assert load_error_context(str(local / "error_context.pkl")).pair == (
        "alpha", 1, frozenset({"a", "b"}))
    assert "summaries/runs/out-1/error_context.pkl" in stores[0].refused

    # what was written before the outage is intact and loads with its checksums
    store = store_for(store_root)
    doc = read_run(store, "out-1")
    assert doc["completed"] == ["main[0]", "main[1]"]
    assert store.listdir("runs/out-1/steps") == [d.removeprefix("steps/")
                                                 for d in MAIN_DIRS[:4]]
    merged = load_checkpoint(store, "out-1", "steps/004-merge")
    assert list(merged.feature_store.columns) == ["px", "qty", "sym", "live", "x", "y"]
    assert held_lease(store, "out-1") is None  # deleting still worked: released

    # once storage is back, the run resumes after its last durable checkpoint
    before = ledger(tmp_path)
    assert before[:4] == ["load_frames", "branch_x", "branch_y", "pickled"]
    result = sdk_for(manifest, store_root).run_pipeline("main", context(tmp_path),
                                                        run_id="out-1", resume=True)
    assert result.context.value == 111
    assert ledger(tmp_path)[len(before):] == ["pickled", "flaky", "finish"]
    assert read_run(store, "out-1")["status"] == "succeeded"


def test_bucket_deleted_mid_run_through_the_cli(manifest, s3_root, tmp_path, cli):
    proc = cli("run", "sabotage", "-m", manifest, "--run-id", "sab-1",
               "--artifacts", s3_root.url,
               "--storage-option", f"endpoint_url={s3_root.server.endpoint}",
               "--param", f"ledger={ledger_path(tmp_path)}",
               "--param", f"endpoint={s3_root.server.endpoint}",
               "--param", f"bucket={s3_root.bucket}", cwd=tmp_path, env=AWS_ENV)
    assert proc.returncode == 1, proc.stderr
    assert re.search(r"error: stage 'CheckpointHook\.on_step_end' at sabotage\[[12]\] failed",
                     proc.stderr), proc.stderr
    assert f"{s3_root.url}/runs/sab-1/" in proc.stderr  # the write that failed
    assert "Traceback (most recent call last)" not in proc.stderr
    assert ledger(tmp_path)[:2] == ["load_frames", "sabotage_s3"]
    local = tmp_path / "data/artifacts/summaries/runs/sab-1"
    info = json.loads((local / "error.json").read_text())
    assert info["stage"] == "CheckpointHook.on_step_end"
    assert load_error_context(str(local / "error_context.pkl")).audit_trail[:2] == [
        "frames", "sabotaged"]
    assert str(Path("data/artifacts/summaries/runs/sab-1/error_context.pkl")) in proc.stderr


# ---------------------------------------------------------------- a crashed run


def test_crashed_run_resumes_through_the_cli(manifest, cli_root, tmp_path, cli):
    die = tmp_path / "die"
    die.write_text("up")
    params = ["--param", f"ledger={ledger_path(tmp_path)}", "--param", f"die={die}"]
    proc = cli("run", "crashy", "-m", manifest, "--run-id", "crash-1", *cli_root.cli_args(),
               *params, cwd=tmp_path, env=cli_root.env)
    assert proc.returncode == 17, proc.stderr  # killed itself: no hook, no cleanup ran
    store = store_for(cli_root)
    doc = read_run(store, "crash-1")
    assert doc["status"] == "running"
    # checkpoints that were durable when the process died (all of them when written
    # synchronously; a background writer may have been behind)
    done = doc["completed"]
    assert done == ["crashy[0]", "crashy[1]"][: len(done)]
    names = ["load_frames", "pickled", "die", "finish"]
    assert ledger(tmp_path) == names[:3]
    lock = held_lease(store, "crash-1")
    assert lock is not None and lock["host"] == socket.gethostname()

    die.unlink()
    with pytest.raises(UsageError, match="already exists"):  # it needs --resume
        sdk_for(manifest, cli_root).run_pipeline("crashy", context(tmp_path), run_id="crash-1")
    if cli_root.kind == "local":  # the --resume flag; on S3 the SDK resumes (faster)
        resumed = cli("run", "crashy", "-m", manifest, "--run-id", "crash-1", "--resume",
                      "--json", *cli_root.cli_args(), *params, cwd=tmp_path, env=cli_root.env)
        assert resumed.returncode == 0, resumed.stderr  # the dead owner's lock was broken
        out = json.loads(resumed.stdout)
        assert [s["name"] for s in out["steps"]] == names[len(done):]
    else:
        result = sdk_for(manifest, cli_root).run_pipeline(
            "crashy", context(tmp_path, die=str(die)), run_id="crash-1", resume=True)
        assert [r.name for r in result.records] == names[len(done):]
    assert ledger(tmp_path) == [*names[:3], *names[len(done):]]  # done steps ran once
    doc = read_run(store, "crash-1")
    assert doc["status"] == "succeeded" and doc["attempts"] == 2
    final = load_checkpoint(store, "crash-1", doc["checkpoints"][-1]["dir"])
    assert final.audit_trail == ["frames", "survived", "finished"] and final.value == 101


# ---------------------------------------------------------------- bugs found


def test_index_rename_is_checkpointed(manifest, tmp_path):
    root = StoreRoot(str(tmp_path / "store"), {})
    result = sdk_for(manifest, root).run_pipeline("renamed", context(tmp_path), run_id="bug-1")
    assert result.context.inference_outputs.index.name == "renamed"
    store = store_for(root)
    saved = load_checkpoint(store, "bug-1", final_dir(store, "bug-1"))
    assert saved.inference_outputs.index.name == "renamed"


def test_object_column_round_trips(manifest, tmp_path):
    root = StoreRoot(str(tmp_path / "store"), {})
    result = sdk_for(manifest, root).run_pipeline("objcol", context(tmp_path), run_id="bug-2")
    store = store_for(root)
    saved = load_checkpoint(store, "bug-2", final_dir(store, "bug-2"))
    assert_frame_equal(saved.inference_outputs, result.context.inference_outputs)


def test_tuple_named_series_round_trips(manifest, tmp_path):
    root = StoreRoot(str(tmp_path / "store"), {})
    result = sdk_for(manifest, root).run_pipeline("tuplename", context(tmp_path),
                                                  run_id="bug-3")
    store = store_for(root)
    saved = load_checkpoint(store, "bug-3", final_dir(store, "bug-3"))
    assert_series_equal(saved.series, result.context.series)


def test_cli_usage_error_leaves_no_lock(manifest, tmp_path, cli):
    store_dir = tmp_path / "store"
    proc = cli("run", "shape", "-m", manifest, "--run-id", "bug-4", "--artifacts", store_dir,
               "--param", "x=1", cwd=tmp_path)
    assert proc.returncode == 2 and "has no 'params' field" in proc.stderr
    assert list_runs(ArtifactStore(store_dir)) == []  # not a phantom 'unreadable' run
    assert not (store_dir / "runs/bug-4/lease").exists()


def test_a_run_leaves_no_thread_behind(manifest, tmp_path):
    root = StoreRoot(str(tmp_path / "store"), {})
    sdk = sdk_for(manifest, root)
    before = {t.ident for t in threading.enumerate()}
    for i in range(2):
        sdk.run_pipeline("main", context(tmp_path), run_id=f"thr-{i}")
    left: list[str] = []
    for _ in range(200):  # give a stopping thread a moment to end
        left = [t.name for t in threading.enumerate()
                if t.ident not in before and t.name.startswith("runner-")]
        if not left:
            break
        time.sleep(0.01)
    assert left == []


def test_s3_store_round_trip(s3_server):
    """The smallest thing the S3 back end must do: write bytes, read them back."""
    bucket = f"plain-{uuid.uuid4().hex[:12]}"
    s3_server.admin().mkdir(bucket)
    store = ArtifactStore(f"s3://{bucket}/prefix", s3_server.storage_options())
    store.check()
    store.write_bytes("runs/a/run.json", b'{"run_id": "a"}')
    assert store.read_bytes("runs/a/run.json") == b'{"run_id": "a"}'
    assert store.listdir("runs") == ["a"]
