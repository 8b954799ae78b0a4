"""The offline views of a run: the terminal span tree and the HTML report.

Synthetic traces (built here, in the ``spans.jsonl`` format) cover parallel
branches overlapping in time, a nested pipeline, checkpoint spans and a failed
stage; a real run through :class:`QuantSDK` checks the report against the
run.json and index.json the runner actually writes.
"""

from __future__ import annotations

import json
import re
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner.artifacts import ArtifactStore
from runner.errors import StageFailedError
from runner.sdk import QuantSDK
from runner.telemetry.spans import decode_jsonl
from runner.views.report import TIMELINE_KINDS, render_report
from runner.views.trace import format_bytes, format_duration, render_trace, summarize
from tests.integration.store_shapes import index_doc as read_index
from tests.integration.store_shapes import run_doc as read_run

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_764_130_000_000_000_000
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
DRIVER, WORKER_A, WORKER_B = 4242, 5001, 5002


# ---------------------------------------------------------------- synthetic traces


class Trace:
    """Spans in the spans.jsonl format, times in milliseconds from ``T0``."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

    def add(self, kind: str, name: str, start_ms: float, end_ms: float | None,
            parent: dict[str, Any] | None = None, *, pid: int = DRIVER,
            error: tuple[str, str] | None = None, **attrs: Any) -> dict[str, Any]:
        attributes = {"runner.kind": kind, "runner.run_id": "run-1", "runner.worker.pid": pid,
                      "runner.worker.node": "host-1",
                      **{f"runner.{k.replace('_', '.')}": v for k, v in attrs.items()}}
        if kind in ("stage", "adapter", "merge", "group", "branch", "pipeline"):
            attributes["runner.status"] = "failed" if error else "succeeded"
        prefix = "checkpoint" if kind.startswith("checkpoint") else kind
        span = {
            "trace_id": TRACE, "span_id": f"{len(self.spans) + 1:016x}",
            "parent_span_id": parent["span_id"] if parent else None,
            "name": f"{prefix} {name}", "kind": "INTERNAL",
            "start_time_unix_nano": T0 + int(start_ms * 1e6),
            "end_time_unix_nano": T0 + int(end_ms * 1e6) if end_ms is not None else None,
            "status": {"code": "ERROR" if error else "OK",
                       "message": f"{error[0]}: {error[1]}" if error else None},
            "attributes": attributes,
            "events": [{"name": "exception", "time_unix_nano": T0 + int((end_ms or 0) * 1e6),
                        "attributes": {"exception.type": error[0], "exception.message": error[1],
                                       "exception.stacktrace": "Traceback (most recent call "
                                       f"last):\n  File \"opt.py\", line 9\n{error[0]}: "
                                       f"{error[1]}\n"}}] if error else [],
            "resource": {"service.name": "runner", "process.pid": pid},
        }
        self.spans.append(span)
        return span


def plan_outline(optimize: str = "optimize") -> dict[str, Any]:
    """demo: ingest, two branches (one with a nested pipeline), an adapter, two stages."""
    return {"kind": "pipeline", "name": "demo", "path": "demo", "children": [
        {"kind": "stage", "name": "ingest", "path": "demo[0]"},
        {"kind": "group", "name": "parallel[2]", "path": "demo[1]", "merge": "alpha.ensemble",
         "children": [
             {"kind": "branch", "name": "model_a", "path": "demo[1][0]", "children": [
                 {"kind": "stage", "name": "model_a", "path": "demo[1][0]"}]},
             {"kind": "branch", "name": "features -> models", "path": "demo[1][1]",
              "children": [
                  {"kind": "stage", "name": "features", "path": "demo[1][1][0]"},
                  {"kind": "pipeline", "name": "models", "path": "demo[1][1][1]", "children": [
                      {"kind": "stage", "name": "models.fit",
                       "path": "demo[1][1][1]/models[0]"}]}]}]},
        {"kind": "adapter", "name": "to_portfolio", "path": "demo[2]"},
        {"kind": "stage", "name": optimize, "path": "demo[3]"},
        {"kind": "stage", "name": "report", "path": "demo[4]"},
    ]}


def synthetic(*, failed: bool = False, optimize: str = "optimize",
              running: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]],
                                              dict[str, Any], dict[str, Any] | None]:
    """(run.json, spans, indexes, error.json) of a demo run."""
    t = Trace()
    run_end = 705 if failed else (None if running else 1000)
    run = t.add("run", "demo", 0, run_end, pipeline="demo", executor="processes")
    t.add("stage", "ingest", 5, 100, run, path="demo[0]", stage="ingest")
    t.add("checkpoint.write", "ingest", 100, 118, run, path="demo[0]", dir="steps/001-ingest",
          rows=50_320, bytes=3_188_541, fields_written=["prices"])
    group = t.add("group", "parallel[2]", 120, 600, run, path="demo[1]")
    a = t.add("branch", "model_a", 125, 500, group, pid=WORKER_A, path="demo[1][0]",
              branch="demo[1][0]", worker_node="node-a")
    t.add("stage", "model_a", 130, 480, a, pid=WORKER_A, path="demo[1][0]", stage="model_a",
          branch="demo[1][0]", worker_node="node-a")
    b = t.add("branch", "features -> models", 126, 590, group, pid=WORKER_B, path="demo[1][1]",
              branch="demo[1][1]")
    t.add("stage", "features", 130, 250, b, pid=WORKER_B, path="demo[1][1][0]",
          stage="features", branch="demo[1][1]")
    models = t.add("pipeline", "models", 255, 585, b, pid=WORKER_B, path="demo[1][1][1]",
                   pipeline="models")
    t.add("stage", "models.fit", 260, 580, models, pid=WORKER_B,
          path="demo[1][1][1]/models[0]", stage="models.fit", branch="demo[1][1]")
    t.add("merge", "alpha.ensemble", 592, 600, group, path="demo[1]:merge",
          stage="alpha.ensemble")
    t.add("checkpoint.write", "merge", 600, 604, run, path="demo[1]", dir="steps/002-merge",
          rows=1680, bytes=45_973, fields_written=["forecast"])
    t.add("adapter", "to_portfolio", 605, 620, run, path="demo[2]", stage="to_portfolio")
    if failed:
        t.add("stage", optimize, 625, 700, run, path="demo[3]", stage=optimize,
              error=("ValueError", "weights do not sum to 1"))
    elif not running:
        t.add("stage", optimize, 625, 900, run, path="demo[3]", stage=optimize)
        t.add("stage", "report", 905, 990, run, path="demo[4]", stage="report")
    else:
        t.add("stage", optimize, 625, None, run, path="demo[3]", stage=optimize)
    status = "failed" if failed else "running" if running else "succeeded"
    checkpoints = [
        {"seq": 1, "dir": "steps/001-ingest", "name": "ingest", "path": "demo[0]",
         "kind": "step"},
        {"seq": 2, "dir": "steps/002-merge", "name": "merge", "path": "demo[1]", "kind": "step"},
    ]
    doc = {
        "format": 1, "run_id": "run-1", "pipeline": "demo", "trace_id": TRACE,
        "executor": "processes", "status": status, "attempts": 1,
        "started": "2025-11-26T04:13:20+00:00",
        "ended": None if running else ("2025-11-26T04:13:20.705000+00:00" if failed
                                       else "2025-11-26T04:13:21+00:00"),
        "error": {"type": "StageFailedError",
                  "message": f"stage {optimize!r} at demo[3] failed"} if failed else None,
        "plan": plan_outline(optimize), "completed": ["demo[0]", "demo[1]", "demo[2]"],
        "checkpoints": checkpoints,
    }
    indexes = {
        "steps/001-ingest": {"format": 1, "run_id": "run-1", "name": "ingest",
                             "path": "demo[0]", "kind": "step", "fields": {
                                 "prices": {"file": "steps/001-ingest/prices.parquet",
                                            "format": "parquet", "sha256": "ab" * 32,
                                            "bytes": 3_188_541, "rows": 50_320}}},
        "steps/002-merge": {"format": 1, "run_id": "run-1", "name": "merge", "path": "demo[1]",
                            "kind": "step", "fields": {
                                "prices": {"file": "steps/001-ingest/prices.parquet",
                                           "format": "parquet", "sha256": "ab" * 32,
                                           "bytes": 3_188_541, "rows": 50_320},
                                "forecast": {"file": "steps/002-merge/forecast.parquet",
                                             "format": "parquet", "sha256": "cd" * 32,
                                             "bytes": 45_973, "rows": 1680}}},
    }
    error = {"run_id": "run-1", "trace_id": TRACE, "pipeline": "demo", "stage": optimize,
             "path": "demo[3]", "kind": "stage", "exception_type": "ValueError",
             "message": "weights do not sum to 1",
             "traceback": "Traceback (most recent call last):\n  File \"stages.py\", line 42, "
                          "in optimize\nValueError: weights do not sum to 1\n",
             "pid": DRIVER, "time": "2025-11-26T04:13:20.700000+00:00",
             "error_context": "/store/summaries/runs/run-1/error_context.pkl"} if failed else None
    return doc, t.spans, indexes, error


# ---------------------------------------------------------------- reading the HTML back


class Page(HTMLParser):
    """Elements (tag, attributes) of a page, the text of each id'd section, and errors."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements
                if t == tag and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def bars(self) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == "rect" and a.get("class") == "bar"]


