"""Real OTLP trace receivers for the tests: what an exporter sends, decoded.

Two local servers that speak OTLP/traces the way a collector does, built on
``opentelemetry-proto`` and bound to 127.0.0.1 on an ephemeral port:

* :class:`OtlpHttpReceiver` - ``POST /v1/traces`` with ``application/x-protobuf``
  (plain, ``gzip`` or ``deflate`` bodies); any other path is a 404.
* :class:`OtlpGrpcReceiver` - the ``opentelemetry.proto.collector.trace.v1.TraceService``
  gRPC service on an insecure port.

Both are context managers (started on enter, stopped and joined on exit) and
flatten every ResourceSpans/ScopeSpans they receive into :class:`ReceivedSpan`
records, which a test reads through ``.spans`` or waits for with ``wait_for``::

    with OtlpHttpReceiver() as rx:
        monkeypatch.setenv(...)            # or: for k, v in rx.env().items()
        ...                                # code under test exports spans
        spans = rx.wait_for(lambda s: {"parent", "child"} <= {x.name for x in s})

The fixtures ``otlp_http`` and ``otlp_grpc`` yield a started receiver and stop
it afterwards. Their functions are called ``otlp_http_fixture`` and
``otlp_grpc_fixture`` so that a test module can import them without the test
parameters shadowing the import (ruff F811)::

    from tests.otlp import otlp_grpc_fixture, otlp_http_fixture  # noqa: F401

    def test_it(otlp_http): ...

(a conftest.py can import them the same way to share them with a whole folder).
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

HOST = "127.0.0.1"
TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"

#: every variable that can point an SDK trace exporter somewhere else than ``env()`` says
OTEL_EXPORTER_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE",
    "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED",
)


# --------------------------------------------------------------------------- decoding


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as it arrived, flattened out of its ResourceSpans/ScopeSpans.

    Ids are lowercase hex (``trace_id`` 32 digits, ``span_id`` 16); a root span's
    ``parent_span_id`` is None. ``kind`` and ``status_code`` lose their enum
    prefix (``"SERVER"``, ``"ERROR"``/``"OK"``/``"UNSET"``). Attribute values are
    plain Python (str, int, float, bool, bytes, list, dict).
    """

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    status_code: str
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    resource: dict[str, Any]
    scope: str = ""
    links: list[tuple[str, str]] = field(default_factory=list)

    @property
    def duration_ns(self) -> int:
        return self.end_time_unix_nano - self.start_time_unix_nano

    def event(self, name: str) -> dict[str, Any]:
        """The attributes of the first event called ``name`` (KeyError if none)."""
        for event_name, attributes in self.events:
            if event_name == name:
                return attributes
        raise KeyError(f"span {self.name!r} has no event {name!r}; it has "
                       f"{[n for n, _ in self.events]}")


def decode_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as plain Python (None when it holds nothing)."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [decode_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return decode_attributes(value.kvlist_value.values)
    return getattr(value, which)


def decode_attributes(attributes: Any) -> dict[str, Any]:
    """Repeated ``KeyValue`` as a dict."""
    return {kv.key: decode_value(kv.value) for kv in attributes}


def _hex(raw: bytes) -> str:
    return raw.hex()


def _strip(prefix: str, name: str) -> str:
    return name[len(prefix):] if name.startswith(prefix) else name


