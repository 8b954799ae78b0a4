"""Branches as Ray tasks: the seed's RayComputeEngine, on a laptop or a Ray cluster.

    runner run alpha.parallel --executor ray           # a local Ray, started for the run
    RAY_ADDRESS=127.0.0.2:6379 runner run ...          # a running cluster (GCS address)
    RAY_ADDRESS=ray://head:10001 runner run ...        # or through the Ray client

Sequential steps stay on the driver; each branch of a parallel group is one Ray
task, or a call to a warm actor kept across runs on a cluster the run joined
(:mod:`.ray_pool`).
The pre-fork context is put in the object store once and shared by every
branch (its Arrow and numpy buffers are read zero-copy); each branch forks it
where it runs, so a stage that writes a column copies only that column. The
driver merges what the branches return with the same rules and errors as every
other executor. A branch's native thread pools (OpenMP, BLAS) are capped at the
CPUs its task holds: one, unless its ``resources`` ask for more. Once Ray is
reached, tasks import the branches' modules in as many workers as the widest
group has branches, so the branches find them loaded.

With no address, a local single-node Ray is started when the run begins, in the
background (it hides behind the steps before the first group), bound to the
loopback interface only, and shut down when the run ends. The connection to a
running cluster is closed in the background as soon as the run's last group is
done (:meth:`RayComputeEngine.release`), while the steps after it run.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from runner.errors import RayUnavailableError
from runner.orchestration.executors.ray_connect import (
    LocalRayEnv,
    NotMainThread,
    connect_attempts,
    connect_with_retries,
    import_ray,
    modules_to_ship,
    probe,
)
from runner.orchestration.executors.ray_pool import WarmPool, pool_enabled, poolable
from runner.orchestration.executors.ray_tasks import (
    DriverFlag,
    driver_flag,
    remote_functions,
    warm_workers,
)
from runner.orchestration.executors.remote import RemoteExecutor
from runner.orchestration.executors.shipping import detached, restore_untouched
from runner.orchestration.native_threads import branch_threads
from runner.orchestration.tasks import (
    BranchOutcome,
    BranchTask,
    CancelFlag,
    StepFailure,
    branch_lost,
)

__all__ = ["RayComputeEngine", "import_ray"]

log = logging.getLogger("runner")


class _Release(threading.Event):
    """Set when a connection's thread may end; ``disconnect``: it closes the connection
    to a running cluster itself first."""

    disconnect = False


_DISCONNECTING: list[threading.Thread] = []
"""Connection threads closing a run's connection to a running cluster."""


def disconnected(timeout: float = 30.0) -> None:
    """Wait for connections still being closed in the background (at most ``timeout``
    seconds each): before the next connection, and at exit before Ray's own handler."""
    while _DISCONNECTING:
        _DISCONNECTING.pop().join(timeout)


def _wait_at_exit() -> None:
    """Once per process, after Ray registered its own exit handler: wait for background
    disconnections first (handlers run last registered first), so Ray's handler finds
    the connection closed instead of closing it again after a half-second pause."""
    if not _EXIT_HOOK:
        _EXIT_HOOK.append(True)
        atexit.register(disconnected)


_EXIT_HOOK: list[bool] = []


def _shut_down(ray: Any) -> None:
    try:
        ray.shutdown()
    except Exception as exc:  # the connection is being dropped anyway
        log.debug("could not disconnect from Ray: %s: %s", type(exc).__name__, exc)


def _task_options(resources: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"max_retries": int(resources.get("max_retries", 0)),
                               "retry_exceptions": False}
    for key in ("num_cpus", "num_gpus", "memory"):
        if key in resources:
            options[key] = resources[key]
    if resources.get("resources"):
        options["resources"] = dict(resources["resources"])
    return options


