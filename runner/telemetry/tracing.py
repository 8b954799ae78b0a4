"""Tracing: one OpenTelemetry trace per run, from the run down to every stage.

Configuration is the standard OpenTelemetry environment and nothing else:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``),
``OTEL_EXPORTER_OTLP_PROTOCOL`` (``grpc`` or ``http/protobuf``, and the ``_TRACES_``
variant), ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_EXPORTER=none`` and ``OTEL_SDK_DISABLED``.
With no endpoint nothing goes over the network; the spans are still kept for
``runs/<RUN_ID>/spans.jsonl``. A process that ends waits at most
``RUNNER_OTLP_EXIT_WAIT`` seconds (1.5) for its last spans to reach the collector: an
unreachable one is said once (``traces not exported: <endpoint> unreachable``) and
costs a short run that wait, not the exporter's retries.

The span tree follows the plan::

    run alpha.parallel                       (root, or under TRACEPARENT's span)
      stage foundation.ingest
      parallel alpha.parallel[2]
        branch alpha.inference_model_a       (made where the branch runs)
          stage alpha.inference_model_a
        merge alpha.ensemble
      checkpoint foundation.ingest           (written in the background)

The trace id is the one :class:`~runner.orchestration.runner.DAGRunner` chose when
it was constructed. Branches that run in worker processes take a picklable branch
hook with them: it makes the branch's spans there, under the parallel group's
span, and sends them back with the branch's result, so every span of the run is
exported, and written to spans.jsonl, from the driver.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping
from threading import get_ident
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from runner.errors import RunInterruptedError
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Branch, ParallelGroup, PipelineStep, Plan, Step
from runner.orchestration.records import RunInfo, RunResult, StepRecord
from runner.telemetry.hookstate import SpanHookBase
from runner.telemetry.nodes import (
    TraceNode,
    cache_attrs,
    error_attrs,
    follows_link,
    remote_context,
    split_error,
)
from runner.telemetry.otlp import EXIT_WAIT_ENV, EXIT_WAIT_S, HOST, TelemetryConfig, exit_wait
from runner.telemetry.stepspans import OK, StepSpan
from runner.telemetry.tracer import NEXT_TRACE_ID, Tracing, current_traceparent, get_tracing

__all__ = ["EXIT_WAIT_ENV", "EXIT_WAIT_S", "BranchTracer", "TelemetryConfig", "Tracing",
           "TracingHook", "current_traceparent", "exit_wait", "get_tracing"]

log = logging.getLogger("runner.telemetry")

_PROPAGATOR = TraceContextTextMapPropagator()
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))
"""The context key of the current span (found through the public API)."""
_SUCCEEDED = {"runner.status": "succeeded"}
"""The attribute a succeeded step's span ends with (merged, never changed)."""


