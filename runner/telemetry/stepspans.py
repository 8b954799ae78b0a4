"""Spans made from what the engine already knows: a step's start, end and outcome.

A run makes one span per stage, adapter, merge and checkpoint; at hundreds of
steps, the SDK tracer's per-span work (sampling, attribute validation, locks,
processor fan-out on start) was most of what tracing cost a trivial stage. These
spans need none of it: their attributes are runner's own, known to be valid,
and their parent is already a span of the run (made by the SDK tracer, so the
sampler decided for the whole run there). So a step's span is built once, when
the step ends, as the SDK's own :class:`~opentelemetry.sdk.trace.ReadableSpan`,
and handed to the same span processors (the spans.jsonl collector, the OTLP
batch exporter) the way spans from worker processes already are.

When nothing is exported (spans only kept for spans.jsonl), a finished span skips
the SDK's span object too: it is built straight into the spans.jsonl form
(:func:`~runner.telemetry.spans.plain_span`), the form it would have been turned
into at the end of the run anyway. A step's attributes come in two shared dicts,
the run's and the step's own (the same in every run of a plan), merged once,
when the span ends.

While the step runs, its :class:`StepSpan` is the current span, so everything
that looks for it still finds it: spans the stage's own code opens nest under
it, log records carry its ids, and attributes or events the stage adds to
``trace.get_current_span()`` land on it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode
from opentelemetry.util import types

from runner.telemetry.spans import plain_span

__all__ = ["CachedResource", "SpanMaker", "StepSpan"]

OK = Status(StatusCode.OK)


class CachedResource(Resource):
    """A resource whose hash is computed once: the OTLP encoder hashes the resource
    of every span it sends (a JSON dump of its attributes each time)."""

    _hash: int | None = None

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


class StepSpan(trace.Span):
    """The current span while a step runs; finished into a ReadableSpan by
    :meth:`SpanMaker.finish`. Records what the stage's code adds to it."""

    __slots__ = ("_added", "_context", "_events", "_name", "attributes", "base", "parent",
                 "start_ns")

    def __init__(self, name: str, context: SpanContext, parent: SpanContext,
                 attributes: Mapping[str, Any], start_ns: int,
                 base: Mapping[str, Any] | None = None) -> None:
        self._name = name
        self._context = context
        self.parent = parent
        self.attributes = attributes
        self.base = base
        self.start_ns = start_ns
        self._events: list[Event] = []
        self._added: dict[str, Any] | None = None

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return True

    def end(self, end_time: int | None = None) -> None:
        """The engine ends a step's span when the step ends."""

    def update_name(self, name: str) -> None:
        self._name = name

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._added is None:
            self._added = {}
        self._added.update(attributes)

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        self._events.append(Event(name, BoundedAttributes(attributes=attributes),
                                  timestamp or time.time_ns()))

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """The engine sets a step's status from its outcome."""

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        kind = type(exception)
        module = kind.__module__
        attrs: dict[str, Any] = {
            "exception.type": (f"{module}.{kind.__qualname__}"
                               if module and module != "builtins" else kind.__qualname__),
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
            **(attributes or {}),
        }
        self.add_event("exception", attrs, timestamp)


class SpanMaker:
    """Builds finished spans of one tracer (its resource and scope, its ids) and
    hands them to ``emit``, or, with ``emit_plain`` (nothing exported), hands
    that their spans.jsonl form."""

    def __init__(self, *, resource: Resource, scope: InstrumentationScope,
                 new_span_id: Callable[[], int],
                 emit: Callable[[ReadableSpan], None],
                 emit_plain: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.resource = resource
        self.scope = scope
        self.new_span_id = new_span_id
        self.emit = emit
        self.emit_plain = emit_plain

    def start(self, name: str, parent: SpanContext, attributes: Mapping[str, Any],
              start_ns: int | None = None, *, base: Mapping[str, Any] | None = None
              ) -> StepSpan:
        """A span under ``parent`` with ``base`` then ``attributes`` (neither copied:
        the span never changes them)."""
        context = SpanContext(parent.trace_id, self.new_span_id(), False, parent.trace_flags,
                              parent.trace_state)
        return StepSpan(name, context, parent, attributes,
                        time.time_ns() if start_ns is None else start_ns, base)

    def finish(self, span: StepSpan, *, status: Status, attributes: Mapping[str, Any],
               events: Sequence[Event] = (), end_ns: int | None = None) -> None:
        """End ``span`` with ``attributes`` added to its own and ``events`` after the
        stage's; nothing is emitted for a span its trace does not sample."""
        if not span._context.trace_flags.sampled:
            return
        attrs = ({**span.base, **span.attributes, **attributes} if span.base
                 else {**span.attributes, **attributes})
        if span._added:  # what the stage's code set: validated as the SDK would
            attrs = dict(BoundedAttributes(attributes={**span._added, **attrs}))
        all_events = [*span._events, *events] if span._events else events
        end = time.time_ns() if end_ns is None else end_ns
        if self.emit_plain is not None:
            self.emit_plain(plain_span(
                name=span._name, context=span._context, parent=span.parent,
                start_ns=span.start_ns, end_ns=end, status=status, attributes=attrs,
                events=all_events, resource=self.resource))
            return
        self.emit(ReadableSpan(
            name=span._name, context=span._context, parent=span.parent,
            resource=self.resource, attributes=attrs, events=all_events,
            status=status, start_time=span.start_ns, end_time=end,
            instrumentation_scope=self.scope))
