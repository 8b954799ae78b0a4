"""Crash and resume: SIGKILL a run at several points, resume it, and compare.

Each scenario runs the ``crash`` pipeline of :mod:`tests.integration.crash_shapes`
in a subprocess that kills itself (SIGKILL) at one point -- between steps,
inside a stage, inside a branch, or in the middle of a checkpoint write -- then
resumes it with ``runner run --resume`` in a fresh subprocess, and checks:

* the killed run exits -9 and leaves a lease whose holder (a dead pid on this
  host) does not block the resume; the resume exits 0 and releases the lock;
* the kill point was reached: the files it leaves (a torn temporary file, an
  index.json that run.json does not list, ...) are there;
* every main-line step recorded in ``completed`` before the kill ran exactly
  once over both processes (the ledger, one line per stage execution, says so),
  and every other stage ran exactly once in the resume;
* run.json ends ``succeeded``, with ``attempts`` counted, every main-line step
  completed once, and the checkpoints written before the kill kept as they were;
* the final context, and every main-line checkpoint, equals an uninterrupted run's.

Checkpoints are written by a background thread while the next step runs, so
a stage-level kill either waits until a given checkpoint is recorded (``CRASH_WAIT``,
a deterministic kill point) or dies at once (then what was recorded is whatever the
writer thread had finished: only the invariants above are checked).

Every subprocess goes through :func:`tests.integration.crash_shapes.main` (the
runner CLI, plus the write trap when ``CRASH_WRITE_*`` is set) except where a
scenario asks for the plain ``python -m runner.cli``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from runner.artifacts import LEASE_ENV, ArtifactStore
from runner.orchestration.plan import ParallelGroup, StageStep
from runner.registry import StageRegistry
from runner.sdk import QuantSDK
from tests.integration import crash_shapes
from tests.integration.crash_shapes import MANIFEST, PIPELINE
from tests.integration.lease_shapes import OTHER_HOST, held_lease, other_host_wrap
from tests.integration.store_shapes import load_ckpt as load_checkpoint
from tests.integration.store_shapes import run_doc as read_run

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[3]
RUN_ID = "crash-run"
KILLED = -9

# The stages in the order an uninterrupted inline run executes them.
ORDER = ["crash.seed", "crash.returns", "crash.momentum", "crash.signal", "crash.volatility",
         "crash.position", "crash.pnl", "crash.summary"]
SEED, RETURNS, GROUP, POSITION, PNL, SUMMARY = MAIN = [
    "crash[0]", "crash[1]", "crash[2]", "crash[3]/crash.book[0]", "crash[3]/crash.book[1]",
    "crash[4]",
]
STEPS_DIR = f"runs/{RUN_ID}/steps"
TMP_OBJECTS = "objects/tmp"  # a writer's temporary files, named for checkpoint and field


def _sdk(manifest: Path, artifacts: Path, workspaces: Path) -> QuantSDK:
    # An empty registry marked loaded: the crash stages come from the manifest only,
    # so the runner.stages entry points (scipy, scikit-learn) are not imported here.
    return QuantSDK(manifest, registry=StageRegistry(_entry_points_loaded=True),
                    artifacts=artifacts, workspace_root=workspaces)


def _stages_of(step: Any) -> list[str]:
    if isinstance(step, StageStep):
        return [step.name]
    if isinstance(step, ParallelGroup):
        return [name for b in step.branches for s in b.steps for name in _stages_of(s)]
    raise AssertionError(f"unexpected main-line step {step!r}")


# ---------------------------------------------------------------- reference run


@dataclass(frozen=True)
class Reference:
    context: Any
    """The final context, loaded from the last checkpoint of the uninterrupted run."""
    by_path: dict[str, Any]
    """Main-line path -> the context checkpointed after it."""
    checkpoints: list[dict[str, Any]]
    report: dict[str, Any]
    stages_of: dict[str, list[str]]
    """Main-line path -> the stages it runs (every branch's for a group)."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """One uninterrupted run, in this process."""
    base = tmp_path_factory.mktemp("crash-reference")
    manifest = base / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST))
    ledger = base / "ledger.txt"
    sdk = _sdk(manifest, base / "artifacts", base / "workspaces")
    plan = sdk.plan(PIPELINE)
    assert [s.path for s in plan.main_line()] == MAIN
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("CRASH_")]:
            mp.delenv(name)
        mp.setenv("CRASH_LEDGER", str(ledger))
        result = sdk.run_pipeline(PIPELINE, run_id=RUN_ID)
    assert _ledger(ledger) == ORDER
    store = sdk.store()
    doc = read_run(store, RUN_ID)
    assert doc["status"] == "succeeded" and doc["attempts"] == 1
    assert doc["completed"] == MAIN
    by_path = {c["path"]: load_checkpoint(store, RUN_ID, c["dir"])
               for c in doc["checkpoints"] if c["kind"] == "step"}
    final = by_path[SUMMARY]
    # The checkpoint round trip is exact: the in-memory result equals what was saved.
    assert_same_context(final, result.context)
    assert final.audit_trail[-1].startswith("summary:") and len(final.feature_store) == 64
    return Reference(
        context=final, by_path=by_path, checkpoints=doc["checkpoints"],
        report=json.loads(json.dumps(result.context.report())),
        stages_of={s.path: _stages_of(s) for s in plan.main_line()},
    )


