"""A real run whose steps the step cache saw, as the trace, spans.jsonl, ``runner
trace`` and ``runner report`` show it.

A hook ahead of runner's own (a user's hooks come first) marks the run's records
as the engine's step cache does: the first step cached (status ``cached``, its key),
the second run and kept (``succeeded``, its key), the third untouched. The spans
arrive at real OTLP receivers (HTTP and gRPC, protobuf decoded) and in the run's
spans.jsonl; the CLI reads them back from the store.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import compile_plan
from runner.orchestration.records import RunInfo, StepRecord
from runner.registry import StageRegistry
from runner.sdk import QuantSDK
from runner.telemetry import SPANS_FILE, TelemetryConfig, Tracing, decode_jsonl
from tests.unit.cli.test_user_errors import cli

pytestmark = pytest.mark.integration

HIT, MISS = "ab" * 32, "cd" * 32


def noop(ctx: Context) -> Context:
    return ctx


class StepCacheMarks(RunHook):
    """Marks records as the step cache does: ``p[0]`` a hit, ``p[1]`` a miss kept."""

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any | None) -> None:
        if record.path == "p[0]":
            record.status, record.cache_key = "cached", HIT
        elif record.path == "p[1]":
            record.cache_key = MISS


def cached_run(tmp_path, receiver, monkeypatch) -> tuple[str, list[Any]]:
    registry = StageRegistry()
    for name in ("load", "fit", "score"):
        registry.register(name, noop)
    doc = {"pipelines": {"p": {"steps": ["load", "fit", "score"]}}}
    plan = compile_plan(parse_manifest(json.dumps(doc)), "p", registry=registry)
    sdk = QuantSDK(artifacts=tmp_path / "art", workspace_root=tmp_path / "ws", registry=registry)
    sdk._plans[plan.pipeline] = plan
    for key, value in receiver.env().items():
        monkeypatch.setenv(key, value)
    tracing = Tracing(TelemetryConfig.from_env())
    try:
        result = sdk.run_pipeline("p", Context(), executor="threads", tracing=tracing,
                                  hooks=[StepCacheMarks()])
    finally:
        tracing.close()
    assert [r.status for r in result.records] == ["cached", "succeeded", "succeeded"]
    spans = receiver.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                              for s in got))
    return result.run_id, spans


def test_the_exported_and_kept_spans_say_hit_miss_and_count_the_hits(tmp_path, receiver,
                                                                      monkeypatch):
    run_id, spans = cached_run(tmp_path, receiver, monkeypatch)
    stages = {s.attributes["runner.path"]: s for s in spans
              if s.attributes["runner.kind"] == "stage"}
    hit, miss, plain = (stages[f"p[{i}]"].attributes for i in range(3))
    assert (hit["runner.cache"], hit["runner.cache.key"], hit["runner.status"]) == (
        "hit", HIT, "cached")
    assert (miss["runner.cache"], miss["runner.cache.key"], miss["runner.status"]) == (
        "miss", MISS, "succeeded")
    assert not {"runner.cache", "runner.cache.key"} & set(plain)
    assert stages["p[0]"].status_code == "OK"
    (run,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert run.attributes["runner.steps.cached"] == 1
    kept = decode_jsonl((tmp_path / "art/runs" / run_id / SPANS_FILE).read_bytes())
    by_id = {s["span_id"]: s["attributes"] for s in kept}
    for span in spans:  # the kept copy says the very same
        for key in ("runner.cache", "runner.cache.key", "runner.status", "runner.steps.cached"):
            assert by_id[span.span_id].get(key) == span.attributes.get(key), key


class _Cells(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.classes: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.classes += [f"{tag}.{v}" for k, v in attrs if k == "class" and v]


@pytest.mark.parametrize("receiver", ["http"], indirect=True)
def test_runner_trace_and_report_show_the_cached_step(tmp_path, receiver, monkeypatch):
    run_id, _ = cached_run(tmp_path, receiver, monkeypatch)
    art = str(tmp_path / "art")
    tree = cli("trace", run_id, "--artifacts", art, cwd=tmp_path, env={"COLUMNS": "200"})
    assert tree.returncode == 0, tree.stderr
    (line,) = [x for x in tree.stdout.splitlines() if "stage load" in x]
    assert "↺ stage load" in line and "cached" in line and f"cache {HIT[:12]}" in line
    assert re.search(r"✓ stage fit\b", tree.stdout)
    report = cli("report", run_id, "--artifacts", art, "-o", tmp_path / "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "r.html").read_text()
    cells = _Cells(html).classes
    assert cells.count("span.pill st-cached") == 1
    assert cells.count("span.pill st-succeeded") == 2
    assert re.search(r'data-status="cached" data-path="p\[0\]"', html)
    assert re.search(r"<b>1</b><span>cached</span>", html)
    assert re.search(r"<b>2</b><span>steps run</span>", html)
