"""A run's state in words, from the objects the API gives: its Job, its pods and the
Events about them. Pure: no request is made here (:mod:`runner.k8s.look` fetches), so
every case is a unit test on plain client objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client

from runner.errors import ExecutionError

__all__ = ["STUCK", "PodState", "RunFailedError", "RunStatus", "check",
           "container_env",
           "mount_failure", "pod_order", "pod_state", "run_status", "waiting_to_mount"]

STUCK = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                   "CreateContainerConfigError", "CreateContainerError", "ErrImageNeverPull"})
"""Pod waiting reasons that a Job never gets over by itself: ``wait`` reports them."""

_REASONS = {
    "BackoffLimitExceeded": "the pod failed on every attempt (backoffLimit reached)",
    "DeadlineExceeded": "the run took longer than activeDeadlineSeconds and was stopped",
    "OOMKilled": "the pod ran out of memory (OOMKilled): raise its memory limit",
    "Evicted": "the node evicted the pod (it ran short of memory or disk)",
    "ImagePullBackOff": "the image cannot be pulled: check the name, tag and pull secret",
    "ErrImagePull": "the image cannot be pulled: check the name, tag and pull secret",
    "InvalidImageName": "the image name is not valid",
    "CreateContainerConfigError": "the pod's configuration cannot be made: a Secret or "
                                  "ConfigMap it names is missing",
    "Error": "the container exited with an error",
}


@dataclass(frozen=True)
class PodState:
    """One attempt of a run: its pod, phase and, when it went wrong, why in words."""

    name: str
    phase: str
    reason: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class RunStatus:
    """A run's Job as words: pending, running, succeeded or failed, and why."""

    run_id: str
    job: str
    phase: str
    active: int
    succeeded: int
    failed: int
    reason: str | None = None
    pods: tuple[PodState, ...] = ()
    ray: str | None = None
    """The state of the run's RayCluster (None without one)."""
    started: str | None = None
    finished: str | None = None

    @property
    def done(self) -> bool:
        return self.phase in ("succeeded", "failed")

    def to_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["pods"] = [dict(p.__dict__) for p in self.pods]
        return doc


