"""The report's DAG layout: wide plans wrap into lines within the panel's width,
nothing overlaps, labels fit their boxes, nested pipelines collapse into one node.

Geometry is checked on the boxes :func:`layout_dag` computes (the browser test,
tests/integration/report/test_report_layout.py, checks what Chromium actually draws).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from runner.manifest import load_manifest
from runner.orchestration.graph import outline
from runner.orchestration.plan import compile_plan
from runner.telemetry.dag import (
    DAG_WIDTH,
    DETAIL_PX,
    FRAME_PX,
    LABEL_PX,
    OVERVIEW_FIRST,
    Dag,
    fit_text,
    layout_dag,
    text_width,
)
from runner.telemetry.report import render_report

ROOT = Path(__file__).resolve().parents[3]
Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def succeeded(kind: str, path: str) -> tuple[str, Mapping[str, Any] | None]:
    return "succeeded", None


def plan_of(pipeline: str) -> dict[str, Any]:
    """The outline run.json keeps for a pipeline of the shipped manifest."""
    return outline(compile_plan(load_manifest(ROOT / "configs/manifest.json"), pipeline))


def chain(n: int, *, name: str = "stage") -> dict[str, Any]:
    return {"kind": "pipeline", "name": "long", "path": "long", "children": [
        {"kind": "stage", "name": f"{name}_{i:02d}", "path": f"long[{i}]"} for i in range(n)]}


def rects(dag: Dag) -> Iterator[tuple[str, Rect]]:
    for b in dag.boxes:
        yield b.label, (b.x, b.y, b.x + b.w, b.y + b.h)


def overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(a: Rect, b: Rect) -> bool:
    return b[0] <= a[0] and a[2] <= b[2] and b[1] <= a[1] and a[3] <= b[3]


def check_geometry(dag: Dag, width: float = DAG_WIDTH) -> None:
    """Within the width, boxes apart, frames around or apart, labels fitted to their boxes."""
    assert dag.width <= width
    page = (0.0, 0.0, dag.width, dag.height)
    boxes = list(rects(dag))
    for label, box in boxes:
        assert inside(box, page), label
    for (la, a), (lb, b) in combinations(boxes, 2):
        assert not overlap(a, b), (la, lb)
    frames = [(f.x, f.y, f.x + f.w, f.y + f.h) for f in dag.frames]
    for a, b in combinations(frames, 2):
        assert not overlap(a, b) or inside(a, b) or inside(b, a)
    for label, box in boxes:  # a box is inside a frame or clear of it
        for frame in frames:
            assert inside(box, frame) or not overlap(box, frame), label
    for b in dag.boxes:
        assert text_width(b.label, LABEL_PX) <= b.w - 20, b.label
    for f in dag.frames:  # the title 20 px in, the duration 12 px from the right, 12 between
        title = text_width(f.label, FRAME_PX) + text_width(f.detail, DETAIL_PX, bold=False)
        assert title + 44 <= f.w, f.label
    for d in dag.dots:
        assert all(not overlap((d.x - 6, d.y - 6, d.x + 6, d.y + 6), box) for _, box in boxes)


def test_a_14_step_chain_wraps_into_lines_within_the_width():
    dag = layout_dag(chain(14, name="foundation.features"), succeeded)
    check_geometry(dag)
    rows = sorted({b.y for b in dag.boxes})
    assert len(rows) >= 3  # would be one row 2,900 px wide
    assert [b.label for b in dag.boxes] == [f"foundation.features_{i:02d}" for i in range(14)]
    assert len(dag.edges) == 13
    # the end of each line runs back to the start of the next, reading order kept
    order = [(b.y, b.x) for b in dag.boxes]
    assert order == sorted(order)
    assert sum(" Q" in e for e in dag.edges) == len(rows) - 1


def test_meta_full_wraps_its_nested_pipelines_and_collapses_them():
    plan = plan_of("meta.full")
    dag = layout_dag(plan, succeeded)
    check_geometry(dag)
    assert [f.label for f in dag.frames] == ["▣ dataops.full", "▣ alpha.full"]
    assert len(dag.boxes) == 13  # 2 adapters, 3 + 8 stages
    assert dag.overview is not None and not dag.overview_first
    check_geometry(dag.overview)
    assert dag.overview.frames == []
    pipelines = [b for b in dag.overview.boxes if b.kind == "pipeline"]
    assert [(b.label, b.path) for b in pipelines] == [("dataops.full", "meta.full[0]"),
                                                      ("alpha.full", "meta.full[1]")]
    assert [b.detail for b in pipelines] == ["▣ 3 steps", "▣ 8 steps"]
    assert [f.path for f in dag.frames] == [b.path for b in pipelines]  # what a click opens


@pytest.mark.parametrize("pipeline", ["alpha.full", "alpha.parallel", "alpha.fanout"])
def test_shipped_pipelines_fit(pipeline):
    dag = layout_dag(plan_of(pipeline), succeeded)
    check_geometry(dag)
    assert (dag.overview is None) is (pipeline != "alpha.fanout")  # only it nests one


@pytest.mark.parametrize(("pipeline", "width"), [("meta.full", 560), ("alpha.parallel", 560),
                                                  ("alpha.fanout", 700)])
def test_a_narrow_width_wraps_inside_frames_and_branches(pipeline, width):
    wide = layout_dag(plan_of(pipeline), succeeded)
    dag = layout_dag(plan_of(pipeline), succeeded, width=width)
    check_geometry(dag, width)
    assert dag.width < wide.width and dag.height >= wide.height
    assert len(dag.boxes) == len(wide.boxes) and len(dag.dots) == len(wide.dots)


def test_long_names_are_cut_with_an_ellipsis_and_kept_whole_in_the_tooltip():
    name = "adapt:" + "VeryLongContextName" * 5
    dag = layout_dag({"kind": "pipeline", "name": "p", "path": "p", "children": [
        {"kind": "adapter", "name": name, "path": "p[0]:adapter"}]}, succeeded)
    (box,) = dag.boxes
    assert box.label.endswith("…") and name.startswith(box.label[:-1])
    assert box.tooltip.splitlines()[0] == name
    check_geometry(dag)
    assert fit_text("short", 200, LABEL_PX) == "short"


@given(st.text(min_size=1, max_size=200), st.floats(min_value=20, max_value=400))
@example("0)\x80", 28.0)  # a rounding gap between the two sums once let it through
def test_fit_text_keeps_the_longest_prefix_that_fits(text, room):
    fitted = fit_text(text, room, LABEL_PX)
    if fitted == text:
        assert text_width(text, LABEL_PX) <= room
    else:
        assert fitted.endswith("…") and text.startswith(fitted[:-1])
        if len(fitted) > 2:
            assert text_width(fitted, LABEL_PX) <= room
            longer = text[:len(fitted)] + "…"  # one more character does not fit
            assert text_width(longer, LABEL_PX) > room or text[len(fitted) - 1].isspace()


def test_small_dags_stay_on_one_line():
    dag = layout_dag(chain(3), succeeded)
    assert len({b.y for b in dag.boxes}) == 1 and len(dag.edges) == 3 - 1
    assert all(e.count(" H") == 1 and "Q" not in e for e in dag.edges)  # straight arrows


def test_a_big_dag_opens_on_its_overview():
    nested = {"kind": "pipeline", "name": "inner", "path": "long[0]",
              "children": chain(OVERVIEW_FIRST + 1)["children"]}
    dag = layout_dag({"kind": "pipeline", "name": "long", "path": "long",
                      "children": [nested]}, succeeded)
    assert dag.overview is not None and dag.overview_first
    check_geometry(dag)
    # the full view stays the default without a script; the script opens the overview
    html = render_report(_run_of(nested | {"name": "long", "path": "long",
                                           "children": [nested]}), [], {}, None)
    assert '<div id="dag-views" data-view="full" data-start="overview">' in html


def _run_of(plan: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": "run-1", "pipeline": plan["name"], "status": "succeeded", "plan": plan,
            "completed": [], "checkpoints": []}


def test_report_markup_of_the_two_views():
    html = render_report(_run_of(plan_of("meta.full")), [], {}, None)
    full = re.search(r'<svg class="dag" id="dag-graph" width="([\d.]+)" height="([\d.]+)" '
                     r'viewBox="0 0 ([\d.]+) ([\d.]+)"', html)
    assert full and full[1] == full[3] and float(full[1]) <= DAG_WIDTH  # drawn at scale 1
    assert 'id="dag-overview"' in html and 'id="dag-script"' in html
    assert len(re.findall(r'data-expand="meta\.full\[\d\]" tabindex="0" role="button"', html)) == 2
    assert 'data-view="full"' in html and 'class="dag-toggle"' in html
    assert html.count('class="pipeline-frame" data-path="meta.full[') == 2
    assert "svg.dag { max-width: none; }" in html
    # no nested pipeline: a single view, no toggle, no script
    html = render_report(_run_of(plan_of("alpha.full")), [], {}, None)
    assert 'id="dag-overview"' not in html and "<script" not in html
    assert 'class="dag-toggle"' not in html


def test_a_pipeline_without_a_span_fares_as_its_steps_did():
    """run.json records steps, not pipelines: a collapsed pipeline (and a frame) says what
    its steps say instead of "not run"."""
    plan = plan_of("meta.full")

    def state(kind: str, path: str) -> tuple[str, Mapping[str, Any] | None]:
        if kind == "pipeline":
            return "not-run", None
        return ("failed" if path == "meta.full[1]/alpha.full[3]" else
                "not-run" if path > "meta.full[1]/alpha.full[3]" else "succeeded"), None

    dag = layout_dag(plan, state)
    assert dag.overview is not None
    collapsed = {b.label: b.status for b in dag.overview.boxes if b.kind == "pipeline"}
    assert collapsed == {"dataops.full": "succeeded", "alpha.full": "failed"}
    assert [(f.status, f.detail) for f in dag.frames] == [("succeeded", ""),
                                                          ("failed", "failed")]
    dag = layout_dag(plan, lambda kind, path: ("not-run" if kind == "pipeline" else "skipped",
                                               None))
    assert dag.overview is not None
    assert {b.status for b in dag.overview.boxes} == {"skipped"}


def test_a_frame_is_as_wide_as_its_title():
    """A nested pipeline of one short stage still shows its whole name and duration."""
    span = {"start_time_unix_nano": 0, "end_time_unix_nano": 330_000_000}

    def state(kind: str, path: str) -> tuple[str, Mapping[str, Any] | None]:
        return "succeeded", span

    dag = layout_dag({"kind": "pipeline", "name": "p", "path": "p", "children": [
        {"kind": "pipeline", "name": "models", "path": "p[0]", "children": [
            {"kind": "stage", "name": "fit", "path": "p[0]/models[0]"}]}]}, state)
    assert [(f.label, f.detail) for f in dag.frames] == [("▣ models", "330.0 ms")]
    check_geometry(dag)
