"""A real run's report, as headless Chromium draws it in a 1,000 px window.

Each pipeline is run with the CLI in a subprocess, its report written with
``runner report``, then loaded from a file:// URL. What a reader would see is
measured in the page: every DAG text is drawn at 11 px or more (its computed
font size times the SVG's scale), no node box overlaps another, every label
lies inside its box (cut with an ellipsis, never mid-glyph, and then whole in
the tooltip), and nothing overflows the page to the right. A screenshot of the
DAG is saved in the test's folder and checked to be a real picture.

The timeline, the Steps table and the Results section are held to the same
bar: every text they show is 11 px or more on screen, the timeline is drawn at
scale 1 with each row label inside the label column (cut with an ellipsis, whole
in its tooltip), and no table cell spills out of its column, even for a stage
named with 65 characters.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from runner.views.report import render_report
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

WINDOW_W = 1000
MIN_FONT_PX = 11.0  # checked with 0.01 px of slack for the browser's float rounding

MEASURE = """
const view = document.querySelector(arguments[0]);
const boxOf = (el) => { const r = el.getBoundingClientRect();
  return {x0: r.left, y0: r.top, x1: r.right, y1: r.bottom}; };
const within = (a, b) => a.x0 >= b.x0 - 0.5 && a.x1 <= b.x1 + 0.5
  && a.y0 >= b.y0 - 0.5 && a.y1 <= b.y1 + 0.5;
const scale = view.getScreenCTM().a;
const texts = Array.from(view.querySelectorAll("text")).map((t) => ({
  text: t.textContent, cls: t.getAttribute("class"),
  px: parseFloat(getComputedStyle(t).fontSize) * scale,
  height: t.getBoundingClientRect().height}));
const nodes = Array.from(view.querySelectorAll("g[data-kind]")).map((g) => {
  const rect = boxOf(g.querySelector("rect.node"));
  return {kind: g.dataset.kind, rect: rect,
    title: g.querySelector("title").textContent,
    label: g.querySelector("text.label").textContent,
    clipped: Array.from(g.querySelectorAll("text")).filter((t) => !within(boxOf(t), rect))
      .map((t) => t.textContent)};
});
const frames = Array.from(view.querySelectorAll(".pipeline-frame")).map((f) => {
  const rect = boxOf(f.querySelector("rect.frame"));
  const label = boxOf(f.querySelector(".frame-label"));
  const detail = boxOf(f.querySelector(".frame-detail"));
  return {label: f.querySelector(".frame-label").textContent,
    inside: within(label, rect) && within(detail, rect),
    apart: label.x1 <= detail.x0 || detail.x1 - detail.x0 < 1};
});
const root = document.documentElement;
const panel = view.parentElement;
return {scale: scale, texts: texts, nodes: nodes, frames: frames,
  innerWidth: window.innerWidth, scrollWidth: root.scrollWidth, clientWidth: root.clientWidth,
  panel: [panel.scrollWidth, panel.clientWidth], svgRight: view.getBoundingClientRect().right,
  panelRight: panel.getBoundingClientRect().right};
"""


def report_of(cli: Any, tmp_path: Path, pipeline: str) -> Path:
    """Run ``pipeline`` of the shipped manifest with the CLI, then write its report."""
    artifacts, page = tmp_path / "artifacts", tmp_path / f"{pipeline}.html"
    proc = cli("run", pipeline, "-m", ROOT / "configs/manifest.json", "--artifacts", artifacts,
               "--run-id", "layout-1", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = cli("report", "layout-1", "--artifacts", artifacts, "-o", page, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return page


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return a["x0"] < b["x1"] and b["x0"] < a["x1"] and a["y0"] < b["y1"] and b["y0"] < a["y1"]


def check_view(driver: Any, selector: str) -> dict[str, Any]:
    """Legibility of one drawn DAG (``selector``: its svg), as the browser lays it out."""
    got = driver.execute_script(MEASURE, selector)
    print(f"{selector}: scale {got['scale']:.3f}, {len(got['nodes'])} nodes, smallest text "
          f"{min(t['px'] for t in got['texts']):.1f} px, page {got['scrollWidth']}/"
          f"{got['clientWidth']} px, DAG panel {got['panel'][0]}/{got['panel'][1]} px")
    small = [(t["text"], round(t["px"], 1)) for t in got["texts"] if t["px"] < MIN_FONT_PX - 0.01]
    assert small == [], "DAG text under 11 px"
    assert all(t["height"] >= MIN_FONT_PX for t in got["texts"] if t["text"].strip())
    assert got["scrollWidth"] <= got["clientWidth"], "the page overflows to the right"
    assert got["panel"][0] <= got["panel"][1], "the DAG needs a horizontal scroll at 1,000 px"
    assert got["svgRight"] <= got["panelRight"] + 0.5
    nodes = got["nodes"]
    assert nodes
    for i, a in enumerate(nodes):
        assert a["clipped"] == [], f"text outside its box: {a['clipped']}"
        for b in nodes[i + 1:]:
            assert not overlaps(a["rect"], b["rect"]), (a["label"], b["label"])
        if a["label"].endswith("…"):  # cut: the whole name is in the tooltip
            assert a["title"].split("\n")[0].startswith(a["label"][:-1])
    for frame in got["frames"]:
        assert frame["inside"] and frame["apart"], frame["label"]
    return got


def check_screenshot(path: Path) -> None:
    """A PNG of the window's size with more than a handful of colours (no PIL needed:
    the header gives the size, the inflated pixel rows the variety)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= WINDOW_W * 0.9 and height > 300
    chunks, pos = [], 8
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8:pos + 8 + size])
        pos += 12 + size
    pixels = zlib.decompress(b"".join(chunks))
    assert len(set(pixels)) > 64, "the screenshot is (nearly) one colour"
    print(f"screenshot {path}: {width}x{height}, {len(data):,} bytes")


