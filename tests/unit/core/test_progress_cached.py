"""The progress display of a run that used the step cache: a cached step (its outputs
restored, its stage not called) has its own mark and word, on a terminal and in plain
logs, and the run ends with how many steps ran and how many were cached. The real
hooks hear records built by hand, as the engine sends them."""

from __future__ import annotations

import io
import os
import re

from rich.console import Console

from runner.orchestration.plan import Plan
from runner.orchestration.records import RunInfo, RunResult, StepRecord
from runner.progress import LiveProgress, PlainProgress
from tests.shapes import plan_for

KEY = "ab" * 32
RUN = RunInfo(run_id="r-1", trace_id="0" * 32, pipeline="p", executor="inline")


def records(plan: Plan, outcomes: list[tuple[str, str | None]]) -> list[StepRecord]:
    steps = list(plan.walk())
    return [StepRecord(name=step.name, path=step.path, status=status,  # type: ignore[arg-type]
                       start=10.0, end=10.25, executor="inline", pid=os.getpid(),
                       cache_key=key)
            for step, (status, key) in zip(steps, outcomes, strict=True)]


def drive(hook: PlainProgress | LiveProgress, plan: Plan, done: list[StepRecord]) -> None:
    hook.on_run_start(RUN, plan, None)
    steps = {step.path: step for step in plan.walk()}
    for record in done:
        if record.status != "cached":
            hook.on_step_start(RUN, steps[record.path])
        hook.on_step_end(RUN, record, None)
    hook.on_run_end(RUN, RunResult(run_id="r-1", trace_id="0" * 32, pipeline="p", context=None,
                                   records=tuple(done), start=10.0, end=11.0,
                                   executor="inline"), None)


PLAN = plan_for(["log.a", "log.b", "log.c"])
MIXED = [("cached", KEY), ("succeeded", "cd" * 32), ("succeeded", None)]


def test_plain_lines_mark_a_cached_step_and_end_with_the_counts():
    stream = io.StringIO()
    drive(PlainProgress(Console(file=stream, width=200), every=30.0), PLAN,
          records(PLAN, MIXED))
    text = stream.getvalue()
    assert "\x1b" not in text  # no control codes in a log
    lines = text.splitlines()
    assert re.fullmatch(r"  ↺ log\.a\s+p\[0\]\s+0\.250s cached", lines[1]), lines
    assert re.fullmatch(r"  ✓ log\.b\s+p\[1\]\s+0\.250s", lines[2]), lines
    assert re.fullmatch(r"  ✓ log\.c\s+p\[2\]\s+0\.250s", lines[3]), lines
    assert lines[-1] == "  3 steps: 2 ran, 1 cached"


def test_a_run_that_did_not_use_the_cache_says_nothing_of_it():
    stream = io.StringIO()
    drive(PlainProgress(Console(file=stream, width=200), every=30.0), PLAN,
          records(PLAN, [("succeeded", None)] * 3))
    assert "cached" not in stream.getvalue()
    assert "ran" not in stream.getvalue()


def test_a_fully_cached_run_counts_every_step_cached():
    stream = io.StringIO()
    drive(PlainProgress(Console(file=stream, width=200), every=30.0), PLAN,
          records(PLAN, [("cached", KEY)] * 3))
    lines = stream.getvalue().splitlines()
    assert sum(line.startswith("  ↺ ") for line in lines) == 3
    assert lines[-1] == "  3 steps: 0 ran, 3 cached"


def test_the_terminal_board_marks_a_cached_step_in_its_own_colour():
    stream = io.StringIO()
    console = Console(file=stream, width=200, force_terminal=True, color_system="standard",
                      force_interactive=True)
    drive(LiveProgress(console), PLAN, records(PLAN, MIXED))
    text = stream.getvalue()
    assert "\x1b[36m↺\x1b[0m" in text  # cyan, apart from the green ✓
    assert "\x1b[32m✓\x1b[0m" in text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert re.search(r"↺ log\.a\s+p\[0\]\s+0\.250s cached", plain), plain
    assert "3 steps: 2 ran, 1 cached" in plain
