"""Telemetry: the run's trace over OTLP, its offline spans, structured logs.

The names below load on first use (PEP 562), so that ``runner.telemetry.logs``
(the command line's logging) does not load the OpenTelemetry SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner._lazy import lazy_getattr

if TYPE_CHECKING:
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

_MODULE_OF = {
    **dict.fromkeys(("SPANS_FILE", "decode_jsonl", "encode_jsonl", "span_tree"),
                    "runner.telemetry.spans"),
    **dict.fromkeys(("TelemetryConfig", "Tracing", "TracingHook", "current_traceparent",
                     "get_tracing"), "runner.telemetry.tracing"),
}


__getattr__ = lazy_getattr("runner.telemetry", _MODULE_OF, globals())
