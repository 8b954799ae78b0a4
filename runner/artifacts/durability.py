"""The checkpoint writer's background threads: ordered lanes, and the syncer that
makes what they wrote durable in batches (group commit).

The durability guarantee of a local store, as PostgreSQL's
``synchronous_commit=off``: a checkpoint counts as committed once its files,
its index and its journal line are written (handed to the kernel with
``write()``), not once they are fsynced. So

- a killed process (SIGKILL, OOM killer, a pod evicted) loses nothing it
  committed: the kernel has it, and the next reader sees it;
- a machine that stops (power loss, kernel panic) may lose the checkpoints
  committed in the last moments, about one round of fsyncs (a few
  milliseconds; never more than what was committed since the last barrier).
  Each journal line says up to which checkpoint everything was durable when it
  was written (``synced``); a resume checks the checkpoints after that point,
  and one whose files did not reach the disk is dropped, with a warning, and
  its step runs again (:func:`runner.artifacts.resume.prepare_resume`).

The :class:`Syncer` makes durable, on its own thread, every file handed to it
since its last round and the run's journal (on Linux one ``syncfs`` of the
store's filesystem: one journal commit for the whole round, where an fsync per
file costs about one each; elsewhere an fsync per file, the journal last), and
only then advances its ``durable`` mark. :meth:`Syncer.barrier` waits until
everything handed over is durable: before run.json is written (run.json lists
only durable checkpoints), when the run ends or is interrupted by a signal, and
so before its lease is given back. Object stores have nothing to fsync: a PUT that returned is
durable, so there every committed checkpoint is durable at once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["Lane", "Syncer"]

SYNC_THREADS = 4
ROUND_GAP_S = 0.02
"""The least time between the starts of two rounds of fsyncs: fewer, larger rounds
cost the filesystem fewer journal commits (which stall the writes going on)."""


class Lane:
    """One background thread running jobs in order; after an error (its own or the
    watched lane's), later jobs are void."""

    def __init__(self, name: str, watch: Lane | None = None) -> None:
        self.name = name
        self.watch = watch
        self.queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def idle(self) -> bool:
        """No job waiting or running (checked by the thread that submits)."""
        return self.thread is None or self.queue.unfinished_tasks == 0

    def waiting(self) -> bool:
        """Whether a job waits behind the one running (the stop mark aside)."""
        with self.queue.mutex:  # queue.Queue's own lock, over its deque
            return any(job is not None for job in self.queue.queue)

    def submit(self, job: Callable[[], None]) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._drain, name=self.name, daemon=True)
            self.thread.start()
        self.queue.put(job)

    def _drain(self) -> None:
        while True:
            job = self.queue.get()
            try:
                if job is None:
                    return
                failed = self.error or (self.watch.error if self.watch else None)
                if failed is None:
                    job()
            except BaseException as exc:
                self.error = exc
            finally:
                self.queue.task_done()

    def join(self) -> None:
        if self.thread is not None:
            self.queue.join()

    def stop(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None


class Syncer:
    """fsyncs handed-over files in rounds on a background thread (see the module
    docstring); ``durable`` is the highest checkpoint seq known durable.

    ``sync`` makes one path durable; ``last`` names a file synced after each
    round's others (the run's journal, whose lines name the checkpoints). With
    ``sync_all``, a round is one call of it instead, ``last`` included.
    """

    def __init__(self, sync: Callable[[str], None], *, last: str | None = None,
                 sync_all: Callable[[list[str]], None] | None = None,
                 name: str = "runner-checkpoint-sync") -> None:
        self._sync_one = sync
        self._sync_all = sync_all
        self.last = last
        self.name = name
        self.durable = 0
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._pending: dict[str, None] = {}  # ordered, no duplicates
        self._pending_seq = 0
        self._handed = 0  # rounds of work handed over, and done
        self._done = 0
        self._stopping = False
        self._waiting = 0  # barriers waiting
        self._idle = False  # the thread waits for work
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None

    def add(self, paths: list[str], seq: int) -> None:
        """``paths`` (written, not yet fsynced) make checkpoint ``seq`` durable once synced
        (none: a checkpoint whose journal line is all of it, made durable with ``last``)."""
        if not paths and self.last is not None:
            paths = [self.last]
        with self._cond:
            self._pending.update(dict.fromkeys(paths))
            self._pending_seq = max(self._pending_seq, seq)
            self._handed += 1
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._loop, name=self.name,
                                                daemon=True)
                self._thread.start()
            elif self._idle:  # not while it waits out the gap: no wake-up per commit
                self._cond.notify_all()

    def barrier(self) -> None:
        """Wait until everything handed over so far is durable (or failed: see ``error``)."""
        with self._cond:
            target = self._handed
            self._waiting += 1
            self._cond.notify_all()
            try:
                while self._done < target and self._thread is not None:
                    self._cond.wait()
            finally:
                self._waiting -= 1

    def stop(self) -> None:
        """Sync what is pending, then end the thread (it starts again on :meth:`add`)."""
        with self._cond:
            thread, self._stopping = self._thread, True
            self._cond.notify_all()
        if thread is not None:
            thread.join()
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _loop(self) -> None:
        started = 0.0
        while True:
            with self._cond:
                while not self._stopping and self._waiting == 0:  # they cut the gap short
                    wait = started + ROUND_GAP_S - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                self._idle = True
                while not self._pending and not self._stopping:
                    self._cond.wait()
                self._idle = False
                if not self._pending:  # stopping, nothing left
                    self._thread = None
                    self._cond.notify_all()
                    return
                batch, self._pending = list(self._pending), {}
                seq, handed = self._pending_seq, self._handed
            started = time.monotonic()
            try:
                if self.error is None:
                    self._round(batch)
            except BaseException as exc:
                self.error = exc
            with self._cond:
                if self.error is None:
                    self.durable = max(self.durable, seq)
                self._done = handed
                self._cond.notify_all()

    def _round(self, paths: list[str]) -> None:
        files = [p for p in paths if p != self.last]  # the journal: synced last
        if self._sync_all is not None:
            self._sync_all([*files, self.last] if self.last is not None else files)
            return
        if len(files) == 1:
            self._sync_one(files[0])
        elif files:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix=self.name)
            for _ in self._pool.map(self._sync_one, files):
                pass
        if self.last is not None:
            self._sync_one(self.last)
