"""``runner schedule`` and ``runner unschedule``: a pipeline on a cron schedule, as a
CronJob, and its removal."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Annotated

import typer

from runner.cli.kube.cluster import connect, need_client
from runner.cli.kube.options import ContextOpt, KubeconfigOpt, NamespaceOpt, ScheduleOptions
from runner.cli.kube.spec import artifact_key, run_spec
from runner.cli.output import err

__all__ = ["schedule", "unschedule"]


def schedule(options: ScheduleOptions) -> None:
    """Run a pipeline on a cron schedule (create or update a CronJob)."""
    need_client()
    from runner.k8s import checks
    from runner.k8s.builders import Schedule, config_map, cron_job
    from runner.k8s.render import to_yaml

    label = options.name or options.pipeline.replace(".", "-")
    checks.check_cron(options.cron, option="--cron")
    if options.time_zone is not None:
        checks.check_time_zone(options.time_zone, option="--time-zone")
    if options.name is not None:
        checks.check_dns_label(options.name, what="--name")
    spec = run_spec(options, run_id=label)
    key_secret, key = artifact_key(options.artifact_key_secret, label)
    # each scheduled run is a trace of its own
    spec = replace(spec, traceparent=None, artifact_key_secret=key_secret)
    plan = Schedule(label, options.cron, spec,
                    concurrency_policy=options.concurrency_policy.value,
                    suspend=options.suspend, time_zone=options.time_zone)
    if options.dry_run:
        note = (f"runner schedule then makes Secret {key_secret} (the store's "
                "key), owned by the CronJob;\nnot printed." if key else None)
        sys.stdout.write(to_yaml([config_map(spec), cron_job(plan)], comment=note))
        return
    ctl = connect(options.namespace, options.context, options.kubeconfig)
    if ctl.namespace != spec.namespace:
        plan = replace(plan, run=replace(spec, namespace=ctl.namespace))
    made, created = ctl.schedule(plan, artifact_key=key)
    err.print(f"{'created' if created else 'updated'} cronjob/{made} in namespace "
              f"{ctl.namespace}: {options.pipeline} at {options.cron!r}")


def unschedule(name: Annotated[str, typer.Argument(
        metavar="NAME", help="The CronJob's name (runner schedule printed it: by default "
        "the pipeline's, dots made dashes)", show_default=False)],
               namespace: NamespaceOpt = None, context: ContextOpt = None,
               kubeconfig: KubeconfigOpt = None) -> None:
    """Delete a schedule's CronJob (runs already started go on)."""
    deleted = connect(namespace, context, kubeconfig).unschedule(name)
    err.print("deleted " + ", ".join(deleted))
