"""Pure builders: a pipeline run as Kubernetes objects (no API calls here).

    run = RunSpec(pipeline="alpha.full", run_id="nightly-1", namespace="research",
                  image="ghcr.io/acme/runner:0.1.0", manifest=text)
    objects = [config_map(run), job(run)]          # official client models
    print(to_yaml(objects))                        # what `runner submit --dry-run` prints

The Job's pod runs the same ``runner run`` as a laptop, hardened: non-root,
read-only root filesystem with an emptyDir at /tmp, no privilege escalation, no
capabilities, the RuntimeDefault seccomp profile. A retried pod resumes the run
from its last checkpoint (``--resume``). Credentials only ever arrive through
Secret references. With parallel branches on, a RayCluster (``ray.io/v1``) owned
by the Job runs them.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import client

__all__ = ["RayClusterSpec", "RunSpec", "Schedule", "config_map", "cron_job", "job",
           "job_name", "labels", "manifest_name", "ray_client_address", "ray_cluster",
           "ray_cluster_name", "to_dicts", "to_yaml"]

APP = "runner"
RUN_ID_LABEL = "runner.dev/run-id"
PIPELINE_LABEL = "runner.dev/pipeline"
UID = 10001
MANIFEST_DIR = "/etc/runner"
FORWARDED_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                 "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED",
                 "RUNNER_LOG_FORMAT")


def _dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text (lowercase, [a-z0-9-], trimmed, hashed if long)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"
    if len(slug) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        slug = f"{slug[: limit - 9].rstrip('-')}-{digest}"
    return slug


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "x"


@dataclass(frozen=True)
class RayClusterSpec:
    """The KubeRay cluster a parallel run gets."""

    ray_version: str = "2.60.0"
    image: str | None = None
    """Defaults to the run's image (which has the ray extra)."""
    head_cpu: str = "1"
    head_memory: str = "2Gi"
    worker_replicas: int = 2
    worker_cpu: str = "1"
    worker_memory: str = "2Gi"


@dataclass(frozen=True)
class RunSpec:
    """One pipeline run, as the controller submits it."""

    pipeline: str
    run_id: str
    namespace: str
    image: str
    manifest: str
    """The manifest's JSON text, shipped in a ConfigMap."""
    artifacts: str | None = None
    executor: str | None = None
    parallel: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    storage_options: Mapping[str, str] = field(default_factory=dict)
    """fsspec options for the artifact store (``--storage-option``; never credentials)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Plain environment (never secrets: use ``secret_env``)."""
    secret_env: Sequence[str] = ()
    """Names of Secrets whose keys become environment variables (AWS_*, OTLP headers)."""
    traceparent: str | None = None
    service_account: str | None = None
    image_pull_policy: str = "IfNotPresent"
    cpu: str = "1"
    memory: str = "2Gi"
    backoff_limit: int = 2
    active_deadline_seconds: int | None = 6 * 3600
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    ray: RayClusterSpec | None = None


def job_name(run_id: str) -> str:
    return _dns_label(f"{APP}-{run_id}")


def manifest_name(run_id: str) -> str:
    return _dns_label(f"{APP}-{run_id}-manifest")


def ray_cluster_name(run_id: str) -> str:
    """The run's RayCluster; KubeRay names its head Service ``<name>-head-svc``."""
    return _dns_label(f"{job_name(run_id)}-ray", 40)


RAY_CLIENT_PORT = 10001


def ray_client_address(run: RunSpec) -> str:
    """The Ray client address of the run's RayCluster, as the Job's pod reaches it (the
    pod is a Ray client, not a node of the cluster)."""
    return (f"ray://{ray_cluster_name(run.run_id)}-head-svc.{run.namespace}.svc:"
            f"{RAY_CLIENT_PORT}")


def labels(run: RunSpec, component: str = "run") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": job_name(run.run_id),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "runner-controller",
        RUN_ID_LABEL: _label_value(run.run_id),
        PIPELINE_LABEL: _label_value(run.pipeline),
    }


def _meta(name: str, run: RunSpec, component: str,
          annotations: Mapping[str, str] | None = None) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, namespace=run.namespace,
                               labels=labels(run, component),
                               annotations=dict(annotations or {}) or None)


