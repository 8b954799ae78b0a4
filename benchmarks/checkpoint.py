"""Cost of checkpointing a pipeline that passes a large frame, and of running it in memory.

A STEPS-step pipeline (5) passes a ROWS x COLS float64 frame (2,000,000 x 8 =
128 MB). Every step replaces one column (``c_k = c_k + 1.0``; ``--work frame``
adds 1.0 to the whole frame instead), so every step changes the frame and every
checkpoint really writes it. Timed, best and median of ``--repeats``:

- (a) a plain script with default ``pyarrow.parquet`` settings: after each step
  ``pq.write_table(pa.Table.from_pandas(df), path)``, and at the start of the
  next step ``pq.read_table(path).to_pandas()`` (Kedro's pattern: 5 writes,
  4 reads). Also timed without the reads ("write only");
- (b) the same with ``use_dictionary=False``, write + read and write only, and
  write only through a file handle with ``fsync`` (what durable writes cost);
- (c) the runner with a checkpoint after every step:
  ``QuantSDK(manifest, registry=..., artifacts=fresh folder).run_pipeline(...)``;
- (d) the same pipeline in memory (``checkpoints=False``), and ``DAGRunner`` alone;
- (e) a plain Python loop passing the frame through the same functions.

Ratios: (c)/(a), target 0.6, and (d)/(e), target 1.5. Disk timings are
interleaved in a shuffled order; before each one the collector runs and dirty
pages are flushed (``os.sync``), after it its files are deleted, all untimed.
The files go to a fresh folder under ``benchmarks/`` (``--dir`` to choose),
removed at the end. An untimed run first checks that the last checkpoint's
Parquet file reads back, with pyarrow and DuckDB, equal to the pipeline's
result; the checkpoint's parts (encode, copy, sha256, write + fsync) are then
timed on their own to show where its time goes.

    python benchmarks/checkpoint.py               # 2 to 3 minutes
    python benchmarks/checkpoint.py --repeats 5 --json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from runner.artifacts import ArtifactStore, read_index, read_run
from runner.artifacts.codec import PARQUET_OPTIONS, encode, sha256
from runner.artifacts.objects import object_path
from runner.artifacts.reading import field_binding
from runner.context import Context, fork_value, values_equal
from runner.manifest import Manifest, parse_manifest
from runner.orchestration.plan import compile_plan
from runner.orchestration.runner import DAGRunner
from runner.registry import StageRegistry
from runner.sdk import QuantSDK

MB = 1e6
PIPELINE = "bench"
TARGET_CHECKPOINT = 0.6  # (c) / (a)
TARGET_MEMORY = 1.5  # (d) / (e)
QUOTED = ("Kedro ParquetDataset 1.00-1.03x the plain default script; "
          "Kedro MemoryDataset (copies) ~25x the plain loop")

Frame = pd.DataFrame
FrameFn = Callable[[Frame], Frame]

# key -> label; (a)..(e) as in the issue
A, A_W = "plain_default", "plain_default_write_only"
B, B_W, B_F = "plain_nodict", "plain_nodict_write_only", "plain_nodict_fsync_write_only"
C = "runner_checkpoints"
D, D_RUNNER, E = "runner_memory", "dagrunner_memory", "loop"
LABELS = {
    A: "(a) plain, default pyarrow: write + read back",
    A_W: "    plain, default pyarrow: write only",
    B: "(b) plain, use_dictionary=False: write + read",
    B_W: "    plain, use_dictionary=False: write only",
    B_F: "    plain, no dictionary + fsync: write only",
    C: "(c) runner, checkpoint after every step",
    E: "(e) plain Python loop passing the frame",
    D: "(d) runner in memory (QuantSDK, no checkpoints)",
    D_RUNNER: "    DAGRunner in memory (no store, no lock)",
}
DISK = (A, A_W, B, B_W, B_F, C)
MEMORY = (E, D, D_RUNNER)


# ---------------------------------------------------------------- the pipeline


def make_frame(rows: int, cols: int, seed: int = 0) -> Frame:
    """Random normal float64 columns ``c0..``, each contiguous in memory as
    ``read_parquet`` or a dict of arrays would give them (one (cols, rows) block).
    Random floats are incompressible: snappy gains nothing on them."""
    data = np.random.default_rng(seed).standard_normal((cols, rows))
    frame = pd.DataFrame(data.T, columns=[f"c{i}" for i in range(cols)], copy=False)
    assert frame["c0"].to_numpy().flags.c_contiguous, "columns are not contiguous"
    return frame


def make_fns(steps: int, cols: int, work: str) -> list[FrameFn]:
    """Step k replaces column c_{k mod cols} (or, ``frame``, adds 1.0 everywhere)."""
    fns: list[FrameFn] = []
    for k in range(steps):
        col = f"c{k % cols}"
        if work == "column":
            def fn(df: Frame, col: str = col) -> Frame:
                return df.assign(**{col: df[col] + 1.0})
        else:
            def fn(df: Frame, col: str = col) -> Frame:  # col unused: one signature
                return df + 1.0
        fn.__name__ = fn.__qualname__ = f"s{k}"
        fns.append(fn)
    return fns


def build_pipeline(fns: list[FrameFn]) -> tuple[StageRegistry, Manifest]:
    """The same functions as stages of a one-pipeline manifest in a fresh registry."""
    registry = StageRegistry()
    for f in fns:
        def stage(ctx: Context, f: FrameFn = f) -> Context:
            ctx.feature_store = f(ctx.feature_store)
            return ctx
        stage.__name__ = stage.__qualname__ = f.__name__
        registry.register(f.__name__, stage, writes=["feature_store"])
    text = json.dumps({"pipelines": {PIPELINE: {"steps": [f.__name__ for f in fns]}}})
    return registry, parse_manifest(text, source="<checkpoint benchmark>")


def loop(frame: Frame, fns: list[FrameFn]) -> Frame:
    df = frame
    for f in fns:
        df = f(df)
    return df


def plain(frame: Frame, fns: list[FrameFn], folder: Path, *, options: dict[str, Any],
          read_back: bool, fsync: bool) -> Frame:
    """What a hand-written script does: write every step's frame, read it at the next."""
    df = frame
    path = folder
    for k, f in enumerate(fns):
        if k and read_back:
            df = pq.read_table(path).to_pandas()
        df = f(df)
        path = folder / f"step{k}.parquet"
        table = pa.Table.from_pandas(df)
        if fsync:
            with path.open("wb") as fh:
                pq.write_table(table, fh, **options)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            pq.write_table(table, path, **options)
    return df


