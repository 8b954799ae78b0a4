"""Traces of real runs, received by real OTLP receivers (HTTP and gRPC) on 127.0.0.1.

Each test points the standard OTEL_* variables at a receiver from tests/otlp.py,
runs a pipeline, and checks what arrived against the plan: one trace, one span
per stage, group, branch, nested pipeline and merge, each under the right parent,
and the same spans in the run's spans.jsonl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider

from runner.artifacts.signing import sign_document
from runner.errors import StageFailedError
from runner.orchestration.plan import Branch, ParallelGroup, PipelineStep, Plan, StageStep
from runner.sdk import QuantSDK
from runner.telemetry import SPANS_FILE, TelemetryConfig, Tracing, decode_jsonl
from tests.otlp import (
    OtlpGrpcReceiver,
    OtlpHttpReceiver,
    ReceivedSpan,
    otlp_grpc_fixture,  # noqa: F401
    otlp_http_fixture,  # noqa: F401
)
from tests.rotel import RotelCollector, require_rotel
from tests.shapes import REG, base_context, plan_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
MANIFEST = ROOT / "configs/manifest.json"
SHIPPED = ["alpha.full", "alpha.parallel", "alpha.fanout", "dataops.full", "meta.full"]


def tracing_to(rec, monkeypatch, **env: str) -> Tracing:
    for key, value in {**rec.env(), **env}.items():
        monkeypatch.setenv(key, value)
    return Tracing(TelemetryConfig.from_env())


def expected_spans(plan: Plan) -> Counter[tuple[str, str]]:
    """(runner.kind, runner.path) of every span the plan's run must make."""
    want: Counter[tuple[str, str]] = Counter({("run", plan.pipeline): 1})

    def visit(items) -> None:
        for item in items:
            if isinstance(item, PipelineStep):
                want["pipeline", item.path] += 1
                visit(item.steps)
            elif isinstance(item, ParallelGroup):
                want["group", item.path] += 1
                want["merge", f"{item.path}:merge"] += 1
                visit(item.branches)
            elif isinstance(item, Branch):
                want["branch", item.path] += 1
                visit(item.steps)
            else:
                kind = "stage" if isinstance(item, StageStep) else "adapter"
                want[kind, item.path] += 1

    visit(plan.steps)
    return want


