"""Storage of many runs of one pipeline on unchanged data: what content-addressed
checkpoint objects save.

``--runs`` (20) runs of ``--pipeline`` (``alpha.full``), each a fresh ``runner run``
process on the bundled data, into one fresh store. Every checkpoint field is an
object named by its sha256 (``objects/ab/...``), so a run that produces the frames
an earlier run produced stores none of them again: what each run adds is its own
record (run.json, the journal, spans, results, one index.json per checkpoint).
Printed: the store's bytes after the first run and after all of them, their ratio
(issue target: at most 1.5x), the objects' share, and each run's wall time (for
information: the figure that counts is bytes, which a busy machine does not change).
Before objects, every run stored every field file again: about ``--runs`` x.

    python benchmarks/checkpoint_storage.py                # 20 runs, a few minutes
    python benchmarks/checkpoint_storage.py --runs 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = True
ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 1.5


def tree(folder: Path, under: str = "") -> dict[str, int]:
    """Files and bytes under ``folder`` (or its sub-folder ``under``)."""
    base = folder / under if under else folder
    files = [p for p in base.rglob("*") if p.is_file()] if base.exists() else []
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def run_once(store: Path, pipeline: str, run_id: str, workdir: Path) -> float:
    """One ``runner run`` in a fresh process; its wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "runner.cli", "run", pipeline, "-m",
               str(ROOT / "configs" / "manifest.json"), "--artifacts", str(store),
               "--run-id", run_id, "-q"]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True,
                          check=False, timeout=1800)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}):\n"
                         f"{proc.stderr[-3000:]}")
    return took


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    store = folder / "store"
    walls, after = [], []
    for i in range(args.runs):
        walls.append(run_once(store, args.pipeline, f"storage-{i + 1}", folder))
        after.append(tree(store))
        print(f"run {i + 1}/{args.runs}: {walls[-1]:.1f} s, store "
              f"{after[-1]['bytes']:,} bytes", file=sys.stderr)
    one, total = after[0]["bytes"], after[-1]["bytes"]
    ratio = total / one
    objects = tree(store, "objects")
    return {
        "pipeline": args.pipeline, "runs": args.runs,
        "one_run_bytes": one, "all_runs_bytes": total, "ratio": round(ratio, 3),
        "bytes_per_run_after_the_first": round((total - one) / max(args.runs - 1, 1)),
        "objects": objects, "store_files": after[-1]["files"],
        "store_bytes_after_each_run": [a["bytes"] for a in after],
        "run_wall_s": [round(w, 2) for w in walls],
        "run_wall_median_s": round(statistics.median(walls), 2),
        "targets": [{
            "figure": f"storage of {args.runs} runs of {args.pipeline}, unchanged data",
            "value": round(ratio, 3), "unit": "x",
            "reference": "one run's store bytes", "reference_value": one,
            "reference_unit": "B", "target": f"<= {TARGET_RATIO}x",
            "met": ratio <= TARGET_RATIO,
        }],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of the pipeline (20)")
    parser.add_argument("--pipeline", default="alpha.full", help="pipeline (alpha.full)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs: at least 1")
    folder = Path(tempfile.mkdtemp(prefix="runner-storage-"))
    try:
        report = measure(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
        return
    print(f"{args.runs} runs of {args.pipeline}: {report['all_runs_bytes']:,} bytes; one run "
          f"{report['one_run_bytes']:,} bytes: {report['ratio']}x (target <= {TARGET_RATIO}x)")
    print(f"each run after the first adds {report['bytes_per_run_after_the_first']:,} bytes; "
          f"objects {report['objects']['files']} files, {report['objects']['bytes']:,} bytes")
    print(f"run wall time, median {report['run_wall_median_s']} s (a busy machine: for "
          "information)")


if __name__ == "__main__":
    main()
