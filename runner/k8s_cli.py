"""The Kubernetes commands: submit, status, logs, cancel, schedule, unschedule.

    runner submit alpha.full -n research --image ghcr.io/acme/runner:0.1.0 \\
        --artifacts s3://quant/runner --secret-env s3-credentials --wait --follow
    runner submit alpha.parallel -n research --image ... --parallel      # + a RayCluster
    runner submit alpha.full -n research --image ... --dry-run            # YAML, no cluster
    runner status RUN_ID -n research          runner logs RUN_ID -n research --follow
    runner cancel RUN_ID -n research          runner schedule alpha.full --cron "0 6 * * 1-5" ...
    runner unschedule alpha-full -n research

The manifest is checked here first (the pipeline must exist and compile), then
shipped in a ConfigMap; the pod runs the same ``runner run`` as a laptop. The
``kubernetes`` client is the ``k8s`` extra, imported only by these commands.
"""

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from runner.cli_format import PipelineArg
from runner.errors import RunnerError, UsageError
from runner.json_stdout import note_error, print_json
from runner.words import did_you_mean

if TYPE_CHECKING:
    from runner.k8s.builders import RunSpec
    from runner.k8s.controller import Controller, RunStatus

__all__ = ["register"]

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

INSTALL_HINT = "install the k8s extra: pip install 'runner[k8s]'"

NamespaceOpt = Annotated[str | None, typer.Option(
    "--namespace", "-n", help="Namespace [default: the kubeconfig context's, or the pod's]",
    show_default=False)]
ContextOpt = Annotated[str | None, typer.Option(
    "--context", help="Kubeconfig context [default: the current one]", show_default=False)]
