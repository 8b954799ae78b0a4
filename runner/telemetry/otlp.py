"""What the OpenTelemetry environment asks for, and the OTLP exporter it makes.

Configuration is the standard OpenTelemetry environment and nothing else (see
:mod:`runner.telemetry.tracing`). The exporter is wrapped so that a collector
that is down costs a run one timeout and one warning, not one per batch, and a
process that ends waits at most ``RUNNER_OTLP_EXIT_WAIT`` seconds for it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runner.telemetry.stepspans import CachedResource
from runner.version import __version__
from runner.words import did_you_mean

__all__ = ["EXIT_WAIT_ENV", "EXIT_WAIT_S", "HOST", "TelemetryConfig", "WatchedExporter",
           "exit_wait", "make_exporter", "make_resource", "version", "within"]

log = logging.getLogger("runner.telemetry")

_TRUE = {"1", "true", "yes", "on"}
HOST = socket.gethostname()
EXIT_WAIT_ENV = "RUNNER_OTLP_EXIT_WAIT"
EXIT_WAIT_S = 1.5
"""How long a process that ends waits for its last spans to be exported (seconds)."""


def version() -> str:
    """runner's version (:mod:`runner.version`), read without scanning the installed
    distributions for the package's metadata (a few ms at every run's start)."""
    return __version__


@dataclass(frozen=True)
class TelemetryConfig:
    """What the OpenTelemetry environment asks for."""

    enabled: bool = True
    """False with ``OTEL_SDK_DISABLED=true``: no spans at all, not even spans.jsonl."""
    endpoint: str | None = None
    protocol: str = "http/protobuf"
    exporter: str = "otlp"
    service_name: str | None = None
    resource_attributes: str = ""
    headers: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TelemetryConfig:
        env = os.environ if environ is None else environ

        def pick(name: str) -> str:
            return (env.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}")
                    or env.get(f"OTEL_EXPORTER_OTLP_{name}") or "").strip()

        exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
        return cls(
            enabled=env.get("OTEL_SDK_DISABLED", "").strip().lower() not in _TRUE,
            endpoint=pick("ENDPOINT") or None,
            protocol=(pick("PROTOCOL") or "http/protobuf").lower(),
            exporter="otlp" if "otlp" in exporters else (exporters[0] or "none"),
            service_name=env.get("OTEL_SERVICE_NAME") or None,
            resource_attributes=env.get("OTEL_RESOURCE_ATTRIBUTES", ""),
            headers=pick("HEADERS"),
        )

    @property
    def exports(self) -> bool:
        return self.enabled and self.exporter == "otlp" and self.endpoint is not None

    def describe(self) -> str:
        if not self.enabled:
            return "tracing disabled (OTEL_SDK_DISABLED)"
        if not self.exports:
            return "spans kept in the run folder only (no OTEL_EXPORTER_OTLP_ENDPOINT)"
        return f"spans exported to {self.endpoint} over OTLP {self.protocol}"


def make_exporter(config: TelemetryConfig) -> SpanExporter:
    """The OTLP exporter for the configured protocol; it reads the rest of the
    standard variables (headers, timeout, TLS) itself."""
    if config.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if config.protocol not in ("http/protobuf", "http"):
        log.warning("OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported%s; using http/protobuf",
                    config.protocol, did_you_mean(config.protocol, ("grpc", "http/protobuf"),
                                                  ignore_case=True))
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


class WatchedExporter(SpanExporter):
    """The OTLP exporter, counting what it could not deliver (the SDK only logs it).

    After a batch fails (the exporter has already retried it up to its timeout),
    batches in the next ``pause_s`` seconds fail at once instead of waiting through
    the same retries again: a collector that is down costs a run one timeout, not
    one per batch. The first failure of an outage is said once, in one line naming
    the runs whose spans did not get through.
    """

    def __init__(self, inner: SpanExporter, pause_s: float = 30.0, *,
                 endpoint: str = "the collector", protocol: str = "http/protobuf") -> None:
        self.inner = inner
        self.pause_s = pause_s
        self.endpoint = endpoint
        self.protocol = protocol
        self.failed = 0
        self.sent = 0
        self._down_until = 0.0
        self._warned = False
        self._lock = threading.Lock()

    def _warn(self, spans: Sequence[ReadableSpan]) -> None:
        runs = sorted({str(run) for span in spans
                       if (run := (span.attributes or {}).get("runner.run_id")) is not None})
        kept = (f"the spans of run {', '.join(runs)} are kept in its spans.jsonl" if runs
                else "each run's spans are kept in its spans.jsonl")
        log.warning("traces not exported: %s unreachable (OTLP %s); %s", self.endpoint,
                    self.protocol, kept)

    def give_up(self, spans: Sequence[ReadableSpan] = ()) -> None:
        """The process ends before the spans got through: say so once (unless said
        already), and let no export still retrying say it again."""
        with self._lock:
            warn, self._warned = not self._warned, True
        if warn:
            self._warn(spans)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if time.monotonic() < self._down_until:
            with self._lock:
                self.failed += len(spans)
            return SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # pragma: no cover - exporters catch their own errors
            log.debug("span export raised: %s", exc)
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.sent += len(spans)
                self._down_until = 0.0
                self._warned = False
                return result
            self.failed += len(spans)
            self._down_until = time.monotonic() + self.pause_s
            warn, self._warned = not self._warned, True
        if warn:
            self._warn(spans)
        return result

    def shutdown(self) -> None:
        with self._lock:
            done, self._closed = getattr(self, "_closed", False), True
        if not done:
            self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def make_resource(config: TelemetryConfig) -> Resource:
    attrs: dict[str, Any] = {"service.version": version(), "host.name": HOST,
                             "process.pid": os.getpid()}
    resource = Resource.create(attrs)  # adds OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
    if config.service_name is None and "service.name=" not in config.resource_attributes:
        resource = resource.merge(Resource({"service.name": "runner"}))
    return CachedResource(resource.attributes, resource.schema_url)


def within(fn: Callable[[], object], deadline: float, *, name: str) -> bool:
    """Run ``fn`` in a daemon thread; whether it ended by ``deadline`` (monotonic)."""
    ended = threading.Event()

    def run() -> None:
        try:
            fn()
        finally:
            ended.set()

    threading.Thread(target=run, name=name, daemon=True).start()
    return ended.wait(max(0.0, deadline - time.monotonic()))


def exit_wait(environ: Mapping[str, str] | None = None) -> float:
    """``RUNNER_OTLP_EXIT_WAIT`` in seconds (1.5 when unset; a value that is not a
    number of seconds >= 0 is warned about and the default used)."""
    raw = (os.environ if environ is None else environ).get(EXIT_WAIT_ENV, "").strip()
    if not raw:
        return EXIT_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        log.warning("%s=%s is not a number of seconds: waiting %.1f s for the spans",
                    EXIT_WAIT_ENV, raw, EXIT_WAIT_S)
        return EXIT_WAIT_S
    return value
