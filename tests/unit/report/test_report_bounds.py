"""The report and the trace view walk trees read back from the store: bounded by depth.

A plan as deep as a manifest allows is drawn; an outline or span tree deeper than
anything runner writes is refused with one ArtifactError (exit 2), never a
RecursionError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from runner.artifacts import ArtifactStore
from runner.artifacts.spans import write_spans
from runner.errors import ArtifactError
from runner.manifest import MAX_NESTING, parse_manifest
from runner.orchestration.graph import outline
from runner.orchestration.plan import compile_plan
from runner.registry import StageRegistry
from runner.telemetry.bounds import MAX_OUTLINE_DEPTH, MAX_SPAN_DEPTH
from runner.telemetry.report import render_report
from runner.telemetry.spans import span_tree
from runner.telemetry.view import render_trace
from tests.unit.report.test_report import Trace, synthetic

ROOT = Path(__file__).resolve().parents[3]


def deepest_plan_outline() -> dict[str, Any]:
    """The outline of a plan nesting pipelines and groups to the manifest's limit."""
    n = MAX_NESTING // 2
    pipelines: dict[str, Any] = {f"m{i}": {"steps": ["s", [[f"m{i + 1}"], "s"]]}
                                 for i in range(n)}
    pipelines[f"m{n}"] = {"steps": ["s"]}
    reg = StageRegistry()
    reg.register("s", lambda ctx: ctx)
    plan = compile_plan(parse_manifest(json.dumps({"pipelines": pipelines})), "m0",
                        registry=reg)
    return outline(plan)


def nested_outline(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"kind": "stage", "name": "s", "path": "p[0]"}
    for _ in range(depth - 1):
        node = {"kind": "pipeline", "name": "p", "path": "p", "children": [node]}
    return node


def span_chain(depth: int) -> list[dict[str, Any]]:
    trace = Trace()
    parent = trace.add("run", "p", 0, 10, pipeline="p", executor="inline")
    for i in range(depth - 1):
        parent = trace.add("pipeline", f"p{i}", 1, 9, parent, path=f"p{i}")
    return trace.spans


def test_the_deepest_plan_a_manifest_allows_is_drawn() -> None:
    run, spans, indexes, error = synthetic()
    html = render_report({**run, "plan": deepest_plan_outline()}, spans, indexes, error)
    assert "m16" in html


@pytest.mark.parametrize("depth", [MAX_OUTLINE_DEPTH + 1, 5000])
def test_an_outline_deeper_than_any_plan_is_refused(depth: int) -> None:
    run, spans, indexes, error = synthetic()
    with pytest.raises(ArtifactError, match=f"nests more than {MAX_OUTLINE_DEPTH} levels"):
        render_report({**run, "plan": nested_outline(depth)}, spans, indexes, error)


def test_spans_up_to_the_limit_are_shown() -> None:
    spans = span_chain(MAX_SPAN_DEPTH)
    assert len(span_tree(spans)) == 1
    with open(os.devnull, "w") as sink:
        console = Console(width=2000, record=True, file=sink)
        console.print(render_trace(spans))
    assert f"pipeline p{MAX_SPAN_DEPTH - 2}" in console.export_text()


@pytest.mark.parametrize("depth", [MAX_SPAN_DEPTH + 1, 5000])
def test_spans_deeper_than_any_run_are_refused(depth: int) -> None:
    spans = span_chain(depth)
    with pytest.raises(ArtifactError, match=f"nests more than {MAX_SPAN_DEPTH} levels"):
        render_trace(spans)
    run, _, indexes, error = synthetic()
    with pytest.raises(ArtifactError):
        render_report({**run, "plan": None}, spans, indexes, error)


def test_runner_trace_refuses_a_planted_deep_span_tree(tmp_path: Path) -> None:
    # validly signed: the depth bound holds even for spans written with the key
    write_spans(ArtifactStore(tmp_path / "store"), "run-deep",
                "".join(json.dumps(s) + "\n" for s in span_chain(5000)).encode())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "trace", "run-deep", "--artifacts",
         str(tmp_path / "store")], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert f"nests more than {MAX_SPAN_DEPTH} levels" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