def assert_same_context(actual: Any, expected: Any, *, any_order: tuple[str, ...] = ()) -> None:
    """Field by field; ``workspace`` (a scratch folder path) is not compared.

    Fields in ``any_order`` are lists merged in branch completion order (threads).
    """
    assert type(actual).__name__ == type(expected).__name__
    for name in type(expected).model_fields:
        if name == "workspace":
            continue
        got, want = actual.__dict__[name], expected.__dict__[name]
        if isinstance(want, pd.DataFrame):
            pd.testing.assert_frame_equal(got, want, check_exact=True, obj=name)
        elif name in any_order:
            assert sorted(got) == sorted(want), name
        else:
            assert got == want, name


# ---------------------------------------------------------------- subprocesses


@dataclass
class Attempt:
    returncode: int
    pid: int
    stdout: str
    stderr: str
    ledger: list[str]


def _ledger(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _run_json(tmp_path: Path) -> Path:
    return tmp_path / "artifacts/runs" / RUN_ID / "run.json"


def attempt(tmp_path: Path, n: int, *, resume: bool, env: dict[str, str] | None = None,
            plain_cli: bool = False, executor: str | None = None,
            wrap: Sequence[str] = (), new_session: bool = False) -> Attempt:
    """Run (or resume) the crash pipeline in a subprocess; its ledger is ledger-<n>.txt.

    ``wrap`` goes before the command (another hostname, say); ``new_session`` gives it
    its own process group (for signals sent to the group, as a terminal's Ctrl-C)."""
    ledger = tmp_path / f"ledger-{n}.txt"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CRASH_")}
    full_env.update(PYTHONPATH=str(ROOT), CRASH_LEDGER=str(ledger),
                    CRASH_RUN_JSON=str(_run_json(tmp_path)),
                    RUNNER_WORKSPACE_ROOT=str(tmp_path / "workspaces"), **(env or {}))
    # The driver through -c, not -m: a ``__main__`` module that worker processes
    # (forkserver) would import again under another name.
    entry = (["-m", "runner.cli"] if plain_cli
             else ["-c", f"from {crash_shapes.__name__} import main; main()"])
    args = ["run", PIPELINE, "-m", str(tmp_path / "manifest.json"), "--run-id", RUN_ID,
            "--artifacts", str(tmp_path / "artifacts"), "--json",
            *(["--resume"] if resume else []), *(["--executor", executor] if executor else [])]
    # Output to files, not pipes: processes a killed run leaves behind may hold the
    # pipes open, and reading them to EOF would then never end.
    out_path, err_path = tmp_path / f"stdout-{n}.txt", tmp_path / f"stderr-{n}.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        proc = subprocess.Popen([*wrap, sys.executable, *entry, *args], cwd=tmp_path,
                                env=full_env, stdout=out, stderr=err, text=True,
                                start_new_session=new_session)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()  # our own child, by its pid
            proc.wait()
    return Attempt(proc.returncode, proc.pid, out_path.read_text(), err_path.read_text(),
                   _ledger(ledger))


