"""Preemption: SIGTERM (and Ctrl-C) at many points of a checkpointed run, then --resume.

Each scenario runs the ``crash`` pipeline of :mod:`tests.integration.crash_shapes` in a
subprocess of ``runner run`` whose stage (or checkpoint writer) signals the driver at
one point, as Kubernetes does on preemption, eviction or node drain, and checks:

* it exits 143 (130 for SIGINT) with one line that says so and gives the exact
  command that resumes it; ``--json`` says ``interrupted``;
* run.json is ``interrupted``, the lock is released, the workspace removed and
  spans.jsonl written; every main-line stage that ran to its end is committed;
* ``--resume`` under another hostname (``unshare --uts``: a retried pod lands on
  another node) ends equal to an uninterrupted run, and no completed step ran again
  (the ledger counts every stage execution).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.telemetry import decode_jsonl
from tests.integration.artifacts.test_crash_resume import (
    GROUP,
    MAIN,
    ORDER,
    POSITION,
    RETURNS,
    RUN_ID,
    SEED,
    Crashed,
    Reference,
    _at,
    _is_prefix,
    _kill_all,
    _lock,
    _manifest,
    _processes_of_run,
    _run_doc,
    _write,
    attempt,
    resume_and_check,
)
from tests.integration.artifacts.test_crash_resume import reference as _reference_run
from tests.integration.lease_shapes import OTHER_HOST, other_host_wrap

reference = _reference_run  # the uninterrupted run, one per module (a fixture)

pytestmark = [pytest.mark.integration]

PNL = "crash[3]/crash.book[1]"
@pytest.fixture(scope="module")
def other_host() -> list[str]:
    """A command prefix that runs a process under another hostname."""
    return list(other_host_wrap())


def signalled(tmp_path: Path, n: int, env: dict[str, str], *, executor: str | None = None,
              signal_name: str = "TERM", resume: bool = False, new_session: bool = False
              ) -> tuple[Crashed, dict[str, Any], float]:
    """Run with a signal point; check the clean stop; what it left and how long it took."""
    ack = tmp_path / f"ack-{n}"
    began = time.monotonic()
    run = attempt(tmp_path, n, resume=resume, executor=executor, new_session=new_session,
                  env={"CRASH_SIGNAL": signal_name, "CRASH_ACK": str(ack), **env})
    took = time.monotonic() - began
    code = {"TERM": 143, "INT": 130}[signal_name]
    assert run.returncode == code, (run.returncode, run.stderr)
    assert ack.exists(), "the run was never interrupted"
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("interrupted: ")]
    assert len(lines) == 1, run.stderr
    out = json.loads(run.stdout)
    assert out["status"] == "interrupted" and out["signal"] == f"SIG{signal_name}"
    assert out["exit_code"] == code
    # The exact command that continues it: this one, with --resume --run-id.
    command = shlex.split(out["resume_command"])
    assert lines[0].endswith(out["resume_command"])
    assert command[-3:] == ["--resume", "--run-id", RUN_ID]
    asked = ["run", "crash", "-m", str(tmp_path / "manifest.json"), "--artifacts",
             str(tmp_path / "artifacts"), "--json", *(["--executor", executor] if executor
                                                      else [])]
    assert command[:-3] == ["runner", *asked]

    doc = _run_doc(tmp_path)
    assert doc is not None and doc["status"] == "interrupted", doc
    assert doc["error"]["type"] == "RunInterruptedError" and doc["ended"]
    assert _is_prefix(doc["completed"], MAIN)
    assert _lock(tmp_path) is None, "an interrupted run must release its lock"
    assert not (tmp_path / "workspaces" / RUN_ID).exists(), "the workspace was left behind"
    spans = decode_jsonl((tmp_path / f"artifacts/runs/{RUN_ID}/spans.jsonl").read_bytes())
    run_span = [s for s in spans if s["attributes"].get("runner.kind") == "run"]
    assert len(run_span) == 1
    assert run_span[0]["attributes"]["runner.status"] == "interrupted"
    assert len(run.ledger) == len(set(run.ledger)), "a stage ran twice in one process"
    crashed = Crashed(run, list(doc["completed"]), list(doc["checkpoints"]), doc["attempts"])
    return crashed, out, took


def finished_is_committed(crashed: Crashed, reference: Reference) -> None:
    """After a graceful stop, every main-line stage that ran (outside a group, whose
    branches may have been stopped) has its checkpoint committed."""
    for path in MAIN:
        stages = reference.stages_of[path]
        if path != GROUP and set(stages) <= set(crashed.attempt.ledger):
            assert path in crashed.completed, f"{path} ran to its end but is not committed"


def resumed_elsewhere(tmp_path: Path, reference: Reference, crashed: Crashed,
                      other_host: list[str], **options: Any) -> None:
    resume_and_check(tmp_path, 9, reference, [crashed], wrap=other_host, **options)
    spans = decode_jsonl((tmp_path / f"artifacts/runs/{RUN_ID}/spans.jsonl").read_bytes())
    nodes = {s["attributes"].get("runner.worker.node") for s in spans}
    assert OTHER_HOST in nodes, nodes  # the resume did run under another hostname


# ---------------------------------------------------------------- one signal, many points

SCENARIOS: dict[str, tuple[dict[str, str], list[str] | None, str | None]] = {
    # during a stage: pnl finishes (it is in flight), its checkpoint is committed
    "during-stage": (_at("crash.pnl:inside", wait=POSITION), [*MAIN[:5]], None),
    # at the start of the first stage: it runs to its end, nothing after it
    "first-stage": (_at("crash.seed:before"), [SEED], None),
    # between steps: position's work is done when the signal lands
    "between-steps": (_at("crash.position:after", wait=GROUP), [*MAIN[:4]], None),
    # inside a branch: the branch's next step and the other branch never start, the
    # group is not merged from half its branches
    "inside-branch": (_at("crash.momentum:inside", wait=RETURNS), [SEED, RETURNS], None),
    # during a parallel group on threads and on worker processes
    "group-threads": (_at("crash.volatility:inside", wait=RETURNS), None, "threads"),
    "group-processes": (_at("crash.volatility:inside", wait=RETURNS), None, "processes"),
    "group-ray": (_at("crash.volatility:inside", wait=RETURNS), None, "ray"),
    # during a checkpoint write (position's, on the writer thread, while pnl runs):
    # it is committed, and pnl, in flight, finishes and is committed too
    "checkpoint-write": ({**_write(r"crash\.position\.feature_store\.parquet$", "before",
                                   wait=GROUP), "CRASH_HOLD": "crash.pnl"},
                         [*MAIN[:5]], None),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_sigterm_then_resume_elsewhere_equals_uninterrupted(tmp_path, reference, other_host,
                                                             name):
    env, completed, executor = SCENARIOS[name]
    if executor == "ray":
        pytest.importorskip("ray")
    _manifest(tmp_path)
    crashed, out, took = signalled(tmp_path, 1, env, executor=executor)
    print(f"{name}: exit 143 {took:.2f}s after start; completed {crashed.completed}")
    if completed is not None:
        assert crashed.completed == completed
    else:  # branches race each other: at least what came before the group
        assert _is_prefix([SEED, RETURNS], crashed.completed)
    assert out["completed"] == crashed.completed  # what finished is what is committed
    finished_is_committed(crashed, reference)
    any_order = ("audit_trail", "notes") if executor else ()
    resumed_elsewhere(tmp_path, reference, crashed, other_host, executor=executor,
                      any_order=any_order)


# ---------------------------------------------------------------- when it cannot wait


def test_second_sigterm_exits_at_once_and_releases_the_lock(tmp_path, reference, other_host):
    """pnl hangs after the first signal; the second one does not wait for it."""
    _manifest(tmp_path)
    env = {**_at("crash.pnl:inside", wait=POSITION), "CRASH_SIGNAL_COUNT": "2",
           "CRASH_STALL": "1"}
    crashed, out, took = signalled(tmp_path, 1, env)
    print(f"second SIGTERM: exit 143 {took:.2f}s after start")
    assert out["forced"] is True
    assert crashed.completed == [*MAIN[:4]]  # pnl never finished
    assert "crash.pnl" in crashed.attempt.ledger
    resumed_elsewhere(tmp_path, reference, crashed, other_host)


def test_stage_longer_than_the_grace_period(tmp_path, reference, other_host):
    _manifest(tmp_path)
    env = {**_at("crash.pnl:inside", wait=POSITION), "CRASH_STALL": "1",
           "RUNNER_TERM_GRACE": "1"}
    crashed, out, took = signalled(tmp_path, 1, env)
    print(f"grace 1s: exit 143 {took:.2f}s after start")
    assert out["forced"] is True
    assert crashed.completed == [*MAIN[:4]]
    resumed_elsewhere(tmp_path, reference, crashed, other_host)


def test_two_ctrl_c_on_processes_never_hang(tmp_path, reference):
    """Ctrl-C twice (SIGINT to the whole process group) while a branch runs in a worker
    that then hangs: the driver kills its workers and exits 130 (the subprocess's
    safety timeout is 120 s)."""
    pytest.importorskip("psutil")
    _manifest(tmp_path)
    env = {**_at("crash.volatility:inside", wait=RETURNS), "CRASH_SIGNAL_GROUP": "1",
           "CRASH_SIGNAL_COUNT": "2", "CRASH_STALL": "1"}
    try:
        crashed, out, took = signalled(tmp_path, 1, env, executor="processes",
                                       signal_name="INT", new_session=True)
        print(f"two SIGINT on processes: exit 130 {took:.2f}s after start")
        assert out["forced"] is True
        leaked = _processes_of_run(tmp_path / "ledger-1.txt", grace=3.0)
        assert leaked == [], "workers outlived the driver"
    finally:
        _kill_all(_processes_of_run(tmp_path / "ledger-1.txt", grace=0))
    assert _is_prefix([SEED, RETURNS], crashed.completed) and GROUP not in crashed.completed
    resume_and_check(tmp_path, 2, reference, [crashed], executor="processes",
                     any_order=("audit_trail", "notes"))


# ---------------------------------------------------------------- a pod retried after success


def test_resume_of_a_succeeded_run_exits_0_and_runs_nothing(tmp_path):
    _manifest(tmp_path)
    first = attempt(tmp_path, 1, resume=False)
    assert first.returncode == 0, first.stderr
    doc = _run_doc(tmp_path)
    again = attempt(tmp_path, 2, resume=True)
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["status"] == "succeeded" and out["already_complete"] is True
    assert out["steps"] == [] and out["run_id"] == RUN_ID
    assert again.ledger == []
    assert _run_doc(tmp_path) == doc  # untouched: not even attempts
    human = attempt(tmp_path, 3, resume=True, plain_cli=True)
    assert human.returncode == 0 and "already succeeded" in human.stderr


def test_resume_of_an_interrupted_run_needs_no_force(tmp_path, reference):
    """Interrupted twice (during a stage, then between steps of the resume), resumed."""
    _manifest(tmp_path)
    first, _, _ = signalled(tmp_path, 1, _at("crash.returns:inside", wait=SEED))
    assert first.completed == [SEED, RETURNS]
    second, _, _ = signalled(tmp_path, 2, _at("crash.position:after", wait=GROUP),
                             resume=True)
    assert second.completed == [*MAIN[:4]] and second.attempts == 2
    assert second.attempt.ledger == ORDER[2:6]
    run = resume_and_check(tmp_path, 3, reference, [first, second])
    assert run.ledger == ["crash.pnl", "crash.summary"]


def test_sdk_opt_in_stops_on_sigterm_and_restores_handlers(tmp_path):
    """QuantSDK.run_pipeline(handle_signals=True) in a plain Python program."""
    _manifest(tmp_path)
    script = f"""
import json, signal
from runner.errors import RunInterruptedError
from runner.registry import StageRegistry
from runner.sdk import QuantSDK
from tests.integration.crash_shapes import install_interrupt_ack
install_interrupt_ack()
sdk = QuantSDK({str(tmp_path / 'manifest.json')!r},
               registry=StageRegistry(_entry_points_loaded=True),
               artifacts={str(tmp_path / 'artifacts')!r},
               workspace_root={str(tmp_path / 'ws')!r})
try:
    sdk.run_pipeline("crash", run_id={RUN_ID!r}, handle_signals=True)
except RunInterruptedError as exc:
    print(json.dumps({{"code": exc.exit_code, "completed": list(exc.completed),
                      "restored": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL}}))
"""
    env = {"CRASH_AT": "crash.position:inside", "CRASH_SIGNAL": "TERM",
           "CRASH_ACK": str(tmp_path / "ack")}
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("CRASH_")}, **env,
            "CRASH_LEDGER": str(tmp_path / "ledger.txt")}
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3],
                          env=full, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"code": 143, "completed": [*MAIN[:4]], "restored": True}
    doc = _run_doc(tmp_path)
    assert doc is not None and doc["status"] == "interrupted"
    assert _lock(tmp_path) is None
