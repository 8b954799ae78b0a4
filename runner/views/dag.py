"""The DAG of the HTML report, laid out to a width so its labels stay legible.

The plan is series-parallel, so a recursive layout is exact and needs no graph
library: sequences run left to right, a parallel group stacks its branches
between a fork and a merge, a nested pipeline is a framed box of its steps.
A sequence wider than the room it has wraps into lines like text, and the edge
from the end of one line runs back, in the gap below it, to the start of the
next; so a chain of any length keeps the drawing within :data:`DAG_WIDTH` and
the report draws it at scale 1 (never shrunk to 7 px labels).

Text widths are estimated from the glyph widths of DejaVu Sans, the widest of
the usual sans-serif fallbacks, so a label fitted here is not clipped in a real
browser; a label too long for its box is cut with an ellipsis, the full name is
in the node's tooltip. :func:`layout_dag` also draws an overview where every
nested pipeline is one node, which the report expands on click.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.views.textwidth import fit_text, text_width
from runner.views.trace import format_duration

__all__ = ["DAG_WIDTH", "OVERVIEW_FIRST", "Box", "Dag", "Dot", "Frame", "fit_text", "layout_dag",
           "text_width"]

Node = Mapping[str, Any]
State = Callable[[str, str], tuple[str, Mapping[str, Any] | None]]
Point = tuple[float, float]

DAG_WIDTH = 860.0
"""Widest drawing, in px at scale 1: the report's DAG panel at a 1,000 px wide window."""
BOX_H, HGAP, VGAP, LINE_GAP = 44.0, 36.0, 14.0, 30.0  # LINE_GAP: between wrapped lines
DOT_R, PAD, TITLE, MARGIN = 6.0, 12.0, 20.0, 16.0
SIDE = 20.0  # a frame's inner margin left and right (and its title's): room for a wrapping
# edge between the border and the steps
STUB, CORNER = 8.0, 6.0  # how far a wrapping edge leaves a line before turning; its corners
MIN_W, MAX_W = 96.0, 260.0
LABEL_PX, DETAIL_PX, FRAME_PX = 12.5, 11.0, 11.5  # the template's font sizes (.label, ...)
OVERVIEW_FIRST = 40
"""A DAG of more steps than this opens on its overview (nested pipelines collapsed)."""

@dataclass(frozen=True, kw_only=True)
class Rect:
    """A labelled rectangle of the DAG, in SVG user units, with its run state."""

    x: float
    y: float
    w: float
    h: float
    label: str
    detail: str
    status: str
    tooltip: str
    path: str = ""


@dataclass(frozen=True, kw_only=True)
class Box(Rect):
    """A stage, adapter or merge in the DAG (or, in the overview, a collapsed pipeline)."""

    kind: str


@dataclass(frozen=True, kw_only=True)
class Frame(Rect):
    """A nested pipeline: a labelled box around its steps."""


@dataclass(frozen=True)
class Dot:
    """The fork of a parallel group."""

    x: float
    y: float
    status: str
    tooltip: str


@dataclass
class Dag:
    """Everything the template draws for the DAG, in SVG user units (px at scale 1)."""

    width: float = 0.0
    height: float = 0.0
    boxes: list[Box] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    dots: list[Dot] = field(default_factory=list)
    edges: list[str] = field(default_factory=list)
    overview: Dag | None = None
    """The same plan with each nested pipeline collapsed into one node (when it has any)."""
    overview_first: bool = False
    """Whether the report opens on the overview (a DAG of many steps)."""


# ---------------------------------------------------------------- words


_STATUS_WORDS = {"succeeded": "", "failed": "failed", "skipped": "restored from checkpoint",
                 "not-run": "not run", "pending": "pending", "running": "running",
                 "cancelled": "cancelled", "cached": "cached"}
"""``cached``: outputs restored from the step cache, the stage not called; ``skipped``:
done by an earlier attempt of a resumed run."""


def _seconds(span: Mapping[str, Any]) -> float | None:
    start, end = span.get("start_time_unix_nano"), span.get("end_time_unix_nano")
    return (int(end) - int(start)) / 1e9 if start is not None and end is not None else None


def _detail(status: str, span: Mapping[str, Any] | None) -> str:
    if span is not None and status in ("succeeded", "failed", "cached"):
        duration = format_duration(_seconds(span))
        return duration if status == "succeeded" else f"{status} · {duration}"
    return _STATUS_WORDS.get(status, status)


