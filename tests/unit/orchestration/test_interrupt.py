"""Interrupting a run (DAGRunner.interrupt / abort): no new step starts, a group is never
merged from part of its branches, hooks hear it, and run() raises RunInterruptedError."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

from runner.errors import RunInterruptedError, UsageError
from runner.orchestration.hooks import RunHook
from runner.orchestration.runner import DAGRunner
from runner.orchestration.signals import DEFAULT_GRACE, StopOnSignals, term_grace
from tests.shapes import base_context, plan_for


class InterruptAt(RunHook):
    """Interrupts the run when the step at ``path`` ends; remembers what it heard."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.runner: DAGRunner | None = None
        self.ended: list[BaseException | None] = []
        self.aborted: list[BaseException] = []

    def on_step_end(self, run: Any, record: Any, context: Any) -> None:
        if record.path == self.path and self.runner is not None:
            self.runner.interrupt(signal.SIGINT)

    def on_run_end(self, run: Any, result: Any, error: BaseException | None) -> None:
        self.ended.append(error)

    def on_run_abort(self, run: Any, error: BaseException) -> None:
        self.aborted.append(error)


def make(steps: list[Any], executor: str, artifacts: Any, hook: InterruptAt,
         **options: Any) -> DAGRunner:
    runner = DAGRunner(plan_for(steps), executor=executor, hooks=[hook],
                       **options)
    hook.runner = runner
    return runner


def test_interrupt_stops_before_the_next_step(executor, artifacts):
    hook = InterruptAt("p[0]")
    runner = make(["log.a", ["log.b", "add.x"], "log.c"], executor, artifacts, hook)
    with pytest.raises(RunInterruptedError) as info:
        runner.run(base_context())
    error = info.value
    assert error.signal_name == "SIGINT" and error.exit_code == 130 and not error.forced
    assert error.completed == ("p[0]",) and error.total == 3
    assert [r.name for r in error.records] == ["log.a"]  # the group never started
    assert hook.ended == [error] and hook.aborted == []
    assert runner.interrupted


@pytest.mark.parametrize("executor", ["inline", "threads"])
def test_a_group_is_not_merged_from_part_of_its_branches(executor, artifacts):
    hook = InterruptAt("p[0][0][0]")  # the first step of the first branch
    runner = make([[["log.a", "log.b"], "add.x"], "log.c"], executor, artifacts, hook,
                  max_workers=1)
    with pytest.raises(RunInterruptedError) as info:
        runner.run(base_context())
    names = [r.name for r in info.value.records]
    assert "log.b" not in names and "merge" not in names and "log.c" not in names
    assert info.value.completed == ()


def test_interrupt_before_run_runs_nothing(artifacts):
    hook = InterruptAt()
    runner = make(["log.a"], "inline", artifacts, hook)
    runner.interrupt()
    with pytest.raises(RunInterruptedError) as info:
        runner.run(base_context())
    assert info.value.exit_code == 143 and info.value.records == ()
    assert hook.ended == [info.value]


def test_abort_records_at_once_while_a_stage_still_runs(tmp_path, artifacts):
    started, release = tmp_path / "started", tmp_path / "cancelled"
    hook = InterruptAt()
    runner = make(["log.a", ["wait.cancel", "log.b"]], "threads", artifacts, hook)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            runner.run(base_context(table={"started": str(started), "cancelled": str(release)}))
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    for _ in range(3000):
        if started.exists():
            break
        threading.Event().wait(0.01)
    error = runner.abort()
    assert error is not None and error.forced and error.completed == ("p[0]",)
    assert hook.aborted == [error] and hook.ended == []  # heard before the stage ended
    assert runner.abort() is error  # once
    release.write_text("go")
    thread.join(timeout=60)
    assert outcome["error"] is error  # run() raises what abort() recorded


