"""The tracer of one process: provider, the collector of each run's spans, export.

One :class:`Tracing` per distinct configuration (:func:`get_tracing`). Its
collector keeps each run's finished spans until the run takes them for
spans.jsonl; its exporter, when an endpoint is set, sends them in the background.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from runner.telemetry.nodes import StepAttrs
from runner.telemetry.otlp import (
    TelemetryConfig,
    WatchedExporter,
    exit_wait,
    make_exporter,
    make_resource,
    version,
    within,
)
from runner.telemetry.spans import from_readable, to_readable
from runner.telemetry.stepspans import SpanMaker

__all__ = ["NEXT_TRACE_ID", "SpanCollector", "Tracing", "current_traceparent", "get_tracing"]

NEXT_TRACE_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "runner_next_trace_id", default=None)
"""The trace id the next root span takes (a run's, chosen up front)."""


class _RunIds(RandomIdGenerator):
    """Random ids, except the trace id of a run's root span: the one chosen up front."""

    def generate_trace_id(self) -> int:
        chosen = NEXT_TRACE_ID.get()
        return chosen if chosen is not None else super().generate_trace_id()


class SpanCollector(SpanProcessor):
    """Keeps each run's finished spans until the run takes them (as dicts: turned
    into the spans.jsonl form once, at the end, not while the run goes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, list[ReadableSpan | dict[str, Any]]] = {}
        self._traces: dict[str, set[str]] = {}

    def open(self, run_id: str, trace_id: str) -> list[ReadableSpan | dict[str, Any]]:
        """Start keeping the spans of ``run_id``; the list they go to (a span of the
        run's already in the spans.jsonl form may be appended to it directly)."""
        with self._lock:
            spans = self._runs[run_id] = []
            self._traces.setdefault(trace_id, set()).add(run_id)
        return spans

    def take(self, run_id: str, trace_id: str) -> list[dict[str, Any]]:
        with self._lock:
            runs = self._traces.get(trace_id, set())
            runs.discard(run_id)
            if not runs:
                self._traces.pop(trace_id, None)
            spans = self._runs.pop(run_id, [])
        return [span if type(span) is dict else from_readable(span)  # type: ignore[arg-type]
                for span in spans]

    def add_plain(self, span: dict[str, Any]) -> None:
        """A span of ours already in the spans.jsonl form (nothing is exported)."""
        run_id = span["attributes"].get("runner.run_id")
        with self._lock:
            spans = self._runs.get(run_id) if isinstance(run_id, str) else None
            if spans is not None:
                spans.append(span)

    def on_end(self, span: ReadableSpan) -> None:
        run_id = (span.attributes or {}).get("runner.run_id")
        with self._lock:
            if isinstance(run_id, str):
                targets = [run_id] if run_id in self._runs else []
            else:  # a span the stage's own code made, under one of our spans
                trace_id = f"{span.context.trace_id:032x}" if span.context else ""
                targets = list(self._traces.get(trace_id, ()))
            for target in targets:
                self._runs[target].append(span)


class Tracing:
    """The tracer of one process for one configuration: provider, collector, export."""

    def __init__(self, config: TelemetryConfig | None = None) -> None:
        self.config = config or TelemetryConfig.from_env()
        self.resource = make_resource(self.config)
        self.collector = SpanCollector()
        self.export: SpanProcessor | None = None
        self.exporter: WatchedExporter | None = None
        ids = _RunIds()
        self.provider = TracerProvider(resource=self.resource, id_generator=ids,
                                       shutdown_on_exit=True)
        self.provider.add_span_processor(self.collector)
        if self.config.exports:
            protocol = "grpc" if self.config.protocol == "grpc" else "http/protobuf"
            self.exporter = WatchedExporter(make_exporter(self.config),
                                            endpoint=str(self.config.endpoint),
                                            protocol=protocol)
            self.export = BatchSpanProcessor(self.exporter, schedule_delay_millis=500)
            self.provider.add_span_processor(self.export)
        self.tracer = self.provider.get_tracer("runner", version())
        self.spans = SpanMaker(resource=self.resource, scope=InstrumentationScope(
            "runner", version()), emit=self.emit,
            emit_plain=self.collector.add_plain if self.export is None else None,
            export=self.export.on_end if self.export is not None else None)
        self.step_attrs: StepAttrs = {}
        """step path -> (step, span name, the attributes of its spans but the run's),
        the same in every run of a plan: :func:`runner.telemetry.nodes.step_static`."""

    def emit(self, span: ReadableSpan) -> None:
        """A finished span made without the tracer (:mod:`runner.telemetry.stepspans`,
        or another process): to the collector and the exporter, as the tracer's are."""
        self.collector.on_end(span)
        if self.export is not None:
            self.export.on_end(span)

    def submit(self, spans: Sequence[Mapping[str, Any]]) -> None:
        """Spans made in another process: collect and export them as if made here."""
        for data in spans:
            self.emit(to_readable(data))

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Send what is queued now and wait for it; False if it did not all arrive.

        Runs do not wait for this: spans are exported in the background, in batches
        (every half second, or sooner once 512 are queued), while the stages run.
        A failed export has said so already (once per outage).
        """
        if self.export is None or self.exporter is None:
            return True
        failed = self.exporter.failed
        done = self.export.force_flush(int(timeout_s * 1000))
        return done and self.exporter.failed == failed

    def close(self, wait_s: float | None = None) -> None:
        """Send every span still queued, waiting at most ``wait_s`` seconds (default
        ``RUNNER_OTLP_EXIT_WAIT``, 1.5), then shut the provider down; for a process
        that is about to exit. The exporter's own retries (up to
        ``OTEL_EXPORTER_OTLP_TIMEOUT``) are cut short then: a collector that is down,
        or one that takes connections and never answers, costs the wait, said once,
        and nothing when an earlier batch found it down."""
        deadline = time.monotonic() + (exit_wait() if wait_s is None else wait_s)
        if self.export is not None and self.exporter is not None:
            if not within(self.flush, deadline, name="runner-otlp-flush"):
                self.exporter.give_up()
            self.exporter.shutdown()  # wakes an export waiting to retry: it gives up
        # an export still waiting on a silent collector holds the processor's shutdown
        # up to its timeout: not this process's exit (its threads are daemons)
        within(self.provider.shutdown, max(deadline, time.monotonic() + 0.2),
                name="runner-otlp-shutdown")

    def install_global(self) -> None:
        """Make this the process's OpenTelemetry tracer provider, so spans that stage
        code makes with ``opentelemetry.trace.get_tracer`` nest under the step's span.
        Does nothing when the application has set its own provider."""
        if type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
            trace.set_tracer_provider(self.provider)


_TRACINGS: dict[TelemetryConfig, Tracing] = {}
_TRACINGS_LOCK = threading.Lock()


def get_tracing(config: TelemetryConfig | None = None) -> Tracing | None:
    """The process's :class:`Tracing` for the environment's configuration (one per
    distinct configuration), or None when OpenTelemetry is disabled."""
    config = config or TelemetryConfig.from_env()
    if not config.enabled:
        return None
    with _TRACINGS_LOCK:
        tracing = _TRACINGS.get(config)
        if tracing is None:
            tracing = _TRACINGS[config] = Tracing(config)
        return tracing


def current_traceparent() -> str | None:
    """The W3C traceparent of the application's active span, if there is one: a run
    started inside it belongs to that trace."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