# ---------------------------------------------------------------- helpers


def mount_of(path: Path) -> str:
    """``device (fstype) at mountpoint`` holding ``path``, from /proc/mounts."""
    target = str(path.resolve())
    best = ("?", "?", "")
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                dev, mnt, fstype = line.split()[:3]
                inside = target == mnt or target.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best[2]):
                    best = (dev, fstype, mnt)
    except OSError:
        return "unknown"
    return f"{best[0]} ({best[1]}) at {best[2]}" if best[2] else "unknown"


def tree_bytes(folder: Path) -> dict[str, int]:
    out = {"files": 0, "bytes": 0, "parquet_files": 0, "parquet_bytes": 0}
    for p in folder.rglob("*"):
        if p.is_file():
            size = p.stat().st_size
            out["files"] += 1
            out["bytes"] += size
            if p.suffix == ".parquet":
                out["parquet_files"] += 1
                out["parquet_bytes"] += size
    return out


def clock(call: Callable[[], Any]) -> tuple[float, Any]:
    """One timing with the collector off (as timeit)."""
    gc.disable()
    try:
        start = time.perf_counter()
        out = call()
        return time.perf_counter() - start, out
    finally:
        gc.enable()


def best_of(call: Callable[[], Any], repeats: int) -> float:
    return min(clock(call)[0] for _ in range(repeats))


# ---------------------------------------------------------------- measurement


