"""Pure builders: a pipeline run as Kubernetes objects (no API calls here).

    run = RunSpec(pipeline="alpha.full", run_id="nightly-1", namespace="research",
                  image="ghcr.io/acme/runner:0.1.0", manifest=text)
    objects = [config_map(run), job(run)]          # official client models
    print(to_yaml(objects))                        # what `runner submit --dry-run` prints

The Job's pod runs the same ``runner run`` as a laptop, hardened: non-root,
read-only root filesystem with an emptyDir at /tmp, no privilege escalation, no
capabilities, the RuntimeDefault seccomp profile, no service-account token. A
retried pod resumes the run from its last checkpoint (``--resume``); a pod the cluster
stops (preemption, eviction, drain) gets SIGTERM, ``RUNNER_TERM_GRACE`` seconds to finish
its stage inside a ``terminationGracePeriodSeconds`` of 30, and a retry that does not
count against ``backoffLimit``. Credentials only ever arrive through Secret references
(the store's key too); every arg and env value is escaped against the kubelet's
``$(VAR)`` expansion. With parallel branches on, a RayCluster owned by the Job runs
them (:mod:`runner.k8s.ray`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from runner.k8s.render import to_dicts, to_yaml

__all__ = ["ARTIFACTS_MOUNT", "ARTIFACT_KEY_ENV", "RayClusterSpec", "RunSpec", "Schedule",
           "artifact_key_name", "config_map", "container_security", "cron_job", "dns_label",
           "job", "job_name", "labels", "literal", "manifest_name", "owner_reference",
           "pod_security", "ray_client_address", "ray_cluster_name", "secret", "secret_env",
           "to_dicts", "to_yaml"]

APP = "runner"
RUN_ID_LABEL = "runner.dev/run-id"
PIPELINE_LABEL = "runner.dev/pipeline"
UID = 10001
MANIFEST_DIR = "/etc/runner"
ARTIFACTS_MOUNT = "/var/lib/runner/artifacts"
"""Where a run pod mounts the PersistentVolumeClaim of its store (``--artifacts-pvc``): its
artifact root, unless ``--artifacts`` names a folder inside it."""
FORWARDED_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                 "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED",
                 "RUNNER_LOG_FORMAT")
ARTIFACT_KEY_ENV = "RUNNER_ARTIFACT_KEY"
"""The store's signing key: in the run pods only, from a Secret (this is also its key)."""
TERMINATION_GRACE = 30
"""``terminationGracePeriodSeconds`` of a run pod (Kubernetes' default, set explicitly)."""
TERM_GRACE = 20
"""``RUNNER_TERM_GRACE``: seconds the runner gives the in-flight stage after SIGTERM, well
inside :data:`TERMINATION_GRACE` (the rest commits the checkpoint and writes the spans)."""


