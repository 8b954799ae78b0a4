"""The forkserver forked from the driver, so it inherits the driver's imports.

:func:`multiprocessing.forkserver.ForkServer.ensure_running` spawns a fresh
interpreter that imports pandas, the engine and scikit-learn from cold while the
driver imports the same on the same cores. :func:`fork_forkserver` sets up the
same socket and "alive" pipe, but forks this process instead, once it has
imported what the workers need (:func:`.forkserver.start_forkserver`): the child
imports nothing and serves ``multiprocessing``'s forkserver loop at once, so
the pool, its workers and every crash, cancel and exit guarantee behave as with
a spawned forkserver. The heap is frozen first (:func:`gc.freeze`), as Python's
documentation advises before a fork: the workers' collections leave the inherited
objects alone. Call it from the main thread while no other thread runs (a fork
then copies no lock held by another thread). Stdlib only.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import sys
from collections.abc import Mapping

__all__ = ["fork_forkserver"]


def fork_forkserver(*, redirect: Mapping[int, int]) -> int:
    """Fork this process's forkserver now; returns its pid.

    ``redirect`` maps standard descriptors to the ones the forkserver gets in
    their place (the caller keeps and closes its own copies).
    """
    from multiprocessing import connection, forkserver, resource_tracker, util

    server: object = forkserver._forkserver
    resource_tracker.ensure_running()
    listener = socket.socket(socket.AF_UNIX)
    address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
    listener.bind(address)
    if not util.is_abstract_socket_namespace(address):
        os.chmod(address, 0o600)  # noqa: PTH101 - as multiprocessing does
    listener.listen()
    alive_r, alive_w = os.pipe()  # every client holds the write end; EOF: all gone
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
        with contextlib.suppress(Exception):
            stream.flush()
    # what is loaded now stays out of every later collection, here and in each worker:
    # a worker's full collection would scan it all and copy every page it touches
    gc.freeze()
    pid = os.fork()
    if pid == 0:
        _serve(listener.detach(), alive_r, alive_w, redirect)
    os.close(alive_r)
    listener.close()
    server._forkserver_address = address  # type: ignore[attr-defined]
    server._forkserver_alive_fd = alive_w  # type: ignore[attr-defined]
    server._forkserver_pid = pid  # type: ignore[attr-defined]
    return pid


def _serve(listener: int, alive_r: int, alive_w: int, redirect: Mapping[int, int]) -> None:
    """The forked child: serve forks until the driver is gone, then
    end without an interpreter shutdown (like its workers, it has nothing to clean)."""
    try:
        gc.enable()  # the driver may have forked it during its start-up, collector off
        os.close(alive_w)
        for fd, target in redirect.items():
            os.dup2(target, fd)
        for target in set(redirect.values()) - {0, 1, 2}:
            os.close(target)
        from multiprocessing import forkserver

        forkserver.main(listener, alive_r, [])
    except SystemExit:  # how its loop ends: the driver is gone
        pass
    except BaseException as exc:  # the driver reports its pool failing
        with contextlib.suppress(Exception):
            sys.stderr.write(f"runner: the forkserver stopped: {type(exc).__name__}: {exc}\n")
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)