KubeconfigOpt = Annotated[str | None, typer.Option(
    "--kubeconfig", envvar="KUBECONFIG", metavar="FILE",
    help="Kubeconfig file [default: ~/.kube/config; in a pod, its service account]",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout")]
ArtifactsOpt = Annotated[str | None, typer.Option(
    "--artifacts", metavar="URL",
    help="Artifact root the pods write to, outside the pod (s3://, gs://, "
    "...); a path only with --artifacts-pvc or --ephemeral-artifacts", show_default=False)]
ArtifactsPvcOpt = Annotated[str | None, typer.Option(
    "--artifacts-pvc", metavar="CLAIM",
    help="A PersistentVolumeClaim mounted at /var/lib/runner/artifacts "
    "in the run's pod, the artifact root (ReadWriteMany if runs share it)",
    show_default=False)]
EphemeralOpt = Annotated[bool, typer.Option(
    "--ephemeral-artifacts", help="Accept an artifact root inside the pod: lost with the "
    "pod, and a retried pod starts the run over")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", metavar="KEY=VALUE", help="KEY=VALUE into the context's params; "
    "repeatable",
    show_default=False)]
StorageOptionOpt = Annotated[list[str] | None, typer.Option(
    "--storage-option", metavar="KEY=VALUE",
    help="KEY=VALUE for the artifact store's fsspec filesystem "
    "(e.g. endpoint_url=http://minio:9000; credentials go in --secret-env); repeatable",
    show_default=False)]
EnvOpt = Annotated[list[str] | None, typer.Option(
    "--env", metavar="KEY=VALUE",
    help="KEY=VALUE in the pods' environment (never secrets); repeatable",
    show_default=False)]
SecretEnvOpt = Annotated[list[str] | None, typer.Option(
    "--secret-env", metavar="SECRET",
    help="A Secret whose keys become environment variables (storage "
    "credentials, OTLP headers); repeatable", show_default=False)]
ServiceAccountOpt = Annotated[str | None, typer.Option(
    "--service-account", metavar="NAME",
    help="The run pods' ServiceAccount: one without a Role (its token "
    "is never mounted); default: the namespace's default", show_default=False)]
ArtifactKeySecretOpt = Annotated[str | None, typer.Option(
    "--artifact-key-secret", metavar="SECRET",
    help="An existing Secret whose key RUNNER_ARTIFACT_KEY signs "
    "the store; default: a Secret made from your own key (RUNNER_ARTIFACT_KEY or the key "
    "file), owned by the run", show_default=False)]

CpuOpt = Annotated[str, typer.Option(
    "--cpu", metavar="QUANTITY", help="CPU request of the run's pod (a Kubernetes quantity: "
    "1, 500m)")]
MemoryOpt = Annotated[str, typer.Option(
    "--memory", metavar="QUANTITY", help="Memory request and limit of the run's pod (a "
    "Kubernetes quantity: 2Gi, 512Mi)")]
BackoffLimitOpt = Annotated[int, typer.Option(
    "--backoff-limit", metavar="N", min=0, help="Retries of a failed pod (each resumes the "
                                                 "run)")]
DeadlineOpt = Annotated[int | None, typer.Option(
    "--deadline", metavar="SECONDS", min=1, help="Seconds before the run is stopped "
    "(activeDeadlineSeconds)")]
CPU, MEMORY, BACKOFF_LIMIT, DEADLINE_S = "1", "2Gi", 2, 6 * 3600
"""The defaults of the four resource options, the same for submit and schedule."""

K8sRunIdArg = Annotated[str, typer.Argument(
    metavar="RUN_ID", help="A submitted run's id, as runner submit printed it",
    show_default=False)]


class ConcurrencyPolicy(str, Enum):
    Forbid = "Forbid"
    Allow = "Allow"
    Replace = "Replace"


def _fail(error: RunnerError) -> NoReturn:
    note_error(str(error))
    err.print(f"[bold red]error:[/] {escape(str(error))}")
    raise typer.Exit(error.exit_code)


@contextmanager
def _errors() -> Iterator[None]:
    """Every RunnerError (the cluster's included) as one line and its exit code."""
    try:
        yield
    except RunnerError as exc:
        _fail(exc)


def _k8s() -> Any:
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        _fail(UsageError(f"the Kubernetes commands need the kubernetes client: {INSTALL_HINT}"))
    from runner.k8s import controller

    return controller


def _connect(namespace: str | None, context: str | None, kubeconfig: str | None) -> "Controller":
    controller: Any = _k8s()
    ctl: Controller = controller.Controller.connect(namespace, context=context,
                                                    kubeconfig=kubeconfig)
    return ctl


def _artifact_key(named: str | None, run_id: str) -> tuple[str, str | None]:
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


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} {item!r}: expected KEY=VALUE")
        found[key] = value
    return found


def _params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in _pairs(items, "--param").items():
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


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


