"""What ``runner run`` shows while long steps run, as a user sees it.

On a terminal (a real one: tmux, reading its screen) a line per running stage and per
running branch, with elapsed seconds that tick between two looks, on the threads and
processes executors; the ✓ lines stay once the run is over, the board goes. Piped
(CI, ``> file``): plain lines only, no control codes, a "started" line and heartbeats
every ``RUNNER_PROGRESS_EVERY`` seconds. ``--quiet`` and ``--log-format json``: none.
No assertion depends on how long anything took: only on what the screen says.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from runner.errors import UsageError
from runner.progress import (
    DEFAULT_EVERY,
    LiveProgress,
    PlainProgress,
    progress_every,
    progress_hook,
)
from tests.unit.cli.test_user_errors import ROOT, cli

STAGES = '''\
import os
import time


def quick(ctx):
    return ctx


def slow(ctx):
    print("a stage speaks")
    if os.environ.get("STTY_TO"):  # the terminal's settings while the board is drawn
        os.system(f"stty -a > {os.environ['STTY_TO']}")
    time.sleep(float(os.environ.get("SLEEP", "4")))
    return ctx
'''

MANIFEST = {
    "pipelines": {"fan": {"steps": ["quick", "slow", [["slow", "quick"], "slow"], "quick"]}},
    "stages": {"quick": "my_stages:quick", "slow": "my_stages:slow"},
}
STEPS = ["fan[0]", "fan[1]", "fan[2][0][0]", "fan[2][0][1]", "fan[2][1]", "fan[2]:merge",
         "fan[3]"]
SAFETY = 180.0  # seconds: a safety timeout, never a figure under test


@pytest.fixture
def project(tmp_path):
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def _done(text: str, path: str) -> bool:
    return re.search(rf"✓ \S+\s+{re.escape(path)}\s+\d+\.\d{{3}}s", text) is not None


# ---------------------------------------------------------------- on a terminal


class Screen:
    """A tmux server of the test's own (its own socket) running one command."""

    def __init__(self, tmp_path: Path, command: str, env: dict[str, str], *,
                 width: int = 160) -> None:
        self.socket = str(tmp_path / "tmux.sock")
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        script = f"cd {shlex.quote(str(tmp_path))} && env {exports} {command}; " \
                 "echo EXIT=$?; sleep 600"
        self.tmux("new-session", "-d", "-x", str(width), "-y", "50", script)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True,
                              text=True, check=True, timeout=30).stdout

    def read(self) -> str:
        return self.tmux("capture-pane", "-p", "-S", "-200")

    def wait_for(self, found: re.Pattern[str], count: int = 1, *, or_exit: bool = True) -> str:
        """The screen once it shows ``found`` ``count`` times (or the command ended)."""
        deadline = time.monotonic() + SAFETY
        while time.monotonic() < deadline:
            text = self.read()
            if len(found.findall(text)) >= count or (or_exit and "EXIT=" in text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"never shown: {found.pattern}\n{self.read()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True,
                       check=False, timeout=30)


def _elapsed(text: str, path: str) -> float | None:
    """The ticking seconds on the board's line for ``path`` (not a ✓ line)."""
    match = re.search(rf"^\s+\S (?:branch )?[\w >-]+?\s+{re.escape(path)}\s+(\d+\.\d)s$",
                      text, re.M)
    return float(match.group(1)) if match else None


