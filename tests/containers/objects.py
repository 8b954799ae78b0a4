"""The Pods our objects make, as the Job and CronJob controllers would make them, and the
node's folder a test shares with a pod.

    pod = pod_of(job)                                  # Job, CronJob or Pod -> Pod
    with_host_folder(job, "/artifacts")                # a hostPath volume at /artifacts
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from typing import Any

from tests.containers.podrun import PodRunError

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' generateName alphabet


def pod_of(obj: Mapping[str, Any], *, suffix: str | None = None,
           scheduled_minute: int | None = None, uid: str | None = None) -> dict[str, Any]:
    """The Pod a Job, a CronJob (its Job ``<cronjob>-<scheduled minute>``) or a Pod makes:
    name ``<job>-<suffix>``, the template's labels plus the Job controller's (``job-name``,
    ``controller-uid`` and their ``batch.kubernetes.io/`` forms)."""
    kind, meta = obj.get("kind"), obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {**meta, "namespace": namespace,
                             "uid": meta.get("uid") or uid or _uid()},
                "spec": obj["spec"]}
    if kind == "CronJob":
        minute = scheduled_minute if scheduled_minute is not None else 29_000_000
        job = {"kind": "Job", "metadata": {"name": f"{meta['name']}-{minute}",
                                           "namespace": namespace},
               "spec": obj["spec"]["jobTemplate"]["spec"]}
        return pod_of(job, suffix=suffix, uid=uid)
    if kind != "Job":
        raise PodRunError(f"{kind}/{meta.get('name')}: not a Job, CronJob or Pod")
    template = obj["spec"]["template"]
    job_uid = uid or _uid()
    tail = suffix or "".join(random.choices(_NAME_CHARS, k=5))
    labels = {**((template.get("metadata") or {}).get("labels") or {}),
              "batch.kubernetes.io/controller-uid": job_uid, "controller-uid": job_uid,
              "batch.kubernetes.io/job-name": meta["name"], "job-name": meta["name"]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{meta['name']}-{tail}", "namespace": namespace,
                         "uid": _uid(), "labels": labels,
                         "annotations": dict((template.get("metadata") or {})
                                             .get("annotations") or {})},
            "spec": template["spec"]}


def _uid() -> str:
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


def with_host_folder(obj: dict[str, Any], mount_path: str, *,
                     name: str = "host") -> dict[str, Any]:
    """Add a ``hostPath`` volume ``mount_path`` to a Job, CronJob or Pod dict, mounted at
    the same path in its first container (the node's folder the test shares with the
    pod; map it with ``host_paths``). Returns ``obj``."""
    spec = obj["spec"]
    spec = (spec.get("jobTemplate") or {}).get("spec", spec)
    pod = spec["template"]["spec"] if "template" in spec else spec
    pod.setdefault("volumes", []).append(
        {"name": name, "hostPath": {"path": mount_path, "type": "Directory"}})
    pod["containers"][0].setdefault("volumeMounts", []).append(
        {"name": name, "mountPath": mount_path})
    return obj