def verify(frame: Frame, fns: list[FrameFn], registry: StageRegistry, manifest: Manifest,
           folder: Path) -> dict[str, Any]:
    """An untimed checkpointed run; its last Parquet file read back by pyarrow and DuckDB."""
    sdk = QuantSDK(manifest, registry=registry, artifacts=folder / "store",
                   workspace_root=folder / "ws")
    result = sdk.run_pipeline(PIPELINE, Context(feature_store=frame), executor="inline",
                              checkpoints=True)
    expected = result.context.feature_store
    store = ArtifactStore(folder / "store")
    last = read_run(store, result.run_id).last_main_checkpoint()
    assert last is not None, "the run left no checkpoint"
    entry = read_index(store, result.run_id, last.dir).fields["feature_store"]
    rel = object_path(entry.object) if entry.object else f"runs/{result.run_id}/{entry.file}"
    path = folder / "store" / rel
    sha_ok = sha256(path.read_bytes()) == entry.digest
    back = pq.read_table(path).to_pandas()
    pyarrow_ok = bool(back.equals(expected) and back.index.equals(expected.index)
                      and list(back.columns) == list(expected.columns))
    con = duckdb.connect()
    names = [r[0] for r in con.execute(
        "SELECT name FROM parquet_schema(?) WHERE num_children IS NULL", [str(path)]).fetchall()]
    extra = [n for n in names if n not in set(map(str, expected.columns))]
    order = ' ORDER BY "__index_level_0__"' if "__index_level_0__" in names else ""
    duck = con.execute(f"SELECT * FROM read_parquet(?){order}", [str(path)]).df()
    con.close()
    duck_ok = bool(len(duck) == len(expected) and all(
        np.array_equal(duck[str(c)].to_numpy(), expected[c].to_numpy()) for c in expected.columns))
    index_ok = None
    if "__index_level_0__" in duck:
        index_ok = bool(np.array_equal(duck["__index_level_0__"].to_numpy(),
                                       expected.index.to_numpy()))
    usage = tree_bytes(folder / "store")
    shutil.rmtree(folder / "store")
    return {
        "file": rel, "file_bytes": entry.bytes,
        "sha256_ok": sha_ok,
        "equals_loop": bool(expected.equals(loop(frame, fns))),
        "pyarrow_equal": pyarrow_ok, "duckdb_rows": len(duck), "duckdb_columns": names,
        "duckdb_extra_columns": extra, "duckdb_equal": duck_ok, "duckdb_index_equal": index_ok,
        "store_files": usage["files"], "store_bytes": usage["bytes"],
    }


class _HashingFile:
    """A write-only file that hashes what goes through it (for the sketch below)."""

    closed = False

    def __init__(self, fh: Any) -> None:
        self.fh, self.hash, self.size = fh, hashlib.sha256(), 0

    def write(self, data: Any) -> int:
        self.hash.update(data)
        self.size += len(data)
        return int(self.fh.write(data))

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        pass  # the caller closes the real file, after fsync


def streamed(frame: Frame, target: Path, *, preserve_index: bool | None) -> tuple[str, int]:
    """Sketch of a cheaper checkpoint write (not the runner's code): Parquet streamed
    into the temporary file, sha256 computed on the way, fsync, rename. No bytes
    object of the whole file is ever built."""
    table = pa.Table.from_pandas(frame, preserve_index=preserve_index)
    tmp = target.with_name(f".{target.name}.tmp")
    with tmp.open("wb") as fh:
        out = _HashingFile(fh)
        pq.write_table(table, out, **PARQUET_OPTIONS)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(target)
    return out.hash.hexdigest(), out.size


BINDING = field_binding("bench-1", "steps/001-bench/feature_store.parquet")
"""What a pickled field would be signed for (a frame is Parquet: unsigned, hashed)."""

