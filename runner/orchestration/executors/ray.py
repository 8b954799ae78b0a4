"""Branches as Ray tasks: the seed's RayComputeEngine, on a laptop or a Ray cluster.

    runner run alpha.parallel --executor ray           # a local Ray, started for the run
    RAY_ADDRESS=127.0.0.2:6379 runner run ...          # a running cluster (GCS address)
    RAY_ADDRESS=ray://head:10001 runner run ...        # or through the Ray client

Sequential steps stay on the driver; each branch of a parallel group is one Ray
task, or a call to a warm actor kept across runs on a cluster the run joined
(:mod:`.ray_pool`); with ``RUNNER_RAY_DRIVER_BRANCH=1`` the driver runs one
branch of each group itself while it waits.
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
loopback interface only, and shut down when the run ends.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from runner.context import fork_context
from runner.errors import RayUnavailableError, UsageError
from runner.orchestration.execute import (
    BranchOutcome,
    BranchTask,
    CancelFlag,
    StepFailure,
    execute_branch,
    worker_failure,
)
from runner.orchestration.executors.base import Executor
from runner.orchestration.executors.ray_pool import (
    DriverBranch,
    WarmPool,
    driver_branch_index,
    pool_enabled,
    poolable,
)
from runner.orchestration.executors.shipping import restore_untouched, strip_untouched
from runner.orchestration.hooks import RunHook
from runner.orchestration.native_threads import branch_threads, native_thread_limit
from runner.retry import RetryPolicy, env_int

__all__ = ["RayComputeEngine", "import_ray"]

log = logging.getLogger("runner")

INSTALL_HINT = "install the ray extra: pip install 'runner[ray]' (or pip install 'ray[default]')"


CONNECT_ATTEMPTS_ENV = "RUNNER_RAY_CONNECT_ATTEMPTS"


def connect_attempts() -> int:
    """How many times a run tries to reach a Ray cluster (env RUNNER_RAY_CONNECT_ATTEMPTS,
    default 3)."""
    return env_int(CONNECT_ATTEMPTS_ENV, 3)


def probe(address: str, timeout: float = 5.0) -> None:
    """A ``ConnectionError`` at once when nothing listens at a cluster's address.

    Ray itself waits minutes on an address where nothing answers (it keeps asking
    for the GCS), and rewrites a loopback host to the machine's own address.
    ``auto`` and addresses without a port are left to Ray.
    """
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except ConnectionError:
        raise
    except OSError as exc:  # a timeout, an unknown host, no route
        raise ConnectionError(f"{hostport}: {exc or type(exc).__name__}") from exc


def connect_with_retries(connect: Callable[[], None], reset: Callable[[], None], *,
                         where: str, attempts: int, backoff: float = 2.0,
                         sleep: Callable[[float], None] = time.sleep) -> int:
    """``connect()``, tried again after a ``ConnectionError``; returns how many retries.

    Reaching a running cluster can fail for a moment: a busy head's Ray client server
    may fail to start the server process of a new client (``ConnectionAbortedError:
    Initialization failure from server``), a GCS may be restarting. Ray retries the
    connection itself, but not a failure the server reports. ``reset()`` clears a half
    made connection before the next try; waits double from ``backoff`` seconds.
    """
    policy = RetryPolicy(attempts=attempts, backoff=backoff, sleep=sleep)
    for attempt in range(attempts - 1):
        try:
            connect()
            return attempt
        except ConnectionError as exc:
            delay = policy.delay(attempt)
            first = (str(exc).strip().splitlines() or [""])[0]
            log.warning("could not reach Ray at %s (%s: %s); trying again in %.0f s "
                        "(attempt %d of %d, %s)", where, type(exc).__name__, first, delay,
                        attempt + 2, attempts, CONNECT_ATTEMPTS_ENV)
            reset()
            policy.sleep(delay)
    connect()  # the last attempt: its error is the run's
    return max(attempts - 1, 0)


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`UsageError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"executor 'ray' needs Ray, which is not installed: {INSTALL_HINT}"
                         ) from exc
    return ray


_TOKEN: list[str] = []


def _process_token() -> str:
    """One auth token per process: Ray keeps the first token it loads for the life of
    the process, so a second local Ray started here must use the same one."""
    if not _TOKEN:
        _TOKEN.append(secrets.token_hex(32))
    return _TOKEN[0]


class LocalRayEnv:
    """The environment of a local Ray started for one run, set while it runs.

    With Ray 2.60 every listener of a single-node Ray is on 127.0.0.1 only when
    its node address is 127.0.0.1 and ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
    (otherwise Ray listens on all interfaces and advertises the machine's
    address). The run's Ray also gets its own short temp folder (sessions, logs,
    sockets; never joining another Ray on the machine through /tmp/ray), its own
    auth token, free metrics ports and no usage statistics.
    """

    def __init__(self) -> None:
        base = "/tmp" if Path("/tmp").is_dir() else None  # socket paths must stay short
        self.folder = tempfile.mkdtemp(prefix="runner-ray-", dir=base)
        token = Path(self.folder, "auth_token")
        token.touch(mode=0o600)
        secret = _process_token()
        token.write_text(secret, encoding="ascii")
        self.values = {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            # the value too: it wins over any token file Ray may have read before
            "RAY_AUTH_TOKEN": secret,
            "RAY_TMPDIR": self.folder,
            "AUTOSCALER_METRIC_PORT": "0",
            "DASHBOARD_METRIC_PORT": "0",
        }
        self._saved: dict[str, str | None] = {}

    def apply(self) -> None:
        for key, value in self.values.items():
            self._saved[key] = os.environ.get(key)
            os.environ[key] = value
        self._saved.setdefault("RAY_ADDRESS", os.environ.pop("RAY_ADDRESS", None))

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class _NotMainThread(logging.Filter):
    """Ray warns that it sets no SIGTERM handler when init runs off the main thread;
    starting in the background is the point, and the runner handles signals itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def modules_to_ship(modules: Sequence[str]) -> list[str]:
    """Local paths of the stage modules that Ray workers could not import themselves.

    A module installed in site-packages (or the runner itself, which every node's
    image has) is importable on the workers; a package or a single ``.py`` file
    from a source folder (``my_stages.py`` beside the manifest) is shipped with
    the job through Ray's ``runtime_env={"py_modules": [...]}``.
    """
    paths: list[str] = []
    for top in dict.fromkeys(m.split(".")[0] for m in modules):
        if top in ("runner", "__main__") or top in sys.stdlib_module_names:
            continue
        spec = importlib.util.find_spec(top)
        if spec is None:
            continue
        locations = list(spec.submodule_search_locations or [])
        origin = locations[0] if locations else spec.origin
        if not origin or origin in ("built-in", "frozen"):
            continue
        path = Path(origin)
        if any(part in ("site-packages", "dist-packages") for part in path.parts):
            continue
        if path.suffix == ".py" or path.is_dir():
            paths.append(str(path))
    return paths


