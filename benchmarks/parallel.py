"""Parallel branches: inline vs worker processes vs Ray, on this machine's cores.

Two branches of CPU-bound pure Python (about ``--seconds`` each, calibrated on
this machine first) in one parallel group, run by ``DAGRunner`` with each
executor. Printed: wall time and speedup against inline (the sequential
reference, measured in the same run) and against the machine's own ceiling (the
same work in two plain forked processes, no runner), Ray's start-up (``ray.init`` of a local,
loopback-only Ray), the per-branch dispatch overhead (a group of trivial
branches, per branch), and what forking a context holding a large frame costs 4
Ray branches: whether their frames are the object store's buffers (zero-copy)
and how much memory each worker added.

    python benchmarks/parallel.py                 # 2 s branches, 1 GB frame
    python benchmarks/parallel.py --seconds 1 --gb 0.25 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd

from runner.context import Context
from runner.manifest import parse_manifest
from runner.orchestration.executors.ray import RayComputeEngine
from runner.orchestration.executors.ray_connect import LocalRayEnv
from runner.orchestration.plan import Plan, compile_plan
from runner.orchestration.runner import DAGRunner
from runner.registry import StageRegistry

LOOPS = {"n": 1_000_000}


def burn(ctx: Context) -> Context:
    total = 0
    loops = next((int(t[6:]) for t in ctx.audit_trail if t.startswith("loops=")), LOOPS["n"])
    for i in range(loops):  # workers learn the calibrated count from the context
        total += i * i % 7
    ctx.log(f"burned {total}")
    return ctx


def noop(ctx: Context) -> Context:
    return ctx


def probe(ctx: Context) -> Context:
    """Where the frame's data lives in this worker, and what the worker holds."""
    import psutil

    frame = ctx.feature_store
    column = frame[frame.columns[0]].to_numpy()
    ctx.log(json.dumps({"pid": os.getpid(), "writeable": bool(column.flags.writeable),
                        "uss": psutil.Process().memory_full_info().uss}))
    return ctx


REGISTRY = StageRegistry()
for _fn in (burn, noop, probe):
    REGISTRY.register(_fn.__name__, _fn)


def plan(steps: list[Any]) -> Plan:
    text = json.dumps({"pipelines": {"bench": {"steps": steps}}})
    return compile_plan(parse_manifest(text, source="<parallel benchmark>"), "bench",
                        registry=REGISTRY)


def calibrate(seconds: float) -> None:
    LOOPS["n"] = 2_000_000
    start = time.perf_counter()
    burn(Context())
    per_loop = (time.perf_counter() - start) / LOOPS["n"]
    LOOPS["n"] = int(seconds / per_loop)


def _burn_once() -> None:
    burn(Context())


