"""The offline form of a run's spans: ``runs/<RUN_ID>/spans.jsonl``, one span per line.

Each line is a JSON object, the same data an OTLP exporter sends, in plain words:

    {"trace_id": "<32 hex>", "span_id": "<16 hex>", "parent_span_id": "<16 hex>" | null,
     "name": "stage alpha.inference", "kind": "INTERNAL",
     "start_time_unix_nano": 1764130000000000000, "end_time_unix_nano": ...,
     "status": {"code": "OK" | "ERROR" | "UNSET", "message": null},
     "attributes": {"runner.kind": "stage", "runner.path": "alpha.full[3]", ...},
     "events": [{"name": "exception", "time_unix_nano": ..., "attributes": {...}}],
     "links": [{"trace_id": ..., "span_id": ..., "attributes": {...}}],  (when any)
     "resource": {"service.name": "runner", "process.pid": 4242, ...}}

``runner.kind`` says what a span is: run, pipeline, group, branch, stage, adapter,
merge, checkpoint.write or checkpoint.read. Spans made in worker processes travel
back to the driver in this form and are exported from there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from runner.errors import ArtifactError
from runner.manifest import MAX_NESTING

__all__ = ["MAX_SPAN_DEPTH", "OK", "SPANS_FILE", "SpanNode", "decode_jsonl", "encode_jsonl",
           "from_readable", "plain_listed", "plain_span", "resource_attrs", "span_tree",
           "to_readable", "too_deep"]

SPANS_FILE = "spans.jsonl"
MAX_SPAN_DEPTH = 4 * MAX_NESTING + 64
"""How deep a span tree read back may nest: runner's own spans per level of a plan
(pipeline, group, branch, checkpoint) plus room for the spans a stage's code opens under
its step. Anything deeper was not written by runner; :func:`span_tree` refuses it before a
recursive walk (the trace view, the report) could exhaust Python's recursion limit."""

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
OK = Status(StatusCode.OK)
"""The status of a succeeded span (one object: recognised by identity)."""


def _attrs(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attribute values are str, bool, int, float or tuples of them: tuples become lists."""
    if not attributes:
        return {}
    out = dict(attributes)
    if tuple in set(map(type, out.values())):
        for key, value in out.items():
            if type(value) is tuple:
                out[key] = list(value)
    return out


_RESOURCES: dict[int, tuple[Resource, dict[str, Any]]] = {}


def resource_attrs(resource: Resource) -> dict[str, Any]:
    """A resource's attributes as a dict, computed once per resource (shared by spans)."""
    cached = _RESOURCES.get(id(resource))
    if cached is None or cached[0] is not resource:
        cached = _RESOURCES[id(resource)] = (resource, _attrs(resource.attributes))
    return cached[1]


_KINDS = {kind: kind.name for kind in SpanKind}
_CODES = {code: code.name for code in StatusCode}


def _code_name(code: StatusCode) -> str:
    """``code.name``, without hashing the enum (a Python-level ``__hash__``)."""
    return "OK" if code is StatusCode.OK else "UNSET" if code is StatusCode.UNSET \
        else _CODES[code]


def from_readable(span: ReadableSpan) -> dict[str, Any]:
    """A finished SDK span as a plain, JSON-ready dict."""
    ctx = span.context
    assert ctx is not None
    plain = plain_span(name=span.name, context=ctx, parent=span.parent,
                       kind=span.kind, start_ns=span.start_time, end_ns=span.end_time,
                       status=span.status, attributes=span.attributes, events=span.events,
                       resource=span.resource)
    if span.links:  # a resumed attempt's run span links to the previous attempt's
        plain["links"] = [{"trace_id": f"{link.context.trace_id:032x}",
                           "span_id": f"{link.context.span_id:016x}",
                           "attributes": _attrs(link.attributes)} for link in span.links]
    return plain


def plain_span(*, name: str, context: SpanContext, parent: SpanContext | None,
               start_ns: int | None, end_ns: int | None, status: Status,
               attributes: Mapping[str, Any] | None, events: Sequence[Event],
               resource: Resource, kind: SpanKind = SpanKind.INTERNAL) -> dict[str, Any]:
    """A finished span's fields in the spans.jsonl form (what :func:`from_readable`
    makes of the SDK span with these fields, without building that span)."""
    return {
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "name": name,
        "kind": "INTERNAL" if kind is SpanKind.INTERNAL else _KINDS[kind],
        "start_time_unix_nano": start_ns,
        "end_time_unix_nano": end_ns,
        "status": {"code": _code_name(status.status_code),
                   "message": status.description or None},
        "attributes": _attrs(attributes),
        "events": [{"name": e.name, "time_unix_nano": e.timestamp,
                    "attributes": _attrs(e.attributes)} for e in events] if events else [],
        "resource": resource_attrs(resource),
    }


def plain_listed(trace_id: str, span_id: str, parent_id: str, name: str, start_ns: int,
                 end_ns: int, status: Status, attributes: dict[str, Any],
                 resource: dict[str, Any]) -> dict[str, Any]:
    """:func:`plain_span` of an internal span without events whose ids are hex
    already and whose ``attributes`` hold no tuple (a step's span, made once per
    step: positional arguments, one dict built in one go)."""
    code = StatusCode.OK if status is OK else status.status_code
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent_id,
        "name": name,
        "kind": "INTERNAL",
        "start_time_unix_nano": start_ns,
        "end_time_unix_nano": end_ns,
        "status": {"code": "OK" if code is StatusCode.OK else
                   "UNSET" if code is StatusCode.UNSET else "ERROR",
                   "message": status.description or None},
        "attributes": attributes,
        "events": [],
        "resource": resource,
    }