def _svg(html: str, ident: str) -> str:
    match = re.search(rf'<svg class="dag" id="{ident}".*?</svg>', html, re.S)
    assert match, f"no svg {ident}"
    return match.group(0)


def _section(html: str, ident: str) -> str:
    match = re.search(rf'<section id="{ident}">(.*?)</section>', html, re.S)
    assert match, f"no section {ident}"
    return match.group(1)


# ---------------------------------------------------------------- formatting and the tree


def test_formats():
    assert format_duration(0.0123) == "12.3 ms"
    assert format_duration(1.2361) == "1.24 s"
    assert format_duration(0.00042) == "420 µs"
    assert format_duration(125) == "2m 05.0s"
    assert format_duration(None) == "—"
    assert format_bytes(512) == "512 B"
    assert format_bytes(45_973) == "44.9 KB"
    assert format_bytes(3_188_541) == "3.0 MB"


def _text(renderable: Any) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_render_trace_nests_spans_with_durations_and_workers():
    _, spans, _, _ = synthetic()
    text = _text(render_trace(spans))
    lines = text.splitlines()
    assert lines[0].startswith("✓ run demo  1.00 s")

    def line(name: str) -> str:
        return next(x for x in lines if f" {name} " in x or x.endswith(f" {name}"))

    def depth(name: str) -> int:
        return line(name).index(name)

    assert depth("group parallel[2]") < depth("branch model_a") < depth("stage model_a")
    assert depth("branch features -> models") < depth("pipeline models") \
        < depth("stage models.fit")
    assert "350.0 ms" in line("stage model_a")
    assert "95.0 ms" in line("stage ingest")
    # worker pids only where they differ from the driver's
    assert f"pid {WORKER_A}" in line("stage model_a") and "node node-a" in line("stage model_a")
    assert f"pid {WORKER_B}" in line("stage features") and "node" not in line("stage features")
    assert "pid" not in line("stage ingest") and "node" not in line("stage ingest")
    # checkpoints say how much they wrote; steps in a branch say which
    assert "50,320 rows · 3.0 MB" in line("checkpoint ingest")
    assert "branch demo[1][1]" in line("stage models.fit")
    assert "branch" not in line("branch model_a").replace("branch model_a", "")
    # children in start order: the model_a branch started first
    assert text.index("branch model_a") < text.index("branch features -> models")


