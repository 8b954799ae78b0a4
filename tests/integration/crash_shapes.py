"""Stages and a driver for the crash-and-resume tests (importable by subprocesses).

The stages do small, deterministic work on a price frame. Every execution of a
stage appends one line, its name, to the ledger file named by ``$CRASH_LEDGER``
(read at call time), flushed and fsync'd before the stage goes on, so the
ledger survives a SIGKILL and says exactly which stages ran in which process.

Kill points, all read from the environment of the process that runs them:

* ``CRASH_AT=<stage>:before`` -- the stage kills its process on entry, before
  its ledger line: it never ran.
* ``CRASH_AT=<stage>:inside`` -- the stage writes its ledger line, does half of
  its work (changes the context in place), then kills its process. It did not
  complete, so a resume runs it again: it is in the ledger twice.

  Checkpoints are written by a background thread while the next step runs, so
  at a stage's kill point the previous checkpoints may still be in flight. With
  ``CRASH_WAIT=<plan path>`` and ``CRASH_RUN_JSON=<file>`` the stage first waits
  until the run records a checkpoint of that path (a deterministic kill point);
  without them it dies at once (whatever the writer thread was doing).
* ``CRASH_WRITE_MATCH=<regex>`` with ``CRASH_WRITE_MODE`` and optionally
  ``CRASH_WRITE_AFTER=<regex>`` / ``CRASH_WRITE_NTH=<n>`` -- only in a process
  started through :func:`main`, which wraps ``ArtifactStore.open_atomic`` (every
  store write goes through it, ``write_bytes`` included), ``write_temp`` and
  ``publish_temp`` (Parquet fields written natively, named once hashed) and
  ``append_bytes`` (the run journal's lines): on the n-th write whose
  store-relative path matches (counting only once a write matching
  ``CRASH_WRITE_AFTER`` has completed), it

  - ``partial``: lets the writer stream the file into its temporary name, cuts
    that file to half its length before the rename, as if killed mid-write, and dies;
  - ``before``: dies before the file is opened;
  - ``after``: lets the file land under its name, then dies (e.g. an index.json
    written, run.json not yet updated).

Signals instead of SIGKILL: with ``CRASH_SIGNAL=TERM`` (or ``INT``) every kill point
above -- and ``CRASH_AT=<stage>:after``, at the end of the stage's work -- sends
that signal to the driver process (``$CRASH_DRIVER_PID``, which :func:`main` sets;
its whole process group with ``CRASH_SIGNAL_GROUP=1``, as a terminal's Ctrl-C does)
and goes on once the driver has acted on it (:func:`main` makes the run touch
``$CRASH_ACK`` when it is interrupted); the stage then finishes its work, as a
stage in flight does when a pod is told to stop. ``CRASH_SIGNAL_COUNT=2`` sends a
second signal after that; ``CRASH_STALL=1`` then makes the stage hang (a stage
that outlives the grace period, or one a second signal must not wait for).
``partial`` writes cannot be combined with a signal. ``CRASH_HOLD=<stage>`` makes
that stage wait on entry until the run is interrupted (the main thread is held
there while a checkpoint writer thread signals).

``CRASH_NO_SYNC=1`` makes the checkpoint syncer hang on its first fsync: nothing a
run commits becomes durable, as on a machine that stops before its disk writes land.

``CRASH_START_GATE=<folder>`` makes the driver, once it has imported everything,
write ``<folder>/ready-<pid>`` and wait until ``<folder>/go`` exists, so that many
processes reach the run lease at one moment.

Run the driver as ``python -c "from tests.integration.crash_shapes import main;
main()" run PIPELINE ...`` (or ``python -m tests.integration.crash_shapes``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import Field

from runner.context import Context, MergeRule

PIPELINE = "crash"
CONTEXT = "tests.integration.crash_shapes:CrashContext"

STAGES = {
    name: f"tests.integration.crash_shapes:{fn}"
    for name, fn in {
        "crash.seed": "seed",
        "crash.returns": "returns",
        "crash.momentum": "momentum",
        "crash.signal": "trade_signal",
        "crash.volatility": "volatility",
        "crash.position": "position",
        "crash.pnl": "pnl",
        "crash.summary": "summary",
    }.items()
}

MANIFEST: dict[str, Any] = {
    "pipelines": {
        PIPELINE: {
            "description": "seed -> returns -> (momentum -> signal | volatility) -> book -> "
                           "summary",
            "context": CONTEXT,
            "steps": [
                "crash.seed",
                "crash.returns",
                [["crash.momentum", "crash.signal"], "crash.volatility"],
                "crash.book",
                "crash.summary",
            ],
        },
        "crash.book": {"context": CONTEXT, "steps": ["crash.position", "crash.pnl"]},
    },
    "stages": STAGES,
}


class CrashContext(Context):
    """The base context plus a dict of plain numbers (merge rule ``error``)."""

    params: dict[str, Any] = Field(default_factory=dict)
    stats: dict[str, float] = Field(default_factory=dict)
    notes: Annotated[list[str], MergeRule("append")] = Field(default_factory=list)

    def report(self) -> dict[str, Any]:
        frame = self.feature_store
        return {"stats": dict(self.stats), "audit_trail": list(self.audit_trail),
                "columns": [str(c) for c in frame.columns],
                "checksum": float(frame.select_dtypes("number").to_numpy().sum())}


# ---------------------------------------------------------------- kill points


def die() -> None:
    """SIGKILL this process: no cleanup, no hooks, no flushing (with ``CRASH_SIGNAL``,
    signal the driver instead and go on)."""
    if os.environ.get("CRASH_SIGNAL"):
        signal_driver()
        return
    os.kill(os.getpid(), signal.SIGKILL)


def signal_driver() -> None:
    """Send ``$CRASH_SIGNAL`` to the driver, wait until its run is interrupted, then
    maybe signal again (``CRASH_SIGNAL_COUNT``) and hang (``CRASH_STALL``)."""
    signum = signal.Signals[f"SIG{os.environ['CRASH_SIGNAL']}"]
    driver = int(os.environ.get("CRASH_DRIVER_PID", os.getpid()))
    group = os.environ.get("CRASH_SIGNAL_GROUP") == "1"
    for n in range(int(os.environ.get("CRASH_SIGNAL_COUNT", "1"))):
        if group:
            os.killpg(os.getpgid(driver), signum)
        else:
            os.kill(driver, signum)
        if n == 0:
            _wait_ack()
    if os.environ.get("CRASH_STALL") == "1":
        time.sleep(600)  # ended by the driver (os._exit, or killing its workers)


def _wait_ack() -> None:
    """Until the driver's run has been interrupted (30 s at most)."""
    path = os.environ.get("CRASH_ACK")
    if not path:
        return
    for _ in range(3000):
        if os.path.exists(path):
            return
        time.sleep(0.01)
    raise SystemExit(f"CRASH_ACK: the driver did not interrupt its run within 30s ({path})")


