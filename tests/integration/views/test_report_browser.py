"""The HTML report in a real browser: headless Chromium loads it from a file:// URL
without console errors, and the timeline's bars are drawn with a visible width.
The ``driver`` fixture is in tests/integration/conftest.py."""

from __future__ import annotations

import pytest

from runner.views.report import render_report
from tests.unit.views.test_report import synthetic

pytestmark = pytest.mark.integration

@pytest.mark.parametrize("failed", [False, True], ids=["succeeded", "failed"])
def test_report_renders_in_chromium(driver, tmp_path, failed):
    from selenium.webdriver.common.by import By

    run, spans, indexes, error = synthetic(failed=failed)
    page = tmp_path / "report.html"
    page.write_text(render_report(run, spans, indexes, error), encoding="utf-8")
    driver.get_log("browser")  # start from an empty console
    driver.get(page.as_uri())

    assert driver.title.startswith("demo · run-1")
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert severe == []

    bars = driver.find_elements(By.CSS_SELECTOR, "#timeline .bar")
    assert len(bars) == len(spans) - 1  # every span but the run's
    assert all(bar.rect["width"] > 0 and bar.rect["height"] > 0 for bar in bars)
    nodes = driver.find_elements(By.CSS_SELECTOR, "#dag-graph .dag-node")
    assert len(nodes) == 8  # six stages, an adapter, a merge
    assert driver.find_element(By.ID, "run-status").text == ("failed" if failed else "succeeded")
    assert bool(driver.find_elements(By.ID, "error")) is failed

    shot = tmp_path / "report.png"
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_results_and_the_equity_curve_render_in_chromium(driver, tmp_path):
    """The Results section of a succeeded run: the weights table, the steps'
    messages, the heads of the frames, and the equity curve and drawdown drawn as
    SVG polylines of one point per day, with visible size and legible axis labels."""
    from selenium.webdriver.common.by import By

    from tests.unit.views.test_report_results import DAYS, results_doc

    run, spans, indexes, error = synthetic()
    page = tmp_path / "report.html"
    page.write_text(render_report(run, spans, indexes, error, results=results_doc()),
                    encoding="utf-8")
    driver.get_log("browser")
    driver.get(page.as_uri())
    assert [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"] == []

    section = driver.find_element(By.ID, "results")
    assert section.rect["y"] < driver.find_element(By.ID, "dag").rect["y"]  # at the top
    weights = driver.find_element(By.ID, "result-weights")
    assert "AAPL" in weights.text and "0.6000" in weights.text
    assert "ingest: 10 days x 2 tickers" in section.text
    assert "<b>" in section.text  # a message is text, never markup
    heads = section.find_elements(By.CSS_SELECTOR, "table.head")
    assert heads and all(h.rect["width"] > 0 for h in heads)

    chart = driver.find_element(By.CSS_SELECTOR, "#chart-backtest svg.equity")
    assert chart.rect["width"] > 600 and chart.rect["height"] > 200
    lines = {line.get_attribute("data-series"): line
             for line in chart.find_elements(By.TAG_NAME, "polyline")}
    assert set(lines) == {"equity", "benchmark", "drawdown"}
    for line in lines.values():
        count = driver.execute_script("return arguments[0].points.numberOfItems", line)
        assert count == len(DAYS)
        assert line.rect["width"] > 500 and line.rect["height"] > 0
    sizes = driver.execute_script(
        "return Array.from(arguments[0].querySelectorAll('text')).map("
        "t => [t.textContent, t.getBoundingClientRect().height])", chart)
    assert {"2019", "2020", "0%"} <= {label for label, _ in sizes}
    assert min(height for _, height in sizes) >= 10  # px on screen: legible
    assert all(label.rect["x"] + label.rect["width"] <= section.rect["x"]
               + section.rect["width"] for label in chart.find_elements(By.TAG_NAME, "text"))

    shot = tmp_path / "results.png"
    assert section.screenshot(str(shot))
    assert shot.stat().st_size > 10_000
