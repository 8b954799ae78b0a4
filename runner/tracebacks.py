"""Tracebacks in the user's terms: their code first, the runner's own frames left out.

A stage that fails deep inside pandas raises in ``pandas/core/indexes/base.py``;
the frame a researcher needs is the last one in *their* file. :func:`user_trace`
splits a traceback where the exception was raised (a worker process, a Ray node)
into text that travels with the failure: the user's last frame (``where``) and a
short traceback of their frames, with the runner's frames dropped and library
frames folded into one line. ``RUNNER_DEBUG=1`` is for the whole traceback.

A frame is the runner's when its file is in this package, outside the shipped
stages; a library's when it is in the standard library, an installed package or
frozen; every other frame is the user's, and so is every frame in the file of
the stage that ran (an installed package of stages counts as the user's code).
"""

from __future__ import annotations

import inspect
import os
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath
from typing import Any, Literal

__all__ = ["UserTrace", "code_location", "user_trace"]

MAX_FRAMES = 8
"""User frames shown at most (the innermost ones); a deep recursion says how many more."""

DEBUG_HINT = "RUNNER_DEBUG=1 shows every frame"

Kind = Literal["user", "runner", "library"]


@dataclass(frozen=True)
class UserTrace:
    """Where in the user's code an exception was raised, and their short traceback."""

    where: str
    """``my_stages.py line 11, in bad`` (the last frame in the user's code), or ""."""
    text: str
    """The user's frames (most recent call last) and the exception, for a terminal."""
    frames: int = 0
    """How many of the user's frames ``text`` shows (0: only the exception)."""


@cache
def _runner_dirs() -> tuple[str, str]:
    package = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120
    return package + os.sep, os.path.join(package, "stages") + os.sep  # noqa: PTH118


@cache
def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    found = {paths.get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    found |= {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    return tuple(os.path.abspath(p) + os.sep for p in found if p)  # noqa: PTH100


def frame_kind(filename: str, *, own: Iterable[str] = ()) -> Kind:
    """Whose code a frame's file is: the user's, the runner's or a library's."""
    if filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
        return "library"
    path = os.path.abspath(filename)  # noqa: PTH100
    if path in own:
        return "user"
    package, stages = _runner_dirs()
    if path.startswith(package):
        return "user" if path.startswith(stages) else "runner"
    if path.startswith(_library_dirs()):
        return "library"
    return "user"


def shown_path(filename: str) -> str:
    """A file as the user knows it: relative to the current folder when inside it, a
    library's file from its package (``pandas/core/frame.py``)."""
    if filename.startswith("<"):
        return filename
    path = os.path.abspath(filename)  # noqa: PTH100
    roots = [r for r in _library_dirs() if path.startswith(r)]
    if roots:
        inside = PurePath(path[len(max(roots, key=len)):])
        if inside.parts and inside.parts[0] in ("site-packages", "dist-packages"):
            inside = PurePath(*inside.parts[1:])
        return str(inside)
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive
        return filename
    return filename if relative.startswith(os.pardir) else relative


def _package_of(filename: str) -> str:
    """``pandas`` for ``.../site-packages/pandas/core/frame.py``, ``os`` for ``<frozen os>``."""
    if filename.startswith("<frozen "):
        return filename.removeprefix("<frozen ").removesuffix(">").partition(".")[0]
    return PurePath(shown_path(filename)).parts[0].removesuffix(".py")


def code_location(fn: Callable[..., Any] | None) -> tuple[str, int, str] | None:
    """``(file, first line, qualified name)`` of a function, or None when unknown."""
    if fn is None:
        return None
    try:
        target = inspect.unwrap(fn)
        code = getattr(target, "__code__", None)
        if code is None:  # a callable object: its __call__
            code = getattr(getattr(target, "__call__", None), "__code__", None)  # noqa: B004
        if code is None:
            return None
        return code.co_filename, code.co_firstlineno, getattr(target, "__qualname__", "?")
    except Exception:  # never let the error report fail
        return None


def _where(filename: str, lineno: int | None, name: str | None) -> str:
    line = f" line {lineno}" if lineno else ""
    return f"{shown_path(filename)}{line}" + (f", in {name}" if name else "")


def _frame_lines(frame: traceback.FrameSummary) -> list[str]:
    lines = [f'  File "{shown_path(frame.filename)}", line {frame.lineno}, in {frame.name}']
    if frame.line:
        lines.append(f"    {frame.line.strip()}")
    return lines


def _folded(frames: list[traceback.FrameSummary], *, raised: bool) -> str:
    packages = ", ".join(dict.fromkeys(_package_of(f.filename) for f in frames))
    noun = "frame" if len(frames) == 1 else "frames"
    line = f"  ... {len(frames)} {noun} in {packages}"
    if raised:
        last = frames[-1]
        line += f" (raised at {_where(last.filename, last.lineno, last.name)})"
    return line


def user_trace(exc: BaseException, *, code: Callable[..., Any] | None = None) -> UserTrace:
    """The user's side of ``exc``'s traceback; ``code`` is the stage that ran (its
    file is the user's code, and its definition is ``where`` when no frame is)."""
    try:
        trace = _user_trace(exc, code)
    except Exception:  # a report that fails must not replace the user's error
        trace = UserTrace("", "")
    if os.environ.get("RUNNER_DEBUG"):
        full = "".join(traceback.format_exception(exc)).rstrip("\n")
        return UserTrace(trace.where, full, frames=len(traceback.extract_tb(exc.__traceback__)))
    return trace


def _user_trace(exc: BaseException, code: Callable[..., Any] | None) -> UserTrace:
    located = code_location(code)
    own = {os.path.abspath(located[0])} if located else set()  # noqa: PTH100
    frames = list(traceback.extract_tb(exc.__traceback__))
    kinds = [frame_kind(f.filename, own=own) for f in frames]
    users = [i for i, kind in enumerate(kinds) if kind == "user"]
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = _where(exc.filename, exc.lineno, None)
    elif users:
        last = frames[users[-1]]
        where = _where(last.filename, last.lineno, last.name)
    elif located is not None:
        where = _where(located[0], located[1], located[2]) + " (the stage)"
    lines: list[str] = []
    if users:
        lines.append(f"your code, most recent call last ({DEBUG_HINT}):")
        kept = users[-MAX_FRAMES:]
        if len(users) > len(kept):
            lines.append(f"  ... {len(users) - len(kept)} earlier frames of yours")
        start = kept[0]
        pending: list[traceback.FrameSummary] = []
        for i in range(start, len(frames)):
            if kinds[i] == "user":
                if pending:
                    lines.append(_folded(pending, raised=False))
                    pending = []
                lines += _frame_lines(frames[i])
            elif kinds[i] == "library":
                pending.append(frames[i])
        if pending:
            lines.append(_folded(pending, raised=True))
    lines += [line.rstrip("\n") for line in
              "".join(traceback.format_exception_only(exc)).rstrip("\n").splitlines()]
    return UserTrace(where, "\n".join(lines), frames=len(users))