def ledger(name: str) -> None:
    path = os.environ.get("CRASH_LEDGER")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _wait_recorded() -> None:
    """Until the run's record (run.json and its journal, as :func:`read_run` reads
    them) lists a checkpoint of ``$CRASH_WAIT`` (30 s at most)."""
    from runner.artifacts import ArtifactStore, read_run
    from runner.errors import ArtifactError

    want, path = os.environ.get("CRASH_WAIT"), os.environ.get("CRASH_RUN_JSON")
    if not want or not path:
        return
    run_dir = os.path.dirname(path)
    store = ArtifactStore(os.path.dirname(os.path.dirname(run_dir)))
    for _ in range(3000):
        try:
            doc = read_run(store, os.path.basename(run_dir))
        except ArtifactError:
            doc = None
        if doc is not None and any(c.path == want for c in doc.checkpoints):
            return
        time.sleep(0.01)
    raise SystemExit(f"CRASH_WAIT: no checkpoint of {want!r} in {path} after 30s")


def _enter(name: str) -> None:
    if os.environ.get("CRASH_HOLD") == name:  # until the run is interrupted
        _wait_ack()
    if os.environ.get("CRASH_AT") == f"{name}:before":
        _wait_recorded()
        die()
    ledger(name)


def _halfway(name: str) -> None:
    if os.environ.get("CRASH_AT") == f"{name}:inside":
        _wait_recorded()
        die()