def test_render_trace_shows_failures_and_several_roots():
    _, spans, _, _ = synthetic(failed=True)
    orphan = {**spans[1], "span_id": "f" * 16, "parent_span_id": "e" * 16, "name": "stage lost"}
    text = _text(render_trace([*spans, orphan]))
    failed = next(x for x in text.splitlines() if "stage optimize" in x)
    assert failed == "└── ✗ stage optimize  75.0 ms  ValueError: weights do not sum to 1"
    assert "stage lost" in text.splitlines()[-1]  # a root of its own, after the run's tree
    assert "no spans" in _text(render_trace([]))


def test_render_trace_does_not_read_markup():
    _, spans, _, _ = synthetic(optimize="[bold]x[/bold]")
    assert "stage [bold]x[/bold]" in _text(render_trace(spans))


def test_summarize():
    _, spans, _, _ = synthetic(failed=True)
    summary = summarize(spans)
    assert summary["by_kind"]["stage"] == 5
    assert summary["failed"] == [{"name": "stage optimize", "path": "demo[3]",
                                  "type": "ValueError", "message": "weights do not sum to 1"}]
    assert summary["workers"] == [DRIVER, WORKER_A, WORKER_B]
    assert summary["bytes_written"] == 3_188_541 + 45_973
    assert summary["duration_s"] == pytest.approx(0.705)