# ---------------------------------------------------------------- in the worker


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


_CANCELLED: set[str] = set()
"""Tokens of the runs cancelled that a warm pool actor heard of directly."""


class _FlagClient:
    """A worker's view of one run's cancel flag, read at step boundaries."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._seen = False
        self._held: Any = None

    def is_set(self) -> bool:
        if not self._seen and self.token in _CANCELLED:
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


def _run_branch(task: BranchTask, context: Any, token: str, executor_name: str,
                threads: int = 1) -> BranchOutcome:
    """The Ray task: fork the shared context here, run the branch, return its outcome."""
    import ray

    cancel = _FlagClient(token)
    task = replace(task, context=fork_context(context))
    with native_thread_limit(threads):
        outcome = execute_branch(task, cancel, (), executor_name)
    if outcome.context is not None and type(outcome.context) is type(context):
        outcome.context = strip_untouched(outcome.context, context)
    node = ray.get_runtime_context().get_node_id()
    for record in outcome.records:
        record.node = node
    outcome.node = node
    return outcome


def _warm_worker(modules: Sequence[str]) -> int:
    """A task that imports what the branches will (their stage modules, the libraries
    their stages declare) in a worker before any branch needs it; returns its pid."""
    from runner.orchestration.warm import import_modules

    import_modules(modules)
    return os.getpid()


class _DriverFlag:
    """The driver's cancel flag: a local event, published to Ray once connected."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.token = secrets.token_hex(8)
        self.ray: Any = None
        self.pool: WarmPool | None = None
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


def _session_objects(ray: Any) -> Any:
    """The remote functions, made once per Ray connection."""
    job = ray.get_runtime_context().get_job_id()
    if _SESSION.get("job") != job:
        _SESSION.update(job=job, fn=ray.remote(_run_branch),
                        warm=ray.remote(num_cpus=1)(_warm_worker))
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
    _session_objects(ray)
    return [_SESSION["warm"].remote(list(modules)) for _ in range(count)]


def _wrap(flag: CancelFlag) -> _DriverFlag:
    wrapped = _DriverFlag()
    if flag.is_set():
        wrapped.event.set()
    return wrapped


# ---------------------------------------------------------------- the executor


def _task_options(resources: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"max_retries": int(resources.get("max_retries", 0)),
                               "retry_exceptions": False}
    for key in ("num_cpus", "num_gpus", "memory"):
        if key in resources:
            options[key] = resources[key]
    if resources.get("resources"):
        options["resources"] = dict(resources["resources"])
    return options