def breakdown(frame: Frame, fns: list[FrameFn], folder: Path, repeats: int) -> dict[str, Any]:
    """One checkpoint of the final frame, part by part as codec.py and store.py do it,
    whole as the hook does it, and as the streamed sketch would."""
    prev = loop(frame, fns[:-1])
    cur = fns[-1](prev)
    kept = fork_value(prev)
    table = pa.Table.from_pandas(cur, preserve_index=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **PARQUET_OPTIONS)
    buf = sink.getvalue()
    data = encode(cur, binding=BINDING).data
    out = folder / "parts"
    store = ArtifactStore(out)
    plain_table = pa.Table.from_pandas(cur)  # the plain script's: RangeIndex as metadata
    counter = iter(range(10**6))

    def hook_path() -> None:  # what CheckpointHook._write_field does for a frame
        enc = encode(cur, binding=BINDING)
        assert enc.write_file is not None
        store.write_local(f"h{next(counter)}.parquet", enc.write_file)

    parts: dict[str, Callable[[], Any]] = {
        "from_pandas": lambda: pa.Table.from_pandas(cur, preserve_index=True),
        "write_table": lambda: pq.write_table(table, pa.BufferOutputStream(), **PARQUET_OPTIONS),
        "bytes_copy": lambda: bytes(buf),
        "sha256": lambda: sha256(data),
        "store_write": lambda: store.write_bytes(f"f{next(counter)}.parquet", data),
        "change_detection": lambda: values_equal(cur, kept),
        "encode": lambda: encode(cur, binding=BINDING),
        "hook_path": hook_path,
        "sketch_streamed": lambda: streamed(cur, out / f"s{next(counter)}.parquet",
                                            preserve_index=True),
        "sketch_streamed_rangeindex": lambda: streamed(
            cur, out / f"r{next(counter)}.parquet", preserve_index=None),
        "write_table_default": lambda: pq.write_table(plain_table, pa.BufferOutputStream()),
        "write_table_nodict": lambda: pq.write_table(plain_table, pa.BufferOutputStream(),
                                                     use_dictionary=False),
    }
    writes = {"store_write", "hook_path", "sketch_streamed", "sketch_streamed_rangeindex"}
    times: dict[str, list[float]] = {name: [] for name in parts}
    order = list(parts)
    rng = random.Random(1)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            out.mkdir(exist_ok=True)
            gc.collect()
            if name in writes:
                os.sync()
            t, _ = clock(parts[name])
            times[name].append(t)
            shutil.rmtree(out)
    sketch_sha, sketch_bytes = streamed(cur, folder / "sketch.parquet", preserve_index=None)
    sketch_ok = bool(pq.read_table(folder / "sketch.parquet").to_pandas().equals(cur)
                     and sha256((folder / "sketch.parquet").read_bytes()) == sketch_sha)
    (folder / "sketch.parquet").unlink()
    return {"seconds": {name: min(ts) for name, ts in times.items()},
            "median_seconds": {name: statistics.median(ts) for name, ts in times.items()},
            "bytes": len(data), "bytes_rangeindex": sketch_bytes,
            "sketch_reads_back_equal": sketch_ok,
            "bytes_plain_nodict": len(_plain_bytes(cur, use_dictionary=False)),
            "bytes_plain_default": len(_plain_bytes(cur))}


def _plain_bytes(df: Frame, **options: Any) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df), sink, **options)
    return bytes(sink.getvalue())