def _traceparent() -> str:
    """The caller's W3C trace context when it has one, else a new trace for the run."""
    given = os.environ.get("TRACEPARENT", "").strip()
    if given:
        return given
    import secrets  # here: the other commands need none of OpenSSL

    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def _run_spec(pipeline: str, *, manifest: str | None, run_id: str | None, namespace: str,
              image: str, artifacts: str | None, artifacts_pvc: str | None = None,
              ephemeral_artifacts: bool = False, parallel: bool, params: list[str] | None,
              storage_option: list[str] | None,
              env: list[str] | None, secret_env: list[str] | None,
              service_account: str | None, cpu: str, memory: str, backoff_limit: int,
              deadline: int | None, ray_workers: int, pull_policy: str,
              artifact_key_secret: str | None = None,
              ray_token_secret: str | None = None) -> "RunSpec":
    """The run, checked locally first: the manifest parses, the pipeline compiles, every
    Kubernetes value is one the API server takes, and the store outlives the pod. Stage
    modules the image cannot have (loose files here) are warned about."""
    from runner.k8s import checks, preflight
    from runner.k8s.builders import RayClusterSpec, RunSpec
    from runner.manifest import default_manifest
    from runner.orchestration.runner import new_run_id
    from runner.sdk import QuantSDK

    checks.check_namespace(namespace)
    if run_id is not None:
        checks.check_label_value(run_id, option="--run-id")
    checks.check_quantity(cpu, option="--cpu")
    checks.check_quantity(memory, option="--memory")
    policies = ("Always", "IfNotPresent", "Never")
    if pull_policy not in policies:
        raise UsageError(f"--image-pull-policy {pull_policy!r}: expected Always, "
                         "IfNotPresent or Never" + did_you_mean(pull_policy, policies,
                                                                ignore_case=True))
    for name in secret_env or ():
        checks.check_dns_subdomain(name, what="--secret-env")
    if service_account is not None:
        checks.check_dns_subdomain(service_account, what="--service-account")
    if ray_token_secret is not None:
        checks.check_dns_subdomain(ray_token_secret, what="--ray-token-secret")
    storage_options = checks.check_storage_options(_pairs(storage_option, "--storage-option"))

    path = manifest or default_manifest()
    sdk = QuantSDK(path)
    plan = sdk.plan(pipeline)  # an unknown pipeline or a bad manifest stops here
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read the manifest {path}: {exc}") from None
    ray = None
    if parallel:
        if plan.has_parallel:
            ray = RayClusterSpec(worker_replicas=ray_workers, token_secret=ray_token_secret)
            no_ray = preflight.ray_image_warning(image)
            if no_ray:
                err.print(f"[yellow]warning:[/] {escape(no_ray)}")
        else:
            err.print(f"[yellow]warning:[/] pipeline {escape(pipeline)} has no parallel "
                      "group: no Ray cluster is made for it")
    run_params, run_env = _params(params), _pairs(env, "--env")
    preflight.check_artifact_store(artifacts, claim=artifacts_pvc,
                                   ephemeral=ephemeral_artifacts)
    for loose in preflight.loose_modules(sdk.manifest):
        err.print(f"[yellow]warning:[/] {escape(loose.warning())}")
    return RunSpec(
        pipeline=pipeline, run_id=run_id or new_run_id(), namespace=namespace, image=image,
        manifest=text, artifacts=artifacts, artifacts_claim=artifacts_pvc,
        parallel=ray is not None, params=run_params, storage_options=storage_options,
        artifact_key_secret=artifact_key_secret,
        env=_forwarded() | run_env, secret_env=tuple(secret_env or ()),
        traceparent=_traceparent(), service_account=service_account,
        image_pull_policy=pull_policy, cpu=cpu, memory=memory,
        backoff_limit=backoff_limit, active_deadline_seconds=deadline, ray=ray)


def _dry_run(spec: "RunSpec", *, with_key: bool) -> str:
    """What ``submit --dry-run`` prints: the objects in order, and in a comment what is
    made from them once the Job exists (never a key or token)."""
    from runner.k8s.builders import config_map, job, ray_client_address, to_yaml
    from runner.k8s.ray import network_policy, ray_cluster, token_secret_of

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


def _describe(status: "RunStatus") -> str:
    line = f"{status.run_id}: {status.phase}"
    if status.reason:
        line += f" ({status.reason})"
    if status.ray:
        line += f"; ray cluster {status.ray}"
    return line


# ---------------------------------------------------------------- the commands


