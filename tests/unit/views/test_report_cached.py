"""Steps restored from the step cache in the offline views: the terminal tree, the DAG,
the timeline, the steps table and the header's counts of the HTML report; distinct
from steps a resumed run restored from its checkpoint (``skipped``)."""

from __future__ import annotations

from typing import Any

from runner.views.report import render_report
from runner.views.trace import render_trace, span_status, summarize
from tests.unit.views.test_report import Page, _svg, _text, synthetic

KEY = "ab" * 32
CACHED = ("demo[1][1][0]", "demo[1][1][1]/models[0]")  # features, and models.fit nested


def cached_run(*, resumed: bool = False, pipeline_span: bool = True
               ) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """The demo run with ``features`` and ``models.fit`` cached and ``optimize`` run and
    kept (a cache miss); resumed: ``ingest`` done by the attempt before."""
    run, spans, indexes, _ = synthetic()
    for span in spans:
        attrs = span["attributes"]
        if attrs.get("runner.path") in CACHED:
            attrs.update({"runner.status": "cached", "runner.cache": "hit",
                          "runner.cache.key": KEY})
        elif attrs.get("runner.path") == "demo[3]":
            attrs.update({"runner.cache": "miss", "runner.cache.key": "cd" * 32})
    if not pipeline_span:
        spans = [s for s in spans if s["attributes"]["runner.kind"] != "pipeline"]
    if resumed:
        run = {**run, "attempts": 2}
        spans = [s for s in spans if s["attributes"].get("runner.path") != "demo[0]"]
    return run, spans, indexes


def nodes(page: Page) -> dict[str, dict[str, str]]:
    return {a["data-path"]: a for t, a in page.elements
            if t == "g" and "dag-node" in a.get("class", "")}


def test_a_cached_span_is_cached_and_its_tree_line_says_so_with_its_key():
    _, spans, _ = cached_run()
    by_path = {s["attributes"].get("runner.path"): s for s in spans
               if s["attributes"]["runner.kind"] == "stage"}
    assert span_status(by_path["demo[1][1][0]"]) == "cached"
    assert span_status(by_path["demo[3]"]) == "succeeded"  # a miss ran
    lines = _text(render_trace(spans)).splitlines()
    features = next(x for x in lines if "stage features" in x)
    assert features.lstrip(" │├└─").startswith("↺ stage features")
    assert "cached" in features and f"cache {KEY[:12]}" in features
    optimize = next(x for x in lines if "stage optimize" in x)
    assert "✓ stage optimize" in optimize and "cached" not in optimize.replace("cache cdcd", "")
    assert summarize(spans)["cached"] == 2


def test_the_report_shows_cached_steps_apart_from_steps_restored_on_resume():
    run, spans, indexes = cached_run(resumed=True)
    html = render_report(run, spans, indexes, None)
    page = Page(html)
    dag = nodes(Page(_svg(html, "dag-graph")))
    assert dag["demo[0]"]["data-status"] == "skipped"  # restored from checkpoint
    assert dag["demo[1][1][0]"]["data-status"] == "cached"
    assert dag["demo[1][1][1]/models[0]"]["data-status"] == "cached"
    assert dag["demo[3]"]["data-status"] == "succeeded"
    assert "st-cached" in dag["demo[1][1][0]"]["class"]
    # the legend names both
    legend = "".join(page.text)
    assert "restored from checkpoint" in legend and "cached (step cache, not run)" in legend
    # the steps table: a cached pill for each cached step
    pills = [a for t, a in page.elements if t == "span" and a.get("class") == "pill st-cached"]
    assert len(pills) == 2
    assert len([a for t, a in page.elements if a.get("class") == "pill st-skipped"]) == 1
    # the timeline: cached bars, their duration said cached
    bars = [b for b in page.bars() if b["data-status"] == "cached"]
    assert sorted(b["data-kind"] for b in bars) == ["stage", "stage"]
    assert html.count('class="row-dur cached"') == 2


def header_stats(html: str) -> dict[str, str]:
    page = Page(html.split('<section class="stats">', 1)[1].split("</section>", 1)[0])
    words = [t.strip() for t in page.text if t.strip()]
    return dict(zip(words[1::2], words[0::2], strict=True))


def test_the_header_counts_cached_steps_and_steps_run_only_when_the_cache_was_on():
    run, spans, indexes = cached_run()
    stats = header_stats(render_report(run, spans, indexes, None))
    assert stats["cached"] == "2"
    assert stats["steps run"] == "6"  # 8 steps, 2 of them cached
    run, spans, indexes, _ = synthetic()
    stats = header_stats(render_report(run, spans, indexes, None))
    assert "cached" not in stats and stats["steps run"] == "8"


def test_a_nested_pipeline_whose_steps_were_all_cached_is_cached():
    run, spans, indexes = cached_run(pipeline_span=False)
    html = render_report(run, spans, indexes, None)
    frames = [a for t, a in Page(_svg(html, "dag-graph")).elements
              if t == "rect" and "frame" in a.get("class", "").split()]
    assert [f["class"] for f in frames] == ["frame st-cached"]


def test_without_spans_run_json_says_which_steps_were_cached() -> None:
    from runner.views.report import _state_of

    run = {"status": "succeeded", "completed": ["p[0]", "p[1]"],
           "checkpoints": [{"path": "p[0]", "cached": True}, {"path": "p[1]"}]}
    state = _state_of(run, [], None)
    assert state("step", "p[0]") == ("cached", None)
    assert state("step", "p[1]") == ("succeeded", None)
    assert state("step", "p[2]") == ("not-run", None)
