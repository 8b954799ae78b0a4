"""Podman 5's ``kube play`` of the objects we generate, as our code prints them.

    python -m tests.containers.podman --docker /usr/bin/docker --node NODE \\
        --image runner:e2e --work DIR [--timeout 600]

NODE is a container of the private Docker engine running Podman 5 (Debian trixie), which
``scripts/container-e2e.sh`` starts with DIR mounted at the same path and the image
loaded. Podman reads the Kubernetes YAML itself, so this checks our objects against a
second reading of the Kubernetes API than ours (``tests.containers.podrun``):

* ``runner submit alpha.full --dry-run``: its stdout played as it is (ConfigMap + Job);
* a ``runner schedule`` CronJob: its ConfigMap and the Job the CronJob controller would
  make of its job template (:func:`job_of_cronjob`, the one transformation);
* the chart's rendered GitOps run Job (with the release's ConfigMaps and Secret) and its
  helm-test Pod.

The store's key is a Secret played first (``runner submit`` creates it, ``--dry-run``
does not print it); the artifact PersistentVolumeClaim is a Podman volume of that name
bound to ``DIR/<case>/store``, which the host reads back. Each pod's container must exit
0 with the hardening asked for (:func:`hardening_gaps` on ``podman inspect``), and each
run must have succeeded with the host's weights (``tests.containers.e2e.judge``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.containers import cases as c
from tests.containers.e2e import POD_UID, Outcome, host_reference, outcome, summary

SELECTOR_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name",
                   "controller-uid", "job-name")


@dataclass
class Play:
    """YAML to ``podman kube play`` (``documents``, after ``secrets``) and how to judge
    the run it makes."""

    case: c.Case
    documents: str
    secrets: str = ""
    containers: tuple[Mapping[str, Any], ...] = ()
    """The pod spec's containers, to check their hardening."""


def job_of_cronjob(cron: Mapping[str, Any], *, scheduled_minute: int,
                   uid: str) -> dict[str, Any]:
    """The Job a CronJob makes for ``scheduled_minute`` (minutes since the epoch), as the
    API server stores it: named ``<cronjob>-<minute>``, the job template's metadata and
    spec, and the selector labels the API server adds to its pod template (``job-name``,
    ``controller-uid``), which the pod's ``fieldRef``s may read."""
    if cron.get("kind") != "CronJob":
        raise ValueError(f"not a CronJob: {cron.get('kind')}")
    meta = cron["metadata"]
    template = copy.deepcopy(cron["spec"]["jobTemplate"])
    name = f"{meta['name']}-{scheduled_minute}"
    labels = dict(zip(SELECTOR_LABELS, (uid, name, uid, name), strict=True))
    spec = template["spec"]
    pod_meta = spec["template"].setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {**(template.get("metadata") or {}), "name": name,
                         "namespace": meta.get("namespace") or "default"},
            "spec": spec}


def hardening_gaps(inspect: Mapping[str, Any], container: Mapping[str, Any],
                   pod_security: Mapping[str, Any]) -> list[str]:
    """What ``podman inspect`` of a container shows against what its spec asks: the user,
    a read-only root, no capabilities, no new privileges, the memory limit."""
    sc = {**pod_security, **(container.get("securityContext") or {})}
    host, config = inspect.get("HostConfig") or {}, inspect.get("Config") or {}
    gaps = []
    if sc.get("runAsUser") is not None:
        user = str(config.get("User") or "")
        if user.partition(":")[0] != str(sc["runAsUser"]):
            gaps.append(f"user {user!r}, not {sc['runAsUser']}")
    if sc.get("readOnlyRootFilesystem") and not host.get("ReadonlyRootfs"):
        gaps.append("root filesystem writable")
    if "ALL" in ((sc.get("capabilities") or {}).get("drop") or []) and \
            inspect.get("EffectiveCaps"):
        gaps.append(f"capabilities {inspect['EffectiveCaps']}")
    if sc.get("allowPrivilegeEscalation") is False and \
            "no-new-privileges" not in (host.get("SecurityOpt") or []):
        gaps.append("new privileges allowed")
    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if memory is not None:
        from tests.containers.podrun import bytes_of

        if int(host.get("Memory") or 0) != bytes_of(memory):
            gaps.append(f"memory limit {host.get('Memory')}, not {memory}")
    return gaps


