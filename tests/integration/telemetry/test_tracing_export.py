"""How spans leave the process: in the background, in batches, all of them by close().

A run does not wait for its spans to be exported (the batch processor sends them
while the stages run); ``Tracing.close()`` sends what is left before the process
exits. A collector that is down is said once, not once per run or per batch.
Real OTLP receivers on 127.0.0.1 (tests/otlp.py) decode what arrives.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.plan import Plan, compile_plan
from runner.registry import StageRegistry
from runner.sdk import QuantSDK
from runner.telemetry import SPANS_FILE, TelemetryConfig, Tracing, decode_jsonl
from tests.otlp import OtlpHttpReceiver
from tests.rotel import free_port

pytestmark = pytest.mark.integration

SAFETY_S = 120.0  # a run that waits for the gate fails the test instead of hanging


def noop(ctx: Context) -> Context:
    return ctx


def annotate(ctx: Context) -> Context:
    span = trace.get_current_span()
    span.set_attribute("solver.iterations", 7)
    span.add_event("converged", {"solver.residual": 0.5})
    return ctx


def sdk_with(steps: Sequence[str], tmp_path) -> tuple[QuantSDK, Plan]:
    registry = StageRegistry()
    registry.register("noop", noop)
    registry.register("annotate", annotate)
    doc = {"pipelines": {"p": {"steps": list(steps)}}}
    plan = compile_plan(parse_manifest(json.dumps(doc)), "p", registry=registry)
    sdk = QuantSDK(artifacts=tmp_path / "art", workspace_root=tmp_path / "ws", registry=registry)
    sdk._plans[plan.pipeline] = plan
    return sdk, plan


def tracing_for(env: dict[str, str], monkeypatch) -> Tracing:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Tracing(TelemetryConfig.from_env())


class Gate(SpanExporter):
    """Holds every export until opened, then hands it to the real exporter."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.open = threading.Event()
        self.held = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.held.set()
        self.open.wait(SAFETY_S)
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()


def test_a_run_does_not_wait_for_the_export_and_close_sends_every_span(tmp_path, monkeypatch):
    steps = ["noop"] * 700  # more than one batch (512): the exporter works during the run
    sdk, _ = sdk_with(steps, tmp_path)
    with OtlpHttpReceiver() as receiver:
        tracing = tracing_for(receiver.env(), monkeypatch)
        assert tracing.exporter is not None
        gate = Gate(tracing.exporter.inner)
        tracing.exporter.inner = gate
        try:
            result = sdk.run_pipeline("p", Context(), tracing=tracing, checkpoints=False)
            # the run returned while its spans could not leave the process yet
            assert receiver.spans == []
            assert gate.held.wait(SAFETY_S)  # a full batch went to the exporter by itself
        finally:
            gate.open.set()
            tracing.close()
        arrived = receiver.spans
        requests = receiver.requests
    offline = decode_jsonl((tmp_path / "art/runs" / result.run_id / SPANS_FILE).read_bytes())
    assert len(offline) == 1 + len(steps)
    assert {(s["span_id"], s["parent_span_id"]) for s in offline} == {
        (s.span_id, s.parent_span_id) for s in arrived}
    assert {s.trace_id for s in arrived} == {result.trace_id}
    assert 2 <= requests < len(arrived) / 100  # batched, not a request per span


def test_an_unreachable_collector_is_said_once_and_every_run_keeps_its_spans(
        tmp_path, monkeypatch, caplog):
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    sdk, _ = sdk_with(["noop", "noop", "noop"], tmp_path)
    tracing = tracing_for(env, monkeypatch)
    caplog.set_level(logging.WARNING, logger="runner.telemetry")
    try:
        first = sdk.run_pipeline("p", Context(), tracing=tracing, checkpoints=False)
        assert tracing.flush() is False  # the first batch finds the collector down
        second = sdk.run_pipeline("p", Context(), tracing=tracing, checkpoints=False)
    finally:
        tracing.close()
    said = [r.getMessage() for r in caplog.records
            if "traces not exported" in r.getMessage()]
    assert len(said) == 1, said
    assert first.run_id in said[0] and env["OTEL_EXPORTER_OTLP_ENDPOINT"] in said[0]
    for run in (first, second):
        spans = decode_jsonl((tmp_path / "art/runs" / run.run_id / SPANS_FILE).read_bytes())
        assert len([s for s in spans if s["attributes"]["runner.kind"] == "stage"]) == 3


def test_what_a_stage_adds_to_the_current_span_lands_on_its_step_span(tmp_path, monkeypatch):
    sdk, _ = sdk_with(["noop", "annotate"], tmp_path)
    with OtlpHttpReceiver() as receiver:
        tracing = tracing_for(receiver.env(), monkeypatch)
        try:
            result = sdk.run_pipeline("p", Context(), tracing=tracing, checkpoints=False)
        finally:
            tracing.close()
        sent = receiver.span("stage annotate")
    offline = {s["name"]: s for s in decode_jsonl(
        (tmp_path / "art/runs" / result.run_id / SPANS_FILE).read_bytes())}
    kept = offline["stage annotate"]
    for attrs in (sent.attributes, kept["attributes"]):
        assert attrs["solver.iterations"] == 7
        assert attrs["runner.kind"] == "stage" and attrs["runner.status"] == "succeeded"
        assert attrs["runner.run_id"] == result.run_id
    assert sent.event("converged")["solver.residual"] == 0.5
    assert [e["name"] for e in kept["events"]] == ["converged"]
    assert sent.status_code == "OK" and kept["status"]["code"] == "OK"