def check_tree(spans: list[ReceivedSpan], plan: Plan, trace_id: str) -> dict[str, ReceivedSpan]:
    """One trace, the plan's spans exactly once each, every parent the enclosing one."""
    assert {s.trace_id for s in spans} == {trace_id}
    engine = [s for s in spans if not s.attributes["runner.kind"].startswith("checkpoint")]
    got = Counter((s.attributes["runner.kind"], s.attributes["runner.path"]) for s in engine)
    assert got == expected_spans(plan)
    by_id = {s.span_id: s for s in spans}
    assert len(by_id) == len(spans)
    (root,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert root.name == f"run {plan.pipeline}"
    index = {(s.attributes["runner.kind"], s.attributes["runner.path"]): s for s in engine}

    def expect_parent(item, parent_key) -> None:
        kind = ("pipeline" if isinstance(item, PipelineStep) else "group"
                if isinstance(item, ParallelGroup) else "branch" if isinstance(item, Branch)
                else "stage" if isinstance(item, StageStep) else "adapter")
        span = index[kind, item.path]
        assert span.parent_span_id == index[parent_key].span_id, (item.path, parent_key)
        if isinstance(item, PipelineStep):
            for child in item.steps:
                expect_parent(child, ("pipeline", item.path))
        elif isinstance(item, ParallelGroup):
            assert index["merge", f"{item.path}:merge"].parent_span_id == span.span_id
            for child in item.branches:
                expect_parent(child, ("group", item.path))
        elif isinstance(item, Branch):
            for child in item.steps:
                expect_parent(child, ("branch", item.path))

    for item in plan.steps:
        expect_parent(item, ("run", plan.pipeline))
    for span in spans:
        assert span.status_code != "ERROR"
        assert span.attributes["runner.run_id"] == root.attributes["runner.run_id"]
        if span is not root:
            assert span.parent_span_id in by_id
            assert span.start_time_unix_nano >= root.start_time_unix_nano
        assert span.end_time_unix_nano >= span.start_time_unix_nano
    return index


@pytest.mark.parametrize("pipeline", SHIPPED)
def test_shipped_pipeline_is_one_trace_shaped_like_its_plan(pipeline, receiver, tmp_path,
                                                            monkeypatch):
    tracing = tracing_to(receiver, monkeypatch)
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    try:
        runner = sdk.runner(pipeline, executor="threads", tracing=tracing)
        trace_id = runner.trace_id  # known before the run
        result = runner.run()
    finally:
        tracing.close()
    assert result.trace_id == trace_id
    plan = sdk.plan(pipeline)
    spans = receiver.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                              for s in got))
    index = check_tree(spans, plan, trace_id)
    run_span = index["run", pipeline]
    assert run_span.status_code == "OK"
    assert run_span.attributes["runner.executor"] == "threads"
    assert run_span.resource["service.name"] == "runner"
    # a checkpoint span per checkpoint, with its size and where it is
    doc = json.loads((tmp_path / "art/runs" / result.run_id / "run.json").read_text())
    assert doc["trace_id"] == trace_id
    checkpoints = [s for s in spans if s.attributes["runner.kind"] == "checkpoint.write"]
    assert sorted(s.attributes["runner.dir"] for s in checkpoints) == sorted(
        c["dir"] for c in doc["checkpoints"])
    for span in checkpoints:
        assert span.attributes["runner.url"].startswith(str(tmp_path / "art"))
        assert span.parent_span_id == run_span.span_id
        if span.attributes["runner.fields_written"]:
            assert span.attributes["runner.bytes"] > 0
    # the offline copy holds the very same spans
    offline = decode_jsonl((tmp_path / "art/runs" / result.run_id / SPANS_FILE).read_bytes())
    assert {s["span_id"] for s in offline} == {s.span_id for s in spans}
    assert {(s["span_id"], s["parent_span_id"]) for s in offline} == {
        (s.span_id, s.parent_span_id) for s in spans}


@pytest.mark.parametrize("pipeline", ["alpha.parallel", "alpha.fanout"])
def test_process_workers_spans_join_the_runs_trace(pipeline, otlp_grpc, tmp_path, monkeypatch):
    tracing = tracing_to(otlp_grpc, monkeypatch)
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    try:
        result = sdk.run_pipeline(pipeline, executor="processes", tracing=tracing)
    finally:
        tracing.close()
    spans = otlp_grpc.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                               for s in got))
    index = check_tree(spans, sdk.plan(pipeline), result.trace_id)
    driver = os.getpid()
    by_id = {s.span_id: s for s in spans}
    top = [s for s in spans if s.attributes["runner.kind"] == "branch"
           and by_id[s.parent_span_id].resource["process.pid"] == driver]
    assert len(top) == 2
    records = {r.path: r.pid for r in result.records}
    for branch in top:
        worker = branch.attributes["runner.worker.pid"]
        assert worker != driver
        assert branch.resource["process.pid"] == worker  # made in the worker itself
        below = [s for s in spans if s.attributes.get("runner.branch", "").startswith(
            branch.attributes["runner.path"]) and s is not branch]
        assert below
        for span in below:  # everything inside the branch, nested groups too
            assert span.resource["process.pid"] == worker
            if span.attributes["runner.kind"] == "stage":
                assert records[span.attributes["runner.path"]] == worker
    groups = [g for g in sdk.plan(pipeline).steps if isinstance(g, ParallelGroup)]
    assert groups
    for group in groups:  # a top-level group merges in the driver
        assert index["merge", f"{group.path}:merge"].resource["process.pid"] == driver


