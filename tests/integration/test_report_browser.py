"""The HTML report in a real browser: headless Chromium loads it from a file:// URL
without console errors, and the timeline's bars are drawn with a visible width.
The ``driver`` fixture is in tests/integration/conftest.py."""

from __future__ import annotations

import pytest

from runner.telemetry.report import render_report
from tests.unit.test_report import synthetic

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
