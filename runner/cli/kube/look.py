"""``runner status``, ``runner logs`` and ``runner cancel``: a submitted run, by its id."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from runner.cli.kube.cluster import connect, describe
from runner.cli.kube.options import ContextOpt, K8sRunIdArg, KubeconfigOpt, NamespaceOpt
from runner.cli.markup import escape
from runner.cli.options import JsonOpt
from runner.cli.output import err, out

__all__ = ["cancel", "logs", "status"]


def status(run_id: K8sRunIdArg, namespace: NamespaceOpt = None, context: ContextOpt = None,
           kubeconfig: KubeconfigOpt = None, as_json: JsonOpt = False) -> None:
    """A submitted run's state: phase, attempts, and why it failed, in words."""
    found = connect(namespace, context, kubeconfig).status(run_id)
    if as_json:
        out.print(json.dumps(found.to_dict()), markup=False)
        return
    out.print(escape(describe(found)))
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
    ctl = connect(namespace, context, kubeconfig)
    for line in ctl.logs(run_id, follow=follow, tail=tail):
        print(line, flush=True)


def cancel(run_id: K8sRunIdArg, namespace: NamespaceOpt = None, context: ContextOpt = None,
           kubeconfig: KubeconfigOpt = None) -> None:
    """Stop a submitted run: delete its Job, pods, RayCluster and manifest."""
    deleted = connect(namespace, context, kubeconfig).cancel(run_id)
    err.print(f"cancelled {run_id}: deleted " + ", ".join(deleted))