def dump(objects: Sequence[Mapping[str, Any]]) -> str:
    import yaml

    return yaml.safe_dump_all(list(objects), sort_keys=False)


def _pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec: Mapping[str, Any] = obj["spec"]
    return spec["template"]["spec"] if obj["kind"] == "Job" else spec


def _play(case: c.Case, obj: Mapping[str, Any], documents: str, extra: str = "") -> Play:
    spec = _pod_spec(obj)
    return Play(case, documents, extra, tuple(spec["containers"]))


def plays(image: str, *, key: str, work: Path) -> list[Play | c.Skip]:
    """The objects to play, rendered by our own code."""
    return [submit_play(image, key=key), schedule_play(image, key=key),
            *chart_plays(image, work)]


def submit_play(image: str, *, key: str) -> Play:
    """``runner submit alpha.full --dry-run``'s stdout, played as printed."""
    from runner.k8s.builders import artifact_key_name

    run_id = "podman-submit"
    text = c.cli("submit", "alpha.full", "--image", image, "--run-id", run_id, "-n",
                 c.NAMESPACE, "--artifacts-pvc", c.CLAIM, "--dry-run", key=key)
    case = c.Case("podman: submit alpha.full (Job)", image, {}, [], key=key, run_id=run_id,
                  pipeline="alpha.full", weights=True)
    secret = c.key_secret(artifact_key_name(run_id), key, c.NAMESPACE)
    return _play(case, c.only(c.documents(text), "Job"), text, dump([secret]))


def schedule_play(image: str, *, key: str) -> Play:
    """``runner schedule alpha.full --dry-run``: its ConfigMap and the Job its CronJob
    makes this minute."""
    from runner.k8s.builders import artifact_key_name

    objects = c.documents(c.cli("schedule", "alpha.full", "--cron", "0 6 * * 1-5",
                                "--image", image, "-n", c.NAMESPACE, "--artifacts-pvc",
                                c.CLAIM, "--dry-run", key=key))
    cron = c.only(objects, "CronJob")
    job = job_of_cronjob(cron, scheduled_minute=int(time.time() // 60),
                         uid="00000000-0000-4000-8000-000000000001")
    case = c.Case("podman: schedule alpha.full (CronJob's Job)", image, {}, [], key=key,
                  run_id=job["metadata"]["name"], pipeline="alpha.full", weights=True)
    secret = c.key_secret(artifact_key_name(cron["metadata"]["name"]), key, c.NAMESPACE)
    config = [o for o in objects if o["kind"] == "ConfigMap"]
    return _play(case, job, dump([*config, job]), dump([secret]))


def chart_plays(image: str, work: Path) -> list[Play | c.Skip]:
    """The chart's GitOps run Job with the ConfigMaps and Secrets of its release, then its
    helm-test Pod."""
    names = ("podman: chart GitOps run alpha.full (Job)", "podman: chart helm test (Pod)")
    why = c.chart_unavailable()
    if why:
        return [c.Skip(n, why) for n in names]
    objects = c.render_chart(image, runs=[{"name": "e2e", "pipeline": "alpha.full",
                                           "runId": "podman-chart"}], work=work / "chart")
    key = c.chart_key(objects)
    config = [o for o in objects if o["kind"] in ("ConfigMap", "Secret")]
    job, pod = c.only(objects, "Job"), c.only(objects, "Pod")
    return [
        _play(c.Case(names[0], image, {}, [], key=key, run_id="podman-chart",
                     pipeline="alpha.full", weights=True), job, dump([*config, job])),
        _play(c.Case(names[1], image, {}, []), pod, dump([*config, pod]))]


@dataclass(frozen=True)
class Node:
    """The Podman node: ``podman`` commands through ``docker exec``."""

    docker: str
    name: str

    def podman(self, *args: str, timeout: float = 120,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.docker, "exec", self.name, "podman", *args],
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env={k: v for k, v in os.environ.items()
                                   if not k.startswith(("RUNNER_", "OTEL_"))})
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:3])} exited {done.returncode}: "
                               f"{done.stderr.strip()[-400:]}")
        return done

    def reset(self) -> None:
        """No pod, secret or volume left from an earlier play."""
        self.podman("pod", "rm", "--all", "--force", "--time", "5", timeout=180)
        self.podman("secret", "rm", "--all")
        self.podman("volume", "rm", "--all", "--force")