def open_report(driver: Any, page: Path) -> None:
    driver.set_window_size(WINDOW_W, 1400)
    driver.get_log("browser")  # start from an empty console
    driver.get(page.as_uri())
    assert driver.execute_script("return window.innerWidth") <= WINDOW_W
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == []


def screenshot(driver: Any, path: Path) -> None:
    driver.execute_script("document.getElementById('dag').scrollIntoView()")
    assert driver.save_screenshot(str(path))
    check_screenshot(path)


def test_meta_full_is_legible_at_1000_px_in_both_views(driver, cli, tmp_path):
    from selenium.webdriver.common.by import By

    page = report_of(cli, tmp_path, "meta.full")
    open_report(driver, page)
    views = driver.find_element(By.ID, "dag-views")
    assert views.get_attribute("data-view") == "full"
    full = check_view(driver, "#dag-graph")
    assert len(full["nodes"]) == 13 and len(full["frames"]) == 2
    screenshot(driver, tmp_path / "meta.full.png")

    # collapse the nested pipelines, then open alpha.full by clicking its node
    driver.find_element(By.CSS_SELECTOR, '.dag-toggle [data-show="overview"]').click()
    assert views.get_attribute("data-view") == "overview"
    assert not driver.find_element(By.ID, "dag-graph").is_displayed()
    overview = check_view(driver, "#dag-overview")
    assert [n["kind"] for n in overview["nodes"]] == ["adapter", "pipeline", "adapter",
                                                      "pipeline"]
    screenshot(driver, tmp_path / "meta.full-overview.png")
    driver.find_element(By.CSS_SELECTOR, '#dag-overview [data-expand="meta.full[1]"]').click()
    assert views.get_attribute("data-view") == "full"
    flashed = driver.find_elements(By.CSS_SELECTOR, "#dag-graph .pipeline-frame.flash")
    assert [f.get_attribute("data-path") for f in flashed] == ["meta.full[1]"]
    # a frame's title collapses again
    driver.find_element(By.CSS_SELECTOR, "#dag-graph .pipeline-frame .frame-label").click()
    assert views.get_attribute("data-view") == "overview"


def test_alpha_full_is_legible_at_1000_px(driver, cli, tmp_path):
    from selenium.webdriver.common.by import By

    page = report_of(cli, tmp_path, "alpha.full")
    open_report(driver, page)
    got = check_view(driver, "#dag-graph")
    assert [n["kind"] for n in got["nodes"]] == ["stage"] * 8
    assert not [n for n in got["nodes"] if n["label"].endswith("…")]  # short names: whole
    assert not driver.find_elements(By.ID, "dag-overview")  # nothing nested: one view
    screenshot(driver, tmp_path / "alpha.full.png")


