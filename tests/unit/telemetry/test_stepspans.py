"""Step spans (runner.telemetry.stepspans): built without the SDK tracer, yet the
same spans, in spans.jsonl and over OTLP, as the SDK's own form of them."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from runner.telemetry.spans import from_readable, plain_span
from runner.telemetry.stepspans import OK, CachedResource, SpanMaker, StepSpan

RESOURCE = CachedResource({"service.name": "runner", "process.pid": 7})
SCOPE = InstrumentationScope("runner", "0")
PARENT = SpanContext(0x0123456789ABCDEF0123456789ABCDEF, 0x1122334455667788, False,
                     TraceFlags(TraceFlags.SAMPLED))
BASE = {"runner.run_id": "r1", "runner.pipeline": "p", "runner.attempt": 2}
STATIC = {"runner.kind": "stage", "runner.path": "p[0]", "runner.stage": "s",
          "runner.stage.writes": ["a", "b"]}


def maker(*, exported: bool) -> tuple[SpanMaker, list[ReadableSpan], list[Any]]:
    emitted: list[ReadableSpan] = []
    plain: list[Any] = []
    spans = SpanMaker(resource=RESOURCE, scope=SCOPE, emit=emitted.append,
                      emit_plain=None if exported else plain.append,
                      export=emitted.append if exported else None)
    return spans, emitted, plain


def sdk_form(span: StepSpan, status: Status, attrs: dict[str, Any],
             events: list[Event], end_ns: int) -> dict[str, Any]:
    """What the SDK span with these fields turns into in spans.jsonl."""
    return from_readable(ReadableSpan(
        name=span._name, context=span.get_span_context(), parent=PARENT, resource=RESOURCE,
        attributes={k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()},
        events=events, status=status, start_time=span.start_ns, end_time=end_ns,
        instrumentation_scope=SCOPE))


def test_a_kept_step_span_is_the_sdk_spans_plain_form() -> None:
    spans, emitted, plain = maker(exported=False)
    kept: list[Any] = []
    span = spans.start("stage s", PARENT, STATIC, 10, base=BASE, listed=True)
    spans.finish(span, status=OK, attributes={"runner.status": "succeeded"}, end_ns=20,
                 kept=kept)
    assert emitted == [] and plain == []  # straight to the run's list
    assert kept == [sdk_form(span, OK, {**BASE, **STATIC, "runner.status": "succeeded"}, [],
                             20)]
    assert kept[0]["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert kept[0]["parent_span_id"] == "1122334455667788"


def test_a_span_the_stage_added_to_or_that_failed_keeps_the_sdk_form() -> None:
    spans, _, _ = maker(exported=False)
    kept: list[Any] = []
    span = spans.start("stage s", PARENT, STATIC, 10, base=BASE, listed=True)
    span.set_attribute("user.shape", (3, 4))
    span.add_event("note", {"k": "v"}, timestamp=15)
    error = Event("exception", {"exception.type": "ValueError", "exception.message": "x"}, 18)
    failed = Status(StatusCode.ERROR, "ValueError: x")
    spans.finish(span, status=failed, attributes={"runner.status": "failed"},
                 events=(error,), end_ns=20, kept=kept)
    attrs = {"user.shape": (3, 4), **BASE, **STATIC, "runner.status": "failed"}
    assert kept == [sdk_form(span, failed, attrs, [*(span._events or []), error], 20)]
    assert kept[0]["attributes"]["user.shape"] == [3, 4]
    assert [e["name"] for e in kept[0]["events"]] == ["note", "exception"]


def test_an_exported_step_span_goes_to_the_exporter_and_its_plain_form_to_the_run() -> None:
    spans, exported, _ = maker(exported=True)
    kept: list[Any] = []
    span = spans.start("stage s", PARENT, STATIC, 10, base=BASE, listed=True)
    spans.finish(span, status=OK, attributes={"runner.status": "succeeded"}, end_ns=20,
                 kept=kept)
    assert len(exported) == 1 and len(kept) == 1
    assert from_readable(exported[0]) == kept[0]  # the same span both ways


def test_without_the_runs_list_a_span_goes_where_the_collector_routes_it() -> None:
    spans, emitted, plain = maker(exported=False)
    span = spans.start("merge m", PARENT, {"runner.kind": "merge", "runner.x": ("a",)}, 1)
    spans.finish(span, status=OK, attributes={"runner.status": "succeeded"}, end_ns=2)
    assert emitted == []
    assert plain == [plain_span(
        name="merge m", context=span.get_span_context(), parent=PARENT, start_ns=1, end_ns=2,
        status=OK, attributes={"runner.kind": "merge", "runner.x": ["a"],
                               "runner.status": "succeeded"}, events=(), resource=RESOURCE)]
    exporting, sent, _ = maker(exported=True)
    span = exporting.start("merge m", PARENT, {"runner.kind": "merge"}, 1)
    exporting.finish(span, status=OK, attributes={}, end_ns=2)
    assert [s.name for s in sent] == ["merge m"]


def test_a_step_spans_context_is_one_object_under_its_parent() -> None:
    spans, _, _ = maker(exported=False)
    span = spans.start("stage s", PARENT, STATIC, 10, base=BASE, listed=True)
    context = span.get_span_context()
    assert context is span.get_span_context()
    assert context.trace_id == PARENT.trace_id and context.span_id == span.span_id != 0
    assert context.trace_flags.sampled and not context.is_remote


def test_a_span_of_an_unsampled_trace_is_not_emitted() -> None:
    spans, emitted, plain = maker(exported=True)
    unsampled = SpanContext(PARENT.trace_id, PARENT.span_id, False, TraceFlags(0))
    kept: list[Any] = []
    span = spans.start("stage s", unsampled, STATIC, 10, base=BASE, listed=True)
    spans.finish(span, status=OK, attributes={}, end_ns=20, kept=kept)
    assert emitted == plain == kept == []