def _tooltip(name: str, path: str, kind: str, status: str, span: Mapping[str, Any] | None) -> str:
    lines = [name, f"{kind} · {path}", f"status: {_STATUS_WORDS.get(status) or status}"
             + (" (outputs from the step cache, not run)" if status == "cached" else "")]
    if span is not None:
        lines.append(f"duration: {format_duration(_seconds(span))}")
    return "\n".join(lines)


def _steps(node: Node) -> Iterator[tuple[str, str]]:
    """(kind, path) of the stages, adapters and merges inside ``node``."""
    for child in node.get("children") or ():
        if child["kind"] in ("stage", "adapter"):
            yield child["kind"], str(child["path"])
        yield from _steps(child)
        if child["kind"] == "group":
            yield "merge", str(child["path"])


def _count_steps(node: Node) -> int:
    return sum(1 for _ in _steps(node))


# ---------------------------------------------------------------- edges


def _edge(a: Point, b: Point) -> str:
    """From a node's right side to the next one's left, on one line."""
    (x1, y1), (x2, y2) = a, b
    if abs(y1 - y2) < 0.5:
        return f"M{x1:.1f},{y1:.1f} H{x2:.1f}"
    bend = max(x1, x2 - HGAP)
    dx = (x2 - bend) / 2
    return (f"M{x1:.1f},{y1:.1f} H{bend:.1f} C{bend + dx:.1f},{y1:.1f} "
            f"{x2 - dx:.1f},{y2:.1f} {x2:.1f},{y2:.1f}")


def _wrap_edge(a: Point, b: Point, lane: float) -> str:
    """From the end of one line back to the start of the next, along ``lane`` between them."""
    (x1, y1), (x2, y2) = a, b
    points = [(x1, y1), (x1 + STUB, y1), (x1 + STUB, lane), (x2 - STUB, lane), (x2 - STUB, y2),
              (x2, y2)]
    out = [f"M{x1:.1f},{y1:.1f}"]
    for (px, py), (cx, cy), (nx, ny) in zip(points, points[1:], points[2:], strict=False):
        r = min(CORNER, abs(cx - px) / 2 + abs(cy - py) / 2, abs(nx - cx) / 2 + abs(ny - cy) / 2)
        ux, uy = _unit(px, py, cx, cy)
        vx, vy = _unit(cx, cy, nx, ny)
        out.append(f"L{cx - ux * r:.1f},{cy - uy * r:.1f} Q{cx:.1f},{cy:.1f} "
                   f"{cx + vx * r:.1f},{cy + vy * r:.1f}")
    out.append(f"L{x2:.1f},{y2:.1f}")
    return " ".join(out)


def _unit(x1: float, y1: float, x2: float, y2: float) -> Point:
    dx, dy = x2 - x1, y2 - y1
    length = abs(dx) + abs(dy) or 1.0  # segments are axis-aligned
    return dx / length, dy / length


# ---------------------------------------------------------------- layout