# ---------------------------------------------------------------- the report, synthetic


def test_report_is_self_contained_html():
    html = render_report(*synthetic())
    page = Page(html)  # parses
    assert html.startswith("<!doctype html>")
    assert not re.search(r"https?://", html)
    # one inline script (the DAG's two views), nothing loaded from anywhere
    assert [a for t, a in page.elements if t == "script"] == [{"id": "dag-script"}]
    assert not page.find("link", rel="stylesheet")
    assert all(not a.get("src") for _, a in page.elements)
    assert "<style>" in html


def test_report_header():
    html = render_report(*synthetic())
    page = Page(html)
    assert page.find("span", id="run-status", class_="badge st-succeeded")
    header = html[: html.index("</header>")]
    for text in ("demo", "run-1", TRACE, "processes", "2025-11-26 04:13:20 UTC", "1.00 s"):
        assert text in header


def test_timeline_has_one_bar_per_span_and_parallel_bars_overlap():
    _, spans, indexes, _ = synthetic()
    html = render_report(synthetic()[0], spans, indexes, None)
    bars = Page(html).bars()
    shown = [s for s in spans if s["attributes"]["runner.kind"] in TIMELINE_KINDS]
    assert len(bars) == len(shown) == len(spans) - 1  # all but the run span
    assert all(float(b["width"]) > 0 for b in bars)
    by_kind: dict[str, list[dict[str, str]]] = {}
    for bar in bars:
        by_kind.setdefault(bar["data-kind"], []).append(bar)
    a, b = by_kind["branch"]
    a0, a1 = float(a["x"]), float(a["x"]) + float(a["width"])
    b0, b1 = float(b["x"]), float(b["x"]) + float(b["width"])
    assert a0 < b1 and b0 < a1  # the two branches ran at the same time
    assert len({float(x["y"]) for x in bars}) == len(bars)  # a row each
    # the x axis is in seconds from the run start, with ticks
    ticks = re.findall(r'<text class="axis"[^>]*>([^<]*)</text>', html)
    assert ticks == ["0 s", "0.2 s", "0.4 s", "0.6 s", "0.8 s", "1 s"]


def test_dag_has_a_node_per_plan_step_and_colours_by_status():
    run, spans, indexes, error = synthetic(failed=True)
    page = Page(_svg(render_report(run, spans, indexes, error), "dag-graph"))
    nodes = [a for t, a in page.elements if t == "g" and "dag-node" in a.get("class", "")]
    kinds = [n["data-kind"] for n in nodes]
    assert kinds.count("stage") == 6 and kinds.count("adapter") == 1 and kinds.count("merge") == 1
    status = {n["data-kind"] + ":" + str(i): n["data-status"] for i, n in enumerate(nodes)}
    assert sorted(status.values()) == ["failed", "not-run", *["succeeded"] * 6]
    assert len([a for t, a in page.elements if t == "rect" and "frame" in a.get("class", "")]) == 1
    assert len(page.find("circle")) == 1  # the fork


def test_dag_marks_steps_restored_on_resume():
    run, spans, indexes, _ = synthetic()
    run = {**run, "attempts": 2}
    kept = [s for s in spans if s["attributes"].get("runner.path") not in ("demo[0]",)]
    page = Page(render_report(run, kept, indexes, None))
    nodes = [a for t, a in page.elements if t == "g" and "dag-node" in a.get("class", "")]
    assert nodes[0]["data-status"] == "skipped"  # ingest: completed, but not in this trace
    page = Page(render_report({**run, "attempts": 1}, kept, indexes, None))
    nodes = [a for t, a in page.elements if t == "g" and "dag-node" in a.get("class", "")]
    assert nodes[0]["data-status"] == "succeeded"  # not resumed: only missing from the trace