def _store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def _run_doc(tmp_path: Path) -> dict[str, Any] | None:
    store = _store(tmp_path)
    return read_run(store, RUN_ID) if store.exists(f"runs/{RUN_ID}/run.json") else None


def _lock(tmp_path: Path) -> dict[str, Any] | None:
    """The run's lease while it is held (not released), else None."""
    return held_lease(_store(tmp_path), RUN_ID)


def _leftovers(tmp_path: Path, pattern: str) -> list[str]:
    base = tmp_path / "artifacts"
    return sorted(str(p.relative_to(base)) for p in base.glob(pattern))


def _manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))


def _is_prefix(short: list[Any], long: list[Any]) -> bool:
    return long[: len(short)] == short


# ---------------------------------------------------------------- checks


@dataclass
class Crashed:
    """What a killed (or failed) attempt left behind."""

    attempt: Attempt
    completed: list[str]
    checkpoints: list[dict[str, Any]]
    attempts: int


def crash(tmp_path: Path, n: int, env: dict[str, str], *, resume: bool = False,
          executor: str | None = None) -> Crashed:
    """Run with a kill point; check it died by SIGKILL and left its lock behind."""
    before = _run_doc(tmp_path)
    run = attempt(tmp_path, n, resume=resume, env=env, executor=executor)
    assert run.returncode == KILLED, (run.returncode, run.stderr)
    assert run.stdout == ""  # killed before --json could print anything
    lock = _lock(tmp_path)
    assert lock is not None, "the killed run's lease should still be held"
    assert lock["pid"] == run.pid and lock["host"] == socket.gethostname()
    assert len(run.ledger) == len(set(run.ledger)), "a stage ran twice in one process"
    doc = _run_doc(tmp_path)
    if doc is None:
        assert before is None
        return Crashed(run, [], [], 0)
    assert doc["status"] == "running"  # nobody could record the kill
    assert _is_prefix(doc["completed"], MAIN)
    if before is not None:  # a resume appends to the checkpoints it found
        assert _is_prefix(before["checkpoints"], doc["checkpoints"])
    return Crashed(run, list(doc["completed"]), list(doc["checkpoints"]), doc["attempts"])


def resume_and_check(tmp_path: Path, n: int, reference: Reference, killed: list[Crashed], *,
                     plain_cli: bool = False, executor: str | None = None,
                     any_order: tuple[str, ...] = (), wrap: Sequence[str] = ()) -> Attempt:
    """Resume after the kills in ``killed`` and check the outcome against ``reference``."""
    last = killed[-1]
    run = attempt(tmp_path, n, resume=True, plain_cli=plain_cli, executor=executor,
                  wrap=wrap)
    assert run.returncode == 0, run.stderr
    assert "is being run by" not in run.stderr  # the dead pid's lock was broken at once
    out = json.loads(run.stdout)
    assert out["status"] == "succeeded" and out["run_id"] == RUN_ID
    # The resume runs exactly the main-line steps not completed before the last kill.
    todo = [p for p in MAIN if p not in last.completed]
    ran = [s["path"].removesuffix(":merge") for s in out["steps"]
           if s["path"] in MAIN or s["path"].endswith(":merge")]
    assert ran == todo
    result = out["result"]
    if any_order:
        result = {**result, "audit_trail": sorted(result["audit_trail"])}
        assert result == {**reference.report,
                          "audit_trail": sorted(reference.report["audit_trail"])}
    else:
        assert result == reference.report
    assert _lock(tmp_path) is None, "the resumed run should release the run id"

    # run.json: succeeded, every attempt counted, each main-line step completed once.
    doc = _run_doc(tmp_path)
    assert doc is not None
    assert doc["status"] == "succeeded" and doc["error"] is None and doc["ended"]
    assert doc["completed"] == MAIN
    assert doc["attempts"] == last.attempts + 1
    seqs = [c["seq"] for c in doc["checkpoints"]]
    assert seqs == list(range(1, len(seqs) + 1))
    # What was recorded before the kill is kept (a resume appends, it never rewrites).
    assert _is_prefix(last.checkpoints, doc["checkpoints"])
    if not last.completed and not any_order:  # started afresh
        assert doc["checkpoints"] == reference.checkpoints

    # Ledger: the stages of a step completed before a kill ran once, in the attempt
    # that completed it; every other stage ran once more in this resume.
    ledgers = [k.attempt.ledger for k in killed] + [run.ledger]
    total = collections.Counter(s for ledger in ledgers for s in ledger)
    done_before = {s for p in last.completed for s in reference.stages_of[p]}
    for stage in ORDER:
        if stage in done_before:
            assert stage not in run.ledger, f"{stage} was completed but ran again"
            if len(killed) == 1:
                assert total[stage] == 1, f"{stage} ran {total[stage]} times"
        else:
            assert run.ledger.count(stage) == 1, f"{stage} should run once on resume"
    for earlier, later in itertools.pairwise(killed):
        # A later attempt never re-ran what an earlier one completed.
        done = {s for p in earlier.completed for s in reference.stages_of[p]}
        assert not done & set(later.attempt.ledger)
    assert sorted(run.ledger) == sorted(s for p in todo for s in reference.stages_of[p])

    # Every checkpoint still verifies (sha256) and loads; the final context, and the
    # last checkpoint of every main-line step, equal the uninterrupted run's.
    store = _store(tmp_path)
    loaded = {c["seq"]: load_checkpoint(store, RUN_ID, c["dir"]) for c in doc["checkpoints"]}
    for c in doc["checkpoints"]:
        if c["kind"] == "step":
            assert_same_context(loaded[c["seq"]], reference.by_path[c["path"]],
                                any_order=any_order)
    final = [c for c in doc["checkpoints"] if c["kind"] == "step"][-1]
    assert final is not None and final["path"] == SUMMARY
    assert_same_context(loaded[final["seq"]], reference.context, any_order=any_order)
    return run


# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    env: dict[str, str]
    completed: list[str] | None
    """Main-line paths recorded as completed when the process died (None: a race)."""
    first: list[str]
    """The ledger of the killed process: exactly this for a stage-level kill; at least
    this (a prefix) for a kill in the checkpoint writer, as the main thread runs on."""
    leftovers: list[str] = field(default_factory=list)
    """Globs (under the artifact root) the kill must have left behind."""
    absent: list[str] = field(default_factory=list)
    """Globs that must not exist after the kill."""
    checkpoints: list[str] | None = None
    """The names of the checkpoints recorded when the process died."""


def _at(point: str, wait: str | None = None) -> dict[str, str]:
    return {"CRASH_AT": point, **({"CRASH_WAIT": wait} if wait else {})}


def _write(match: str, mode: str, *, after: str | None = None, nth: int = 1,
           wait: str | None = None) -> dict[str, str]:
    """Die at a write; with ``wait``, only once run.json records that checkpoint (the
    writer commits checkpoints on a second thread, behind the one that encodes)."""
    env = {"CRASH_WRITE_MATCH": match, "CRASH_WRITE_MODE": mode, "CRASH_WRITE_NTH": str(nth)}
    if wait:
        env["CRASH_WAIT"] = wait
    if after:
        env["CRASH_WRITE_AFTER"] = after
    return env


UP_TO_GROUP = ORDER[:5]
BRANCH0 = "branch-crash.momentum -> crash.signal"
BRANCH1 = "branch-crash.volatility"
UP_TO_MERGE = ["crash.seed", "crash.returns", BRANCH0, BRANCH1, "merge"]
POS_DIR = f"{STEPS_DIR}/006-crash.position"