def _ticks(screen: Screen, paths: list[str]) -> dict[str, tuple[float | None, float | None]]:
    """Each path's elapsed seconds at a first look, and at a later one where every path
    has moved on (or the last look before one of them left the board)."""
    pattern = re.compile("|".join(rf"{re.escape(p)}\s+\d+\.\ds$" for p in paths), re.M)
    first = screen.wait_for(pattern, count=len(paths))
    before = {p: _elapsed(first, p) for p in paths}
    after = dict(before)
    deadline = time.monotonic() + SAFETY
    while time.monotonic() < deadline:
        time.sleep(0.2)
        text = screen.read()
        for path in paths:  # a line a worker's print covered is read at the next look
            after[path] = _elapsed(text, path) or after[path]
        if all(a > b for a, b in zip(after.values(), before.values(), strict=True)):  # type: ignore[operator]
            break
        if "EXIT=" in text or any(_done(text, p) for p in paths):
            break  # a step ended before every line was seen to move
    return {p: (before[p], after[p]) for p in paths}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_a_terminal_shows_each_running_stage_and_branch_ticking(project, executor):
    env = {"PYTHONPATH": str(ROOT), "SLEEP": "4", "TERM": "xterm-256color",
           "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           **{k: v for k, v in os.environ.items() if k.startswith("RUNNER_")}}
    command = shlex.join([sys.executable, "-m", "runner.cli", "run", "fan", "-m",
                          "manifest.json", "-e", executor])
    screen = Screen(project, command, env)
    try:
        main = _ticks(screen, ["fan[1]"])["fan[1]"]
        # a branch line each; on threads, the step running inside the two-step branch too
        inside = ["fan[2][0][0]"] if executor == "threads" else []
        group = _ticks(screen, ["fan[2][0]", "fan[2][1]", *inside])
        end = screen.wait_for(re.compile(r"^EXIT=\d+", re.M))
    finally:
        screen.close()
    for path, (first, second) in {"fan[1]": main, **group}.items():
        assert first is not None and second is not None and second > first, (path, end)
    assert "EXIT=0" in end, end
    assert all(_done(end, path) for path in STEPS), end
    assert "a stage speaks" in end  # a stage's print lands above the board, not through it
    assert not re.search(r"\d+\.\ds$", end, re.M), end  # the board is gone


# ---------------------------------------------------------------- not a terminal


def test_piped_output_is_plain_lines_with_heartbeats(project):
    # a heartbeat every 0.5 s of a 2.5 s step: several chances for one, on a busy machine
    proc = cli("run", "fan", "-m", "manifest.json", "-e", "threads", cwd=project,
               env={"SLEEP": "2.5", "RUNNER_PROGRESS_EVERY": "0.5"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    lines = proc.stderr.splitlines()
    for path in ("fan[1]", "fan[2][0]", "fan[2][0][0]", "fan[2][1]"):
        started = [i for i, line in enumerate(lines)
                   if re.search(rf"… .+ {re.escape(path)}\s+started \(\d+s\)$", line)]
        assert len(started) == 1, (path, proc.stderr)
    assert re.search(r"… slow\s+fan\[1\]\s+still running \(\d+s\)$", proc.stderr, re.M), \
        proc.stderr
    assert all(_done(proc.stderr, path) for path in STEPS), proc.stderr


@pytest.mark.parametrize("args", [["run", "fan", "-m", "manifest.json", "-q"],
                                  ["--log-format", "json", "run", "fan", "-m", "manifest.json"]])
def test_quiet_and_json_logs_show_no_progress(project, args):
    proc = cli(*args, cwd=project, env={"SLEEP": "1.2", "RUNNER_PROGRESS_EVERY": "0.5"})
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stderr and "✓" not in proc.stderr
    assert not re.search(r"started \(\d+s\)|still running", proc.stderr), proc.stderr


def test_a_bad_heartbeat_interval_is_a_usage_error(project):
    proc = cli("run", "fan", "-m", "manifest.json", cwd=project,
               env={"RUNNER_PROGRESS_EVERY": "often"})
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "error: RUNNER_PROGRESS_EVERY='often': expected seconds, a number > 0 (default 30)"]


@pytest.mark.parametrize(("raw", "want"), [("", DEFAULT_EVERY), (" 2.5 ", 2.5), ("60", 60.0)])
def test_progress_every(raw, want):
    assert progress_every({"RUNNER_PROGRESS_EVERY": raw}) == want


@pytest.mark.parametrize("raw", ["0", "-1", "nan", "inf", "x"])
def test_progress_every_refuses_bad_values(raw):
    with pytest.raises(UsageError, match="RUNNER_PROGRESS_EVERY"):
        progress_every({"RUNNER_PROGRESS_EVERY": raw})


def test_a_dumb_terminal_gets_plain_lines(monkeypatch):
    """Under TERM=dumb (an editor's shell) the board cannot redraw: plain lines there."""
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(progress_hook(Console(force_terminal=True), environ={}), PlainProgress)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(progress_hook(Console(force_terminal=True), environ={}), LiveProgress)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_ctrl_c_on_a_terminal_leaves_no_board_behind(project):
    """The terminal echoes Ctrl-C as ^C where the cursor is, inside the board, which
    then leaves a torn copy of itself behind: echoing control keys is off while the
    board is drawn, and on again after."""
    env = {"PYTHONPATH": str(ROOT), "SLEEP": "3", "TERM": "xterm-256color",
           "PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
           "STTY_TO": str(project / "stty.txt"),
           **{k: v for k, v in os.environ.items() if k.startswith("RUNNER_")},
           "RUNNER_TERM_GRACE": "60"}  # the stage in flight finishes: the board is redrawn
    command = shlex.join([sys.executable, "-m", "runner.cli", "run", "fan", "-m",
                          "manifest.json", "-e", "threads"]) + \
        "; echo EXIT=$?; stty -a | tr ' ;' '\\n\\n' | grep -x -- '-*echoctl'"
    screen = Screen(project, command, env, width=300)
    try:
        screen.wait_for(re.compile(r"fan\[1\]\s+\d+\.\ds$", re.M))
        screen.tmux("send-keys", "C-c")
        end = screen.wait_for(re.compile(r"^-?echoctl$", re.M), or_exit=False)
    finally:
        screen.close()
    assert "EXIT=130" in end, end
    assert "interrupted: run " in end and "--resume --run-id" in end, end
    assert not re.search(r"\d+\.\ds$", end, re.M), end  # no board line left
    assert "^C" not in end, end
    during = (project / "stty.txt").read_text().replace(";", " ").split()
    assert "-echoctl" in during  # while the board was drawn
    assert re.search(r"^echoctl$", end, re.M), end  # the terminal's setting is back
