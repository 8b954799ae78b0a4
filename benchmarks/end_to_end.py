"""A whole ``runner run`` with a parallel group: inline vs worker processes vs Ray.

What a user waits for, measured from outside: each case is ``runner run`` in a
fresh process (imports, the run, and for Ray starting and stopping a local
loopback Ray). The pipeline is a sequential prefix of CPU-bound Python (about
``--prefix`` seconds, calibrated on this machine first), then a parallel group of
two branches of about ``--seconds`` each, then one short step. Stage code lives
in a module beside the manifest, as a user's would (Ray ships it to its workers).

Printed per prefix length: wall time per executor, the speedup against inline
(the sequential reference, measured in the same run) and what Ray costs over
worker processes end to end. The local Ray starts in the background when the
run begins, so a prefix longer than its start-up hides it.

    python benchmarks/end_to_end.py                      # prefixes 0.5 s and 12 s
    python benchmarks/end_to_end.py --prefix 0.5 --prefix 8 --repeat 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = '''
import time

from runner.stages.contexts import SelectionContext


def _burn(loops: int) -> int:
    total = 0
    for i in range(loops):
        total += i * i % 7
    return total


def prefix(ctx: SelectionContext) -> SelectionContext:
    if ctx.params["prefix_kind"] == "io":  # waiting on storage or a network service
        time.sleep(float(ctx.params["prefix_s"]))
    else:
        ctx.log(f"prefix {_burn(int(ctx.params['prefix_loops']))}")
    return ctx


def branch_a(ctx: SelectionContext) -> SelectionContext:
    ctx.log(f"a {_burn(int(ctx.params['branch_loops']))}")
    return ctx


def branch_b(ctx: SelectionContext) -> SelectionContext:
    ctx.log(f"b {_burn(int(ctx.params['branch_loops']))}")
    return ctx


def tail(ctx: SelectionContext) -> SelectionContext:
    ctx.log("done")
    return ctx
'''

MANIFEST = {
    "stages": {name: f"e2e_stages:{name}" for name in ("prefix", "branch_a", "branch_b", "tail")},
    "pipelines": {"bench.e2e": {
        "description": "a sequential prefix, two parallel CPU-bound branches, one short step",
        "context": "runner.stages.contexts:SelectionContext",
        "steps": ["prefix", ["branch_a", "branch_b"], "tail"]}}}

EXECUTORS = ("inline", "processes", "ray", "ray-running")
"""``ray`` starts a local Ray for the run; ``ray-running`` joins one already running
(``RAY_ADDRESS``), the way a laptop keeps one Ray for many runs."""


def loops_per_second() -> float:
    """Loops of the stages' burn per second on this machine (this process, alone)."""
    n = 3_000_000
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    return n / (time.perf_counter() - start)


def run_once(folder: Path, executor: str, params: dict[str, Any],
             extra_env: dict[str, str] | None = None) -> tuple[float, dict[str, Any]]:
    runner = Path(sys.executable).with_name("runner")
    command = [str(runner), "run", "bench.e2e", "--manifest", "manifest.json", "--executor",
               executor, "--artifacts", str(folder / "runs"), "-q", "--json"]
    for key, value in params.items():
        command += ["--param", f"{key}={value}"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "OTEL_", "TV_ORCH"))} | (extra_env or {})
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          check=False, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"runner run --executor {executor} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def measure(folder: Path, prefixes: list[tuple[str, float]], seconds: float, repeat: int,
            running_env: dict[str, str]) -> list[dict[str, Any]]:
    rate = loops_per_second()
    rows: list[dict[str, Any]] = []
    for kind, prefix in prefixes:
        params = {"prefix_kind": kind, "prefix_s": prefix, "prefix_loops": int(prefix * rate),
                  "branch_loops": int(seconds * rate)}
        walls: dict[str, float] = {}
        for executor in EXECUTORS:
            extra = running_env if executor == "ray-running" else None
            walls[executor] = min(
                run_once(folder, executor.split("-")[0], params, extra)[0]
                for _ in range(repeat))
        rows.append({"prefix": kind, "prefix_s": prefix, "branch_s": seconds, "wall_s": walls,
                     "speedup": {e: walls["inline"] / walls[e] for e in EXECUTORS},
                     "ray_minus_processes_s": walls["ray"] - walls["processes"],
                     "ray_running_minus_processes_s":
                         walls["ray-running"] - walls["processes"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", action="append", metavar="KIND:SECONDS",
                        help="the sequential prefix: cpu:8 (pure Python) or io:8 (waiting on "
                             "storage); repeatable")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per branch")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (best is kept)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    prefixes = [(k, float(v)) for k, _, v in
                (p.partition(":") for p in args.prefix or ["cpu:0.5", "cpu:10", "io:10"])]

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.raycluster import RayCluster  # stops exactly the processes it started

    with tempfile.TemporaryDirectory(prefix="runner-e2e-") as tmp, \
            RayCluster(head_resources={}, worker_resources={}) as running:
        folder = Path(tmp)
        (folder / "e2e_stages.py").write_text(STAGES)
        (folder / "manifest.json").write_text(json.dumps(MANIFEST, indent=2))
        rows = measure(folder, prefixes, args.seconds, args.repeat, running.env())

    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "rows": rows}, indent=2))
        return
    print(f"runner run end to end, {os.cpu_count()} cores, two branches of "
          f"{args.seconds:.1f} s each (best of {args.repeat}); ray = a local Ray started "
          f"for the run, ray-running = RAY_ADDRESS of a running one")
    print(f"{'prefix':>9} " + " ".join(f"{e:>11}" for e in EXECUTORS)
          + f" {'ray - proc':>11} {'running - proc':>15}")
    for row in rows:
        w = row["wall_s"]
        print(f"{row['prefix']:>4} {row['prefix_s']:>3.0f}s "
              + " ".join(f"{w[e]:>10.2f}s" for e in EXECUTORS)
              + f" {row['ray_minus_processes_s']:>+10.2f}s"
              + f" {row['ray_running_minus_processes_s']:>+14.2f}s")
    print("speedup against inline: " + "; ".join(
        f"{r['prefix']} {r['prefix_s']:.0f}s: " + ", ".join(
            f"{e} {r['speedup'][e]:.2f}x" for e in EXECUTORS[1:]) for r in rows))


if __name__ == "__main__":
    main()