SCENARIOS = {
    # between steps: the group's checkpoint is recorded, position never started
    "between-steps": Scenario(
        _at("crash.position:before", wait=GROUP), [SEED, RETURNS, GROUP], UP_TO_GROUP,
        checkpoints=UP_TO_MERGE, absent=[POS_DIR]),
    # between steps at once: position's checkpoint may still be in flight
    "between-steps-no-wait": Scenario(
        _at("crash.pnl:before"), None, [*UP_TO_GROUP, "crash.position"]),
    # inside a step: pnl started (ledger line), changed its context in place, died
    "inside-step": Scenario(
        _at("crash.pnl:inside", wait=POSITION), [SEED, RETURNS, GROUP, POSITION],
        [*UP_TO_GROUP, "crash.position", "crash.pnl"], absent=[f"{STEPS_DIR}/007-*"]),
    # inside a branch: the first branch is checkpointed, the group is not complete
    "inside-branch": Scenario(
        _at("crash.volatility:inside", wait="crash[2][0]"), [SEED, RETURNS], UP_TO_GROUP,
        checkpoints=["crash.seed", "crash.returns", BRANCH0]),
    # the very first stage: nothing completed, so the resume starts afresh
    "first-step": Scenario(
        _at("crash.seed:before"), [], [], checkpoints=[], absent=[f"{STEPS_DIR}/*"]),
    # during a checkpoint write: a torn field file under its temporary name
    "partial-field-write": Scenario(
        _write(r"crash\.position\.feature_store\.parquet$", "partial", wait=GROUP),
        [SEED, RETURNS, GROUP], [*UP_TO_GROUP, "crash.position"],
        leftovers=[f"{TMP_OBJECTS}/.006-crash.position.feature_store.parquet.*"],
        absent=[f"{POS_DIR}/index.json"],
        checkpoints=UP_TO_MERGE),
    # the objects of a checkpoint written, its index.json not
    "before-index": Scenario(
        _write(r"crash\.position/index\.json$", "before"),
        [SEED, RETURNS, GROUP], [*UP_TO_GROUP, "crash.position"],
        leftovers=["objects/??/*"], absent=[f"{POS_DIR}/index.json"],
        checkpoints=UP_TO_MERGE),
    # the index.json written, its journal line torn (killed mid-append): the
    # checkpoint is on the store but not recorded; the lines before it are intact
    "torn-journal-line": Scenario(
        _write(r"/journal\.jsonl$", "partial", after=r"crash\.position/index\.json$"),
        [SEED, RETURNS, GROUP], [*UP_TO_GROUP, "crash.position"],
        leftovers=[f"{POS_DIR}/index.json"],
        checkpoints=UP_TO_MERGE),
    # during a branch checkpoint: the group reruns, both branches
    "partial-branch-write": Scenario(
        _write(r"branch-crash\.volatility\.feature_store\.parquet$", "partial",
               wait="crash[2][0]"),
        [SEED, RETURNS], UP_TO_GROUP,
        leftovers=[f"{TMP_OBJECTS}/.004-branch-crash.volatility.feature_store.parquet.*"],
        checkpoints=["crash.seed", "crash.returns", BRANCH0]),
    # both branches checkpointed, the merge's checkpoint not
    "before-merge-index": Scenario(
        _write(r"-merge/index\.json$", "before"), [SEED, RETURNS], UP_TO_GROUP,
        leftovers=["objects/??/*"], absent=[f"{STEPS_DIR}/005-merge/index.json"],
        checkpoints=["crash.seed", "crash.returns", BRANCH0, BRANCH1]),
    # every step checkpointed, the run not yet marked succeeded: nothing left to run
    "before-success-recorded": Scenario(
        _write(r"/run\.json$", "before", after=r"crash\.summary/index\.json$"),
        MAIN, ORDER, leftovers=[f"{STEPS_DIR}/008-crash.summary/index.json"],
        checkpoints=[*UP_TO_MERGE, "crash.position", "crash.pnl", "crash.summary"]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_kill_then_resume_equals_uninterrupted(tmp_path, reference, name, monkeypatch):
    """SIGKILL at each point, then ``--resume`` under another host name, as a pod retried
    on another node: it waits out the dead run's lease (2 s here) and takes over."""
    scenario = SCENARIOS[name]
    wrap = other_host_wrap()
    monkeypatch.setenv(LEASE_ENV, "2")  # the killed run's lease and the resume's
    _manifest(tmp_path)
    killed = crash(tmp_path, 1, scenario.env)
    if scenario.completed is None:  # a race with the checkpoint writer: a prefix
        assert len(killed.completed) < len(MAIN)
    else:
        assert killed.completed == scenario.completed
    ledger = killed.attempt.ledger
    if "CRASH_AT" in scenario.env:
        assert ledger == scenario.first
    else:
        assert _is_prefix(scenario.first, ledger) and _is_prefix(ledger, ORDER), ledger
    assert killed.attempts == 1
    if scenario.checkpoints is not None:
        assert [c["name"] for c in killed.checkpoints] == scenario.checkpoints
    for pattern in scenario.leftovers:
        assert _leftovers(tmp_path, pattern), f"the kill left no {pattern}"
    for pattern in scenario.absent:
        assert not _leftovers(tmp_path, pattern), f"unexpected {_leftovers(tmp_path, pattern)}"
    # The real entry point for one scenario; the driver (same CLI, no trap) elsewhere.
    began = time.monotonic()
    run = resume_and_check(tmp_path, 2, reference, [killed],
                           plain_cli=name == "between-steps", wrap=wrap)
    took = re.search(r"unrenewed for ([\d.]+)s", run.stderr)
    assert took is not None, run.stderr  # it took the dead run's lease over, from elsewhere
    print(f"\n{name}: resumed on {OTHER_HOST} after watching the dead lease for "
          f"{took[1]}s; the whole resume took {time.monotonic() - began:.1f}s")
    todo = [p for p in MAIN if p not in killed.completed]
    assert run.ledger == [s for s in ORDER if any(s in reference.stages_of[p] for p in todo)]


def test_kill_before_run_json_exists(tmp_path, reference):
    """Killed writing the first run.json: only the lock and a torn temporary file exist.

    ``--resume`` then has nothing to resume and starts afresh (attempts == 1).
    """
    _manifest(tmp_path)
    killed = crash(tmp_path, 1, _write(r"/run\.json$", "partial"))
    assert killed.attempt.ledger == []
    assert _leftovers(tmp_path, f"runs/{RUN_ID}/.run.json.*")
    assert _run_doc(tmp_path) is None
    run = resume_and_check(tmp_path, 2, reference, [killed])
    assert run.ledger == ORDER


def test_double_crash(tmp_path, reference):
    """Killed inside a branch, resumed and killed writing a later checkpoint, resumed."""
    _manifest(tmp_path)
    first = crash(tmp_path, 1, _at("crash.volatility:inside", wait="crash[2][0]"))
    assert first.completed == [SEED, RETURNS] and first.attempt.ledger == UP_TO_GROUP
    second = crash(tmp_path, 2, _write(r"crash\.pnl\.feature_store\.parquet$", "partial",
                                       wait=POSITION), resume=True)
    assert second.attempts == 2
    assert second.completed == [SEED, RETURNS, GROUP, POSITION]
    rerun = ["crash.momentum", "crash.signal", "crash.volatility", "crash.position",
             "crash.pnl"]
    assert _is_prefix(rerun, second.attempt.ledger)
    assert _is_prefix(second.attempt.ledger, [*rerun, "crash.summary"])
    assert [c["name"] for c in second.checkpoints] == [
        "crash.seed", "crash.returns", BRANCH0,  # attempt 1
        BRANCH0, BRANCH1, "merge", "crash.position"]  # attempt 2
    run = resume_and_check(tmp_path, 3, reference, [first, second])
    assert run.ledger == ["crash.pnl", "crash.summary"]
    total = collections.Counter([*first.attempt.ledger, *second.attempt.ledger, *run.ledger])
    # attempt 1 never got to it, the resume ran it; attempt 2 did too if it got to it before
    # its writer died (at most once: its ledger is a prefix of the rerun, asserted above)
    assert total.pop("crash.summary") == 1 + second.attempt.ledger.count("crash.summary")
    assert total == collections.Counter({
        "crash.seed": 1, "crash.returns": 1,  # completed by attempt 1
        "crash.momentum": 2, "crash.signal": 2, "crash.volatility": 2,  # group rerun once
        "crash.position": 1,  # completed by attempt 2
        "crash.pnl": 2,
    })
    doc = _run_doc(tmp_path)
    assert doc is not None and doc["attempts"] == 3


def test_threads_executor_kill_inside_branch(tmp_path, reference):
    """On the threads executor the other branch may be mid-flight when the process dies."""
    _manifest(tmp_path)
    killed = crash(tmp_path, 1, _at("crash.volatility:inside"), executor="threads")
    assert _is_prefix(killed.completed, [SEED, RETURNS])
    assert {"crash.seed", "crash.returns", "crash.volatility"} <= set(killed.attempt.ledger)
    assert {c["kind"] for c in killed.checkpoints[2:]} <= {"branch"}
    resume_and_check(tmp_path, 2, reference, [killed], executor="threads",
                     any_order=("audit_trail", "notes"))


# ---------------------------------------------------------------- processes executor


class LeakedWorkers(AssertionError):
    """Processes of a killed run still alive after it died."""


def _processes_of_run(ledger: Path, *, grace: float) -> list[Any]:
    """Live processes started by the run whose ledger is ``ledger`` (matched by the
    ``CRASH_LEDGER`` in their environment), after waiting up to ``grace`` seconds
    for them to go away on their own."""
    import psutil  # type: ignore[import-untyped]

    deadline = time.monotonic() + grace
    while True:
        found = []
        for proc in psutil.process_iter():
            try:
                if (proc.environ().get("CRASH_LEDGER") == str(ledger)
                        and proc.status() != psutil.STATUS_ZOMBIE):
                    found.append(proc)
            except (psutil.Error, OSError):
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _describe(proc: Any) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline())[:72]})"
    except Exception:
        return f"pid {proc.pid}"