class RayComputeEngine(Executor):
    """Runs the branches of parallel groups as Ray tasks."""

    name = "ray"
    isolates = True
    live_hooks = False

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
        self.startup_s: float | None = None
        """Seconds ``ray.init`` took (None until it ran)."""
        self._remote_fn: Any = None
        self._local: LocalRayEnv | None = None
        self._pending: dict[Any, BranchTask] = {}
        self._on_pool: dict[Any, Any] = {}
        self.pool: WarmPool | None = None
        """The warm actors branches run on, on a cluster this run did not start."""
        self._ready_event = threading.Event()
        self._released = threading.Event()
        self.num_cpus = num_cpus

    def new_cancel_flag(self) -> CancelFlag:
        return _DriverFlag()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if importlib.util.find_spec("ray") is None:  # a usage error now, not in a thread
            import_ray()
        with self._lock:
            if self._ray is not None or self._starting is not None:
                return
            self._starting = threading.Thread(target=self._connect, name="runner-ray-init",
                                              daemon=True)
            self._starting.start()

    def _connect(self) -> None:
        try:
            if not self.address and self._local is None:
                self._local = LocalRayEnv()
                self._local.apply()
            ray = import_ray()
            logging.getLogger("ray._private.worker").addFilter(_NotMainThread())
            began = time.perf_counter()
            if not ray.is_initialized():
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
                if self.address:
                    address = self.address

                    def connect() -> None:
                        probe(address)
                        ray.init(**options)

                    connect_with_retries(connect, ray.shutdown, where=address,
                                         attempts=connect_attempts())
                else:
                    ray.init(**options)
                self._owned = True
            self.startup_s = time.perf_counter() - began
            self._remote_fn = _session_objects(ray)
            if self.address and pool_enabled():
                self.pool = WarmPool(ray, self.preload)
                self.pool.warm(self.warm)
            elif self.warm:
                self.warmed = warm_workers(ray, self.preload, count=self.warm)
            self._ray = ray
        except BaseException as exc:
            self._start_error = exc
        finally:
            self._ready_event.set()
        # Ray's processes get a parent-death signal tied to the thread that started
        # them: this thread lives until the run's Ray is shut down.
        if self._start_error is None:
            self._released.wait()

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

    def shutdown(self) -> None:
        thread = self._starting
        if thread is not None:
            self._ready_event.wait()
        with self._lock:
            if self._ray is not None and self._owned:
                self._ray.shutdown()
            self._released.set()
            if thread is not None:
                thread.join()
            self._starting = None
            self._ready_event.clear()
            self._released.clear()
            self._ray = None
            self.pool = None
            self._owned = False
            if self._local is not None:
                self._local.restore()
                self._local = None

    # ------------------------------------------------------------ branches

    def run_branches(
        self, tasks: Sequence[BranchTask], cancel: CancelFlag, hooks: Sequence[RunHook]
    ) -> Iterator[BranchOutcome]:
        if not tasks:
            return
        index = driver_branch_index([task.branch.resources for task in tasks])
        local = DriverBranch(tasks[index], cancel, self.name) if index is not None else None
        try:
            ray = self._ready()
        except BaseException:
            cancel.set()  # the driver's branch stops at its next step
            raise
        if not isinstance(cancel, _DriverFlag):  # a flag the engine did not make
            cancel = _wrap(cancel)
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
            if slot == index:
                continue
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
        while pending or local is not None:
            if local is not None and (local.done.is_set() or not pending):
                local.done.wait()
                yield self._local_outcome(ray, local.outcome)
                local = None
                continue
            done, _ = ray.wait(list(pending), num_returns=1,
                               timeout=None if local is None else 0.02)
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

    @staticmethod
    def _local_outcome(ray: Any, outcome: BranchOutcome) -> BranchOutcome:
        """The driver's branch, its records on the driver's node like a worker's."""
        try:
            node = ray.get_runtime_context().get_node_id()
        except Exception:  # a Ray client has no node of its own
            node = None
        for record in outcome.records:
            record.node = node
        outcome.node = node
        return outcome

    def _outcome(self, ray: Any, ref: Any, task: BranchTask) -> BranchOutcome:
        from ray import exceptions as rex

        try:
            outcome: BranchOutcome = ray.get(ref)
            if outcome.context is not None:
                outcome.context = restore_untouched(outcome.context, task.context)
            return outcome
        except rex.RayTaskError as exc:  # the task itself raised outside a stage
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            if isinstance(cause, StepFailure):
                return BranchOutcome(task.branch.index, failure=cause)
            return worker_failure(task, cause)
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
