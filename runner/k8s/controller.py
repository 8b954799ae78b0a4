"""The controller: submit a run as a Job, look at it, cancel it.

    ctl = Controller.connect(namespace="research")       # kubeconfig or in-cluster
    ctl.submit(run)                                      # ConfigMap + Job (attach if there)
    ctl.status("nightly-1")                              # phase, pods, reason in words
    ctl.cancel("nightly-1")                              # the Job, its pods, its ConfigMap

Configuration is found as kubectl finds it: in a pod, the service account; else
``KUBECONFIG`` or ``~/.kube/config``, with ``--context`` to choose. Every API failure
becomes one message in the project's own error types (:mod:`runner.k8s.errors`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from runner.k8s.builders import (
    RUN_ID_LABEL,
    RunSpec,
    config_map,
    job,
    job_name,
    manifest_name,
)
from runner.k8s.errors import ClusterError, explain

__all__ = ["Controller", "RunStatus", "Submitted"]

T = TypeVar("T")
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Submitted:
    """What ``submit`` did: created the run, or attached to the one already there."""

    run_id: str
    job: str
    namespace: str
    attached: bool


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Controller:
    """Talks to one namespace of one cluster with the official client."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.server = str(getattr(api.configuration, "host", "") or "")

    @classmethod
    def connect(cls, namespace: str | None = None, *, context: str | None = None,
                kubeconfig: str | None = None) -> Controller:
        """Configuration as kubectl finds it; the namespace from the flag, the context,
        or the pod's service account, else ``default``."""
        configuration = client.Configuration()
        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and kubeconfig is None \
            and context is None
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)
                found = (IN_CLUSTER_NAMESPACE.read_text().strip()
                         if IN_CLUSTER_NAMESPACE.exists() else None)
            else:
                config.load_kube_config(config_file=kubeconfig, context=context,
                                        client_configuration=configuration)
                _, active = config.list_kube_config_contexts(config_file=kubeconfig)
                if context is not None:
                    contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                    active = next((c for c in contexts if c["name"] == context), active)
                found = (active or {}).get("context", {}).get("namespace")
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ClusterError(f"no usable Kubernetes configuration ({where}): {exc}") from None
        return cls(client.ApiClient(configuration), namespace or found or "default")

    def _error(self, exc: BaseException, verb: str, resource: str,
               name: str | None = None) -> Exception:
        return explain(exc, verb=verb, resource=resource, name=name,
                       namespace=self.namespace, server=self.server)

    def _call(self, fn: Callable[[], T], *, verb: str, resource: str,
              name: str | None = None) -> T:
        try:
            return fn()
        except (ApiException, OSError, ValueError) as exc:  # urllib3: refused is an OSError
            raise self._error(exc, verb, resource, name) from None
        except Exception as exc:
            if type(exc).__module__.startswith("urllib3"):
                raise self._error(exc, verb, resource, name) from None
            raise

    # ------------------------------------------------------------ submit

    def submit(self, run: RunSpec, *, ray_address: str | None = None) -> Submitted:
        """Create the manifest ConfigMap and the Job; the same run id again attaches
        to the Job already there instead of failing."""
        name = job_name(run.run_id)
        existing = self._find_job(run.run_id)
        if existing is not None:
            return Submitted(run.run_id, existing, self.namespace, attached=True)
        body = config_map(run)
        try:
            self.core.create_namespaced_config_map(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:  # a ConfigMap left by an earlier attempt is fine
                raise self._error(exc, "create", "configmaps", manifest_name(run.run_id)) from None
        except Exception as exc:
            raise self._error(exc, "create", "configmaps", manifest_name(run.run_id)) from None
        try:
            self.batch.create_namespaced_job(self.namespace, job(run, ray_address=ray_address))
        except ApiException as exc:
            if exc.status == 409:  # created meanwhile by someone else: attach
                return Submitted(run.run_id, name, self.namespace, attached=True)
            raise self._error(exc, "create", "jobs", name) from None
        except Exception as exc:
            raise self._error(exc, "create", "jobs", name) from None
        return Submitted(run.run_id, name, self.namespace, attached=False)

    def _find_job(self, run_id: str) -> str | None:
        name = job_name(run_id)
        try:
            self.batch.read_namespaced_job(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(exc, "get", "jobs", name) from None
        except Exception as exc:
            raise self._error(exc, "get", "jobs", name) from None
        return name

    # ------------------------------------------------------------ look and cancel

    def status(self, run_id: str) -> RunStatus:
        name = job_name(run_id)
        found = self._call(lambda: self.batch.read_namespaced_job(name, self.namespace),
                           verb="get", resource="job", name=name)
        st = found.status or client.V1JobStatus()
        conditions = {c.type: c for c in (st.conditions or [])}
        reason = None
        if "Complete" in conditions and conditions["Complete"].status == "True":
            phase = "succeeded"
        elif "Failed" in conditions and conditions["Failed"].status == "True":
            phase = "failed"
            cond = conditions["Failed"]
            reason = _words(cond.reason, cond.message)
        elif st.active:
            phase = "running"
        else:
            phase = "pending"
        return RunStatus(run_id, name, phase, st.active or 0, st.succeeded or 0,
                         st.failed or 0, reason)

    def cancel(self, run_id: str) -> list[str]:
        """Delete the run's Job (its pods with it: foreground) and its ConfigMap."""
        name = job_name(run_id)
        deleted = []
        body = client.V1DeleteOptions(propagation_policy="Foreground")
        self._call(lambda: self.batch.delete_namespaced_job(name, self.namespace, body=body),
                   verb="delete", resource="job", name=name)
        deleted.append(f"job/{name}")
        try:
            self.core.delete_namespaced_config_map(manifest_name(run_id), self.namespace)
            deleted.append(f"configmap/{manifest_name(run_id)}")
        except ApiException as exc:
            if exc.status != 404:
                raise self._error(exc, "delete", "configmaps", manifest_name(run_id)) from None
        return deleted

    def runs(self) -> list[str]:
        """Run ids of the Jobs this controller made in the namespace."""
        found = self._call(lambda: self.batch.list_namespaced_job(
            self.namespace, label_selector=RUN_ID_LABEL), verb="list", resource="jobs")
        ids = [((j.metadata and j.metadata.labels) or {}).get(RUN_ID_LABEL)
               for j in found.items]
        return sorted(i for i in ids if i)


_REASONS = {
    "BackoffLimitExceeded": "the pod failed on every attempt (backoffLimit reached)",
    "DeadlineExceeded": "the run took longer than activeDeadlineSeconds and was stopped",
    "OOMKilled": "the pod ran out of memory (OOMKilled): raise its memory limit",
    "Evicted": "the node evicted the pod (it ran short of memory or disk)",
    "ImagePullBackOff": "the image cannot be pulled: check the name, tag and pull secret",
    "ErrImagePull": "the image cannot be pulled: check the name, tag and pull secret",
}


def _words(reason: str | None, message: str | None) -> str:
    said = _REASONS.get(reason or "", reason or "failed")
    return f"{said} ({message})" if message else said
