"""What tracing costs per stage: the engine with tracing off, on, and exporting.

N trivial stages (``def sN(ctx): return ctx``) in one pipeline, run inline by
``DAGRunner`` (construct + run, many repeats, cases interleaved, medians,
collector off):

- untraced (the reference): the engine with no hooks;
- traced, kept: the ``TracingHook`` making every span, collected for spans.jsonl,
  nothing sent;
- traced, exported: the same, also exported over OTLP (HTTP and gRPC) to a real
  receiver on 127.0.0.1 (tests/otlp.py). The run does not wait for the export
  (a background batch processor sends the spans); what it still costs the run
  is timed, then the flush of its spans is timed on its own, outside the run's
  clock (a process that exits right after the run waits for that flush);
- the OpenTelemetry SDK alone starting and ending N spans through its tracer:
  what one tracer-made span costs in Python.

The per-stage cost of tracing is ``(median traced - median untraced) / N``.
``--json`` adds the issue-14 ``targets`` rows (<= 20 us kept, <= 50 us exported).

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


def timed(call: Callable[[], Any], repeats: int,
          after: Callable[[], Any] | None = None) -> tuple[list[float], list[float]]:
    """Times of ``call`` (collector off), and of ``after`` run right after each."""
    out, tails = [], []
    for _ in range(repeats):
        gc.disable()
        try:
            start = time.perf_counter()
            call()
            out.append(time.perf_counter() - start)
            if after is not None:
                start = time.perf_counter()
                after()
                tails.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return out, tails


def run_with(plan: Plan, tmp: str, tracing: Tracing | None) -> Callable[[], Any]:
    def call() -> Any:
        hooks = [TracingHook(tracing)] if tracing is not None else []
        runner = DAGRunner(plan, executor="inline", hooks=hooks, workspace_root=tmp)
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


UNTRACED = "untraced (reference)"
KEPT = "traced, spans kept (no endpoint)"
EXPORTED = {"http": "traced, exported OTLP/HTTP", "grpc": "traced, exported OTLP/gRPC"}
FLUSH = " - then its flush (outside the run)"
TARGETS = {KEPT: ("tracing per stage, spans kept", 20.0),
           EXPORTED["http"]: ("tracing per stage, exported OTLP/HTTP (run; export in background)",
                              50.0),
           EXPORTED["grpc"]: ("tracing per stage, exported OTLP/gRPC (run; export in background)",
                              50.0)}


def measure(n: int, repeats: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    import tempfile

    plan = build(n)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, OtlpHttpReceiver() as http, \
            OtlpGrpcReceiver() as grpc:
        kept = Tracing(TelemetryConfig.from_env({}))
        exporting = {"http": tracing_for(http.env()), "grpc": tracing_for(grpc.env())}
        cases: dict[str, tuple[Callable[[], Any], Callable[[], Any] | None]] = {
            UNTRACED: (run_with(plan, tmp, None), None),
            KEPT: (run_with(plan, tmp, kept), None),
            **{EXPORTED[k]: (run_with(plan, tmp, t), t.flush) for k, t in exporting.items()},
            "OpenTelemetry SDK alone, N spans": (sdk_floor(kept, n), None),
        }
        for call, after in cases.values():  # warm up: imports, first exporter connection
            call()
            if after is not None:
                after()
        rounds = max(1, repeats // 10)
        for _ in range(rounds):  # interleaved, so drift hits every case
            for name, (call, after) in cases.items():
                times, tails = timed(call, max(1, repeats // rounds), after)
                results.setdefault(name, []).extend(times)
                if after is not None:
                    results.setdefault(name + FLUSH, []).extend(tails)
        received = {"http": len(http.spans), "grpc": len(grpc.spans)}
        for tracing in (kept, *exporting.values()):
            tracing.close()
    return results, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n, repeats = args.stages, args.repeats
    results, received = measure(n, repeats)
    base_best = min(results[UNTRACED])
    base_median = statistics.median(results[UNTRACED])
    rows, targets = [], []
    for name, times in results.items():
        best, median = min(times), statistics.median(times)
        is_tail = name.endswith(FLUSH)
        cost_median = (median if is_tail else median - base_median) / n * 1e6
        rows.append({
            "case": name, "best_ms": best * 1e3, "median_ms": median * 1e3,
            "per_stage_us_median": median / n * 1e6,
            "tracing_cost_per_stage_us_best": (best if is_tail else best - base_best) / n * 1e6,
            "tracing_cost_per_stage_us_median": cost_median,
            "ratio_to_untraced_median": None if is_tail else median / base_median,
        })
        if name in TARGETS:
            figure, limit = TARGETS[name]
            targets.append({
                "figure": f"{figure}, {n} trivial stages inline", "value": cost_median,
                "unit": "us", "reference_unit": "ms",
                "reference": "untraced run of the same plan, same process (median per run)",
                "reference_value": base_median * 1e3,
                "target": f"<= {limit:g} us", "met": cost_median <= limit})
    if args.json:
        print(json.dumps({"stages": n, "repeats": repeats, "rows": rows, "targets": targets,
                          "spans_received": received}, indent=2))
        return
    print(f"{n} trivial stages, inline, construct + run, best / median of {repeats} runs")
    print(f"{'case':60} {'best ms':>9} {'median ms':>10} {'+us/stage':>10} {'x untraced':>10}")
    for row in rows:
        ratio = row["ratio_to_untraced_median"]
        print(f"{row['case']:60} {row['best_ms']:9.2f} {row['median_ms']:10.2f} "
              f"{row['tracing_cost_per_stage_us_median']:10.1f} "
              f"{'' if ratio is None else f'{ratio:.2f}':>10}")
    print(f"spans received by the local receivers: {received}")
    print("\ntargets (medians)")
    for t in targets:
        print(f"  {t['figure']}: {t['value']:.1f} us/stage, target {t['target']}: "
              f"{'met' if t['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
