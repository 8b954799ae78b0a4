"""What tracing costs per stage: the engine with tracing off, on, and exporting.

N trivial stages (``def sN(ctx): return ctx``) in one pipeline, run inline by
``DAGRunner`` (construct + run, best and median of many repeats, collector off):

- untraced: the engine with no hooks;
- traced, kept: the ``TracingHook`` making every span, collected for spans.jsonl,
  nothing sent;
- traced, exported: the same, also exported over OTLP (HTTP and gRPC) to a real
  receiver on 127.0.0.1 (tests/otlp.py), flushed at the end of each run;
- the reference: the OpenTelemetry SDK alone starting and ending N spans, the
  floor of what any per-stage span costs in Python.

The per-stage cost of tracing is ``(traced - untraced) / N``.

    python benchmarks/tracing.py               # 200 stages, 50 repeats
    python benchmarks/tracing.py --json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.plan import Plan, compile_plan
from runner.orchestration.runner import DAGRunner
from runner.registry import StageRegistry
from runner.telemetry import TelemetryConfig, Tracing, TracingHook
from tests.otlp import OtlpGrpcReceiver, OtlpHttpReceiver


def build(n: int) -> Plan:
    registry = StageRegistry()
    for i in range(n):
        def fn(ctx: Context) -> Context:
            return ctx
        fn.__name__ = fn.__qualname__ = f"s{i}"
        registry.register(fn.__name__, fn)
    text = json.dumps({"pipelines": {"bench": {"steps": [f"s{i}" for i in range(n)]}}})
    return compile_plan(parse_manifest(text, source="<tracing benchmark>"), "bench",
                        registry=registry)


def timed(call: Callable[[], Any], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        gc.disable()
        try:
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return out


def run_with(plan: Plan, tmp: str, tracing: Tracing | None) -> Callable[[], Any]:
    def call() -> Any:
        hooks = [TracingHook(tracing)] if tracing is not None else []
        runner = DAGRunner(plan, executor="inline", hooks=hooks, artifacts=tmp,
                           workspace_root=tmp)
        return runner.run(Context())
    return call


def sdk_floor(tracing: Tracing, n: int) -> Callable[[], Any]:
    tracer = tracing.tracer

    def call() -> None:
        with tracer.start_as_current_span("run"):
            for i in range(n):
                tracer.start_span(f"s{i}", attributes={"runner.path": f"bench[{i}]"}).end()
    return call


def tracing_for(env: dict[str, str]) -> Tracing:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return Tracing(TelemetryConfig.from_env())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n, repeats = args.stages, args.repeats
    plan = build(n)
    import tempfile

    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, OtlpHttpReceiver() as http, \
            OtlpGrpcReceiver() as grpc:
        kept = Tracing(TelemetryConfig.from_env({}))
        exporting = {"http": tracing_for(http.env()), "grpc": tracing_for(grpc.env())}
        cases: dict[str, Callable[[], Any]] = {
            "untraced": run_with(plan, tmp, None),
            "traced, spans kept (no endpoint)": run_with(plan, tmp, kept),
            "traced, exported OTLP/HTTP": run_with(plan, tmp, exporting["http"]),
            "traced, exported OTLP/gRPC": run_with(plan, tmp, exporting["grpc"]),
            "OpenTelemetry SDK alone, N spans (reference)": sdk_floor(kept, n),
        }
        for call in cases.values():  # warm up: imports, first exporter connection
            call()
        for _ in range(repeats // 10 or 1):  # interleaved, so drift hits every case
            for name, call in cases.items():
                results.setdefault(name, []).extend(timed(call, 10))
        received = {"http": len(http.spans), "grpc": len(grpc.spans)}
        for tracing in (kept, *exporting.values()):
            tracing.close()
    base_best = min(results["untraced"])
    base_median = statistics.median(results["untraced"])
    rows = []
    for name, times in results.items():
        best, median = min(times), statistics.median(times)
        rows.append({
            "case": name, "best_ms": best * 1e3, "median_ms": median * 1e3,
            "per_stage_us_best": best / n * 1e6,
            "tracing_cost_per_stage_us_best": (best - base_best) / n * 1e6,
            "tracing_cost_per_stage_us_median": (median - base_median) / n * 1e6,
            "ratio_to_untraced_best": best / base_best,
        })
    if args.json:
        print(json.dumps({"stages": n, "repeats": repeats, "rows": rows,
                          "spans_received": received}, indent=2))
        return
    print(f"{n} trivial stages, inline, construct + run, best / median of {repeats} runs")
    print(f"{'case':46} {'best ms':>9} {'median ms':>10} {'+us/stage':>10} {'x untraced':>10}")
    for row in rows:
        print(f"{row['case']:46} {row['best_ms']:9.2f} {row['median_ms']:10.2f} "
              f"{row['tracing_cost_per_stage_us_best']:10.1f} "
              f"{row['ratio_to_untraced_best']:10.2f}")
    print(f"spans received by the local receivers: {received}")


if __name__ == "__main__":
    main()