def config_map(run: RunSpec) -> client.V1ConfigMap:
    """The manifest the run's pod reads (mounted read-only)."""
    return client.V1ConfigMap(
        api_version="v1", kind="ConfigMap",
        metadata=_meta(manifest_name(run.run_id), run, "manifest",
                       {"runner.dev/sha256": hashlib.sha256(run.manifest.encode()).hexdigest()}),
        data={"manifest.json": run.manifest},
    )


def _args(run: RunSpec) -> list[str]:
    args = ["run", run.pipeline, "--run-id", run.run_id, "--resume", "--json"]
    if run.executor:
        args += ["--executor", run.executor]
    for key, value in sorted(run.storage_options.items()):
        args += ["--storage-option", f"{key}={value}"]
    for key, value in sorted(run.params.items()):
        args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def _env(run: RunSpec, ray_address: str | None) -> list[client.V1EnvVar]:
    env = {"HOME": "/tmp", "RUNNER_MANIFEST": f"{MANIFEST_DIR}/manifest.json",
           "RUNNER_RUN_ID": run.run_id, "RUNNER_LOG_FORMAT": "json",
           "OTEL_SERVICE_NAME": APP}
    if run.artifacts:
        env["RUNNER_ARTIFACTS"] = run.artifacts
    if run.traceparent:
        env["TRACEPARENT"] = run.traceparent
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
        env["TV_ORCH_PARALLEL"] = "1"
    env.update(run.env)
    return [client.V1EnvVar(name=k, value=v) for k, v in sorted(env.items())]


def _container_security() -> client.V1SecurityContext:
    return client.V1SecurityContext(
        run_as_non_root=True, run_as_user=UID, run_as_group=UID,
        read_only_root_filesystem=True, allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )


def _pod_security() -> client.V1PodSecurityContext:
    return client.V1PodSecurityContext(
        run_as_non_root=True, run_as_user=UID, run_as_group=UID, fs_group=UID,
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )


def _pod_spec(run: RunSpec, ray_address: str | None) -> client.V1PodSpec:
    container = client.V1Container(
        name="runner", image=run.image, image_pull_policy=run.image_pull_policy,
        args=_args(run), env=_env(run, ray_address),
        env_from=[client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=s))
                  for s in run.secret_env] or None,
        resources=client.V1ResourceRequirements(
            requests={"cpu": run.cpu, "memory": run.memory},
            limits={"memory": run.memory}),
        security_context=_container_security(),
        volume_mounts=[client.V1VolumeMount(name="tmp", mount_path="/tmp"),
                       client.V1VolumeMount(name="manifest", mount_path=MANIFEST_DIR,
                                            read_only=True)],
    )
    return client.V1PodSpec(
        restart_policy="Never", service_account_name=run.service_account,
        automount_service_account_token=False, security_context=_pod_security(),
        containers=[container],
        volumes=[client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource()),
                 client.V1Volume(name="manifest", config_map=client.V1ConfigMapVolumeSource(
                     name=manifest_name(run.run_id)))],
    )


def job(run: RunSpec, *, ray_address: str | None = None, suspend: bool = False) -> client.V1Job:
    """The Job whose pod runs the pipeline (``--resume``: a retried pod continues).

    ``suspend``: made suspended, so that a RayCluster owned by it can be made and
    readied before its pod starts (the controller then unsuspends it)."""
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels(run)),
        spec=_pod_spec(run, ray_address))
    return client.V1Job(
        api_version="batch/v1", kind="Job",
        metadata=_meta(job_name(run.run_id), run, "run",
                       {"runner.dev/traceparent": run.traceparent} if run.traceparent else None),
        spec=client.V1JobSpec(
            suspend=True if suspend else None,
            backoff_limit=run.backoff_limit,
            active_deadline_seconds=run.active_deadline_seconds,
            ttl_seconds_after_finished=run.ttl_seconds_after_finished,
            template=template),
    )


