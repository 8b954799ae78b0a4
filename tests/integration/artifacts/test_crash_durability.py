"""What fsync off the critical path guarantees (runner.artifacts.durability).

Checkpoints are committed once written and made durable by a background syncer.
With ``CRASH_NO_SYNC=1`` that syncer never completes an fsync, so everything the
killed run committed is only in the kernel's page cache:

* a SIGKILL loses none of it: the resume runs only the steps after the last
  committed one;
* a machine that stopped could have lost the files of the checkpoints after the
  journal's ``synced`` mark: the damage such a crash leaves (a field file left
  empty, an index that never landed, the journal's last line cut short) is
  detected, said in one line, and the step runs again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.artifacts.objects import object_path
from tests.integration.artifacts.test_crash_resume import (
    GROUP,
    ORDER,
    POS_DIR,
    POSITION,
    RETURNS,
    RUN_ID,
    SEED,
    _at,
    _manifest,
    _run_doc,
    attempt,
    crash,
    reference,  # noqa: F401 - the module fixture
    resume_and_check,
)

pytestmark = [pytest.mark.integration]

UNSYNCED = {"CRASH_NO_SYNC": "1", **_at("crash.pnl:before", wait=POSITION)}
UP_TO_POSITION = [SEED, RETURNS, GROUP, POSITION]


def _journal(tmp_path: Path) -> Path:
    return tmp_path / "artifacts" / "runs" / RUN_ID / "journal.jsonl"


def test_a_kill_loses_no_commit_that_was_never_fsynced(tmp_path, reference):  # noqa: F811
    _manifest(tmp_path)
    killed = crash(tmp_path, 1, UNSYNCED)
    assert killed.completed == UP_TO_POSITION
    lines = [json.loads(line) for line in _journal(tmp_path).read_bytes().splitlines()[1:]]
    assert [line["synced"] for line in lines] == [0] * 6  # none was ever durable
    run = resume_and_check(tmp_path, 2, reference, [killed])
    assert run.ledger == ["crash.pnl", "crash.summary"]


def _empty_field(tmp_path: Path) -> None:
    """The checkpoint's object for the frame empty (its data never reached the disk);
    the step run again puts the same object, which replaces the torn one."""
    index = json.loads((tmp_path / "artifacts" / POS_DIR / "index.json").read_bytes())
    (tmp_path / "artifacts" / object_path(index["fields"]["feature_store"]["object"])
     ).write_bytes(b"")


def _drop_index(tmp_path: Path) -> None:
    (tmp_path / "artifacts" / POS_DIR / "index.json").unlink()


def _tear_journal(tmp_path: Path) -> None:
    path = _journal(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - len(data.splitlines()[-1]) // 2 - 1])


@pytest.mark.parametrize(("damage", "note"), [
    (_empty_field, "never reached the disk"),
    (_drop_index, "never reached the disk"),
    (_tear_journal, "torn last line"),
], ids=["field-file-empty", "index-missing", "journal-line-torn"])
def test_a_machine_crash_loses_only_the_unsynced_tail(tmp_path, reference, damage,  # noqa: F811
                                                      note):
    _manifest(tmp_path)
    killed = crash(tmp_path, 1, UNSYNCED)
    assert killed.completed == UP_TO_POSITION
    damage(tmp_path)  # what the disk may hold after the machine stopped
    run = attempt(tmp_path, 2, resume=True)
    assert run.returncode == 0, run.stderr
    assert note in run.stderr and run.stderr.count("\n") < 20, run.stderr
    assert run.ledger == ["crash.position", "crash.pnl", "crash.summary"]
    assert json.loads(run.stdout)["result"] == reference.report
    doc = _run_doc(tmp_path)
    assert doc is not None and doc["status"] == "succeeded"
    assert doc["completed"] == [SEED, RETURNS, GROUP, POSITION, *(
        p for p in reference.stages_of if p not in UP_TO_POSITION)]
    assert [c["seq"] for c in doc["checkpoints"]] == list(range(1, 9))
    assert sorted(run.ledger) == sorted(ORDER[5:])