def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    frame = make_frame(args.rows, args.cols)
    frame_bytes = int(frame.memory_usage(index=False).sum())
    fns = make_fns(args.steps, args.cols, args.work)
    registry, manifest = build_pipeline(fns)
    plan = compile_plan(manifest, PIPELINE, registry=registry)
    # Warm-up and check (untimed): also imports what the first timed run would.
    checked = verify(frame, fns, registry, manifest, folder)
    plain(frame, fns[:1], folder, options={}, read_back=False, fsync=False)
    (folder / "step0.parquet").unlink()

    counter = iter(range(10**6))

    def disk_case(key: str) -> Callable[[Path], Callable[[], Any]]:
        def make(out: Path) -> Callable[[], Any]:
            if key == C:
                sdk = QuantSDK(manifest, registry=registry, artifacts=out,
                               workspace_root=folder / "ws")
                ctx = Context(feature_store=frame)
                return lambda: sdk.run_pipeline(PIPELINE, ctx, executor="inline",
                                                checkpoints=True)
            options = {} if key in (A, A_W) else {"use_dictionary": False}
            read_back = key in (A, B)
            fsync = key == B_F
            return lambda: plain(frame, fns, out, options=options, read_back=read_back,
                                 fsync=fsync)
        return make

    times: dict[str, list[float]] = {k: [] for k in (*DISK, *MEMORY)}
    usage: dict[str, dict[str, int]] = {}
    rng = random.Random(0)
    order = list(DISK)
    for _ in range(args.repeats):
        rng.shuffle(order)
        for key in order:
            out = folder / f"run-{next(counter)}"
            out.mkdir()
            call = disk_case(key)(out)
            gc.collect()
            os.sync()  # no variant pays for another's dirty pages
            t, _ = clock(call)
            times[key].append(t)
            usage[key] = tree_bytes(out)
            shutil.rmtree(out)

    mem_store = folder / "memory-store"
    sdk = QuantSDK(manifest, registry=registry, artifacts=mem_store,
                   workspace_root=folder / "ws")

    def mem_case(key: str) -> Callable[[], Any]:
        ctx = Context(feature_store=frame)
        if key == E:
            return lambda: loop(frame, fns)
        if key == D:
            return lambda: sdk.run_pipeline(PIPELINE, ctx, executor="inline", checkpoints=False)
        return lambda: DAGRunner(plan, executor="inline",
                                 workspace_root=folder / "ws").run(ctx)

    os.sync()
    order = list(MEMORY)
    for rep in range(args.mem_repeats + 1):  # one warm-up round
        rng.shuffle(order)
        for key in order:
            call = mem_case(key)
            gc.collect()
            t, _ = clock(call)
            if rep:
                times[key].append(t)

    parts = breakdown(frame, fns, folder, args.repeats)
    stats = {k: {"best_s": min(ts), "median_s": statistics.median(ts)} for k, ts in times.items()}
    variants: dict[str, Any] = {}
    for key in (*DISK, *MEMORY):
        ref = A if key in DISK else E
        st = stats[key]
        v: dict[str, Any] = {
            "label": LABELS[key].strip(), **st, "reference": ref,
            "ratio_best": st["best_s"] / stats[ref]["best_s"],
            "ratio_median": st["median_s"] / stats[ref]["median_s"],
        }
        if key in usage:
            v.update(usage[key])
            v["parquet_mb_per_s_best"] = usage[key]["parquet_bytes"] / MB / st["best_s"]
        variants[key] = v
    ckpt_s = stats[C]["best_s"] - stats[D]["best_s"]
    result: dict[str, Any] = {
        "rows": args.rows, "cols": args.cols, "steps": args.steps, "work": args.work,
        "frame_bytes": frame_bytes, "repeats": args.repeats, "mem_repeats": args.mem_repeats,
        "folder": str(folder), "folder_disk": mount_of(folder), "tmp_disk": mount_of(Path("/tmp")),
        "variants": variants, "check": checked, "parts": parts,
        "checkpoint_overhead_s_best": ckpt_s,
        "runner_parquet_mb_per_s": usage[C]["parquet_bytes"] / MB / ckpt_s if ckpt_s > 0 else None,
        "target_checkpoint": TARGET_CHECKPOINT, "target_memory": TARGET_MEMORY,
        "target_checkpoint_met": variants[C]["ratio_best"] <= TARGET_CHECKPOINT,
        "target_memory_met": variants[D]["ratio_best"] <= TARGET_MEMORY,
    }
    result["targets"] = [
        {"figure": f"checkpoint every step of a {frame_bytes / MB:.0f} MB frame",
         "value": round(variants[C]["ratio_median"], 3), "unit": "x", "reference_unit": "s",
         "reference": "plain default-pyarrow script (write + read back), median",
         "reference_value": round(stats[A]["median_s"], 3),
         "target": f"<= {TARGET_CHECKPOINT}x", "met":
             variants[C]["ratio_median"] <= TARGET_CHECKPOINT},
        {"figure": "pipeline in memory vs a plain loop",
         "value": round(variants[D]["ratio_median"], 3), "unit": "x", "reference_unit": "s",
         "reference": "plain Python loop, median", "reference_value":
             round(stats[E]["median_s"], 6),
         "target": f"<= {TARGET_MEMORY}x", "met": variants[D]["ratio_median"] <= TARGET_MEMORY},
    ]
    return result


# ---------------------------------------------------------------- report


