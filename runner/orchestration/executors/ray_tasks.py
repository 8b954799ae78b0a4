"""The Ray side of a branch: the task that runs it, and the run's cancel flag.

A branch runs as the Ray task :func:`run_branch` (or on a warm pool actor, which
calls it): it runs the branch on a fork of the group's shared context and sends
back only the fields it changed. The run's cancel flag is a named actor that
exists once the run is cancelled (:class:`DriverFlag` on the driver,
:class:`FlagClient` in a worker, read at step boundaries), so a run that is never
cancelled starts no actor. :func:`warm_workers` imports the branches' modules in
the job's workers ahead of the branches.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from runner.orchestration.execute import execute_branch
from runner.orchestration.executors.shipping import strip_untouched
from runner.orchestration.native_threads import native_thread_limit
from runner.orchestration.tasks import BranchOutcome, BranchTask, CancelFlag


class _Pool(Protocol):
    """The warm pool as the cancel flag sees it (:class:`.ray_pool.WarmPool`)."""

    def cancel(self, token: str) -> None: ...

__all__ = ["CANCELLED", "DriverFlag", "FlagClient", "driver_flag", "remote_functions",
           "run_branch", "warm_worker", "warm_workers"]

log = logging.getLogger("runner")


def _flag_name(token: str) -> str:
    return f"runner-cancelled-{token}"


class _Cancelled:
    """Exists, under the run's name, once the run is cancelled: branches look it up at
    their step boundaries. A run that is never cancelled starts no actor (an actor
    costs a worker process: a second or more of CPU on a small machine)."""

    def ping(self) -> bool:
        return True


def _raise_flag(ray: Any, token: str) -> Any:
    """Make the run's cancellation visible to its branches (idempotent). Returns the
    actor's handle: the caller keeps it, as Ray ends an actor nobody holds."""
    try:
        return ray.remote(num_cpus=0)(_Cancelled).options(
            name=_flag_name(token), get_if_exists=True).remote()
    except Exception as exc:  # Ray going down: the branches are being stopped anyway
        log.debug("could not publish the cancellation to Ray: %s: %s",
                  type(exc).__name__, exc)
        return None


CANCELLED: set[str] = set()
"""Tokens of the runs cancelled that a warm pool actor heard of directly."""


class FlagClient:
    """A worker's view of one run's cancel flag, read at step boundaries."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._seen = False
        self._held: Any = None

    def is_set(self) -> bool:
        if not self._seen and self.token in CANCELLED:
            self._seen = True
        if not self._seen:
            import ray

            try:
                ray.get_actor(_flag_name(self.token))
                self._seen = True
            except ValueError:  # no such actor: not cancelled
                pass
            except Exception as exc:  # a slow GCS must not fail a healthy branch
                log.debug("could not read the cancel flag: %s: %s", type(exc).__name__, exc)
        return self._seen

    def set(self) -> None:
        import ray

        self._seen = True  # held while this branch runs; the driver raises its own
        self._held = _raise_flag(ray, self.token)


def run_branch(task: BranchTask, context: Any, token: str, executor_name: str,
                threads: int = 1) -> BranchOutcome:
    """The Ray task: fork the shared context here, run the branch, return its outcome."""
    import ray

    cancel = FlagClient(token)
    with native_thread_limit(threads):  # the branch runs on a fork of the shared context
        outcome = execute_branch(replace(task, context=context), cancel,
                                 executor=executor_name)
    if outcome.context is not None and type(outcome.context) is type(context):
        outcome.context = strip_untouched(outcome.context, context)
    node = ray.get_runtime_context().get_node_id()
    for record in outcome.records:
        record.node = node
    outcome.node = node
    return outcome


def warm_worker(modules: Sequence[str]) -> int:
    """A task that imports what the branches will (their stage modules, the libraries
    their stages declare) in a worker before any branch needs it; returns its pid."""
    from runner.orchestration.warm import import_modules

    import_modules(modules)
    return os.getpid()


class DriverFlag:
    """The driver's cancel flag: a local event, published to Ray once connected."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.token = secrets.token_hex(8)
        self.ray: Any = None
        self.pool: _Pool | None = None
        self._held: Any = None
        self._told = False

    def is_set(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()
        self.publish()

    def publish(self) -> None:
        """Once connected and set: the branches see it (the actor lives with this flag)."""
        if self.pool is not None and self.event.is_set() and not self._told:
            self._told = True
            self.pool.cancel(self.token)  # at once: the pool's actors are running already
        if self.ray is not None and self.event.is_set() and self._held is None:
            self._held = _raise_flag(self.ray, self.token)


_SESSION: dict[str, Any] = {}


def remote_functions(ray: Any) -> Any:
    """The remote functions, made once per Ray connection."""
    job = ray.get_runtime_context().get_job_id()
    if _SESSION.get("job") != job:
        _SESSION.update(job=job, fn=ray.remote(run_branch),
                        warm=ray.remote(num_cpus=1)(warm_worker))
    return _SESSION["fn"]


def warm_workers(ray: Any, modules: Sequence[str], *, count: int) -> list[Any]:
    """Start ``count`` tasks (at most one per CPU of the cluster) that import ``modules``
    in the job's workers, which Ray then reuses for the branches: the imports run
    while the driver runs the steps before the group, not inside the branches' stages
    (scikit-learn: over a second). Returns their refs; nothing waits for them."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = min(count, max(cpus, 1))
    if count < 1 or not modules:
        return []
    remote_functions(ray)
    return [_SESSION["warm"].remote(list(modules)) for _ in range(count)]


def driver_flag(flag: CancelFlag) -> DriverFlag:
    wrapped = DriverFlag()
    if flag.is_set():
        wrapped.event.set()
    return wrapped
