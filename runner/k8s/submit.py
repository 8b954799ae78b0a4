"""Submitting a run: its manifest ConfigMap and its Job, and what the Job owns (the
store's key Secret; for a parallel run its Ray token Secret, NetworkPolicy and
RayCluster, made while the Job waits suspended)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from runner.k8s.api import KubeApi
from runner.k8s.builders import (
    ARTIFACT_KEY_ENV,
    RunSpec,
    artifact_key_name,
    config_map,
    job,
    job_name,
    manifest_name,
    ray_client_address,
    ray_cluster_name,
    secret,
)
from runner.k8s.errors import ClusterError, NotFoundError
from runner.k8s.look import RAY_GROUP, RAY_PLURAL, RAY_VERSION, ray_state, read_job
from runner.k8s.ray import (
    network_policy,
    network_policy_name,
    ray_cluster,
    ray_token_secret,
    token_secret_of,
)

__all__ = ["RayWait", "Submitted", "create_secret", "submit"]


@dataclass(frozen=True)
class Submitted:
    """What ``submit`` did: created the run, or attached to the one already there."""

    run_id: str
    job: str
    namespace: str
    attached: bool
    ray_cluster: str | None = None


@dataclass(frozen=True)
class RayWait:
    """How long ``submit`` waits for a parallel run's Ray head, and how often it looks."""

    timeout: float = 600.0
    poll: float = 1.0


def submit(api: KubeApi, run: RunSpec, *, ray_address: str | None = None,
           artifact_key: str | None = None, ray_wait: RayWait = RayWait()) -> Submitted:
    """Create the manifest ConfigMap and the Job; the same run id again attaches to the
    Job already there instead of failing. Whatever the Job owns, it starts suspended
    until that exists (an attach finishes it if it was cut short)."""
    name = job_name(run.run_id)
    with_ray = run.ray is not None and ray_address is None
    if artifact_key is not None and run.artifact_key_secret != artifact_key_name(run.run_id):
        raise ValueError("artifact_key needs run.artifact_key_secret = "
                         "artifact_key_name(run.run_id)")
    owns = with_ray or artifact_key is not None
    existing = read_job(api, name)
    attached = existing is not None
    if existing is None:
        existing, attached = _create(api, run, suspend=owns, ray_address=ray_client_address(
            run) if with_ray else ray_address, with_ray=with_ray)
    cluster = ray_cluster_name(run.run_id) if with_ray else None
    spec = existing.spec
    if spec is not None and spec.suspend:  # ours, waiting for what it owns (or cut short)
        if not owns:
            raise ClusterError(f"job {name!r} is suspended and this run has nothing to "
                               f"wait for: resume it with kubectl or "
                               f"runner cancel {run.run_id}")
        if artifact_key is not None:
            create_secret(api, secret(run, name=artifact_key_name(run.run_id),
                                      data={ARTIFACT_KEY_ENV: artifact_key},
                                      component="artifact-key", owner=existing))
        if with_ray:
            _start_ray(api, run, existing, wait=ray_wait)
        api.call(lambda: api.batch.patch_namespaced_job(
            name, api.namespace, {"spec": {"suspend": False}}),
            verb="patch", resource="jobs", name=name)
    return Submitted(run.run_id, name, api.namespace, attached=attached,
                     ray_cluster=cluster)


def _create(api: KubeApi, run: RunSpec, *, suspend: bool, ray_address: str | None,
            with_ray: bool) -> tuple[client.V1Job, bool]:
    """The ConfigMap and the Job; the Job and whether it was there already (a 409: made
    meanwhile by someone else, or a lost answer to our own create)."""
    name = job_name(run.run_id)
    api.call(lambda: api.core.create_namespaced_config_map(api.namespace, config_map(run)),
             verb="create", resource="configmaps", name=manifest_name(run.run_id),
             ok=frozenset({409}))
    body = job(run, ray_address=ray_address,
               ray_token=token_secret_of(run) if with_ray else None, suspend=suspend)
    created = api.call(lambda: api.batch.create_namespaced_job(api.namespace, body),
                       verb="create", resource="jobs", name=name, ok=frozenset({409}))
    found = created if created is not None else read_job(api, name)
    if found is None:
        raise NotFoundError(f"job {name!r} vanished right after it was created "
                            f"in namespace {api.namespace!r}")
    return found, created is None


def create_secret(api: KubeApi, body: client.V1Secret) -> None:
    """Create a Secret; one already there (an attach) is kept as it is."""
    name = body.metadata.name if body.metadata else None
    api.call(lambda: api.core.create_namespaced_secret(api.namespace, body),
             verb="create", resource="secrets", name=name, ok=frozenset({409}))


def _start_ray(api: KubeApi, run: RunSpec, owner: client.V1Job, *, wait: RayWait) -> str:
    """The run's token Secret, NetworkPolicy and RayCluster, owned by its Job; returns
    once the head is ready."""
    if run.ray is not None and run.ray.token_secret is None:
        create_secret(api, ray_token_secret(run, token=secrets.token_hex(32), owner=owner))
    policy: Any = network_policy(run, owner=owner)  # a dict, as the API takes it
    api.call(lambda: api.networking.create_namespaced_network_policy(api.namespace, policy),
             verb="create", resource="networkpolicies",
             name=network_policy_name(run.run_id), ok=frozenset({409}))
    name = ray_cluster_name(run.run_id)
    body = ray_cluster(run, owner=owner)
    api.call(lambda: api.custom.create_namespaced_custom_object(
        RAY_GROUP, RAY_VERSION, api.namespace, RAY_PLURAL, body),
        verb="create", resource="rayclusters", name=name, ok=frozenset({409}))
    deadline = time.monotonic() + wait.timeout
    while True:
        state = ray_state(api, name)
        if state == "ready":
            return name
        if state == "failed":
            raise ClusterError(f"raycluster {name!r} failed to start in namespace "
                               f"{api.namespace!r}: see kubectl describe raycluster {name}")
        if time.monotonic() > deadline:
            raise ClusterError(
                f"raycluster {name!r} was not ready after {wait.timeout:.0f} s (state "
                f"{state or 'unknown'}); is the KubeRay operator installed? The job stays "
                f"suspended: submit the same --run-id again to keep waiting, or "
                f"runner cancel {run.run_id}")
        time.sleep(wait.poll)
