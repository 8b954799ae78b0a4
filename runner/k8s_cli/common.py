"""What the Kubernetes commands share: the consoles, the options they declare alike,
the one error-to-exit mapping and the connection to the cluster."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from runner.errors import RunnerError, UsageError
from runner.json_stdout import note_error

if TYPE_CHECKING:
    from runner.k8s.controller import Controller, RunStatus

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

ManifestOpt = Annotated[str | None, typer.Option(
    "--manifest", "-m", metavar="FILE", help="Manifest to ship [env RUNNER_MANIFEST; default "
    "configs/manifest.json]", show_default=False)]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", help="Print the objects as YAML; touch no cluster")]
K8sRunIdArg = Annotated[str, typer.Argument(
    metavar="RUN_ID", help="A submitted run's id, as runner submit printed it",
    show_default=False)]




def fail(error: RunnerError) -> NoReturn:
    """Say the error in one line and exit with its class's code."""
    note_error(str(error))
    err.print(f"[bold red]error:[/] {escape(str(error))}")
    raise typer.Exit(error.exit_code)


@contextmanager
def errors() -> Iterator[None]:
    """Every RunnerError (the cluster's included) as one line and its exit code."""
    try:
        yield
    except RunnerError as exc:
        fail(exc)


def need_client() -> None:
    """A usage error (exit 2) when the ``k8s`` extra is not installed."""
    try:
        import kubernetes  # noqa: F401
    except ImportError:
        fail(UsageError(f"the Kubernetes commands need the kubernetes client: {INSTALL_HINT}"))


def connect(namespace: str | None, context: str | None, kubeconfig: str | None) -> "Controller":
    """The controller for the namespace (the kubernetes client is imported only here)."""
    need_client()
    from runner.k8s.controller import Controller

    return Controller.connect(namespace, context=context, kubeconfig=kubeconfig)


def describe(status: "RunStatus") -> str:
    """A run's status in one line."""
    line = f"{status.run_id}: {status.phase}"
    if status.reason:
        line += f" ({status.reason})"
    if status.ray:
        line += f"; ray cluster {status.ray}"
    return line