def ray_cluster(run: RunSpec, *, owner: client.V1Job | None = None) -> dict[str, Any]:
    """A KubeRay ``RayCluster`` for a parallel run, owned by its Job (deleted with it)."""
    spec = run.ray or RayClusterSpec()
    image = spec.image or run.image
    name = ray_cluster_name(run.run_id)
    security = to_dicts([_container_security()])[0]
    security.pop("runAsUser", None)  # the Ray image's own user
    security.pop("runAsGroup", None)
    security["readOnlyRootFilesystem"] = False  # Ray writes under /home/ray and /tmp/ray

    def container(kind: str, cpu: str, memory: str) -> dict[str, Any]:
        return {"name": f"ray-{kind}", "image": image,
                "resources": {"requests": {"cpu": cpu, "memory": memory},
                              "limits": {"cpu": cpu, "memory": memory}},
                "securityContext": security}

    metadata: dict[str, Any] = {"name": name, "namespace": run.namespace,
                                "labels": labels(run, "ray")}
    if owner is not None and owner.metadata is not None and owner.metadata.uid:
        metadata["ownerReferences"] = [{
            "apiVersion": "batch/v1", "kind": "Job", "name": owner.metadata.name,
            "uid": owner.metadata.uid, "controller": True, "blockOwnerDeletion": True}]
    return {
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": metadata,
        "spec": {
            "rayVersion": spec.ray_version,
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "127.0.0.1"},
                "template": {"metadata": {"labels": labels(run, "ray-head")},
                             "spec": {"containers": [container("head", spec.head_cpu,
                                                               spec.head_memory)]}}},
            "workerGroupSpecs": [{
                "groupName": "workers", "replicas": spec.worker_replicas,
                "minReplicas": spec.worker_replicas, "maxReplicas": spec.worker_replicas,
                "rayStartParams": {},
                "template": {"metadata": {"labels": labels(run, "ray-worker")},
                             "spec": {"containers": [container("worker", spec.worker_cpu,
                                                               spec.worker_memory)]}}}],
        },
    }


@dataclass(frozen=True)
class Schedule:
    """A pipeline run on a cron schedule."""

    name: str
    cron: str
    run: RunSpec
    """The template: its run id is the CronJob's name (each Job adds its own suffix)."""
    concurrency_policy: str = "Forbid"
    suspend: bool = False
    time_zone: str | None = None


def cron_job(schedule: Schedule) -> client.V1CronJob:
    """A CronJob whose Jobs run the pipeline; each run's id is its Job's name."""
    run = schedule.run
    template = job(run)
    assert template.spec is not None and template.spec.template.spec is not None
    container = template.spec.template.spec.containers[0]
    # every scheduled Job is a run of its own: its id is the Job's name
    args = list(container.args or [])
    args[args.index("--run-id") + 1] = "$(RUNNER_RUN_ID)"
    container.args = args
    container.env = [e for e in (container.env or []) if e.name != "RUNNER_RUN_ID"] + [
        client.V1EnvVar(name="RUNNER_RUN_ID", value_from=client.V1EnvVarSource(
            field_ref=client.V1ObjectFieldSelector(
                field_path="metadata.labels['batch.kubernetes.io/job-name']")))]
    name = _dns_label(schedule.name, 52)
    return client.V1CronJob(
        api_version="batch/v1", kind="CronJob",
        metadata=_meta(name, run, "schedule"),
        spec=client.V1CronJobSpec(
            schedule=schedule.cron, concurrency_policy=schedule.concurrency_policy,
            suspend=schedule.suspend, time_zone=schedule.time_zone,
            successful_jobs_history_limit=3, failed_jobs_history_limit=3,
            job_template=client.V1JobTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels(run, "run")),
                spec=template.spec)),
    )


def to_dicts(objects: Sequence[Any]) -> list[dict[str, Any]]:
    """Client models (or dicts) as plain JSON-ready dicts, as the API server takes them."""
    api = client.ApiClient()
    return [o if isinstance(o, dict) else api.sanitize_for_serialization(o)
            for o in objects]


class _Dumper(yaml.SafeDumper):
    """Keys in the order the API documents them, multi-line text as ``|`` blocks."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def to_yaml(objects: Sequence[Any], *, comment: str | None = None) -> str:
    """A multi-document YAML stream, as ``kubectl apply -f`` takes it; ``comment``
    (``#`` lines) heads it."""
    head = "".join(f"# {line}".rstrip() + "\n" for line in (comment or "").splitlines())
    return head + "".join(
        "---\n" + yaml.dump(d, Dumper=_Dumper, sort_keys=False, width=100)
        for d in to_dicts(objects))
