"""The report's Results section: what a run came up with, from its results.json.

The document comes from the store, so everything here is checked as it is read:
a part of the wrong shape is left out with a note, never an exception. Charts are
inline SVG (no script, no network): a line per series over a date axis, with
labelled axes, and the drawdown below the equity curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from runner.views.dag import DAG_WIDTH

__all__ = ["Chart", "ResultsView", "build_results_view"]

MAX_ROWS = 200
MAX_STEPS = 500
CHART_W = DAG_WIDTH  # drawn at scale 1 (the template says so): text keeps its size
PLOT_LEFT = 64.0
PLOT_RIGHT = 16.0
PLOT_TOP = 24.0
"""Room above each panel for its title."""
PLOT_BOTTOM = 30.0
SERIES_CLASS = {"equity": "s-main", "benchmark": "s-bench", "drawdown": "s-dd"}


@dataclass
class Line:
    """One polyline: its series name, CSS class, points and their count."""

    name: str
    css: str
    points: str
    count: int


@dataclass
class Panel:
    """One plot area of a chart: lines, the y ticks and where it sits."""

    title: str
    top: float
    height: float
    lines: list[Line]
    y_ticks: list[tuple[float, str]]
    area: str = ""
    """A closed polygon under the drawdown line (empty for the other panels)."""


@dataclass
class Chart:
    name: str
    width: float
    height: float
    panels: list[Panel]
    x_ticks: list[tuple[float, str]]
    left: float = PLOT_LEFT
    right: float = CHART_W - PLOT_RIGHT
    points: int = 0
    first: str = ""
    last: str = ""


@dataclass
class ResultsView:
    """What the template shows; ``notes`` say what could not be shown and why."""

    tables: list[dict[str, Any]] = field(default_factory=list)
    values: list[tuple[str, str]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    fields: list[dict[str, Any]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.tables or self.values or self.messages or self.fields or self.charts)


def _text(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _shown(key: str, value: Any) -> str:
    number = _number(value)
    if number is None:
        return _text(value, 200)
    if isinstance(value, int):
        return str(value)
    return f"{number:.4f}"


def _report_parts(report: Mapping[str, Any], view: ResultsView) -> None:
    for title, body in list(report.items())[:50]:
        if isinstance(body, Mapping):
            rows = [(_text(k, 120), _shown(str(k), v)) for k, v in list(body.items())[:MAX_ROWS]]
            weights = [(_text(k, 120), _number(v) or 0.0) for k, v in body.items()] \
                if str(title) == "weights" else []
            top = max((w for _, w in weights), default=0.0)
            view.tables.append({
                "title": _text(title, 120), "rows": rows, "more": max(0, len(body) - MAX_ROWS),
                "bars": [round(100 * w / top, 1) if top > 0 else 0.0 for _, w in weights],
            })
        else:
            view.values.append((_text(title, 120), _shown(str(title), body)))


def _messages(doc: Any, view: ResultsView) -> None:
    if not isinstance(doc, list):
        view.notes.append("the step messages are not a list: not shown")
        return
    for entry in doc[:MAX_STEPS]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("messages"), list):
            view.notes.append("a step's messages are malformed: left out")
            continue
        view.messages.append({
            "step": _text(entry.get("step", "?"), 200),
            "path": _text(entry.get("path", ""), 200),
            "messages": [_text(m, 4000) for m in entry["messages"][:200]],
        })


def _fields(doc: Any, view: ResultsView) -> None:
    if not isinstance(doc, list):
        view.notes.append("the field summary is not a list: not shown")
        return
    for entry in doc[:MAX_ROWS]:
        if not isinstance(entry, Mapping):
            continue
        shape = entry.get("shape")
        shown: dict[str, Any] = {
            "name": _text(entry.get("name", "?"), 200),
            "type": _text(entry.get("type", "?"), 200),
            "shape": " x ".join(str(int(n)) for n in shape if _number(n) is not None)
            if isinstance(shape, list) else "",
            "value": _text(entry["value"], 400) if "value" in entry else None,
            "head": None,
        }
        head = entry.get("head")
        if isinstance(head, Mapping) and isinstance(head.get("rows"), list) \
                and isinstance(head.get("columns"), list):
            raw_index = head.get("index")
            index: list[Any] = raw_index if isinstance(raw_index, list) else []
            shown["head"] = {
                "columns": [_text(", ".join(map(str, index)) or "", 80),
                            *(_text(c, 80) for c in head["columns"][:50])],
                "rows": [[_text(c, 80) for c in row[:51]] for row in head["rows"][:20]
                         if isinstance(row, list)],
                "more": int(head["more_columns"]) if _number(head.get("more_columns")) else 0,
            }
        view.fields.append(shown)


# ---------------------------------------------------------------- charts


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _y_ticks(lo: float, hi: float, *, percent: bool) -> tuple[float, float, list[float]]:
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 if not percent else lo - 0.01, hi + 0.5 if not percent else hi + 0.01
    step = _nice_step(hi - lo)
    start = math.floor(lo / step) * step
    end = math.ceil(hi / step) * step
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks


def _x_ticks(days: Sequence[date], left: float, right: float) -> list[tuple[float, str]]:
    """A tick on the first trading day of each year (each 2nd, 5th... when many)."""
    n = len(days)
    years = sorted({d.year for d in days})
    every = next(k for k in (1, 2, 5, 10, 20, 50, 100) if len(years) / k <= 12)
    out: list[tuple[float, str]] = []
    seen: set[int] = set()
    for i, day in enumerate(days):
        if day.year in seen or day.year % every:
            continue
        seen.add(day.year)
        if i == 0 and n > 1 and day.month > 1:
            continue  # the first year's tick belongs to its January
        out.append((left + (right - left) * i / max(n - 1, 1), str(day.year)))
    if not out and days:  # less than a year: first and last dates
        out = [(left, f"{days[0]:%Y-%m-%d}"), (right, f"{days[-1]:%Y-%m-%d}")]
    return out


def _dates(raw: Any) -> list[date] | None:
    if not isinstance(raw, list) or len(raw) < 2:
        return None
    try:
        return [date.fromisoformat(str(d)[:10]) for d in raw]
    except ValueError:
        return None


def _series(raw: Any, n: int) -> list[float | None] | None:
    if not isinstance(raw, list) or len(raw) != n:
        return None
    return [_number(v) for v in raw]


def _points(values: Sequence[float | None], lo: float, hi: float, *, left: float, right: float,
            top: float, height: float) -> tuple[str, int]:
    n = len(values)
    out = []
    for i, v in enumerate(values):
        if v is None:
            continue
        x = left + (right - left) * i / max(n - 1, 1)
        y = top + height * (1.0 - (v - lo) / (hi - lo))
        out.append(f"{x:.1f},{y:.1f}")
    return " ".join(out), len(out)


def _panel(title: str, series: dict[str, list[float | None]], *, top: float, height: float,
           percent: bool) -> Panel | None:
    known = [v for values in series.values() for v in values if v is not None]
    if not known:
        return None
    lo, hi, ticks = _y_ticks(min(known), max(known), percent=percent)
    lines = []
    for name, values in series.items():
        points, count = _points(values, lo, hi, left=PLOT_LEFT, right=CHART_W - PLOT_RIGHT,
                                top=top, height=height)
        lines.append(Line(name, SERIES_CLASS.get(name, "s-other"), points, count))
    labels = [(top + height * (1.0 - (t - lo) / (hi - lo)),
               f"{t:.0%}" if percent else f"{t:g}") for t in ticks]
    area = ""
    if percent and lines and lines[0].points:
        zero = top + height * (1.0 - (0.0 - lo) / (hi - lo))
        first_x = lines[0].points.split(" ", 1)[0].split(",")[0]
        last_x = lines[0].points.rsplit(" ", 1)[-1].split(",")[0]
        area = f"{first_x},{zero:.1f} {lines[0].points} {last_x},{zero:.1f}"
    return Panel(title, top, height, lines, labels, area)


def _chart(name: str, doc: Any) -> Chart | None:
    """Equity-like columns in one panel; a ``drawdown`` column in a panel below."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("columns"), Mapping):
        return None
    days = _dates(doc.get("dates"))
    if days is None:
        return None
    columns = {str(k): _series(v, len(days)) for k, v in list(doc["columns"].items())[:8]}
    if any(v is None for v in columns.values()):
        return None
    level = {k: v for k, v in columns.items() if k != "drawdown" and v is not None}
    panels: list[Panel] = []
    top = PLOT_TOP
    if level:
        main = _panel("growth of 1", level, top=top, height=230.0, percent=False)
        if main is not None:
            panels.append(main)
            top += 230.0 + PLOT_BOTTOM + PLOT_TOP
    drawdown = columns.get("drawdown")
    if drawdown is not None:
        below = _panel("drawdown", {"drawdown": drawdown}, top=top, height=110.0, percent=True)
        if below is not None:
            panels.append(below)
            top += 110.0 + PLOT_BOTTOM + PLOT_TOP
    if not panels:
        return None
    return Chart(name, CHART_W, top - PLOT_TOP, panels,
                 _x_ticks(days, PLOT_LEFT, CHART_W - PLOT_RIGHT), points=len(days),
                 first=f"{days[0]:%Y-%m-%d}", last=f"{days[-1]:%Y-%m-%d}")


def build_results_view(doc: Any, note: str | None = None) -> ResultsView:
    """The Results section of a results.json document (already size- and
    checksum-checked by :func:`runner.artifacts.results.read_results`)."""
    view = ResultsView(notes=[note] if note else [])
    if not isinstance(doc, Mapping):
        return view
    try:
        report = doc.get("report")
        if isinstance(report, Mapping):
            _report_parts(report, view)
        elif report is not None:
            view.notes.append("the report is not a mapping: not shown")
        _messages(doc.get("messages", []), view)
        _fields(doc.get("fields", []), view)
        charts = doc.get("charts", {})
        if isinstance(charts, Mapping):
            for name, raw in list(charts.items())[:10]:
                chart = _chart(_text(name, 80), raw)
                if chart is None:
                    view.notes.append(f"chart {_text(name, 80)!r} is malformed: not drawn")
                else:
                    view.charts.append(chart)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError,
            RecursionError) as exc:  # a document this code did not write
        view.notes.append(f"results.json could not be shown in full: {type(exc).__name__}")
    return view
