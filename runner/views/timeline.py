"""The timeline of the HTML report: a Gantt chart of the spans, drawn at scale 1.

Like the DAG (:mod:`runner.views.dag`), the chart is laid out for the width
the report's panel has at a 1,000 px window (:data:`TIMELINE_WIDTH`) and the
page draws it unscaled, so its labels keep their CSS size (11 px and more)
instead of shrinking with the window. A row label too long for the label column
is cut with an ellipsis (widths estimated with :func:`~runner.views.textwidth.text_width`);
the whole name is in the row's tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.telemetry.spans import SpanNode, span_tree
from runner.views.dag import DAG_WIDTH, fit_text
from runner.views.trace import (
    attempt_title,
    by_attempt,
    format_bytes,
    format_duration,
    short_name,
    span_kind,
    span_pid,
    span_status,
)

__all__ = ["STEP_KINDS", "TIMELINE_KINDS", "TIMELINE_WIDTH", "Bar", "Clock", "Timeline",
           "layout_timeline", "span_seconds"]

TIMELINE_KINDS = frozenset({"pipeline", "group", "branch", "stage", "adapter", "merge",
                            "checkpoint.write", "checkpoint.read"})
"""Span kinds drawn as a bar on the timeline (everything but the run itself)."""
STEP_KINDS = ("stage", "adapter", "merge")

TIMELINE_WIDTH = DAG_WIDTH
"""Width of the drawing, in px at scale 1: the report's panel at a 1,000 px wide window."""
LABEL_W, DUR_W, ROW_H, AXIS_H, INDENT = 250.0, 64.0, 22.0, 28.0, 14.0
CHART_W = TIMELINE_WIDTH - LABEL_W - DUR_W
LABEL_X, LABEL_GAP = 8.0, 8.0  # a row label's left margin; its room before the bars
# the template's font sizes: .row-label, .row-label.ckpt (monospace), .row-label.attempt (bold)
LABEL_PX, CKPT_PX, MONO_EM = 12.0, 11.0, 0.62
BAR_H = {"pipeline": 8.0, "group": 8.0, "branch": 10.0, "checkpoint.write": 10.0,
         "checkpoint.read": 10.0}


@dataclass(frozen=True)
class Clock:
    """Span times as seconds from the start of the run."""

    origin: int
    end: int

    @classmethod
    def of(cls, spans: Sequence[Mapping[str, Any]]) -> Clock | None:
        starts = [s["start_time_unix_nano"] for s in spans if s.get("start_time_unix_nano")]
        if not starts:
            return None
        runs = [s["start_time_unix_nano"] for s in spans if span_kind(s) == "run"
                and s.get("start_time_unix_nano")]
        ends = [s.get("end_time_unix_nano") or s["start_time_unix_nano"] for s in spans
                if s.get("start_time_unix_nano")]
        return cls(min(runs) if runs else min(starts), max(ends))

    @property
    def total(self) -> float:
        return max((self.end - self.origin) / 1e9, 1e-6)

    def offset(self, nanos: int | None) -> float:
        return ((nanos if nanos is not None else self.end) - self.origin) / 1e9

    def span(self, span: Mapping[str, Any]) -> tuple[float, float]:
        return self.offset(span.get("start_time_unix_nano")), self.offset(
            span.get("end_time_unix_nano"))


def span_seconds(span: Mapping[str, Any]) -> float | None:
    """How long a finished span took (None while it runs)."""
    start, end = span.get("start_time_unix_nano"), span.get("end_time_unix_nano")
    return (int(end) - int(start)) / 1e9 if start is not None and end is not None else None


def fit_label(label: str, room: float, *, kind: str) -> str:
    """``label`` cut with an ellipsis to ``room`` px in the font its row kind is drawn in."""
    if kind == "attempt":
        return fit_text(label, room, LABEL_PX)
    if kind.startswith("checkpoint"):  # monospace: every glyph as wide
        keep = int(room / (CKPT_PX * MONO_EM))
        return label if len(label) <= keep else label[:max(keep - 1, 1)] + "…"
    return fit_text(label, room, LABEL_PX, bold=kind in ("pipeline", "group", "branch"))


@dataclass(frozen=True)
class Bar:
    """One span on the timeline: its row, label and bar."""

    y: float
    label: str
    indent: float
    kind: str
    status: str
    duration: str
    x: float
    w: float
    h: float
    tooltip: str


