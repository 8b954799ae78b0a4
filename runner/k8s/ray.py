"""A parallel run's Ray on Kubernetes: its KubeRay ``RayCluster``, its auth token Secret
and the NetworkPolicy in front of its head -- all three owned by the run's Job.

    token = ray_token_secret(run, token=secrets.token_hex(32), owner=job)
    cluster = ray_cluster(run, owner=job)        # a dict: ray.io/v1 has no client model
    policy = network_policy(run, owner=job)

The Ray pods are as hard as the Job's pod: non-root, read-only root filesystem (Ray
writes its session under /tmp and its object store in /dev/shm, both emptyDirs), no
capabilities, RuntimeDefault seccomp, no service-account token. Ray's token
authentication is on (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN`` from the Secret) for
the head, the workers and the run's pod, and only the run's pods (and the Ray pods among
themselves) may reach the head. The Ray pods get no storage credentials: the run's pod
writes every checkpoint, the branches only compute.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from runner.k8s.builders import (
    RAY_CLIENT_PORT,
    RAY_TOKEN_KEY,
    RayClusterSpec,
    RunSpec,
    container_security,
    dns_label,
    job_name,
    labels,
    owner_reference,
    pod_security,
    ray_cluster_name,
    secret,
    to_dicts,
)

__all__ = ["HEAD_PORTS", "network_policy", "network_policy_name", "ray_cluster",
           "ray_token_name", "ray_token_secret", "token_secret_of"]

HEAD_PORTS = {"client": RAY_CLIENT_PORT, "gcs-server": 6379, "dashboard": 8265}
"""The head's ports a run's pod may reach (KubeRay's names)."""


def ray_token_name(run_id: str) -> str:
    """The Secret with the run's Ray auth token (key ``RAY_AUTH_TOKEN``)."""
    return dns_label(f"{job_name(run_id)}-ray-token")


def network_policy_name(run_id: str) -> str:
    return dns_label(f"{ray_cluster_name(run_id)}-head")


def token_secret_of(run: RunSpec) -> str:
    """The token Secret the run uses: its own, or one named in ``RayClusterSpec``."""
    spec = run.ray or RayClusterSpec()
    return spec.token_secret or ray_token_name(run.run_id)


def ray_token_secret(run: RunSpec, *, token: str,
                     owner: client.V1Job | None = None) -> client.V1Secret:
    """The run's Ray auth token, made per run and deleted with its Job."""
    return secret(run, name=ray_token_name(run.run_id), data={RAY_TOKEN_KEY: token},
                  component="ray-token", owner=owner)


def _owned(metadata: dict[str, Any], owner: client.V1Job | None) -> dict[str, Any]:
    if owner is not None and owner.metadata is not None and owner.metadata.uid:
        metadata["ownerReferences"] = [owner_reference(owner)]
    return metadata


def _ray_pod(run: RunSpec, kind: str, cpu: str, memory: str) -> dict[str, Any]:
    """A Ray pod template spec; KubeRay adds ``ray start``, the ports and the probes."""
    spec = run.ray or RayClusterSpec()
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "RAY_AUTH_MODE", "value": "token"},
           {"name": RAY_TOKEN_KEY, "valueFrom": {"secretKeyRef": {
               "name": token_secret_of(run), "key": RAY_TOKEN_KEY}}}]
    pod = client.V1PodSpec(
        containers=[], service_account_name=run.service_account,
        automount_service_account_token=False, enable_service_links=False,
        security_context=pod_security())
    doc: dict[str, Any] = to_dicts([pod])[0]
    doc["containers"] = [{
        "name": f"ray-{kind}", "image": spec.image or run.image,
        "imagePullPolicy": run.image_pull_policy, "env": env,
        "resources": {"requests": {"cpu": cpu, "memory": memory},
                      "limits": {"cpu": cpu, "memory": memory}},
        "securityContext": to_dicts([container_security()])[0],
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "dshm", "mountPath": "/dev/shm"}]}]
    doc["volumes"] = [{"name": "tmp", "emptyDir": {}},
                      {"name": "dshm", "emptyDir": {"medium": "Memory",
                                                    "sizeLimit": spec.shared_memory}}]
    return doc


def ray_cluster(run: RunSpec, *, owner: client.V1Job | None = None) -> dict[str, Any]:
    """A KubeRay ``RayCluster`` for a parallel run, owned by its Job (deleted with it)."""
    spec = run.ray or RayClusterSpec()
    metadata = _owned({"name": ray_cluster_name(run.run_id), "namespace": run.namespace,
                       "labels": labels(run, "ray")}, owner)
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": metadata,
        "spec": {
            "rayVersion": spec.ray_version,
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "127.0.0.1"},
                "template": {"metadata": {"labels": labels(run, "ray-head")},
                             "spec": _ray_pod(run, "head", spec.head_cpu,
                                              spec.head_memory)}},
            "workerGroupSpecs": [{
                "groupName": "workers", "replicas": spec.worker_replicas,
                "minReplicas": spec.worker_replicas, "maxReplicas": spec.worker_replicas,
                "rayStartParams": {},
                "template": {"metadata": {"labels": labels(run, "ray-worker")},
                             "spec": _ray_pod(run, "worker", spec.worker_cpu,
                                              spec.worker_memory)}}],
        },
    }


def _peers(run: RunSpec, *components: str) -> list[dict[str, Any]]:
    instance = job_name(run.run_id)
    return [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": instance,
                                             "app.kubernetes.io/component": c}}}
            for c in components]


def network_policy(run: RunSpec, *, owner: client.V1Job | None = None) -> dict[str, Any]:
    """Only the run's pods reach the head's client, GCS and dashboard ports; the Ray pods
    reach each other on any port (Ray's node, object and worker ports are many)."""
    instance = job_name(run.run_id)
    metadata = _owned({"name": network_policy_name(run.run_id), "namespace": run.namespace,
                       "labels": labels(run, "ray")}, owner)
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/instance": instance},
                            "matchExpressions": [{
                                "key": "app.kubernetes.io/component", "operator": "In",
                                "values": ["ray-head", "ray-worker"]}]},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": _peers(run, "ray-head", "ray-worker")},
                {"from": _peers(run, "run"),
                 "ports": [{"protocol": "TCP", "port": p} for p in HEAD_PORTS.values()]},
            ],
        },
    }
