"""The checkpoint syncer (fsync in background rounds) and the journal's ``synced`` mark."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore
from runner.artifacts.durability import Syncer
from runner.artifacts.journal import JournalWriter, read_journal_state
from runner.errors import ArtifactError, IntegrityError


class _Disk:
    """A fake fsync that records its calls and can be held or made to fail."""

    def __init__(self) -> None:
        self.synced: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail: str | None = None

    def __call__(self, path: str) -> None:
        self.gate.wait(30)
        if path == self.fail:
            raise OSError(5, "Input/output error", path)
        self.synced.append(path)


def test_a_barrier_waits_for_everything_handed_over():
    disk = _Disk()
    syncer = Syncer(disk, last="journal")
    disk.gate.clear()  # the disk is slow
    syncer.add(["a", "b"], 1)
    syncer.add(["c"], 2)
    assert syncer.durable == 0  # committed, not durable yet
    threading.Timer(0.05, disk.gate.set).start()
    syncer.barrier()
    assert syncer.durable == 2 and syncer.error is None
    assert set(disk.synced) == {"a", "b", "c", "journal"}
    assert disk.synced[-1] == "journal"  # after the files its lines name
    syncer.stop()


def test_stop_syncs_what_is_pending_and_the_syncer_restarts():
    disk = _Disk()
    syncer = Syncer(disk)
    syncer.add(["a"], 1)
    syncer.stop()
    assert disk.synced == ["a"] and syncer.durable == 1
    syncer.add(["b"], 2)
    syncer.barrier()
    assert syncer.durable == 2
    syncer.stop()


def test_a_failed_fsync_is_kept_and_nothing_more_counts_as_durable():
    disk = _Disk()
    disk.fail = "b"
    syncer = Syncer(disk)
    syncer.add(["a", "b"], 1)
    syncer.barrier()
    assert isinstance(syncer.error, OSError) and syncer.durable == 0
    syncer.add(["c"], 2)
    syncer.barrier()
    assert syncer.durable == 0 and "c" not in disk.synced
    syncer.stop()


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    monkeypatch.setenv("RUNNER_ARTIFACT_KEY", "k" * 32)
    return ArtifactStore(tmp_path / "store")


def _entry(seq: int, synced: object) -> dict[str, object]:
    return {"seq": seq, "dir": f"steps/{seq:03d}-s", "name": "s", "path": f"p[{seq}]",
            "kind": "step", "synced": synced}


def test_the_journal_says_up_to_where_it_was_durable(store):
    writer = JournalWriter(store, "jr-1")
    writer.start()
    writer.append([_entry(1, 0), _entry(2, 1), _entry(3, 1)])
    state = read_journal_state(store, "jr-1", writer.nonce)
    assert [c.seq for c in state.checkpoints] == [1, 2, 3] and state.synced == 1


@pytest.mark.parametrize("synced", ["1", -1, 1.5, True])
def test_a_signed_line_with_a_bad_synced_mark_is_refused(store, synced):
    writer = JournalWriter(store, "jr-1")
    writer.start()
    writer.append([_entry(1, synced)])
    with pytest.raises(IntegrityError, match="synced"):
        read_journal_state(store, "jr-1", writer.nonce)


def test_a_round_is_one_call_of_sync_all_when_given():
    disk, rounds = _Disk(), []
    syncer = Syncer(disk, last="journal", sync_all=rounds.append)
    syncer.add(["a", "b"], 1)
    syncer.barrier()
    assert rounds == [["a", "b", "journal"]] and disk.synced == [] and syncer.durable == 1
    syncer.stop()


def test_the_store_makes_many_files_durable_at_once(store):
    for name in ("a", "b"):
        store.write_bytes(f"runs/r/{name}.json", b"{}", durable=False)
    store.sync_many(["runs/r/a.json", "runs/r/b.json"])  # syncfs on Linux, else fsyncs
    store.sync_many([])
    with pytest.raises(ArtifactError, match="cannot sync"):
        store.sync_many(["runs/r/missing.json"])


def test_a_checkpoint_with_no_file_makes_its_journal_line_durable():
    """An inline checkpoint hands over no file: the round still syncs the journal
    (once, last) and only then counts the checkpoint durable."""
    disk = _Disk()
    syncer = Syncer(disk, last="journal")
    disk.gate.clear()
    syncer.add([], 1)
    syncer.add(["a"], 2)
    assert syncer.durable == 0
    disk.gate.set()
    syncer.barrier()
    assert syncer.durable == 2 and disk.synced[-1] == "journal"
    rounds: list[list[str]] = []
    batched = Syncer(disk, last="journal", sync_all=rounds.append)
    batched.add([], 3)
    batched.barrier()
    assert rounds == [["journal"]] and batched.durable == 3
    syncer.stop()
    batched.stop()


def _inline(seq: int, count: object) -> dict[str, object]:
    return {**_entry(seq, 0), "context_type": "m:C",
            "fields": {"count": {"format": "value", "value": count},
                       "frame": {"file": "steps/001-s/frame.parquet", "format": "parquet",
                                 "rows": 3, "sha256": "a" * 64, "bytes": 10}}}


def test_an_inline_checkpoint_line_carries_its_index(store):
    writer = JournalWriter(store, "jr-1")
    writer.start()
    writer.append([_entry(1, 0)], durable=False)
    writer.append([_inline(2, 7)], durable=False)  # the file stays open between appends
    writer.close()
    (ref1, ref2) = read_journal_state(store, "jr-1", writer.nonce).checkpoints
    assert not ref1.inline and ref2.inline
    index = ref2.index("jr-1")
    assert index.fields["count"].value == 7 and index.context_type == "m:C"
    assert index.fields["frame"].file == "steps/001-s/frame.parquet"


@pytest.mark.parametrize(("field", "entry", "problem"), [
    ("frame", {"file": "../other/frame.parquet", "format": "parquet", "sha256": "a" * 64,
               "bytes": 1}, "not a field file of this run"),
    ("count", {"format": "value", "value": 1, "file": "steps/001-s/count.json"},
     "names no file"),
    ("frame", {"format": "parquet", "file": "steps/001-s/frame.parquet"},
     "needs its object, or its file"),
    ("frame", {"format": "parquet", "object": "a" * 64, "file": "steps/001-s/frame.parquet"},
     "names no file of its own"),
    ("frame", {"format": "parquet", "object": "../../runs/x"}, "should match pattern"),
    ("count", {"format": "value", "value": 1, "object": "a" * 64}, "no file and no object"),
])
def test_a_signed_inline_line_pointing_out_of_its_run_is_refused(store, field, entry,
                                                                 problem):
    writer = JournalWriter(store, "jr-1")
    writer.start()
    line = _inline(1, 1)
    line["fields"] = {**line["fields"], field: entry}  # type: ignore[dict-item]
    writer.append([line])
    with pytest.raises(IntegrityError, match=problem):
        read_journal_state(store, "jr-1", writer.nonce)