def _tupled(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attributes.items()}


def to_readable(data: Mapping[str, Any], resource: Resource | None = None) -> ReadableSpan:
    """A dict from :func:`from_readable` as an SDK span, ready for any span exporter."""
    ctx = SpanContext(int(data["trace_id"], 16), int(data["span_id"], 16), is_remote=False,
                      trace_flags=_SAMPLED)
    parent_id = data.get("parent_span_id")
    parent = (SpanContext(int(data["trace_id"], 16), int(parent_id, 16), is_remote=False,
                          trace_flags=_SAMPLED) if parent_id else None)
    status = data.get("status") or {}
    events = [Event(e["name"], _tupled(e.get("attributes") or {}), e.get("time_unix_nano"))
              for e in data.get("events", ())]
    links = [Link(SpanContext(int(k["trace_id"], 16), int(k["span_id"], 16), is_remote=True,
                              trace_flags=_SAMPLED), _tupled(k.get("attributes") or {}))
             for k in data.get("links", ())]
    return ReadableSpan(
        name=data["name"],
        context=ctx,
        parent=parent,
        resource=resource if resource is not None else Resource(_tupled(data.get("resource")
                                                                        or {})),
        attributes=_tupled(data.get("attributes") or {}),
        events=events,
        links=links,
        kind=SpanKind[data.get("kind", "INTERNAL")],
        status=Status(StatusCode[status.get("code", "UNSET")], status.get("message")),
        start_time=data["start_time_unix_nano"],
        end_time=data["end_time_unix_nano"],
    )


_ENCODER = json.JSONEncoder(default=str)  # what json.dumps(s, default=str) builds per call


def encode_jsonl(spans: Iterable[Mapping[str, Any]]) -> bytes:
    """Spans as JSON lines, in start order."""
    ordered = sorted(spans, key=lambda s: (s["start_time_unix_nano"] or 0))
    encode = _ENCODER.encode
    return "".join([encode(s) + "\n" for s in ordered]).encode()


def decode_jsonl(data: bytes | str) -> list[dict[str, Any]]:
    """Read spans.jsonl; blank lines are ignored."""
    text = data.decode() if isinstance(data, bytes) else data
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class SpanNode:
    """A span with its children, in start order."""

    span: dict[str, Any]
    children: list[SpanNode] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        start = int(self.span["start_time_unix_nano"])
        end = int(self.span["end_time_unix_nano"] or start)
        return (end - start) / 1e9


def too_deep(what: str, limit: int) -> ArtifactError:
    """The one-line refusal of a tree read from the store that nests deeper than ``limit``."""
    return ArtifactError(f"{what} nests more than {limit} levels deep, deeper than anything "
                         "runner writes: refusing to read it")


def span_tree(spans: Sequence[Mapping[str, Any]]) -> list[SpanNode]:
    """Roots of the span forest (a span whose parent is not among them is a root).

    A forest deeper than :data:`MAX_SPAN_DEPTH` is refused in one line (exit 2).
    """
    nodes = {s["span_id"]: SpanNode(dict(s)) for s in spans}
    roots: list[SpanNode] = []
    for node in sorted(nodes.values(), key=lambda n: n.span["start_time_unix_nano"] or 0):
        parent = nodes.get(node.span.get("parent_span_id") or "")
        (parent.children if parent is not None else roots).append(node)
    stack = [(root, 1) for root in roots]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_SPAN_DEPTH:
            raise too_deep("the run's spans", MAX_SPAN_DEPTH)
        stack.extend((child, depth + 1) for child in node.children)
    return roots