def flatten(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    """Every span of an export request, with its resource and scope folded in."""
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = decode_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(ReceivedSpan(
                    trace_id=_hex(span.trace_id),
                    span_id=_hex(span.span_id),
                    parent_span_id=_hex(span.parent_span_id) or None,
                    name=span.name,
                    kind=_strip("SPAN_KIND_", Span.SpanKind.Name(span.kind)),
                    status_code=_strip("STATUS_CODE_", Status.StatusCode.Name(span.status.code)),
                    status_message=span.status.message,
                    start_time_unix_nano=span.start_time_unix_nano,
                    end_time_unix_nano=span.end_time_unix_nano,
                    attributes=decode_attributes(span.attributes),
                    events=[(e.name, decode_attributes(e.attributes)) for e in span.events],
                    resource=resource,
                    scope=scope_spans.scope.name,
                    links=[(_hex(link.trace_id), _hex(link.span_id)) for link in span.links],
                ))
    return spans


def encode_request(*names: str, trace_id: bytes = b"\x01" * 16,
                   attributes: dict[str, str] | None = None) -> bytes:
    """A small serialized ExportTraceServiceRequest, for poking a receiver by hand."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for i, name in enumerate(names, start=1):
        span = scope_spans.spans.add(trace_id=trace_id, span_id=i.to_bytes(8, "big"), name=name,
                                     start_time_unix_nano=1, end_time_unix_nano=2)
        for key, value in (attributes or {}).items():
            span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=value)))
    return request.SerializeToString()


# --------------------------------------------------------------------------- shared state


class _Receiver:
    """What both receivers keep: spans, request count and headers, injected failures."""

    protocol: str = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._headers: list[dict[str, str]] = []
        self._failures: list[tuple[Any, float | None]] = []
        self._failed = 0
        self._started = False

    # ---- lifecycle (subclasses provide _start/_stop and port)
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self):
        if self._started:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._start()
        self._started = True
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self._stop()

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._started

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT`` - the base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` wants it."""
        return f"http://{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        """OTEL_* variables that point an OpenTelemetry SDK exporter here."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": self.protocol}

    # ---- what arrived
    @property
    def spans(self) -> list[ReceivedSpan]:
        """A snapshot of every span received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    @property
    def requests(self) -> int:
        """How many export requests arrived (including the ones made to fail)."""
        with self._lock:
            return len(self._headers)

    @property
    def failed(self) -> int:
        """How many requests were answered with an injected failure."""
        with self._lock:
            return self._failed

    @property
    def headers(self) -> list[dict[str, str]]:
        """The headers (gRPC: metadata) of each request, names lowercased."""
        with self._lock:
            return [dict(h) for h in self._headers]

    def span(self, name: str) -> ReceivedSpan:
        """The one span called ``name`` (AssertionError if there are none or several)."""
        found = [s for s in self.spans if s.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one span {name!r}, found {len(found)}; "
                                 f"{self.summary()}")
        return found[0]

    def clear(self) -> None:
        """Forget the spans, headers and pending failures received so far."""
        with self._lock:
            self._spans.clear()
            self._headers.clear()
            self._failures.clear()
            self._failed = 0

    def summary(self) -> str:
        spans = self.spans
        lines = [f"{type(self).__name__} at {self.endpoint}: {self.requests} request(s), "
                 f"{self.failed} failed, {len(spans)} span(s)"]
        lines += [f"  {s.name!r} trace={s.trace_id} span={s.span_id} parent={s.parent_span_id} "
                  f"status={s.status_code}" for s in spans[:50]]
        if len(spans) > 50:
            lines.append(f"  ... and {len(spans) - 50} more")
        return "\n".join(lines)

    def wait_for(self, predicate: Callable[[list[ReceivedSpan]], bool],
                 timeout: float = 10) -> list[ReceivedSpan]:
        """Poll until ``predicate(spans)`` holds and return those spans.

        Raises AssertionError, with a summary of what did arrive, after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans
            if predicate(spans):
                return spans
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for spans; "
                                     f"{self.summary()}")
            time.sleep(0.02)

    def wait_for_names(self, *names: str, timeout: float = 10) -> dict[str, ReceivedSpan]:
        """Wait until a span of each name arrived; the last of each name, by name."""
        wanted = set(names)
        spans = self.wait_for(lambda s: wanted <= {x.name for x in s}, timeout)
        return {s.name: s for s in spans if s.name in wanted}

    # ---- fault injection
    def fail_next(self, n: int = 1, status: Any = None, retry_after: float | None = 0.0) -> None:
        """Answer the next ``n`` export requests with a failure (their spans are dropped).

        ``status`` is an HTTP status (default 503) or a ``grpc.StatusCode`` (default
        UNAVAILABLE). ``retry_after`` (seconds) rides along as ``Retry-After`` /
        ``google.rpc.RetryInfo``, so SDK exporters retry at once instead of backing
        off for seconds; None sends no hint.
        """
        with self._lock:
            self._failures.extend([(status, retry_after)] * n)

    # ---- called by the servers
    def _arrived(self, headers: dict[str, str]) -> tuple[Any, float | None] | None:
        """Count a request; the failure to answer it with, if one is pending."""
        with self._lock:
            self._headers.append(headers)
            if self._failures:
                self._failed += 1
                return self._failures.pop(0)
            return None

    def _record(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        spans = flatten(request)
        with self._lock:
            self._spans.extend(spans)


# --------------------------------------------------------------------------- HTTP


class _HttpServer(http.server.ThreadingHTTPServer):
    # join request threads on server_close (HTTP/1.0: one request per connection)
    daemon_threads = False
    block_on_close = True
    receiver: OtlpHttpReceiver


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer
    timeout = 10  # seconds a stuck client may hold a handler thread

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no per-request lines on stderr

    def _reply(self, status: int, body: bytes = b"", content_type: str = PROTOBUF,
               extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._reply(status, message.encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        if path != TRACES_PATH:
            self._error(404, f"no such OTLP path: {path}")
            return
        receiver = self.server.receiver
        failure = receiver._arrived({k.lower(): v for k, v in self.headers.items()})
        if failure is not None:
            status, retry_after = failure
            extra = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            self._reply(int(status or 503), b"injected failure", "text/plain", extra)
            return
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != PROTOBUF:
            self._error(415, f"unsupported content type {content_type!r}; want {PROTOBUF}")
            return
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("identity", ""):
                self._error(415, f"unsupported content encoding {encoding!r}")
                return
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        except Exception as exc:
            self._error(400, f"undecodable OTLP request: {exc}")
            return
        receiver._record(request)
        self._reply(200, trace_service_pb2.ExportTraceServiceResponse().SerializeToString())

    def do_GET(self) -> None:
        self._error(404 if self.path.split("?", 1)[0] != TRACES_PATH else 405, "POST only")


class OtlpHttpReceiver(_Receiver):
    """OTLP/HTTP (protobuf) trace receiver on ``http://127.0.0.1:<ephemeral>``."""

    protocol = "http/protobuf"

    def __init__(self) -> None:
        super().__init__()
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def traces_url(self) -> str:
        """The full signal URL, as ``OTLPSpanExporter(endpoint=...)`` wants it."""
        return f"{self.endpoint}{TRACES_PATH}"

    def _start(self) -> None:
        server = _HttpServer((HOST, 0), _Handler)
        server.receiver = self
        self._server, self._port = server, int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"otlp-http-{self._port}", daemon=True)
        self._thread.start()

    def _stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()      # stops serve_forever
        self._thread.join(timeout=10)
        self._server.server_close()  # closes the socket, joins request threads
        self._server = self._thread = None


# --------------------------------------------------------------------------- gRPC


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpGrpcReceiver) -> None:
        self.receiver = receiver

    def Export(self, request, context):  # the gRPC method name
        metadata = {}
        for key, value in context.invocation_metadata():
            metadata[key.lower()] = value if isinstance(value, str) else value.hex()
        failure = self.receiver._arrived(metadata)
        if failure is not None:
            status, retry_after = failure
            if retry_after is not None:
                whole = int(retry_after)
                info = RetryInfo(retry_delay=Duration(seconds=whole,
                                                      nanos=int((retry_after - whole) * 1e9)))
                context.set_trailing_metadata(
                    (("google.rpc.retryinfo-bin", info.SerializeToString()),))
            context.abort(status or grpc.StatusCode.UNAVAILABLE, "injected failure")
        self.receiver._record(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpGrpcReceiver(_Receiver):
    """OTLP/gRPC trace receiver on ``127.0.0.1:<ephemeral>`` (insecure)."""

    protocol = "grpc"

    def __init__(self) -> None:
        super().__init__()
        self._server: grpc.Server | None = None
        self._pool: futures.ThreadPoolExecutor | None = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``, as ``grpc.insecure_channel`` wants it."""
        return f"{HOST}:{self.port}"

    def env(self) -> dict[str, str]:
        return {**super().env(), "OTEL_EXPORTER_OTLP_INSECURE": "true"}

    def _start(self) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc")
        server = grpc.server(self._pool, options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), server)
        port = server.add_insecure_port(f"{HOST}:0")
        if not port:
            raise RuntimeError(f"could not bind a gRPC port on {HOST}")
        server.start()
        self._server, self._port = server, port

    def _stop(self) -> None:
        assert self._server is not None and self._pool is not None
        self._server.stop(grace=None).wait(timeout=10)
        self._pool.shutdown(wait=True)
        self._server = self._pool = None


# --------------------------------------------------------------------------- fixtures


def clear_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every OTEL_* exporter variable a developer's shell might have set."""
    for name in OTEL_EXPORTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def clear_trace_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset the exporter variables and what else shapes a run's trace (a parent
    ``TRACEPARENT``, a disabled SDK, a service name, resource attributes)."""
    clear_otel_env(monkeypatch)
    for name in ("TRACEPARENT", "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME",
                 "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(name="otlp_http")
def otlp_http_fixture() -> Iterator[OtlpHttpReceiver]:
    """A started OTLP/HTTP receiver, stopped after the test."""
    with OtlpHttpReceiver() as receiver:
        yield receiver


@pytest.fixture(name="otlp_grpc")
def otlp_grpc_fixture() -> Iterator[OtlpGrpcReceiver]:
    """A started OTLP/gRPC receiver, stopped after the test."""
    with OtlpGrpcReceiver() as receiver:
        yield receiver