class RunFailedError(ExecutionError):
    """The run's Job failed, or its pod cannot start (exit 1, as a failed local run).

    Fields: ``run_id``, ``phase`` (``failed``, or ``pending`` for a pod that cannot
    start), ``reason`` in words, ``pod`` (the pod that cannot start, else None) and the
    whole ``status``.
    """

    def __init__(self, message: str, *, status: RunStatus, pod: str | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.run_id = status.run_id
        self.phase = status.phase
        self.pod = pod
        self.reason = reason if reason is not None else status.reason


def check(status: RunStatus) -> bool:
    """True once the run succeeded; :class:`RunFailedError` if it failed or cannot start."""
    if status.phase == "succeeded":
        return True
    if status.phase == "failed":
        raise RunFailedError(f"run {status.run_id!r} failed: {status.reason or 'failed'}",
                        status=status)
    stuck = _stuck(status.pods)
    if stuck is not None:
        raise RunFailedError(f"run {status.run_id!r} cannot start: pod {stuck.name}: "
                        f"{stuck.reason}; the Job stays (runner cancel "
                        f"{status.run_id} deletes it)", status=status, pod=stuck.name,
                        reason=stuck.reason)
    return False


def run_status(run_id: str, job: client.V1Job, pods: tuple[PodState, ...], *,
               ray: str | None = None) -> RunStatus:
    """The run's status from its Job and its pods' states (``ray``: its RayCluster's)."""
    st = job.status or client.V1JobStatus()
    conditions = {c.type: c for c in (st.conditions or []) if c.status == "True"}
    reason = None
    if "Complete" in conditions:
        phase = "succeeded"
    elif "Failed" in conditions:
        phase = "failed"
        cond = conditions["Failed"]
        reason = _words(cond.reason, cond.message)
        why = next((p.reason for p in reversed(pods) if p.reason), None)
        if why and cond.reason in (None, "BackoffLimitExceeded"):
            reason = f"{reason}; last attempt: {why}"
    elif job.spec is not None and job.spec.suspend:
        phase = "pending"
        reason = ("suspended (until what it owns exists: its Secrets, its Ray cluster; "
                  f"runner submit --run-id {run_id} again finishes it)")
    elif st.active and (not pods or any(p.phase != "Pending" for p in pods)):
        phase = "running"  # (a Job counts a pod still being made as active)
    else:
        phase = "pending"
    stuck = _stuck(pods) if phase in ("pending", "running") else None
    if stuck is not None:
        reason = stuck.reason
    return RunStatus(run_id, name_of(job), phase, st.active or 0, st.succeeded or 0,
                     st.failed or 0, reason, pods, ray,
                     _when(st.start_time), _when(st.completion_time))


def _stuck(pods: tuple[PodState, ...]) -> PodState | None:
    """The latest pod that waits for what will not come by itself."""
    return next((p for p in reversed(pods) if p.phase == "Pending" and p.reason), None)


def pod_state(pod: client.V1Pod) -> PodState:
    """One pod's phase, and why in words when it failed or cannot start."""
    st = pod.status or client.V1PodStatus()
    name = name_of(pod)
    phase = st.phase or "Pending"
    if st.reason:  # Evicted, DeadlineExceeded, ...
        return PodState(name, phase, _words(st.reason, st.message))
    for cs in st.container_statuses or []:
        state = cs.state or client.V1ContainerState()
        if state.terminated is not None:
            term = state.terminated
            if term.reason not in (None, "Completed") or (term.exit_code or 0) != 0:
                said = _words(term.reason if term.reason != "Error" else None, term.message)
                return PodState(name, phase, f"{said}, exit code {term.exit_code}"
                                if term.reason in (None, "Error") else said, term.exit_code)
            return PodState(name, phase, None, term.exit_code)
        if state.waiting is not None and state.waiting.reason in STUCK:
            return PodState(name, phase, _words(state.waiting.reason, state.waiting.message))
    return PodState(name, phase)


def waiting_to_mount(pod: client.V1Pod, *, now: datetime, grace: float) -> float | None:
    """Seconds the pod has been ``ContainerCreating`` when longer than ``grace`` (a
    volume it names may be missing: its Events say), else None."""
    st = pod.status or client.V1PodStatus()
    waiting = [cs.state.waiting for cs in st.container_statuses or []
               if cs.state is not None and cs.state.waiting is not None]
    if st.phase not in (None, "Pending") or not waiting \
            or waiting[0].reason != "ContainerCreating":
        return None
    born = dig(pod, "metadata", "creation_timestamp")
    age = (now - born).total_seconds() if isinstance(born, datetime) else 0.0
    return age if age >= grace else None


def mount_failure(pod: str, events: list[client.CoreV1Event], *,
                  age: float) -> PodState | None:
    """The pod as stuck when a FailedMount Event says a volume's source is not found
    (the kubelet says so nowhere else), else None."""
    said = sorted((e for e in events
                   if e.reason == "FailedMount" and "not found" in (e.message or "")
                   and dig(e, "involved_object", "name") == pod),
                  key=lambda e: _when(e.last_timestamp) or "")
    if not said:
        return None
    return PodState(pod, "Pending", f"a volume cannot be mounted after {age:.0f} s "
                    f"({said[-1].message})")


def container_env(job: client.V1Job) -> dict[str, str]:
    """The plain environment of the Job's containers."""
    containers: Any = dig(job, "spec", "template", "spec", "containers") or []
    return {e.name: e.value or "" for c in containers for e in c.env or []}


def pod_order(pod: client.V1Pod) -> tuple[str, str]:
    """Oldest attempt first."""
    return (_when(dig(pod, "metadata", "creation_timestamp")) or "", name_of(pod))


def dig(obj: Any, *path: str) -> Any:
    """``obj.a.b.c`` for ``path`` (a, b, c), None where any step is missing."""
    for attr in path:
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


def name_of(obj: Any) -> str:
    """An API object's name (``?`` when it has none)."""
    return str(dig(obj, "metadata", "name") or "?")


def _when(value: Any) -> str | None:
    if value is None:
        return None
    iso = getattr(value, "isoformat", None)
    return str(iso()) if callable(iso) else str(value)


def _words(reason: str | None, message: str | None) -> str:
    said = _REASONS.get(reason or "", reason or "failed")
    return f"{said} ({message})" if message else said
