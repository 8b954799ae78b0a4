"""The shipped ``alpha.parallel`` as a user runs it: inline vs worker processes vs a running Ray.

Each case is ``runner run alpha.parallel`` in a fresh process, timed from outside
(imports, the run, the pool or the Ray connection), on two data sets:

- ``bundled``: the 20 bundled stocks (each forecasting branch about a second);
- ``universe``: the bundled prices extended to ``--tickers`` synthetic tickers
  (``runner.stages.universe``, deterministic), written to a Parquet file and
  passed with ``--data``: work a user would recognise as real.

Executors: ``inline`` (the reference), ``processes`` and ``ray``: a Ray already
running on this machine (``RAY_ADDRESS``), a loopback-only local cluster that
this script starts before the first run and stops at the end. Cases run in
``--repeat`` interleaved rounds; medians count.

From the runs' own records (``--json``), per stage: ``alpha.inference_model_b``
inside the group against the same stage inline, and ``alpha.clustering`` (the
first stage on the driver after the group) against the same stage inline. Also
printed (``no_overhead_bound``), not a target: the best ratio the machine allows
with no cost at all for going parallel, the inline run with its two branches
replaced by the longer one as it ran in parallel; a target below it needs more
parallel work, not less overhead. Also printed, not a target: the CPU seconds of
each run's whole process tree (the driver, its forkserver and workers: a small
wrapper process adopts and reaps them, Linux), which a busy machine disturbs less
than wall time; a Ray run's workers belong to the cluster and are not counted.

    python benchmarks/alpha_parallel.py                       # 300 tickers, 3 rounds
    python benchmarks/alpha_parallel.py --tickers 200 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "configs" / "manifest.json"
EXECUTORS = ("inline", "processes", "ray")
SETS = ("bundled", "universe")
TARGETS = {  # (data set, executor): the most a run may take, as a fraction of inline
    ("bundled", "processes"): 0.85, ("bundled", "ray"): 0.85,
    ("universe", "processes"): 0.65, ("universe", "ray"): 0.7,
}
STAGE_TARGET = 1.2  # a stage in (or right after) the group, against the same stage inline


TIMED = """
import ctypes, json, os, resource, subprocess, sys, time
if sys.platform.startswith("linux"):  # PR_SET_CHILD_SUBREAPER: adopt the run's orphans
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=False)
wall = time.perf_counter() - start
deadline = time.monotonic() + 10  # the forkserver and workers end with the driver
while time.monotonic() < deadline:
    try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
            time.sleep(0.005)
    except ChildProcessError:
        break
use = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
           "wall": wall, "cpu": use.ru_utime + use.ru_stime}, sys.stdout)
"""
"""Runs a command, timed inside (its own start-up is not counted); prints its wall
seconds and the CPU seconds of its whole process tree."""


def run_once(folder: Path, executor: str, data: Path | None,
             extra_env: dict[str, str]) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds of one ``runner run``, its steps' durations by stage name."""
    runner = Path(sys.executable).with_name("runner")
    command = [str(runner), "run", "alpha.parallel", "--manifest", str(MANIFEST),
               "--executor", executor, "--artifacts", str(folder / "runs"), "-q", "--json"]
    if data is not None:
        command += ["--data", str(data)]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "OTEL_", "TV_ORCH"))} | extra_env
    wrapper = subprocess.run([sys.executable, "-c", TIMED, *command], cwd=folder, env=env,
                             capture_output=True, text=True, check=False, timeout=1800)
    if wrapper.returncode != 0:
        raise SystemExit(f"timing runner run -e {executor} failed:\n{wrapper.stderr[-3000:]}")
    proc = json.loads(wrapper.stdout)
    if proc["returncode"] != 0:
        raise SystemExit(f"runner run -e {executor} failed ({proc['returncode']}):\n"
                         f"{proc['stderr'][-3000:]}")
    doc = json.loads(proc["stdout"])
    return (float(proc["wall"]), float(proc["cpu"]),
            {s["name"]: float(s["duration_s"]) for s in doc["steps"]})


