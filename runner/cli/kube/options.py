"""The options the Kubernetes commands share (``submit`` and ``schedule`` above all),
declared once; the options every command shares are :mod:`runner.cli.options`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from runner.cli.options import (
    CacheOpt,
    JsonOpt,
    ManifestOpt,
    Options,
    ParamOpt,
    PipelineArg,
    StorageOpt,
)

__all__ = ["BACKOFF_LIMIT", "CPU", "DEADLINE_S", "MEMORY", "ConcurrencyPolicy", "ContextOpt",
           "K8sRunIdArg", "KubeconfigOpt", "NamespaceOpt", "RunOptions", "ScheduleOptions",
           "SubmitOptions"]

NamespaceOpt = Annotated[str | None, typer.Option(
    "--namespace", "-n", help="Namespace [default: the kubeconfig context's, or the pod's]",
    show_default=False)]
ContextOpt = Annotated[str | None, typer.Option(
    "--context", help="Kubeconfig context [default: the current one]", show_default=False)]
KubeconfigOpt = Annotated[str | None, typer.Option(
    "--kubeconfig", envvar="KUBECONFIG", metavar="FILE",
    help="Kubeconfig file [default: ~/.kube/config; in a pod, its service account]",
    show_default=False)]
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

DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print the objects as YAML; touch no cluster")]
K8sRunIdArg = Annotated[str, typer.Argument(
    metavar="RUN_ID", help="A submitted run's id, as runner submit printed it",
    show_default=False)]

ImageOpt = Annotated[str, typer.Option(
    "--image", help="The runner image (with the extras the run needs)")]
RunIdOpt = Annotated[str | None, typer.Option(
    "--run-id", help="Run id [default: new]; the same id again attaches to the run")]
ParallelOpt = Annotated[bool, typer.Option(
    "--parallel", help="Run parallel groups on a KubeRay cluster made for the run")]
RayTokenSecretOpt = Annotated[str | None, typer.Option(
    "--ray-token-secret", metavar="SECRET", show_default=False,
    help="An existing Secret whose key RAY_AUTH_TOKEN is the Ray cluster's auth token; "
    "default: a random one per run, owned by its Job")]
RayWorkersOpt = Annotated[int, typer.Option(
    "--ray-workers", metavar="N", min=0, help="Ray worker pods (with --parallel)")]
PullPolicyOpt = Annotated[str, typer.Option(
    "--image-pull-policy", metavar="POLICY", help="Always, IfNotPresent or Never")]


class RunOptions(Options):
    """A run as ``submit`` and ``schedule`` are told of it, before any check
    (:func:`runner.cli.kube.spec.run_spec` checks it)."""

    pipeline: PipelineArg
    image: ImageOpt
    namespace: NamespaceOpt = None
    manifest: ManifestOpt = None
    run_id: RunIdOpt = None
    parallel: ParallelOpt = False
    artifacts: ArtifactsOpt = None
    artifacts_pvc: ArtifactsPvcOpt = None
    ephemeral_artifacts: EphemeralOpt = False
    param: ParamOpt = None
    cache: CacheOpt = None
    storage_option: StorageOpt = None
    env: EnvOpt = None
    secret_env: SecretEnvOpt = None
    service_account: ServiceAccountOpt = None
    artifact_key_secret: ArtifactKeySecretOpt = None
    ray_token_secret: RayTokenSecretOpt = None
    cpu: CpuOpt = CPU
    memory: MemoryOpt = MEMORY
    backoff_limit: BackoffLimitOpt = BACKOFF_LIMIT
    deadline: DeadlineOpt = DEADLINE_S
    ray_workers: RayWorkersOpt = 2
    pull_policy: PullPolicyOpt = "IfNotPresent"
    dry_run: DryRunOpt = False
    context: ContextOpt = None
    kubeconfig: KubeconfigOpt = None

    @property
    def namespace_or_default(self) -> str:
        return self.namespace or "default"


class SubmitOptions(RunOptions):
    """``runner submit``: the run, and whether to follow it."""

    wait: Annotated[bool, typer.Option(
        "--wait", help="Follow the run until it ends; exit 0 if it succeeded, 1 if it "
        "failed")] = False
    follow: Annotated[bool, typer.Option(
        "--follow", help="Stream the pod's logs (implies --wait)")] = False
    as_json: JsonOpt = False


class ConcurrencyPolicy(str, Enum):
    Forbid = "Forbid"
    Allow = "Allow"
    Replace = "Replace"


class ScheduleOptions(RunOptions):
    """``runner schedule``: the run (its id is the schedule's name), and its cron
    schedule. A scheduled run has no Ray cluster and takes the default pull policy."""

    cron: Annotated[str, typer.Option(
        "--cron", metavar="EXPR", help='Cron expression, e.g. "0 6 * * 1-5"')]
    name: Annotated[str | None, typer.Option(
        "--name", metavar="NAME", help="The CronJob's name [default: the pipeline's]",
        show_default=False)] = None
    concurrency_policy: Annotated[ConcurrencyPolicy, typer.Option(
        "--concurrency-policy", help="When the previous run is still going")
    ] = ConcurrencyPolicy.Forbid
    time_zone: Annotated[str | None, typer.Option(
        "--time-zone", metavar="ZONE", show_default=False,
        help="IANA time zone of the cron expression [default: the controller manager's, "
        "usually UTC]")] = None
    suspend: Annotated[bool, typer.Option("--suspend", help="Create it paused")] = False

    HIDDEN = ("run_id", "parallel", "ray_token_secret", "ray_workers", "pull_policy")
    """What only ``submit`` offers: a scheduled run keeps these fields' defaults."""