def test_a_big_dag_opens_on_its_overview(driver, tmp_path):
    """Three nested pipelines of 20 stages: the script opens the overview, legible too."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    plan = {"kind": "pipeline", "name": "big", "path": "big", "children": [
        {"kind": "pipeline", "name": f"part_{j}", "path": f"big[{j}]", "children": [
            {"kind": "stage", "name": f"part_{j}.stage_{i:02d}", "path": f"big[{j}]/p[{i}]"}
            for i in range(20)]} for j in range(3)]}
    run = {"run_id": "big-1", "pipeline": "big", "status": "succeeded", "plan": plan,
           "completed": [], "checkpoints": []}
    page = tmp_path / "big.html"
    page.write_text(render_report(run, [], {}, None), encoding="utf-8")
    open_report(driver, page)
    views = driver.find_element(By.ID, "dag-views")
    assert views.get_attribute("data-view") == "overview"
    got = check_view(driver, "#dag-overview")
    assert [n["kind"] for n in got["nodes"]] == ["pipeline"] * 3
    driver.find_element(By.CSS_SELECTOR, '#dag-overview [data-expand="big[2]"]').click()
    assert views.get_attribute("data-view") == "full"
    got = check_view(driver, "#dag-graph")
    assert len(got["nodes"]) == 60
    screenshot(driver, tmp_path / "big.png")
    # and from the keyboard: the toggle's button, then Enter on a focused pipeline node
    driver.find_element(By.CSS_SELECTOR, '.dag-toggle [data-show="overview"]').click()
    assert views.get_attribute("data-view") == "overview"
    node = driver.find_element(By.CSS_SELECTOR, '#dag-overview [data-expand="big[0]"]')
    driver.execute_script("arguments[0].focus()", node)
    ActionChains(driver).send_keys(Keys.ENTER).perform()
    assert views.get_attribute("data-view") == "full"


# ---------------------------------------------------------------- timeline, steps, results

MEASURE_SECTION = """
const section = document.querySelector(arguments[0]);
const shown = (el) => el.getClientRects().length > 0 && !el.closest("title");
const texts = [];
const walker = document.createTreeWalker(section, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const el = walker.currentNode.parentElement;
  if (!walker.currentNode.nodeValue.trim() || !shown(el)) continue;
  const svg = el.closest("svg");
  texts.push({text: walker.currentNode.nodeValue.trim().slice(0, 50),
    px: parseFloat(getComputedStyle(el).fontSize) * (svg ? svg.getScreenCTM().a : 1)});
}
const spilled = Array.from(section.querySelectorAll("td, th, caption, summary"))
  .filter((c) => shown(c) && c.scrollWidth > c.clientWidth + 1)
  .map((c) => c.textContent.trim().slice(0, 50));
const right = section.getBoundingClientRect().right;
const outside = Array.from(section.querySelectorAll("table, svg, pre, p, h2, h3"))
  .filter((el) => shown(el) && el.getBoundingClientRect().right > right + 0.5)
  .map((el) => el.tagName + "#" + el.id);
const root = document.documentElement;
return {texts: texts, spilled: spilled, outside: outside,
  section: [section.scrollWidth, section.clientWidth],
  scrollWidth: root.scrollWidth, clientWidth: root.clientWidth};
"""

MEASURE_TIMELINE = """
const svg = document.getElementById("timeline");
const ctm = svg.getScreenCTM();
const box = svg.getBoundingClientRect();
const chartX = Math.min(...Array.from(svg.querySelectorAll("line.grid"))
  .map((l) => l.x1.baseVal.value));
const labels = Array.from(svg.querySelectorAll("text.row-label")).map((t) => ({
  label: t.firstChild.nodeValue, title: t.querySelector("title").textContent,
  attempt: t.classList.contains("attempt"), right: t.getBoundingClientRect().right}));
const rights = Array.from(svg.querySelectorAll("text")).map((t) => t.getBoundingClientRect().right);
const panel = svg.parentElement;
return {scale: ctm.a, chartLeft: ctm.e + chartX * ctm.a, labels: labels,
  textRight: Math.max(...rights), svgRight: box.right,
  panel: [panel.scrollWidth, panel.clientWidth],
  panelRight: panel.getBoundingClientRect().right};
