"""A run's trace in the terminal: the span tree, with timings, failures and workers.

``runner`` keeps every run's spans in ``spans.jsonl`` (see :mod:`runner.telemetry.spans`),
so a run can be inspected long after the fact without a tracing backend. This
module turns those spans into a :mod:`rich` tree and a small summary; the HTML
report (:mod:`runner.views.report`) shares its formatting helpers, so both
views say "12.3 ms" and "3.1 MB" the same way. Everything here is pure: spans in,
renderables or plain data out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from rich.tree import Tree

from runner.telemetry.spans import SpanNode, span_tree

__all__ = [
    "CHECKPOINT_KINDS",
    "attempt_title",
    "by_attempt",
    "format_bytes",
    "format_duration",
    "render_attempts",
    "render_trace",
    "short_name",
    "span_error",
    "span_kind",
    "span_pid",
    "span_status",
    "summarize",
]

CHECKPOINT_KINDS = frozenset({"checkpoint.write", "checkpoint.read"})
_STEP_KINDS = frozenset({"stage", "adapter", "merge"})

_STATUS_STYLE = {"succeeded": ("✓", "green"), "failed": ("✗", "bold red"),
                 "running": ("…", "yellow"), "cancelled": ("○", "dim"),
                 "cached": ("↺", "cyan")}
"""Each status's mark and style; ``cached``: the step's outputs came from the step
cache (its stage was not called), which is not "restored from checkpoint" (a resume)."""


# ---------------------------------------------------------------- formatting


def format_duration(seconds: float | None) -> str:
    """``850 µs``, ``12.3 ms``, ``1.24 s``, ``2m 05.0s``, ``1h 02m``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    if seconds < 0.0009995:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 0.9995:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 59.995:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m {secs:04.1f}s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h {minutes:02d}m"


def format_bytes(size: float | None) -> str:
    """``512 B``, ``4.2 KB``, ``3.1 MB`` (powers of 1024); ``—`` when unknown."""
    if size is None:
        return "—"
    if size < 1024:
        return f"{int(size)} B"
    value = float(size)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TB"


# ---------------------------------------------------------------- span accessors


def _attrs(span: Mapping[str, Any]) -> Mapping[str, Any]:
    return span.get("attributes") or {}


def span_kind(span: Mapping[str, Any]) -> str:
    """The ``runner.kind`` of a span (``"span"`` when it has none: not one of ours)."""
    return str(_attrs(span).get("runner.kind") or "span")


def span_status(span: Mapping[str, Any]) -> str:
    """``succeeded``, ``failed``, ``cancelled``, ``cached`` (restored from the step
    cache: ``runner.cache=hit``) or ``running`` (no end time yet)."""
    attrs = _attrs(span)
    if (span.get("status") or {}).get("code") == "ERROR" or attrs.get("runner.status") == "failed":
        return "failed"
    if attrs.get("runner.status") == "cancelled":
        return "cancelled"
    if attrs.get("runner.cache") == "hit" or attrs.get("runner.status") == "cached":
        return "cached"
    if span.get("end_time_unix_nano") is None:
        return "running"
    return "succeeded"


