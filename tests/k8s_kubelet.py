"""A Job controller, a kubelet and a tiny KubeRay operator for the Kubernetes emulator.

kmock (tests/k8s_emulator.py) stores objects and nothing more: a Job never gets a pod.
:class:`Kubelet` plays the cluster's part from a background thread of the test process,
talking to the emulator with the official client over HTTP, as any controller would::

    with Emulator(tmp_path) as k8s, Kubelet(k8s, workdir=tmp_path / "nodes") as kubelet:
        batch.create_namespaced_job("research", job(run))      # the test's own client
        kubelet.wait_job("runner-nightly-1")                    # until Complete or Failed
        kubelet.pods("runner-nightly-1")                        # the Pod objects
        kubelet.runs("runner-nightly-1")                        # what ran: argv, env, log
        kubelet.kill("runner-nightly-1", reason="OOMKilled")   # or "Evicted"
        kubelet.preempt("runner-nightly-1")                     # SIGTERM, then SIGKILL

What it does, every ``interval`` seconds:

* **Job controller** (one pod at a time: ``completions`` and ``parallelism`` are taken as
  1). An active Job gets a Pod ``<job>-<5 random>`` with the template's labels plus
  ``job-name``, ``batch.kubernetes.io/job-name``, ``controller-uid`` and
  ``batch.kubernetes.io/controller-uid``, and an ownerReference to the Job. The Job's
  status follows: ``active``, ``ready``, ``startTime``, ``succeeded``/``failed``,
  ``completionTime``, and the real controller's conditions (``SuccessCriteriaMet`` +
  ``Complete``; ``FailureTarget`` + ``Failed`` with reason ``BackoffLimitExceeded`` or
  ``DeadlineExceeded``; ``Suspended``). A failed pod is retried ``retry_delay`` s later
  (Kubernetes waits 10 s, 20 s, ...) while the failures are at most ``backoffLimit``;
  ``podFailurePolicy`` rules (``onPodConditions`` DisruptionTarget, ``onExitCodes``) say
  Ignore (retried, not counted), FailJob or Count, as Kubernetes does.
  ``spec.suspend`` stops the pod (not counted as a failure; ``startTime`` reset) until the
  Job is resumed; ``activeDeadlineSeconds`` stops it and fails the Job;
  ``ttlSecondsAfterFinished`` deletes the Job.
* **Garbage collector**: a deleted Job (or one with a ``deletionTimestamp``; its
  ``foregroundDeletion`` finalizer is removed once its pods are gone) has its processes
  stopped and its pods deleted. A RayCluster owned by a Job that does not exist any more
  is deleted, and so is the head Service of a RayCluster that does not exist any more.
* **Kubelet**: a pod's first container runs as a local process, in a process group of
  its own: ``entrypoint`` (default: the ``runner`` console script next to
  ``sys.executable``, as the image's ENTRYPOINT is ``runner``) + the container's
  ``args``; a ``command`` replaces the entrypoint (a ``runner`` command means the
  entrypoint). ``$(VAR)`` in command, args and env values is expanded as Kubernetes does.
  Environment: a clean base (PATH, PYTHONPATH with this repository so ``tests`` imports,
  LANG, PYTHONUNBUFFERED, HOME, HOSTNAME) + ``envFrom`` (Secret / ConfigMap, ``prefix``)
  + ``env`` (``value``; ``valueFrom`` ``fieldRef``, ``secretKeyRef``, ``configMapKeyRef``,
  ``resourceFieldRef`` as the raw quantity). Volumes are folders under
  ``workdir/<namespace>/<pod>/volumes/<name>``: ConfigMaps and Secrets written out from
  their objects, emptyDir empty, a persistentVolumeClaim one folder per claim that every
  pod shares, a ``hostPath`` the host's folder itself (:func:`mount_host_folder`: this
  machine is the node). An env value or argument that starts with a mount path (or an argument
  ``--opt=/path``) is rewritten to the local folder; TMPDIR points at the local ``/tmp``
  when one is mounted; the cwd is the pod's folder (or its rewritten ``workingDir``).
  ``ray_address`` replaces a RAY_ADDRESS whose host is a KubeRay head service
  (``<cluster>-head-svc...``). stdout and stderr go to one log file per pod, which the
  emulator serves as the pod's log (``emulator.pod_logs``).
  A Secret or ConfigMap missing behind ``env``/``envFrom`` keeps the pod Pending with its
  container waiting, reason ``CreateContainerConfigError`` (``secret "x" not found``); one
  missing behind a volume keeps it ``ContainerCreating``, the kubelet's
  ``MountVolume.SetUp failed ...`` message only in a Warning Event (FailedMount), as
  Kubernetes does (the other also as an Event). Both are retried on every pass: the pod
  starts once the object exists.
* **KubeRay operator**: a RayCluster gets, ``ray_delay`` s after it appears,
  ``status.state: ready``, ``head.podIP``/``serviceIP`` 127.0.0.1, ``readyWorkerReplicas``,
  and a head Service ``<name>-head-svc`` (owned by the RayCluster). No Ray runs:
  ``ray_address`` points the runs at the test's own Ray.

Everything goes through the API (a pod's status through ``pods/status``, so watches see
each change), with the User-Agent :data:`~tests.k8s_emulator.INTERNAL_AGENT`: the emulator
neither records these requests nor fails them with injected faults. The one direct access
is the registration of a pod's log file in ``emulator.pod_logs``: HTTP cannot do that.

An exception in the kubelet's thread stops it; the ``wait*`` methods and ``__exit__``
raise it, so a test cannot pass over a broken kubelet. ``__exit__`` kills whatever still
runs (each whole process group) and waits for it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import os
import random
import re
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tests.containers.podrun import expand  # the kubelet's own $(VAR) expansion
from tests.k8s_emulator import INTERNAL_AGENT, RAYCLUSTERS, Emulator, PodLog

ROOT = Path(__file__).resolve().parents[1]
"""The repository: on the pods' PYTHONPATH, so ``tests.*`` stages import."""