class AbortAt(InterruptAt):
    """Aborts the run (as a second signal does) when the group at ``path`` starts, or
    when the step at ``path`` starts."""

    def on_group_start(self, run: Any, group: Any) -> None:
        if group.path == self.path and self.runner is not None:
            self.runner.abort()

    def on_step_start(self, run: Any, step: Any) -> None:
        if step.path == self.path and self.runner is not None:
            self.runner.abort()


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_an_abort_before_the_branches_are_handed_out_raises_what_it_recorded(executor,
                                                                             artifacts):
    # abort() shut the pool: handing the branches to it then raised the pool's own
    # "cannot schedule new futures after shutdown" out of run()
    hook = AbortAt("p[1]")
    runner = make(["log.a", ["log.b", "log.c"]], executor, artifacts, hook)
    with pytest.raises(RunInterruptedError) as info:
        runner.run(base_context())
    assert hook.aborted == [info.value] and info.value.forced
    assert info.value.completed == ("p[0]",) and hook.ended == [info.value]


def test_a_step_that_fails_after_an_abort_is_not_recorded_as_the_run_failing(artifacts):
    hook = AbortAt("p[1]")  # the stage then runs with the run torn down around it
    runner = make(["log.a", "fail"], "inline", artifacts, hook)
    with pytest.raises(RunInterruptedError) as info:
        runner.run(base_context())
    assert hook.aborted == [info.value] and hook.ended == [info.value]


def test_abort_after_the_run_ended_does_nothing(artifacts):
    hook = InterruptAt()
    runner = make(["log.a"], "inline", artifacts, hook)
    runner.run(base_context())
    assert runner.abort() is None and hook.aborted == []


@pytest.mark.parametrize(("raw", "want"), [("", DEFAULT_GRACE), ("0", 0.0), (" 2.5 ", 2.5)])
def test_term_grace(raw, want):
    assert term_grace({"RUNNER_TERM_GRACE": raw}) == want


@pytest.mark.parametrize("raw", ["-1", "soon", "nan", "inf"])
def test_term_grace_refuses_bad_values(raw):
    with pytest.raises(UsageError, match="RUNNER_TERM_GRACE"):
        term_grace({"RUNNER_TERM_GRACE": raw})


def test_handlers_need_the_main_thread_and_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopOnSignals(grace=1.0):
        assert signal.getsignal(signal.SIGTERM) != before[0]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    found: list[BaseException] = []

    def off_main() -> None:
        try:
            StopOnSignals().__enter__()
        except UsageError as exc:
            found.append(exc)

    thread = threading.Thread(target=off_main)
    thread.start()
    thread.join()
    assert found and "main thread" in str(found[0])


class Heard(RunHook):
    """Remembers the branch events the driver hears, and how the run ended."""

    def __init__(self, *, raise_at: str | None = None) -> None:
        self.raise_at = raise_at
        self.events: list[tuple[str, str]] = []
        self.ended: list[BaseException | None] = []

    def on_step_start(self, run: Any, step: Any) -> None:
        if step.path == self.raise_at:
            raise KeyboardInterrupt  # as Ctrl-C does, wherever the main thread is

    def on_branch_start(self, run: Any, branch: Any) -> None:
        self.events.append(("start", branch.path))

    def on_branch_queued(self, run: Any, branch: Any) -> None:
        self.events.append(("queued", branch.path))

    def on_run_end(self, run: Any, result: Any, error: BaseException | None) -> None:
        self.ended.append(error)


def test_a_keyboard_interrupt_is_recorded_as_an_interruption(executor, artifacts):
    hook = Heard(raise_at="p[2]")
    runner = DAGRunner(plan_for(["log.a", ["log.b", "add.x"], "log.c"]), executor=executor,
                       hooks=[hook])
    with pytest.raises(KeyboardInterrupt) as info:
        runner.run(base_context())
    [error] = hook.ended
    assert isinstance(error, RunInterruptedError) and error.signal_name == "SIGINT"
    assert error.completed == ("p[0]", "p[1]") and error.forced
    assert info.value.__notes__ == [f"{error}; recorded as interrupted"]
    assert runner.interrupted


def test_the_driver_hears_every_branch_go_on_every_executor(executor, artifacts):
    hook = Heard()
    DAGRunner(plan_for(["log.a", ["log.b", "add.x"]]), executor=executor,
              hooks=[hook]).run(base_context())
    # in this process a branch is heard as it starts; in worker processes, as it is sent
    kind = "queued" if executor == "processes" else "start"
    assert sorted(hook.events) == [(kind, "p[1][0]"), (kind, "p[1][1]")]
