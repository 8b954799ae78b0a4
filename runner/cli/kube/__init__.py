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

One module per command family (:mod:`.submit`; :mod:`.look`: status, logs, cancel;
:mod:`.schedule`), the options they share and the run they describe in
:mod:`.options` (``submit`` and ``schedule`` each take one options object), the run
checked in :mod:`.spec`, and the connection in :mod:`.cluster`. Errors are raised
as they are: the app says them (:mod:`runner.cli.app`).
"""

from __future__ import annotations

import typer

from runner.cli.kube.look import cancel, logs, status
from runner.cli.kube.options import ScheduleOptions, SubmitOptions
from runner.cli.kube.schedule import schedule, unschedule
from runner.cli.kube.submit import submit
from runner.cli.options import options_command

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the Kubernetes commands to the ``runner`` app."""
    commands = (options_command(SubmitOptions, submit), status, logs, cancel,
                options_command(ScheduleOptions, schedule), unschedule)
    for fn in commands:
        app.command(fn.__name__, rich_help_panel="Kubernetes")(fn)