def _leave(name: str) -> None:
    """The stage's work is done; it returns next (a signal here lands between steps)."""
    if os.environ.get("CRASH_AT") == f"{name}:after":
        _wait_recorded()
        die()


# ---------------------------------------------------------------- stages


def seed(ctx: CrashContext) -> CrashContext:
    _enter("crash.seed")
    day = np.arange(64)
    step = 0.01 * np.sin(0.7 * day) + 0.002 * np.cos(1.3 * day)
    frame = pd.DataFrame({"price": 100.0 * np.exp(np.cumsum(step))},
                         index=pd.Index(day, name="day"))
    _halfway("crash.seed")
    frame["regime"] = np.where(day % 3 == 0, "calm", "busy")
    ctx.feature_store = frame
    ctx.log(f"seed:{len(frame)}")
    _leave("crash.seed")
    return ctx


def returns(ctx: CrashContext) -> CrashContext:
    _enter("crash.returns")
    fs = ctx.feature_store
    fs["ret"] = fs["price"].pct_change().fillna(0.0)
    _halfway("crash.returns")
    ctx.log(f"returns:{fs['ret'].std():.10f}")
    _leave("crash.returns")
    return ctx


def momentum(ctx: CrashContext) -> CrashContext:
    _enter("crash.momentum")
    fs = ctx.feature_store
    fs["mom"] = fs["ret"].rolling(5, min_periods=1).mean()
    _halfway("crash.momentum")
    ctx.log(f"momentum:{fs['mom'].iloc[-1]:.10f}")
    _leave("crash.momentum")
    return ctx


def trade_signal(ctx: CrashContext) -> CrashContext:
    _enter("crash.signal")
    fs = ctx.feature_store
    fs["sig"] = np.sign(fs["mom"]).astype("int64")
    _halfway("crash.signal")
    ctx.notes.append(f"long:{int((fs['sig'] > 0).sum())}")
    ctx.log("signal")
    _leave("crash.signal")
    return ctx



def volatility(ctx: CrashContext) -> CrashContext:
    _enter("crash.volatility")
    fs = ctx.feature_store
    ret = fs["ret"]
    fs["vol"] = ret.rolling(10, min_periods=2).std().fillna(float(ret.std()))
    ctx.audit_trail.append("volatility:half-done")  # in place, then maybe killed
    _halfway("crash.volatility")
    ctx.audit_trail.pop()
    ctx.stats = {**ctx.stats, "vol_mean": float(fs["vol"].mean())}
    ctx.notes.append("vol")
    ctx.log("volatility")
    _leave("crash.volatility")
    return ctx


def position(ctx: CrashContext) -> CrashContext:
    _enter("crash.position")
    fs = ctx.feature_store
    fs["pos"] = (fs["sig"] * 0.01 / fs["vol"]).clip(-5.0, 5.0)
    _halfway("crash.position")
    ctx.log(f"position:{fs['pos'].abs().sum():.10f}")
    _leave("crash.position")
    return ctx