@pytest.mark.parametrize("executor", ["inline", "threads", "processes"])
def test_failing_stage_span_is_error_with_the_exception(executor, otlp_http, tmp_path,
                                                       monkeypatch):
    tracing = tracing_to(otlp_http, monkeypatch)
    plan = plan_for(["log.a", [["log.b"], ["fail"]], "log.c"])
    sdk = QuantSDK(artifacts=tmp_path / "art", workspace_root=tmp_path / "ws", registry=REG)
    sdk._plans[plan.pipeline] = plan
    runner = sdk.runner(plan.pipeline, executor=executor, tracing=tracing)
    try:
        with pytest.raises(StageFailedError):
            runner.run(base_context())
    finally:
        tracing.close()
    spans = otlp_http.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                               for s in got))
    assert {s.trace_id for s in spans} == {runner.trace_id}
    (failed,) = [s for s in spans if s.name == "stage fail"]
    assert failed.status_code == "ERROR"
    assert "the model diverged" in failed.status_message
    event = failed.event("exception")
    assert event["exception.type"] == "ValueError"
    assert event["exception.message"] == "the model diverged"
    assert "raise ValueError" in event["exception.stacktrace"]
    (branch,) = [s for s in spans if s.span_id == failed.parent_span_id]
    assert branch.attributes["runner.kind"] == "branch" and branch.status_code == "ERROR"
    (group,) = [s for s in spans if s.attributes["runner.kind"] == "group"]
    assert group.status_code == "ERROR"
    (root,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert root.status_code == "ERROR"
    assert root.event("exception")["exception.type"] == "StageFailedError"
    assert "raise ValueError" in root.event("exception")["exception.stacktrace"]
    assert not [s for s in spans if s.name == "stage log.c"]  # never ran
    offline = decode_jsonl((tmp_path / "art/runs" / runner.run_id / SPANS_FILE).read_bytes())
    assert {s["span_id"] for s in offline} == {s.span_id for s in spans}


def test_a_run_started_with_traceparent_joins_that_trace(otlp_http, tmp_path, monkeypatch):
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    tracing = tracing_to(otlp_http, monkeypatch, TRACEPARENT=f"00-{trace_id}-{parent}-01")
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    runner = sdk.runner("alpha.parallel", executor="processes", tracing=tracing)
    assert runner.trace_id == trace_id
    try:
        runner.run()
    finally:
        tracing.close()
    spans = otlp_http.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                               for s in got))
    (root,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert root.parent_span_id == parent
    check_tree(spans, sdk.plan("alpha.parallel"), trace_id)


def test_a_run_inside_an_application_span_joins_its_trace(otlp_http, tmp_path, monkeypatch):
    tracing = tracing_to(otlp_http, monkeypatch)
    app = TracerProvider()
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    try:
        with app.get_tracer("app").start_as_current_span("nightly rebalance") as outer:
            result = sdk.run_pipeline("alpha.full", tracing=tracing)
    finally:
        tracing.close()
        app.shutdown()
    ctx = outer.get_span_context()
    assert result.trace_id == f"{ctx.trace_id:032x}"
    spans = otlp_http.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                               for s in got))
    (root,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert root.parent_span_id == f"{ctx.span_id:016x}"
    assert otel_trace.get_current_span().get_span_context().is_valid is False


def test_resumed_run_has_a_checkpoint_read_span(otlp_http, tmp_path, monkeypatch):
    plan = plan_for(["log.a", "log.b", "log.c"])
    sdk = QuantSDK(artifacts=tmp_path / "art", workspace_root=tmp_path / "ws", registry=REG)
    sdk._plans[plan.pipeline] = plan
    runner = sdk.runner(plan.pipeline, tracing=False)
    done = runner.run(base_context())
    # forget the last step, as if the run had died before it
    doc_path = tmp_path / "art/runs" / done.run_id / "run.json"
    doc = json.loads(doc_path.read_text())
    doc.update(status="failed", completed=doc["completed"][:2],
               checkpoints=doc["checkpoints"][:2])
    doc_path.write_text(json.dumps(sign_document(doc)))  # re-signed with the store's key
    tracing = tracing_to(otlp_http, monkeypatch)
    try:
        sdk.runner(plan.pipeline, run_id=done.run_id, resume=True, tracing=tracing).run()
    finally:
        tracing.close()
    spans = otlp_http.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                               for s in got))
    (read,) = [s for s in spans if s.attributes["runner.kind"] == "checkpoint.read"]
    (root,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert read.parent_span_id == root.span_id
    assert read.start_time_unix_nano >= root.start_time_unix_nano
    assert "value" in read.attributes["runner.fields_read"]
    assert [s.name for s in spans if s.attributes["runner.kind"] == "stage"] == ["stage log.c"]


def test_a_resumed_attempt_is_a_trace_linked_to_the_attempt_it_resumes(otlp_http, tmp_path,
                                                                         monkeypatch):
    """Over OTLP as in spans.jsonl: attempt 2's run span links to attempt 1's, in
    another trace, and every span says which attempt it belongs to."""
    plan = plan_for(["log.a", "log.b", "log.c"])
    sdk = QuantSDK(artifacts=tmp_path / "art", workspace_root=tmp_path / "ws", registry=REG)
    sdk._plans[plan.pipeline] = plan
    tracing = tracing_to(otlp_http, monkeypatch)
    try:
        done = sdk.runner(plan.pipeline, tracing=tracing).run(base_context())
        first = otlp_http.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                                   for s in got))
        (one,) = [s for s in first if s.attributes["runner.kind"] == "run"]
        otlp_http.clear()
        doc_path = tmp_path / "art/runs" / done.run_id / "run.json"
        doc = json.loads(doc_path.read_text())  # as if it had died before its last step
        doc.update(status="failed", completed=doc["completed"][:2],
                   checkpoints=doc["checkpoints"][:2])
        doc_path.write_text(json.dumps(sign_document(doc)))
        sdk.runner(plan.pipeline, run_id=done.run_id, resume=True, tracing=tracing).run()
    finally:
        tracing.close()
    spans = otlp_http.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                               for s in got))
    (two,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert two.trace_id != one.trace_id and two.links == [(one.trace_id, one.span_id)]
    assert {s.attributes["runner.attempt"] for s in spans} == {2}
    assert one.attributes["runner.attempt"] == 1
    assert two.attributes["runner.resumed_from"] == doc["checkpoints"][1]["dir"]
    kept = [json.loads(line) for line in
            (tmp_path / "art/runs" / done.run_id / SPANS_FILE).read_text().splitlines()]
    (run,) = [s for s in kept if s["attributes"]["runner.kind"] == "run"]
    assert run["span_id"] == two.span_id
    assert [(k["trace_id"], k["span_id"]) for k in run["links"]] == [(one.trace_id,
                                                                      one.span_id)]
    moved = tmp_path / "art/runs" / done.run_id / "attempts" / "1" / SPANS_FILE
    assert one.span_id in {json.loads(line)["span_id"]
                           for line in moved.read_text().splitlines()}


def test_sdk_disabled_makes_no_spans(tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    result = sdk.run_pipeline("dataops.full")
    assert not (tmp_path / "art/runs" / result.run_id / SPANS_FILE).exists()


def test_no_endpoint_means_no_exporter_but_spans_are_kept(tmp_path):
    tracing = Tracing(TelemetryConfig.from_env({}))
    assert tracing.export is None and not tracing.config.exports
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    try:
        result = sdk.run_pipeline("dataops.full", tracing=tracing)
    finally:
        tracing.close()
    spans = decode_jsonl((tmp_path / "art/runs" / result.run_id / SPANS_FILE).read_bytes())
    assert {s["trace_id"] for s in spans} == {result.trace_id}
    assert len([s for s in spans if s["attributes"]["runner.kind"] == "stage"]) == 3


# ---------------------------------------------------------------- through the CLI


def cli(*args, env: dict[str, str], cwd: Path, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "TRACEPARENT"))}
    full.update(env)
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(cwd)])
    return subprocess.run([sys.executable, "-m", "runner.cli", *map(str, args)], cwd=cwd,
                          env=full, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.mark.parametrize("cls", [OtlpHttpReceiver, OtlpGrpcReceiver], ids=["http", "grpc"])
def test_cli_run_exports_with_the_standard_variables(cls, tmp_path):
    # a stage with its own instrumentation: its span must nest under the stage's
    (tmp_path / "mystages.py").write_text(
        "from opentelemetry import trace\n"
        "def traced(ctx):\n"
        "    with trace.get_tracer('mystages').start_as_current_span('solve') as span:\n"
        "        span.set_attribute('solver.iterations', 7)\n"
        "    return ctx\n")
    manifest = json.loads(MANIFEST.read_text())
    manifest["pipelines"]["dataops.traced"] = {
        "context": "runner.stages.contexts:DataOpsContext",
        "steps": ["dataops.full", "mystages.traced"],
    }
    manifest["stages"] = {"mystages.traced": "mystages:traced"}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with cls() as rec:
        env = {**rec.env(), "OTEL_SERVICE_NAME": "research-nightly",
               "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test,team=quant",
               "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=desk-7"}
        proc = cli("--log-format", "json", "run", "dataops.traced", "-m", "manifest.json",
                   "--json", "--artifacts", tmp_path / "art", env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        spans = rec.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                             for s in got))
        headers = rec.headers
    assert {s.trace_id for s in spans} == {doc["trace_id"]}
    assert any(h.get("x-tenant") == "desk-7" for h in headers)
    (root,) = [s for s in spans if s.attributes.get("runner.kind") == "run"]
    assert root.resource["service.name"] == "research-nightly"
    assert root.resource["team"] == "quant"
    (solve,) = [s for s in spans if s.name == "solve"]
    (stage,) = [s for s in spans if s.name == "stage mystages.traced"]
    assert solve.parent_span_id == stage.span_id
    assert solve.attributes["solver.iterations"] == 7
    offline = decode_jsonl((tmp_path / "art/runs" / doc["run_id"] / SPANS_FILE).read_bytes())
    assert "solve" in {s["name"] for s in offline}
    # every log line of the run is JSON and carries the run's ids
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert len(lines) >= 5 and len(lines) == len(proc.stderr.strip().splitlines())
    run_lines = [r for r in lines if r.get("event") in ("run_started", "step_ended", "run_ended")]
    assert {r["run_id"] for r in run_lines} == {doc["run_id"]}
    assert {r["trace_id"] for r in run_lines} == {doc["trace_id"]}
    step_lines = [r for r in run_lines if r["event"] == "step_ended"]
    span_ids = {s.span_id for s in spans if s.attributes.get("runner.kind") == "stage"}
    assert step_lines and {r["span_id"] for r in step_lines} <= span_ids