def _kill_all(procs: list[Any]) -> None:
    import psutil

    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()  # by pid: descendants of a subprocess this test started
    psutil.wait_procs(procs, timeout=2)


def test_processes_executor_driver_killed(tmp_path, reference):
    """The driver dies (after the group, inside pnl); the resume on the processes
    executor ends equal to the uninterrupted run, and nothing of the dead run lives on."""
    pytest.importorskip("psutil")  # before any process exists that it would have to find
    _manifest(tmp_path)
    try:
        killed = crash(tmp_path, 1, _at("crash.pnl:inside", wait=POSITION),
                       executor="processes")
        assert killed.completed == [SEED, RETURNS, GROUP, POSITION]
        assert killed.attempt.ledger[-2:] == ["crash.position", "crash.pnl"]
        resume_and_check(tmp_path, 2, reference, [killed], executor="processes",
                         any_order=("audit_trail", "notes"))
        # A run that ends normally takes its workers with it (so this check works) ...
        assert _processes_of_run(tmp_path / "ledger-2.txt", grace=3.0) == []
        # ... a killed one should too (workers watching the driver, say).
        leaked = [_describe(p)
                  for p in _processes_of_run(tmp_path / "ledger-1.txt", grace=3.0)]
    finally:
        _kill_all(_processes_of_run(tmp_path / "ledger-1.txt", grace=0))
    if leaked:
        raise LeakedWorkers("still alive 3s after the driver was killed: " + "; ".join(leaked))