def run_play(play: Play, node: Node, *, folder: Path,
             timeout: float) -> tuple[int | None, float, list[str]]:
    """(exit code or None on timeout, seconds, hardening gaps) of the play's container."""
    shutil.rmtree(folder, ignore_errors=True)
    store = folder / "store"
    store.mkdir(parents=True)
    os.chown(store, POD_UID, POD_UID)
    node.reset()
    node.podman("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt",
                f"device={store}", c.CLAIM)
    if play.secrets:
        (folder / "secrets.yaml").write_text(play.secrets)
        node.podman("kube", "play", str(folder / "secrets.yaml"))
    (folder / "play.yaml").write_text(play.documents)
    started = time.monotonic()
    played = node.podman("kube", "play", "--network", "none", str(folder / "play.yaml"),
                         timeout=300, check=False)
    (folder / "play.log").write_text(played.stdout + played.stderr)
    if played.returncode != 0:
        raise RuntimeError(f"podman kube play exited {played.returncode}: "
                           f"{played.stderr.strip()[-400:]}")
    listed = json.loads(node.podman("ps", "--all", "--format", "json").stdout or "[]")
    names = [n for ctr in listed if not ctr.get("IsInfra") for n in ctr["Names"]]
    if len(names) != len(play.containers):
        raise RuntimeError(f"podman made containers {names}, not {len(play.containers)}")
    code: int | None = None
    try:
        waited = node.podman("wait", *names, timeout=timeout, check=False)
        codes = waited.stdout.split()
        code = max(int(x) for x in codes) if codes and all(
            x.lstrip("-").isdigit() for x in codes) else None
    except subprocess.TimeoutExpired:
        node.podman("pod", "stop", "--all", timeout=120, check=False)
    seconds = time.monotonic() - started
    with (folder / "container.log").open("w") as log:
        for name in names:
            log.write(node.podman("logs", name, check=False).stdout)
    inspected = json.loads(node.podman("inspect", *names).stdout)
    pod_sc = _pod_security(play)
    gaps = [f"{ctr['Name']}: {gap}" for ctr, spec in zip(
        sorted(inspected, key=lambda i: names.index(i["Name"])), play.containers, strict=True)
        for gap in hardening_gaps(ctr, spec, pod_sc)]
    return code, seconds, gaps


def _pod_security(play: Play) -> Mapping[str, Any]:
    for obj in c.documents(play.documents):
        if obj["kind"] in ("Job", "Pod"):
            return _pod_spec(obj).get("securityContext") or {}
    return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.containers.podman",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--docker", default="docker", help="the docker CLI to call")
    parser.add_argument("--node", required=True, help="the Podman node's container")
    parser.add_argument("--image", required=True, help="the runner image (in Podman)")
    parser.add_argument("--work", required=True, type=Path,
                        help="a folder mounted at the same path in the node")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per pod")
    args = parser.parse_args(argv)
    work: Path = args.work.resolve()
    key = secrets.token_hex(32)
    try:
        todo = plays(args.image, key=key, work=work)
    except c.RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    node = Node(args.docker, args.node)
    outcomes: list[Outcome] = []
    reference = None
    for play in todo:
        if isinstance(play, c.Skip):
            outcomes.append(Outcome(play.name, "-", "-", None, f"SKIP {play.reason}", None))
            continue
        case = play.case
        folder = work / "".join(ch if ch.isalnum() else "-" for ch in case.name.lower())
        if case.weights and reference is None:
            reference = host_reference(work, key)
        print(f"podman kube play: {case.name} ...", file=sys.stderr, flush=True)
        try:
            code, seconds, gaps = run_play(play, node, folder=folder, timeout=args.timeout)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            outcomes.append(Outcome(case.name, case.image, "-", None, str(exc), False))
            continue
        outcomes.append(outcome(case, code, seconds, folder, reference, gaps=gaps))
    print(summary(outcomes), flush=True)
    return 1 if any(o.ok is False for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
