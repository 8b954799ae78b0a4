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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from threading import get_ident
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from runner.errors import RunInterruptedError
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Branch, ParallelGroup, PipelineStep, Plan, Step
from runner.orchestration.records import RunInfo, RunResult, StepRecord
from runner.telemetry.otlp import EXIT_WAIT_ENV, EXIT_WAIT_S, HOST, TelemetryConfig, exit_wait
from runner.telemetry.stepspans import OK, StepSpan
from runner.telemetry.tracer import NEXT_TRACE_ID, Tracing, current_traceparent, get_tracing

__all__ = ["EXIT_WAIT_ENV", "EXIT_WAIT_S", "BranchTracer", "TelemetryConfig", "Tracing",
           "TracingHook", "current_traceparent", "exit_wait", "get_tracing"]

log = logging.getLogger("runner.telemetry")

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_PROPAGATOR = TraceContextTextMapPropagator()
_UNSET = Status(StatusCode.UNSET)
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, otel_context.Context())))
"""The context key of the current span (found through the public API)."""
_SUCCEEDED = {"runner.status": "succeeded"}
"""The attribute a succeeded step's span ends with (merged, never changed)."""
_STEP_ATTRS_MAX = 100_000


# ---------------------------------------------------------------- the hook


def _remote(trace_id: str, span_id: str) -> otel_context.Context:
    parent = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True,
                         trace_flags=_SAMPLED)
    return trace.set_span_in_context(NonRecordingSpan(parent))


def _follows(previous: tuple[str, str] | None, attempt: int) -> list[trace.Link]:
    """The link from a resumed attempt's run span to the previous attempt's."""
    if previous is None:
        return []
    try:
        ctx = SpanContext(int(previous[0], 16), int(previous[1], 16), is_remote=True,
                          trace_flags=TraceFlags(TraceFlags.SAMPLED))
    except ValueError:
        return []
    if not ctx.is_valid:
        return []
    return [trace.Link(ctx, {"runner.link": "previous attempt",
                             "runner.attempt": attempt - 1})]


def _error_attrs(exc_type: str, message: str, stacktrace: str | None) -> dict[str, Any]:
    attrs = {"exception.type": exc_type, "exception.message": message}
    if stacktrace:
        attrs["exception.stacktrace"] = stacktrace
    return attrs


def _split_error(error: str | None) -> tuple[str, str]:
    text = error or "error"
    kind, sep, message = text.partition(": ")
    return (kind, message) if sep else ("Error", text)


Node = Step | Branch | Plan