@dataclass
class Timeline:
    """The Gantt chart: rows of bars and the x axis's ticks, in SVG user units."""

    width: float
    height: float
    chart_x: float
    chart_w: float
    bars: list[Bar]
    ticks: list[tuple[float, str]]


def _ticks(total: float) -> list[tuple[float, str]]:
    """About eight round steps (1, 2 or 5 x 10^k seconds) over ``[0, total]``."""
    raw = total / 8
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    ticks = []
    for i in range(int(total / step + 1e-9) + 1):
        t = i * step
        label = f"{round(t * 1000, 6):g} ms" if total < 1 else f"{round(t, 6):g} s"
        ticks.append((t, label))
    return ticks


def _timeline_rows(roots: Sequence[SpanNode]) -> Iterator[tuple[int, SpanNode]]:
    stack = [(node, 0) for node in reversed(roots)]
    while stack:
        node, depth = stack.pop()
        shown = span_kind(node.span) in TIMELINE_KINDS
        if shown:
            yield depth, node
        inner = depth + 1 if shown else depth
        stack.extend((child, inner) for child in reversed(node.children))


def _bar_tooltip(span: Mapping[str, Any], status: str, start: float, end: float) -> str:
    attrs = span.get("attributes") or {}
    lines = [str(span.get("name") or ""), f"{span_kind(span)} · {status}",
             f"+{start:.3f} s → +{end:.3f} s ({format_duration(end - start)})"]
    if attrs.get("runner.path"):
        lines.append(f"path: {attrs['runner.path']}")
    pid = span_pid(span)
    if pid is not None:
        lines.append(f"pid: {pid}" + (f" on {attrs['runner.worker.node']}"
                                      if attrs.get("runner.worker.node") else ""))
    if attrs.get("runner.bytes") is not None:
        lines.append(f"size: {format_bytes(attrs['runner.bytes'])}")
    return "\n".join(lines)


def layout_timeline(spans: Sequence[Mapping[str, Any]], clock: Clock | None) -> Timeline | None:
    """A Gantt chart: one row per span of :data:`TIMELINE_KINDS`, in tree order. A
    resumed run's attempts are drawn one after the other, each under a title row
    (kind ``attempt``) and timed from its own start (hours may pass in between)."""
    if clock is None:
        return None
    attempts = by_attempt(spans)
    groups: list[tuple[str | None, Sequence[Mapping[str, Any]], Clock]]
    if len(attempts) <= 1:
        groups = [(None, spans, clock)]
    else:
        groups = [(attempt_title(n, group), group, Clock.of(group) or clock)
                  for n, group in attempts]
    total = max(c.total for _, _, c in groups)
    scale = CHART_W / total
    bars: list[Bar] = []
    for title, group, own in groups:
        if title is not None:
            bars.append(Bar(y=AXIS_H + len(bars) * ROW_H,
                            label=fit_label(title, TIMELINE_WIDTH - 2 * LABEL_X, kind="attempt"),
                            indent=0.0, kind="attempt", status="", duration="", x=LABEL_W,
                            w=0.0, h=0.0, tooltip=title))
        for depth, node in _timeline_rows(span_tree(group)):
            span, kind = node.span, span_kind(node.span)
            status = span_status(span)
            start, end = own.span(span)
            label = short_name(span) if kind in STEP_KINDS else str(span.get("name"))
            duration = "running" if status == "running" else format_duration(span_seconds(span))
            if status == "cached":  # restored from the step cache: the stage did not run
                duration = f"cached · {duration}"
            room = LABEL_W - LABEL_X - LABEL_GAP - depth * INDENT
            bars.append(Bar(
                y=AXIS_H + len(bars) * ROW_H, label=fit_label(label, room, kind=kind),
                indent=depth * INDENT, kind=kind, status=status, duration=duration,
                x=LABEL_W + start * scale, w=max(2.0, (end - start) * scale),
                h=BAR_H.get(kind, 14.0), tooltip=_bar_tooltip(span, status, start, end)))
    ticks = [(LABEL_W + t * scale, label) for t, label in _ticks(total)]
    return Timeline(TIMELINE_WIDTH, AXIS_H + len(bars) * ROW_H + 8, LABEL_W, CHART_W,
                    bars, ticks)