def pnl(ctx: CrashContext) -> CrashContext:
    _enter("crash.pnl")
    fs = ctx.feature_store
    fs["pnl"] = fs["pos"].shift(1).fillna(0.0) * fs["ret"]
    ctx.stats["half"] = 1.0  # in place, then maybe killed
    _halfway("crash.pnl")
    del ctx.stats["half"]
    equity = (1.0 + fs["pnl"]).cumprod()
    ctx.stats = {**ctx.stats, "total": float(equity.iloc[-1] - 1.0),
                 "worst": float(fs["pnl"].min())}
    ctx.log(f"pnl:{ctx.stats['total']:.10f}")
    _leave("crash.pnl")
    return ctx


def summary(ctx: CrashContext) -> CrashContext:
    _enter("crash.summary")
    fs = ctx.feature_store
    tail = fs[["pos", "pnl"]].tail(5).copy()
    _halfway("crash.summary")
    tail["by_regime"] = fs.groupby("regime")["pnl"].transform("sum").tail(5)
    ctx.inference_outputs = tail
    ctx.params = {"rows": len(fs), "columns": [str(c) for c in fs.columns]}
    ctx.log(f"summary:{ctx.stats['total']:.10f}")
    _leave("crash.summary")
    return ctx


# ---------------------------------------------------------------- driver


