"""A run as the commands take it (:class:`RunOptions`), checked here before any cluster
is asked, and what ``--dry-run`` prints of it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.cli.kube.options import RunOptions
from runner.cli.markup import escape
from runner.cli.output import err
from runner.cli.parsing import key_values, params
from runner.errors import UsageError
from runner.words import did_you_mean

if TYPE_CHECKING:
    from runner.k8s.builders import RayClusterSpec, RunSpec

__all__ = ["artifact_key", "dry_run", "run_spec", "traceparent"]

PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def artifact_key(named: str | None, run_id: str) -> tuple[str, str | None]:
    """(the Secret the run pods read the key from, the key to put in it or None when the
    Secret exists already). The key is the caller's own (``RUNNER_ARTIFACT_KEY``, else
    the key file, made on first use), so the caller can read what the run writes."""
    from runner.artifacts.signing import load_key
    from runner.k8s.builders import artifact_key_name
    from runner.k8s.checks import check_dns_subdomain

    if named:
        return check_dns_subdomain(named, what="--artifact-key-secret"), None
    key = load_key()
    try:
        value = key.secret.decode("ascii")
    except UnicodeDecodeError:
        raise UsageError(f"the artifact key from {key.source} is not text, so it cannot go "
                         "into a Secret's env; use a text key, or --artifact-key-secret "
                         "naming a Secret you made") from None
    return artifact_key_name(run_id), value


def _forwarded() -> dict[str, str]:
    """The caller's OpenTelemetry settings, for the pod (``--env`` wins over them); an
    endpoint on this machine's loopback means nothing in a pod and is left out."""
    from runner.k8s.builders import FORWARDED_ENV

    found: dict[str, str] = {}
    for name in FORWARDED_ENV:
        value = os.environ.get(name)
        if not value:
            continue
        if name.endswith("_ENDPOINT") and any(
                host in value for host in ("://localhost", "://127.", "://[::1]")):
            err.print(f"[yellow]warning:[/] {name}={escape(value)} is this machine's "
                      "loopback: not passed to the pod (give the cluster's collector "
                      f"with --env {name}=...)")
            continue
        found[name] = value
    return found


def traceparent() -> str:
    """The caller's W3C trace context (``TRACEPARENT``) when it is a valid one, else a
    new trace for the run (an invalid one is warned about and ignored, as W3C says)."""
    from runner.orchestration.runner import parse_traceparent

    given = os.environ.get("TRACEPARENT", "").strip()
    if given and parse_traceparent(given) is not None:
        return given
    if given:
        err.print(f"[yellow]warning:[/] TRACEPARENT={escape(given)} is not a W3C "
                  "traceparent: the run starts a new trace")
    import secrets  # here: the other commands need none of OpenSSL

    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _check(opts: RunOptions, run_id: str | None) -> Mapping[str, str]:
    """Every Kubernetes value is one the API server takes; the storage options parsed."""
    from runner.k8s import checks

    checks.check_namespace(opts.namespace_or_default)
    if run_id is not None:
        checks.check_label_value(run_id, option="--run-id")
    checks.check_quantity(opts.cpu, option="--cpu")
    checks.check_quantity(opts.memory, option="--memory")
    if opts.pull_policy not in PULL_POLICIES:
        raise UsageError(f"--image-pull-policy {opts.pull_policy!r}: expected Always, "
                         "IfNotPresent or Never" + did_you_mean(
                             opts.pull_policy, PULL_POLICIES, ignore_case=True))
    for name in opts.secret_env or ():
        checks.check_dns_subdomain(name, what="--secret-env")
    if opts.service_account is not None:
        checks.check_dns_subdomain(opts.service_account, what="--service-account")
    if opts.ray_token_secret is not None:
        checks.check_dns_subdomain(opts.ray_token_secret, what="--ray-token-secret")
    return checks.check_storage_options(key_values(opts.storage_option,
                                                   option="--storage-option"))


