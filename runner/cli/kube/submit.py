"""``runner submit``: a pipeline as a Kubernetes Job, optionally followed to its end."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from runner.cli.json_stdout import print_json
from runner.cli.kube.cluster import connect, describe, need_client
from runner.cli.kube.options import SubmitOptions
from runner.cli.kube.spec import artifact_key, dry_run, run_spec
from runner.cli.markup import escape
from runner.cli.output import err
from runner.errors import RunnerError

if TYPE_CHECKING:
    from runner.k8s.controller import Controller, RunStatus, Submitted

__all__ = ["submit"]

def submit(options: SubmitOptions) -> None:
    """Run a pipeline as a Kubernetes Job (its pod runs `runner run`)."""
    need_client()
    spec = run_spec(options)
    key_secret, key = artifact_key(options.artifact_key_secret, spec.run_id)
    spec = replace(spec, artifact_key_secret=key_secret)
    if options.dry_run:
        sys.stdout.write(dry_run(spec, with_key=key is not None))
        return
    controller = connect(options.namespace, options.context, options.kubeconfig)
    if controller.namespace != spec.namespace:  # the kubeconfig's, not the default
        spec = replace(spec, namespace=controller.namespace)
    if spec.ray is not None:
        err.print(f"waiting for the Ray cluster of {spec.run_id} to be ready ...")
    done = controller.submit(spec, artifact_key=key)
    trace_id = _trace_id(spec.traceparent)
    doc: dict[str, Any] = {"run_id": done.run_id, "job": done.job,
                           "namespace": done.namespace, "attached": done.attached,
                           "ray_cluster": done.ray_cluster, "trace_id": trace_id}
    if not options.as_json:
        err.print(_submitted(done, trace_id))
    if options.wait or options.follow:
        _await(controller, done, doc, follow=options.follow, as_json=options.as_json)
    elif options.as_json:
        print_json(doc)


def _trace_id(traceparent: str | None) -> str | None:
    from runner.orchestration.runner import parse_traceparent

    parsed = parse_traceparent(traceparent) if traceparent else None
    return parsed[0] if parsed is not None else None


def _submitted(done: Submitted, trace_id: str | None) -> str:
    verb = "attached to" if done.attached else "submitted"
    return (f"{verb} run {done.run_id} as job/{done.job} in namespace {done.namespace}"
            + (f" (ray cluster {done.ray_cluster})" if done.ray_cluster else "")
            + (f"; trace id {trace_id}" if trace_id and not done.attached else ""))


def _await(ctl: Controller, done: Submitted, doc: dict[str, Any], *, follow: bool,
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


def _follow_run(ctl: Controller, run_id: str, *, follow: bool, quiet: bool) -> RunStatus:
    """Wait for the run; with ``follow``, print each attempt's log lines as they come."""
    said: list[str] = []

    def changed(status: RunStatus) -> None:
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