NODE = "emulated-node"
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
RAY_GROUP, RAY_VERSION, RAY_PLURAL = RAYCLUSTERS.split("/")
KILL_REASONS = ("OOMKilled", "Evicted")
STOP_REASONS = ("Preempted", "Drained")
"""How :meth:`Kubelet.preempt` stops a pod: the scheduler's preemption, a node drain."""
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet
_FIELD_MAP = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
_DISRUPTION = {"Evicted": ("TerminationByKubelet", "The node was low on resource: memory."),
               "DeadlineExceeded": ("DeadlineExceeded", "Pod was active on the node longer "
                                                        "than the specified deadline"),
               "Suspended": ("DisruptionByJobController", "Job suspended"),
               "Preempted": ("PreemptionByScheduler", "research/high-priority: preempting to "
                                                      "accommodate a higher priority pod"),
               "Drained": ("EvictionByEvictionAPI", "Eviction API: evicting")}


def now_text() -> str:
    """An RFC 3339 timestamp (whole seconds), as the API server writes them."""
    now = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)
    return now.isoformat().replace("+00:00", "Z")


class KubeletError(RuntimeError):
    """The kubelet's thread failed, or a wait ran out."""


class _Waiting(Exception):
    """The container cannot start yet: (reason, message), as the kubelet reports it."""

    def __init__(self, reason: str, message: str, event: str = "Failed") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason, self.message, self.event = reason, message, event


@dataclass(frozen=True)
class PodRun:
    """What the kubelet did for one pod (a snapshot: see :meth:`Kubelet.runs`)."""

    namespace: str
    name: str
    job: str
    folder: Path
    log: Path
    state: str
    """``waiting``, ``running`` or ``terminated``."""
    argv: list[str] | None
    env: dict[str, str] | None
    cwd: Path | None
    pid: int | None
    exit_code: int | None
    reason: str | None
    """How it ended: Completed, Error, OOMKilled, Evicted, DeadlineExceeded, Deleted,
    Suspended, StartError; or why it waits: CreateContainerConfigError, ContainerCreating."""

    def text(self) -> str:
        """The log so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass(eq=False)
class _Pod:
    namespace: str
    name: str
    uid: str
    job: _Job
    seq: int
    folder: Path
    spec: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]
    tick: int
    """The kubelet's pass that made it (a pod list from before cannot show it)."""
    state: str = "waiting"
    waiting: tuple[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    argv: list[str] | None = None
    env: dict[str, str] | None = None
    cwd: Path | None = None
    started_at: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    stop: str | None = None
    """Why the kubelet stops it: OOMKilled, Evicted, DeadlineExceeded, Suspended, Deleted."""
    term_at: float | None = None
    grace: float = 0.0
    log: PodLog = field(init=False)

    def __post_init__(self) -> None:
        self.log = PodLog(self.folder / "container.log")

    @property
    def alive(self) -> bool:
        return self.state in ("waiting", "running")

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def snapshot(self) -> PodRun:
        why = self.reason if self.state == "terminated" else (
            self.waiting[0] if self.waiting else None)
        return PodRun(self.namespace, self.name, self.job.name, self.folder, self.log.path,
                      self.state, list(self.argv) if self.argv is not None else None,
                      dict(self.env) if self.env is not None else None, self.cwd,
                      self.proc.pid if self.proc is not None else None, self.exit_code, why)


@dataclass(eq=False)
class _Job:
    namespace: str
    name: str
    uid: str
    pods: list[_Pod] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    start_time: str | None = None
    started: float | None = None
    completion_time: str | None = None
    finished: str | None = None
    """``Complete`` or ``Failed``."""
    finished_at: float | None = None
    suspended: bool = False
    conditions: list[dict[str, Any]] = field(default_factory=list)
    retry_at: float = 0.0
    gone: bool = False

    @property
    def active(self) -> _Pod | None:
        return next((p for p in reversed(self.pods) if p.alive), None)


@dataclass(frozen=True)
class _Apis:
    client: Any
    core: Any
    batch: Any
    custom: Any

    @classmethod
    def connect(cls, kubeconfig: Path) -> _Apis:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(kubeconfig))
        api.user_agent = f"{INTERNAL_AGENT}/1.0"
        return cls(api, client.CoreV1Api(api), client.BatchV1Api(api),
                   client.CustomObjectsApi(api))

    def close(self) -> None:
        self.client.rest_client.close()
        self.client.close()


def _condition(kind: str, reason: str, message: str, status: str = "True") -> dict[str, Any]:
    when = now_text()
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastProbeTime": when, "lastTransitionTime": when}


def _failure_action(job: dict[str, Any], pod: _Pod) -> str:
    """The Job's podFailurePolicy on a failed pod: the action of the first rule that matches
    (``onPodConditions``: a DisruptionTarget the pod got; ``onExitCodes``), else Count."""
    policy = (job.get("spec") or {}).get("podFailurePolicy") or {}
    conditions = {("DisruptionTarget", "True")} if pod.stop in _DISRUPTION else set()
    for rule in policy.get("rules") or []:
        patterns = {(c.get("type"), c.get("status", "True"))
                    for c in rule.get("onPodConditions") or []}
        codes = rule.get("onExitCodes")
        if patterns & conditions:
            return str(rule["action"])
        if codes and pod.exit_code is not None and \
                (pod.exit_code in codes.get("values", [])) == (codes.get("operator") == "In"):
            return str(rule["action"])
    return "Count"


def mount_host_folder(obj: dict[str, Any], path: str | os.PathLike[str], *,
                      name: str = "host", mount_path: str | None = None) -> dict[str, Any]:
    """Add a ``hostPath`` volume for ``path`` to a Job (or CronJob, or Pod) dict, mounted in
    its first container at ``mount_path`` (default: the same path), e.g. to share an
    artifact folder with the test; returns ``obj``. Only volumes cross into a pod: any
    other path a container is given that starts with a mount path (``/tmp``) is
    rewritten to that volume."""
    spec = obj["spec"]
    spec = (spec.get("jobTemplate") or {}).get("spec", spec)
    pod = spec["template"]["spec"] if "template" in spec else spec
    pod.setdefault("volumes", []).append({"name": name, "hostPath": {
        "path": str(path), "type": "DirectoryOrCreate"}})
    pod["containers"][0].setdefault("volumeMounts", []).append(
        {"name": name, "mountPath": mount_path or str(path)})
    return obj