def submit(
    pipeline: PipelineArg,
    image: Annotated[str, typer.Option("--image", help="The runner image (with the extras "
                                       "the run needs)")],
    namespace: NamespaceOpt = None,
    manifest: Annotated[str | None, typer.Option(
        "--manifest", "-m", metavar="FILE", help="Manifest to ship [env RUNNER_MANIFEST; default "
        "configs/manifest.json]", show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option(
        "--run-id", help="Run id [default: new]; the same id again attaches to the run")]
    = None,
    parallel: Annotated[bool, typer.Option(
        "--parallel", help="Run parallel groups on a KubeRay cluster made for the run")]
    = False,
    artifacts: ArtifactsOpt = None,
    artifacts_pvc: ArtifactsPvcOpt = None,
    ephemeral_artifacts: EphemeralOpt = False,
    param: ParamOpt = None,
    storage_option: StorageOptionOpt = None,
    env: EnvOpt = None,
    secret_env: SecretEnvOpt = None,
    service_account: ServiceAccountOpt = None,
    artifact_key_secret: ArtifactKeySecretOpt = None,
    ray_token_secret: Annotated[str | None, typer.Option(
        "--ray-token-secret", metavar="SECRET",
        help="An existing Secret whose key RAY_AUTH_TOKEN is the Ray "
        "cluster's auth token; default: a random one per run, owned by its Job",
        show_default=False)] = None,
    cpu: CpuOpt = CPU,
    memory: MemoryOpt = MEMORY,
    backoff_limit: BackoffLimitOpt = BACKOFF_LIMIT,
    deadline: DeadlineOpt = DEADLINE_S,
    ray_workers: Annotated[int, typer.Option(
        "--ray-workers", metavar="N", min=0, help="Ray worker pods (with --parallel)")] = 2,
    pull_policy: Annotated[str, typer.Option(
        "--image-pull-policy", metavar="POLICY",
        help="Always, IfNotPresent or Never")] = "IfNotPresent",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it ends; "
                                       "exit 0 if it succeeded, 1 if it failed")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Stream the pod's logs "
                                         "(implies --wait)")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the objects as YAML; touch no cluster")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a pipeline as a Kubernetes Job (its pod runs `runner run`)."""
    _k8s()
    with _errors():
        spec = _run_spec(pipeline, manifest=manifest, run_id=run_id,
                         namespace=namespace or "default", image=image, artifacts=artifacts,
                         artifacts_pvc=artifacts_pvc, ephemeral_artifacts=ephemeral_artifacts,
                         parallel=parallel, params=param, storage_option=storage_option,
                         env=env, secret_env=secret_env,
                         service_account=service_account, cpu=cpu, memory=memory,
                         backoff_limit=backoff_limit, deadline=deadline,
                         ray_workers=ray_workers, pull_policy=pull_policy,
                         ray_token_secret=ray_token_secret)
        key_secret, key = _artifact_key(artifact_key_secret, spec.run_id)
        spec = replace(spec, artifact_key_secret=key_secret)
        if dry_run:
            sys.stdout.write(_dry_run(spec, with_key=key is not None))
            return
        ctl = _connect(namespace, context, kubeconfig)
        if ctl.namespace != spec.namespace:  # the kubeconfig's namespace, not the default
            spec = replace(spec, namespace=ctl.namespace)
        if spec.ray is not None:
            err.print(f"waiting for the Ray cluster of {spec.run_id} to be ready ...")
        done = ctl.submit(spec, artifact_key=key)
        trace_id = spec.traceparent.split("-")[1] if spec.traceparent else None
        doc: dict[str, Any] = {"run_id": done.run_id, "job": done.job,
                               "namespace": done.namespace, "attached": done.attached,
                               "ray_cluster": done.ray_cluster, "trace_id": trace_id}
        verb = "attached to" if done.attached else "submitted"
        if not as_json:
            err.print(f"{verb} run {done.run_id} as job/{done.job} in namespace "
                      f"{done.namespace}" + (f" (ray cluster {done.ray_cluster})"
                                             if done.ray_cluster else "")
                      + (f"; trace id {trace_id}" if trace_id and not done.attached else ""))
        if not (wait or follow):
            if as_json:
                print_json(doc)
            return
        try:
            final = _follow_run(ctl, done.run_id, follow=follow, quiet=as_json)
        except RunnerError as exc:
            status = getattr(exc, "status", None)
            if as_json:
                doc.update(status="failed", error=str(exc), exit_code=exc.exit_code,
                           run=status.to_dict() if status is not None else None)
                print_json(doc)
            raise
        finally:
            if done.ray_cluster:
                ctl.release_ray(done.run_id)
        doc.update(status=final.phase, run=final.to_dict())
        if as_json:
            print_json(doc)
        else:
            err.print(_describe(final))


