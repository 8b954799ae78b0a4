"""``runner submit``: a pipeline as a Kubernetes Job, optionally followed to its end."""

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from runner.cli_format import PipelineArg
from runner.errors import RunnerError
from runner.json_stdout import print_json
from runner.k8s_cli import common
from runner.k8s_cli.common import connect, describe, err, errors, need_client
from runner.k8s_cli.spec import RunOptions, artifact_key, dry_run, run_spec

if TYPE_CHECKING:
    from runner.k8s.controller import Controller, RunStatus, Submitted

__all__ = ["submit"]

ImageOpt = Annotated[str, typer.Option("--image", help="The runner image (with the extras "
                                       "the run needs)")]
RunIdOpt = Annotated[str | None, typer.Option(
    "--run-id", help="Run id [default: new]; the same id again attaches to the run")]
ParallelOpt = Annotated[bool, typer.Option(
    "--parallel", help="Run parallel groups on a KubeRay cluster made for the run")]
RayTokenSecretOpt = Annotated[str | None, typer.Option(
    "--ray-token-secret", metavar="SECRET",
    help="An existing Secret whose key RAY_AUTH_TOKEN is the Ray "
    "cluster's auth token; default: a random one per run, owned by its Job",
    show_default=False)]
RayWorkersOpt = Annotated[int, typer.Option(
    "--ray-workers", metavar="N", min=0, help="Ray worker pods (with --parallel)")]
PullPolicyOpt = Annotated[str, typer.Option(
    "--image-pull-policy", metavar="POLICY", help="Always, IfNotPresent or Never")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Follow the run until it ends; "
                                       "exit 0 if it succeeded, 1 if it failed")]
FollowOpt = Annotated[bool, typer.Option("--follow", help="Stream the pod's logs "
                                         "(implies --wait)")]


def submit(
    pipeline: PipelineArg, image: ImageOpt, namespace: common.NamespaceOpt = None,
    manifest: common.ManifestOpt = None, run_id: RunIdOpt = None,
    parallel: ParallelOpt = False, artifacts: common.ArtifactsOpt = None,
    artifacts_pvc: common.ArtifactsPvcOpt = None,
    ephemeral_artifacts: common.EphemeralOpt = False, param: common.ParamOpt = None,
    storage_option: common.StorageOptionOpt = None, env: common.EnvOpt = None,
    secret_env: common.SecretEnvOpt = None,
    service_account: common.ServiceAccountOpt = None,
    artifact_key_secret: common.ArtifactKeySecretOpt = None,
    ray_token_secret: RayTokenSecretOpt = None, cpu: common.CpuOpt = common.CPU,
    memory: common.MemoryOpt = common.MEMORY,
    backoff_limit: common.BackoffLimitOpt = common.BACKOFF_LIMIT,
    deadline: common.DeadlineOpt = common.DEADLINE_S, ray_workers: RayWorkersOpt = 2,
    pull_policy: PullPolicyOpt = "IfNotPresent", wait: WaitOpt = False,
    follow: FollowOpt = False, dry_run: common.DryRunOpt = False,
    context: common.ContextOpt = None, kubeconfig: common.KubeconfigOpt = None,
    as_json: common.JsonOpt = False,
) -> None:
    """Run a pipeline as a Kubernetes Job (its pod runs `runner run`)."""
    need_client()
    options = RunOptions(
        pipeline=pipeline, image=image, namespace=namespace or "default", manifest=manifest,
        run_id=run_id, artifacts=artifacts, artifacts_pvc=artifacts_pvc,
        ephemeral_artifacts=ephemeral_artifacts, parallel=parallel, params=param,
        storage_option=storage_option, env=env, secret_env=secret_env,
        service_account=service_account, cpu=cpu, memory=memory,
        backoff_limit=backoff_limit, deadline=deadline, ray_workers=ray_workers,
        pull_policy=pull_policy, ray_token_secret=ray_token_secret)
    with errors():
        _submit(options, artifact_key_secret=artifact_key_secret, dry=dry_run,
                wait=wait or follow, follow=follow, as_json=as_json,
                ctl=lambda: connect(namespace, context, kubeconfig))


def _submit(options: RunOptions, *, artifact_key_secret: str | None, dry: bool, wait: bool,
            follow: bool, as_json: bool, ctl: Callable[[], "Controller"]) -> None:
    """Check the run, then print it (``dry``) or submit it, and follow it with ``wait``."""
    spec = run_spec(options)
    key_secret, key = artifact_key(artifact_key_secret, spec.run_id)
    spec = replace(spec, artifact_key_secret=key_secret)
    if dry:
        sys.stdout.write(dry_run(spec, with_key=key is not None))
        return
    controller = ctl()
    if controller.namespace != spec.namespace:  # the kubeconfig's, not the default
        spec = replace(spec, namespace=controller.namespace)
    if spec.ray is not None:
        err.print(f"waiting for the Ray cluster of {spec.run_id} to be ready ...")
    done = controller.submit(spec, artifact_key=key)
    trace_id = spec.traceparent.split("-")[1] if spec.traceparent else None
    doc: dict[str, Any] = {"run_id": done.run_id, "job": done.job,
                           "namespace": done.namespace, "attached": done.attached,
                           "ray_cluster": done.ray_cluster, "trace_id": trace_id}
    if not as_json:
        err.print(_submitted(done, trace_id))
    if wait:
        _await(controller, done, doc, follow=follow, as_json=as_json)
    elif as_json:
        print_json(doc)


def _submitted(done: "Submitted", trace_id: str | None) -> str:
    verb = "attached to" if done.attached else "submitted"
    return (f"{verb} run {done.run_id} as job/{done.job} in namespace {done.namespace}"
            + (f" (ray cluster {done.ray_cluster})" if done.ray_cluster else "")
            + (f"; trace id {trace_id}" if trace_id and not done.attached else ""))


def _await(ctl: "Controller", done: "Submitted", doc: dict[str, Any], *, follow: bool,
           as_json: bool) -> None:
    """Follow the run to its end; say how it ended (a failure as the JSON's ``error``)."""
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
        err.print(describe(final))


def _follow_run(ctl: "Controller", run_id: str, *, follow: bool, quiet: bool) -> "RunStatus":
    """Wait for the run; with ``follow``, print each attempt's log lines as they come."""
    said: list[str] = []

    def changed(status: "RunStatus") -> None:
        line = describe(status)
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