def _decode(data: Mapping[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", errors="replace")
            for k, v in (data or {}).items()}


class Kubelet:
    """The Job controller, kubelet, garbage collector and KubeRay operator of the tests."""

    def __init__(self, emulator: Emulator, *, workdir: str | os.PathLike[str],
                 ray_address: str | None = None, entrypoint: list[str] | None = None,
                 interval: float = 0.1, retry_delay: float = 1.0, ray_delay: float = 0.3,
                 grace_cap: float = 2.0) -> None:
        """``retry_delay``: seconds from a failed pod to the next one (1 s or more keeps the
        pods' creationTimestamps, whole seconds, in order). ``grace_cap``: the most a
        stopped pod gets from SIGTERM to SIGKILL (else its
        ``terminationGracePeriodSeconds``, 30 by default)."""
        self.emulator = emulator
        self.workdir = Path(workdir)
        self.ray_address = ray_address
        self.entrypoint = list(entrypoint) if entrypoint else [
            str(Path(sys.executable).parent / "runner")]
        self.interval = interval
        self.retry_delay = retry_delay
        self.ray_delay = ray_delay
        self.grace_cap = grace_cap
        self._jobs: dict[str, _Job] = {}  # by uid
        self._gone: dict[str, _Job] = {}  # by uid: deleted, or being deleted
        self._history: list[_Pod] = []
        self._rays: dict[str, dict[str, Any]] = {}  # by uid: seen, ready, namespace, name
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._ticks = 0
        self._own: _Apis | None = None  # the kubelet thread's clients
        self._tests: _Apis | None = None  # the test thread's

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Kubelet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._own = _Apis.connect(self.emulator.kubeconfig)
        self._tests = _Apis.connect(self.emulator.kubeconfig)
        self._thread = threading.Thread(target=self._loop, name="k8s-kubelet", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            if self._thread.is_alive():
                self._error = self._error or KubeletError("the kubelet thread did not stop")
        self._kill_all()
        for apis in (self._own, self._tests):
            if apis is not None:
                apis.close()
        if self._error is not None:
            raise KubeletError(f"the kubelet failed: {self._error!r}") from self._error

    def _kill_all(self) -> None:
        """SIGKILL every process group still there, and reap them."""
        with self._lock:
            pods = [p for p in self._history if p.proc is not None]
            for pod in pods:
                self._signal(pod, signal.SIGKILL)
            for pod in pods:
                assert pod.proc is not None
                try:
                    pod.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self._error = self._error or KubeletError(
                        f"pod {pod.name}: process {pod.proc.pid} survived SIGKILL")
                self._close_log(pod)
            for pod in self._history:
                pod.log.done.set()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    self._tick()
                    self._ticks += 1
                    self._changed.notify_all()
                self._stop.wait(self.interval)
        except BaseException as exc:  # surfaced by wait* and __exit__
            self._error = exc
            self._kill_all()
        finally:
            with self._lock:
                self._changed.notify_all()

    # ------------------------------------------------------------ what tests call

    def wait(self, predicate: Callable[[], Any], *, timeout: float = 60,
             what: str = "the condition") -> Any:
        """Check ``predicate`` after each pass of the kubelet until it is truthy; that value.
        The predicate runs under the kubelet's lock: keep it to cheap looks."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if self._error is not None:
                    raise KubeletError(f"the kubelet failed: {self._error!r}") from self._error
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise KubeletError(f"timed out after {timeout:g} s waiting for {what}")
                if self._thread is None or not self._thread.is_alive():
                    raise KubeletError("the kubelet is not running")
                self._changed.wait(min(left, 1.0))

    def wait_idle(self, timeout: float = 60) -> None:
        """Until, two passes from now or later, every Job is finished or suspended and no
        process runs."""
        target = self._ticks + 2
        self.wait(lambda: self._ticks >= target and not self._busy(), timeout=timeout,
                  what="the kubelet to be idle")

    def _busy(self) -> list[str]:
        return [f"{j.namespace}/{j.name}" for j in self._jobs.values()
                if not (j.finished or j.suspended)] + \
            [p.name for p in self._history if p.proc is not None and not p.exited]

    def wait_job(self, name: str, namespace: str | None = None, *,
                 timeout: float = 120) -> dict[str, Any]:
        """Until Job ``name`` is Complete or Failed; the Job as the API has it then."""
        job = self.wait(lambda: self._job(name, namespace, finished=True), timeout=timeout,
                        what=f"job {name!r} to finish")
        return self._json(self._apis().batch.read_namespaced_job,  # type: ignore[no-any-return]
                          name, job.namespace)

    def wait_running(self, name: str, namespace: str | None = None, *,
                     timeout: float = 60) -> str:
        """Until Job ``name`` has a pod reported Running; that pod's name."""
        def running() -> str | None:
            job = self._job(name, namespace)
            pod = job.active if job is not None else None
            return pod.name if pod is not None and pod.state == "running" else None
        return str(self.wait(running, timeout=timeout, what=f"job {name!r} to run a pod"))

    def _job(self, name: str, namespace: str | None, *, finished: bool = False) -> _Job | None:
        found = [j for j in self._jobs.values()
                 if j.name == name and namespace in (None, j.namespace)]
        if len(found) > 1:
            raise KubeletError(f"job {name!r} is in several namespaces: say which one")
        if found and (found[0].finished or not finished):
            return found[0]
        return None

    def runs(self, job: str, namespace: str | None = None) -> list[PodRun]:
        """What the kubelet did for each of the Job's pods, oldest first (kept after the
        Job and its pods are deleted)."""
        with self._lock:
            return [p.snapshot() for p in self._history
                    if p.job.name == job and namespace in (None, p.namespace)]

    def run(self, pod: str, namespace: str | None = None) -> PodRun:
        """What the kubelet did for pod ``pod``."""
        with self._lock:
            found = [p for p in self._history
                     if p.name == pod and namespace in (None, p.namespace)]
        if not found:
            raise KeyError(f"the kubelet made no pod {pod!r}")
        return found[-1].snapshot()

    def pods(self, job: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The Job's Pod objects as the API has them now, oldest first."""
        with self._lock:
            order = {(p.namespace, p.name): p.seq for p in self._history}
        items = self._json(self._apis().core.list_pod_for_all_namespaces)["items"]
        mine = [p for p in items if (p["metadata"].get("labels") or {}).get("job-name") == job
                and namespace in (None, p["metadata"].get("namespace"))]
        return sorted(mine, key=lambda p: order.get(
            (p["metadata"].get("namespace"), p["metadata"]["name"]), len(order)))

    def kill(self, job: str, reason: str = "OOMKilled", *, namespace: str | None = None,
             timeout: float = 30) -> str:
        """SIGKILL the Job's running container as the kernel's OOM killer (``OOMKilled``:
        exit code 137) or the kubelet's eviction (``Evicted``: the pod Failed with
        ``status.reason: Evicted``) would; returns once the pod says so (its name). It
        counts as a failure of the Job."""
        if reason not in KILL_REASONS:
            raise ValueError(f"reason must be one of {KILL_REASONS}, not {reason!r}")
        with self._lock:
            found = self._job(job, namespace)
            pod = found.active if found is not None else None
            if pod is None or pod.proc is None or pod.exited:
                raise KubeletError(f"job {job!r} has no running container to kill")
            pod.stop = reason
            self._signal(pod, signal.SIGKILL)
        self.wait(lambda: pod.state == "terminated", timeout=timeout,
                  what=f"pod {pod.name} to be reported killed")
        return pod.name

    def preempt(self, job: str, reason: str = "Preempted", *, namespace: str | None = None,
                timeout: float = 60) -> str:
        """Stop the Job's running pod as the scheduler's preemption (``Preempted``) or a node
        drain (``Drained``) does: the pod gets a ``DisruptionTarget`` condition, then SIGTERM
        and, after its grace period (at most ``grace_cap``), SIGKILL. Returns once the pod
        ended (its name); whether it counts as a failure is the Job's podFailurePolicy's."""
        if reason not in STOP_REASONS:
            raise ValueError(f"reason must be one of {STOP_REASONS}, not {reason!r}")
        with self._lock:
            found = self._job(job, namespace)
            pod = found.active if found is not None else None
            if pod is None or pod.proc is None or pod.exited:
                raise KubeletError(f"job {job!r} has no running container to stop")
            self._stop_pod(pod, reason)
        self.wait(lambda: pod.state == "terminated", timeout=timeout,
                  what=f"pod {pod.name} to be stopped")
        return pod.name

    # ------------------------------------------------------------ HTTP

    def _apis(self) -> _Apis:
        """The kubelet thread's clients, or the test thread's own."""
        apis = self._own if threading.current_thread() is self._thread else self._tests
        if apis is None:
            raise KubeletError("the kubelet is not running")
        return apis

    @staticmethod
    def _json(call: Callable[..., Any], *args: Any, ok: tuple[int, ...] = (),
              **kwargs: Any) -> Any:
        """One official-client call; its answer as plain JSON (no models), or None when
        the HTTP status is in ``ok``."""
        from kubernetes.client.exceptions import ApiException

        try:
            response = call(*args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status in ok:
                return None
            raise
        try:
            data = response.data
        finally:
            response.release_conn()
        return json.loads(data) if data else {}

    def _patch_job_status(self, job: _Job, status: dict[str, Any]) -> None:
        self._json(self._apis().batch.patch_namespaced_job_status, job.name, job.namespace,
                   {"status": status}, ok=(404,))

    def _patch_pod_status(self, pod: _Pod, status: dict[str, Any]) -> None:
        self._json(self._apis().core.patch_namespaced_pod_status, pod.name, pod.namespace,
                   {"status": status}, ok=(404,))

    def _delete_pod(self, pod: _Pod) -> None:
        self._json(self._apis().core.delete_namespaced_pod, pod.name, pod.namespace,
                   grace_period_seconds=0, ok=(404,))

    def _event(self, pod: _Pod, reason: str, message: str) -> None:
        when = now_text()
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=10))
        self._json(self._apis().core.create_namespaced_event, pod.namespace, {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{pod.name}.{suffix}", "namespace": pod.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.name,
                               "namespace": pod.namespace, "uid": pod.uid},
            "reason": reason, "message": message, "type": "Warning", "count": 1,
            "firstTimestamp": when, "lastTimestamp": when,
            "source": {"component": "kubelet", "host": NODE}}, ok=(409,))

    # ------------------------------------------------------------ one pass

    def _tick(self) -> None:
        apis = self._apis()
        # RayClusters before Jobs: the owner of any RayCluster listed is in the Job list
        rays = self._json(apis.custom.list_cluster_custom_object, RAY_GROUP, RAY_VERSION,
                          RAY_PLURAL)["items"]
        jobs = self._json(apis.batch.list_job_for_all_namespaces)["items"]
        pods = {(p["metadata"].get("namespace"), p["metadata"]["name"])
                for p in self._json(apis.core.list_pod_for_all_namespaces)["items"]}
        live = {j["metadata"]["uid"] for j in jobs if j["metadata"].get("uid")}
        for uid, job in list(self._jobs.items()):
            if uid not in live:
                self._forget(job)
        for obj in jobs:
            meta = obj["metadata"]
            if not meta.get("uid"):
                continue
            job = self._jobs.get(meta["uid"]) or self._gone.get(meta["uid"]) or \
                self._adopt(obj)
            if meta.get("deletionTimestamp"):  # going: the GC's part
                self._forget(job)
                finalizers = meta.get("finalizers") or []
                if "foregroundDeletion" in finalizers and not any(
                        p.proc is not None and not p.exited for p in job.pods):
                    self._json(apis.batch.patch_namespaced_job, job.name, job.namespace,
                               {"metadata": {"finalizers": [
                                   f for f in finalizers if f != "foregroundDeletion"] or None}},
                               ok=(404,))
                continue
            self._sync_job(job, obj, pods)
        for pod in self._history:  # pods of deleted Jobs; stopped ones past their grace
            if pod.term_at is not None and not pod.exited and pod.proc is not None \
                    and time.monotonic() - pod.term_at >= pod.grace:
                self._signal(pod, signal.SIGKILL)
            if pod.job.gone and pod.state == "running" and pod.exited:
                self._ended(pod, report=False)
        self._sync_rays(rays, live)

    def _adopt(self, obj: dict[str, Any]) -> _Job:
        meta = obj["metadata"]
        job = _Job(meta.get("namespace") or "default", meta["name"], meta["uid"])
        status = obj.get("status") or {}
        done = next((c["type"] for c in status.get("conditions") or []
                     if c.get("type") in ("Complete", "Failed") and c.get("status") == "True"),
                    None)
        if done:  # finished before the kubelet saw it: not its to run
            job.finished, job.finished_at = done, time.monotonic()
        self._jobs[job.uid] = job
        return job

    def _sync_job(self, job: _Job, obj: dict[str, Any], pods: set[tuple[str, str]]) -> None:
        spec = obj.get("spec") or {}
        now = time.monotonic()
        if job.finished:
            ttl = spec.get("ttlSecondsAfterFinished")
            if ttl is not None and job.finished_at is not None and now - job.finished_at >= ttl:
                self._json(self._apis().batch.delete_namespaced_job, job.name, job.namespace,
                           propagation_policy="Background", ok=(404,))
                self._forget(job)
                return
            self._sync_pods(job, obj)  # a pod still stopping
            return
        for pod in job.pods:  # pods deleted behind the kubelet's back
            if pod.alive and pod.tick < self._ticks and (pod.namespace, pod.name) not in pods:
                self._stop_pod(pod, "Deleted", obj)
        if spec.get("suspend"):
            if not job.suspended:
                job.suspended = True
                if job.active is not None:
                    self._stop_pod(job.active, "Suspended")
                self._set_condition(job, _condition("Suspended", "JobSuspended",
                                                    "Job suspended"))
                job.start_time = job.started = None
                self._report_job(job)
            self._sync_pods(job, obj)
            return
        if job.suspended:
            job.suspended = False
            self._set_condition(job, _condition("Suspended", "JobResumed", "Job resumed",
                                                "False"))
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and job.started is not None and now - job.started >= deadline:
            self._fail(job, "DeadlineExceeded", "Job was active longer than specified deadline")
            if job.active is not None:
                self._stop_pod(job.active, "DeadlineExceeded")
            self._report_job(job)
            self._sync_pods(job, obj)
            return
        if job.active is None and now >= job.retry_at:
            self._start_pod(job, obj)
        self._sync_pods(job, obj)

    def _sync_pods(self, job: _Job, obj: dict[str, Any]) -> None:
        for pod in list(job.pods):
            if pod.state == "waiting" and pod.stop is None:
                self._try_start(pod, obj)
            elif pod.state == "running" and pod.exited:
                self._ended(pod)
                self._account(job, pod, obj)

    def _set_condition(self, job: _Job, condition: dict[str, Any]) -> None:
        job.conditions = [c for c in job.conditions if c["type"] != condition["type"]]
        job.conditions.append(condition)

    def _fail(self, job: _Job, reason: str, message: str) -> None:
        self._set_condition(job, _condition("FailureTarget", reason, message))
        self._set_condition(job, _condition("Failed", reason, message))
        job.finished, job.finished_at = "Failed", time.monotonic()

    def _report_job(self, job: _Job) -> None:
        active = job.active
        self._patch_job_status(job, {
            "active": 1 if active is not None else 0,
            "ready": 1 if active is not None and active.state == "running" else 0,
            "terminating": sum(1 for p in job.pods if p.stop and p.proc and not p.exited),
            "succeeded": job.succeeded, "failed": job.failed, "startTime": job.start_time,
            "completionTime": job.completion_time, "conditions": job.conditions or None,
            "uncountedTerminatedPods": {}})

    def _account(self, job: _Job, pod: _Pod, obj: dict[str, Any]) -> None:
        """The Job controller's view of a pod that ended."""
        if job.finished or pod.stop == "Suspended":
            self._report_job(job)
            return
        if pod.exit_code == 0 and pod.stop is None:
            job.succeeded += 1
            message = "Reached expected number of succeeded pods"
            self._set_condition(job, _condition("SuccessCriteriaMet", "CompletionsReached",
                                                message))
            self._set_condition(job, _condition("Complete", "CompletionsReached", message))
            job.finished, job.finished_at = "Complete", time.monotonic()
            job.completion_time = now_text()
        else:
            action = _failure_action(obj, pod)
            if action == "Ignore":  # retried, not counted (a disruption, by the policy)
                job.retry_at = time.monotonic() + self.retry_delay
                self._report_job(job)
                return
            job.failed += 1
            if action == "FailJob":
                self._fail(job, "PodFailurePolicy", f"Container {pod.name} matched a "
                                                     "FailJob rule of the podFailurePolicy")
            elif job.failed > int((obj.get("spec") or {}).get("backoffLimit", 6)):
                self._fail(job, "BackoffLimitExceeded",
                           "Job has reached the specified backoff limit")
            else:
                job.retry_at = time.monotonic() + self.retry_delay
        self._report_job(job)

    def _forget(self, job: _Job) -> None:
        """The Job is gone (or going): stop its pods and delete them, as the GC would."""
        if job.gone:
            return
        job.gone = True
        for pod in job.pods:
            if pod.alive:
                self._stop_pod(pod, "Deleted")
            self._delete_pod(pod)
        self._gone[job.uid] = self._jobs.pop(job.uid, job)

    # ------------------------------------------------------------ pods

    def _start_pod(self, job: _Job, obj: dict[str, Any]) -> None:
        template = (obj.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        name = f"{job.name[:58]}-{''.join(random.choices(_NAME_CHARS, k=5))}"
        labels = {**(tmeta.get("labels") or {}), **dict.fromkeys(JOB_NAME_LABELS, job.name),
                  **dict.fromkeys(UID_LABELS, job.uid)}
        annotations = dict(tmeta.get("annotations") or {})
        spec = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 30,
                **(template.get("spec") or {}), "nodeName": NODE}
        meta: dict[str, Any] = {
            "name": name, "namespace": job.namespace, "labels": labels,
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job.name,
                                 "uid": job.uid, "controller": True,
                                 "blockOwnerDeletion": True}]}
        if annotations:
            meta["annotations"] = annotations
        created = self._json(self._apis().core.create_namespaced_pod, job.namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec,
            "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [{
                "type": "PodScheduled", "status": "True", "lastProbeTime": None,
                "lastTransitionTime": now_text()}]}}, ok=(409,))
        if created is None:  # the name was taken: next pass
            return
        pod = _Pod(job.namespace, name, created["metadata"].get("uid", ""), job,
                   len(self._history), self.workdir / job.namespace / name, spec, labels,
                   annotations, self._ticks)
        pod.folder.mkdir(parents=True, exist_ok=True)
        job.pods.append(pod)
        self._history.append(pod)
        if job.start_time is None:
            job.start_time, job.started = now_text(), time.monotonic()
        self._report_job(job)

    def _container_status(self, pod: _Pod, state: dict[str, Any], *, ready: bool = False,
                          started: bool = False) -> dict[str, Any]:
        container = (pod.spec.get("containers") or [{}])[0]
        return {"name": container.get("name", ""), "image": container.get("image", ""),
                "imageID": "", "containerID": f"containerd://{pod.uid.replace('-', '')}",
                "ready": ready, "started": started, "restartCount": 0, "state": state,
                "lastState": {}}

    def _try_start(self, pod: _Pod, obj: dict[str, Any]) -> None:
        try:
            argv, env, cwd = self._prepare(pod)
        except _Waiting as why:
            if pod.waiting != (why.reason, why.message):
                pod.waiting = (why.reason, why.message)
                # a volume's trouble is only in the Event: the container just waits
                said = {} if why.reason == "ContainerCreating" else {"message": why.message}
                self._patch_pod_status(pod, {
                    "phase": "Pending", "containerStatuses": [self._container_status(
                        pod, {"waiting": {"reason": why.reason, **said}})]})
                self._event(pod, why.event, why.message)
            return
        pod.argv, pod.env, pod.cwd, pod.waiting = argv, env, cwd, None
        pod.log_file = pod.log.path.open("ab", buffering=0)
        self.emulator.pod_logs[(pod.namespace, pod.name)] = pod.log
        pod.started_at = now_text()
        try:
            pod.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=pod.log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        except OSError as exc:
            pod.state, pod.exit_code, pod.reason = "terminated", 128, "StartError"
            self._close_log(pod)
            self._report_pod(pod, "Failed", {"terminated": {
                "exitCode": 128, "reason": "StartError",
                "message": f"failed to create containerd task: exec: {argv[0]!r}: "
                           f"{exc.strerror or exc}",
                "startedAt": pod.started_at, "finishedAt": now_text()}})
            self._account(pod.job, pod, obj)
            return
        pod.state = "running"
        pod.grace = min(float(pod.spec.get("terminationGracePeriodSeconds") or 0),
                        self.grace_cap)
        self._report_pod(pod, "Running", {"running": {"startedAt": pod.started_at}},
                         ready=True)
        self._report_job(pod.job)

    def _report_pod(self, pod: _Pod, phase: str, state: dict[str, Any], *,
                    ready: bool = False) -> None:
        when = now_text()
        why = None if ready else "PodCompleted" if phase == "Succeeded" else "PodFailed"
        conditions = [{"type": t, "status": str(s), "lastTransitionTime": when}
                      for t, s in (("PodReadyToStartContainers", True), ("Initialized", True),
                                   ("Ready", ready), ("ContainersReady", ready),
                                   ("PodScheduled", True))]
        for c in conditions[2:4]:
            if why:
                c["reason"] = why
        status: dict[str, Any] = {
            "phase": phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
            "startTime": pod.started_at or when, "conditions": conditions,
            "containerStatuses": [self._container_status(
                pod, state, ready=ready, started=phase == "Running")]}
        if pod.stop in _DISRUPTION:
            reason, message = _DISRUPTION[pod.stop]
            conditions.append({"type": "DisruptionTarget", "status": "True",
                               "reason": reason, "message": message,
                               "lastTransitionTime": when})
        if pod.stop == "Evicted":
            container = (pod.spec.get("containers") or [{}])[0].get("name", "")
            status.update(reason="Evicted", message=(
                "The node was low on resource: memory. Threshold quantity: 100Mi, available: "
                f"42Mi. Container {container} was using 2Gi, request is 2Gi, has larger "
                "consumption of memory. "))
        elif pod.stop == "DeadlineExceeded":
            status.update(reason="DeadlineExceeded", message=_DISRUPTION[pod.stop][1])
        self._patch_pod_status(pod, status)

    @staticmethod
    def _signal(pod: _Pod, sig: signal.Signals) -> None:
        if pod.proc is None or pod.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pod.proc.pid, sig)

    def _stop_pod(self, pod: _Pod, reason: str, obj: dict[str, Any] | None = None) -> None:
        """Stop a pod the Kubernetes way: SIGTERM, then SIGKILL after its grace period.
        ``obj``: the Job, when a pod that never ran counts as a failure (deleted)."""
        if pod.stop is None:
            pod.stop = reason
        if pod.state == "waiting":  # nothing runs yet
            pod.state, pod.reason = "terminated", reason
            pod.log.done.set()
            if reason != "Deleted":
                self._report_pod(pod, "Failed", {"terminated": {
                    "exitCode": 137, "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the pod was "
                               "terminated", "finishedAt": now_text()}})
            if obj is not None and reason == "Deleted":
                self._account(pod.job, pod, obj)
            return
        if pod.term_at is None:
            pod.term_at = time.monotonic()
            self._signal(pod, signal.SIGTERM)

    def _close_log(self, pod: _Pod) -> None:
        if pod.log_file is not None:
            pod.log_file.close()
            pod.log_file = None
        pod.log.done.set()

    def _ended(self, pod: _Pod, *, report: bool = True) -> None:
        """The container's process exited: the Pod says how."""
        assert pod.proc is not None
        code = pod.proc.returncode
        pod.exit_code = code if code >= 0 else 128 - code
        pod.state = "terminated"
        self._close_log(pod)
        reason = "OOMKilled" if pod.stop == "OOMKilled" else \
            "Completed" if pod.exit_code == 0 else "Error"
        pod.reason = pod.stop if pod.stop not in (None, "OOMKilled") else reason
        if not report or pod.stop == "Deleted":
            return
        terminated: dict[str, Any] = {
            "exitCode": pod.exit_code, "reason": reason, "startedAt": pod.started_at,
            "finishedAt": now_text(), "containerID": f"containerd://{pod.uid.replace('-', '')}"}
        if code < 0:
            terminated["signal"] = -code
        phase = "Succeeded" if pod.exit_code == 0 and pod.stop is None else "Failed"
        self._report_pod(pod, phase, {"terminated": terminated})

    # ------------------------------------------------------------ the container

    def _prepare(self, pod: _Pod) -> tuple[list[str], dict[str, str], Path]:
        """argv, environment and cwd of the pod's first container, or _Waiting."""
        containers = pod.spec.get("containers") or []
        if not containers:
            raise _Waiting("CreateContainerConfigError", "the pod has no container")
        container = containers[0]
        volumes = self._volumes(pod)
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in volumes:
                raise _Waiting("CreateContainerConfigError",
                               f"cannot find volume {mount['name']!r} to mount into container "
                               f"{container.get('name')!r}")
            local = volumes[mount["name"]] / (mount.get("subPath") or "")
            local.mkdir(parents=True, exist_ok=True)
            mounts[mount["mountPath"].rstrip("/") or "/"] = local
        longest_first = sorted(mounts.items(), key=lambda m: len(m[0]), reverse=True)

        def localise(value: str) -> str:
            for path, folder in longest_first:
                if value == path or value.startswith(path.rstrip("/") + "/"):
                    return str(folder) + value[len(path):]
            return value

        def rewrite(value: str) -> str:
            if value.startswith("/"):
                return localise(value)
            key, sep, rest = value.partition("=")
            return f"{key}={localise(rest)}" if sep and key.startswith("-") else value

        declared = self._container_env(pod, container)
        command = [expand(a, declared) for a in container.get("command") or []]
        args = [expand(a, declared) for a in container.get("args") or []]
        if command and Path(command[0]).name != "runner":
            argv = [rewrite(a) for a in command + args]
        else:
            argv = self.entrypoint + [rewrite(a) for a in command[1:] + args]

        env = self._base_env(pod)
        if "/tmp" in mounts:
            env["TMPDIR"] = str(mounts["/tmp"])
        env.update({k: rewrite(v) for k, v in declared.items()})
        if self.ray_address and env.get("RAY_ADDRESS"):
            host = re.sub(r"^[a-z]+://", "", env["RAY_ADDRESS"]).split(":")[0].split("/")[0]
            if host.split(".")[0].endswith("-head-svc"):
                env["RAY_ADDRESS"] = self.ray_address
        cwd = pod.folder
        if container.get("workingDir"):
            wanted = container["workingDir"]
            cwd = Path(localise(wanted)) if localise(wanted) != wanted else \
                pod.folder / "root" / wanted.lstrip("/")  # not on a volume: the pod's own
            cwd.mkdir(parents=True, exist_ok=True)
        return argv, env, cwd

    def _base_env(self, pod: _Pod) -> dict[str, str]:
        paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                               if p and p != str(ROOT)]
        return {"PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                         os.environ.get("PATH", os.defpath)]),
                "PYTHONPATH": os.pathsep.join(paths), "LANG": "C.UTF-8",
                "PYTHONUNBUFFERED": "1", "HOME": str(pod.folder), "HOSTNAME": pod.name}

    def _source(self, kind: str, namespace: str, name: str, optional: bool) -> \
            dict[str, str] | None:
        """A ConfigMap's data, or a Secret's data decoded; _Waiting when it is missing."""
        core = self._apis().core
        read = core.read_namespaced_config_map if kind == "configmap" else \
            core.read_namespaced_secret
        found = self._json(read, name, namespace, ok=(404,))
        if found is None:
            if optional:
                return None
            raise _Waiting("CreateContainerConfigError", f'{kind} "{name}" not found')
        if kind == "configmap":
            return {**(found.get("data") or {}), **_decode(found.get("binaryData"))}
        # stringData is write-only on a real server; kmock keeps it as posted
        return {**_decode(found.get("data")), **(found.get("stringData") or {})}

    def _container_env(self, pod: _Pod, container: dict[str, Any]) -> dict[str, str]:
        """The container's own variables: envFrom first, then env (each may use the ones
        before it as ``$(VAR)``)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            for key, kind in (("configMapRef", "configmap"), ("secretRef", "secret")):
                ref = source.get(key)
                if ref:
                    data = self._source(kind, pod.namespace, ref["name"],
                                        bool(ref.get("optional")))
                    env.update({f"{source.get('prefix') or ''}{k}": v
                                for k, v in (data or {}).items()})
        for var in container.get("env") or []:
            source = var.get("valueFrom")
            value: str | None
            if source is None:
                value = expand(var.get("value") or "", env)
            elif "fieldRef" in source:
                value = self._field(pod, source["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in source or "configMapKeyRef" in source:
                kind = "secret" if "secretKeyRef" in source else "configmap"
                ref = source.get("secretKeyRef") or source["configMapKeyRef"]
                data = self._source(kind, pod.namespace, ref["name"], bool(ref.get("optional")))
                if data is not None and ref["key"] not in data and not ref.get("optional"):
                    title = "Secret" if kind == "secret" else "ConfigMap"
                    raise _Waiting("CreateContainerConfigError",
                                   f"couldn't find key {ref['key']} in {title} "
                                   f"{pod.namespace}/{ref['name']}")
                value = None if data is None else data.get(ref["key"])
            elif "resourceFieldRef" in source:
                section, _, what = source["resourceFieldRef"]["resource"].partition(".")
                value = str(((container.get("resources") or {}).get(section) or {})
                            .get(what, "0"))
            else:
                value = None
            if value is not None:
                env[var["name"]] = value
        return env

    def _field(self, pod: _Pod, path: str) -> str:
        m = _FIELD_MAP.match(path)
        if m is not None:
            return (pod.labels if m.group(1) == "labels" else pod.annotations).get(m.group(2),
                                                                                   "")
        fields = {"metadata.name": pod.name, "metadata.namespace": pod.namespace,
                  "metadata.uid": pod.uid, "spec.nodeName": NODE,
                  "spec.serviceAccountName": pod.spec.get("serviceAccountName") or "default",
                  "status.podIP": "127.0.0.1", "status.podIPs": "127.0.0.1",
                  "status.hostIP": "127.0.0.1", "status.hostIPs": "127.0.0.1"}
        if path not in fields:
            raise _Waiting("CreateContainerConfigError", f"unsupported fieldPath: {path}")
        return fields[path]

    def _volumes(self, pod: _Pod) -> dict[str, Path]:
        """Each volume as a local folder (ConfigMaps and Secrets written out)."""
        folders: dict[str, Path] = {}
        for volume in pod.spec.get("volumes") or []:
            name = volume["name"]
            target = pod.folder / "volumes" / name
            if "configMap" in volume or "secret" in volume:
                kind = "configmap" if "configMap" in volume else "secret"
                source = volume.get("configMap") or volume.get("secret") or {}
                ref = str(source.get("name") if kind == "configmap" else source.get("secretName"))
                try:
                    data = self._source(kind, pod.namespace, ref, bool(source.get("optional")))
                except _Waiting as why:
                    raise _Waiting("ContainerCreating", f'MountVolume.SetUp failed for volume '
                                   f'"{name}" : {why.message}', "FailedMount") from None
                target.mkdir(parents=True, exist_ok=True)
                for item in source.get("items") or [{"key": k, "path": k} for k in data or {}]:
                    if data is not None and item["key"] in data:
                        path = target / item["path"]
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(data[item["key"]])
            elif "persistentVolumeClaim" in volume:
                target = self.workdir / "claims" / pod.namespace / \
                    volume["persistentVolumeClaim"]["claimName"]
            elif "hostPath" in volume:  # this machine is the node (DirectoryOrCreate)
                target = Path(volume["hostPath"]["path"])
            target.mkdir(parents=True, exist_ok=True)  # emptyDir and the rest: empty
            folders[name] = target
        return folders

    # ------------------------------------------------------------ KubeRay

    def _sync_rays(self, rays: list[dict[str, Any]], live_jobs: set[str]) -> None:
        custom, core = self._apis().custom, self._apis().core
        seen = set()
        for ray in rays:
            meta = ray["metadata"]
            uid, namespace, name = meta.get("uid", ""), meta.get("namespace"), meta["name"]
            owners = [o for o in meta.get("ownerReferences") or []
                      if o.get("kind") == "Job" and o.get("apiVersion", "").startswith("batch/")]
            if owners and not any(o.get("uid") in live_jobs for o in owners):
                self._json(custom.delete_namespaced_custom_object, RAY_GROUP, RAY_VERSION,
                           namespace, RAY_PLURAL, name, ok=(404,))  # the GC's part
                continue
            seen.add(uid)
            state = self._rays.setdefault(uid, {"seen": time.monotonic(), "ready": False,
                                                "namespace": namespace, "name": name})
            if state["ready"] or time.monotonic() - state["seen"] < self.ray_delay \
                    or meta.get("deletionTimestamp"):
                continue
            workers = sum(int(g.get("replicas") or 0)
                          for g in (ray.get("spec") or {}).get("workerGroupSpecs") or [])
            self._json(custom.patch_namespaced_custom_object_status, RAY_GROUP, RAY_VERSION,
                       namespace, RAY_PLURAL, name, {"status": {
                           "state": "ready", "readyWorkerReplicas": workers,
                           "availableWorkerReplicas": workers,
                           "desiredWorkerReplicas": workers,
                           "head": {"podIP": "127.0.0.1", "serviceIP": "127.0.0.1",
                                    "podName": f"{name}-head-{uid[:5]}",
                                    "serviceName": f"{name}-head-svc"},
                           "endpoints": {"client": "10001", "dashboard": "8265",
                                         "gcs-server": "6379"},
                           "lastUpdateTime": now_text()}}, ok=(404,))
            head = {"ray.io/cluster": name, "ray.io/node-type": "head"}
            self._json(core.create_namespaced_service, namespace, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": f"{name}-head-svc", "namespace": namespace,
                             "labels": head, "ownerReferences": [{
                                 "apiVersion": "ray.io/v1", "kind": "RayCluster", "name": name,
                                 "uid": uid, "controller": True, "blockOwnerDeletion": True}]},
                "spec": {"type": "ClusterIP", "clusterIP": "127.0.0.1", "selector": head,
                         "ports": [{"name": n, "port": p, "protocol": "TCP", "targetPort": p}
                                   for n, p in (("client", 10001), ("dashboard", 8265),
                                                ("gcs-server", 6379))]}}, ok=(409,))
            state["ready"] = True
        for uid in [u for u in self._rays if u not in seen]:
            gone = self._rays.pop(uid)
            self._json(core.delete_namespaced_service, f"{gone['name']}-head-svc",
                       gone["namespace"], ok=(404,))
