"""Spans through a real collector: SDK exporter -> rotel -> our OTLP receiver.

rotel (``tests.rotel``) listens on 127.0.0.1 for OTLP over gRPC and HTTP and
forwards over gRPC or HTTP to a ``tests.otlp`` receiver; trace ids, parent
links, attributes, events and status must come out the other end unchanged.
Skipped, with the reason, where the rotel binary cannot run.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.otlp import OtlpGrpcReceiver, OtlpHttpReceiver, clear_otel_env
from tests.rotel import RotelCollector, require_rotel

pytestmark = pytest.mark.integration

ATTRS = {"str": "hello", "int": 42, "float": 2.5, "bool": True, "strs": ["a", "b"], "ints": [1, 2]}


@pytest.fixture(autouse=True)
def _no_developer_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_otel_env(monkeypatch)


@pytest.fixture(scope="module")
def rotel_bin() -> str:
    return require_rotel()


@pytest.fixture(params=["grpc", "http"])
def downstream(request: pytest.FixtureRequest) -> Iterator[OtlpGrpcReceiver | OtlpHttpReceiver]:
    """The receiver rotel forwards to, once per rotel exporter protocol."""
    with (OtlpGrpcReceiver() if request.param == "grpc" else OtlpHttpReceiver()) as rx:
        yield rx


@pytest.fixture
def rotel(rotel_bin: str, downstream) -> Iterator[RotelCollector]:
    protocol_out = "grpc" if isinstance(downstream, OtlpGrpcReceiver) else "http"
    with RotelCollector(downstream.endpoint, protocol_out) as collector:
        yield collector


def exporter_into(collector: RotelCollector, protocol_in: str) -> SpanExporter:
    if protocol_in == "grpc":
        return GrpcSpanExporter(endpoint=collector.grpc_endpoint, insecure=True)
    return HttpSpanExporter(endpoint=f"{collector.http_endpoint}/v1/traces")


def emit(exporter: SpanExporter, tag: str) -> dict[str, ReadableSpan]:
    provider = TracerProvider(resource=Resource.create({"service.name": f"rotel-{tag}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.rotel")
    try:
        with (
            tracer.start_as_current_span(f"{tag}.parent", kind=SpanKind.SERVER,
                                         attributes=ATTRS) as parent,
            tracer.start_as_current_span(f"{tag}.child", set_status_on_exception=False) as child,
        ):
            child.add_event("checkpoint", {"step": 3})
            with tracer.start_as_current_span(f"{tag}.grandchild") as grandchild:
                grandchild.set_attribute("depth", 2)
            child.set_status(Status(StatusCode.ERROR, "bad"))
    finally:
        provider.shutdown()
    return {"parent": parent, "child": child, "grandchild": grandchild}  # type: ignore[dict-item]


def ids(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@pytest.mark.parametrize("protocol_in", ["grpc", "http"])
def test_spans_pass_through_rotel_intact(rotel: RotelCollector, downstream,
                                         protocol_in: str) -> None:
    tag = f"{protocol_in}-to-{rotel.protocol_out}"
    sdk = emit(exporter_into(rotel, protocol_in), tag)
    got = downstream.wait_for_names(f"{tag}.parent", f"{tag}.child", f"{tag}.grandchild",
                                    timeout=15)
    parent, child, grandchild = (got[f"{tag}.{n}"] for n in ("parent", "child", "grandchild"))

    trace_id = ids(sdk["parent"])[0]
    assert {parent.trace_id, child.trace_id, grandchild.trace_id} == {trace_id}
    assert (parent.trace_id, parent.span_id) == ids(sdk["parent"])
    assert (child.trace_id, child.span_id) == ids(sdk["child"])
    assert (grandchild.trace_id, grandchild.span_id) == ids(sdk["grandchild"])
    assert parent.parent_span_id is None
    assert child.parent_span_id == parent.span_id
    assert grandchild.parent_span_id == child.span_id

    assert parent.attributes == ATTRS
    for key, value in ATTRS.items():
        assert type(parent.attributes[key]) is type(value), key
    assert grandchild.attributes == {"depth": 2}
    assert parent.kind == "SERVER" and child.kind == "INTERNAL"
    assert child.status_code == "ERROR" and child.status_message == "bad"
    assert child.event("checkpoint") == {"step": 3}
    assert parent.resource["service.name"] == f"rotel-{tag}"
    assert parent.scope == "tests.rotel"
    assert parent.start_time_unix_nano == sdk["parent"].start_time
    assert parent.end_time_unix_nano == sdk["parent"].end_time

    # it really came through rotel, not from the Python exporter
    assert downstream.headers and all("Rotel" in h.get("user-agent", "")
                                      for h in downstream.headers)
    assert len(downstream.spans) == 3


def test_rotel_configured_by_environment(rotel: RotelCollector, downstream,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK finds rotel from OTEL_* variables alone, for both of its receivers."""
    for protocol in ("grpc", "http"):
        with monkeypatch.context() as mp:
            for name, value in rotel.env(protocol).items():
                mp.setenv(name, value)
            exporter = GrpcSpanExporter() if protocol == "grpc" else HttpSpanExporter()
            sdk = emit(exporter, f"env-{protocol}")
        got = downstream.wait_for_names(f"env-{protocol}.parent", f"env-{protocol}.child")
        assert got[f"env-{protocol}.parent"].span_id == ids(sdk["parent"])[1]
        assert got[f"env-{protocol}.child"].parent_span_id == ids(sdk["parent"])[1]


def test_rotel_retries_a_failing_downstream(rotel: RotelCollector, downstream) -> None:
    downstream.fail_next(1)
    sdk = emit(exporter_into(rotel, "grpc"), "retry")
    got = downstream.wait_for_names("retry.parent", "retry.child", "retry.grandchild",
                                    timeout=15)
    assert got["retry.child"].parent_span_id == ids(sdk["parent"])[1]
    assert downstream.failed == 1


def listening_sockets(pid: int) -> list[str]:
    """The local addresses the process ``pid`` listens on (TCP and UDP), from ``ss``."""
    out = subprocess.run(["ss", "-H", "-l", "-n", "-p", "-t", "-u"], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    return [line.split()[4] for line in out.splitlines() if f"pid={pid}," in line]


def test_rotel_listens_on_loopback_only_and_stops(rotel_bin: str) -> None:
    with OtlpGrpcReceiver() as rx:
        collector = RotelCollector(rx.endpoint)
        with collector:
            assert collector.running()
            pid = collector.pid
            assert pid is not None
            try:
                addresses = listening_sockets(pid)
            except (OSError, subprocess.SubprocessError) as exc:
                pytest.skip(f"cannot list sockets with ss: {exc}")
            assert sorted(addresses) == sorted([f"127.0.0.1:{collector.grpc_port}",
                                                f"127.0.0.1:{collector.http_port}"])
            assert collector.grpc_endpoint == f"http://127.0.0.1:{collector.grpc_port}"
            assert collector.http_endpoint == f"http://127.0.0.1:{collector.http_port}"
            # no internal telemetry, nothing read from the environment
            assert "--enable-internal-telemetry" not in collector.command
        assert not collector.running() and collector.pid is None
        assert collector.returncode is not None
        for port in (collector.grpc_port, collector.http_port):
            with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        assert re.search(r"Starting Rotel", collector.output())


def test_rotel_rejects_unknown_protocol() -> None:
    with pytest.raises(ValueError, match="protocol_out"):
        RotelCollector("http://127.0.0.1:1", protocol_out="kafka")