class TracingHook(SpanHookBase):
    """Makes the run's spans as it runs; see the module docstring.

    ``on_spans`` receives every span of the run (dicts in the spans.jsonl form)
    once the run has ended; the front door writes them to the run folder.
    """

    # ------------------------------------------------------------ the run

    def note_span(self, name: str, kind: str, start: float, end: float,
                  attrs: Mapping[str, Any] | None = None, error: str | None = None) -> None:
        """A span for something done before the run span exists (reading the
        checkpoint a resumed run starts from); emitted under the run span."""
        self._pending.append((name, {"runner.kind": kind, **(attrs or {})},
                              int(start * 1e9), int(end * 1e9), error))

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        self._index(plan.steps, None, None)
        self._base = {"runner.run_id": run.run_id, "runner.pipeline": run.pipeline,
                      "runner.attempt": self.attempt}
        self._kept = self.tracing.collector.open(run.run_id, run.trace_id)
        now = time.time_ns()
        start = min([now, *(p[2] for p in self._pending)])
        attrs: dict[str, Any] = {"runner.executor": run.executor,
                                 "runner.worker.pid": os.getpid(),
                                 "runner.worker.node": HOST, "runner.path": plan.pipeline}
        if self.resumed_from:
            attrs["runner.resumed_from"] = self.resumed_from
        links = follows_link(self.follows, self.attempt)
        if run.parent_span_id:
            self._run_span = self._start(f"run {run.pipeline}", "run",
                                         remote_context(run.trace_id, run.parent_span_id),
                                         attrs, start,
                                         links=links)
        else:
            token = NEXT_TRACE_ID.set(int(run.trace_id, 16))
            try:
                self._run_span = self._start(f"run {run.pipeline}", "run",
                                             otel_context.Context(), attrs, start, links=links)
            finally:
                NEXT_TRACE_ID.reset(token)
        self._run_token = otel_context.attach(trace.set_span_in_context(self._run_span))
        for name, span_attrs, s, e, error in self._pending:
            self._record_span(name, span_attrs.pop("runner.kind"), self._run_span, span_attrs,
                              s, e, error)
        self._pending.clear()

    def _end_run_span(self, result: RunResult | None, error: BaseException | None) -> bool:
        """End the run's span (and any left open) once; False if it was ended already."""
        with self._lock:
            span, self._run_span = self._run_span, None
            if span is None:
                return False
            leftovers = self._open_spans()
        stopped = isinstance(error, RunInterruptedError)
        self._count_cached(span)
        for open_span in leftovers:  # spans a failure left open end with the run
            self._finish(open_span, not stopped, status="interrupted" if stopped else None)
        if stopped:
            span.add_event("exception", error_attrs(type(error).__name__, str(error), None))
            span.set_attribute("runner.status", "interrupted")
            span.end()
        elif error is not None:
            tb = getattr(error, "traceback", None)
            self._finish(span, True, error=(type(error).__name__, str(error), tb))
        else:
            if result is not None:
                span.set_attribute("runner.steps", len(result.records))
            self._finish(span, False)
        return True

    def _count_cached(self, span: trace.Span) -> None:
        """``runner.steps.cached`` on the run's span, once the run used the step cache."""
        if self._cache_seen:
            span.set_attribute("runner.steps.cached", self._cached)

    def on_run_abort(self, run: RunInfo, error: BaseException) -> None:
        """Spans of what ran so far to spans.jsonl; no export (the process exits now)."""
        if self._end_run_span(None, error) and self.on_spans is not None:
            self.on_spans(self.tracing.collector.take(run.run_id, run.trace_id))

    def on_run_end(self, run: RunInfo, result: RunResult | None,
                   error: BaseException | None) -> None:
        if not self._end_run_span(result, error):
            return
        if self._run_token is not None:
            with contextlib.suppress(Exception):  # detached in another context
                otel_context.detach(self._run_token)  # type: ignore[arg-type]
        # export goes on in the background (Tracing.flush/close wait for it)
        spans = self.tracing.collector.take(run.run_id, run.trace_id)
        if self.on_spans is not None:
            self.on_spans(spans)

    # ------------------------------------------------------------ containers

    def on_pipeline_start(self, run: RunInfo, step: PipelineStep) -> None:
        node = self._node(step)
        node.span = self._start(f"pipeline {step.pipeline}", "pipeline", self._parent_ctx(node),
                                {"runner.path": step.path, "runner.stage": step.pipeline})

    def on_pipeline_end(self, run: RunInfo, step: PipelineStep, context: Any | None) -> None:
        self._end_container(self._node(step), context is None)

    def on_group_start(self, run: RunInfo, group: ParallelGroup) -> None:
        node = self._node(group)
        node.span = self._start(f"parallel {group.path}", "group", self._parent_ctx(node),
                                {"runner.path": group.path, "runner.executor": run.executor,
                                 "runner.branches": len(group.branches)})

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        self._end_container(self._node(group), context is None)

    def on_branch_start(self, run: RunInfo, branch: Branch) -> None:
        node = self._branch(branch)
        node.span = self._start(f"branch {branch.label}", "branch", self._parent_ctx(node),
                                {"runner.path": branch.path, "runner.branch": branch.path,
                                 "runner.worker.pid": os.getpid(), "runner.worker.node": HOST})

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        node = self._branch(branch)
        self._end_container(node, node.failed, "cancelled" if context is None and
                            not node.failed else None)

    def branch_hook(self, run: RunInfo, branch: Branch) -> RunHook | None:
        node = self._branch(branch)
        span = node.parent.span if node.parent is not None else None  # its group's
        if span is None:
            return None
        node.remote = True
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
        return BranchTracer(run.run_id, carrier["traceparent"], dict(self._base))

    def on_branch_payload(self, run: RunInfo, branch: Branch, payload: Any) -> None:
        if payload:
            self.tracing.submit(payload)

    # ------------------------------------------------------------ steps

    def on_step_start(self, run: RunInfo, step: Step) -> None:
        node = self._nodes.get(step.path) or self._node(step)
        parent = node.parent.span if node.parent is not None else None  # pipeline, branch
        if parent is None:
            parent = self._run_span
            assert parent is not None, "a step started before the run"
        span = self.tracing.spans.start(node.name, parent.get_span_context(),
                                        node.attrs,  # type: ignore[arg-type]
                                        base=self._base, listed=True)
        # the step's span is the current one while it runs (set_span_in_context, inlined)
        node.token = otel_context.attach(otel_context.Context(
            {**otel_context.get_current(), _SPAN_KEY: span}))
        node.thread = get_ident()  # no lock: a step's node is its own thread's
        node.span = span

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        failed = record.status == "failed"
        if failed and record.branch is not None:
            branch = self._branches.get(record.branch)
            if branch is not None:
                branch.failed = True
        if record.cache_key is not None:  # the step cache's: a hit or a miss kept
            self._cache_step(record)
            return
        node = self._nodes.get(record.path)
        if node is not None and node.thread == get_ident():
            span, node.span, node.thread = node.span, None, None
            if isinstance(span, StepSpan):
                try:  # noqa: SIM105 - per step: suppress() would cost an object and two calls
                    otel_context.detach(node.token)  # type: ignore[arg-type]
                except Exception:  # detached in another context
                    pass
                if not failed:
                    self.tracing.spans.finish(span, status=OK, attributes=_SUCCEEDED,
                                              kept=self._kept)
                    return
                self._finish(span, True, error=(*split_error(record.error), record.traceback))
                return
        self._step_from_record(record, failed)

    def _cache_step(self, record: StepRecord) -> None:
        """The span of a step the step cache saw: a cached one (maybe never started:
        its stage was not called) or one run and kept; ``runner.cache`` says which."""
        with self._lock:
            self._cache_seen = True
            self._cached += record.status == "cached"
        attrs = cache_attrs(record)
        node = self._nodes.get(record.path)
        if node is None or node.thread != get_ident() or not isinstance(node.span, StepSpan):
            self._step_from_record(record, record.status == "failed", attrs)
            return
        span, node.span, node.thread = node.span, None, None
        with contextlib.suppress(Exception):  # detached in another context
            otel_context.detach(node.token)  # type: ignore[arg-type]
        self._end_step(span, record, attrs, None)

    def _end_step(self, span: StepSpan, record: StepRecord, attrs: Mapping[str, Any],
                  end_ns: int | None) -> None:
        """End a step's span with ``attrs``: OK, or ERROR with its exception event."""
        if record.status != "failed":
            self.tracing.spans.finish(span, status=OK, attributes=attrs, end_ns=end_ns,
                                      kept=self._kept)
            return
        error = (*split_error(record.error), record.traceback)
        status = Status(StatusCode.ERROR, f"{error[0]}: {error[1]}")
        events = (Event("exception", error_attrs(*error)),)
        self.tracing.spans.finish(span, status=status, attributes=attrs, events=events,
                                  end_ns=end_ns, kept=self._kept)

    def _step_from_record(self, record: StepRecord, failed: bool,
                          outcome: Mapping[str, Any] | None = None) -> None:
        """A merge's span (or a step's that reported no start: a cached one, its stage
        not called), from its record, ending with ``outcome`` when given; none for a
        step of a branch whose own hook made its spans where it ran."""
        if self._in_remote_branch(record.branch):
            return
        node = self._nodes.get(record.path)
        if outcome is not None and node is not None and node.attrs is not None:
            name, static, parent = node.name, node.attrs, self._parent_span(node)
        else:
            group = self._nodes.get(record.path.removesuffix(":merge"))
            found = group.span if group is not None and group.span is not None \
                else self._run_span
            assert found is not None
            name, parent = f"{record.kind} {record.name}", found
            static = {"runner.kind": record.kind, "runner.path": record.path,
                      "runner.stage": record.name,
                      **({"runner.branch": record.branch} if record.branch else {})}
        span = self.tracing.spans.start(
            name, parent.get_span_context(),
            {**static, "runner.executor": record.executor, "runner.worker.pid": record.pid,
             "runner.worker.node": record.node or HOST}, int(record.start * 1e9),
            base=self._base)
        if outcome is not None:
            self._end_step(span, record, outcome, int(record.end * 1e9))
            return
        error = (*split_error(record.error), record.traceback) if failed else None
        self._finish(span, failed, error=error, end_ns=int(record.end * 1e9))

    # ------------------------------------------------------------ artifacts

    def on_artifact(self, event: Mapping[str, Any]) -> None:
        """A checkpoint written or read (``CheckpointHook`` listener); a span from it."""
        if self._run_span is None:
            return
        attrs = {f"runner.{'checkpoint.kind' if k == 'kind' else k}": v
                 for k, v in event.items()
                 if k not in ("op", "start", "end", "error", "name") and v is not None}
        run_span = self._run_span
        if run_span is None:
            return
        self._record_span(f"checkpoint {event.get('name', '')}".strip(),
                          f"checkpoint.{event.get('op', 'write')}", run_span, attrs,
                          int(event["start"] * 1e9), int(event["end"] * 1e9),
                          event.get("error"))