def test_error_section_only_for_failed_runs():
    run, spans, indexes, error = synthetic(failed=True)
    html = render_report(run, spans, indexes, error, error_context_url="s3://b/ctx.pkl")
    section = _section(html, "error")
    assert "ValueError" in section and "weights do not sum to 1" in section
    assert "demo[3]" in section and "optimize" in section
    assert re.search(r'<pre class="tb">Traceback \(most recent call last\):.*line 42',
                     section, re.S)
    assert "s3://b/ctx.pkl" in section
    # without error.json: from the failed span and run.json
    section = _section(render_report(run, spans, indexes, None), "error")
    assert "ValueError" in section and 'File "opt.py", line 9' in unescape(section)
    assert 'id="error"' not in render_report(*synthetic())


def test_steps_table_and_artifacts():
    run, spans, indexes, error = synthetic(failed=True)
    html = render_report(run, spans, indexes, error)
    steps = _section(html, "steps")
    rows = re.findall(r"<tr.*?</tr>", steps.split("<tbody>")[1], re.S)
    assert len(rows) == 8  # 5 ran + merge + adapter ... and 'report', which did not run
    assert "+0.130 s" in steps and "350.0 ms" in steps and f"{WORKER_A} @ node-a" in steps
    assert re.search(r"<code>demo\[4\]</code>.*not-run", rows[-1], re.S)
    assert 'class="failed"' in steps
    artifacts = _section(html, "artifacts")
    assert artifacts.count('<details class="ckpt">') == 2
    assert "50,320" in artifacts and "3.0 MB" in artifacts and "abababababab" in artifacts
    assert "ab" * 13 not in artifacts  # shortened
    # unchanged: a reference to 001-ingest
    assert '<tr class="ref"><td class="wrap short" title="prices">prices' in artifacts
    assert "1 written · 44.9 KB" in artifacts


def test_everything_is_escaped():
    evil = "<script>alert(1)</script>"
    run, spans, indexes, error = synthetic(failed=True, optimize=evil)
    html = render_report({**run, "pipeline": evil}, spans, indexes, {**error, "message": evil})
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert [t for t, _ in Page(html).elements if t == "script"] == ["script"]  # the DAG's own


def test_report_of_a_running_run_and_of_nothing():
    run, spans, indexes, _ = synthetic(running=True)
    html = render_report(run, spans, indexes, None)
    assert "still running" in html and 'id="error"' not in html
    bars = Page(html).bars()
    running = [b for b in bars if b["data-status"] == "running"]
    assert running and all(float(b["width"]) > 0 for b in running)
    assert "pending" in _section(html, "steps")  # report: not started yet
    empty = render_report({"run_id": "r", "status": "running"}, [], {}, None)
    assert "DAG is unavailable" in empty and "no timeline" in empty
    assert not Page(empty).bars()


def test_dag_from_spans_when_run_json_has_no_plan():
    run, spans, indexes, _ = synthetic()
    run.pop("plan")
    html = render_report(run, spans, indexes, None)
    page = Page(html)
    nodes = [a for t, a in page.elements if t == "g" and "dag-node" in a.get("class", "")]
    assert [n["data-kind"] for n in nodes].count("stage") == 6
    assert all(n["data-status"] == "succeeded" for n in nodes)
    assert "Rebuilt from the spans" in html


# ---------------------------------------------------------------- the report of real runs