@contextlib.contextmanager
def running_ray(wanted: bool) -> Iterator[dict[str, str]]:
    """The variables that join a local loopback Ray started here (stopped on exit)."""
    if not wanted:
        yield {}
        return
    sys.path.insert(0, str(ROOT))
    from runner.orchestration.native_threads import available_cpus
    from tests.raycluster import RayCluster  # stops exactly the processes it started

    # one node holds every CPU (its second node gets none: no object transfers)
    with RayCluster(head_cpus=available_cpus(), worker_cpus=0, head_resources={},
                    worker_resources={}) as cluster:
        yield cluster.env()


def write_universe(folder: Path, tickers: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from runner.stages.universe import extended_prices

    path = folder / f"universe_{tickers}.parquet"
    extended_prices(tickers).to_parquet(path)
    return path


def measure(args: argparse.Namespace, folder: Path, ray_env: dict[str, str]
            ) -> dict[str, Any]:
    data = {"bundled": None, "universe": write_universe(folder, args.tickers)
            if "universe" in args.sets else None}
    walls: dict[str, dict[str, list[float]]] = {s: {e: [] for e in args.executors}
                                                 for s in args.sets}
    cpus: dict[str, dict[str, list[float]]] = {s: {e: [] for e in args.executors}
                                                for s in args.sets}
    stages: dict[str, dict[str, list[dict[str, float]]]] = {
        s: {e: [] for e in args.executors} for s in args.sets}
    for data_set in args.sets if args.warmup else ():  # untimed: OS caches, Ray's workers
        for executor in args.executors:
            run_once(folder, executor, data[data_set], ray_env if executor == "ray" else {})
    for _ in range(max(1, args.repeat)):  # interleaved: drifts hit every case
        for data_set in args.sets:
            for executor in args.executors:
                wall, cpu, steps = run_once(folder, executor, data[data_set],
                                            ray_env if executor == "ray" else {})
                walls[data_set][executor].append(wall)
                cpus[data_set][executor].append(cpu)
                stages[data_set][executor].append(steps)
    return {"walls": walls, "cpus": cpus, "stages": stages}


def median_stage(runs: list[dict[str, float]], name: str) -> float:
    return statistics.median(r[name] for r in runs)


def targets(results: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    walls, stages = results["walls"], results["stages"]
    for data_set in args.sets:
        inline = statistics.median(walls[data_set]["inline"])
        label = ("bundled 20 stocks" if data_set == "bundled"
                 else f"{args.tickers}-ticker universe")
        for executor in args.executors:
            if executor == "inline" or (data_set, executor) not in TARGETS:
                continue
            ratio = statistics.median(walls[data_set][executor]) / inline
            limit = TARGETS[(data_set, executor)]
            how = "a running Ray (RAY_ADDRESS)" if executor == "ray" else "-e processes"
            rows.append({"figure": f"runner run alpha.parallel {how}, {label}",
                         "value": round(ratio, 3), "unit": "x", "reference_unit": "s",
                         "reference": f"the same run inline, {label}",
                         "reference_value": round(inline, 3),
                         "target": f"<= {limit}x inline", "met": ratio <= limit})
    where = "bundled" if "bundled" in args.sets else args.sets[0]
    for stage, what in (("alpha.inference_model_b", "in the group"),
                        ("alpha.clustering", "right after the group")):
        inline = median_stage(stages[where]["inline"], stage)
        for executor in args.executors:
            if executor == "inline":
                continue
            ratio = median_stage(stages[where][executor], stage) / inline
            rows.append({"figure": f"{stage} {what}, -e {executor} ({where})",
                         "value": round(ratio, 3), "unit": "x", "reference_unit": "s",
                         "reference": f"{stage} inline ({where})",
                         "reference_value": round(inline, 3),
                         "target": f"within {STAGE_TARGET}x of inline",
                         "met": ratio <= STAGE_TARGET})
    return rows


BRANCHES = ("alpha.inference_model_a", "alpha.inference_model_b")


def bounds(results: dict[str, Any], args: argparse.Namespace, *, paid_once: bool = False,
           ) -> dict[str, dict[str, float]]:
    """Per data set and parallel executor: the best ratio to inline this machine allows
    with no cost at all for going parallel: the inline run with its two branches
    replaced by the longer of the two as they ran in the parallel run. Above it the
    target cannot be met by removing overheads; more parallel work is needed.

    ``paid_once``: what a branch pays inline beyond its duration in the parallel run
    (importing scikit-learn, a library's first-call set-up: a worker starts with them
    done) is still paid once, before the branches can start: the best ratio when that
    set-up cannot overlap anything, as in these runs, where every stage before the
    group needs less time than the import."""
    out: dict[str, dict[str, float]] = {}
    walls, stages = results["walls"], results["stages"]
    for data_set in args.sets:
        inline = statistics.median(walls[data_set]["inline"])
        alone = {b: median_stage(stages[data_set]["inline"], b) for b in BRANCHES}
        for executor in args.executors:
            if executor == "inline":
                continue
            par = {b: median_stage(stages[data_set][executor], b) for b in BRANCHES}
            once = max(alone[b] - min(alone[b], par[b]) for b in BRANCHES) if paid_once else 0
            best = inline - sum(alone.values()) + max(par.values()) + once
            out.setdefault(data_set, {})[executor] = round(best / inline, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=300,
                        help="tickers of the benchmark universe (default 300)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--executors", nargs="+", choices=EXECUTORS, default=list(EXECUTORS))
    parser.add_argument("--no-warmup", dest="warmup", action="store_false",
                        help="no untimed first run per case")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if "inline" not in args.executors:
        args.executors.insert(0, "inline")  # the reference
    with tempfile.TemporaryDirectory(prefix="runner-alpha-") as tmp, \
            running_ray("ray" in args.executors) as ray_env:
        results = measure(args, Path(tmp), ray_env)
    rows = targets(results, args)
    walls = results["walls"]
    out = {"cores": os.cpu_count(), "tickers": args.tickers, "repeat": args.repeat,
           "median_wall_s": {s: {e: statistics.median(t) for e, t in v.items()}
                             for s, v in walls.items()},
           "median_cpu_s": {s: {e: statistics.median(t) for e, t in v.items()}
                            for s, v in results["cpus"].items()},
           "wall_s": walls, "cpu_s": results["cpus"], "stages_s": results["stages"],
           "no_overhead_bound": bounds(results, args),
           "paid_once_bound": bounds(results, args, paid_once=True), "targets": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"runner run alpha.parallel, whole processes, {out['cores']} cores, median of "
          f"{args.repeat} interleaved rounds")
    for data_set, medians in out["median_wall_s"].items():
        inline = medians["inline"]
        print(f"  {data_set:9s} " + "   ".join(
            f"{e} {t:6.2f} s ({t / inline:.2f}x)" for e, t in medians.items()))
    print("CPU seconds of the whole process tree (driver, forkserver, workers; not Ray's):")
    for data_set, medians in out["median_cpu_s"].items():
        print(f"  {data_set:9s} " + "   ".join(f"{e} {t:6.2f} s" for e, t in medians.items()))
    print("best ratio with no cost for going parallel (inline with its two branches "
          "replaced by the longer one as it ran in parallel):")
    for data_set, per in out["no_overhead_bound"].items():
        print(f"  {data_set:9s} " + "   ".join(f"{e} {b:.2f}x" for e, b in per.items()))
    print("the same, with what a branch pays inline beyond its parallel duration (imports, "
          "first-call set-up) paid once before the branches start:")
    for data_set, per in out["paid_once_bound"].items():
        print(f"  {data_set:9s} " + "   ".join(f"{e} {b:.2f}x" for e, b in per.items()))
    print("targets:")
    for row in rows:
        print(f"  {row['figure']:62s} {row['value']:6.2f}{row['unit']}  ref "
              f"{row['reference_value']:.2f} s  {row['target']:22s} "
              f"{'met' if row['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
