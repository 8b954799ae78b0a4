"""The run lease against real contenders: threads, processes, ``runner run``
subprocesses, another host name (``unshare --uts``), a local folder and S3 (moto).

* 100 simultaneous acquisitions (threads, then processes): exactly one winner.
* 30 same-id runs at once (QuantSDK threads; ``runner run`` processes): exactly
  one ran its stages, the others were refused (exit 2) and ran nothing.
* A SIGKILLed run resumed under another host name: the resume waits until the
  dead run's lease has gone unrenewed for the lease duration, takes it over with
  no manual step, and ends like an uninterrupted run (takeover time printed).
* A live, renewing run is refused at once from another host name.
* A run that loses its lease stops at the next step and writes nothing more.
* The store's atomic create on each back end, and the warning where there is none.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from runner.artifacts import ArtifactStore, RunLease
from runner.artifacts.lease import lease_seconds
from runner.errors import StageFailedError, UsageError
from runner.sdk import QuantSDK
from tests.integration import crash_shapes
from tests.integration.artifacts.test_crash_resume import (
    ORDER,
    RUN_ID,
    _at,
    crash,
    reference,  # noqa: F401 - the module-scoped fixture, shared
    resume_and_check,
)
from tests.integration.conftest import AWS_ENV, S3Root, StoreRoot
from tests.integration.crash_shapes import MANIFEST, PIPELINE
from tests.integration.lease_shapes import (
    OTHER_HOST,
    contend,
    held_lease,
    lease_files,
    other_host_wrap,
)
from tests.integration.store_shapes import StoreContext, write_manifest
from tests.integration.store_shapes import run_doc as read_run

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]


def _roots(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRoot:
    if request.param == "local":
        return StoreRoot(str(tmp_path / "store"), {})
    s3: S3Root = request.getfixturevalue("s3_root")
    return StoreRoot(s3.url, s3.storage_options)


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRoot:
    """A local folder and S3: stores other processes can reach."""
    return _roots(request, tmp_path)


def _store(root: StoreRoot) -> ArtifactStore:
    return ArtifactStore(root.url, root.storage_options)


# ---------------------------------------------------------------- 100 acquisitions


def test_100_threads_acquire_one_lease_one_winner(root):
    store = _store(root)
    results: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    go = threading.Barrier(100)

    def one() -> None:
        lease = RunLease(store, "race-1")
        go.wait()
        try:
            lease.acquire()
        except UsageError:
            with lock:
                results.append("refused")
            return
        with lock:
            results.append(f"won {lease.epoch}")
        done.wait(120)  # hold it until every contender has tried
        lease.release()

    threads = [threading.Thread(target=one) for _ in range(100)]
    for t in threads:
        t.start()
    for _ in range(12000):
        with lock:
            if len(results) == 100:
                break
        time.sleep(0.01)
    done.set()
    for t in threads:
        t.join(120)
    assert Counter(results) == {"won 1": 1, "refused": 99}
    assert lease_files(store, "race-1") == ["00000001.json"]
    assert held_lease(store, "race-1") is None  # released


def _contender(url: str, options: dict[str, Any], start_at: float, out: Any, done: Any) -> None:
    lease = RunLease(ArtifactStore(url, options), "race-2")
    time.sleep(max(0.0, start_at - time.time()))
    try:
        lease.acquire()
    except UsageError:
        out.put("refused")
        return
    out.put(f"won {lease.epoch}")
    done.wait(120)
    lease.release()


def test_100_processes_acquire_one_lease_one_winner(root):
    ctx = multiprocessing.get_context("fork")  # 100 interpreters importing pandas: too slow
    out, done = ctx.Queue(), ctx.Event()
    start_at = time.time() + 3.0
    procs = [ctx.Process(target=_contender, args=(root.url, root.storage_options, start_at,
                                                  out, done)) for _ in range(100)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
    finally:
        done.set()
        for p in procs:
            p.join(120)
    assert Counter(results) == {"won 1": 1, "refused": 99}
    assert all(p.exitcode == 0 for p in procs)
    assert held_lease(_store(root), "race-2") is None


def test_contenders_after_release_take_the_next_epoch(root):
    """Released epochs are never reused: each holder in turn creates the next one."""
    args = (root.url, root.storage_options, "turns-1", 0.0, 0.0)
    assert [contend(*args) for _ in range(4)] == ["won 1", "won 2", "won 3", "won 4"]
    # the new holder cleans away all but the previous epoch
    assert lease_files(_store(root), "turns-1") == ["00000003.json", "00000004.json"]


# ---------------------------------------------------------------- 30 same-id runs


def test_30_same_id_runs_through_the_sdk_one_ran(root, tmp_path):
    manifest = write_manifest(tmp_path)
    ledger = tmp_path / "ledger.txt"
    outcomes: list[str] = []
    go = threading.Barrier(30)

    def one() -> None:
        sdk = QuantSDK(manifest, artifacts=root.url, storage_options=root.storage_options)
        go.wait()
        try:
            sdk.run_pipeline("main", StoreContext(params={"ledger": str(ledger)}),
                             run_id="same-1")
        except UsageError as exc:
            outcomes.append("already exists" if "already exists" in str(exc) else "refused")
        else:
            outcomes.append("ran")

    threads = [threading.Thread(target=one) for _ in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    print(f"\n30 same-id SDK runs on {root.kind}: {dict(Counter(outcomes))}")
    assert len(outcomes) == 30 and outcomes.count("ran") == 1
    runs = Counter(ledger.read_text().split())
    assert runs["load_frames"] == 1 and runs["finish"] == 1  # the stages ran once in all
    doc = read_run(_store(root), "same-1")
    assert doc["status"] == "succeeded" and doc["attempts"] == 1


def test_30_same_id_runner_processes_one_ran(root, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASH_")}
    env.update(PYTHONPATH=str(ROOT), CRASH_START_GATE=str(gate),
               RUNNER_WORKSPACE_ROOT=str(tmp_path / "workspaces"), **AWS_ENV)
    endpoint = root.storage_options.get("client_kwargs", {}).get("endpoint_url")
    options = [f"--storage-option=endpoint_url={endpoint}"] if endpoint else []
    procs = []
    for n in range(30):
        ledger = tmp_path / f"ledger-{n}.txt"
        err = (tmp_path / f"stderr-{n}.txt").open("w")
        procs.append((subprocess.Popen(
            [sys.executable, "-c", f"from {crash_shapes.__name__} import main; main()", "run",
             PIPELINE, "-m", str(tmp_path / "manifest.json"), "--run-id", "same-2",
             "--artifacts", root.url, *options],
            cwd=tmp_path, env={**env, "CRASH_LEDGER": str(ledger)},
            stdout=subprocess.DEVNULL, stderr=err), ledger, err))
    for _ in range(30000):  # every process imported and waiting at the gate
        if len(list(gate.glob("ready-*"))) == 30 or any(p.poll() is not None for p, *_ in procs):
            break
        time.sleep(0.01)
    opened = time.monotonic()
    (gate / "go").touch()
    codes = []
    for proc, _, err in procs:
        codes.append(proc.wait(timeout=300))
        err.close()
    late = time.monotonic() - opened
    errors = [(tmp_path / f"stderr-{n}.txt").read_text() for n in range(30)]
    ran = [ledger.read_text().split() for _, ledger, _ in procs if ledger.exists()]
    print(f"\n30 same-id runner processes on {root.kind}: exit codes {dict(Counter(codes))}, "
          f"{sum('being run by' in e for e in errors)} refused by the lease, "
          f"{sum('already exists' in e for e in errors)} by run.json; "
          f"all done {late:.1f}s after the gate opened")
    assert sorted(codes) == [0] + [2] * 29, errors
    assert ran == [ORDER]  # one process ran the stages, each once; the others none
    for code, text in zip(codes, errors, strict=True):
        if code == 2:
            assert re.search(r"being run by pid \d+ on |already exists", text), text
            assert "Traceback" not in text
    assert read_run(_store(root), "same-2")["status"] == "succeeded"


# ---------------------------------------------------------------- another host


def test_killed_run_is_taken_over_from_another_host(tmp_path, reference):  # noqa: F811
    wrap = other_host_wrap()
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    killed = crash(tmp_path, 1, _at("crash.position:inside", wait="crash[2]"))
    died = time.monotonic()
    assert killed.completed == ["crash[0]", "crash[1]", "crash[2]"]
    lease = held_lease(ArtifactStore(tmp_path / "artifacts"), RUN_ID)
    assert lease is not None and lease["lease_seconds"] == lease_seconds()
    began = time.monotonic()
    run = resume_and_check(tmp_path, 2, reference, [killed], wrap=wrap)
    total = time.monotonic() - began
    waited = re.search(r"taking over the lease of pid (\d+) on (\S+) \(epoch 1\), unrenewed "
                       r"for ([\d.]+)s", run.stderr)
    assert waited is not None, run.stderr
    assert int(waited[1]) == killed.attempt.pid
    assert "has not been renewed for" in run.stderr  # it said what it waits for
    doc = held_lease(ArtifactStore(tmp_path / "artifacts"), RUN_ID)
    assert doc is None
    files = lease_files(ArtifactStore(tmp_path / "artifacts"), RUN_ID)
    assert files == ["00000001.json", "00000002.json"]
    second = json.loads((tmp_path / "artifacts/runs" / RUN_ID / "lease" / files[1]).read_text())
    assert second["host"] == OTHER_HOST and second["state"] == "released"
    print(f"\nlease {lease['lease_seconds']:.0f}s: the resume on {OTHER_HOST} started "
          f"{began - died:.1f}s after the kill, watched the dead lease for {waited[3]}s, "
          f"and finished in {total:.1f}s")
    assert total < 120  # a safety bound only


def test_live_run_is_refused_at_once_from_another_host(tmp_path):
    wrap = other_host_wrap()
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASH_")}
    env.update(PYTHONPATH=str(ROOT), RUNNER_WORKSPACE_ROOT=str(tmp_path / "workspaces"),
               CRASH_RUN_JSON=str(tmp_path / "artifacts/runs" / RUN_ID / "run.json"),
               CRASH_AT="crash.returns:before", CRASH_WAIT="never")  # alive for 30 s
    entry = ["-c", f"from {crash_shapes.__name__} import main; main()"]
    args = ["run", PIPELINE, "-m", str(tmp_path / "manifest.json"), "--run-id", RUN_ID,
            "--artifacts", str(tmp_path / "artifacts")]
    live = subprocess.Popen([sys.executable, *entry, *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = ArtifactStore(tmp_path / "artifacts")
        for _ in range(3000):
            if store.exists(f"runs/{RUN_ID}/run.json"):
                break
            time.sleep(0.01)
        env.pop("CRASH_AT")
        began = time.monotonic()
        other = subprocess.run([*wrap, sys.executable, *entry, *args, "--resume"], cwd=tmp_path,
                               env=env, capture_output=True, text=True, timeout=120,
                               check=False)
        took = time.monotonic() - began
        assert live.poll() is None, "the live run should still be running"
    finally:
        live.kill()  # our own child, by its pid
        live.wait()
    print(f"\nlive run refused from {OTHER_HOST} in {took:.1f}s (process start included)")
    assert other.returncode == 2, other.stderr
    assert re.search(rf"error: run '{RUN_ID}' is being run by pid {live.pid} on \S+ "
                     r"\(it keeps renewing its lease", other.stderr), other.stderr
    assert "Traceback" not in other.stderr
    assert took < 60  # a safety bound only: far below the lease


# ---------------------------------------------------------------- fencing


def test_a_run_that_lost_its_lease_stops_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_LEASE_SECONDS", "2")  # renewed every 0.5 s
    monkeypatch.chdir(tmp_path)  # forensics the store refuses land in ./data/artifacts
    manifest = write_manifest(tmp_path)
    root = tmp_path / "store"
    started, release, ledger = tmp_path / "started", tmp_path / "release", tmp_path / "ledger"
    sdk = QuantSDK(manifest, artifacts=root)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            sdk.run_pipeline("blocking", StoreContext(params={
                "ledger": str(ledger), "started": str(started), "release": str(release)}),
                run_id="fence-1")
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(3000):
            if started.exists():
                break
            time.sleep(0.01)
        store = ArtifactStore(root)
        # another process takes the run over (as if this one had been paused too long)
        taken = {"epoch": 2, "token": "taker", "host": "other-node", "pid": 1, "state": "held"}
        assert store.create("runs/fence-1/lease/00000002.json", json.dumps(taken).encode())
        time.sleep(1.5)  # three renewal intervals: the heartbeat sees epoch 2
        before = store.read_bytes("runs/fence-1/run.json")  # load_frames' checkpoint is in
    finally:
        release.write_text("go")
        thread.join(120)
    error = outcome.get("error")
    assert isinstance(error, StageFailedError), outcome
    assert "lost its lease (epoch 1): pid 1 on other-node took it over (epoch 2)" in str(error)
    assert error.exit_code == 1
    assert ledger.read_text().split() == ["load_frames", "block"]  # "finish" never ran
    assert store.read_bytes("runs/fence-1/run.json") == before  # not a byte written since
    assert json.loads(store.read_bytes("runs/fence-1/lease/00000002.json")) == taken
    assert json.loads(store.read_bytes("runs/fence-1/lease/00000001.json"))["state"] == "held"
    assert not store.exists("runs/fence-1/spans.jsonl")
    assert not store.exists("summaries/runs/fence-1")  # forensics went to the local folder
    assert (tmp_path / "data/artifacts/summaries/runs/fence-1/error.json").exists()


# ---------------------------------------------------------------- atomic create


@pytest.fixture(params=["local", "memory", "s3"])
def any_root(request: pytest.FixtureRequest, tmp_path: Path) -> StoreRoot:
    if request.param == "memory":
        return StoreRoot(f"memory://lease-{os.getpid()}-{time.time_ns()}", {})
    return _roots(request, tmp_path)


def test_create_writes_only_when_absent(any_root):
    store = _store(any_root)
    assert store.create("a/b.json", b"first") is True
    assert store.create("a/b.json", b"second") is False
    assert store.read_bytes("a/b.json") == b"first"
    assert [n for n in store.listdir("a") if not n.startswith(".")] == ["b.json"]


def test_s3_create_is_a_conditional_put(s3_root):
    """moto's server enforces ``If-None-Match: *`` (412): the refusal comes from it."""
    admin = s3_root.server.admin()
    key = f"{s3_root.bucket}/prefix/x.json"
    admin.pipe_file(key, b"first", mode="create")
    with pytest.raises(FileExistsError):
        admin.pipe_file(key, b"second", mode="create")


