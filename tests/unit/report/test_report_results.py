"""The report's Results section, from a results document as a run writes it, and
from documents a run never wrote (the store is untrusted): a note, never a crash."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from runner.artifacts.results import build_results
from runner.stages.contexts import PortfolioContext
from runner.telemetry.report import render_report
from tests.unit.report.test_report import synthetic

DAYS = pd.bdate_range("2019-01-01", periods=400, name="date")


def portfolio() -> PortfolioContext:
    """A final context of the alpha pipelines, with a backtest of 400 days."""
    equity = np.exp(np.linspace(0, 0.3, len(DAYS)) + 0.05 * np.sin(np.arange(len(DAYS)) / 9))
    curve = pd.DataFrame({
        "equity": equity, "drawdown": equity / np.maximum.accumulate(equity) - 1,
        "returns": np.r_[0.0, equity[1:] / equity[:-1] - 1], "turnover": np.nan,
        "benchmark": np.exp(np.linspace(0, 0.2, len(DAYS)))}, index=DAYS)
    ctx = PortfolioContext(
        prices=pd.DataFrame({"AAPL": np.linspace(100, 130, 10), "MSFT": 200.0},
                            index=DAYS[:10]),
        weights=pd.Series({"AAPL": 0.6, "MSFT": 0.4}, name="weight"),
        risk={"volatility": 0.18, "sharpe": 0.9}, regime="calm",
        backtest=curve, backtest_stats={"sharpe": 1.1, "max_drawdown": -0.12})
    ctx.log("ingest: 10 days x 2 tickers")
    ctx.log("optimize: <b>weights</b> chosen")
    return ctx


def results_doc() -> dict[str, Any]:
    ctx = portfolio()
    messages = [{"step": "foundation.ingest", "path": "alpha.full[0]",
                 "messages": [ctx.audit_trail[0]]},
                {"step": "risk.optimize", "path": "alpha.full[6]",
                 "messages": [ctx.audit_trail[1]]}]
    return json.loads(json.dumps(build_results(ctx, messages)))  # as read back from the store


def page(results: Any, note: str | None = None) -> str:
    run, spans, indexes, error = synthetic()
    return render_report(run, spans, indexes, error, results=results, results_note=note)


def section(text: str) -> str:
    match = re.search(r'<section id="results">.*?</section>', text, re.S)
    assert match, "no Results section"
    return match.group(0)


def test_the_results_section_shows_weights_messages_fields_and_the_equity_curve():
    text = page(results_doc())
    results = section(text)
    assert text.index('id="results"') < text.index('id="dag"')  # at the top
    # the report: weights with bars, risk and backtest figures, plain values
    assert re.search(r"<td>AAPL</td><td class=\"num\">0\.6000</td>", results)
    assert "regime</b> calm" in results
    assert "<caption>backtest</caption>" in results and "max_drawdown" in results
    # the steps' messages, per step, escaped
    assert "foundation.ingest" in results and "ingest: 10 days x 2 tickers" in results
    assert "optimize: &lt;b&gt;weights&lt;/b&gt; chosen" in results
    # the final context's fields, with the head of each frame as a table
    assert "<code>prices</code>" in results and "<td>10 x 2</td>" not in results
    assert re.search(r"<code>prices</code></td><td>DataFrame</td><td class=\"mono\">10 x 2",
                     results)
    assert "<th>AAPL</th>" in results and "<td>2019-01-01</td>" in results
    # the equity curve and the drawdown, one point per day, with labelled axes
    found = re.findall(r'<polyline class="[^"]+" data-series="(\w+)" data-points="(\d+)" '
                       r'points="([^"]+)"', results)
    assert {name for name, _, _ in found} == {"equity", "benchmark", "drawdown"}
    assert all(int(n) == len(points.split()) == len(DAYS) for _, n, points in found)
    labels = re.findall(r"<text[^>]*>([^<]+)</text>", results)
    assert "2019" in labels and "2020" in labels  # the date axis
    assert "0%" in labels and "growth of 1" in labels


def test_a_run_without_results_has_no_section():
    assert 'id="results"' not in page(None)


@pytest.mark.parametrize("doc", [
    [], "text", 3, {"report": [1, 2]}, {"messages": "x"}, {"fields": {"a": 1}},
    {"charts": {"backtest": {"dates": ["x", "y"], "columns": {"equity": [1, 2]}}}},
    {"charts": {"backtest": {"dates": ["2020-01-01", "2020-01-02"],
                             "columns": {"equity": [1]}}}},
    {"charts": {"backtest": {"dates": ["2020-01-01", "2020-01-02"],
                             "columns": {"equity": ["a", None]}}}},
    {"charts": []}, {"fields": [{"name": "x", "shape": ["a"], "head": {"rows": 3}}]},
    {"messages": [{"step": 1, "messages": [{"deep": [1]}]}, 5]},
], ids=repr)
def test_a_malformed_document_gives_a_report_without_it_and_no_crash(doc):
    text = page(doc)
    assert "</html>" in text


def test_a_malformed_chart_is_left_out_with_a_note():
    doc = results_doc()
    doc["charts"]["backtest"]["columns"]["equity"] = doc["charts"]["backtest"]["columns"][
        "equity"][:-1]  # one value short
    results = section(page(doc))
    assert "chart &#39;backtest&#39; is malformed: not drawn" in results
    assert "<polyline" not in results
    assert "AAPL" in results  # the rest is shown


def test_the_note_of_an_unreadable_results_file_is_shown():
    note = "results.json does not match the sha256 run.json lists for it"
    results = section(page(None, note))
    assert html.escape(note) in results
