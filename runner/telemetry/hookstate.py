"""What the tracing hook owns, and how its spans start and end.

:class:`SpanHookBase` holds a run's :class:`~runner.telemetry.nodes.TraceNode` per
step, pipeline, group and branch (their spans while they run), the run's span and
the attributes every span of the run carries; :class:`~runner.telemetry.tracing.TracingHook`
adds what each event of the run does with them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Span, Status, StatusCode

from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Branch, ParallelGroup, PipelineStep, Step
from runner.telemetry.nodes import TraceNode, error_attrs, index_steps, split_error, step_static
from runner.telemetry.stepspans import OK, StepSpan
from runner.telemetry.tracer import Tracing

__all__ = ["SpanHookBase"]

_UNSET = Status(StatusCode.UNSET)


class SpanHookBase(RunHook):
    """The state of a run's tracing hook and its span primitives."""

    def __init__(self, tracing: Tracing, *,
                 on_spans: Callable[[list[dict[str, Any]]], None] | None = None,
                 attempt: int = 1, follows: tuple[str, str] | None = None,
                 resumed_from: str | None = None) -> None:
        self.tracing = tracing
        self.on_spans = on_spans
        self.attempt = attempt
        """Which attempt of the run this is (``runner.attempt`` on every span)."""
        self.follows = follows
        """(trace id, span id) of the run span of the attempt this one resumes: each
        attempt is a trace of its own, its run span linked to the previous one's
        (OpenTelemetry's way to relate a retry to what it retries; an ended trace
        does not grow hours later). A run started with a TRACEPARENT joins that
        trace on every attempt, still linked."""
        self.resumed_from = resumed_from
        """The checkpoint folder the attempt continues from."""
        self._lock = threading.Lock()
        self._nodes: dict[str, TraceNode] = {}
        """step path -> its node (:mod:`runner.telemetry.nodes`)."""
        self._branches: dict[str, TraceNode] = {}
        """branch path -> its node."""
        self._pending: list[tuple[str, dict[str, Any], int, int, str | None]] = []
        self._run_span: Span | None = None
        self._run_token: object | None = None
        self._base: dict[str, Any] = {}
        self._kept: list[Any] | None = None
        """The run's list in the collector: spans already in the spans.jsonl form go
        straight to it."""
        self._pid = os.getpid()
        self._cached = 0
        """Steps of the run restored from the step cache (``runner.steps.cached``)."""
        self._cache_seen = False
        """A step of the run had a step-cache key (the run used the cache)."""

    # ------------------------------------------------------------ helpers

    def _index(self, steps: Sequence[Step | Branch], parent: TraceNode | None,
               branch: str | None) -> None:
        index_steps(steps, parent=parent, branch=branch, nodes=self._nodes,
                    branches=self._branches, pid=self._pid, cache=self.tracing.step_attrs)

    def _node(self, step: Step) -> TraceNode:
        """The node of ``step``; one under the run's span for a step not in the plan."""
        node = self._nodes.get(step.path)
        if node is None:
            node = self._nodes[step.path] = TraceNode(None, None)
            if not isinstance(step, (PipelineStep, ParallelGroup)):
                node.name, node.attrs = step_static(step, None, self._pid,
                                                    self.tracing.step_attrs)
        return node

    def _branch(self, branch: Branch) -> TraceNode:
        node = self._branches.get(branch.path)
        if node is None:
            node = self._branches[branch.path] = TraceNode(None, None)
        return node

    def _parent_span(self, node: TraceNode) -> Span:
        parent = node.parent
        span = parent.span if parent is not None else None
        if span is None:
            span = self._run_span
        assert span is not None, "a span was asked for before the run started"
        return span

    def _parent_ctx(self, node: TraceNode) -> otel_context.Context:
        return trace.set_span_in_context(self._parent_span(node))

    def _record_span(self, name: str, kind: str, parent: Span, attrs: Mapping[str, Any],
                     start_ns: int, end_ns: int, error: str | None) -> None:
        """A span for something already done (a merge, a checkpoint), from its record."""
        span = self.tracing.spans.start(name, parent.get_span_context(),
                                        {**self._base, "runner.kind": kind, **attrs}, start_ns)
        self._finish(span, error is not None,
                     error=(*split_error(error), None) if error else None, end_ns=end_ns)

    def _start(self, name: str, kind: str, parent: otel_context.Context,
               attrs: Mapping[str, Any] | None = None, start_ns: int | None = None, *,
               links: Sequence[trace.Link] = ()) -> Span:
        attributes = {**self._base, "runner.kind": kind, **(attrs or {})}
        return self.tracing.tracer.start_span(name, context=parent, attributes=attributes,
                                              start_time=start_ns, links=links or None)

    def _finish(self, span: Span, failed: bool, *,
                error: tuple[str, str, str | None] | None = None,
                end_ns: int | None = None, status: str | None = None) -> None:
        if isinstance(span, StepSpan):
            events = (Event("exception", error_attrs(*error)),) if error is not None else ()
            if failed:
                message = f"{error[0]}: {error[1]}" if error else None
                self.tracing.spans.finish(span, status=Status(StatusCode.ERROR, message),
                                          attributes={"runner.status": "failed"},
                                          events=events, end_ns=end_ns, kept=self._kept)
            else:
                self.tracing.spans.finish(span, status=OK if status is None else _UNSET,
                                          attributes={"runner.status": status or "succeeded"},
                                          events=events, end_ns=end_ns, kept=self._kept)
            return
        if error is not None:
            span.add_event("exception", error_attrs(*error))
        if failed:
            message = f"{error[0]}: {error[1]}" if error else None
            span.set_status(Status(StatusCode.ERROR, message))
            span.set_attribute("runner.status", "failed")
        else:
            if status is None:
                span.set_status(Status(StatusCode.OK))
            span.set_attribute("runner.status", status or "succeeded")
        span.end(end_time=end_ns)

    def _open_spans(self) -> list[Span]:
        """The spans still open (steps' first), each taken from its node."""
        steps: list[Span] = []
        containers: list[Span] = []
        for node in [*self._nodes.values(), *self._branches.values()]:
            span, node.span = node.span, None
            if span is not None:
                (steps if node.attrs is not None else containers).append(span)
        return steps + containers

    def _end_container(self, node: TraceNode, failed: bool, status: str | None = None) -> None:
        """End a pipeline's, group's or branch's span, once."""
        with self._lock:
            span, node.span = node.span, None
        if span is not None:
            self._finish(span, failed, status=status)

    def _in_remote_branch(self, branch: str | None) -> bool:
        """Whether the branch of that path, or one it is in, runs in another process."""
        node = self._branches.get(branch) if branch is not None else None
        while node is not None:
            if node.remote:
                return True
            node = node.parent
        return False