def _plan_steps(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for child in node.get("children") or ():
        if child["kind"] in ("stage", "adapter"):
            out.append(child)
        out.extend(_plan_steps(child))
    return out


@pytest.fixture(scope="module")
def fanout(tmp_path_factory):
    """alpha.fanout run through the SDK: a nested pipeline inside a parallel branch."""
    root = tmp_path_factory.mktemp("fanout")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNNER_WORKSPACE_ROOT", str(root / "ws"))
        sdk = QuantSDK(ROOT / "configs/manifest.json", artifacts=root / "artifacts")
        result = sdk.run_pipeline("alpha.fanout", executor="threads")
    store = ArtifactStore(str(root / "artifacts"))
    run = read_run(store, result.run_id)
    indexes = {c["dir"]: read_index(store, result.run_id, c["dir"]) for c in run["checkpoints"]}
    spans_file = f"runs/{result.run_id}/spans.jsonl"
    spans = decode_jsonl(store.read_bytes(spans_file)) if store.exists(spans_file) else []
    return run, indexes, spans


def test_report_of_a_real_run(fanout):
    run, indexes, _ = fanout
    html = render_report(run, [], indexes, None)
    page = Page(html)
    assert not re.search(r"https?://", html)
    nodes = [a for t, a in page.elements if t == "g" and "dag-node" in a.get("class", "")]
    plan_steps = _plan_steps(run["plan"])
    assert len([n for n in nodes if n["data-kind"] != "merge"]) == len(plan_steps) == 9
    assert [n["data-kind"] for n in nodes].count("merge") == 2
    assert {n["data-status"] for n in nodes} == {"succeeded"}  # completed, from run.json
    texts = "".join(page.text)
    for step in plan_steps:
        assert step["name"] in texts
    assert "alpha.models" in texts  # the nested pipeline's frame
    artifacts = _section(html, "artifacts")
    assert artifacts.count('<details class="ckpt">') == len(run["checkpoints"]) == 10
    for folder, index in indexes.items():
        assert folder in artifacts
        for entry in index["fields"].values():
            if entry["format"] != "value":  # a small value kept inline has no object
                assert entry["object"][:12] in artifacts
    assert "no timeline" in html


def test_report_and_tree_of_a_real_trace(fanout):
    run, indexes, spans = fanout
    if not spans:
        pytest.skip("this build writes no spans.jsonl")
    html = render_report(run, spans, indexes, None)
    page = Page(html)
    bars = page.bars()
    assert len(bars) == len([s for s in spans if s["attributes"]["runner.kind"] in TIMELINE_KINDS])
    assert {b["data-status"] for b in bars} == {"succeeded"}
    nodes = [a for t, a in page.elements if t == "g" and "dag-node" in a.get("class", "")]
    assert {n["data-status"] for n in nodes} == {"succeeded"}  # each found its span
    steps = _section(html, "steps")
    assert steps.count("<tr>") == 1 + 9 + 2  # header, 9 stages, 2 merges
    assert "—</td>" not in steps.split("<tbody>")[1].replace("<code>—</code>", "")
    text = _text(render_trace(spans))
    assert text.startswith("✓ run alpha.fanout")
    for step in _plan_steps(run["plan"]):
        assert f"stage {step['name']}" in text


def test_report_of_a_real_failed_run(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({
        "stages": {"log.a": "tests.shapes:log_a", "log.b": "tests.shapes:log_b",
                   "add.x": "tests.shapes:add_x", "fail": "tests.shapes:fail"},
        "pipelines": {"p": {"context": "tests.shapes:ShapeContext",
                            "steps": ["log.a", ["add.x", "fail"], "log.b"]}}}))
    sdk = QuantSDK(manifest, artifacts=tmp_path / "artifacts")
    with pytest.raises(StageFailedError):
        sdk.run_pipeline("p", run_id="bad-1", executor="inline")
    store = ArtifactStore(str(tmp_path / "artifacts"))
    run = read_run(store, "bad-1")
    error = json.loads(store.read_bytes("summaries/runs/bad-1/error.json"))
    indexes = {c["dir"]: read_index(store, "bad-1", c["dir"]) for c in run["checkpoints"]}
    spans_file = "runs/bad-1/spans.jsonl"
    spans = decode_jsonl(store.read_bytes(spans_file)) if store.exists(spans_file) else []
    for traced in ([], spans):  # from run.json alone, then with the trace (when written)
        html = render_report(run, traced, indexes, error)
        section = _section(html, "error")
        assert "ValueError" in section and "the model diverged" in section
        assert "Traceback (most recent call last)" in section and "p[1][1]" in section
        assert "error_context.pkl" in section
        page = Page(html)
        status = {n["data-kind"] + " " + n["data-status"] for t, n in page.elements
                  if t == "g" and "dag-node" in n.get("class", "")}
        assert status == {"stage succeeded", "stage failed", "stage not-run", "merge not-run"}
