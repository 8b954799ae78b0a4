"""Ending a run: ``cancel`` deletes its Job (its pods with it), its RayCluster and its
ConfigMap; ``release_ray`` deletes only a finished run's RayCluster."""

from __future__ import annotations

from kubernetes import client

from runner.k8s.api import KubeApi
from runner.k8s.builders import manifest_name, ray_cluster_name
from runner.k8s.look import RAY_GROUP, RAY_PLURAL, RAY_VERSION, job_of
from runner.k8s.status import name_of

__all__ = ["cancel", "delete_config_map", "release_ray"]


def cancel(api: KubeApi, run_id: str) -> list[str]:
    """Delete the run's Job (its pods with it: foreground), its RayCluster and its
    ConfigMap; the objects deleted, as ``kind/name``."""
    name = name_of(job_of(api, run_id))
    body = client.V1DeleteOptions(propagation_policy="Foreground")
    api.must(lambda: api.batch.delete_namespaced_job(name, api.namespace, body=body),
             verb="delete", resource="job", name=name)
    deleted = [f"job/{name}"]
    if release_ray(api, run_id):
        deleted.append(f"raycluster/{ray_cluster_name(run_id)}")
    if delete_config_map(api, manifest_name(run_id)):
        deleted.append(f"configmap/{manifest_name(run_id)}")
    return deleted


def release_ray(api: KubeApi, run_id: str) -> bool:
    """Delete the run's RayCluster (it is also deleted with the Job); False: none."""
    ray = ray_cluster_name(run_id)
    return api.call(lambda: api.custom.delete_namespaced_custom_object(
        RAY_GROUP, RAY_VERSION, api.namespace, RAY_PLURAL, ray),
        verb="delete", resource="rayclusters", name=ray, ok=frozenset({404})) is not None


def delete_config_map(api: KubeApi, name: str) -> bool:
    """Delete a ConfigMap; False when there was none."""
    return api.call(lambda: api.core.delete_namespaced_config_map(name, api.namespace),
                    verb="delete", resource="configmaps", name=name,
                    ok=frozenset({404})) is not None
