"""Spans of steps the step cache saw: ``runner.cache=hit`` for a cached step (its stage
not called, whether or not the engine announced its start), ``miss`` for one run and
kept, no attribute for a step the cache never saw; the run's span counts the hits.

The real :class:`TracingHook` hears events built by hand, as the engine sends them.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from runner.orchestration.plan import ParallelGroup, Plan
from runner.orchestration.records import RunInfo, RunResult, StepRecord
from runner.telemetry import TelemetryConfig, Tracing
from runner.telemetry.logs import JsonFormatter, LogHook
from runner.telemetry.tracing import TracingHook
from tests.shapes import plan_for

KEY = "ab" * 32
MISS = "cd" * 32
TRACE_ID = "0123456789abcdef0123456789abcdef"


def record(plan: Plan, index: int, status: str, key: str | None) -> StepRecord:
    step = list(plan.walk())[index]
    return StepRecord(name=step.name, path=step.path, status=status,  # type: ignore[arg-type]
                      start=100.0 + index, end=100.5 + index, executor="inline",
                      pid=os.getpid(), cache_key=key)


def run_hook(plan: Plan, records: list[tuple[StepRecord, bool]], *,
             failed: BaseException | None = None) -> list[dict[str, Any]]:
    """The spans a run of ``records`` leaves (each started first when its flag says so)."""
    kept: list[list[dict[str, Any]]] = []
    tracing = Tracing(TelemetryConfig(exporter="none"))
    hook = TracingHook(tracing, on_spans=kept.append)
    run = RunInfo(run_id="r-cached", trace_id=TRACE_ID, pipeline=plan.pipeline,
                  executor="inline")
    hook.on_run_start(run, plan, None)
    steps = {step.path: step for step in plan.walk()}
    for rec, started in records:
        if started:
            hook.on_step_start(run, steps[rec.path])
        hook.on_step_end(run, rec, None if rec.status == "failed" else object())
    result = None if failed else RunResult(
        run_id=run.run_id, trace_id=TRACE_ID, pipeline=plan.pipeline, context=None,
        records=tuple(r for r, _ in records), start=100.0, end=110.0, executor="inline")
    hook.on_run_end(run, result, failed)
    tracing.close()
    (spans,) = kept
    return spans


def by_path(spans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["attributes"]["runner.path"]: s for s in spans
            if s["attributes"]["runner.kind"] == "stage"}


def test_a_hit_a_miss_and_an_uncached_step_each_say_so_and_the_run_counts_hits():
    plan = plan_for(["log.a", "log.b", "log.c"])
    a, b, c = (record(plan, i, s, k) for i, s, k in
               [(0, "cached", KEY), (1, "succeeded", MISS), (2, "succeeded", None)])
    spans = run_hook(plan, [(a, False), (b, True), (c, True)])
    steps = by_path(spans)
    hit = steps[a.path]
    assert hit["name"] == "stage log.a"
    assert hit["attributes"]["runner.cache"] == "hit"
    assert hit["attributes"]["runner.cache.key"] == KEY
    assert hit["attributes"]["runner.status"] == "cached"
    assert hit["status"]["code"] == "OK"
    # never started: its span is timed from the record, under the run's span
    assert hit["start_time_unix_nano"] == int(a.start * 1e9)
    assert hit["end_time_unix_nano"] == int(a.end * 1e9)
    (run,) = [s for s in spans if s["attributes"]["runner.kind"] == "run"]
    assert hit["parent_span_id"] == run["span_id"]
    assert hit["attributes"]["runner.run_id"] == "r-cached"
    miss = steps[b.path]["attributes"]
    assert (miss["runner.cache"], miss["runner.cache.key"], miss["runner.status"]) == (
        "miss", MISS, "succeeded")
    plain = steps[c.path]["attributes"]
    assert "runner.cache" not in plain and "runner.cache.key" not in plain
    assert plain["runner.status"] == "succeeded"
    assert run["attributes"]["runner.steps.cached"] == 1
    assert run["attributes"]["runner.steps"] == 3


def test_a_cached_step_the_engine_announced_ends_its_own_span():
    plan = plan_for(["log.a", "log.b"])
    a, b = record(plan, 0, "cached", KEY), record(plan, 1, "cached", KEY[::-1])
    steps = by_path(run_hook(plan, [(a, True), (b, True)]))
    assert [steps[r.path]["attributes"]["runner.cache"] for r in (a, b)] == ["hit", "hit"]
    assert steps[b.path]["attributes"]["runner.cache.key"] == KEY[::-1]
    assert len(steps) == 2  # one span each, not one from the start and one from the record


def test_a_run_without_the_cache_has_no_cache_attributes_anywhere():
    plan = plan_for(["log.a", "log.b"])
    spans = run_hook(plan, [(record(plan, i, "succeeded", None), True) for i in (0, 1)])
    assert not [k for s in spans for k in s["attributes"] if k.startswith("runner.cache")]
    assert not [s for s in spans if "runner.steps.cached" in s["attributes"]]


def test_a_failed_run_still_counts_its_cached_steps():
    plan = plan_for(["log.a", "log.b"])
    a = record(plan, 0, "cached", KEY)
    b = record(plan, 1, "failed", MISS)
    b.error = "ValueError: bad input"
    spans = run_hook(plan, [(a, False), (b, True)], failed=RuntimeError("stage failed"))
    (run,) = [s for s in spans if s["attributes"]["runner.kind"] == "run"]
    assert run["attributes"]["runner.steps.cached"] == 1
    failed = by_path(spans)[b.path]
    assert failed["status"]["code"] == "ERROR"
    assert failed["attributes"]["runner.cache"] == "miss"
    assert failed["events"][0]["attributes"]["exception.type"] == "ValueError"


def test_the_json_log_lines_carry_the_cache_key_and_the_run_s_counts(caplog):
    plan = plan_for(["log.a", "log.b", "log.c"])
    done = [record(plan, 0, "cached", KEY), record(plan, 1, "succeeded", MISS),
            record(plan, 2, "succeeded", None)]
    run = RunInfo(run_id="r-log", trace_id=TRACE_ID, pipeline=plan.pipeline, executor="inline")
    hook = LogHook()
    caplog.set_level(logging.INFO, logger="runner")
    hook.on_run_start(run, plan, None)
    for rec in done:
        hook.on_step_end(run, rec, None)
    hook.on_run_end(run, RunResult(run_id=run.run_id, trace_id=TRACE_ID, pipeline=plan.pipeline,
                                   context=None, records=tuple(done), start=1.0, end=2.0,
                                   executor="inline"), None)
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    steps = [x for x in lines if x.get("event") == "step_ended"]
    assert [(x["status"], x.get("cache_key")) for x in steps] == [
        ("cached", KEY), ("succeeded", MISS), ("succeeded", None)]
    assert "stage log.a cached in" in steps[0]["message"]
    (end,) = [x for x in lines if x.get("event") == "run_ended"]
    assert (end["steps_cached"], end["steps_ran"]) == (1, 2)


def _group_started(run_id: str) -> tuple[ParallelGroup, list[list[dict[str, Any]]], Tracing,
                                         TracingHook, RunInfo]:
    """A traced run of ``log.a`` then a group of two one-step branches, at its group's
    start: the group, where its spans are kept, the tracing, its hook and the run."""
    plan = plan_for(["log.a", ["log.b", "log.c"]])
    (group,) = [s for s in plan.steps if isinstance(s, ParallelGroup)]
    kept: list[list[dict[str, Any]]] = []
    tracing = Tracing(TelemetryConfig(exporter="none"))
    hook = TracingHook(tracing, on_spans=kept.append)
    run = RunInfo(run_id=run_id, trace_id=TRACE_ID, pipeline=plan.pipeline,
                  executor="threads")
    hook.on_run_start(run, plan, None)
    hook.on_group_start(run, group)
    return group, kept, tracing, hook, run


def test_a_cached_step_of_a_branch_never_started_sits_under_its_branch():
    group, kept, tracing, hook, run = _group_started("r-group")
    for branch in group.branches:
        hook.on_branch_start(run, branch)
        (step,) = branch.steps
        hook.on_step_end(run, StepRecord(name=step.name, path=step.path, status="cached",
                                         start=1.0, end=1.1, executor="threads", pid=1,
                                         branch=branch.path, cache_key=KEY), object())
        hook.on_branch_end(run, branch, object())
    hook.on_group_end(run, group, object())
    hook.on_run_end(run, None, None)
    tracing.close()
    (spans,) = kept
    branches = {s["attributes"]["runner.path"]: s["span_id"] for s in spans
                if s["attributes"]["runner.kind"] == "branch"}
    stages = [s for s in spans if s["attributes"]["runner.kind"] == "stage"]
    assert len(stages) == 2 and len(branches) == 2
    for stage in stages:
        assert stage["attributes"]["runner.cache"] == "hit"
        assert stage["parent_span_id"] == branches[stage["attributes"]["runner.branch"]]


def test_a_failed_step_the_cache_saw_marks_its_branch_failed():
    group, kept, tracing, hook, run = _group_started("r-branch")
    branch = group.branches[0]
    hook.on_branch_start(run, branch)
    (step,) = branch.steps
    hook.on_step_start(run, step)
    hook.on_step_end(run, StepRecord(name=step.name, path=step.path, status="failed",
                                     start=1.0, end=1.1, executor="threads", pid=1,
                                     branch=branch.path, error="ValueError: no",
                                     cache_key=MISS), None)
    hook.on_branch_end(run, branch, None)
    hook.on_run_end(run, None, RuntimeError("failed"))
    tracing.close()
    (spans,) = kept
    (span,) = [s for s in spans if s["attributes"]["runner.kind"] == "branch"]
    assert span["attributes"]["runner.status"] == "failed"  # not "cancelled"
