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
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "THREAD_ENV",
    "available_cpus",
    "blas_thread_limit",
    "branch_threads",
    "native_thread_limit",
    "openmp_thread_limit",
]

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
