"""Inline checkpoints: a step that changes only small scalars (a counter, a flag) is
committed by its journal line alone, which carries its fields; no folder, no file.

Through the command line, as a user runs it: what the store holds, what ``runs show``
and ``artifacts get`` read back, that an edited inline value is refused, and that a
SIGKILL in the middle of such steps resumes to exactly the uninterrupted result.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from runner.artifacts import ArtifactStore, load_checkpoint, read_index, read_run
from runner.artifacts.layout import RunPaths
from runner.artifacts.objects import object_path

pytestmark = [pytest.mark.integration]

KEY = "inline-checkpoint-test-key-0123456789"
STEPS = ["frames", "inc1", "inc2", "inc3", "killer", "inc5", "inc6"]

STAGES = '''"""Small steps: one writes a frame, the others a counter and a flag."""
import os, signal, time
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from runner import Context


class SmallContext(Context):
    count: int = 0
    flag: str = ""
    params: dict[str, Any] = Field(default_factory=dict)


def _ledger(ctx, name):
    with open(ctx.params["ledger"], "a") as fh:
        fh.write(name + "\\n")


def frames(ctx):
    _ledger(ctx, "frames")
    ctx.feature_store = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    ctx.count = 1
    return ctx


def _inc(k):
    def stage(ctx):
        _ledger(ctx, f"inc{k}")
        ctx.count += 1
        ctx.flag = f"after inc{k}"
        return ctx
    stage.__name__ = f"inc{k}"
    return stage


for _k in (1, 2, 3, 5, 6):
    globals()[f"inc{_k}"] = _inc(_k)


def killer(ctx):
    """While params["kill"] exists: once the journal records the steps before this
    one (bounded wait), SIGKILL this process (no hook, no cleanup runs)."""
    _ledger(ctx, "killer")
    if Path(ctx.params["kill"]).exists():
        journal = Path(ctx.params["journal"])
        for _ in range(1000):
            if journal.exists() and len(journal.read_bytes().splitlines()) >= 5:
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
    ctx.count *= 10
    return ctx
'''


def _write_case(folder: Path) -> Path:
    (folder / "small_stages.py").write_text(STAGES)
    manifest = {
        "pipelines": {"small": {"context": "small_stages:SmallContext", "steps": STEPS}},
        "stages": {s: f"small_stages:{s}" for s in STEPS},
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("RUNNER_ARTIFACT_KEY", KEY)
    manifest = _write_case(tmp_path)
    art = tmp_path / "artifacts"
    return {"tmp": tmp_path, "manifest": manifest, "art": art, "store": ArtifactStore(str(art))}


def _run(cli: Any, case: dict[str, Any], run_id: str, *extra: str,
         kill: bool = False) -> Any:
    tmp = case["tmp"]
    ledger = tmp / f"{run_id}.ledger"
    flag = tmp / f"{run_id}.kill"
    if kill:
        flag.write_text("kill")
    elif flag.exists():
        flag.unlink()
    journal = case["art"] / RunPaths(run_id).journal_file
    return cli("run", "small", "-m", case["manifest"], "--artifacts", case["art"],
               "--run-id", run_id, "--json", "-p", f"ledger={ledger}", "-p", f"kill={flag}",
               "-p", f"journal={journal}", *extra, cwd=tmp,
               env={"RUNNER_ARTIFACT_KEY": KEY})


def _ledger(case: dict[str, Any], run_id: str) -> list[str]:
    path = case["tmp"] / f"{run_id}.ledger"
    return path.read_text().split() if path.exists() else []


def test_small_steps_are_committed_by_their_journal_line_alone(cli, case):
    proc = _run(cli, case, "small-1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "succeeded"
    store, run_dir = case["store"], case["art"] / "runs" / "small-1"
    # one folder: the first checkpoint's (its frame); the others are journal lines
    assert sorted(p.name for p in (run_dir / "steps").iterdir()) == ["001-frames"]
    doc = read_run(store, "small-1")
    assert doc.status == "succeeded" and doc.completed == [f"small[{i}]" for i in range(7)]
    assert [c.inline for c in doc.checkpoints] == [False] + [True] * 6
    counts = [1, 2, 3, 4, 40, 41, 42]
    for ckpt, count in zip(doc.checkpoints, counts, strict=True):
        index = read_index(store, "small-1", ckpt)
        assert index.fields["count"].format == "value"
        assert index.fields["count"].value == count
        # the unchanged frame is a reference to the first checkpoint's file
        first = read_index(store, "small-1", doc.checkpoints[0]).fields["feature_store"]
        assert index.fields["feature_store"].object == first.object is not None
        ctx = load_checkpoint(store, "small-1", ckpt,
                              types={index.context_type: _context_type(case)})
        assert ctx.count == count and list(ctx.feature_store["a"]) == [1.0, 2.0, 3.0]
    assert read_index(store, "small-1", "steps/004-inc3").fields["flag"].value == "after inc3"

    shown = cli("runs", "show", "small-1", "--artifacts", case["art"], "--json",
                cwd=case["tmp"], env={"RUNNER_ARTIFACT_KEY": KEY})
    assert shown.returncode == 0, shown.stderr
    assert [i["fields"]["count"]["value"] for i in json.loads(shown.stdout)["indexes"]] == counts
    got = cli("artifacts", "get", "small-1", "inc5", "count", "--artifacts", case["art"],
              cwd=case["tmp"], env={"RUNNER_ARTIFACT_KEY": KEY})
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == 41


def _context_type(case: dict[str, Any]) -> type:
    import importlib
    import sys

    sys.path.insert(0, str(case["tmp"]))
    try:
        module = importlib.import_module("small_stages")
    finally:
        sys.path.remove(str(case["tmp"]))
    return module.SmallContext  # type: ignore[no-any-return]


def test_an_edited_inline_value_is_refused(cli, case):
    assert _run(cli, case, "small-2").returncode == 0
    run_file = case["art"] / "runs" / "small-2" / "run.json"
    text = run_file.read_text()
    assert '"value": 42' in text
    run_file.write_text(text.replace('"value": 42', '"value": 43'))  # not re-signed
    proc = cli("artifacts", "get", "small-2", "inc6", "count", "--artifacts", case["art"],
               cwd=case["tmp"], env={"RUNNER_ARTIFACT_KEY": KEY})
    assert proc.returncode == 2
    assert "run.json does not verify" in proc.stderr and "Traceback" not in proc.stderr


def test_a_kill_among_inline_steps_resumes_to_the_uninterrupted_result(cli, case):
    reference = _run(cli, case, "ref-1")
    assert reference.returncode == 0, reference.stderr

    killed = _run(cli, case, "kill-1", kill=True)
    assert killed.returncode == -9, killed.stderr
    doc = read_run(case["store"], "kill-1")
    assert doc.status == "running"  # nothing ran after the SIGKILL
    # the steps before the killer were committed by their journal lines alone
    assert doc.completed == [f"small[{i}]" for i in range(4)]
    assert [c.inline for c in doc.checkpoints] == [False, True, True, True]
    assert not (case["art"] / "runs" / "kill-1" / "steps" / "002-inc1").exists()
    assert _ledger(case, "kill-1") == STEPS[:5]

    resumed = _run(cli, case, "kill-1", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    # only the steps after the last committed one ran again
    assert _ledger(case, "kill-1") == STEPS[:5] + STEPS[4:]
    final = read_run(case["store"], "kill-1")
    assert final.status == "succeeded" and final.completed == [f"small[{i}]" for i in range(7)]
    assert final.checkpoints[:4] == doc.checkpoints  # what was committed is kept as is
    types = {"small_stages:SmallContext": _context_type(case)}
    ctx = load_checkpoint(case["store"], "kill-1", final.checkpoints[-1], types=types)
    ref = read_run(case["store"], "ref-1")
    want = load_checkpoint(case["store"], "ref-1", ref.checkpoints[-1], types=types)
    assert (ctx.count, ctx.flag) == (want.count, want.flag) == (42, "after inc6")
    assert ctx.audit_trail == want.audit_trail
    assert ctx.feature_store.equals(want.feature_store)
    for mine, theirs in zip(final.checkpoints, ref.checkpoints, strict=True):
        a = load_checkpoint(case["store"], "kill-1", mine, types=types)
        b = load_checkpoint(case["store"], "ref-1", theirs, types=types)
        assert (mine.path, a.count, a.flag) == (theirs.path, b.count, b.flag)


def test_the_store_holds_no_stray_files_for_inline_steps(cli, case):
    assert _run(cli, case, "small-3").returncode == 0
    files = sorted(str(p.relative_to(case["art"])) for p in case["art"].rglob("*")
                   if p.is_file() and "lease" not in p.parts)
    assert files == sorted([
        "runs/small-3/run.json", "runs/small-3/journal.jsonl", "runs/small-3/spans.jsonl",
        "runs/small-3/spans.sig.json", "runs/small-3/results.json",
        "runs/small-3/steps/001-frames/index.json",
        *(object_path(e.object) for e in read_index(
            case["store"], "small-3", "steps/001-frames").fields.values() if e.object),
    ]), os.linesep.join(files)


def test_a_small_step_records_only_what_it_changed(cli, case):
    """run.json (and the journal before it) lists a small step as what changed since
    the step before: its size does not grow with the context's fields."""
    assert _run(cli, case, "small-4").returncode == 0
    raw = json.loads((case["art"] / "runs" / "small-4" / "run.json").read_text())
    listed = raw["checkpoints"]
    assert "fields" in listed[1] and "base" not in listed[1]  # after a folder: whole
    for before, ckpt in itertools.pairwise(listed[1:]):
        assert ckpt["base"] == before["seq"] and "fields" not in ckpt
        assert "count" in ckpt["changed"] and set(ckpt["changed"]) <= {"count", "flag"}
        assert len(json.dumps(ckpt)) < 400, ckpt
    whole = read_run(case["store"], "small-4").checkpoints
    assert [sorted(c.fields or {}) for c in whole[1:]] == [sorted(listed[1]["fields"])] * 6
