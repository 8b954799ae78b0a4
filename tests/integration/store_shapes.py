"""Stages and a context for the artifact-store integration tests.

Importable by subprocesses (``runner`` CLI runs) through manifest import paths
``tests.integration.store_shapes:<fn>``. Every stage that takes part in a
resume test appends its name to the ledger file named by ``params["ledger"]``
(when set), so a test can count how often each stage actually executed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from runner.context import Context, MergeRule

__all__ = ["PIPELINES", "STAGES", "Marker", "StoreContext", "typed_frame", "write_manifest"]


class StoreContext(Context):
    """A context with a field of each storage format: frames (Parquet), plain data
    (JSON) and ``pair``, a tuple, which only a pickle keeps exactly."""

    value: int = 0
    notes: Annotated[list[str], MergeRule("append")] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    pair: Any = None
    series: Any = None


def typed_frame() -> pd.DataFrame:
    """A frame with a named DatetimeIndex and float/int/str/bool columns (with nulls)."""
    index = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
                             name="date")
    return pd.DataFrame(
        {
            "px": [100.5, 101.25, np.nan, 99.0],
            "qty": np.array([10, 20, 30, 40], dtype="int64"),
            "sym": ["AAA", "BBB", None, "DDD"],
            "live": [True, False, True, True],
        },
        index=index,
    )


def _ledger(ctx: Any, name: str) -> None:
    path = ctx.params.get("ledger")
    if path:
        with Path(path).open("a") as fh:  # closed, so in the OS even if the process dies
            fh.write(name + "\n")


# ---------------------------------------------------------------- the main pipeline


def load_frames(ctx):
    """The frames the store must keep exactly."""
    _ledger(ctx, "load_frames")
    ctx.feature_store = typed_frame()
    ctx.inference_outputs = pd.DataFrame({"score": [0.25, 0.5, 0.75]},
                                         index=pd.Index(["a", "b", "c"], name="key"))
    ctx.log("frames")
    return ctx


def branch_x(ctx):
    _ledger(ctx, "branch_x")
    ctx.feature_store["x"] = ctx.feature_store["px"] * 2
    return ctx


def branch_y(ctx):
    _ledger(ctx, "branch_y")
    ctx.feature_store["y"] = ctx.feature_store["qty"] + 1
    return ctx


def pickled(ctx):
    """A tuple (pickle), a named Series (Parquet 'series') and a JSON value."""
    _ledger(ctx, "pickled")
    ctx.pair = ("alpha", 1, frozenset({"b", "a"}))
    ctx.series = pd.Series([1.5, 2.5, 3.5], index=pd.Index([10, 20, 30], name="t"), name="sig")
    ctx.value += 1
    return ctx


def flaky(ctx):
    """Fails while the file named by ``params["flag"]`` exists."""
    _ledger(ctx, "flaky")
    flag = ctx.params.get("flag")
    if flag and Path(flag).exists():
        raise RuntimeError(f"flaky stage: flag {flag} is up")
    ctx.value += 10
    ctx.notes.append("flaky passed")
    return ctx


def finish(ctx):
    _ledger(ctx, "finish")
    ctx.value += 100
    ctx.log("finished")
    return ctx


def die(ctx):
    """Kills its own process (no cleanup, no hooks) while ``params["die"]`` exists."""
    _ledger(ctx, "die")
    flag = ctx.params.get("die")
    if flag and Path(flag).exists():
        os._exit(17)
    ctx.log("survived")
    return ctx


def block(ctx):
    """Says it started, then waits (bounded) until the test lets it go."""
    _ledger(ctx, "block")
    Path(ctx.params["started"]).write_text("started")
    release = Path(ctx.params["release"])
    for _ in range(6000):
        if release.exists():
            break
        time.sleep(0.01)
    ctx.log("released")
    return ctx


def sabotage_s3(ctx):
    """Removes the S3 bucket the run is writing to (every object, then the bucket)."""
    import s3fs

    _ledger(ctx, "sabotage_s3")
    fs = s3fs.S3FileSystem(key="testing", secret="testing", skip_instance_cache=True,
                           use_listings_cache=False,
                           client_kwargs={"endpoint_url": ctx.params["endpoint"]})
    bucket = ctx.params["bucket"]
    for _ in range(100):  # a checkpoint writer may still be putting objects in it
        with contextlib.suppress(OSError):
            fs.rm(bucket, recursive=True)
        if not fs.exists(bucket):
            break
        time.sleep(0.05)
    else:
        raise RuntimeError(f"could not delete bucket {bucket}")
    ctx.log("sabotaged")
    return ctx


# ---------------------------------------------------------------- shapes the codec gets wrong


def rename_index(ctx):
    """Only renames the frame's index: same values, same dtypes, a new index name."""
    _ledger(ctx, "rename_index")
    ctx.inference_outputs = ctx.inference_outputs.rename_axis("renamed")
    return ctx