class TracingHook(RunHook):
    """Makes the run's spans as it runs; see the module docstring.

    ``on_spans`` receives every span of the run (dicts in the spans.jsonl form)
    once the run has ended; the front door writes them to the run folder.
    """

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
        self._parents: dict[int, Node] = {}
        self._spans: dict[int, Span] = {}
        self._groups: dict[str, Span] = {}
        self._steps: dict[tuple[str, int], tuple[StepSpan, object]] = {}
        self._remote: set[str] = set()
        self._failed_branches: set[str] = set()
        self._pending: list[tuple[str, dict[str, Any], int, int, str | None]] = []
        self._run_span: Span | None = None
        self._run_token: object | None = None
        self._base: dict[str, Any] = {}
        self._kept: list[Any] | None = None
        """The run's list in the collector: spans already in the spans.jsonl form go
        straight to it."""
        self._pid = os.getpid()

    # ------------------------------------------------------------ helpers

    def _index(self, container: Node, steps: Sequence[Step | Branch]) -> None:
        for item in steps:
            self._parents[id(item)] = container
            if isinstance(item, PipelineStep):
                self._index(item, item.steps)
            elif isinstance(item, ParallelGroup):
                self._index(item, item.branches)
            elif isinstance(item, Branch):
                self._index(item, item.steps)

    def _enclosing_branch(self, node: object) -> str | None:
        parent = self._parents.get(id(node))
        while parent is not None and not isinstance(parent, Branch):
            parent = self._parents.get(id(parent))
        return parent.path if isinstance(parent, Branch) else None

    def _parent_span(self, node: object) -> Span:
        parent = self._parents.get(id(node))
        span = self._spans.get(id(parent)) if parent is not None else None
        if span is None:
            span = self._run_span
        assert span is not None, "a span was asked for before the run started"
        return span

    def _parent_ctx(self, node: object) -> otel_context.Context:
        return trace.set_span_in_context(self._parent_span(node))

    def _record_span(self, name: str, kind: str, parent: Span, attrs: Mapping[str, Any],
                     start_ns: int, end_ns: int, error: str | None) -> None:
        """A span for something already done (a merge, a checkpoint), from its record."""
        span = self.tracing.spans.start(name, parent.get_span_context(),
                                        {**self._base, "runner.kind": kind, **attrs}, start_ns)
        self._finish(span, error is not None,
                     error=(*_split_error(error), None) if error else None, end_ns=end_ns)

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
            events = (Event("exception", _error_attrs(*error)),) if error is not None else ()
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
            span.add_event("exception", _error_attrs(*error))
        if failed:
            message = f"{error[0]}: {error[1]}" if error else None
            span.set_status(Status(StatusCode.ERROR, message))
            span.set_attribute("runner.status", "failed")
        else:
            if status is None:
                span.set_status(Status(StatusCode.OK))
            span.set_attribute("runner.status", status or "succeeded")
        span.end(end_time=end_ns)

    # ------------------------------------------------------------ the run

    def note_span(self, name: str, kind: str, start: float, end: float,
                  attrs: Mapping[str, Any] | None = None, error: str | None = None) -> None:
        """A span for something done before the run span exists (reading the
        checkpoint a resumed run starts from); emitted under the run span."""
        self._pending.append((name, {"runner.kind": kind, **(attrs or {})},
                              int(start * 1e9), int(end * 1e9), error))

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        self._index(plan, plan.steps)
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
        links = _follows(self.follows, self.attempt)
        if run.parent_span_id:
            self._run_span = self._start(f"run {run.pipeline}", "run",
                                         _remote(run.trace_id, run.parent_span_id), attrs, start,
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
            steps = self._steps.copy()  # one call: step starts take no lock
            self._steps.clear()
            leftovers = [s for s, _ in steps.values()] + list(self._spans.values())
            self._spans.clear()
        stopped = isinstance(error, RunInterruptedError)
        for open_span in leftovers:  # spans a failure left open end with the run
            self._finish(open_span, not stopped, status="interrupted" if stopped else None)
        if stopped:
            span.add_event("exception", _error_attrs(type(error).__name__, str(error), None))
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
        span = self._start(f"pipeline {step.pipeline}", "pipeline", self._parent_ctx(step),
                           {"runner.path": step.path, "runner.stage": step.pipeline})
        with self._lock:
            self._spans[id(step)] = span

    def on_pipeline_end(self, run: RunInfo, step: PipelineStep, context: Any | None) -> None:
        with self._lock:
            span = self._spans.pop(id(step), None)
        if span is not None:
            self._finish(span, context is None)

    def on_group_start(self, run: RunInfo, group: ParallelGroup) -> None:
        span = self._start(f"parallel {group.path}", "group", self._parent_ctx(group),
                           {"runner.path": group.path, "runner.executor": run.executor,
                            "runner.branches": len(group.branches)})
        with self._lock:
            self._spans[id(group)] = span
            self._groups[group.path] = span

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        with self._lock:
            span = self._spans.pop(id(group), None)
            self._groups.pop(group.path, None)
        if span is not None:
            self._finish(span, context is None)

    def on_branch_start(self, run: RunInfo, branch: Branch) -> None:
        span = self._start(f"branch {branch.label}", "branch", self._parent_ctx(branch),
                           {"runner.path": branch.path, "runner.branch": branch.path,
                            "runner.worker.pid": os.getpid(), "runner.worker.node": HOST})
        with self._lock:
            self._spans[id(branch)] = span

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        with self._lock:
            span = self._spans.pop(id(branch), None)
            failed = branch.path in self._failed_branches
        if span is not None:
            self._finish(span, failed, status="cancelled" if context is None and not failed
                         else None)

    def branch_hook(self, run: RunInfo, branch: Branch) -> RunHook | None:
        group = self._parents.get(id(branch))
        span = self._spans.get(id(group)) if group is not None else None
        if span is None:
            return None
        with self._lock:
            self._remote.add(branch.path)
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
        return BranchTracer(run.run_id, carrier["traceparent"], dict(self._base))

    def on_branch_payload(self, run: RunInfo, branch: Branch, payload: Any) -> None:
        if payload:
            self.tracing.submit(payload)

    # ------------------------------------------------------------ steps

    def _step_static(self, step: Step) -> tuple[str, dict[str, Any]]:
        """A step's span name and its attributes but the run's (``_base``): the same
        in every run of the plan in this process, so made once (a shared dict:
        spans never change it), in the spans.jsonl form (a list, not a tuple)."""
        cache = self.tracing.step_attrs
        found = cache.get(id(step))
        if found is None or found[0] is not step:
            name = getattr(step, "name", step.path)
            kind = "adapter" if name.startswith("adapt:") else "stage"
            attrs: dict[str, Any] = {"runner.kind": kind, "runner.path": step.path,
                                     "runner.stage": name, "runner.worker.pid": self._pid}
            branch = self._enclosing_branch(step)
            if branch is not None:
                attrs["runner.branch"] = branch
            entry = getattr(step, "entry", None)
            if entry is not None and entry.writes is not None:  # spans.jsonl has lists
                attrs["runner.stage.writes"] = sorted(entry.writes)
            if len(cache) >= _STEP_ATTRS_MAX:
                cache.clear()  # a process running ever new plans: start over
            found = cache[id(step)] = (step, f"{kind} {name}", attrs)
        return found[1], found[2]

    def on_step_start(self, run: RunInfo, step: Step) -> None:
        name, attrs = self._step_static(step)
        parent = self._spans.get(id(self._parents.get(id(step))))  # its pipeline or branch
        if parent is None:
            parent = self._run_span
            assert parent is not None, "a step started before the run"
        span = self.tracing.spans.start(name, parent.get_span_context(), attrs,
                                        base=self._base, listed=True)
        # the step's span is the current one while it runs (set_span_in_context, inlined)
        token = otel_context.attach(otel_context.Context(
            {**otel_context.get_current(), _SPAN_KEY: span}))
        # no lock: one dict store or pop is atomic, and a step's key is its own thread's
        self._steps[(step.path, get_ident())] = (span, token)

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        failed = record.status == "failed"
        if failed and record.branch is not None:
            with self._lock:
                self._failed_branches.add(record.branch)
        live = self._steps.pop((record.path, get_ident()), None)
        if live is not None:
            span, token = live
            try:  # noqa: SIM105 - per step: suppress() would cost an object and two calls
                otel_context.detach(token)  # type: ignore[arg-type]
            except Exception:  # detached in another context
                pass
            if not failed:
                self.tracing.spans.finish(span, status=OK, attributes=_SUCCEEDED,
                                          kept=self._kept)
                return
            self._finish(span, True, error=(*_split_error(record.error), record.traceback))
            return
        error = (*_split_error(record.error), record.traceback) if failed else None
        with self._lock:
            remote = record.branch is not None and any(
                record.branch == b or record.branch.startswith((f"{b}[", f"{b}/"))
                for b in self._remote)
        if remote:
            return  # the branch's own hook made this span where it ran
        # a merge (or a step that reported no start): a span from its record
        group = self._groups.get(record.path.removesuffix(":merge"))
        parent = group if group is not None else self._run_span
        assert parent is not None
        span = self.tracing.spans.start(
            f"{record.kind} {record.name}", parent.get_span_context(),
            {**self._base, "runner.kind": record.kind, "runner.path": record.path,
             "runner.stage": record.name, "runner.executor": record.executor,
             **({"runner.branch": record.branch} if record.branch else {}),
             "runner.worker.pid": record.pid, "runner.worker.node": record.node or HOST},
            int(record.start * 1e9))
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
        self._index(branch, branch.steps)
        super().on_branch_start(run, branch)

    def payload(self) -> list[dict[str, Any]]:
        if not hasattr(self, "tracing") or self._run_span is None:
            return []
        trace_id = f"{self._run_span.get_span_context().trace_id:032x}"
        return self.tracing.collector.take(self.state[0], trace_id)
