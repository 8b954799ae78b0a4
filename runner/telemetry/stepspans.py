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
when the span ends. A step span's :class:`~opentelemetry.trace.SpanContext` is
made only when something asks for it (stage code, a log record, the exporter):
the spans.jsonl form needs only its ids as hex, and the ids of its trace and
parent are turned into hex once per parent, not once per span.

While the step runs, its :class:`StepSpan` is the current span, so everything
that looks for it still finds it: spans the stage's own code opens nest under
it, log records carry its ids, and attributes or events the stage adds to
``trace.get_current_span()`` land on it.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from random import getrandbits
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode
from opentelemetry.util import types

from runner.telemetry.spans import OK, plain_listed, plain_span, resource_attrs

__all__ = ["OK", "CachedResource", "SpanMaker", "StepSpan"]

_HEX_MAX = 4096


def new_span_id() -> int:
    """A random, valid (non-zero) span id, as the SDK's ``RandomIdGenerator`` makes;
    :meth:`SpanMaker.start` calls it only when ``getrandbits(64)`` drew zero."""
    span_id = getrandbits(64)
    while not span_id:  # pragma: no cover - one chance in 2**64
        span_id = getrandbits(64)
    return span_id


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

    __slots__ = ("_added", "_context", "_events", "_name", "attributes", "base", "ids",
                 "listed", "parent", "span_id", "start_ns")

    def __init__(self, name: str, span_id: int, parent: SpanContext,
                 attributes: Mapping[str, Any], start_ns: int,
                 base: Mapping[str, Any] | None, ids: tuple[str, str, bool],
                 listed: bool = False) -> None:
        self._name = name
        self.span_id = span_id
        self._context: SpanContext | None = None
        self.parent = parent
        self.attributes = attributes
        self.base = base
        self.ids = ids
        """The trace id and the parent's span id as hex (spans.jsonl), and whether
        the trace is sampled."""
        self.listed = listed
        """True when no value of ``base`` and ``attributes`` is a tuple (spans.jsonl
        has lists): they go into the plain form as they are."""
        self.start_ns = start_ns
        self._events: list[Event] | None = None
        self._added: dict[str, Any] | None = None

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:  # made on first use: most step spans are never asked
            parent = self.parent
            context = self._context = SpanContext(parent.trace_id, self.span_id, False,
                                                  parent.trace_flags, parent.trace_state)
        return context

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
        if self._events is None:
            self._events = []
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
    """Builds finished spans of one tracer (its resource and scope) and hands them on.

    Given the ``kept`` list of the span's run (the run's list in the collector),
    :meth:`finish` appends the span's spans.jsonl form to it and hands ``export``
    (the exporting processor's ``on_end``, when spans are exported) the SDK span.
    Without it, the span goes where the collector routes it: to ``emit`` (the SDK
    span), or, with ``emit_plain`` (nothing exported), to that in spans.jsonl form.
    """

    def __init__(self, *, resource: Resource, scope: InstrumentationScope,
                 emit: Callable[[ReadableSpan], None],
                 emit_plain: Callable[[dict[str, Any]], None] | None = None,
                 export: Callable[[ReadableSpan], None] | None = None) -> None:
        self.resource = resource
        self.scope = scope
        self.emit = emit
        self.emit_plain = emit_plain
        self.export = export
        self._resource_attrs = resource_attrs(resource)
        self._hex: dict[int, tuple[SpanContext, tuple[str, str, bool]]] = {}

    def _ids(self, parent: SpanContext) -> tuple[str, str, bool]:
        """The trace id and ``parent``'s span id as hex, and whether its trace is
        sampled: once per parent span."""
        found = self._hex.get(id(parent))
        if found is None or found[0] is not parent:
            if len(self._hex) >= _HEX_MAX:
                self._hex.clear()  # a long-lived process: start over
            found = self._hex[id(parent)] = (parent, (
                f"{parent.trace_id:032x}", f"{parent.span_id:016x}",
                parent.trace_flags.sampled))
        return found[1]

    def start(self, name: str, parent: SpanContext, attributes: Mapping[str, Any],
              start_ns: int | None = None, *, base: Mapping[str, Any] | None = None,
              listed: bool = False) -> StepSpan:
        """A span under ``parent`` with ``base`` then ``attributes`` (neither copied:
        the span never changes them); ``listed``: no value of theirs is a tuple."""
        return StepSpan(name, getrandbits(64) or new_span_id(), parent, attributes,
                        time.time_ns() if start_ns is None else start_ns, base,
                        self._ids(parent), listed)

    def finish(self, span: StepSpan, *, status: Status, attributes: Mapping[str, Any],
               events: Sequence[Event] = (), end_ns: int | None = None,
               kept: list[Any] | None = None) -> None:
        """End ``span`` with ``attributes`` added to its own and ``events`` after the
        stage's; nothing is emitted for a span its trace does not sample."""
        if not span.ids[2]:  # its trace is not sampled
            return
        attrs = ({**span.base, **span.attributes, **attributes} if span.base
                 else {**span.attributes, **attributes})
        if span._added:  # what the stage's code set: validated as the SDK would
            attrs = dict(BoundedAttributes(attributes={**span._added, **attrs}))
        all_events = [*span._events, *events] if span._events else events
        end = time.time_ns() if end_ns is None else end_ns
        if kept is not None:
            kept.append(self._plain(span, status, attrs, all_events, end))
            if self.export is not None:
                self.export(self._readable(span, status, attrs, all_events, end))
        elif self.emit_plain is not None:
            self.emit_plain(self._plain(span, status, attrs, all_events, end))
        else:
            self.emit(self._readable(span, status, attrs, all_events, end))

    def _readable(self, span: StepSpan, status: Status, attrs: dict[str, Any],
                  events: Sequence[Event], end_ns: int) -> ReadableSpan:
        """The SDK's form of a finished step span, for the exporter (which encodes
        a list attribute value as it does a tuple)."""
        return ReadableSpan(
            name=span._name, context=span.get_span_context(), parent=span.parent,
            resource=self.resource, attributes=attrs, events=events,
            status=status, start_time=span.start_ns, end_time=end_ns,
            instrumentation_scope=self.scope)

    def _plain(self, span: StepSpan, status: Status, attrs: dict[str, Any],
               events: Sequence[Event], end_ns: int) -> dict[str, Any]:
        """:func:`~runner.telemetry.spans.plain_span` of a step span, its ids as hex
        made once per parent: the same dict, built in one go. ``attrs`` holds no tuple
        when the span is ``listed`` and its stage's code added nothing."""
        if events or not span.listed or span._added:
            return plain_span(name=span._name, context=span.get_span_context(),
                              parent=span.parent, start_ns=span.start_ns, end_ns=end_ns,
                              status=status, attributes=attrs, events=events,
                              resource=self.resource)
        return plain_listed(span.ids[0], f"{span.span_id:016x}", span.ids[1], span._name,
                            span.start_ns, end_ns, status, attrs, self._resource_attrs)
