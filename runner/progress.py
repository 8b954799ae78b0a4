"""What ``runner run`` shows while a run goes, on stderr.

On a terminal, a live board under the finished steps: one line per running stage
and per running branch of a parallel group, with its elapsed time ticking (rich's
``Live``); finished steps print above it as ✓/✗ lines with their duration, and a
step restored from the step cache (its stage not called) as a ``↺ ... cached`` line.
A run that used the step cache ends with how many steps ran and how many were cached.

Anywhere else (CI, a pipe, ``> file``, a log collector) plain lines only, no
control codes: the same ✓/✗ lines, a "started" line once a step or branch has run
for a few seconds, and a heartbeat every ``RUNNER_PROGRESS_EVERY`` seconds (30)
while it still runs, so a long step never looks like a hang.

    hook = progress_hook(console)      # a RunHook: LiveProgress or PlainProgress

Branches that run in other processes (``processes``, Ray) are shown from the moment
the driver hands them over (:meth:`RunHook.on_branch_queued`); their steps are
printed when the branch returns.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.file_proxy import FileProxy
from rich.live import Live
from rich.markup import escape
from rich.padding import Padding
from rich.spinner import Spinner

from runner.orchestration.hooks import RunHook
from runner.retry import env_seconds
from runner.terminal import is_stderr, no_echoed_controls, stdout_shares
from runner.words import plural

if TYPE_CHECKING:
    from runner.orchestration.plan import Branch, ParallelGroup, Plan, Step
    from runner.orchestration.records import RunInfo, RunResult, StepRecord

__all__ = ["DEFAULT_EVERY", "EVERY_ENV", "LiveProgress", "PlainProgress", "progress_every",
           "progress_hook"]

EVERY_ENV = "RUNNER_PROGRESS_EVERY"
DEFAULT_EVERY = 30.0
"""Seconds between two heartbeat lines of a step still running (not on a terminal)."""
STARTED_AFTER = 5.0
"""Seconds a step runs before its "started" line (a quick step prints only its ✓)."""


def progress_every(environ: Mapping[str, str] = os.environ) -> float:
    """``RUNNER_PROGRESS_EVERY`` in seconds (default 30); a bad value is a usage error."""
    return env_seconds(EVERY_ENV, DEFAULT_EVERY, zero=False, environ=environ)


def progress_hook(console: Console, *, environ: Mapping[str, str] = os.environ) -> RunHook:
    """The live board on a terminal that can redraw lines (not ``TERM=dumb``), plain
    lines anywhere else."""
    if console.is_interactive:
        return LiveProgress(console)
    return PlainProgress(console, every=progress_every(environ))


_MARKS = {"✓": "green", "✗": "red", "↺": "cyan", "…": "dim"}
"""Each mark's style on a terminal."""
NAME_WIDTH = (28, 44)
"""Least and most characters of the name column (a longer name pushes the line)."""
PATH_WIDTH = (32, 44)


def _widths(plan: Plan) -> tuple[int, int]:
    """The name and path columns that fit every step and branch of ``plan``."""
    names, paths = [NAME_WIDTH[0]], [PATH_WIDTH[0]]
    for step in plan.walk():
        names.append(len(step.name))
        paths.append(len(step.path))
        branches = getattr(step, "branches", ())  # a parallel group: its merge, its branches
        if branches:
            paths.append(len(f"{step.path}:merge"))
            names += [len(f"branch {branch.label}") for branch in branches]
    return min(max(names), NAME_WIDTH[1]), min(max(paths), PATH_WIDTH[1])