def dns_label(text: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text (lowercase, [a-z0-9-], trimmed). When that changed
    the text (or it is too long) a short hash of the text is added, so that two texts
    never share a name (``nightly.1`` and ``nightly-1``)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "x"
    if slug != text or len(slug) > limit:
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        slug = f"{slug[: limit - 9].rstrip('-')}-{digest}"
    return slug


def literal(text: str) -> str:
    """``text`` as the kubelet passes it on: it expands ``$(VAR)`` in args and env values
    and turns ``$$`` into ``$``, so every ``$`` is doubled (a parameter or secret never
    gets expanded into a run, and ``a$$b`` stays ``a$$b``)."""
    return text.replace("$", "$$")


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
    shared_memory: str = "1Gi"
    """Size of each Ray pod's in-memory /dev/shm (Ray's object store)."""
    token_secret: str | None = None
    """An existing Secret (key ``RAY_AUTH_TOKEN``) with the cluster's auth token; None:
    one is made per run, owned by its Job."""


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
    artifacts_claim: str | None = None
    """A PersistentVolumeClaim mounted at :data:`ARTIFACTS_MOUNT` in the run's pod (not its
    Ray pods: the run's pod writes every checkpoint); the artifact root when ``artifacts``
    is None."""
    executor: str | None = None
    parallel: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    cache: bool | None = None
    """The step cache, as ``runner run --cache/--no-cache`` (None: as the manifest says)."""
    storage_options: Mapping[str, str] = field(default_factory=dict)
    """fsspec options for the artifact store (``--storage-option``; never credentials)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Plain environment (never secrets: use ``secret_env``)."""
    secret_env: Sequence[str] = ()
    """Names of Secrets whose keys become environment variables of the run's pod only
    (AWS_*, OTLP headers)."""
    artifact_key_secret: str | None = None
    """A Secret whose ``RUNNER_ARTIFACT_KEY`` key is the store's signing key (run pod only)."""
    traceparent: str | None = None
    service_account: str | None = None
    """The ServiceAccount of the run's pods (and its Ray pods): one with no Role; its
    token is never mounted. None: the namespace's ``default``."""
    term_grace: int = TERM_GRACE
    image_pull_policy: str = "IfNotPresent"
    cpu: str = "1"
    memory: str = "2Gi"
    backoff_limit: int = 2
    active_deadline_seconds: int | None = 6 * 3600
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    ray: RayClusterSpec | None = None


def job_name(run_id: str) -> str:
    return dns_label(f"{APP}-{run_id}")


def manifest_name(run_id: str) -> str:
    return dns_label(f"{job_name(run_id)}-manifest")


def artifact_key_name(run_id: str) -> str:
    """The Secret made for a run from the caller's artifact key (owned by its Job)."""
    return dns_label(f"{job_name(run_id)}-key")


def ray_cluster_name(run_id: str) -> str:
    """The run's RayCluster; KubeRay names its head Service ``<name>-head-svc``."""
    return dns_label(f"{job_name(run_id)}-ray", 40)


RAY_CLIENT_PORT = 10001
RAY_TOKEN_KEY = "RAY_AUTH_TOKEN"
"""The env var Ray 2.60 reads its auth token from (with ``RAY_AUTH_MODE=token``); also
the key of the token's Secret."""


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
    args = ["run", run.pipeline, "--run-id", run.run_id, "--resume", "--or-start", "--json"]
    if run.executor:
        args += ["--executor", run.executor]
    if run.cache is not None:
        args.append("--cache" if run.cache else "--no-cache")
    for key, value in sorted(run.storage_options.items()):
        args += ["--storage-option", f"{key}={value}"]
    for key, value in sorted(run.params.items()):
        args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return [literal(a) for a in args]


def secret_env(name: str, secret: str, key: str) -> client.V1EnvVar:
    """``name`` from one key of a Secret (never its value in the object)."""
    return client.V1EnvVar(name=name, value_from=client.V1EnvVarSource(
        secret_key_ref=client.V1SecretKeySelector(name=secret, key=key)))


def _env(run: RunSpec, ray_address: str | None,
         ray_token: str | None) -> list[client.V1EnvVar]:
    env = {"HOME": "/tmp", "RUNNER_MANIFEST": f"{MANIFEST_DIR}/manifest.json",
           "RUNNER_RUN_ID": run.run_id, "RUNNER_LOG_FORMAT": "json",
           "OTEL_SERVICE_NAME": APP, "RUNNER_TERM_GRACE": str(run.term_grace)}
    if run.artifacts or run.artifacts_claim:
        env["RUNNER_ARTIFACTS"] = run.artifacts or ARTIFACTS_MOUNT
    if run.traceparent:
        env["TRACEPARENT"] = run.traceparent
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
        env["TV_ORCH_PARALLEL"] = "1"
    env.update(run.env)
    refs = {}
    if run.artifact_key_secret:
        refs[ARTIFACT_KEY_ENV] = secret_env(ARTIFACT_KEY_ENV, run.artifact_key_secret,
                                            ARTIFACT_KEY_ENV)
    if ray_token:
        env["RAY_AUTH_MODE"] = "token"
        refs[RAY_TOKEN_KEY] = secret_env(RAY_TOKEN_KEY, ray_token, RAY_TOKEN_KEY)
    plain = [client.V1EnvVar(name=k, value=literal(v)) for k, v in env.items()
             if k not in refs]
    return sorted(plain + list(refs.values()), key=lambda e: e.name)


def container_security() -> client.V1SecurityContext:
    return client.V1SecurityContext(
        run_as_non_root=True, run_as_user=UID, run_as_group=UID,
        read_only_root_filesystem=True, allow_privilege_escalation=False,
        capabilities=client.V1Capabilities(drop=["ALL"]),
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )


def pod_security() -> client.V1PodSecurityContext:
    return client.V1PodSecurityContext(
        run_as_non_root=True, run_as_user=UID, run_as_group=UID, fs_group=UID,
        seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
    )


def _pod_spec(run: RunSpec, ray_address: str | None,
              ray_token: str | None) -> client.V1PodSpec:
    mounts = [client.V1VolumeMount(name="tmp", mount_path="/tmp"),
              client.V1VolumeMount(name="manifest", mount_path=MANIFEST_DIR, read_only=True)]
    volumes = [client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource()),
               client.V1Volume(name="manifest", config_map=client.V1ConfigMapVolumeSource(
                   name=manifest_name(run.run_id)))]
    if run.artifacts_claim:
        mounts.append(client.V1VolumeMount(name="artifacts", mount_path=ARTIFACTS_MOUNT))
        volumes.append(client.V1Volume(
            name="artifacts", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                claim_name=run.artifacts_claim)))
    container = client.V1Container(
        name="runner", image=run.image, image_pull_policy=run.image_pull_policy,
        args=_args(run), env=_env(run, ray_address, ray_token),
        env_from=[client.V1EnvFromSource(secret_ref=client.V1SecretEnvSource(name=s))
                  for s in run.secret_env] or None,
        resources=client.V1ResourceRequirements(
            requests={"cpu": run.cpu, "memory": run.memory},
            limits={"memory": run.memory}),
        security_context=container_security(), volume_mounts=mounts,
    )
    return client.V1PodSpec(
        restart_policy="Never", service_account_name=run.service_account,
        automount_service_account_token=False, enable_service_links=False,
        termination_grace_period_seconds=TERMINATION_GRACE,
        security_context=pod_security(), containers=[container], volumes=volumes,
    )


