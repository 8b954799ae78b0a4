"""What the tracing hook holds for each step, pipeline, group and branch of a run.

One :class:`TraceNode` per node of the plan, made when the run starts: where the
node sits (its container's node), its span while it runs, and for a stage or an
adapter the span's name and attributes. The hook finds a node by its path (a
step's path is unique among the plan's steps, a branch's among its branches; a
branch of one step shares that step's path, so branches have a table of their own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace import Span as OtelSpan

from runner.orchestration.plan import (
    AdapterStep,
    Branch,
    ParallelGroup,
    PipelineStep,
    StageStep,
    Step,
)
from runner.orchestration.records import StepRecord

__all__ = ["STEP_ATTRS_MAX", "StepAttrs", "TraceNode", "cache_attrs", "error_attrs",
           "follows_link", "index_steps", "remote_context", "split_error", "step_static"]

STEP_ATTRS_MAX = 100_000
StepAttrs = dict[str, tuple[object, str, dict[str, Any]]]
"""step path -> (step, span name, the attributes of its spans but the run's)."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class TraceNode:
    """One step, pipeline, group or branch of the run, as the tracing hook knows it."""

    __slots__ = ("attrs", "branch", "failed", "name", "parent", "remote", "span", "thread",
                 "token")

    def __init__(self, parent: TraceNode | None, branch: str | None, name: str = "",
                 attrs: dict[str, Any] | None = None) -> None:
        self.parent = parent
        """The node of the pipeline, group or branch it is in (None: the run's)."""
        self.branch = branch
        """The path of the branch it is in (None on the run's main line)."""
        self.span: OtelSpan | None = None
        """Its span while it runs."""
        self.token: object | None = None
        """A running step's: the token that made its span the current one."""
        self.thread: int | None = None
        """A running step's: the thread it runs in (its span ends only there)."""
        self.name = name
        self.attrs = attrs
        """A stage's or an adapter's: its span's name and attributes (shared, never
        changed), the same in every run of the plan in this process."""
        self.failed = False
        """A branch's: a step of it failed."""
        self.remote = False
        """A branch's: it runs in another process, whose hook makes its spans."""


def step_static(step: Step, branch: str | None, pid: int,
                cache: StepAttrs) -> tuple[str, dict[str, Any]]:
    """A step's span name and its attributes but the run's: made once per step of a
    plan in this process (``cache``), in the spans.jsonl form (a list, not a tuple)."""
    found = cache.get(step.path)
    if found is None or found[0] is not step:
        name = getattr(step, "name", step.path)
        kind = "adapter" if name.startswith("adapt:") else "stage"
        attrs: dict[str, Any] = {"runner.kind": kind, "runner.path": step.path,
                                 "runner.stage": name, "runner.worker.pid": pid}
        if branch is not None:
            attrs["runner.branch"] = branch
        entry = getattr(step, "entry", None)
        if entry is not None and entry.writes is not None:  # spans.jsonl has lists
            attrs["runner.stage.writes"] = sorted(entry.writes)
        if len(cache) >= STEP_ATTRS_MAX:
            cache.clear()  # a process running ever new plans: start over
        found = cache[step.path] = (step, f"{kind} {name}", attrs)
    return found[1], found[2]


def index_steps(steps: Sequence[Step | Branch], *, parent: TraceNode | None,
                branch: str | None, nodes: dict[str, TraceNode],
                branches: dict[str, TraceNode], pid: int, cache: StepAttrs) -> None:
    """A node for each of ``steps`` and what they hold, in ``nodes`` (steps) and
    ``branches``; a stage's or an adapter's with its span's name and attributes."""
    for item in steps:
        cls = type(item)
        if cls is StageStep or cls is AdapterStep:  # most of a plan: checked first
            found = cache.get(item.path)
            if found is not None and found[0] is item:
                name, attrs = found[1], found[2]
            else:
                name, attrs = step_static(item, branch, pid, cache)  # type: ignore[arg-type]
            nodes[item.path] = TraceNode(parent, branch, name, attrs)
            continue
        node = TraceNode(parent, branch)
        if isinstance(item, Branch):
            branches[item.path] = node
            index_steps(item.steps, parent=node, branch=item.path, nodes=nodes,
                        branches=branches, pid=pid, cache=cache)
            continue
        nodes[item.path] = node
        if isinstance(item, PipelineStep):
            index_steps(item.steps, parent=node, branch=branch, nodes=nodes,
                        branches=branches, pid=pid, cache=cache)
        elif isinstance(item, ParallelGroup):
            index_steps(item.branches, parent=node, branch=branch, nodes=nodes,
                        branches=branches, pid=pid, cache=cache)
        else:  # a step type of the future: a span like a stage's
            node.name, node.attrs = step_static(item, branch, pid, cache)


def remote_context(trace_id: str, span_id: str) -> Any:
    """A context whose current span is another process's (a TRACEPARENT's)."""
    parent = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                         trace_flags=_SAMPLED)
    return trace.set_span_in_context(NonRecordingSpan(parent))


def follows_link(previous: tuple[str, str] | None, attempt: int) -> list[trace.Link]:
    """The link from a resumed attempt's run span to the previous attempt's."""
    if previous is None:
        return []
    try:
        ctx = SpanContext(int(previous[0], 16), int(previous[1], 16), is_remote=True,
                          trace_flags=_SAMPLED)
    except ValueError:
        return []
    if not ctx.is_valid:
        return []
    return [trace.Link(ctx, {"runner.link": "previous attempt",
                             "runner.attempt": attempt - 1})]


def error_attrs(exc_type: str, message: str, stacktrace: str | None) -> dict[str, Any]:
    """The attributes of an ``exception`` event (OpenTelemetry's conventions)."""
    attrs = {"exception.type": exc_type, "exception.message": message}
    if stacktrace:
        attrs["exception.stacktrace"] = stacktrace
    return attrs


def split_error(error: str | None) -> tuple[str, str]:
    """A record's ``"Type: message"`` as (type, message)."""
    text = error or "error"
    kind, sep, message = text.partition(": ")
    return (kind, message) if sep else ("Error", text)


def cache_attrs(record: StepRecord) -> dict[str, Any]:
    """The attributes a step's span ends with, given its step-cache outcome: a cached
    step (outputs restored, its stage not called) is ``runner.status=cached`` with
    ``runner.cache=hit``; a step run and kept in the cache has ``runner.cache=miss``;
    both carry ``runner.cache.key``. A step the cache never saw has no ``runner.cache``."""
    if record.status == "cached":
        return {"runner.status": "cached", "runner.cache": "hit",
                "runner.cache.key": record.cache_key or ""}
    attrs: dict[str, Any] = {"runner.status": record.status}
    if record.cache_key is not None:
        attrs.update({"runner.cache": "miss", "runner.cache.key": record.cache_key})
    return attrs