"""


def check_section(driver: Any, selector: str) -> dict[str, Any]:
    """Every shown text of the section ``selector`` at 11 px or more, nothing spilling out."""
    driver.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    got = driver.execute_script(MEASURE_SECTION, selector)
    assert got["texts"], f"{selector} shows no text"
    print(f"{selector}: {len(got['texts'])} texts, smallest "
          f"{min(t['px'] for t in got['texts']):.1f} px, section {got['section'][0]}/"
          f"{got['section'][1]} px, page {got['scrollWidth']}/{got['clientWidth']} px")
    small = sorted({(t["text"], round(t["px"], 1)) for t in got["texts"]
                    if t["px"] < MIN_FONT_PX - 0.01})
    assert small == [], f"text under 11 px in {selector}"
    assert got["scrollWidth"] <= got["clientWidth"], "the page overflows to the right"
    assert got["section"][0] <= got["section"][1], f"{selector} overflows its box"
    assert got["outside"] == []
    assert got["spilled"] == [], "a cell's text spills out of its column"
    return got


def check_timeline(driver: Any) -> dict[str, Any]:
    """The timeline at scale 1 within its panel, each row label left of the bars."""
    got = driver.execute_script(MEASURE_TIMELINE)
    print(f"timeline: scale {got['scale']:.3f}, {len(got['labels'])} rows, panel "
          f"{got['panel'][0]}/{got['panel'][1]} px")
    assert abs(got["scale"] - 1) < 0.005, "the timeline is scaled"
    assert got["panel"][0] <= got["panel"][1], "the timeline needs a horizontal scroll"
    assert got["svgRight"] <= got["panelRight"] + 0.5 and got["textRight"] <= got["svgRight"]
    for row in got["labels"]:
        if not row["attempt"]:
            assert row["right"] <= got["chartLeft"] + 0.5, f"label over the bars: {row['label']}"
        if row["label"].endswith("…"):  # cut: the whole name is in the tooltip
            assert row["label"][:-1] in row["title"].split("\n")[0], row
    return got


def test_alpha_full_timeline_steps_and_results_are_legible(driver, cli, tmp_path):
    from selenium.webdriver.common.by import By

    page = report_of(cli, tmp_path, "alpha.full")
    open_report(driver, page)
    check_timeline(driver)
    check_section(driver, "#timeline-section")
    check_section(driver, "#steps")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#steps tbody tr")) == 8
    check_section(driver, "#results")
    driver.execute_script("document.getElementById('timeline-section').scrollIntoView()")
    shot = tmp_path / "alpha.full-timeline.png"
    assert driver.save_screenshot(str(shot))
    check_screenshot(shot)


LONG_NAME = "compute_the_rolling_cross_sectional_momentum_signal_of_the_univers"[:65]
LONG_STAGES = f'''from runner.registry import stage
from runner.context import Context


@stage("{LONG_NAME}", writes=["audit_trail"])
def long_named(ctx: Context) -> Context:
    ctx.audit_trail = [*ctx.audit_trail, "long"]
    return ctx


@stage("tail", writes=["audit_trail"])
def tail(ctx: Context) -> Context:
    ctx.audit_trail = [*ctx.audit_trail, "tail"]
    return ctx
'''


def test_a_65_character_stage_name_neither_overflows_nor_overlaps(driver, cli, tmp_path):
    """The user's own manifest, run with the CLI: the long name is cut on the timeline
    (whole in the tooltip) and wraps in the Steps table, the page stays 1,000 px wide."""
    from selenium.webdriver.common.by import By

    assert len(LONG_NAME) == 65
    (tmp_path / "mystages.py").write_text(LONG_STAGES, encoding="utf-8")
    (tmp_path / "manifest.json").write_text(json.dumps({
        "pipelines": {"long": {"steps": [LONG_NAME, "tail"]}},
        "stages": {LONG_NAME: "mystages:long_named", "tail": "mystages:tail"}}))
    proc = cli("run", "long", "-m", "manifest.json", "--artifacts", "art", "--run-id", "long-1",
               "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = cli("report", "long-1", "--artifacts", "art", "-o", "long.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    open_report(driver, tmp_path / "long.html")
    got = check_timeline(driver)
    cut = [row for row in got["labels"] if row["label"].endswith("…")]
    assert [row["title"].split("\n")[0] for row in cut] == [  # its stage and checkpoint
        f"stage {LONG_NAME}", f"checkpoint {LONG_NAME}"]
    check_section(driver, "#timeline-section")
    check_section(driver, "#steps")
    cell = driver.find_element(By.CSS_SELECTOR, "#steps td.name")
    assert cell.text.replace("\n", "") == LONG_NAME  # whole, wrapped
    assert cell.get_attribute("title") == LONG_NAME
    check_section(driver, "#artifacts")  # its checkpoint's folder is named after the stage
    check_view(driver, "#dag-graph")
    driver.execute_script("document.getElementById('steps').scrollIntoView()")
    shot = tmp_path / "long-steps.png"
    assert driver.save_screenshot(str(shot))
    check_screenshot(shot)
