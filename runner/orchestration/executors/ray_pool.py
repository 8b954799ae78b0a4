"""A warm pool of Ray actors that run branches, kept across runs on a running cluster.

Each Ray job starts its worker processes cold: every one imports Ray, the runner,
pandas and the stages' libraries (scikit-learn) before its first branch runs,
which costs each run more seconds than the shipped pipelines' branches take. On
a cluster the run did not start itself (``RAY_ADDRESS``), branches instead run
on detached actors that outlive the run and that the next run finds again:

- named ``runner-pool-<key>-<i>`` in the ``runner`` namespace, where ``key``
  fingerprints the code a branch would run (the files of every module the driver
  has loaded from outside site-packages, the runner's and the stages' included;
  the top files of the libraries the stages import; Python and ``sys.path``):
  changed code gets new actors, never stale ones;
- each imports the plan's modules when it starts (while the driver runs the
  steps before the group) and runs one branch at a time;
- each holds no CPU while alive (Ray's default for an actor: one CPU to be
  placed, none once running) and ends itself after ``RUNNER_RAY_POOL_IDLE_S``
  seconds (default 600) without a branch; a killed one is restarted by Ray.

A branch whose ``resources`` ask for anything (CPUs, GPUs, memory, custom
resources, retries) runs as a plain Ray task, as do all branches on a Ray the
run starts itself. ``RUNNER_RAY_POOL=0`` turns the pool off.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["POOL_ENV", "POOL_IDLE_ENV", "WarmPool", "code_key", "pool_enabled", "poolable"]

log = logging.getLogger("runner")

POOL_ENV = "RUNNER_RAY_POOL"
POOL_IDLE_ENV = "RUNNER_RAY_POOL_IDLE_S"
NAMESPACE = "runner"


def pool_enabled() -> bool:
    """False when ``RUNNER_RAY_POOL`` says 0/false/no/off."""
    return os.environ.get(POOL_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def idle_seconds() -> float:
    """How long a pool actor waits for a branch before it ends (RUNNER_RAY_POOL_IDLE_S)."""
    try:
        return max(1.0, float(os.environ.get(POOL_IDLE_ENV, "600")))
    except ValueError:
        return 600.0


def poolable(resources: Mapping[str, Any]) -> bool:
    """A branch asking for no resources and no retries runs on the pool."""
    return not any(resources.get(key) for key in
                   ("num_cpus", "num_gpus", "memory", "resources", "max_retries"))


def _site(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def _code_files(modules: Sequence[str]) -> Iterable[str]:
    """The files whose change must retire a pool: every module the driver loaded from
    outside site-packages and the standard library, and the top file of each library
    ``modules`` come from (a new version replaces it)."""
    stdlib = (str(Path(os.__file__).parent),)
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if name and not name.startswith(stdlib) and not _site(Path(name)):
            yield name
    for top in dict.fromkeys(m.split(".")[0] for m in modules):
        if top in sys.stdlib_module_names:
            continue
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin not in ("built-in", "frozen"):
            yield spec.origin


def code_key(modules: Sequence[str]) -> str:
    """A short fingerprint of the code a branch of this driver would run."""
    digest = hashlib.sha256(repr((sys.version, sys.executable, sys.path, sorted(modules))
                                 ).encode())
    for name in sorted(set(_code_files(modules))):
        try:
            stat = Path(name).stat()
        except OSError:
            continue
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


class _PoolActor:
    """One warm worker: imports the plan's modules once, then runs branches."""

    def __init__(self, modules: Sequence[str], idle_s: float) -> None:
        from runner.orchestration.warm import import_modules

        import_modules(modules)
        self._last = time.monotonic()
        self._busy = False
        threading.Thread(target=self._expire, args=(idle_s,), name="runner-pool-idle",
                         daemon=True).start()

    def pid(self) -> int:
        return os.getpid()

    def cancel(self, token: str) -> None:
        """Run ``token`` is cancelled: its branch here stops at its next step (called in
        the actor's own "control" group, beside the branch it runs)."""
        from runner.orchestration.executors.ray_tasks import CANCELLED

        CANCELLED.add(token)

    def run(self, *args: Any) -> Any:
        from runner.orchestration.executors.ray_tasks import run_branch

        self._busy = True
        try:
            return run_branch(*args)
        finally:
            self._busy = False
            self._last = time.monotonic()

    def _expire(self, idle_s: float) -> None:
        while True:
            time.sleep(min(idle_s, 30.0))
            if not self._busy and time.monotonic() - self._last >= idle_s:
                import ray

                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return


class WarmPool:
    """The pool actors this driver's code may use on the connected cluster."""

    def __init__(self, ray: Any, modules: Sequence[str], *, runtime_env: Mapping[str, Any]
                 | None = None) -> None:
        self.ray = ray
        self.modules = list(modules)
        self.key = code_key(self.modules)
        self.size = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._cls = ray.remote(concurrency_groups={"control": 1})(_PoolActor)
        self._runtime_env = dict(runtime_env or {})
        self._actors: dict[int, Any] = {}

    def actor(self, index: int) -> Any:
        """The ``index``-th actor (modulo the cluster's CPUs), found or started."""
        slot = index % self.size
        if slot not in self._actors:
            options: dict[str, Any] = {
                "name": f"runner-pool-{self.key}-{slot}", "namespace": NAMESPACE,
                "get_if_exists": True, "lifetime": "detached", "max_restarts": -1,
                "max_task_retries": 0, "max_concurrency": 1}
            if self._runtime_env:
                options["runtime_env"] = self._runtime_env
            self._actors[slot] = self._cls.options(**options).remote(self.modules,
                                                                     idle_seconds())
        return self._actors[slot]

    def warm(self, count: int) -> None:
        """Find or start the first ``count`` actors now (their imports run meanwhile)."""
        for index in range(min(count, self.size)):
            self.actor(index)

    def cancel(self, token: str) -> None:
        """Tell every actor this driver used that run ``token`` is cancelled."""
        for actor in list(self._actors.values()):
            try:
                actor.cancel.options(concurrency_group="control").remote(token)
            except Exception as exc:  # Ray going down: the branches are being stopped
                log.debug("could not tell a pool actor of the cancellation: %s", exc)

    def kill(self, actor: Any) -> None:
        """Stop a branch running on ``actor`` (Ray restarts the actor for later runs)."""
        try:
            self.ray.kill(actor, no_restart=False)
        except Exception as exc:  # gone already, or Ray is going down
            log.debug("could not stop a pool actor: %s", exc)
