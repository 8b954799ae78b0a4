"""A group's context, pickled once, handed to every worker through shared memory.

Sent with each branch's call, the pickled context (57 MB on the benchmark
universe) was copied again by the pool's queue feeder thread for each branch
and pushed through the one pipe the workers read in turn: the second branch
started about 0.2 s after the first, the first 0.3 s after the dispatch, more
when the driver's other threads (the checkpoint writer) held the interpreter.
:func:`handed_off` writes it once into a shared memory segment; each call then
carries only the segment's name, and the workers map it and unpickle from it at
once, side by side. The driver creates the segment (Python's resource tracker
removes it if the driver dies) and removes it when the group's dispatch ends; a
worker only opens the file. Small contexts, and a machine without room in
``/dev/shm`` (a container's 64 MB by default), go through the pipe as before:
the bytes are written with ``os.write`` (a full ``/dev/shm`` is an error there,
not a SIGBUS later).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

__all__ = ["SHARED_FROM", "Handoff", "handed_off"]

SHM_DIR = Path("/dev/shm")
SHARED_FROM = 1 << 20
"""Pickled contexts smaller than this (bytes) go with each call: as fast, no segment."""


@dataclass(frozen=True)
class Handoff:
    """What each call carries: the pickled context itself, or the segment holding it."""

    data: bytes | None = None
    segment: str | None = None
    size: int = 0

    def load(self) -> Any:
        """The context, unpickled in this process."""
        if self.segment is None:
            assert self.data is not None
            return pickle.loads(self.data)  # from the driver that started this worker
        with (SHM_DIR / self.segment).open("rb") as file, \
                mmap.mmap(file.fileno(), self.size, access=mmap.ACCESS_READ) as view:
            return pickle.loads(view)  # written by this worker's driver


@contextlib.contextmanager
def handed_off(context: Any) -> Iterator[Handoff]:
    """Pickle ``context`` once; while the block runs, the handoff every call carries."""
    data = pickle.dumps(context, protocol=pickle.HIGHEST_PROTOCOL)
    segment = _segment(data)
    if segment is None:
        yield Handoff(data=data, size=len(data))
        return
    size = len(data)
    del data
    try:
        yield Handoff(segment=segment.name, size=size)
    finally:
        segment.close()
        with contextlib.suppress(FileNotFoundError):
            segment.unlink()


def _segment(data: bytes) -> shared_memory.SharedMemory | None:
    """A shared memory segment holding ``data``; None when it is small, or no segment
    with room for it can be had here (it goes with each call then)."""
    if len(data) < SHARED_FROM or not SHM_DIR.is_dir():
        return None
    try:
        segment = shared_memory.SharedMemory(create=True, size=len(data))
    except OSError:
        return None
    try:
        fd = os.open(SHM_DIR / segment.name, os.O_WRONLY)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError:  # no room left in /dev/shm
        segment.close()
        segment.unlink()
        return None
    return segment
