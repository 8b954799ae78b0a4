"""Per-stage overhead of the engine against a plain Python loop.

N trivial stages (``def sN(ctx): return ctx``) are registered in a fresh
``StageRegistry``, put in one pipeline of N steps and compiled once. Then,
timeit-style (garbage collector off, best and median of many repeats), this
script times:

- the reference: a plain loop calling the same N functions on a ``Context``;
- ``DAGRunner(plan, executor="inline", ...).run(ctx)`` alone and construct + run,
  with forensic input snapshots on (the default) and off.

Every variant gets a fresh ``Context()`` built outside the timed region, so the
figures compare the step loops, not pydantic/pandas construction. The
per-stage overhead is ``(runner - loop) / N`` and includes the run's fixed costs
(run id, scratch workspace) spread over the N stages; the "marginal" line
removes them by also timing a 1-stage plan.

    python benchmarks/overhead.py                 # 200 stages, 200 repeats
    python benchmarks/overhead.py --body log      # each stage appends to the audit trail
    python benchmarks/overhead.py --json
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.plan import Plan, compile_plan
from runner.orchestration.runner import DAGRunner
from runner.registry import StageRegistry
from runner.workspace import create_workspace, remove_workspace

TARGET_US = 10.0
REFERENCES = (  # per-stage overhead of other orchestrators: quoted, not measured here
    ("Hamilton", "~14 us"),
    ("Kedro SequentialRunner", "~900 us"),
    ("Dagster (in-process)", "~10 ms"),
    ("Prefect", "~40 ms"),
)
BODIES = ("return", "touch", "log")


def make_stage(i: int, body: str) -> Callable[[Context], Context]:
    """Stage ``s{i}``: returns the context, reads one field, or logs one line."""
    if body == "return":
        def fn(ctx: Context) -> Context:
            return ctx
    elif body == "touch":
        def fn(ctx: Context) -> Context:
            ctx.run_id  # noqa: B018 - the tiny field touch is the point
            return ctx
    else:
        message = f"s{i} ran"

        def fn(ctx: Context) -> Context:
            ctx.log(message)
            return ctx
    fn.__name__ = fn.__qualname__ = f"s{i}"
    return fn


def build(n: int, body: str) -> tuple[list[Callable[[Context], Context]], Plan, float]:
    """N stages in a fresh registry and a one-pipeline manifest, compiled once."""
    registry = StageRegistry()
    fns = [make_stage(i, body) for i in range(n)]
    for fn in fns:
        registry.register(fn.__name__, fn)
    text = json.dumps({"pipelines": {"bench": {"steps": [fn.__name__ for fn in fns]}}})
    manifest = parse_manifest(text, source="<overhead benchmark>")
    start = time.perf_counter()
    plan = compile_plan(manifest, "bench", registry=registry)
    return fns, plan, time.perf_counter() - start


def time_once(make: Callable[[], Callable[[], Any]]) -> float:
    """One timing of the callable ``make()`` returns, with the collector off (as timeit)."""
    call = make()  # the fresh context (and runner, for run-only) are built untimed
    gc.disable()
    try:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start
    finally:
        gc.enable()


LOOP = "plain loop (reference)"
ONE = " 1-stage"
HEADLINE = "construct+run() [snapshots on]"
WORKSPACE = "scratch workspace create+remove"


def measure(n: int, body: str, repeats: int, tmp: str) -> dict[str, Any]:
    _, plan1, _ = build(1, body)  # first compile: also imports the registry's entry points
    fns, plan, compile_s = build(n, body)

    def case(p: Plan, mode: str, snap: bool) -> Callable[[], Callable[[], Any]]:
        def make() -> Callable[[], Any]:
            ctx = Context()
            if mode == "loop":
                def loop() -> Context:
                    c = ctx
                    for fn in fns:
                        c = fn(c)
                    return c
                return loop
            opts: dict[str, Any] = {"executor": "inline", "workspace_root": tmp, "snapshots": snap}
            if mode == "run":
                runner = DAGRunner(p, **opts)
                return lambda: runner.run(ctx)
            return lambda: DAGRunner(p, **opts).run(ctx)
        return make

    cases: dict[str, Callable[[], Callable[[], Any]]] = {LOOP: case(plan, "loop", True)}
    for p, suffix in ((plan, ""), (plan1, ONE)):
        for snap in (True, False):
            tag = "snapshots on" if snap else "snapshots off"
            cases[f"run() [{tag}]{suffix}"] = case(p, "run", snap)
            cases[f"construct+run() [{tag}]{suffix}"] = case(p, "construct", snap)

    def workspace() -> Callable[[], Any]:  # what every run() does around its stages
        return lambda: create_workspace("run-bench-ws", tmp) and remove_workspace(
            "run-bench-ws", tmp)

    cases[WORKSPACE] = workspace
    times: dict[str, list[float]] = {name: [] for name in cases}
    # One warm-up round, then the variants interleaved in a shuffled order each round,
    # so drift and after-effects of the previous variant hit all of them alike.
    rng = random.Random(0)
    order = list(cases)
    for rep in range(repeats + 1):
        gc.collect()
        rng.shuffle(order)
        for name in order:
            t = time_once(cases[name])
            if rep:
                times[name].append(t)

    stats = {name: {"best": min(ts), "median": statistics.median(ts)}
             for name, ts in times.items()}
    result: dict[str, Any] = {
        "stages": n, "body": body, "repeats": repeats, "compile_ms": compile_s * 1e3,
        "variants": {},
    }
    ref = stats[LOOP]
    for name, st in stats.items():
        if name.endswith(ONE) or name == WORKSPACE:
            continue
        result["variants"][name] = {
            "best_ms": st["best"] * 1e3,
            "median_ms": st["median"] * 1e3,
            "us_per_stage_best": (st["best"] - ref["best"]) / n * 1e6,
            "us_per_stage_median": (st["median"] - ref["median"]) / n * 1e6,
            "ratio_best": st["best"] / ref["best"],
            "ratio_median": st["median"] / ref["median"],
        }
    v = result["variants"]
    for stat in ("best", "median"):
        result[f"snapshot_cost_us_per_stage_{stat}"] = (
            v["run() [snapshots on]"][f"us_per_stage_{stat}"]
            - v["run() [snapshots off]"][f"us_per_stage_{stat}"]
        )
    if n > 1:
        for tag in ("on", "off"):
            many = stats[f"run() [snapshots {tag}]"]["best"]
            one = stats[f"run() [snapshots {tag}]{ONE}"]["best"]
            marginal = (many - one) / (n - 1)
            result[f"marginal_us_per_stage_snapshots_{tag}"] = marginal * 1e6
            result[f"fixed_ms_per_run_snapshots_{tag}"] = (one - marginal) * 1e3
    result["workspace_ms_best"] = stats[WORKSPACE]["best"] * 1e3
    result["workspace_ms_median"] = stats[WORKSPACE]["median"] * 1e3
    result["target_us_per_stage"] = TARGET_US
    result["target_met"] = v[HEADLINE]["us_per_stage_best"] < TARGET_US
    return result


def report(r: dict[str, Any]) -> None:
    n = r["stages"]
    print(f"Engine overhead: {n} trivial stages (body: {r['body']}), inline executor, "
          f"{r['repeats']} repeats, gc off; plan compiled once in {r['compile_ms']:.1f} ms")
    print(f"{'variant':32s} {'best ms':>8s} {'median ms':>9s} {'us/stage':>9s} "
          f"{'(median)':>9s} {'ratio':>7s} {'(median)':>8s}")
    for name, v in r["variants"].items():
        if name == LOOP:
            per = f"{'-':>9s} {'-':>9s}"
        else:
            per = f"{v['us_per_stage_best']:9.2f} {v['us_per_stage_median']:9.2f}"
        print(f"{name:32s} {v['best_ms']:8.3f} {v['median_ms']:9.3f} {per} "
              f"{v['ratio_best']:6.1f}x {v['ratio_median']:7.1f}x")
    print(f"us/stage = (variant - loop) / {n}; ratio = variant / loop; best of "
          f"{r['repeats']} unless marked (median)")
    print(f"forensic input snapshots cost {r['snapshot_cost_us_per_stage_best']:.2f} us/stage "
          f"(median {r['snapshot_cost_us_per_stage_median']:.2f})")
    if "marginal_us_per_stage_snapshots_on" in r:
        print(f"one more stage costs {r['marginal_us_per_stage_snapshots_on']:.2f} us with "
              f"snapshots, {r['marginal_us_per_stage_snapshots_off']:.2f} us without; "
              f"fixed cost per run() {r['fixed_ms_per_run_snapshots_on']:.3f} ms "
              f"(slope and intercept of {n}-stage vs 1-stage runs, best)")
    print(f"of which the run's scratch workspace (mkdir + rmtree): "
          f"{r['workspace_ms_best']:.3f} ms best, {r['workspace_ms_median']:.3f} ms median")
    head = r["variants"][HEADLINE]["us_per_stage_best"]
    verdict = "met" if r["target_met"] else "NOT met"
    print(f"target < {TARGET_US:.0f} us/stage ({HEADLINE}, best): {head:.2f} us -> {verdict}")
    print("for scale, per stage (quoted, not measured here): "
          + ", ".join(f"{name} {cost}" for name, cost in REFERENCES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-stage overhead of DAGRunner (inline) against a plain Python loop.")
    parser.add_argument("--stages", type=int, default=200, help="stages in the pipeline (200)")
    parser.add_argument("--repeats", type=int, default=200,
                        help="timed repeats of each variant; best and median reported (200)")
    parser.add_argument("--body", choices=BODIES, default="return",
                        help="stage body: return the context, read one field, or append "
                             "one audit-trail line (return)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if args.stages < 1 or args.repeats < 1:
        parser.error("--stages and --repeats must be at least 1")
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        result = measure(args.stages, args.body, args.repeats, tmp)
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["python"] = platform.python_version()
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
