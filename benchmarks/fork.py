"""Peak memory of forking a context that holds a large DataFrame.

A ``Context`` whose ``feature_store`` is a ~1 GiB float64 frame (16,777,216 x 8
at ``--gb 1``) is forked into 4 branches:

- ``copy.deepcopy`` x4: the naive reference (copies the frame 4 times);
- ``runner.context.fork_context`` x4: what the engine does for the inline and
  threads executors (shallow copies kept independent by pandas copy-on-write);
- both again with a realistic branch write: every fork adds one new column of
  the frame's length (only those columns should be allocated);
- the engine for real: ``DAGRunner(plan, executor="inline")`` running a
  pipeline made of one parallel group of 4 branches, each stage adding one
  column, merged by the ``concat_columns`` rule.

Each measurement runs in a fresh interpreter (this script re-run with a hidden
flag), so one cannot inherit another's heap. The child builds the frame
without a transient copy, resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``; otherwise it relies on ``ru_maxrss``), runs the
operation while keeping its results alive, and reports the PEAK resident memory
added above the pre-operation RSS, as a fraction of the frame's size.

    python benchmarks/fork.py                 # 1 GiB frame (peaks near 5.6 GiB)
    python benchmarks/fork.py --gb 0.25 --json
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import psutil  # type: ignore[import-untyped]

from runner.context import Context, fork_context
from runner.manifest import parse_manifest
from runner.orchestration.plan import compile_plan
from runner.orchestration.runner import DAGRunner
from runner.registry import StageRegistry

BRANCHES = 4
TARGET = 0.1  # fork alone: added peak under a tenth of the frame
MiB = 2**20

# mode -> (label, expected added peak as a fraction of the frame, given `cols`)
MODES: dict[str, tuple[str, Callable[[int], str]]] = {
    "idle": ("nothing (noise floor)", lambda c: "0"),
    "deepcopy": (f"deepcopy x{BRANCHES} (reference)", lambda c: f"{BRANCHES}"),
    "deepcopy_write": (f"deepcopy x{BRANCHES} + 1 new column each",
                       lambda c: f"{BRANCHES}+{BRANCHES}/{c}"),
    "fork": (f"fork_context x{BRANCHES}", lambda c: "~0"),
    "fork_write": (f"fork_context x{BRANCHES} + 1 new column each",
                   lambda c: f"{BRANCHES}/{c}"),
}
ENGINE_MODE = "engine"


# ---------------------------------------------------------------- child side


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def _rss() -> int:
    return int(psutil.Process().memory_info().rss)


def _peak() -> int:
    hwm = _status_kib("VmHWM")
    if hwm is not None:
        return hwm * 1024
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def make_frame(rows: int, cols: int) -> pd.DataFrame:
    """A float64 frame built in place: one (cols, rows) buffer, no transient copy."""
    data = np.empty((cols, rows), dtype=np.float64)
    for i in range(cols):
        data[i] = i + 0.5  # touch every page so it is resident before we measure
    frame = pd.DataFrame(data.T, columns=[f"c{i}" for i in range(cols)], copy=False)
    assert np.shares_memory(frame["c0"].to_numpy(), data), "frame was copied"
    return frame


def _add_column(ctx: Context, name: str, value: float) -> Context:
    """Add one column of the frame's length in place, as a stage would.

    The new values arrive as a Series (like ``fs["a"] * 2``): pandas keeps it as
    is. Assigning a bare ndarray would make pandas copy it, a transient extra
    column per write that is pandas', not the engine's.
    """
    fs = ctx.feature_store
    fs[name] = pd.Series(np.full(len(fs), value), index=fs.index, copy=False)
    return ctx


def _engine_runner(executor: str, tmp: str) -> DAGRunner:
    registry = StageRegistry()
    names = []
    for k in range(BRANCHES):
        def add(ctx: Context, k: int = k) -> Context:
            return _add_column(ctx, f"b{k}", float(k))
        add.__name__ = add.__qualname__ = f"add_b{k}"
        registry.register(add.__name__, add, writes=["feature_store"])
        names.append(add.__name__)
    text = json.dumps({"pipelines": {"fan": {"steps": [names]}}})
    plan = compile_plan(parse_manifest(text), "fan", registry=registry)
    return DAGRunner(plan, executor=executor, workspace_root=tmp)


def child(mode: str, rows: int, cols: int, executor: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as tmp:
        return _child(mode, rows, cols, executor, tmp)


def _child(mode: str, rows: int, cols: int, executor: str, tmp: str) -> dict[str, Any]:
    frame = make_frame(rows, cols)
    ctx = Context(feature_store=frame)
    runner = _engine_runner(executor, tmp) if mode == ENGINE_MODE else None

    def op() -> Any:
        if mode == "idle":
            return None
        if mode.startswith("deepcopy"):
            forks = [copy.deepcopy(ctx) for _ in range(BRANCHES)]
        elif mode.startswith("fork"):
            forks = [fork_context(ctx) for _ in range(BRANCHES)]
        else:
            assert runner is not None
            return runner.run(ctx)
        if mode.endswith("_write"):
            for k, f in enumerate(forks):
                _add_column(f, "new", float(k))
        return forks

    gc.collect()
    reset = _reset_peak()
    base, peak_before = _rss(), _peak()
    start = time.perf_counter()
    kept = op()
    seconds = time.perf_counter() - start
    peak, final = _peak(), _rss()
    out: dict[str, Any] = {
        "mode": mode,
        "frame_bytes": int(frame.memory_usage(index=False, deep=False).sum()),
        "base_rss": base,
        "added_peak": peak - base,
        "added_final": final - base,
        "seconds": seconds,
        "peak_method": "VmHWM reset" if reset else "ru_maxrss",
        # Without a reset, a peak reached before the operation would hide its own peak.
        "peak_masked": (not reset) and peak_before > base + 64 * MiB,
    }
    if mode == ENGINE_MODE:
        merged = kept.context.feature_store
        out["merged_columns"] = list(map(str, merged.columns))
        out["merged_shares_base"] = bool(
            np.shares_memory(merged["c0"].to_numpy(), frame["c0"].to_numpy()))
        out["executor"] = executor
    del kept
    return out


# ---------------------------------------------------------------- parent side


def run_child(mode: str, args: argparse.Namespace, executor: str = "inline") -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode,
           "--gb", str(args.gb), "--cols", str(args.cols), "--executor", executor]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {mode!r} failed (exit {proc.returncode}):\n"
                         f"{proc.stderr.strip()}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def rows_for(gb: float, cols: int) -> int:
    return max(1, round(gb * 2**30 / (8 * cols)))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rows = rows_for(args.gb, args.cols)
    frame_bytes = rows * args.cols * 8
    # Worst case alive at once: the frame, 4 deep copies and 4 new columns.
    need = frame_bytes * (1 + BRANCHES + BRANCHES / args.cols) + 512 * MiB
    available = psutil.virtual_memory().available
    modes = list(MODES)
    skipped: list[str] = []
    if need > 0.9 * available:
        skipped = [m for m in modes if m.startswith("deepcopy")]
        modes = [m for m in modes if m not in skipped]
    rows_out: list[dict[str, Any]] = []
    todo = [(m, "inline") for m in modes] + [(ENGINE_MODE, e) for e in args.executor]
    for mode, executor in todo:
        runs = [run_child(mode, args, executor) for _ in range(args.repeats)]
        peak = statistics.median(r["added_peak"] for r in runs)
        final = statistics.median(r["added_final"] for r in runs)
        first = runs[0]
        label, expected = MODES.get(mode, (
            f"engine: {BRANCHES}-branch group ({executor})",
            lambda c: f"{BRANCHES}/{c}"))
        row = {
            "mode": mode if mode != ENGINE_MODE else f"{mode}_{executor}",
            "label": label,
            "added_peak_bytes": peak,
            "added_final_bytes": final,
            "peak_x_frame": peak / frame_bytes,
            "final_x_frame": final / frame_bytes,
            "seconds": statistics.median(r["seconds"] for r in runs),
            "expected_x_frame": expected(args.cols),
            "peak_method": first["peak_method"],
            "peak_masked": any(r["peak_masked"] for r in runs),
        }
        for key in ("merged_columns", "merged_shares_base"):
            if key in first:
                row[key] = first[key]
        rows_out.append(row)
    by_mode = {r["mode"]: r for r in rows_out}
    fork_x = by_mode["fork"]["peak_x_frame"]
    result: dict[str, Any] = {
        "frame_rows": rows, "frame_cols": args.cols, "frame_bytes": frame_bytes,
        "branches": BRANCHES, "repeats": args.repeats, "skipped": skipped,
        "measurements": rows_out,
        "target_x_frame": TARGET, "target_met": fork_x < TARGET,
    }
    if "deepcopy" in by_mode:
        ref = by_mode["deepcopy"]["added_peak_bytes"]
        result["fork_vs_deepcopy"] = by_mode["fork"]["added_peak_bytes"] / ref
        result["fork_write_vs_deepcopy_write"] = (
            by_mode["fork_write"]["added_peak_bytes"]
            / by_mode["deepcopy_write"]["added_peak_bytes"])
    new_cols = BRANCHES / args.cols
    result["fork_write_beyond_new_columns_x_frame"] = (
        by_mode["fork_write"]["peak_x_frame"] - new_cols)
    for e in args.executor:
        result[f"engine_{e}_beyond_new_columns_x_frame"] = (
            by_mode[f"engine_{e}"]["peak_x_frame"] - new_cols)
    return result


def report(r: dict[str, Any]) -> None:
    gib = r["frame_bytes"] / 2**30
    print(f"Fork memory: {r['frame_rows']:,} x {r['frame_cols']} float64 frame = {gib:.2f} GiB "
          f"in Context.feature_store, {r['branches']} branches, fresh process per row, "
          f"median of {r['repeats']}")
    print(f"{'measurement':42s} {'peak MiB':>9s} {'x frame':>8s} {'final x':>8s} "
          f"{'expected':>9s} {'time s':>7s}")
    for m in r["measurements"]:
        flag = "  (peak may be masked)" if m["peak_masked"] else ""
        print(f"{m['label']:42s} {m['added_peak_bytes'] / MiB:9.1f} {m['peak_x_frame']:8.4f} "
              f"{m['final_x_frame']:8.3f} {m['expected_x_frame']:>9s} {m['seconds']:7.3f}{flag}")
    print(f"peak/final = resident memory added above the pre-operation RSS "
          f"({r['measurements'][0]['peak_method']}); x frame = / frame size")
    if r["skipped"]:
        print(f"skipped (not enough free memory): {', '.join(r['skipped'])}")
    if "fork_vs_deepcopy" in r:
        print(f"fork_context / deepcopy peak: {r['fork_vs_deepcopy']:.4f}; with a new column "
              f"per branch: {r['fork_write_vs_deepcopy_write']:.4f}")
    new_cols = r["branches"] / r["frame_cols"]
    print(f"beyond the {r['branches']} new columns ({new_cols:.3f} x frame): fork+write "
          f"{r['fork_write_beyond_new_columns_x_frame']:+.3f}"
          + "".join(f", engine {m['mode'].removeprefix('engine_')} "
                    f"{m['peak_x_frame'] - new_cols:+.3f}"
                    for m in r["measurements"] if m["mode"].startswith("engine_")))
    for m in r["measurements"]:
        if "merged_shares_base" in m:
            shares = "shares" if m["merged_shares_base"] else "does NOT share"
            print(f"{m['label']}: merged frame has {len(m['merged_columns'])} columns and "
                  f"{shares} the original column buffers")
    fork = next(m for m in r["measurements"] if m["mode"] == "fork")
    verdict = "met" if r["target_met"] else "NOT met"
    print(f"target: fork alone < {TARGET} x frame: {fork['peak_x_frame']:.4f} -> {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Peak memory added by forking a context holding a large DataFrame: "
                    "fork_context and the engine against copy.deepcopy.")
    parser.add_argument("--gb", type=float, default=1.0,
                        help="frame size in GiB (1.0 = 16,777,216 x 8 float64)")
    parser.add_argument("--cols", type=int, default=8, help="frame columns (8)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="fresh-process runs per measurement; the median is shown (1)")
    parser.add_argument("--executor", action="append", choices=("inline", "threads"),
                        help="executor(s) for the engine measurement (inline); repeatable")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--child", choices=[*MODES, ENGINE_MODE], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.executor = args.executor or ["inline"]
    if args.gb <= 0 or args.cols < 1 or args.repeats < 1:
        parser.error("--gb must be positive, --cols and --repeats at least 1")
    if args.child:
        print(json.dumps(child(args.child, rows_for(args.gb, args.cols), args.cols,
                               args.executor[0])))
        return 0
    result = measure(args)
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["python"] = platform.python_version()
    result["pandas"] = pd.__version__
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