def _follow_run(ctl: "Controller", run_id: str, *, follow: bool, quiet: bool) -> "RunStatus":
    """Wait for the run; with ``follow``, print each attempt's log lines as they come."""
    said: list[str] = []

    def changed(status: "RunStatus") -> None:
        line = _describe(status)
        if not quiet and (not said or said[-1] != line):
            err.print(f"[dim]{escape(line)}[/]")
        said.append(line)

    if not follow:
        return ctl.wait(run_id, on_change=changed)
    shown: set[str] = set()
    while True:
        now = ctl.status(run_id)
        changed(now)
        fresh = [p for p in now.pods if p.name not in shown and p.phase != "Pending"]
        for pod in fresh:  # each attempt's output in turn, as it comes
            shown.add(pod.name)
            if len(shown) > 1:
                err.print(f"[dim]--- attempt {len(shown)}: pod {escape(pod.name)}[/]")
            for line in ctl.logs(run_id, follow=True, pod=pod.name):
                print(line, flush=True)
        if fresh:
            continue  # look again before deciding: the Job may have moved on meanwhile
        if ctl.check(now):  # raises RunFailedError when it failed or cannot start
            return now
        time.sleep(ctl.poll)


def status(run_id: K8sRunIdArg, namespace: NamespaceOpt = None, context: ContextOpt = None,
           kubeconfig: KubeconfigOpt = None, as_json: JsonOpt = False) -> None:
    """A submitted run's state: phase, attempts, and why it failed, in words."""
    with _errors():
        found = _connect(namespace, context, kubeconfig).status(run_id)
    if as_json:
        out.print(json.dumps(found.to_dict()), markup=False)
        return
    out.print(escape(_describe(found)))
    for pod in found.pods:
        out.print(f"  pod {escape(pod.name)}: {pod.phase}"
                  + (f" ({escape(pod.reason)})" if pod.reason else ""))
    if found.started:
        out.print(f"  started {found.started}"
                  + (f", finished {found.finished}" if found.finished else ""))


def logs(run_id: K8sRunIdArg, namespace: NamespaceOpt = None,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until the pod "
                                              "ends")] = False,
         tail: Annotated[int | None, typer.Option("--tail", metavar="N", min=0,
                                                  help="Only the last N lines")]
         = None,
         context: ContextOpt = None, kubeconfig: KubeconfigOpt = None) -> None:
    """The output of a submitted run's latest pod."""
    with _errors():
        ctl = _connect(namespace, context, kubeconfig)
        for line in ctl.logs(run_id, follow=follow, tail=tail):
            print(line, flush=True)


def cancel(run_id: K8sRunIdArg, namespace: NamespaceOpt = None, context: ContextOpt = None,
           kubeconfig: KubeconfigOpt = None) -> None:
    """Stop a submitted run: delete its Job, pods, RayCluster and manifest."""
    with _errors():
        deleted = _connect(namespace, context, kubeconfig).cancel(run_id)
    err.print(f"cancelled {run_id}: deleted " + ", ".join(deleted))