@dataclass
class Running:
    """A stage or branch in flight, as a display shows it."""

    name: str
    path: str
    started: float = field(default_factory=time.monotonic)
    noticed: float = 0.0
    """When the plain display last printed a line about it (0: never)."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _Progress(RunHook):
    """What both displays share: the header, the ✓/✗ lines, what is running now."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lock = threading.Lock()
        """Guards ``running`` only, never held while printing: the live board reads
        ``running`` while its redraw holds the screen's locks."""
        self.running: dict[str, Running] = {}
        self.widths = (NAME_WIDTH[0], PATH_WIDTH[0])
        self.ran = 0
        self.cached = 0
        """Steps restored from the step cache (their stage not called)."""
        self.cache_used = False
        """A step had a step-cache key: the run used the cache (the summary says so)."""

    def columns(self, name: str, path: str) -> str:
        """A step's name and path, in columns as wide as the plan's longest (within
        bounds), as markup."""
        return f"{escape(name.ljust(self.widths[0]))} [dim]{escape(path.ljust(self.widths[1]))}[/]"

    def line(self, mark: str, name: str, path: str, tail: str) -> None:
        """One line about a step or branch: ``  ✓ name path tail``."""
        self.console.print(f"  [{_MARKS[mark]}]{mark}[/] {self.columns(name, path)} {tail}")

    def header(self, run: RunInfo) -> None:
        self.console.print(f"[bold]{escape(run.pipeline)}[/] run [cyan]{run.run_id}[/] "
                           f"executor={run.executor}")

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        self.widths = _widths(plan)
        self.header(run)

    def on_step_start(self, run: RunInfo, step: Step) -> None:
        with self.lock:
            self.running[step.path] = Running(step.name, step.path)

    def on_step_end(self, run: RunInfo, record: StepRecord, context: Any) -> None:
        status = record.status
        with self.lock:
            self.running.pop(record.path, None)
            if status == "cached":
                self.cached += 1
            else:
                self.ran += 1
            if record.cache_key is not None:
                self.cache_used = True
        if status == "cached":
            self.line("↺", record.name, record.path, f"{record.duration:8.3f}s cached")
            return
        self.line("✓" if status == "succeeded" else "✗", record.name, record.path,
                  f"{record.duration:8.3f}s")

    def summary(self) -> str | None:
        """``12 steps: 9 ran, 3 cached``, once the run used the step cache (else None)."""
        with self.lock:
            if not self.cache_used:
                return None
            ran, cached = self.ran, self.cached
        return f"{plural(ran + cached, 'step')}: {ran} ran, {cached} cached"

    def on_branch_start(self, run: RunInfo, branch: Branch) -> None:
        self._branch_in_flight(branch)

    def on_branch_queued(self, run: RunInfo, branch: Branch) -> None:
        self._branch_in_flight(branch)

    def _branch_in_flight(self, branch: Branch) -> None:
        with self.lock:
            self.running[branch.path] = Running(f"branch {branch.label}", branch.path)

    def on_branch_end(self, run: RunInfo, branch: Branch, context: Any | None) -> None:
        with self.lock:
            self.running.pop(branch.path, None)

    def on_group_end(self, run: RunInfo, group: ParallelGroup, context: Any | None) -> None:
        with self.lock:  # branches dropped before they started (a failure, a signal)
            for branch in group.branches:
                self.running.pop(branch.path, None)

    def in_flight(self) -> list[Running]:
        with self.lock:
            return sorted(self.running.values(), key=lambda r: r.started)


class PlainProgress(_Progress):
    """Lines only, for logs and CI: ✓/✗ per step, "started" and heartbeat lines for
    steps and branches that run long (checked by a daemon thread every ~0.5 s)."""

    def __init__(self, console: Console, *, every: float = DEFAULT_EVERY) -> None:
        super().__init__(console)
        self.every = every
        self.started_after = min(STARTED_AFTER, every)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._writing = threading.Lock()

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        super().on_run_start(run, plan, context)
        self._stop.clear()
        self._ticker = threading.Thread(target=self._tick, name="runner-progress",
                                        daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        pause = min(0.5, self.started_after / 2)
        while not self._stop.wait(pause):
            for item, what in self._due(time.monotonic()):
                self.line("…", item.name, item.path, what)

    def line(self, mark: str, name: str, path: str, tail: str) -> None:
        """Plain text, straight to the stream: no markup to parse, no styles to drop (rich
        takes about a millisecond a line, paid per step)."""
        self._write(f"  {mark} {name.ljust(self.widths[0])} {path.ljust(self.widths[1])} "
                    f"{tail}\n")

    def header(self, run: RunInfo) -> None:
        self._write(f"{run.pipeline} run {run.run_id} executor={run.executor}\n")

    def _write(self, text: str) -> None:
        with self._writing:
            stream = self.console.file
            stream.write(text)
            stream.flush()

    def _due(self, now: float) -> Iterator[tuple[Running, str]]:
        """What to say now: a step's first notice, then one every ``every`` s."""
        with self.lock:
            items = list(self.running.values())
        for item in items:
            elapsed = now - item.started
            if not item.noticed and elapsed >= self.started_after:
                item.noticed = now
                what = "started"
            elif item.noticed and now - item.noticed >= self.every:
                item.noticed = now
                what = "still running"
            else:
                continue
            yield item, f"{what} ({elapsed:.0f}s)"

    def on_run_end(self, run: RunInfo, result: RunResult | None, error: BaseException | None
                   ) -> None:
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=2)
        summary = self.summary()
        if summary is not None:
            self._write(f"  {summary}\n")

    def on_run_abort(self, run: RunInfo, error: BaseException) -> None:
        self._stop.set()