def report(r: dict[str, Any]) -> None:
    steps, v = r["steps"], r["variants"]
    opts = ", ".join(f"{key}={value}" for key, value in PARQUET_OPTIONS.items())
    work = ("replaces one column (c_k = c_k + 1.0)" if r["work"] == "column"
            else "adds 1.0 to the whole frame")
    print(f"Checkpoint cost: {steps} steps, each {work}, of a {r['rows']:,} x {r['cols']} "
          f"float64 frame ({r['frame_bytes'] / MB:.1f} MB); best and median of {r['repeats']} "
          f"(disk) / {r['mem_repeats']} (memory) timings, interleaved in shuffled order")
    print(f"files under {r['folder']} on {r['folder_disk']}; /tmp is on {r['tmp_disk']}")
    print(f"(a) (b): after each step pa.Table.from_pandas + pq.write_table to its own file, "
          f"read back (pq.read_table().to_pandas()) at the next step: {steps} writes, "
          f"{steps - 1} reads, no fsync (data may still be in the page cache when the clock "
          f"stops); 'write only': no reads; '+ fsync': flush + fsync each file")
    print(f"(c): QuantSDK.run_pipeline(checkpoints=True): after each step the changed field "
          f"(the whole frame) is written as Parquet ({opts}, a RangeIndex as metadata) "
          f"by Arrow into a temporary file, its sha256 read back from it, renamed, on a "
          f"writer thread behind the next step; a second thread fsyncs, writes index.json "
          f"and the journal line; the run ends when the last checkpoint is durable; the "
          f"pipeline reads no checkpoint back")
    print("(d): the same call with checkpoints=False; (e): for f in fns: df = f(df)")
    print(f"{'variant':48s} {'best s':>7s} {'median s':>8s} {'ratio':>6s} {'(median)':>8s} "
          f"{'Parquet MB':>10s} {'MB/s':>6s}")
    for key, x in v.items():
        if key == E:
            print("-- in memory, ratio to (e)")
        elif key == A:
            print("-- on disk, ratio to (a)")
        mb = f"{x['parquet_bytes'] / MB:10.1f} {x['parquet_mb_per_s_best']:6.0f}" if (
            "parquet_bytes" in x) else f"{'-':>10s} {'-':>6s}"
        print(f"{LABELS[key]:48s} {x['best_s']:7.3f} {x['median_s']:8.3f} "
              f"{x['ratio_best']:5.2f}x {x['ratio_median']:7.2f}x {mb}")
    print("ratio = variant / reference (best, median); Parquet MB = all Parquet bytes written "
          "by one run; MB/s = those bytes / best wall time")
    c = v[C]
    print(f"runner: {c['files']} files, {c['bytes'] / MB:.1f} MB per run "
          f"({c['parquet_files']} Parquet files, {c['parquet_bytes'] / MB:.1f} MB); "
          f"checkpoint overhead (c) - (d) = {r['checkpoint_overhead_s_best']:.3f} s "
          + (f"-> {r['runner_parquet_mb_per_s']:.0f} MB/s of Parquet"
             if r["runner_parquet_mb_per_s"] else "(no time left to checkpoints: noise)"))
    p, s = r["parts"], r["parts"]["seconds"]
    n = p["bytes"] / MB
    print(f"where one checkpoint of the frame goes (parts timed apart, interleaved, best of "
          f"{r['repeats']}; {n:.1f} MB of Parquet):")
    rows = (("pa.Table.from_pandas(preserve_index=True)", "from_pandas"),
            (f"pq.write_table to a buffer ({opts})", "write_table"),
            ("bytes(sink.getvalue()) copy", "bytes_copy"),
            ("sha256 of the bytes", "sha256"),
            ("ArtifactStore.write_bytes (write + fsync + rename)", "store_write"),
            ("change detection (values_equal vs previous step)", "change_detection"))
    total = 0.0
    for label, key in rows:
        total += s[key]
        rate = f" {n / s[key]:6.0f} MB/s" if key != "change_detection" else ""
        print(f"  {label:69s} {s[key]:6.3f} s{rate}")
    print(f"  {'sum of the parts':69s} {total:6.3f} s")
    print(f"  {'whole, as the hook does it (encode, Arrow writes, sha256 read back)':69s} "
          f"{s['hook_path']:6.3f} s {n / s['hook_path']:6.0f} MB/s; x {steps} = "
          f"{s['hook_path'] * steps:.2f} s; (c) - (d) = {r['checkpoint_overhead_s_best']:.2f} s")
    ri = p["bytes_rangeindex"] / MB
    print(f"  {'sketch: streamed into the file, sha256 on the way, fsync':69s} "
          f"{s['sketch_streamed']:6.3f} s {n / s['sketch_streamed']:6.0f} MB/s")
    print(f"  {'sketch: the same, RangeIndex as metadata (' + f'{ri:.1f} MB)':69s} "
          f"{s['sketch_streamed_rangeindex']:6.3f} s {ri / s['sketch_streamed_rangeindex']:6.0f}"
          f" MB/s (reads back equal: {'yes' if p['sketch_reads_back_equal'] else 'NO'})")
    default = p["bytes_plain_default"] / MB / s["write_table_default"]
    nodict = p["bytes_plain_nodict"] / MB / s["write_table_nodict"]
    print(f"  codec.encode: {s['encode']:.3f} s ({n / s['encode']:.0f} MB/s); pq.write_table "
          f"to memory of the plain script's table: default {s['write_table_default']:.3f} s "
          f"({default:.0f} MB/s), use_dictionary=False {s['write_table_nodict']:.3f} s "
          f"({nodict:.0f} MB/s)")
    k = r["check"]
    extra = (f" plus {', '.join(k['duckdb_extra_columns'])}"
             + ("" if k["duckdb_index_equal"] is None else
                f" (= the index: {'yes' if k['duckdb_index_equal'] else 'NO'})")
             ) if k["duckdb_extra_columns"] else ""

    def yes(b: bool) -> str:
        return "yes" if b else "NO"
    print(f"check: {k['file']} ({k['file_bytes'] / MB:.1f} MB), sha256 as indexed: "
          f"{yes(k['sha256_ok'])}; pipeline result = plain loop's: {yes(k['equals_loop'])}; "
          f"pyarrow reads it back equal: {yes(k['pyarrow_equal'])}; DuckDB reads "
          f"{k['duckdb_rows']:,} rows, {len(k['duckdb_columns'])} columns, values equal: "
          f"{yes(k['duckdb_equal'])}{extra}")
    for label, key, target, met in (
            ("checkpointed pipeline (c) / plain default script (a)", C, TARGET_CHECKPOINT,
             r["target_checkpoint_met"]),
            ("in-memory pipeline (d) / plain loop (e)", D, TARGET_MEMORY,
             r["target_memory_met"])):
        x = v[key]
        print(f"target: {label} <= {target}x: {x['ratio_best']:.2f}x best "
              f"({x['ratio_median']:.2f}x median) -> {'met' if met else 'NOT met'}")
    print(f"for scale (quoted, not measured here): {QUOTED}")
    for t in r["targets"]:
        print(f"target row: {t['figure']}: {t['value']:.2f}{t['unit']} (reference "
              f"{t['reference']}: {t['reference_value']}) {t['target']} -> "
              f"{'met' if t['met'] else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Checkpointing a pipeline that passes a 128 MB frame, against plain "
                    "pyarrow scripts, and the same pipeline in memory against a plain loop.")
    parser.add_argument("--rows", type=int, default=2_000_000, help="frame rows (2,000,000)")
    parser.add_argument("--cols", type=int, default=8, help="float64 columns (8)")
    parser.add_argument("--steps", type=int, default=5, help="pipeline steps (5)")
    parser.add_argument("--work", choices=("column", "frame"), default="column",
                        help="what each step changes: one column, or the whole frame (column)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings of each disk variant; best and median shown (3)")
    parser.add_argument("--mem-repeats", type=int, default=30,
                        help="timings of each in-memory variant (30)")
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent,
                        help="where the scratch folder goes (benchmarks/, i.e. the repo's disk)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if min(args.rows, args.cols, args.steps, args.repeats, args.mem_repeats) < 1:
        parser.error("--rows, --cols, --steps, --repeats and --mem-repeats must be at least 1")
    folder = Path(tempfile.mkdtemp(prefix=".tmp-checkpoint-", dir=args.dir))
    try:
        result = measure(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result["date"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["python"] = platform.python_version()
    result["pandas"], result["pyarrow"] = pd.__version__, pa.__version__
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