def test_processes_executor_worker_killed(tmp_path, reference):
    """A worker dies inside a branch (the OOM killer's choice): the run fails cleanly
    (exit 1, lock released, run.json failed), and the resume reruns the group."""
    pytest.importorskip("psutil")
    _manifest(tmp_path)
    run = attempt(tmp_path, 1, resume=False, env=_at("crash.volatility:inside"),
                  executor="processes")
    assert run.returncode == 1, run.stderr
    out = json.loads(run.stdout)
    # Every branch of the broken pool fails with BrokenProcessPool; any may be named.
    assert out["status"] == "failed" and "BrokenProcessPool" in out["error"]
    assert "Traceback (most recent call last)" not in run.stderr
    assert _lock(tmp_path) is None, "a run that failed should release its lock"
    doc = _run_doc(tmp_path)
    assert doc is not None and doc["status"] == "failed"
    assert doc["error"]["type"] == "StageFailedError"
    assert doc["completed"] == [SEED, RETURNS]
    assert (tmp_path / f"artifacts/summaries/runs/{RUN_ID}/error.json").exists()
    assert _processes_of_run(tmp_path / "ledger-1.txt", grace=3.0) == []
    failed = Crashed(run, list(doc["completed"]), list(doc["checkpoints"]), doc["attempts"])
    resume_and_check(tmp_path, 2, reference, [failed], executor="processes",
                     any_order=("audit_trail", "notes"))
