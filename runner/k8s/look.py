"""Reading a run from the cluster: its Job, its pods, its RayCluster, and its status
(the words are :mod:`runner.k8s.status`'s; this module only fetches)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from runner.k8s.api import KubeApi
from runner.k8s.builders import RUN_ID_LABEL, job_name, ray_cluster_name
from runner.k8s.errors import NotFoundError
from runner.k8s.status import (
    PodState,
    RunStatus,
    container_env,
    mount_failure,
    name_of,
    pod_order,
    pod_state,
    run_status,
    waiting_to_mount,
)

__all__ = ["MOUNT_GRACE", "RAY_GROUP", "RAY_PLURAL", "RAY_VERSION", "job_of", "pods",
           "ray_state", "read_job", "runs", "status_of"]

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayclusters"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
MOUNT_GRACE = 120.0
"""Seconds a pod may wait for a missing ConfigMap, Secret or claim behind one of its
volumes before it counts as stuck (GitOps tools may apply the Job first)."""


def read_job(api: KubeApi, name: str) -> client.V1Job | None:
    """The Job ``name``, None when there is none."""
    return api.call(lambda: api.batch.read_namespaced_job(name, api.namespace),
                    verb="get", resource="jobs", name=name, ok=frozenset({404}))


def job_of(api: KubeApi, run_id: str) -> client.V1Job:
    """The run's Job: ``runner-<id>`` as submitted, or a scheduled run's own Job (a
    CronJob's Job is named ``<schedule>-<n>`` and that name is its run id)."""
    name = job_name(run_id)
    found = read_job(api, name)
    if found is None and run_id != name:
        other = read_job(api, run_id) if _is_dns_label(run_id) else None
        labels = (other.metadata.labels or {}) if other and other.metadata else {}
        if labels.get("app.kubernetes.io/name") == "runner":
            found = other
    if found is None:
        raise NotFoundError(f"run {run_id!r} not found in namespace {api.namespace!r} "
                            f"(no job {name!r})")
    return found


def pods(api: KubeApi, job: str) -> list[client.V1Pod]:
    """The Job's pods, oldest first (filtered here too: not every server filters)."""
    found = api.must(lambda: api.core.list_namespaced_pod(
        api.namespace, label_selector=f"{JOB_NAME_LABEL}={job}"),
        verb="list", resource="pods")
    mine = [p for p in found.items if p.metadata is not None and
            ((p.metadata.labels or {}).get(JOB_NAME_LABEL) == job
             or (p.metadata.labels or {}).get("job-name") == job)]
    return sorted(mine, key=pod_order)


def status_of(api: KubeApi, run_id: str, job: client.V1Job, *,
              mount_grace: float = MOUNT_GRACE) -> RunStatus:
    """The run's status: its Job, its pods (and their Events for one that waits on a
    volume longer than ``mount_grace``), its RayCluster's state when it has one."""
    states = tuple(_mount_stuck(api, p, grace=mount_grace) or pod_state(p)
                   for p in pods(api, name_of(job)))
    ray = None
    address = container_env(job).get("RAY_ADDRESS", "")
    if job.spec is not None and "-head-svc" in address:
        ray = ray_state(api, ray_cluster_name(run_id)) or "absent"
    return run_status(run_id, job, states, ray=ray)


def _mount_stuck(api: KubeApi, pod: client.V1Pod, *, grace: float) -> PodState | None:
    """A pod still ``ContainerCreating`` after ``grace`` because a volume names something
    that does not exist. The kubelet says so only in a FailedMount Event; without the
    right to list events, the pod just keeps waiting."""
    age = waiting_to_mount(pod, now=datetime.now(UTC), grace=grace)
    if age is None:
        return None
    name = name_of(pod)
    found = api.call(lambda: api.core.list_namespaced_event(
        api.namespace, field_selector=f"involvedObject.name={name},reason=FailedMount"),
        verb="list", resource="events", ok=frozenset({401, 403, 404}))
    return mount_failure(name, list(found.items) if found is not None else [], age=age)


def ray_state(api: KubeApi, name: str) -> str | None:
    """``ready`` once the RayCluster's head pod is, else its state (None: none there)."""
    found = api.call(lambda: api.custom.get_namespaced_custom_object(
        RAY_GROUP, RAY_VERSION, api.namespace, RAY_PLURAL, name),
        verb="get", resource="rayclusters", name=name, ok=frozenset({404}))
    if not isinstance(found, dict):
        return None
    status = found.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []
                  if isinstance(c, dict)}
    if conditions.get("HeadPodReady") == "True":  # KubeRay >= 1.2; `state` is deprecated
        return "ready"
    state = status.get("state")
    return str(state) if state else None


def runs(api: KubeApi) -> list[str]:
    """Run ids of the Jobs the controller made in the namespace."""
    found = api.must(lambda: api.batch.list_namespaced_job(
        api.namespace, label_selector=RUN_ID_LABEL), verb="list", resource="jobs")
    ids: list[Any] = [((j.metadata and j.metadata.labels) or {}).get(RUN_ID_LABEL)
                      for j in found.items]
    return sorted(str(i) for i in ids if i)


def _is_dns_label(text: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", text))