def object_column(ctx):
    """An object column holding Python ints and a None (a stage's raw, untyped data)."""
    _ledger(ctx, "object_column")
    ctx.inference_outputs = pd.DataFrame({"raw": pd.Series([1, None, 3], dtype=object)})
    return ctx


def tuple_named_series(ctx):
    """A Series named by a tuple, as ``frame[("px", "close")]`` of MultiIndex columns is."""
    _ledger(ctx, "tuple_named_series")
    ctx.series = pd.Series([1.0, 2.0], name=("px", "close"))
    return ctx


# ---------------------------------------------------------------- a hostile pickle


def _touch(path: str) -> None:
    Path(path).write_text("unpickled!")


class Marker:
    """Pickles to a payload whose unpickling creates the file ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (self.path,))


# ---------------------------------------------------------------- the manifest

SHAPES = "tests.integration.store_shapes"
STAGES = {
    "log.a": "tests.shapes:log_a",
    "log.b": "tests.shapes:log_b",
    "add.x": "tests.shapes:add_x",
    "add.y": "tests.shapes:add_y",
    **{name: f"{SHAPES}:{name}" for name in (
        "load_frames", "branch_x", "branch_y", "pickled", "flaky", "finish", "die", "block",
        "sabotage_s3", "rename_index", "object_column", "tuple_named_series")},
}
STORE_CTX = f"{SHAPES}:StoreContext"
PIPELINES: dict[str, Any] = {
    "shape": {"steps": ["log.a", ["add.x", "add.y"], "log.b"],
              "context": "tests.shapes:ShapeContext"},
    "main": {"steps": ["load_frames", ["branch_x", "branch_y"], "pickled", "flaky", "finish"],
             "context": STORE_CTX},
    "crashy": {"steps": ["load_frames", "pickled", "die", "finish"], "context": STORE_CTX},
    "blocking": {"steps": ["load_frames", "block", "finish"], "context": STORE_CTX},
    "sabotage": {"steps": ["load_frames", "sabotage_s3", "finish"], "context": STORE_CTX},
    "renamed": {"steps": ["load_frames", "rename_index"], "context": STORE_CTX},
    "objcol": {"steps": ["load_frames", "object_column"], "context": STORE_CTX},
    "tuplename": {"steps": ["load_frames", "tuple_named_series"], "context": STORE_CTX},
}

def write_manifest(folder: Path, description: str | None = None) -> Path:
    pipelines = json.loads(json.dumps(PIPELINES))
    if description is not None:
        pipelines["main"]["description"] = description
    path = folder / "manifest.json"
    path.write_text(json.dumps({"pipelines": pipelines, "stages": STAGES}, indent=1))
    return path


# ---------------------------------------------------------------- reading the store in tests


def _known_types() -> dict[str, type]:
    from runner.context import Context
    from tests.integration.crash_shapes import CrashContext
    from tests.shapes import ShapeContext
    return {f"{t.__module__}:{t.__qualname__}": t
            for t in (StoreContext, ShapeContext, CrashContext, Context)}


def run_doc(store: Any, run_id: str) -> dict[str, Any]:
    """run.json as a dict, read through the verified, typed reader."""
    from runner.artifacts import read_run
    return read_run(store, run_id).model_dump(mode="json")


def index_doc(store: Any, run_id: str, step_dir: str) -> dict[str, Any]:
    """A checkpoint's index.json as a dict, read through the verified, typed reader."""
    from runner.artifacts import read_index
    return read_index(store, run_id, step_dir).model_dump(mode="json")


def load_ckpt(store: Any, run_id: str, step_dir: str, **options: Any) -> Any:
    """A checkpoint as one of the test contexts (nothing imported from the store)."""
    from runner.artifacts import load_checkpoint
    return load_checkpoint(store, run_id, step_dir, types=_known_types(), **options)


def load_entry(store: Any, run_id: str, entry: dict[str, Any], **options: Any) -> Any:
    """One field, from an index entry given as a dict (``name=``: the field's, which a
    pickled object is signed for)."""
    from runner.artifacts import load_field
    from runner.artifacts.documents import FieldEntry
    return load_field(store, run_id, FieldEntry.model_validate(entry), **options)


def stored_path(run_id: str, entry: dict[str, Any]) -> str:
    """Where a field's bytes are on the store: its object, or in a run written before
    objects, its file in the run's folder."""
    from runner.artifacts.objects import object_path
    if entry.get("object"):
        return object_path(entry["object"])
    return f"runs/{run_id}/{entry['file']}"


def write_signed(store: Any, rel: str, doc: dict[str, Any]) -> None:
    """Write a document signed with the test session's key (what a key holder can do)."""
    from runner.artifacts.signing import sign_document
    store.write_bytes(rel, json.dumps(sign_document(doc)).encode())