class LiveProgress(_Progress):
    """The terminal's board: a line per running stage and branch, elapsed ticking.

    Everything written to the terminal while the board is drawn goes through one lock
    (``screen``): rich positions a print above the board from the board's last shape,
    so two prints at once (two branch threads ending together, a stage's print, a log
    line, a worker's output) would overwrite each other's line. The board is redrawn
    by a thread of ours under the same lock, not by rich's auto-refresh.
    """

    def __init__(self, console: Console, *, refresh: float = 0.125) -> None:
        super().__init__(console)
        self.refresh = refresh
        self.screen = threading.RLock()
        self.live: Live | None = None
        self._spinners: dict[str, Spinner] = {}
        self._streams: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._saved: tuple[Any, Any] | None = None
        self._stop = threading.Event()
        self._echo: Callable[[], None] | None = None

    def line(self, mark: str, name: str, path: str, tail: str) -> None:
        with self.screen:
            super().line(mark, name, path, tail)

    def header(self, run: RunInfo) -> None:
        with self.screen:
            super().header(run)

    def on_run_start(self, run: RunInfo, plan: Plan, context: Any) -> None:
        super().on_run_start(run, plan, context)
        with self.screen:
            self.live = Live(_Board(self), console=self.console, auto_refresh=False,
                             transient=True, redirect_stdout=False, redirect_stderr=False)
            self.live.start(refresh=True)
            self._write_above()
            self._echo = no_echoed_controls()
        self._stop.clear()
        threading.Thread(target=self._tick, name="runner-progress", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(self.refresh):
            with self.screen:
                if self.live is not None:
                    self.live.refresh()

    def _write_above(self) -> None:
        """Python's stderr (and stdout, when it is this terminal) and the log lines
        written there print above the board, under the screen lock."""
        self._saved = (sys.stdout, sys.stderr)
        if stdout_shares(interactive=self.console.is_interactive):
            sys.stdout = _Above(self.console, sys.stdout, self.screen)
        sys.stderr = _Above(self.console, sys.stderr, self.screen)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and is_stderr(handler.stream):
                self._streams.append((handler, handler.setStream(sys.stderr)))

    def spinner(self, item: Running) -> Spinner:
        """The line of ``item``, its elapsed time as of now."""
        text = f"{self.columns(item.name, item.path)} [yellow]{item.elapsed():6.1f}s[/]"
        spinner = self._spinners.get(item.path)
        if spinner is None:
            spinner = self._spinners[item.path] = Spinner("dots", text)
        else:
            spinner.update(text=text)
        return spinner

    def on_run_end(self, run: RunInfo, result: RunResult | None, error: BaseException | None
                   ) -> None:
        self._stop_live()
        summary = self.summary()
        if summary is not None:
            self.console.print(f"  [cyan]{escape(summary)}[/]")

    def on_run_abort(self, run: RunInfo, error: BaseException) -> None:
        self._stop_live()

    def _stop_live(self) -> None:
        self._stop.set()
        with self.screen:
            live, self.live = self.live, None
            if live is None:
                return
            for handler, stream in self._streams:
                handler.setStream(stream)
            self._streams.clear()
            if self._saved is not None:
                sys.stdout, sys.stderr = self._saved
                self._saved = None
            if self._echo is not None:
                self._echo()
                self._echo = None
            with self.lock:
                self.running.clear()
                self._spinners.clear()
            live.stop()


class _Above(FileProxy):
    """A stream that prints above the live board, one write at a time."""

    def __init__(self, console: Console, file: Any, screen: threading.RLock) -> None:
        super().__init__(console, file)
        self._screen = screen

    def write(self, text: str) -> int:
        with self._screen:
            return super().write(text)

    def flush(self) -> None:
        with self._screen:
            super().flush()


class _Board:
    """Rendered at every refresh of the live display: what runs now, and for how long."""

    def __init__(self, progress: LiveProgress) -> None:
        self.progress = progress

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for item in self.progress.in_flight():
            yield Padding(self.progress.spinner(item), (0, 0, 0, 2))  # under the ✓ marks
