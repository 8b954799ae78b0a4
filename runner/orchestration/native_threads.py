"""Native thread pools (OpenMP, BLAS) sized to a branch's share of the CPUs.

NumPy's BLAS and scikit-learn's OpenMP code start one thread per core by default:
two branches on two cores then run four or more busy threads, which spin and
evict each other. Like Ray and Dask, every parallel executor caps the native
pools of a branch at its CPU share while it runs:

- the ``*_NUM_THREADS`` variables, read by a library when it loads later in the
  process (a fresh worker imports scikit-learn inside the branch);
- threadpoolctl for the libraries already loaded (a forked worker inherits them).

A branch's share is its ``num_cpus`` request from the manifest's ``resources``
(rounded up; a stage asks for more there), else the cores divided by the
branches running at once, at least 1.

A share can grow while a branch runs: when its neighbours finish, their cores are
free. A native pool cannot be resized inside one call (one fit), but a stage that
makes several independent calls (a walk-forward's fits) can ask between them:
:func:`core_share` says how many cores the calling stage may keep busy now (the
executor running it keeps it current: the processes executor's workers read the
number of the group's branches still running, which the driver updates as they
finish), and :func:`map_on_cores` runs such calls on that many threads, one
OpenMP thread each, read again before each call.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

__all__ = [
    "THREAD_ENV",
    "available_cpus",
    "blas_thread_limit",
    "branch_threads",
    "core_share",
    "map_on_cores",
    "native_thread_limit",
    "openmp_thread_limit",
    "sharing_cores",
]

T = TypeVar("T")
R = TypeVar("R")

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""Variables native libraries read when they load: set to the branch's share."""


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def branch_threads(resources: Mapping[str, Any], *, concurrent: int,
                   cpus: int | None = None) -> int:
    """Threads a branch's native pools get: its ``num_cpus`` request, rounded up, or
    else ``cpus // concurrent`` (the machine's CPUs shared by the branches running at
    once), at least 1."""
    asked = resources.get("num_cpus")
    if asked:
        return max(1, math.ceil(float(asked)))
    cpus = cpus if cpus is not None else available_cpus()
    return max(1, cpus // max(1, concurrent))


def _controller() -> Any:
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController()


@contextlib.contextmanager
def native_thread_limit(threads: int) -> Iterator[None]:
    """Cap every native pool of this process at ``threads`` while the block runs.

    For a process that runs one branch at a time (a worker): the variables hold
    for libraries loaded inside the block, threadpoolctl limits the loaded ones
    (BLAS process-wide, OpenMP for this thread). Both are restored on exit.
    """
    value = str(max(1, int(threads)))
    saved = {key: os.environ.get(key) for key in THREAD_ENV}
    os.environ.update(dict.fromkeys(THREAD_ENV, value))
    try:
        with _controller().limit(limits=int(value)):
            yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def openmp_thread_limit(threads: int) -> Iterator[None]:
    """Cap the OpenMP pools loaded in this process, for the calling thread only.

    OpenMP's thread count is per calling thread, so branches on threads of one
    process each get their own; BLAS's is process-wide and is left to the group.
    """
    with _controller().select(user_api="openmp").limit(limits=max(1, int(threads))):
        yield


@contextlib.contextmanager
def blas_thread_limit(threads: int) -> Iterator[None]:
    """Cap the loaded BLAS libraries at ``threads`` (process-wide) while the block runs."""
    with _controller().select(user_api="blas").limit(limits=max(1, int(threads))):
        yield


_process_share: Callable[[], int] | None = None
_thread_share = threading.local()
_POLL_S = 0.02
"""How often an idle helper of :func:`map_on_cores` looks whether the share grew."""


@contextlib.contextmanager
def sharing_cores(share: Callable[[], int], *, process_wide: bool = True,
                  ) -> Iterator[None]:
    """While the block runs, :func:`core_share` answers ``share()``: for the whole
    process (a worker running one branch) or, with ``process_wide=False``, for the
    calling thread only (a branch on a thread of a shared process)."""
    global _process_share  # noqa: PLW0603 - one branch per worker process at a time
    if process_wide:
        saved, _process_share = _process_share, share
    else:
        saved, _thread_share.share = getattr(_thread_share, "share", None), share
    try:
        yield
    finally:
        if process_wide:
            _process_share = saved
        else:
            _thread_share.share = saved


def _share_here() -> Callable[[], int]:
    share = getattr(_thread_share, "share", None) or _process_share
    if share is not None:
        return share
    told = os.environ.get("OMP_NUM_THREADS", "")  # Ray and Dask tell a task this way
    fixed = int(told) if told.isdigit() and int(told) > 0 else available_cpus()
    return lambda: fixed


def core_share() -> int:
    """How many cores the calling stage may keep busy now, at least 1: its branch's
    share (which grows as the group's other branches finish, on the processes
    executor), else ``OMP_NUM_THREADS`` when set, else this process's CPUs."""
    try:
        return max(1, int(_share_here()()))
    except Exception:  # a share that cannot be read: stay small
        return 1


def map_on_cores(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]``, on as many threads as the calling stage's
    :func:`core_share` allows, read again before each call (a branch whose neighbours
    finished takes their cores); each thread's OpenMP pools at one thread.

    For independent calls that release the GIL (fits of native models). Results are
    in the order of ``items``, whatever ran where; the first exception is raised once
    the calls running end, and no new call starts after it.
    """
    todo = list(items)
    results: list[Any] = [None] * len(todo)
    share = _share_here()
    lock, stop = threading.Lock(), threading.Event()
    state = {"next": 0}
    failed: list[BaseException] = []

    def take(slot: int) -> int | None:
        while True:
            with lock:
                if state["next"] >= len(todo) or failed:
                    return None
                if slot == 0 or slot < max(1, int(share())):
                    state["next"] += 1
                    return state["next"] - 1
            if stop.wait(_POLL_S):
                return None

    def work(slot: int) -> None:
        i = take(slot)
        if i is None:  # a helper the share never reached: no limiter made for it
            return
        with openmp_thread_limit(1):
            while i is not None:
                try:
                    results[i] = fn(todo[i])
                except BaseException as exc:  # raised by the caller
                    with lock:
                        failed.append(exc)
                    return
                i = take(slot)

    helpers = [threading.Thread(target=work, args=(slot,), daemon=True,
                                name=f"runner-cores-{slot}")
               for slot in range(1, min(available_cpus(), len(todo)))]
    for helper in helpers:
        helper.start()
    try:
        work(0)
    finally:
        stop.set()
        for helper in helpers:
            helper.join()
    if failed:
        raise failed[0]
    return results