def _failure_policy() -> client.V1PodFailurePolicy:
    """A pod stopped by the cluster (preemption, eviction, node drain: the
    ``DisruptionTarget`` condition) is retried without counting against backoffLimit;
    the retried pod resumes the run. Needs ``restartPolicy: Never``."""
    return client.V1PodFailurePolicy(rules=[client.V1PodFailurePolicyRule(
        action="Ignore", on_pod_conditions=[client.V1PodFailurePolicyOnPodConditionsPattern(
            type="DisruptionTarget", status="True")])])


def job(run: RunSpec, *, ray_address: str | None = None, ray_token: str | None = None,
        suspend: bool = False) -> client.V1Job:
    """The Job whose pod runs the pipeline (``--resume``: a retried pod continues).

    ``suspend``: made suspended, so that what it owns (its Secrets, RayCluster,
    NetworkPolicy) can be made before its pod starts (the controller then unsuspends
    it). ``ray_token``: the Secret holding the run's Ray auth token."""
    template = client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels(run)),
        spec=_pod_spec(run, ray_address, ray_token))
    return client.V1Job(
        api_version="batch/v1", kind="Job",
        metadata=_meta(job_name(run.run_id), run, "run",
                       {"runner.dev/traceparent": run.traceparent} if run.traceparent else None),
        spec=client.V1JobSpec(
            suspend=True if suspend else None,
            backoff_limit=run.backoff_limit, pod_failure_policy=_failure_policy(),
            active_deadline_seconds=run.active_deadline_seconds,
            ttl_seconds_after_finished=run.ttl_seconds_after_finished,
            template=template),
    )


def owner_reference(owner: client.V1Job | client.V1CronJob) -> dict[str, Any]:
    """What makes an object go with its Job (or CronJob): Kubernetes' garbage collector
    deletes it when the owner goes, however that happens."""
    meta = owner.metadata
    assert meta is not None and meta.uid, "the owner must exist (have a uid)"
    kind = owner.kind or ("CronJob" if isinstance(owner, client.V1CronJob) else "Job")
    return {"apiVersion": "batch/v1", "kind": kind, "name": meta.name,
            "uid": meta.uid, "controller": True, "blockOwnerDeletion": True}


def secret(run: RunSpec, *, name: str, data: Mapping[str, str], component: str,
           owner: client.V1Job | client.V1CronJob | None = None) -> client.V1Secret:
    """An Opaque Secret of the run (``stringData``), owned by its Job once that exists."""
    meta = _meta(name, run, component)
    if owner is not None:
        meta.owner_references = [client.V1OwnerReference(
            api_version=ref["apiVersion"], kind=ref["kind"], name=ref["name"], uid=ref["uid"],
            controller=True, block_owner_deletion=True)
            for ref in [owner_reference(owner)]]
    return client.V1Secret(api_version="v1", kind="Secret", metadata=meta, type="Opaque",
                           immutable=True, string_data=dict(data))


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
    args[args.index("--run-id") + 1] = "$(RUNNER_RUN_ID)"  # the one expansion we mean
    container.args = args
    container.env = [e for e in (container.env or []) if e.name != "RUNNER_RUN_ID"] + [
        client.V1EnvVar(name="RUNNER_RUN_ID", value_from=client.V1EnvVarSource(
            field_ref=client.V1ObjectFieldSelector(
                field_path="metadata.labels['batch.kubernetes.io/job-name']")))]
    name = dns_label(schedule.name, 52)
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
