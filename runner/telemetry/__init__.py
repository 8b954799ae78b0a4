"""Telemetry: the run's trace over OTLP, its offline spans, structured logs.

The names below load on first use (PEP 562), so that ``runner.telemetry.logs``
(the command line's logging) does not load the OpenTelemetry SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` on first use, then keep the name here."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'runner.telemetry' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