def span_error(span: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(type, message, stacktrace)`` of a failed span's ``exception`` event."""
    for event in span.get("events") or ():
        if event.get("name") == "exception":
            attrs = event.get("attributes") or {}
            return (attrs.get("exception.type"), attrs.get("exception.message"),
                    attrs.get("exception.stacktrace"))
    message = (span.get("status") or {}).get("message")
    return (None, message, None) if message else (None, None, None)


def span_pid(span: Mapping[str, Any]) -> int | None:
    """The process a span ran in: ``runner.worker.pid``, else the resource's ``process.pid``."""
    pid = _attrs(span).get("runner.worker.pid")
    if pid is None:
        pid = (span.get("resource") or {}).get("process.pid")
    return int(pid) if pid is not None else None


def short_name(span: Mapping[str, Any]) -> str:
    """The span name without its kind prefix (``stage alpha.x`` -> ``alpha.x``)."""
    name = str(span.get("name") or "")
    prefix = span_kind(span) + " "
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else name


def _duration(span: Mapping[str, Any]) -> float | None:
    start, end = span.get("start_time_unix_nano"), span.get("end_time_unix_nano")
    if start is None or end is None:
        return None
    return max(0.0, (int(end) - int(start)) / 1e9)


def _driver(spans: Sequence[Mapping[str, Any]]) -> tuple[int | None, str | None]:
    """The pid and node of the run span: the worker details other spans are compared to."""
    for span in spans:
        if span_kind(span) == "run":
            return span_pid(span), _attrs(span).get("runner.worker.node")
    return None, None


# ---------------------------------------------------------------- the tree


def _details(span: Mapping[str, Any], driver: tuple[int | None, str | None]) -> list[str]:
    """Worker and volume details, only where they say something the tree does not."""
    attrs = _attrs(span)
    out: list[str] = []
    pid, node = span_pid(span), attrs.get("runner.worker.node")
    if pid is not None and driver[0] is not None and pid != driver[0]:
        out.append(f"pid {pid}")
    if node and driver[1] is not None and node != driver[1]:
        out.append(f"node {node}")
    if span_kind(span) in CHECKPOINT_KINDS:
        if attrs.get("runner.rows") is not None:
            out.append(f"{int(attrs['runner.rows']):,} rows")
        if attrs.get("runner.bytes") is not None:
            out.append(format_bytes(attrs["runner.bytes"]))
    branch = attrs.get("runner.branch")
    if branch and branch != attrs.get("runner.path"):
        out.append(f"branch {branch}")
    if attrs.get("runner.cache.key"):
        out.append(f"cache {str(attrs['runner.cache.key'])[:12]}")
    return out


def _label(span: Mapping[str, Any], driver: tuple[int | None, str | None]) -> Text:
    status = span_status(span)
    icon, style = _STATUS_STYLE[status]
    text = Text()
    text.append(f"{icon} ", style=style)
    text.append(str(span.get("name") or "?"), style="bold red" if status == "failed" else "bold")
    text.append(f"  {format_duration(_duration(span))}", style="cyan")
    if status == "failed":
        etype, message, _ = span_error(span)
        reason = ": ".join(p for p in (etype, message) if p) or "failed"
        text.append(f"  {reason}", style="red")
    elif status != "succeeded":
        text.append(f"  {status}", style=style)
    details = _details(span, driver)
    if details:
        text.append("  " + " · ".join(details), style="dim")
    return text


def _grow(node: SpanNode, tree: Tree, driver: tuple[int | None, str | None]) -> None:
    stack = [(node, tree)]
    while stack:
        parent, branch = stack.pop()
        added = [(child, branch.add(_label(child.span, driver))) for child in parent.children]
        stack.extend(reversed(added))


def render_trace(spans: Sequence[Mapping[str, Any]]) -> RenderableType:
    """The spans as a tree per root span, children in start order."""
    roots = span_tree(spans)
    if not roots:
        return Text("no spans recorded", style="dim")
    driver = _driver(spans)
    trees = []
    for root in roots:
        tree = Tree(_label(root.span, driver), guide_style="bright_black")
        _grow(root, tree, driver)
        trees.append(tree)
    return trees[0] if len(trees) == 1 else Group(*trees)


def attempt_title(attempt: int, spans: Sequence[Mapping[str, Any]]) -> str:
    """``attempt 1 · failed at stage x · trace <id>``, ``attempt 2 · resumed from
    checkpoint 001-load · succeeded · trace <id>``: one attempt of a resumed run."""
    parts = [f"attempt {attempt}"]
    run = next((s for s in spans if span_kind(s) == "run"), None)
    if run is None:
        return parts[0]
    attrs = _attrs(run)
    if attrs.get("runner.resumed_from"):
        parts.append("resumed from checkpoint "
                     + str(attrs["runner.resumed_from"]).removeprefix("steps/"))
    status = span_status(run)
    if attrs.get("runner.status") == "interrupted":
        parts.append("interrupted")
    elif status == "failed":
        failed = summarize(spans)["failed"]
        parts.append(f"failed at {failed[0]['name']}" if failed else "failed")
    else:
        parts.append(status)
    parts.append(f"trace {run.get('trace_id')}")
    return " · ".join(parts)


def by_attempt(spans: Sequence[Mapping[str, Any]]) -> list[tuple[int, list[Mapping[str, Any]]]]:
    """The spans grouped by ``runner.attempt`` (spans without one: attempt 1), in order."""
    groups: dict[int, list[Mapping[str, Any]]] = {}
    for span in spans:
        try:
            attempt = int(_attrs(span).get("runner.attempt") or 1)
        except (TypeError, ValueError):
            attempt = 1
        groups.setdefault(attempt, []).append(span)
    return sorted(groups.items())


def render_attempts(spans: Sequence[Mapping[str, Any]]) -> RenderableType:
    """:func:`render_trace`, one titled tree per attempt when the run was resumed."""
    groups = by_attempt(spans)
    if len(groups) <= 1:
        return render_trace(spans)
    parts: list[RenderableType] = []
    for attempt, group in groups:
        parts.append(Text(attempt_title(attempt, group), style="bold magenta"))
        parts.append(render_trace(group))
    return Group(*parts)


def summarize(spans: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts and totals of a trace: spans by kind, failures, workers, checkpoint volume."""
    starts = [s["start_time_unix_nano"] for s in spans if s.get("start_time_unix_nano")]
    ends = [s["end_time_unix_nano"] for s in spans if s.get("end_time_unix_nano")]
    failed = []
    for span in spans:
        if span_status(span) == "failed" and span_kind(span) in _STEP_KINDS:
            etype, message, _ = span_error(span)
            failed.append({"name": span.get("name"), "path": _attrs(span).get("runner.path"),
                           "type": etype, "message": message})
    writes = [s for s in spans if span_kind(s) == "checkpoint.write"]
    return {
        "spans": len(spans),
        "by_kind": dict(Counter(span_kind(s) for s in spans)),
        "cached": sum(span_status(s) == "cached" for s in spans if span_kind(s) in _STEP_KINDS),
        "duration_s": (max(ends) - min(starts)) / 1e9 if starts and ends else None,
        "failed": failed,
        "workers": sorted({pid for s in spans if (pid := span_pid(s)) is not None}),
        "bytes_written": sum(int(_attrs(s).get("runner.bytes") or 0) for s in writes),
        "checkpoints_written": len(writes),
    }