def _ray(opts: RunOptions, *, has_parallel: bool) -> RayClusterSpec | None:
    """The run's Ray cluster: with ``--parallel``, for a pipeline with a parallel group."""
    from runner.k8s import preflight
    from runner.k8s.builders import RayClusterSpec

    if not opts.parallel:
        return None
    if not has_parallel:
        err.print(f"[yellow]warning:[/] pipeline {escape(opts.pipeline)} has no parallel "
                  "group: no Ray cluster is made for it")
        return None
    no_ray = preflight.ray_image_warning(opts.image)
    if no_ray:
        err.print(f"[yellow]warning:[/] {escape(no_ray)}")
    return RayClusterSpec(worker_replicas=opts.ray_workers, token_secret=opts.ray_token_secret)


def run_spec(opts: RunOptions, *, run_id: str | None = None) -> RunSpec:
    """The run, checked locally first: the manifest parses, the pipeline compiles, every
    Kubernetes value is one the API server takes, and the store outlives the pod. Stage
    modules the image cannot have (loose files here) are warned about."""
    from runner.k8s import preflight
    from runner.k8s.builders import RunSpec
    from runner.manifest import default_manifest
    from runner.orchestration.runner import new_run_id
    from runner.sdk import QuantSDK

    run_id = run_id or opts.run_id
    storage_options = _check(opts, run_id)
    path = opts.manifest or default_manifest()
    sdk = QuantSDK(path)
    plan = sdk.plan(opts.pipeline)  # an unknown pipeline or a bad manifest stops here
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the manifest {path}: {exc}") from exc
    ray = _ray(opts, has_parallel=plan.has_parallel)
    run_params, run_env = params(opts.param), key_values(opts.env, option="--env")
    preflight.check_artifact_store(opts.artifacts, claim=opts.artifacts_pvc,
                                   ephemeral=opts.ephemeral_artifacts)
    for loose in preflight.loose_modules(sdk.manifest):
        err.print(f"[yellow]warning:[/] {escape(loose.warning())}")
    return RunSpec(
        pipeline=opts.pipeline, run_id=run_id or new_run_id(),
        namespace=opts.namespace_or_default,
        image=opts.image, manifest=text, artifacts=opts.artifacts,
        artifacts_claim=opts.artifacts_pvc, parallel=ray is not None, params=run_params,
        cache=opts.cache,
        storage_options=storage_options, env=_forwarded() | run_env,
        secret_env=tuple(opts.secret_env or ()), traceparent=traceparent(),
        service_account=opts.service_account, image_pull_policy=opts.pull_policy,
        cpu=opts.cpu, memory=opts.memory, backoff_limit=opts.backoff_limit,
        active_deadline_seconds=opts.deadline, ray=ray)


def dry_run(spec: RunSpec, *, with_key: bool) -> str:
    """What ``submit --dry-run`` prints: the objects in order, and in a comment what is
    made from them once the Job exists (never a key or token)."""
    from runner.k8s.builders import config_map, job, ray_client_address
    from runner.k8s.ray import network_policy, ray_cluster, token_secret_of
    from runner.k8s.render import to_yaml

    objects: list[Any] = [config_map(spec)]
    owned = [f"Secret {spec.artifact_key_secret} (the store's key)"] if with_key else []
    if spec.ray is not None:
        objects += [job(spec, ray_address=ray_client_address(spec),
                        ray_token=token_secret_of(spec), suspend=True),
                    network_policy(spec), ray_cluster(spec)]
        if spec.ray.token_secret is None:
            owned.append(f"Secret {token_secret_of(spec)} (a random Ray token)")
    else:
        objects.append(job(spec, suspend=with_key))
    note = None
    if len(objects) > 2 or owned:
        made = "".join(f"\n  {o}" for o in owned)
        note = ("runner submit creates these in order, the Job suspended; what the Job owns\n"
                "gets an ownerReference to its uid once it exists"
                + (", and so do these (not printed):" + made if owned else "") +
                "\nThen the Job is let go"
                + (" once the Ray head is ready." if spec.ray is not None else "."))
    return to_yaml(objects, comment=note)
