"""Stop a run on SIGTERM and SIGINT: the handler a front door installs around a run.

    with StopOnSignals(grace=term_grace(), on_abort=exit_now) as stop:
        runner = sdk.runner(...)        # a signal from here on is not lost
        stop.attach(runner)
        result = runner.run()           # raises RunInterruptedError once interrupted

The first signal calls :meth:`DAGRunner.interrupt`: no new step or branch starts, the
steps in flight may finish within ``grace`` seconds, and ``run()`` records the
interruption and raises. A second signal, or the grace period running out, calls
:meth:`DAGRunner.abort` (run.json records ``interrupted`` with what is committed, the
lock is released) and then ``on_abort(error, signum)``, which a command line uses to
exit at once. Without ``on_abort`` the signal then goes on to the handler that was
installed before: a library leaves the application's handlers in charge.

Nothing runs inside a Python signal handler (taking a lock the interrupted main
thread holds would deadlock): the C-level handler writes the signal's number to a
pipe (``signal.set_wakeup_fd``) and a thread acts on it, even while the main thread
is inside a long call of a stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any

from runner.errors import RunInterruptedError, UsageError
from runner.orchestration.runner import DAGRunner
from runner.retry import env_seconds

__all__ = ["DEFAULT_GRACE", "GRACE_ENV", "StopOnSignals", "term_grace"]

GRACE_ENV = "RUNNER_TERM_GRACE"
DEFAULT_GRACE = 20.0
"""Seconds the steps in flight get after the first signal: well under the 30 s a
Kubernetes pod gets between SIGTERM and SIGKILL (terminationGracePeriodSeconds)."""
ABORT_TIMEOUT = 5.0
"""Seconds recording an abort may take (store writes, the lock) before exiting anyway."""

_STOP = 0  # not a signal number: tells the watcher thread to end

log = logging.getLogger("runner")

OnAbort = Callable[[RunInterruptedError | None, int], object]


def term_grace(environ: Mapping[str, str] = os.environ) -> float:
    """``RUNNER_TERM_GRACE`` in seconds (default 20); a bad value is a usage error."""
    return env_seconds(GRACE_ENV, DEFAULT_GRACE, environ=environ)


class StopOnSignals:
    """Turns SIGTERM and SIGINT into :meth:`DAGRunner.interrupt`, then ``abort``.

    Enter it on the main thread (Python's rule for signal handlers); leaving it
    restores the handlers and the wakeup fd it found.
    """

    def __init__(self, *, grace: float = DEFAULT_GRACE, on_abort: OnAbort | None = None,
                 signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        self.grace = grace
        self.on_abort = on_abort
        self.signals = tuple(int(s) for s in signals)
        self._lock = threading.Lock()
        self._runner: DAGRunner | None = None
        self._signum: int | None = None
        self._delegate = False
        self._previous: dict[int, Any] = {}
        self._old_fd = -1
        self._pipe: tuple[int, int] | None = None
        self._watcher: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            raise UsageError("stopping a run on signals needs the main thread (Python "
                             "installs signal handlers there only)")
        read, write = os.pipe()
        os.set_blocking(write, False)
        self._pipe = (read, write)
        self._old_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        self._watcher = threading.Thread(target=self._watch, name="runner-signals",
                                         daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        signal.set_wakeup_fd(self._old_fd)
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        assert self._pipe is not None and self._watcher is not None
        read, write = self._pipe
        with contextlib.suppress(OSError):
            os.write(write, bytes([_STOP]))
        self._watcher.join(timeout=ABORT_TIMEOUT + 1)
        if not self._watcher.is_alive():  # else it is still aborting: leave it its pipe
            os.close(read)
            os.close(write)

    def attach(self, runner: DAGRunner) -> None:
        """The run to stop; a signal that came before it existed applies now."""
        with self._lock:
            self._runner = runner
            signum = self._signum
        if signum is not None:
            runner.interrupt(signum)

    # ------------------------------------------------------------ signals

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """The Python-level handler: the watcher thread does the work (through the
        wakeup fd); once the run is aborted, the signal goes to the previous handler."""
        if not self._delegate:
            return
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous in (signal.SIG_DFL, None):
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _watch(self) -> None:
        assert self._pipe is not None
        read = self._pipe[0]
        first: int | None = None
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([read], [], [], timeout)
            if not ready:
                assert first is not None
                log.error("the steps in flight did not finish within %gs (%s): stopping "
                          "at once", self.grace, GRACE_ENV)
                self._abort(first)
                return
            for signum in os.read(read, 512):
                if signum == _STOP:
                    return
                if signum not in self.signals:
                    self._forward(signum)
                elif first is None:
                    first, deadline = signum, time.monotonic() + self.grace
                    self._interrupt(signum)
                else:
                    log.error("%s received again: stopping at once",
                              signal.Signals(signum).name)
                    self._abort(first)
                    return

    def _forward(self, signum: int) -> None:
        """Another signal, for whoever had the wakeup fd before (asyncio, say)."""
        if self._old_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._old_fd, bytes([signum]))

    def _interrupt(self, signum: int) -> None:
        with self._lock:
            self._signum = signum
            runner = self._runner
        log.warning("%s received: no new step starts; the steps in flight may finish "
                    "within %gs (%s); signal again to stop at once",
                    signal.Signals(signum).name, self.grace, GRACE_ENV)
        if runner is not None:
            runner.interrupt(signum)

    def _abort(self, signum: int) -> None:
        with self._lock:
            runner = self._runner
        error: RunInterruptedError | None = None
        if runner is not None:
            found: list[RunInterruptedError | None] = []
            worker = threading.Thread(target=lambda: found.append(runner.abort()),
                                      name="runner-abort", daemon=True)
            worker.start()
            worker.join(ABORT_TIMEOUT)
            if found:
                error = found[0]
            else:
                log.error("recording the interruption of run %s took over %gs; exiting "
                          "without it", runner.run_id, ABORT_TIMEOUT)
        if self.on_abort is not None:
            self.on_abort(error, signum)
            return
        self._delegate = True
        os.kill(os.getpid(), signum)
