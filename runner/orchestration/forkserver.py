"""The processes executor's forkserver, started as soon as the front door knows the run.

Worker processes are forked from a forkserver that has imported the engine,
pandas, the plan's stage modules and what its branches' stages declare they
import (scikit-learn for ``alpha.parallel``: two to three seconds of imports).
Started when the run begins, the first parallel group waits for it. The CLI
knows the manifest and the pipeline before its first step, so it starts the
forkserver then (:func:`start_forkserver`), and forks it rather than spawns it
(``fork_after``, :mod:`.forkserver_fork`): the driver imports what it needs
anyway (pandas, pyarrow, the engine) and what the plan's workers need (its stage
modules, what its branches declare they import: :mod:`.preload_plan`), then,
still one thread and before any OpenMP pool has started (importing scikit-learn
starts none; running it does), forks the forkserver, which inherits it all and
forks the group's workers at once. Each module is imported once, on the critical
path only where an inline run imports it too, rather than twice at once on the
same cores (the forkserver and the driver's background warm-up, which now finds
them loaded). A driver already running a thread, or left running one by a
module it imported, spawns the forkserver as before (a fork then could copy a
lock another thread holds).

Why the driver imports the branches' declared imports before the fork rather
than leave them to the forkserver (importing them on the other core while the
driver goes on with its first steps, the driver warming its own after the fork):
the driver needs nearly the same import after the group (``alpha.clustering``'s
sklearn.cluster and scipy.stats take 0.9 s from cold, 0.02 s once the branches'
scikit-learn modules are loaded, and the same the other way round). Split, it is
done twice: 0.65 to 0.8 CPU-seconds more per run. Measured on two cores shared with
other work, interleaved against this order, the first steps started 0.9 s sooner but
the group 0.1 to 1 s later, and the run took 0.3 to 1.3 s longer.

A spawned forkserver finds the plan's modules itself (:mod:`.preload_plan`
compiles the plan from the manifest, the pipeline and the module folders handed
to it in ``RUNNER_FORKSERVER_PLAN``); a plan that cannot be compiled only leaves
the workers cold, the driver reports the problem. Stdlib only: this module is
imported at CLI entry.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence

from runner.orchestration.forkserver_env import (
    ENGINE_PRELOAD,
    PLAN_ENV,
    put_back,
    spawn_environment,
)

__all__ = ["ENGINE_PRELOAD", "EXIT_PRELOAD", "PLAN_ENV", "ensure_forkserver", "forkserver_pid",
           "start_forkserver", "worker_preload"]

EXIT_PRELOAD = "runner.orchestration.forkserver_exit"
"""Preloaded last: the forkserver ends without tearing down when its driver has ended."""


def worker_preload(modules: Sequence[str]) -> list[str]:
    """The forkserver's preload: the main script first (so a worker does not import it
    again: spawn's preparation skips a loaded one), the engine, then ``modules``; last,
    :data:`EXIT_PRELOAD`."""
    return list(dict.fromkeys(["__main__", *ENGINE_PRELOAD, *modules, EXIT_PRELOAD]))


def start_forkserver(*, pipeline: str, manifest: str | None = None,
                     path: Sequence[str] = (), stdout_to_stderr: bool = False,
                     redirect: Mapping[int, int] | None = None,
                     fork_after: Sequence[str] = ()) -> bool:
    """Start this process's forkserver now, preloading what ``pipeline`` needs.

    ``manifest`` None means the default one (``RUNNER_MANIFEST``, else the bundled
    manifest); ``path`` are the extra module folders. Call it from the main thread
    before other threads run (the variable is set for the spawn only). Returns
    False, doing nothing, when the forkserver already runs (its preload is kept).
    ``stdout_to_stderr`` gives the forkserver, and so every worker, stderr as its
    stdout (``runner run --json``: stdout holds the JSON object only). ``redirect``
    maps more of the standard descriptors to the ones the forkserver gets in their
    place (``{2: pipe}``: the workers' stderr goes to a pipe the driver relays).
    ``fork_after``: modules this process imports now, with the plan's (as
    :func:`.preload_plan.preload_plan` finds them), before it forks the forkserver
    (which inherits them); when another thread runs, before or after those imports,
    the forkserver is spawned (a fork then is unsafe) and preloads the plan itself.
    """
    import multiprocessing as mp
    from multiprocessing import forkserver

    if forkserver_pid() is not None:
        return False
    spec = {"pipeline": pipeline,
            "manifest": os.path.abspath(manifest) if manifest else None,  # noqa: PTH100
            "path": [os.path.abspath(p) for p in path]}  # noqa: PTH100
    targets = {**({1: 2} if stdout_to_stderr else {}), **(redirect or {})}
    if fork_after and threading.active_count() == 1:
        from runner.orchestration.forkserver_fork import fork_forkserver
        from runner.orchestration.preload_plan import preload_plan

        for name in fork_after:
            __import__(name)
        preload_plan(json.dumps(spec), quiet=False)  # here: the forkserver inherits it
        if threading.active_count() == 1:  # unless a module imported started a thread
            fork_forkserver(redirect=targets)
            return True
    mp.get_context("forkserver").set_forkserver_preload(
        ["__main__", "runner.orchestration.preload_plan", EXIT_PRELOAD])
    saved = spawn_environment({PLAN_ENV: json.dumps(spec)})
    saved_fds = {fd: os.dup(fd) for fd in targets}
    try:
        for fd, target in targets.items():  # the forkserver inherits descriptors 0-2 as
            os.dup2(saved_fds.get(target, target), fd)  # they are now
        forkserver.ensure_running()
    finally:
        for fd, saved_fd in saved_fds.items():
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
        put_back(saved)
    for name in fork_after:
        __import__(name)
    return True


def ensure_forkserver() -> None:
    """Start this process's forkserver unless it runs, spawned with the driver's
    ``sys.path`` (:func:`.forkserver_env.spawn_environment`); its preload as set."""
    from multiprocessing import forkserver

    if forkserver_pid() is not None:
        return
    saved = spawn_environment()
    try:
        forkserver.ensure_running()
    finally:
        put_back(saved)


def forkserver_pid() -> int | None:
    """The pid of this process's running forkserver, or None."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    return pid if isinstance(pid, int) else None