def test_cli_run_with_traceparent_env_joins_the_callers_trace(tmp_path):
    trace_id, parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    with OtlpHttpReceiver() as rec:
        env = {**rec.env(), "TRACEPARENT": f"00-{trace_id}-{parent}-01"}
        proc = cli("run", "dataops.full", "--json", "--artifacts", tmp_path / "art",
                   "-m", MANIFEST, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        spans = rec.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                             for s in got))
    assert json.loads(proc.stdout)["trace_id"] == trace_id
    assert {s.trace_id for s in spans} == {trace_id}
    (root,) = [s for s in spans if s.attributes["runner.kind"] == "run"]
    assert root.parent_span_id == parent


TINY_STAGES = "def prepare(ctx):\n    ctx.audit_trail.append('prepared')\n    return ctx\n"
TINY_MANIFEST = {"pipelines": {"tiny": {"steps": ["prepare"]}},
                 "stages": {"prepare": "tiny_stages:prepare"}}


@pytest.fixture
def silent_port():
    """A port that takes connections and never answers (a hung collector)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)  # connections complete in the backlog, never accepted
        yield s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
@pytest.mark.parametrize("collector", ["closed", "silent"])
def test_cli_unreachable_collector_costs_a_short_wait_said_once(protocol, collector, tmp_path,
                                                                request):
    """Yesterday a 0.1 s run took 7.6 s with the collector down (the exporter's
    retries at exit; as long as OTEL_EXPORTER_OTLP_TIMEOUT with a collector that never
    answers) and said it in other words. Now one line and a capped wait: with a
    60 s exporter timeout the run still ends well within the 45 s safety timeout."""
    import time

    from tests.rotel import free_port

    (tmp_path / "tiny_stages.py").write_text(TINY_STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(TINY_MANIFEST))
    port = free_port() if collector == "closed" else request.getfixturevalue("silent_port")
    endpoint = f"http://127.0.0.1:{port}"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
           "OTEL_EXPORTER_OTLP_TIMEOUT": "60"}
    started = time.monotonic()
    proc = cli("run", "tiny", "--json", "--artifacts", tmp_path / "art",
               "-m", tmp_path / "manifest.json", env=env, cwd=tmp_path, timeout=45)
    took = time.monotonic() - started
    print(f"run with a {collector} OTLP {protocol} collector: {took:.2f} s wall")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    said = [line for line in proc.stderr.splitlines() if "traces not exported" in line]
    assert len(said) == 1, proc.stderr
    assert f"traces not exported: {endpoint} unreachable (OTLP {protocol})" in said[0]
    assert "Traceback" not in proc.stderr and "Transient error" not in proc.stderr
    assert "etrying" not in proc.stderr, proc.stderr
    assert (tmp_path / "art/runs" / doc["run_id"] / SPANS_FILE).exists()


def test_the_exit_wait_is_an_environment_variable(tmp_path):
    """``RUNNER_OTLP_EXIT_WAIT=0``: not a moment waited for an unreachable collector,
    still said once; a value that is not seconds is said and the default used."""
    from runner.telemetry.tracing import EXIT_WAIT_S, exit_wait
    from tests.rotel import free_port

    assert exit_wait({}) == EXIT_WAIT_S
    assert exit_wait({"RUNNER_OTLP_EXIT_WAIT": "0.25"}) == 0.25
    assert exit_wait({"RUNNER_OTLP_EXIT_WAIT": "soon"}) == EXIT_WAIT_S
    (tmp_path / "tiny_stages.py").write_text(TINY_STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(TINY_MANIFEST))
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",
           "RUNNER_OTLP_EXIT_WAIT": "0"}
    proc = cli("run", "tiny", "-q", "--artifacts", tmp_path / "art",
               "-m", tmp_path / "manifest.json", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("traces not exported") == 1, proc.stderr


@pytest.mark.parametrize("into", ["grpc", "http"])
def test_a_run_through_a_real_collector_keeps_ids_and_parents(into, tmp_path, monkeypatch):
    """runner -> rotel (OTLP in, over ``into``) -> our receiver (OTLP gRPC)."""
    require_rotel()
    sdk = QuantSDK(MANIFEST, artifacts=tmp_path / "art", workspace_root=tmp_path / "ws")
    with OtlpGrpcReceiver() as rec, RotelCollector(rec.endpoint, "grpc") as rotel:
        for key, value in rotel.env(into).items():
            monkeypatch.setenv(key, value)
        tracing = Tracing(TelemetryConfig.from_env())
        try:
            result = sdk.run_pipeline("alpha.parallel", executor="processes", tracing=tracing)
        finally:
            tracing.close()
        spans = rec.wait_for(lambda got: any(s.attributes.get("runner.kind") == "run"
                                             for s in got) and len(got) >= 20)
        agents = {h.get("user-agent", "") for h in rec.headers}
    assert any("rotel" in a.lower() for a in agents), agents  # it really went through rotel
    check_tree(spans, sdk.plan("alpha.parallel"), result.trace_id)
    offline = decode_jsonl((tmp_path / "art/runs" / result.run_id / SPANS_FILE).read_bytes())
    assert {(s["span_id"], s["parent_span_id"]) for s in offline} == {
        (s.span_id, s.parent_span_id) for s in spans}