def install_write_trap(env: Any = os.environ) -> None:
    """Wrap ``ArtifactStore.open_atomic`` and ``write_local`` to die at the write
    ``CRASH_WRITE_*`` names."""
    match = env.get("CRASH_WRITE_MATCH")
    if not match:
        return
    mode = env.get("CRASH_WRITE_MODE", "partial")
    if mode not in ("partial", "before", "after"):
        raise SystemExit(f"CRASH_WRITE_MODE={mode!r}: expected partial, before or after")
    if mode == "partial" and env.get("CRASH_SIGNAL"):
        raise SystemExit("CRASH_WRITE_MODE=partial tears a file for a SIGKILL: not with "
                         "CRASH_SIGNAL")
    pattern = re.compile(match)
    after = re.compile(env["CRASH_WRITE_AFTER"]) if env.get("CRASH_WRITE_AFTER") else None
    nth = int(env.get("CRASH_WRITE_NTH", "1"))

    from runner.artifacts.store import ArtifactStore

    original = ArtifactStore.open_atomic
    state = {"armed": after is None, "seen": 0}

    def hit(rel: str) -> bool:
        if state["armed"] and pattern.search(rel):
            state["seen"] += 1
            return state["seen"] == nth
        return False

    @contextlib.contextmanager
    def open_atomic(self: Any, rel: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        trap = hit(rel)
        if trap:  # checkpoints commit on another thread: wait for the one asked for
            _wait_recorded()
        if trap and mode == "before":
            die()
        with original(self, rel, *args, **kwargs) as fh:
            yield fh
            if trap and mode == "partial":
                _tear(self, rel, fh)
        if trap and mode == "after":
            die()
        if after is not None and not state["armed"] and after.search(rel):
            state["armed"] = True

    original_temp, original_publish = ArtifactStore.write_temp, ArtifactStore.publish_temp
    named_then_die: set[str] = set()

    def write_temp(self: Any, rel: str, write: Any) -> Any:
        trap = hit(rel)
        if trap:
            _wait_recorded()
        if trap and mode == "before":
            die()

        def torn(path: str) -> None:  # the temporary file cut to half its length
            write(path)
            os.truncate(path, os.path.getsize(path) // 2)
            die()

        tmp = original_temp(self, rel, torn if trap and mode == "partial" else write)
        if trap and mode == "after":
            named_then_die.add(rel)  # once it has its name (publish_temp)
        return tmp

    def publish_temp(self: Any, rel: str, tmp: str, **kwargs: Any) -> Any:
        result = original_publish(self, rel, tmp, **kwargs)
        if rel in named_then_die:
            die()
        if after is not None and not state["armed"] and after.search(rel):
            state["armed"] = True
        return result

    original_append = ArtifactStore.append_bytes

    def append_bytes(self: Any, rel: str, data: bytes, **kwargs: Any) -> None:
        trap = hit(rel)
        if trap:
            _wait_recorded()
        if trap and mode == "before":
            die()
        if trap and mode == "partial":  # the journal line torn, as if killed mid-write
            original_append(self, rel, data[: len(data) // 2], **kwargs)
            die()
        original_append(self, rel, data, **kwargs)
        if trap and mode == "after":
            die()
        if after is not None and not state["armed"] and after.search(rel):
            state["armed"] = True

    ArtifactStore.open_atomic = open_atomic  # type: ignore[method-assign]
    ArtifactStore.write_temp = write_temp  # type: ignore[method-assign]
    ArtifactStore.publish_temp = publish_temp  # type: ignore[method-assign]
    ArtifactStore.append_bytes = append_bytes  # type: ignore[method-assign]


def install_interrupt_ack(env: Any = os.environ) -> None:
    """Make ``DAGRunner.interrupt`` touch ``$CRASH_ACK`` once it has stopped scheduling."""
    path = env.get("CRASH_ACK")
    if not path:
        return
    from runner.orchestration.runner import DAGRunner

    original = DAGRunner.interrupt

    def interrupt(self: Any, signum: int = signal.SIGTERM) -> None:
        original(self, signum)
        with open(path, "a", encoding="utf-8"):
            pass

    DAGRunner.interrupt = interrupt  # type: ignore[method-assign]


def install_no_sync(env: Any = os.environ) -> None:
    """With ``CRASH_NO_SYNC=1``, ``ArtifactStore.sync`` and ``sync_many`` (the
    checkpoint syncer's fsync and syncfs) never return: whatever the run commits stays
    in the kernel's page cache."""
    if not env.get("CRASH_NO_SYNC"):
        return
    import threading

    from runner.artifacts.store import ArtifactStore

    def sync(self: Any, rel: str | list[str]) -> None:
        threading.Event().wait()

    ArtifactStore.sync = sync  # type: ignore[method-assign]
    ArtifactStore.sync_many = sync  # type: ignore[method-assign, assignment]


def _tear(store: Any, rel: str, fh: Any) -> None:
    """Cut the temporary file being written for ``rel`` to half its length, then die."""
    fh.flush()
    if store.local:
        target = store.path(rel)
        pattern = os.path.join(os.path.dirname(target),
                               f".{glob.escape(os.path.basename(target))}.*")
        for tmp in glob.glob(pattern):
            os.truncate(tmp, os.path.getsize(tmp) // 2)
    die()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.integration.crash_shapes run PIPELINE ...``: the runner CLI,
    with the write trap of ``CRASH_WRITE_*`` installed (when set)."""
    install_write_trap()
    install_interrupt_ack()
    install_no_sync()
    os.environ["CRASH_DRIVER_PID"] = str(os.getpid())  # inherited by worker processes
    gate = os.environ.get("CRASH_START_GATE")  # many processes contending at one moment
    from runner import cli
    from runner.registry import REGISTRY

    # The crash pipeline's stages all come from the manifest: skip importing the
    # ``runner.stages`` entry points (scipy, scikit-learn: seconds per process).
    REGISTRY._entry_points_loaded = True

    sys.argv = ["runner", *(sys.argv[1:] if argv is None else argv)]
    if gate:
        _wait_at_gate(gate)
    cli.main()


def _wait_at_gate(folder: str) -> None:
    """Say this process is ready, then wait (120 s at most) until the test opens the gate."""
    with open(os.path.join(folder, f"ready-{os.getpid()}"), "w", encoding="utf-8"):
        pass
    for _ in range(12000):
        if os.path.exists(os.path.join(folder, "go")):
            return
        time.sleep(0.01)
    raise SystemExit(f"CRASH_START_GATE: {folder}/go never appeared")


if __name__ == "__main__":
    from tests.integration.crash_shapes import main as _main

    _main()
