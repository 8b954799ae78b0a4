"""No garbage collection while the command starts.

Starting a command is importing (pandas, pyarrow, pydantic, the engine) and building
the plan: some 170,000 objects allocated and almost none freed, so the collector's
runs then (about 240 of them for ``runner run``) find nothing to collect and cost
about a tenth of the imports. :func:`pause` turns it off as the command starts;
:func:`resume` turns it back on, after freezing what was loaded (:func:`gc.freeze`:
no later full collection walks it again). The root group resumes it before any
command runs, except a command in :data:`ENDS_OWN_START_UP`, which resumes it itself
once its set-up is done (``run``: before the first step). A process forked while it
is paused turns it back on for itself (the processes executor's forkserver).
Stdlib only: imported at CLI entry.
"""

from __future__ import annotations

import gc

__all__ = ["ENDS_OWN_START_UP", "pause", "paused", "resume"]

ENDS_OWN_START_UP = frozenset({"run"})
"""Commands that call :func:`resume` themselves, once their set-up is done."""

_state = {"paused": False}


def pause() -> None:
    """Turn the collector off for the start-up (a no-op when it is off already)."""
    if gc.isenabled():
        gc.disable()
        _state["paused"] = True


def paused() -> bool:
    """Whether :func:`pause` turned the collector off and it is still off."""
    return _state["paused"]


def resume(*, freeze: bool = True) -> None:
    """Turn the collector back on if :func:`pause` turned it off, first freezing what
    is loaded (``freeze``). Safe to call more than once."""
    if not _state["paused"]:
        return
    _state["paused"] = False
    if freeze:
        gc.freeze()
    gc.enable()
