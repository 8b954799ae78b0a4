"""The run journal: what read_run folds in, and what it refuses (the store is untrusted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore, read_index, read_run
from runner.artifacts.journal import JournalWriter, read_journal
from runner.artifacts.signing import sign_document
from runner.errors import IntegrityError

RUN = "jr-1"


def _entry(seq: int, kind: str = "step") -> dict[str, object]:
    return {"seq": seq, "dir": f"steps/{seq:03d}-s{seq}", "name": f"s{seq}",
            "path": f"p[{seq}]", "kind": kind}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactStore:
    monkeypatch.setenv("RUNNER_ARTIFACT_KEY", "k" * 32)
    return ArtifactStore(tmp_path / "store")


def _started(store: ArtifactStore, run_id: str = RUN, *, done: int = 0) -> JournalWriter:
    """run.json as a run writes it at its start (``done`` checkpoints in it), its journal."""
    writer = JournalWriter(store, run_id)
    doc = {"run_id": run_id, "pipeline": "p", "status": "running", "journal": writer.nonce,
           "checkpoints": [_entry(s) for s in range(1, done + 1)],
           "completed": [f"p[{s}]" for s in range(1, done + 1)]}
    store.write_bytes(f"runs/{run_id}/run.json", json.dumps(sign_document(doc)).encode())
    writer.start()
    return writer


def _journal(store: ArtifactStore, run_id: str = RUN) -> Path:
    return Path(store.root) / "runs" / run_id / "journal.jsonl"


def test_read_run_folds_the_journal_in(store):
    writer = _started(store, done=2)
    writer.append([_entry(3), _entry(4, "branch")])
    writer.append([_entry(5)], durable=False)
    doc = read_run(store, RUN)
    assert [c.seq for c in doc.checkpoints] == [1, 2, 3, 4, 5]
    assert doc.completed == ["p[1]", "p[2]", "p[3]", "p[5]"]  # a branch completes no step


def test_a_torn_last_line_is_ignored(store):
    writer = _started(store)
    writer.append([_entry(1), _entry(2)])
    path = _journal(store)
    path.write_bytes(path.read_bytes()[:-20])  # killed while appending line 2
    assert [c.seq for c in read_run(store, RUN).checkpoints] == [1]


@pytest.mark.parametrize("edit", ["line edited", "line dropped", "lines swapped",
                                  "not JSON", "another run's journal"])
def test_a_tampered_journal_is_refused(store, edit):
    writer = _started(store)
    writer.append([_entry(1), _entry(2), _entry(3)])
    path = _journal(store)
    lines = path.read_bytes().split(b"\n")
    if edit == "line edited":
        lines[2] = lines[2].replace(b'"kind":"step"', b'"kind":"branch"')
    elif edit == "line dropped":
        del lines[2]
    elif edit == "lines swapped":
        lines[1], lines[2] = lines[2], lines[1]
    elif edit == "not JSON":
        lines[2] = b"{nope"
    else:
        other = _started(store, "other-1")
        other.append([_entry(1)])
        lines = _journal(store, "other-1").read_bytes().split(b"\n")
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(IntegrityError, match=r"journal\.jsonl"):
        read_run(store, RUN)


def test_a_signed_line_cannot_leave_the_run(store):
    writer = _started(store)
    writer.append([{**_entry(1), "dir": "../../victim"}])
    with pytest.raises(IntegrityError, match="not a checkpoint folder"):
        read_run(store, RUN)


def test_an_earlier_attempts_journal_is_ignored(store):
    """Killed between run.json of a new attempt and its fresh journal: the old one,
    already folded into run.json, is not read again."""
    old = _started(store)
    old.append([_entry(1)])
    stale = _journal(store).read_bytes()
    _started(store, done=1)
    _journal(store).write_bytes(stale)
    assert read_journal(store, RUN, "0" * 16) == []
    assert [c.seq for c in read_run(store, RUN).checkpoints] == [1]


def test_the_journal_on_an_object_store(tmp_path, monkeypatch):
    """No append there: the writer puts the whole journal, and it reads the same."""
    monkeypatch.setenv("RUNNER_ARTIFACT_KEY", "k" * 32)
    store = ArtifactStore(f"memory://{tmp_path.name}/store")
    writer = _started(store)
    writer.append([_entry(1)])
    writer.append([_entry(2)])
    assert [c.seq for c in read_run(store, RUN).checkpoints] == [1, 2]


def _inline(seq: int, **fields: int) -> dict[str, object]:
    """An inline checkpoint's entry: its whole field map."""
    return {**_entry(seq), "context_type": "m:C",
            "fields": {k: {"format": "value", "value": v} for k, v in fields.items()}}


def _change(seq: int, base: int, **changed: int) -> dict[str, object]:
    """An inline checkpoint written as what changed since checkpoint ``base``."""
    return {**_entry(seq), "context_type": "m:C", "base": base,
            "changed": {k: {"format": "value", "value": v} for k, v in changed.items()}}


def _values(doc: object) -> list[dict[str, object]]:
    return [{k: e.value for k, e in (c.fields or {}).items()}
            for c in doc.checkpoints]  # type: ignore[attr-defined]


def test_checkpoints_written_as_changes_read_whole(store):
    """A small step's line carries only what changed since an earlier inline
    checkpoint (run.json's or the journal's); every reader gets its whole field map."""
    writer = JournalWriter(store, RUN)
    doc = {"run_id": RUN, "pipeline": "p", "status": "running", "journal": writer.nonce,
           "checkpoints": [_entry(1), _inline(2, a=1, b=2), _change(3, 2, b=3)],
           "completed": ["p[1]", "p[2]", "p[3]"]}
    store.write_bytes(f"runs/{RUN}/run.json", json.dumps(sign_document(doc)).encode())
    writer.start()
    writer.append([_change(4, 3, a=5), _change(5, 4)])
    got = read_run(store, RUN)
    assert _values(got) == [{}, {"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 5, "b": 3},
                            {"a": 5, "b": 3}]
    assert all(c.base is None and c.changed is None for c in got.checkpoints)
    assert read_index(store, RUN, got.checkpoints[4]).fields["a"].value == 5


@pytest.mark.parametrize(("before", "line"), [
    ([_entry(1)], _change(3, 2, a=2)),                     # its base is not in the record
    ([_entry(1), _inline(2, a=1)], _change(3, 1, a=2)),    # a base with a folder of its own
    ([_entry(1), _inline(2, a=1)], _change(3, 3, a=2)),    # not an earlier checkpoint
    ([_entry(1), _inline(2, a=1)], _change(3, 2, z=2)),    # a field its base does not have
], ids=["missing", "a file checkpoint", "itself", "another field"])
def test_a_change_to_no_earlier_inline_checkpoint_is_refused(store, before, line):
    """Signed but inconsistent (the key leaked, or a bug): one clear error, no guess."""
    writer = _started(store)
    writer.append([*before, line])
    with pytest.raises(IntegrityError, match=r"journal\.jsonl: (checkpoint 3|line \d)"):
        read_run(store, RUN)