class _DagLayout:
    """Series-parallel layout within a width: sequences wrap into lines, branches stack
    between a fork and a merge, nested pipelines are framed (or, collapsed, one node).
    Every block is centred vertically on its line."""

    def __init__(self, state: State, *, collapse: bool) -> None:
        self.state = state
        self.collapse = collapse
        self.dag = Dag()
        self._sizes: dict[tuple[int, float], tuple[float, float]] = {}

    # -- sizes (pure, memoised: the walks below ask again for every node they place)

    def size(self, node: Node, avail: float) -> tuple[float, float]:
        key = (id(node), avail)
        if key not in self._sizes:
            self._sizes[key] = self._measure(node, avail)
        return self._sizes[key]

    def _measure(self, node: Node, avail: float) -> tuple[float, float]:
        kind, children = node["kind"], node.get("children") or []
        if kind in ("stage", "adapter") or self._collapsed(node):
            return self._box_w(node, kind), BOX_H
        if kind == "group":
            inner = self._branch_room(node, avail)
            sizes = [self.size(b, inner) for b in children] or [(0.0, 0.0)]
            inner_h = sum(h for _, h in sizes) + VGAP * (len(sizes) - 1)
            width = 2 * DOT_R + 2 * HGAP + max(w for w, _ in sizes) + self._merge_w(node)
            return width, max(inner_h, BOX_H)
        if kind == "pipeline":
            width, height = self.seq_size(children, avail - 2 * SIDE)
            title = self._frame_title_w(node)
            return max(width + 2 * SIDE, min(title, avail)), height + 2 * (PAD + TITLE)
        return self.seq_size(children, avail)

    def _collapsed(self, node: Node) -> bool:
        return self.collapse and node["kind"] == "pipeline"

    def _box_w(self, node: Node, kind: str) -> float:
        label, detail = self._words(node, kind)
        need = max(text_width(label, LABEL_PX), text_width(detail, DETAIL_PX, bold=False))
        return min(MAX_W, max(MIN_W, need + 30))

    def _merge_w(self, group: Node) -> float:
        return self._box_w({"name": group["merge"], "path": group["path"]}, "merge")

    def _branch_room(self, group: Node, avail: float) -> float:
        return max(avail - 2 * DOT_R - 2 * HGAP - self._merge_w(group), MIN_W)

    def _frame_title_w(self, node: Node) -> float:
        status, span = self.pipeline_state(node)
        return (text_width("▣ " + node["name"], FRAME_PX)
                + text_width(_detail(status, span), DETAIL_PX, bold=False) + SIDE + 2 * PAD + 1)

    def _status(self, node: Node, kind: str) -> tuple[str, Mapping[str, Any] | None]:
        return self.pipeline_state(node) if kind == "pipeline" else self.state(kind, node["path"])

    def _words(self, node: Node, kind: str) -> tuple[str, str]:
        """A box's label and the line under it."""
        name = node["name"]
        detail = _detail(*self._status(node, kind))
        if kind == "pipeline":
            steps = f"▣ {_count_steps(node)} steps"
            return name, f"{steps} · {detail}" if detail else steps
        if kind not in ("stage", name):  # "merge" needs no "merge ·" before it
            detail = f"{kind} · {detail}" if detail else kind
        return name, detail

    def pipeline_state(self, node: Node) -> tuple[str, Mapping[str, Any] | None]:
        """A nested pipeline's span, else what its steps say (run.json records steps only)."""
        status, span = self.state("pipeline", str(node["path"]))
        if span is not None:
            return status, span
        steps = {self.state(kind, path)[0] for kind, path in _steps(node)}
        for worst in ("failed", "running", "cancelled", "pending", "not-run"):
            if worst in steps:
                return worst, None
        alike = next(iter(steps)) if len(steps) == 1 else "succeeded"
        return (alike if alike in ("skipped", "cached") else "succeeded") if steps else status, None

    def lines(self, children: Sequence[Node], avail: float) -> list[list[Node]]:
        """``children`` cut greedily into lines no wider than ``avail`` (a line holds at
        least one child, however wide)."""
        out: list[list[Node]] = []
        width = 0.0
        for child in children:
            w = self.size(child, avail)[0]
            if out and width + HGAP + w <= avail:
                out[-1].append(child)
                width += HGAP + w
            else:
                out.append([child])
                width = w
        return out

    def seq_size(self, children: Sequence[Node], avail: float) -> tuple[float, float]:
        width = height = 0.0
        for line in self.lines(children, avail):
            sizes = [self.size(c, avail) for c in line]
            width = max(width, sum(w for w, _ in sizes) + HGAP * (len(sizes) - 1))
            height += max(h for _, h in sizes) + (LINE_GAP if height else 0.0)
        return width, height

    # -- placement

    def place(self, node: Node, x: float, top: float, height: float,
              avail: float) -> tuple[Point, Point]:
        """Draw ``node`` with its left edge at ``x``, centred in ``[top, top + height]``;
        returns where edges enter and leave it."""
        w, h = self.size(node, avail)
        y = top + (height - h) / 2
        kind, path = node["kind"], str(node["path"])
        if kind in ("stage", "adapter") or self._collapsed(node):
            self._box(node, kind, x, y, w)
            return (x, y + h / 2), (x + w, y + h / 2)
        if kind == "group":
            return self._group(node, x, y, w, h, avail)
        if kind == "pipeline":
            status, span = self.pipeline_state(node)
            detail = _detail(status, span)
            room = w - SIDE - 2 * PAD - text_width(detail, DETAIL_PX, bold=False)
            self.dag.frames.append(Frame(
                x=x, y=y, w=w, h=h, label=fit_text("▣ " + node["name"], room, FRAME_PX),
                detail=detail, status=status,
                tooltip=_tooltip(node["name"], path, kind, status, span), path=path))
            inner = PAD + TITLE
            return self.seq(node.get("children") or [], x + SIDE, y + inner, h - 2 * inner,
                            avail - 2 * SIDE)
        return self.seq(node.get("children") or [], x, y, h, avail)

    def seq(self, children: Sequence[Node], x: float, top: float, height: float,
            avail: float) -> tuple[Point, Point]:
        """Place a sequence line by line, centred in ``height``; consecutive steps joined."""
        top += (height - self.seq_size(children, avail)[1]) / 2
        middle = (x, top + height / 2)
        first: Point | None = None
        last: Point | None = None
        for line in self.lines(children, avail):
            line_h = max(self.size(c, avail)[1] for c in line)
            lane = top - LINE_GAP / 2
            left = x
            for i, child in enumerate(line):
                enter, leave = self.place(child, left, top, line_h, avail)
                if last is not None:
                    self.dag.edges.append(_wrap_edge(last, enter, lane) if i == 0
                                          else _edge(last, enter))
                first, last = first or enter, leave
                left += self.size(child, avail)[0] + HGAP
            top += line_h + LINE_GAP
        return first or middle, last or middle

    def _box(self, node: Node, kind: str, x: float, y: float, w: float) -> None:
        path = str(node["path"])
        status, span = self._status(node, kind)
        label, detail = self._words(node, kind)
        tooltip = _tooltip(label, path, kind, status, span)
        if kind == "pipeline":
            tooltip += "\nclick to show its steps"
        self.dag.boxes.append(Box(
            x=x, y=y, w=w, h=BOX_H, label=fit_text(label, w - 20, LABEL_PX),
            detail=fit_text(detail, w - 16, DETAIL_PX, bold=False), kind=kind, status=status,
            tooltip=tooltip, path=path))

    def _group(self, node: Node, x: float, y: float, w: float, h: float,
               avail: float) -> tuple[Point, Point]:
        path, mid = str(node["path"]), y + h / 2
        status, span = self.state("group", path)
        self.dag.dots.append(Dot(x + DOT_R, mid, status,
                                 _tooltip(f"fork {node['name']}", path, "group", status, span)))
        branches = node.get("children") or []
        inner = self._branch_room(node, avail)
        merge_w = self._merge_w(node)
        merge_x = x + w - merge_w
        sizes = [self.size(b, inner) for b in branches]
        top = y + (h - (sum(bh for _, bh in sizes) + VGAP * (len(sizes) - 1))) / 2
        for branch, (_, bh) in zip(branches, sizes, strict=True):
            enter, leave = self.place(branch, x + 2 * DOT_R + HGAP, top, bh, inner)
            self.dag.edges.append(_edge((x + 2 * DOT_R, mid), enter))
            self.dag.edges.append(_edge(leave, (merge_x, mid)))
            top += bh + VGAP
        self._box({"name": node["merge"], "path": path}, "merge", merge_x, mid - BOX_H / 2,
                  merge_w)
        return (x, mid), (x + w, mid)


def _nested(node: Node) -> Iterator[Node]:
    """The pipelines nested anywhere in ``node``."""
    for child in node.get("children") or ():
        if child["kind"] == "pipeline":
            yield child
        yield from _nested(child)


def _draw(plan: Node, state: State, *, width: float, collapse: bool) -> Dag:
    layout = _DagLayout(state, collapse=collapse)
    children = plan.get("children") or []
    avail = width - 2 * MARGIN
    w, h = layout.seq_size(children, avail)
    layout.seq(children, MARGIN, MARGIN, h, avail)
    layout.dag.width, layout.dag.height = w + 2 * MARGIN, h + 2 * MARGIN
    return layout.dag


def layout_dag(plan: Node, state: State, *, width: float = DAG_WIDTH) -> Dag:
    """The plan's DAG within ``width`` (the root pipeline is the page, so it gets no
    frame), with its overview when it nests pipelines."""
    dag = _draw(plan, state, width=width, collapse=False)
    if next(_nested(plan), None) is not None:
        dag.overview = _draw(plan, state, width=width, collapse=True)
        dag.overview_first = _count_steps(plan) > OVERVIEW_FIRST
    return dag
