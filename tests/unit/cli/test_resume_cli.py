"""``runner run --resume`` as a researcher uses it, through the CLI in a subprocess:
a folder with a manifest and a ``my_stages.py`` whose branch fails until a flag
file is removed (the fix), then the resume.

The resume keeps the executor the run started on (unless ``-e`` says otherwise)
and says so; a run id the store does not know is refused; every attempt stays
visible (spans, forensics, ``runs show``); ``-e ray`` without Ray leaves nothing
behind, and a folder left without a run document is listed and pruned as such.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.artifacts import ArtifactStore, RunLease, load_error_context
from runner.artifacts.signing import sign_document

ROOT = Path(__file__).resolve().parents[3]

STAGES = '''\
"""A researcher's stages: the right branch fails while fail.flag exists."""
from pathlib import Path


def prepare(ctx):
    ctx.audit_trail.append("prepared")
    return ctx


def left(ctx):
    ctx.audit_trail.append("left")
    return ctx


def right(ctx):
    if Path("fail.flag").exists():
        raise ValueError("the right branch is not fixed yet")
    ctx.audit_trail.append("right")
    return ctx


def finish(ctx):
    ctx.audit_trail.append("finished")
    return ctx
'''

MANIFEST = {
    "pipelines": {"fan": {"steps": ["prepare", ["left", "right"], "finish"]}},
    "stages": {"prepare": "my_stages:prepare", "left": "my_stages:left",
               "right": "my_stages:right", "finish": "my_stages:finish"},
}

NO_RAY = 'import sys\nsys.modules["ray"] = None  # "import ray" fails: not installed\n'


@pytest.fixture
def project(tmp_path):
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    (tmp_path / "fail.flag").write_text("")
    return tmp_path


def cli(*args, cwd, no_ray=False):
    env = {k: v for k, v in os.environ.items() if k not in ("RUNNER_DEBUG", "TV_ORCH_PARALLEL")}
    path = [str(ROOT)]
    if no_ray:  # a sitecustomize that makes Ray unimportable, as if it were not installed
        shim = Path(cwd) / "no-ray"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(NO_RAY)
        path.insert(0, str(shim))
    env.update(PYTHONPATH=os.pathsep.join(path), RUNNER_ARTIFACTS=str(Path(cwd) / "store"))
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def run_json(project, *args):
    proc = cli("run", "fan", "-m", "manifest.json", "--json", *args, cwd=project)
    return proc, json.loads(proc.stdout)


def run_doc(project, run_id):
    return json.loads((project / "store" / "runs" / run_id / "run.json").read_text())


# ---------------------------------------------------------------- the executor


def test_a_resume_keeps_the_executor_the_run_started_on_and_says_so(project):
    failed = cli("run", "fan", "-m", "manifest.json", "-e", "threads", "--run-id", "r1",
                 cwd=project)
    assert failed.returncode == 1, failed.stderr
    assert run_doc(project, "r1")["executor"] == "threads"
    (project / "fail.flag").unlink()  # the fix
    resumed = cli("run", "fan", "-m", "manifest.json", "--run-id", "r1", "--resume",
                  cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming run r1 (attempt 2) after checkpoint 001-prepare on executor=threads " \
           "(as the run started; -e to change)" in resumed.stderr
    assert "executor=threads" in resumed.stderr.splitlines()[1]  # the header line
    assert run_doc(project, "r1")["executor"] == "threads"


def test_e_on_the_resume_chooses_another_executor(project):
    assert cli("run", "fan", "-m", "manifest.json", "-e", "threads", "--run-id", "r2",
               cwd=project).returncode == 1
    (project / "fail.flag").unlink()
    proc, doc = run_json(project, "--run-id", "r2", "--resume", "-e", "inline")
    assert proc.returncode == 0, proc.stderr
    assert {s["executor"] for s in doc["steps"]} == {"inline"}
    assert run_doc(project, "r2")["executor"] == "inline"


def test_the_recorded_executor_is_used_in_json_mode_too(project):
    assert cli("run", "fan", "-m", "manifest.json", "-e", "threads", "--run-id", "r3",
               cwd=project).returncode == 1
    (project / "fail.flag").unlink()
    proc, doc = run_json(project, "--run-id", "r3", "--resume")
    assert proc.returncode == 0, proc.stderr
    branches = [s for s in doc["steps"] if s["branch"]]
    assert branches and {s["executor"] for s in branches} == {"threads"}


# ---------------------------------------------------------------- unknown run ids


def test_resume_of_an_unknown_run_id_is_refused_with_the_close_ones(project):
    (project / "fail.flag").unlink()
    assert cli("run", "fan", "-m", "manifest.json", "--run-id", "nightly-0412",
               cwd=project).returncode == 0
    proc = cli("run", "fan", "-m", "manifest.json", "--run-id", "nightly-0413", "--resume",
               cwd=project)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    store = project / "store" / "runs"
    assert f"no run 'nightly-0413' in {store}" in lines[0]
    assert "did you mean 'nightly-0412'?" in lines[0]
    assert "runner runs list" in lines[0]
    assert not (store / "nightly-0413").exists()  # nothing started, nothing left behind


def test_or_start_starts_a_run_the_store_does_not_know(project):
    (project / "fail.flag").unlink()
    proc, doc = run_json(project, "--run-id", "pod-1", "--resume", "--or-start")
    assert proc.returncode == 0, proc.stderr
    assert doc["status"] == "succeeded" and run_doc(project, "pod-1")["attempts"] == 1


# ---------------------------------------------------------------- -e ray without Ray


def test_e_ray_without_ray_is_refused_before_the_run_id_is_taken(project):
    proc = cli("run", "fan", "-m", "manifest.json", "-e", "ray", "--run-id", "r4",
               cwd=project, no_ray=True)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'runner[ray]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (project / "store" / "runs" / "r4").exists()


def test_a_resume_of_a_ray_run_without_ray_is_refused_before_the_lease(project):
    assert cli("run", "fan", "-m", "manifest.json", "-e", "threads", "--run-id", "r5",
               cwd=project).returncode == 1
    doc_path = project / "store" / "runs" / "r5" / "run.json"
    before = doc_path.read_bytes()
    lease = sorted((project / "store" / "runs" / "r5" / "lease").iterdir())
    doc = json.loads(before)  # the same run, recorded as started on Ray (re-signed)
    doc["executor"] = "ray"
    doc_path.write_text(json.dumps(sign_document(doc)))
    proc = cli("run", "fan", "-m", "manifest.json", "--run-id", "r5", "--resume",
               cwd=project, no_ray=True)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'runner[ray]'" in proc.stderr
    assert sorted((project / "store" / "runs" / "r5" / "lease").iterdir()) == lease


def test_an_empty_run_folder_is_listed_as_such_and_pruned_unless_its_lease_is_live(project):
    """What ``-e ray`` without Ray used to leave: a run folder holding only a lease."""
    store = ArtifactStore(project / "store")
    lease = RunLease(store, "left-1")
    lease.acquire()  # held by this (live) process
    listed = cli("runs", "list", "--json", cwd=project)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["run_id"] == "left-1" and row["status"] == "empty"
    assert "has no run.json (holds lease): starting, its lease held by pid" in row["error"]
    table = cli("runs", "list", cwd=project)
    assert "left-1" in table.stdout and "empty" in table.stdout
    assert "empty: " in table.stderr and "unreadable" not in table.stderr

    kept = cli("runs", "prune", "--older-than", "0", cwd=project)
    assert kept.returncode == 0, kept.stderr
    assert "deleted 0 runs" in kept.stderr and "its lease is held by pid" in kept.stderr
    assert (project / "store" / "runs" / "left-1").exists()

    lease.release()
    (row,) = json.loads(cli("runs", "list", "--json", cwd=project).stdout)
    assert row["error"].endswith("(holds lease): a run that stopped before it recorded "
                                 "anything")
    pruned = cli("runs", "prune", "--older-than", "0", cwd=project)
    assert pruned.returncode == 0, pruned.stderr
    assert "deleted 1 run: left-1" in pruned.stderr
    assert not (project / "store" / "runs" / "left-1").exists()


def test_an_unreadable_run_folder_is_pruned_only_when_asked(project):
    bad = project / "store" / "runs" / "bad-1"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text("{not json")
    listed = cli("runs", "list", cwd=project)
    assert "unreadable" in listed.stdout and "not valid JSON" in listed.stderr
    kept = cli("runs", "prune", "--older-than", "0", cwd=project)
    assert "deleted 0 runs" in kept.stderr and bad.exists()
    pruned = cli("runs", "prune", "--older-than", "0", "--unreadable", cwd=project)
    assert "deleted 1 run: bad-1" in pruned.stderr and not bad.exists()


# ---------------------------------------------------------------- every attempt kept


def _three_attempts(project):
    """Attempt 1 fails, attempt 2 (resumed, not yet fixed) fails again, attempt 3 succeeds."""
    assert cli("run", "fan", "-m", "manifest.json", "-e", "threads", "--run-id", "t1",
               cwd=project).returncode == 1
    again = cli("run", "fan", "-m", "manifest.json", "--run-id", "t1", "--resume", cwd=project)
    assert again.returncode == 1, again.stderr
    (project / "fail.flag").unlink()
    done = cli("run", "fan", "-m", "manifest.json", "--run-id", "t1", "--resume", cwd=project)
    assert done.returncode == 0, done.stderr
    return project / "store"


def test_runner_trace_and_the_report_show_every_attempt(project):
    store = _three_attempts(project)
    for n in (1, 2):
        assert (store / "runs" / "t1" / "attempts" / str(n) / "spans.jsonl").exists()
        assert (store / "runs" / "t1" / "attempts" / str(n) / "spans.sig.json").exists()

    spans = [json.loads(line) for line in
             cli("trace", "t1", "--json", cwd=project).stdout.splitlines()]
    runs = {s["attributes"]["runner.attempt"]: s for s in spans
            if s["attributes"]["runner.kind"] == "run"}
    assert sorted(runs) == [1, 2, 3]
    # each attempt is a trace of its own, its run span linked to the previous attempt's
    assert len({s["trace_id"] for s in runs.values()}) == 3
    for n in (2, 3):
        (link,) = runs[n]["links"]
        assert (link["trace_id"], link["span_id"]) == (runs[n - 1]["trace_id"],
                                                      runs[n - 1]["span_id"])
        assert runs[n]["attributes"]["runner.resumed_from"] == "steps/001-prepare"

    tree = cli("trace", "t1", cwd=project)
    assert tree.returncode == 0, tree.stderr
    text = tree.stdout
    assert f"attempt 1 · failed at stage right · trace {runs[1]['trace_id']}" in text
    assert (f"attempt 2 · resumed from checkpoint 001-prepare · failed at stage right · "
            f"trace {runs[2]['trace_id']}") in text
    assert (f"attempt 3 · resumed from checkpoint 001-prepare · succeeded · "
            f"trace {runs[3]['trace_id']}") in text
    assert text.index("attempt 1 ·") < text.index("attempt 2 ·") < text.index("attempt 3 ·")
    assert text.count("✗ stage right") == 2 and text.count("✓ stage right") == 1

    report = cli("report", "t1", "-o", project / "t1.html", cwd=project)
    assert report.returncode == 0, report.stderr
    html = (project / "t1.html").read_text()
    titles = [line for line in html.splitlines() if 'class="row-label attempt"' in line]
    assert [t.split(">")[1].split(" · ")[0] for t in titles] == [
        "attempt 1", "attempt 2", "attempt 3"]
    assert 'id="error"' not in html  # the run succeeded: no stale error on the page


def test_a_stale_error_is_moved_aside_and_runs_show_lists_the_attempts(project):
    store = _three_attempts(project)
    forensics = store / "summaries" / "runs" / "t1"
    assert not (forensics / "error.json").exists()
    assert not (forensics / "error_context.pkl").exists()
    for n in (1, 2):
        assert json.loads((forensics / "attempts" / str(n) / "error.json").read_text()
                          )["stage"] == "right"
    # an earlier attempt's context still loads, its signature checked
    ctx = load_error_context(str(forensics / "attempts" / "1" / "error_context.pkl"))
    assert "left" not in ctx.audit_trail and "prepared" in ctx.audit_trail

    shown = cli("runs", "show", "t1", cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "status=succeeded attempts=3" in shown.stdout
    head = shown.stdout.split("\nattempt 1:")[0]
    assert "error" not in head  # no old error presented as the run's current one
    rows = [line.split()[:4] for line in shown.stdout.splitlines()
            if line.startswith("attempt ")]
    assert rows == [["attempt", "1:", "failed", rows[0][3]], ["attempt", "2:", "failed",
                                                              rows[1][3]],
                    ["attempt", "3:", "succeeded", rows[2][3]]]
    assert "from the start  executor=threads" in shown.stdout
    assert shown.stdout.count("after fan[0]  executor=threads") == 2
    for n in (1, 2):
        assert f"  forensics: {forensics / 'attempts' / str(n)}\n" in shown.stdout
    assert shown.stdout.count("  error: stage 'right' at fan[1][1] failed") == 2
    doc = json.loads(cli("runs", "show", "t1", "--json", cwd=project).stdout)
    assert [h["status"] for h in doc["history"]] == ["failed", "failed"]
    assert [h["executor"] for h in doc["history"]] == ["threads", "threads"]
    assert doc["history"][1]["resumed_after"] == "fan[0]" and doc["resumed_after"] == "fan[0]"


def test_a_resume_that_fails_again_has_its_own_error_as_the_current_one(project):
    assert cli("run", "fan", "-m", "manifest.json", "--run-id", "t2", cwd=project
               ).returncode == 1
    (project / "my_stages.py").write_text(STAGES.replace("is not fixed yet", "still broken"))
    again = cli("run", "fan", "-m", "manifest.json", "--run-id", "t2", "--resume", cwd=project)
    assert again.returncode == 1
    forensics = project / "store" / "summaries" / "runs" / "t2"
    assert "still broken" in json.loads((forensics / "error.json").read_text())["message"]
    assert "is not fixed yet" in json.loads(
        (forensics / "attempts" / "1" / "error.json").read_text())["message"]


def test_a_resume_of_a_ray_run_that_succeeded_needs_no_ray(project):
    (project / "fail.flag").unlink()
    assert cli("run", "fan", "-m", "manifest.json", "-e", "threads", "--run-id", "r6",
               cwd=project).returncode == 0
    doc_path = project / "store" / "runs" / "r6" / "run.json"
    doc = json.loads(doc_path.read_text())
    doc["executor"] = "ray"
    doc_path.write_text(json.dumps(sign_document(doc)))
    proc = cli("run", "fan", "-m", "manifest.json", "--run-id", "r6", "--resume",
               cwd=project, no_ray=True)
    assert proc.returncode == 0, proc.stderr
    assert "run r6 already succeeded: nothing to resume" in proc.stderr


def test_runs_show_says_an_attempt_that_never_recorded_its_end_was_killed(project):
    assert cli("run", "fan", "-m", "manifest.json", "--run-id", "k1", cwd=project
               ).returncode == 1
    doc_path = project / "store" / "runs" / "k1" / "run.json"
    doc = json.loads(doc_path.read_text())  # as a SIGKILLed process leaves it
    doc.update(status="running", ended=None, error=None)
    doc_path.write_text(json.dumps(sign_document(doc)))
    (project / "fail.flag").unlink()
    assert cli("run", "fan", "-m", "manifest.json", "--run-id", "k1", "--resume",
               cwd=project).returncode == 0
    shown = cli("runs", "show", "k1", cwd=project).stdout
    assert "attempt 1: killed" in shown and "attempt 2: succeeded" in shown
