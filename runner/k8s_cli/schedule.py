"""``runner schedule`` and ``runner unschedule``: a pipeline on a cron schedule, as a
CronJob, and its removal."""

import sys
from dataclasses import replace
from enum import Enum
from typing import Annotated

import typer

from runner.cli_format import PipelineArg
from runner.k8s_cli import common
from runner.k8s_cli.common import connect, err, errors, need_client
from runner.k8s_cli.spec import RunOptions, artifact_key, run_spec

__all__ = ["schedule", "unschedule"]


class ConcurrencyPolicy(str, Enum):
    Forbid = "Forbid"
    Allow = "Allow"
    Replace = "Replace"


CronOpt = Annotated[str, typer.Option("--cron", metavar="EXPR",
                                      help='Cron expression, e.g. "0 6 * * 1-5"')]
ImageOpt = Annotated[str, typer.Option("--image", help="The runner image")]
NameOpt = Annotated[str | None, typer.Option(
    "--name", metavar="NAME", help="The CronJob's name [default: the pipeline's]",
    show_default=False)]
ConcurrencyOpt = Annotated[ConcurrencyPolicy, typer.Option(
    "--concurrency-policy", help="When the previous run is still going")]
TimeZoneOpt = Annotated[str | None, typer.Option(
    "--time-zone", metavar="ZONE", help="IANA time zone of the cron expression [default: the "
    "controller manager's, usually UTC]", show_default=False)]
SuspendOpt = Annotated[bool, typer.Option("--suspend", help="Create it paused")]


def schedule(
    pipeline: PipelineArg, cron: CronOpt, image: ImageOpt, name: NameOpt = None,
    namespace: common.NamespaceOpt = None, manifest: common.ManifestOpt = None,
    concurrency_policy: ConcurrencyOpt = ConcurrencyPolicy.Forbid,
    time_zone: TimeZoneOpt = None, suspend: SuspendOpt = False,
    artifacts: common.ArtifactsOpt = None, artifacts_pvc: common.ArtifactsPvcOpt = None,
    ephemeral_artifacts: common.EphemeralOpt = False, param: common.ParamOpt = None,
    storage_option: common.StorageOptionOpt = None, env: common.EnvOpt = None,
    secret_env: common.SecretEnvOpt = None,
    service_account: common.ServiceAccountOpt = None,
    artifact_key_secret: common.ArtifactKeySecretOpt = None,
    cpu: common.CpuOpt = common.CPU, memory: common.MemoryOpt = common.MEMORY,
    backoff_limit: common.BackoffLimitOpt = common.BACKOFF_LIMIT,
    deadline: common.DeadlineOpt = common.DEADLINE_S, dry_run: common.DryRunOpt = False,
    context: common.ContextOpt = None, kubeconfig: common.KubeconfigOpt = None,
) -> None:
    """Run a pipeline on a cron schedule (create or update a CronJob)."""
    need_client()
    from runner.k8s import checks
    from runner.k8s.builders import Schedule, config_map, cron_job
    from runner.k8s.render import to_yaml

    with errors():
        label = name or pipeline.replace(".", "-")
        checks.check_cron(cron, option="--cron")
        if time_zone is not None:
            checks.check_time_zone(time_zone, option="--time-zone")
        if name is not None:
            checks.check_dns_label(name, what="--name")
        spec = run_spec(RunOptions(
            pipeline=pipeline, image=image, namespace=namespace or "default",
            manifest=manifest, run_id=label, artifacts=artifacts, artifacts_pvc=artifacts_pvc,
            ephemeral_artifacts=ephemeral_artifacts, params=param,
            storage_option=storage_option, env=env, secret_env=secret_env,
            service_account=service_account, cpu=cpu, memory=memory,
            backoff_limit=backoff_limit, deadline=deadline, ray_workers=0))
        key_secret, key = artifact_key(artifact_key_secret, label)
        # each scheduled run is a trace of its own
        spec = replace(spec, traceparent=None, artifact_key_secret=key_secret)
        plan = Schedule(label, cron, spec, concurrency_policy=concurrency_policy.value,
                        suspend=suspend, time_zone=time_zone)
        if dry_run:
            note = (f"runner schedule then makes Secret {key_secret} (the store's "
                    "key), owned by the CronJob;\nnot printed." if key else None)
            sys.stdout.write(to_yaml([config_map(spec), cron_job(plan)], comment=note))
            return
        ctl = connect(namespace, context, kubeconfig)
        if ctl.namespace != spec.namespace:
            plan = replace(plan, run=replace(spec, namespace=ctl.namespace))
        made, created = ctl.schedule(plan, artifact_key=key)
    err.print(f"{'created' if created else 'updated'} cronjob/{made} in namespace "
              f"{ctl.namespace}: {pipeline} at {cron!r}")


def unschedule(name: Annotated[str, typer.Argument(
        metavar="NAME", help="The CronJob's name (runner schedule printed it: by default "
        "the pipeline's, dots made dashes)", show_default=False)],
               namespace: common.NamespaceOpt = None, context: common.ContextOpt = None,
               kubeconfig: common.KubeconfigOpt = None) -> None:
    """Delete a schedule's CronJob (runs already started go on)."""
    with errors():
        deleted = connect(namespace, context, kubeconfig).unschedule(name)
    err.print("deleted " + ", ".join(deleted))