# ---------------------------------------------------------------- in a worker process


_WORKER: Tracing | None = None


def _worker_tracing() -> Tracing:
    """A worker's tracer: collects spans for the driver, exports nothing itself."""
    global _WORKER  # noqa: PLW0603 - one per worker process
    if _WORKER is None or _WORKER.resource.attributes.get("process.pid") != os.getpid():
        _WORKER = Tracing(TelemetryConfig(exporter="none"))
    return _WORKER


class BranchTracer(TracingHook):
    """The branch hook of :class:`TracingHook`: travels with a branch to a worker
    process with the W3C ``traceparent`` of the group's span, makes the branch's
    spans there under it, and returns them as its payload."""

    def __init__(self, run_id: str, traceparent: str, base: dict[str, Any]) -> None:
        self.state = (run_id, traceparent, base)

    def __getstate__(self) -> tuple[str, str, dict[str, Any]]:
        return self.state

    def __setstate__(self, state: tuple[str, str, dict[str, Any]]) -> None:
        self.__init__(*state)  # type: ignore[misc]

    def on_branch_start(self, run: RunInfo, branch: Branch) -> None:
        if hasattr(self, "tracing"):  # a branch of a group nested in this one
            super().on_branch_start(run, branch)
            return
        run_id, traceparent, base = self.state
        super().__init__(_worker_tracing())
        self.state = (run_id, traceparent, base)
        self._base = base
        # the group's span, from the traceparent, stands in for the run's
        parent = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent}))
        self._run_span = parent
        self._kept = self.tracing.collector.open(
            run_id, f"{parent.get_span_context().trace_id:032x}")
        node = self._branches[branch.path] = TraceNode(None, None)
        self._index(branch.steps, node, branch.path)
        super().on_branch_start(run, branch)

    def payload(self) -> list[dict[str, Any]]:
        if not hasattr(self, "tracing") or self._run_span is None:
            return []
        trace_id = f"{self._run_span.get_span_context().trace_id:032x}"
        return self.tracing.collector.take(self.state[0], trace_id)
