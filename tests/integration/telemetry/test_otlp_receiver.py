"""The test-side OTLP receivers (``tests.otlp``) against the real OpenTelemetry SDK.

Each receiver is a local server; the SDK's own OTLP exporters (HTTP/protobuf
and gRPC) send to it, configured by argument and by environment alone.
"""

from __future__ import annotations

import gzip
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.otlp import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    ReceivedSpan,
    clear_otel_env,
    encode_request,
    otlp_grpc_fixture,  # noqa: F401 - the otlp_grpc fixture
    otlp_http_fixture,  # noqa: F401 - the otlp_http fixture
)

pytestmark = pytest.mark.integration

Receiver = OtlpHttpReceiver | OtlpGrpcReceiver


@pytest.fixture(params=["http", "grpc"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    """Each test once per protocol."""
    return request.getfixturevalue(f"otlp_{request.param}")


@pytest.fixture(autouse=True)
def _no_developer_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_otel_env(monkeypatch)


def exporter_for(rx: Receiver, **kw) -> SpanExporter:
    """The SDK exporter for the receiver's protocol, configured by argument."""
    if isinstance(rx, OtlpHttpReceiver):
        return HttpSpanExporter(endpoint=rx.traces_url, **kw)
    return GrpcSpanExporter(endpoint=rx.endpoint, insecure=True, **kw)


def exporter_from_env(rx: Receiver) -> SpanExporter:
    """The SDK exporter for the receiver's protocol, with no arguments at all."""
    return HttpSpanExporter() if isinstance(rx, OtlpHttpReceiver) else GrpcSpanExporter()


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


PARENT_ATTRS = {"str": "hello", "int": 42, "float": 2.5, "bool": True,
                "strs": ["a", "b"], "ints": [1, 2, 3], "floats": [0.5, 1.5], "bools": [True, False]}


def emit(exporter: SpanExporter, service: str = "otlp-receiver-test") -> dict[str, ReadableSpan]:
    """A parent and a child span (event, recorded exception, ERROR status); shuts down after."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.otlp")
    try:
        with (
            tracer.start_as_current_span("parent", kind=SpanKind.SERVER,
                                         attributes=PARENT_ATTRS) as parent,
            tracer.start_as_current_span("child", kind=SpanKind.CLIENT, record_exception=False,
                                         set_status_on_exception=False) as child,
        ):
            child.add_event("checkpoint", {"step": 3, "label": "mid"})
            try:
                raise ValueError("boom")
            except ValueError as exc:
                child.record_exception(exc)
                child.set_status(Status(StatusCode.ERROR, "it went boom"))
    finally:
        provider.shutdown()
    return {"parent": parent, "child": child}  # type: ignore[dict-item]


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


# --------------------------------------------------------------------------- decoding


def test_parent_and_child_arrive_decoded(receiver: Receiver) -> None:
    sdk = emit(exporter_for(receiver))
    got = receiver.wait_for_names("parent", "child")
    parent, child = got["parent"], got["child"]
    assert len(receiver.spans) == 2

    parent_trace, parent_id = hex_ids(sdk["parent"])
    child_trace, child_id = hex_ids(sdk["child"])
    assert parent.trace_id == child.trace_id == parent_trace == child_trace
    assert (parent.span_id, child.span_id) == (parent_id, child_id)
    assert len(parent.trace_id) == 32 and len(parent.span_id) == 16
    assert parent.trace_id == parent.trace_id.lower()
    assert parent.parent_span_id is None
    assert child.parent_span_id == parent.span_id

    assert (parent.kind, child.kind) == ("SERVER", "CLIENT")
    assert parent.scope == child.scope == "tests.otlp"
    assert parent.resource["service.name"] == "otlp-receiver-test"
    assert parent.resource["telemetry.sdk.language"] == "python"
    # the SDK's own clock readings, to the nanosecond
    for name, span in (("parent", parent), ("child", child)):
        sent = sdk[name]
        assert (span.start_time_unix_nano, span.end_time_unix_nano) == (
            sent.start_time, sent.end_time), name
    assert parent.duration_ns == sdk["parent"].end_time - sdk["parent"].start_time
    assert parent.start_time_unix_nano <= child.start_time_unix_nano
    assert child.end_time_unix_nano <= parent.end_time_unix_nano

    # attribute types survive the trip, bools do not turn into ints or back
    assert parent.attributes == PARENT_ATTRS
    for key, value in PARENT_ATTRS.items():
        assert type(parent.attributes[key]) is type(value), key
    assert [type(v) for v in parent.attributes["bools"]] == [bool, bool]
    assert [type(v) for v in parent.attributes["floats"]] == [float, float]

    assert parent.status_code == "UNSET" and parent.status_message == ""
    assert child.status_code == "ERROR"
    assert child.status_message == "it went boom"
    assert [name for name, _ in child.events] == ["checkpoint", "exception"]
    assert child.event("checkpoint") == {"step": 3, "label": "mid"}
    exception = child.event("exception")
    assert exception["exception.type"] == "ValueError"
    assert exception["exception.message"] == "boom"
    assert "raise ValueError" in exception["exception.stacktrace"]
    with pytest.raises(KeyError, match="no event 'missing'"):
        child.event("missing")

    # SimpleSpanProcessor: one request per span, each from the Python exporter
    assert receiver.requests == 2 and receiver.failed == 0
    assert all("OTel-OTLP-Exporter-Python" in h["user-agent"] for h in receiver.headers)


def test_gzip_from_the_http_exporter(otlp_http: OtlpHttpReceiver) -> None:
    emit(exporter_for(otlp_http, compression=Compression.Gzip))
    otlp_http.wait_for_names("parent", "child")
    assert {h.get("content-encoding") for h in otlp_http.headers} == {"gzip"}
    assert otlp_http.span("child").parent_span_id == otlp_http.span("parent").span_id


def test_gzip_from_the_grpc_exporter(otlp_grpc: OtlpGrpcReceiver) -> None:
    emit(exporter_for(otlp_grpc, compression=grpc.Compression.Gzip))
    got = otlp_grpc.wait_for_names("parent", "child")
    assert got["child"].parent_span_id == got["parent"].span_id
    assert got["parent"].attributes == PARENT_ATTRS


# --------------------------------------------------------------------------- configuration


def test_configured_by_environment_alone(receiver: Receiver,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    env = receiver.env()
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == receiver.endpoint == \
        f"http://127.0.0.1:{receiver.port}"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == receiver.protocol
    if isinstance(receiver, OtlpGrpcReceiver):
        assert env["OTEL_EXPORTER_OTLP_INSECURE"] == "true"
    else:
        assert "OTEL_EXPORTER_OTLP_INSECURE" not in env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-test-token=abc123,x-tenant=blue%20team")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")

    sdk = emit(exporter_from_env(receiver))
    got = receiver.wait_for_names("parent", "child")
    assert (got["parent"].trace_id, got["parent"].span_id) == hex_ids(sdk["parent"])
    assert got["child"].parent_span_id == got["parent"].span_id
    assert got["parent"].resource["deployment.environment"] == "test"
    for headers in receiver.headers:
        assert headers["x-test-token"] == "abc123"
        assert headers["x-tenant"] == "blue team"


def test_protocols_differ() -> None:
    assert OtlpHttpReceiver.protocol == "http/protobuf"
    assert OtlpGrpcReceiver.protocol == "grpc"


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize("kind", [OtlpHttpReceiver, OtlpGrpcReceiver])
def test_stopped_after_the_context_exits(kind: type[Receiver]) -> None:
    before = set(threading.enumerate())
    with kind() as rx:
        port = rx.port
        assert rx.running and port > 0
        assert not refused(port)
        emit(exporter_for(rx))
        rx.wait_for_names("parent", "child")
    assert not rx.running
    assert refused(port)
    lingering = [t for t in set(threading.enumerate()) - before
                 if t.is_alive() and t.name.startswith("otlp-")]
    assert lingering == []
    rx.stop()  # stopping twice is harmless


def test_each_receiver_gets_its_own_port() -> None:
    with OtlpHttpReceiver() as a, OtlpHttpReceiver() as b, OtlpGrpcReceiver() as c:
        assert len({a.port, b.port, c.port}) == 3


def test_start_twice_is_an_error(otlp_http: OtlpHttpReceiver) -> None:
    with pytest.raises(RuntimeError, match="already started"):
        otlp_http.start()


# --------------------------------------------------------------------------- raw HTTP


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-protobuf", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read(), dict(exc.headers)


def test_http_unknown_paths_are_404(otlp_http: OtlpHttpReceiver) -> None:
    for path in ("/v1/metrics", "/v1/logs", "/", "/v1/traces/extra"):
        status, _, _ = post(f"{otlp_http.endpoint}{path}", encode_request("x"))
        assert status == 404, path
    assert otlp_http.requests == 0 and otlp_http.spans == []


def test_http_replies_with_an_export_response(otlp_http: OtlpHttpReceiver) -> None:
    status, body, headers = post(otlp_http.traces_url, encode_request("raw", attributes={"k": "v"}))
    assert status == 200
    assert headers["Content-Type"] == "application/x-protobuf"
    trace_service_pb2.ExportTraceServiceResponse.FromString(body)
    span = otlp_http.span("raw")
    assert span.trace_id == "01" * 16 and span.span_id == "0000000000000001"
    assert span.attributes == {"k": "v"} and span.parent_span_id is None


def test_http_gzip_and_bad_bodies(otlp_http: OtlpHttpReceiver) -> None:
    status, _, _ = post(otlp_http.traces_url, gzip.compress(encode_request("zipped")),
                        {"Content-Encoding": "gzip"})
    assert status == 200
    assert otlp_http.span("zipped").name == "zipped"
    assert post(otlp_http.traces_url, b"\xff\xfe not protobuf")[0] == 400
    assert post(otlp_http.traces_url, encode_request("x"), {"Content-Encoding": "br"})[0] == 415
    assert post(otlp_http.traces_url, b"{}", {"Content-Type": "application/json"})[0] == 415
    assert [s.name for s in otlp_http.spans] == ["zipped"]


# --------------------------------------------------------------------------- fault injection


def test_http_fail_next(otlp_http: OtlpHttpReceiver) -> None:
    otlp_http.fail_next(2)
    first = post(otlp_http.traces_url, encode_request("lost"))
    assert first[0] == 503 and first[2]["Retry-After"] == "0"
    otlp_http.fail_next(1, status=429, retry_after=None)
    assert post(otlp_http.traces_url, encode_request("lost"))[0] == 503
    second = post(otlp_http.traces_url, encode_request("lost"))
    assert second[0] == 429 and "Retry-After" not in second[2]
    assert post(otlp_http.traces_url, encode_request("kept"))[0] == 200
    assert [s.name for s in otlp_http.spans] == ["kept"]
    assert (otlp_http.requests, otlp_http.failed) == (4, 3)


def test_grpc_fail_next(otlp_grpc: OtlpGrpcReceiver) -> None:
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(encode_request("kept"))
    with grpc.insecure_channel(otlp_grpc.target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        otlp_grpc.fail_next(1)
        otlp_grpc.fail_next(1, status=grpc.StatusCode.RESOURCE_EXHAUSTED, retry_after=None)
        with pytest.raises(grpc.RpcError) as first:
            stub.Export(request, timeout=5)
        assert first.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "google.rpc.retryinfo-bin" in dict(first.value.trailing_metadata())
        with pytest.raises(grpc.RpcError) as second:
            stub.Export(request, timeout=5)
        assert second.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Export(request, timeout=5) == trace_service_pb2.ExportTraceServiceResponse()
    assert [s.name for s in otlp_grpc.spans] == ["kept"]
    assert (otlp_grpc.requests, otlp_grpc.failed) == (3, 2)


def test_sdk_exporter_retries_through_failures(receiver: Receiver) -> None:
    receiver.fail_next(2)
    sdk = emit(exporter_for(receiver))
    got = receiver.wait_for_names("parent", "child")
    assert got["child"].parent_span_id == hex_ids(sdk["parent"])[1]
    assert receiver.failed == 2
    assert receiver.requests == 4  # two spans, the first one tried three times
    assert len(receiver.spans) == 2


# --------------------------------------------------------------------------- waiting


def test_wait_for_times_out_with_a_summary(receiver: Receiver) -> None:
    emit(exporter_for(receiver))
    receiver.wait_for(lambda spans: len(spans) == 2)
    with pytest.raises(AssertionError) as err:
        receiver.wait_for(lambda spans: any(s.name == "never" for s in spans), timeout=0.2)
    message = str(err.value)
    assert "timed out after 0.2s" in message
    assert "2 request(s)" in message and "'parent'" in message and "'child'" in message


def test_span_lookup_and_clear(receiver: Receiver) -> None:
    emit(exporter_for(receiver))
    receiver.wait_for(lambda spans: len(spans) == 2)
    with pytest.raises(AssertionError, match="expected one span 'nope', found 0"):
        receiver.span("nope")
    receiver.fail_next(5)
    receiver.clear()
    assert receiver.spans == [] and receiver.requests == 0 and receiver.headers == []
    assert receiver.failed == 0
    emit(exporter_for(receiver))  # the pending failures were cleared too
    spans = receiver.wait_for(lambda spans: len(spans) == 2)
    assert all(isinstance(s, ReceivedSpan) for s in spans)
    assert receiver.failed == 0


@pytest.fixture
def two_receivers() -> Iterator[tuple[OtlpHttpReceiver, OtlpGrpcReceiver]]:
    with OtlpHttpReceiver() as http_rx, OtlpGrpcReceiver() as grpc_rx:
        yield http_rx, grpc_rx


def test_receivers_keep_their_spans_apart(two_receivers) -> None:
    http_rx, grpc_rx = two_receivers
    emit(exporter_for(http_rx), service="to-http")
    emit(exporter_for(grpc_rx), service="to-grpc")
    http_spans = http_rx.wait_for(lambda s: len(s) == 2)
    grpc_spans = grpc_rx.wait_for(lambda s: len(s) == 2)
    assert {s.resource["service.name"] for s in http_spans} == {"to-http"}
    assert {s.resource["service.name"] for s in grpc_spans} == {"to-grpc"}
