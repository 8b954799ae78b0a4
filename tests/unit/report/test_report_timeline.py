"""The timeline's layout (runner.telemetry.timeline): as wide as the report's panel at a
1,000 px window, so the page draws it at scale 1, with long row labels cut to the
label column and whole in the tooltip. How a browser draws it: test_report_layout."""

from __future__ import annotations

from typing import Any

from runner.telemetry.dag import DAG_WIDTH, text_width
from runner.telemetry.timeline import LABEL_PX, LABEL_W, LABEL_X, Clock, layout_timeline

LONG = "compute_the_rolling_cross_sectional_momentum_signal_of_the_univer"


def _span(span_id: str, kind: str, name: str, start: int, end: int,
          parent: str | None = None) -> dict[str, Any]:
    return {"span_id": span_id, "parent_span_id": parent, "name": f"{kind} {name}",
            "start_time_unix_nano": start, "end_time_unix_nano": end,
            "attributes": {"runner.kind": kind}}


def test_the_timeline_fits_the_panel_and_cuts_a_long_name() -> None:
    spans = [_span("r", "run", "long", 0, 10**9),
             _span("a", "stage", LONG, 10**6, 6 * 10**8, "r"),
             _span("b", "stage", "tail", 6 * 10**8, 10**9, "r")]
    timeline = layout_timeline(spans, Clock.of(spans))
    assert timeline is not None
    assert timeline.width == DAG_WIDTH  # the page draws it unscaled
    long, tail = timeline.bars
    assert long.label.endswith("…") and LONG.startswith(long.label[:-1])
    assert long.tooltip.splitlines()[0] == f"stage {LONG}"
    assert text_width(long.label, LABEL_PX, bold=False) <= LABEL_W - LABEL_X
    assert tail.label == "tail"
    assert all(b.x >= LABEL_W and b.x + b.w <= LABEL_W + timeline.chart_w + 0.01
               for b in timeline.bars)
