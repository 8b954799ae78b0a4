"""Telemetry: the run's trace over OTLP, its offline spans, structured logs."""

from __future__ import annotations

from runner.telemetry.spans import SPANS_FILE, decode_jsonl, encode_jsonl, span_tree
from runner.telemetry.tracing import (
    TelemetryConfig,
    Tracing,
    TracingHook,
    current_traceparent,
    get_tracing,
)

__all__ = ["SPANS_FILE", "TelemetryConfig", "Tracing", "TracingHook", "current_traceparent",
           "decode_jsonl", "encode_jsonl", "get_tracing", "span_tree"]