def machine_ceiling() -> tuple[float, float]:
    """The same work without the runner: twice in a row, then in two plain forked
    processes at once. Their ratio is what this machine's cores give right now."""
    import multiprocessing

    start = time.perf_counter()
    _burn_once()
    _burn_once()
    sequential = time.perf_counter() - start
    fork = multiprocessing.get_context("fork")
    start = time.perf_counter()
    workers = [fork.Process(target=_burn_once) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sequential, time.perf_counter() - start


def probes_of(result: Any) -> list[dict[str, Any]]:
    return [json.loads(t) for t in result.context.audit_trail if t.startswith("{")]


def timed_run(p: Plan, executor: Any, tmp: str, ctx: Any = None) -> tuple[float, Any]:
    start = time.perf_counter()
    result = DAGRunner(p, executor=executor, workspace_root=tmp).run(
        ctx if ctx is not None else Context(audit_trail=[f"loops={LOOPS['n']}"]))
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of every timed case, interleaved; the best counts")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    calibrate(args.seconds)
    two = plan([[["burn"], ["burn"]]])
    trivial = plan([[["noop"] for _ in range(8)]])
    out: dict[str, Any] = {"cores": os.cpu_count(), "branch_seconds": args.seconds}
    with tempfile.TemporaryDirectory() as tmp:
        timed_run(trivial, "processes", tmp)  # warm the forkserver's imports
        # one local Ray for the whole benchmark (a run's engine uses a Ray this process
        # already started and leaves it running), started as the engine starts its own
        local = LocalRayEnv()
        local.apply()
        import ray

        start = time.perf_counter()
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1",
                 configure_logging=False, logging_level="WARNING")
        out["ray_start_s"] = time.perf_counter() - start
        engine = RayComputeEngine()

        try:
            timed_run(trivial, engine, tmp)  # first tasks start the workers
            rounds: dict[str, list[float]] = {}
            for _ in range(max(1, args.repeat)):  # interleaved: drifts hit every case
                plain = machine_ceiling()
                rounds.setdefault("plain_sequential_s", []).append(plain[0])
                rounds.setdefault("plain_two_processes_s", []).append(plain[1])
                for key, executor in (("inline_s", "inline"), ("processes_s", "processes"),
                                      ("ray_s", engine)):
                    rounds.setdefault(key, []).append(timed_run(two, executor, tmp)[0])
            out.update({key: min(times) for key, times in rounds.items()})
            out["rounds"] = rounds
            out["ray_dispatch_ms_per_branch"] = timed_run(trivial, engine, tmp)[0] / 8 * 1e3
            out["processes_dispatch_ms_per_branch"] = timed_run(
                trivial, "processes", tmp)[0] / 8 * 1e3
            fork = plan([[["probe"] for _ in range(4)]])
            small = Context(feature_store=pd.DataFrame({"c0": np.zeros(8)}))
            _, result = timed_run(fork, engine, tmp, small)  # the workers' own memory
            baseline = {p["pid"]: p["uss"] for p in probes_of(result)}
            rows = int(args.gb * 1024**3 / 8 / 8)
            frame = pd.DataFrame(np.random.default_rng(0).random((rows, 8)),
                                 columns=[f"c{i}" for i in range(8)])
            out["frame_bytes"] = int(frame.memory_usage(index=False).sum())
            out["fork_4_branches_s"], result = timed_run(fork, engine, tmp,
                                                         Context(feature_store=frame))
            probes = probes_of(result)
            out["fork_workers_zero_copy"] = [not p["writeable"] for p in probes]
            out["fork_worker_added_fraction_of_frame"] = [
                round((p["uss"] - baseline.get(p["pid"], p["uss"])) / out["frame_bytes"], 4)
                for p in probes]
            out["merged_frame_shares_driver_buffers"] = bool(np.shares_memory(
                result.context.feature_store["c0"].to_numpy(), frame["c0"].to_numpy()))
        finally:
            ray.shutdown()
            local.restore()
    out["processes_speedup"] = out["inline_s"] / out["processes_s"]
    out["ray_speedup"] = out["inline_s"] / out["ray_s"]
    out["machine_speedup"] = out["plain_sequential_s"] / out["plain_two_processes_s"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"two branches of {args.seconds:.1f} s of CPU-bound Python, {out['cores']} cores, "
          f"best of {args.repeat} interleaved rounds")
    print(f"  plain loop, twice   {out['plain_sequential_s']:6.2f} s   (no runner)")
    print(f"  plain, 2 processes  {out['plain_two_processes_s']:6.2f} s   speedup "
          f"{out['machine_speedup']:.2f}x: what the cores give right now")
    print(f"  inline (reference)  {out['inline_s']:6.2f} s")
    print(f"  processes           {out['processes_s']:6.2f} s   speedup "
          f"{out['processes_speedup']:.2f}x")
    print(f"  ray (local)         {out['ray_s']:6.2f} s   speedup {out['ray_speedup']:.2f}x")
    print(f"  of the machine's own speedup: processes "
          f"{out['processes_speedup'] / out['machine_speedup']:.0%}, "
          f"ray {out['ray_speedup'] / out['machine_speedup']:.0%}")
    print(f"ray start-up (local, loopback): {out['ray_start_s']:.2f} s")
    print(f"dispatch per trivial branch: ray {out['ray_dispatch_ms_per_branch']:.1f} ms, "
          f"processes {out['processes_dispatch_ms_per_branch']:.1f} ms")
    gb = out["frame_bytes"] / 1024**3
    print(f"4 ray branches fork a context with a {gb:.2f} GiB frame in "
          f"{out['fork_4_branches_s']:.2f} s: each worker reads it zero-copy from the "
          f"object store {out['fork_workers_zero_copy']}; private memory each worker "
          f"added, as a fraction of the frame: {out['fork_worker_added_fraction_of_frame']}; "
          f"the merged frame is the driver's own: {out['merged_frame_shares_driver_buffers']}")


if __name__ == "__main__":
    main()