class _PlainFileSystem(MemoryFileSystem):
    """A back end with no atomic create (fsspec's generic pipe_file)."""

    protocol = "leaseplain"
    root_marker = "/"
    pipe_file = fsspec.AbstractFileSystem.pipe_file


def test_a_backend_without_atomic_create_says_so(caplog):
    fsspec.register_implementation("leaseplain", _PlainFileSystem, clobber=True)
    store = ArtifactStore(f"leaseplain://lease-{time.time_ns()}")
    with caplog.at_level(logging.WARNING, logger="runner.artifacts"):
        assert store.create("x.json", b"1") is True
        assert store.create("x.json", b"2") is False
    assert "has no atomic create" in caplog.text and "leaseplain" in caplog.text


@pytest.mark.parametrize("raw", ["abc", "0", "0.5", "-3", "nan", "99999"])
def test_a_bad_lease_duration_is_refused(raw):
    with pytest.raises(UsageError, match=r"RUNNER_LEASE_SECONDS=.*from 1 to 3600"):
        lease_seconds({"RUNNER_LEASE_SECONDS": raw})
    assert lease_seconds({}) == 10.0 and lease_seconds({"RUNNER_LEASE_SECONDS": "4"}) == 4.0


def test_release_is_idempotent(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    lease = RunLease(store, "rel-1")
    lease.acquire()
    lease.release()
    lease.release()  # a second call (a signal path) is a no-op
    assert held_lease(store, "rel-1") is None