class RayComputeEngine(RemoteExecutor):
    """Runs the branches of parallel groups as Ray tasks."""

    name = "ray"
    defer_warming = True  # the driver's imports would slow import ray: see dispatch

    def __init__(self, address: str | None = None, *, preload: Sequence[str] = (),
                 num_cpus: int | None = None,
                 init_options: Mapping[str, Any] | None = None, warm: int = 0) -> None:
        self.address = address if address is not None else (os.environ.get("RAY_ADDRESS")
                                                              or None)
        self.preload = tuple(preload)
        self.warm = warm
        """Workers to warm up with ``preload`` once Ray is reached (the widest group's
        branches); 0 leaves the branches to import what they need themselves."""
        self.warmed: list[Any] = []
        """The warm-up tasks' refs (each returns its worker's pid)."""
        self.init_options = dict(init_options or {})
        self._ray: Any = None
        self._owned = False
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self._lock = threading.Lock()
        self._remote_fn: Any = None
        self._local: LocalRayEnv | None = None
        self._pending: dict[Any, BranchTask] = {}
        self._on_pool: dict[Any, Any] = {}
        self.pool: WarmPool | None = None
        """The warm actors branches run on, on a cluster this run did not start."""
        self._ready_event = threading.Event()
        self._imported = threading.Event()
        """Set once ``import ray`` is done (or the connection failed)."""
        self._released = _Release()
        self.num_cpus = num_cpus

    def new_cancel_flag(self) -> CancelFlag:
        return DriverFlag()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start reaching Ray on a background thread; idempotent, and cheap to call again."""
        if importlib.util.find_spec("ray") is None:  # a usage error now, not in a thread
            import_ray()
        with self._lock:
            if self._ray is not None or self._starting is not None:
                return
            self._released = _Release()  # one per connection: see shutdown()
            self._imported.clear()
            self._starting = threading.Thread(target=self._connect, args=(self._released,),
                                              name="runner-ray-init", daemon=True)
            self._starting.start()

    def _connect(self, released: _Release) -> None:
        disconnected()  # a run before this one in the process may still be disconnecting
        try:
            if not self.address and self._local is None:
                self._local = LocalRayEnv()
                self._local.apply()
            ray = import_ray()
            self._imported.set()
            _wait_at_exit()
            logging.getLogger("ray._private.worker").addFilter(NotMainThread())
            if not ray.is_initialized():
                self._init(ray)
                self._owned = True
            self._remote_fn = remote_functions(ray)
            if self.address and pool_enabled():
                self.pool = WarmPool(ray, self.preload)
                self.pool.warm(self.warm)
            elif self.warm:
                self.warmed = warm_workers(ray, self.preload, count=self.warm)
            # the job's first put builds its serializers (Ray imports pydantic.v1 and
            # more then): here, not when the group puts its context
            ray.put(None)
            self._ray = ray
        except BaseException as exc:
            self._start_error = exc
        finally:
            self._imported.set()
            self._ready_event.set()
        # Ray's processes get a parent-death signal tied to the thread that started
        # them: this thread lives until the run's Ray is shut down.
        if self._start_error is None:
            released.wait()
            if released.disconnect:
                _shut_down(ray)

    def _init(self, ray: Any) -> None:
        """``ray.init``: join the cluster at ``address`` (tried again after a connection
        error) or start a local Ray on the loopback interface."""
        options: dict[str, Any] = {"namespace": "runner", "log_to_driver": True,
                                   "logging_level": logging.WARNING,
                                   "configure_logging": False}
        if self.address:
            options["address"] = self.address
        else:
            options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
            if self.num_cpus is not None:
                options["num_cpus"] = self.num_cpus
        shipped = modules_to_ship(self.preload)
        if shipped:
            options["runtime_env"] = {"py_modules": shipped}
        options.update(self.init_options)
        if not self.address:
            ray.init(**options)
            return
        address = self.address

        def connect() -> None:
            probe(address)
            ray.init(**options)

        connect_with_retries(connect, ray.shutdown, where=address, attempts=connect_attempts())

    def _ready(self) -> Any:
        self.start()
        self._ready_event.wait()
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            with self._lock:
                self._starting = None
                self._ready_event.clear()
            if self._local is not None:
                self._local.restore()
                self._local = None
            where = self.address or "a local Ray on 127.0.0.1"
            raise RayUnavailableError(f"cannot start or reach Ray ({where}): "
                                      f"{type(error).__name__}: {error}",
                                      address=self.address or "") from error
        return self._ray

    def release(self) -> None:
        """After the run's last group: close the connection to a running cluster now, in
        the background (Ray's disconnection takes about 0.3 s), while the steps after
        the group run, rather than at the run's end. The group's outcomes were copied
        out of Ray's object store (:meth:`_outcome`), so nothing the driver holds
        depends on the connection. A local Ray this run started stays up until
        :meth:`shutdown` (stopping it is not a background job)."""
        with self._lock:
            joined = self._ray is not None and self._owned and bool(self.address)
        if joined:
            self.shutdown()

    def shutdown(self) -> None:
        """Release Ray. A local Ray this run started is shut down before this returns;
        the connection to a running cluster is closed on the background thread that
        made it, while the run writes its records (the process waits for it at exit,
        and the next connection in the process waits for it first)."""
        thread = self._starting
        if thread is not None:
            self._ready_event.wait()
        with self._lock:
            background = self._ray is not None and self._owned and bool(self.address)
            if background and thread is not None:
                self._released.disconnect = True
                _DISCONNECTING.append(thread)
            elif self._ray is not None and self._owned:
                self._ray.shutdown()
            self._released.set()
            if thread is not None and not self._released.disconnect:
                thread.join()
            self._starting = None
            self._ready_event.clear()
            self._ray = None
            self.pool = None
            self._owned = False
            if self._local is not None:
                self._local.restore()
                self._local = None

    # ------------------------------------------------------------ branches

    def dispatch(self, tasks: Sequence[BranchTask], cancel: CancelFlag,
                 ) -> Iterator[BranchOutcome]:
        self.start()
        # Once Ray is imported, the rest of connecting mostly waits on the network: the
        # driver's imports for the steps after the group start then, not sharing the
        # interpreter with ``import ray`` nor waiting for the whole connection.
        self._imported.wait()
        self.start_warming()
        ray = self._ready()
        if not isinstance(cancel, DriverFlag):  # a flag the engine did not make
            cancel = driver_flag(cancel)
        token = cancel.token
        cancel.ray = ray
        cancel.pool = self.pool
        cancel.publish()
        shared = ray.put(tasks[0].context)  # once: every branch forks the same context
        if self.warmed:  # the branches then reuse the warm workers, not start cold ones
            ray.wait(self.warmed, num_returns=len(self.warmed))
            self.warmed = []
        pending: dict[Any, BranchTask] = {}
        self._pending = pending  # for abort(), from another thread
        self._on_pool = {}
        for slot, task in enumerate(tasks):
            light = replace(task, context=None)
            # a task holds one CPU unless it asks for more: its native pools get that many
            threads = branch_threads(task.branch.resources, concurrent=1, cpus=1)
            args = (light, shared, token, self.name, threads)
            if self.pool is not None and poolable(task.branch.resources):
                actor = self.pool.actor(slot)
                ref = actor.run.remote(*args)
                self._on_pool[ref] = actor
            else:
                options = _task_options(task.branch.resources)
                ref = self._remote_fn.options(**options).remote(*args)
            pending[ref] = task
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                yield self._outcome(ray, ref, task)

    def abort(self) -> None:
        """Cancel the branches still running (their workers are killed); a Ray this
        run started is shut down (its agents would outlive the process)."""
        ray = self._ray
        if ray is None:
            return
        for ref in list(self._pending):
            actor = self._on_pool.get(ref)
            if actor is not None and self.pool is not None:
                self.pool.kill(actor)
                continue
            try:
                ray.cancel(ref, force=True)
            except Exception as exc:  # gone already, or Ray is going down
                log.debug("could not cancel a Ray task: %s", exc)
        if self._owned:
            try:
                ray.shutdown()
            except Exception as exc:
                log.debug("could not shut Ray down: %s", exc)

    def _outcome(self, ray: Any, ref: Any, task: BranchTask) -> BranchOutcome:
        from ray import exceptions as rex

        try:
            outcome: BranchOutcome = ray.get(ref)
            if outcome.context is not None:
                outcome.context = restore_untouched(outcome.context, task.context)
                if self._last:  # read zero-copy from Ray's store, which release() leaves
                    outcome.context = detached(outcome.context, task.context)
            return outcome
        except rex.RayTaskError as exc:  # the task itself raised outside a stage
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, StepFailure):
                return BranchOutcome(task.branch.index, failure=cause)
            return branch_lost(task, cause, "the worker running this branch failed: "
                                            f"{type(cause).__name__}: {cause}")
        except (rex.WorkerCrashedError, rex.NodeDiedError, rex.OutOfMemoryError,
                rex.ObjectLostError, rex.TaskCancelledError, rex.RayActorError) as exc:
            retries = int(task.branch.resources.get("max_retries", 0))
            died = _died_failure(task, exc, retries)
            return BranchOutcome(task.branch.index, failure=died)


def _died_failure(task: BranchTask, exc: BaseException, retries: int) -> StepFailure:
    kind = type(exc).__name__
    what = ("ran out of memory" if kind == "OutOfMemoryError"
            else "lost its node" if kind == "NodeDiedError"
            else "died (killed, out of memory or crashed)")
    tries = f" after {retries + 1} attempts (max_retries={retries})" if retries else ""
    return StepFailure(
        name=task.branch.label, path=task.branch.path, kind="branch", exc_type=kind,
        message=f"the Ray worker running this branch {what}{tries}: {exc}",
        tb="", received=task.context, original=None, pid=0,
    )