def schedule(
    pipeline: PipelineArg,
    cron: Annotated[str, typer.Option("--cron", metavar="EXPR",
                                      help='Cron expression, e.g. "0 6 * * 1-5"')],
    image: Annotated[str, typer.Option("--image", help="The runner image")],
    name: Annotated[str | None, typer.Option(
        "--name", metavar="NAME",
        help="The CronJob's name [default: the pipeline's]", show_default=False)]
    = None,
    namespace: NamespaceOpt = None,
    manifest: Annotated[str | None, typer.Option(
        "--manifest", "-m", metavar="FILE", help="Manifest to ship [env RUNNER_MANIFEST; "
        "default configs/manifest.json]",
        show_default=False)] = None,
    concurrency_policy: Annotated[ConcurrencyPolicy, typer.Option(
        "--concurrency-policy", help="When the previous run is still going")]
    = ConcurrencyPolicy.Forbid,
    time_zone: Annotated[str | None, typer.Option(
        "--time-zone", metavar="ZONE", help="IANA time zone of the cron expression [default: the "
        "controller manager's, usually UTC]", show_default=False)] = None,
    suspend: Annotated[bool, typer.Option("--suspend", help="Create it paused")] = False,
    artifacts: ArtifactsOpt = None,
    artifacts_pvc: ArtifactsPvcOpt = None,
    ephemeral_artifacts: EphemeralOpt = False,
    param: ParamOpt = None,
    storage_option: StorageOptionOpt = None,
    env: EnvOpt = None,
    secret_env: SecretEnvOpt = None,
    service_account: ServiceAccountOpt = None,
    artifact_key_secret: ArtifactKeySecretOpt = None,
    cpu: CpuOpt = CPU,
    memory: MemoryOpt = MEMORY,
    backoff_limit: BackoffLimitOpt = BACKOFF_LIMIT,
    deadline: DeadlineOpt = DEADLINE_S,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the objects as YAML; touch no cluster")] = False,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """Run a pipeline on a cron schedule (create or update a CronJob)."""
    _k8s()
    from runner.k8s import checks
    from runner.k8s.builders import Schedule, config_map, cron_job, to_yaml

    with _errors():
        label = name or pipeline.replace(".", "-")
        checks.check_cron(cron, option="--cron")
        if time_zone is not None:
            checks.check_time_zone(time_zone, option="--time-zone")
        if name is not None:
            checks.check_dns_label(name, what="--name")
        spec = _run_spec(pipeline, manifest=manifest, run_id=label,
                         namespace=namespace or "default", image=image, artifacts=artifacts,
                         artifacts_pvc=artifacts_pvc, ephemeral_artifacts=ephemeral_artifacts,
                         parallel=False, params=param, storage_option=storage_option,
                         env=env, secret_env=secret_env,
                         service_account=service_account, cpu=cpu, memory=memory,
                         backoff_limit=backoff_limit, deadline=deadline, ray_workers=0,
                         pull_policy="IfNotPresent")
        key_secret, key = _artifact_key(artifact_key_secret, label)
        # each scheduled run is a trace of its own
        spec = replace(spec, traceparent=None, artifact_key_secret=key_secret)
        plan = Schedule(label, cron, spec, concurrency_policy=concurrency_policy.value,
                        suspend=suspend, time_zone=time_zone)
        if dry_run:
            note = (f"runner schedule then makes Secret {key_secret} (the store's "
                    "key), owned by the CronJob;\nnot printed." if key else None)
            sys.stdout.write(to_yaml([config_map(spec), cron_job(plan)], comment=note))
            return
        ctl = _connect(namespace, context, kubeconfig)
        if ctl.namespace != spec.namespace:
            spec = replace(spec, namespace=ctl.namespace)
            plan = replace(plan, run=spec)
        made, created = ctl.schedule(plan, artifact_key=key)
    err.print(f"{'created' if created else 'updated'} cronjob/{made} in namespace "
              f"{ctl.namespace}: {pipeline} at {cron!r}")


def unschedule(name: Annotated[str, typer.Argument(
        metavar="NAME", help="The CronJob's name (runner schedule printed it: by default "
        "the pipeline's, dots made dashes)", show_default=False)],
               namespace: NamespaceOpt = None, context: ContextOpt = None,
               kubeconfig: KubeconfigOpt = None) -> None:
    """Delete a schedule's CronJob (runs already started go on)."""
    with _errors():
        deleted = _connect(namespace, context, kubeconfig).unschedule(name)
    err.print("deleted " + ", ".join(deleted))


def register(app: typer.Typer) -> None:
    """Add the Kubernetes commands to the ``runner`` CLI."""
    for fn in (submit, status, logs, cancel, schedule, unschedule):
        app.command(fn.__name__, rich_help_panel="Kubernetes")(fn)
