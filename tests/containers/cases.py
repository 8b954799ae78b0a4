"""The pods the container end-to-end test runs, rendered by our own code.

Each :class:`Case` is one pod: the objects it came from (``runner submit``/``schedule
--dry-run`` output, or the chart as Helm renders it), the Pod as the Job controller would
make it, the Secret holding the store's key, and what to check afterwards. The pods'
artifact store is a PersistentVolumeClaim (``--artifacts-pvc``, the chart's
``artifacts.persistentVolumeClaim``) that the driver binds to a host folder, which the
host reads back with the same key. What cannot run here
is a :class:`Skip` with the reason.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.containers.objects import pod_of

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "runner"
CLAIM = "runs"
"""The PersistentVolumeClaim every pod here keeps its artifact store on."""
RELEASE = "e2e"
NAMESPACE = "research"


@dataclass
class Case:
    """One pod to run in a real container, and how to judge it."""

    name: str
    image: str
    pod: dict[str, Any]
    objects: list[dict[str, Any]]
    key: str | None = None
    """The store's key the pod reads (RUNNER_ARTIFACT_KEY), to read its artifacts with."""
    run_id: str | None = None
    """The run whose artifacts are checked; None: the exit code is the result."""
    pipeline: str | None = None
    weights: bool = False
    """Compare the final weights with a host run of ``pipeline``."""
    laptop_cache: bool = False
    """A run of ``pipeline`` on this host (a checkout, its own Python) fills the step
    cache in the pod's store first; every step of the pod's run must be a hit."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Skip:
    name: str
    reason: str


class RenderError(RuntimeError):
    """Our own code refused to render the objects (its message says why)."""


def cli(*args: str, key: str, timeout: float = 180, path: tuple[str, ...] = ()) -> str:
    """``runner ARGS`` as a user would run it, the caller's key in the environment
    (``path``: folders of the user's own modules, as their checkout would have them)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBERNETES_", "TRACEPARENT", "RUNNER_", "OTEL_"))}
    env.update(RUNNER_ARTIFACT_KEY=key, KUBECONFIG="/nonexistent/kubeconfig",
               PYTHONPATH=os.pathsep.join([str(ROOT), *path, env.get("PYTHONPATH", "")]
                                          ).rstrip(os.pathsep))
    done = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RenderError(f"runner {' '.join(args[:2])} exited {done.returncode}: "
                          f"{done.stderr.strip()[-400:]}")
    return done.stdout


def documents(text: str) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d]


def key_secret(name: str, key: str, namespace: str) -> dict[str, Any]:
    """The Secret ``runner submit``/``schedule`` make from the caller's key (not printed
    by ``--dry-run``)."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"RUNNER_ARTIFACT_KEY": base64.b64encode(key.encode()).decode()}}


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    if len(found) != 1:
        raise RenderError(f"expected one {kind}, got {len(found)}")
    return found[0]


def submit_case(image: str, key: str) -> Case:
    """``runner submit alpha.full --dry-run``: its ConfigMap and Job."""
    from runner.k8s.builders import artifact_key_name

    run_id = "e2e-submit"
    objects = documents(cli("submit", "alpha.full", "--image", image, "--run-id", run_id,
                            "-n", NAMESPACE, "--artifacts-pvc", CLAIM, "--dry-run", key=key))
    job = copy.deepcopy(only(objects, "Job"))
    secret = key_secret(artifact_key_name(run_id), key, NAMESPACE)
    return Case("submit alpha.full (Job)", image, pod_of(job), [*objects, secret], key=key,
                run_id=run_id, pipeline="alpha.full", weights=True)


def cached_case(image: str, key: str) -> Case:
    """``runner submit alpha.full --cache --dry-run``, its store's step cache filled by a
    run on this host beforehand: the issue's laptop and pod sharing one cache. The two
    share the code and the data, not the install (a checkout here, the wheel in the
    image) nor the Python patch release, which the cache keys must not depend on."""
    from runner.k8s.builders import artifact_key_name

    run_id = "e2e-cached"
    objects = documents(cli("submit", "alpha.full", "--cache", "--image", image, "--run-id",
                            run_id, "-n", NAMESPACE, "--artifacts-pvc", CLAIM, "--dry-run",
                            key=key))
    job = copy.deepcopy(only(objects, "Job"))
    secret = key_secret(artifact_key_name(run_id), key, NAMESPACE)
    return Case("submit alpha.full --cache (Job), a laptop's cache", image, pod_of(job),
                [*objects, secret], key=key, run_id=run_id, pipeline="alpha.full",
                weights=True, laptop_cache=True)


def schedule_case(image: str, key: str) -> Case:
    """``runner schedule alpha.full --dry-run``: its CronJob's job template, as the
    CronJob controller would make the Job of this minute."""
    from runner.k8s.builders import artifact_key_name

    name = "alpha-full"
    objects = documents(cli("schedule", "alpha.full", "--cron", "0 6 * * 1-5", "--image",
                            image, "-n", NAMESPACE, "--artifacts-pvc", CLAIM, "--dry-run",
                            key=key))
    cron = copy.deepcopy(only(objects, "CronJob"))
    pod = pod_of(cron, scheduled_minute=int(time.time() // 60))
    secret = key_secret(artifact_key_name(name), key, NAMESPACE)
    return Case("schedule alpha.full (CronJob)", image, pod, [*objects, secret], key=key,
                run_id=pod["metadata"]["labels"]["batch.kubernetes.io/job-name"],
                pipeline="alpha.full", weights=True)


USER_EXAMPLE = ROOT / "examples" / "user-image"
"""The README's own-stages example: a package of the quickstart's stages, an image FROM
ours that installs it, and its manifest."""


def user_case(user_image: str | None, key: str) -> Case | Skip:
    """``runner submit demo -m examples/user-image/demo.json --image <an image FROM
    ours>``: the user's own stages, installed in their image, run as a Job's pod."""
    from runner.k8s.builders import artifact_key_name

    name = "your own stages: submit demo (Job, image FROM ours)"
    if user_image is None:
        return Skip(name, "no --user-image given")
    run_id = "e2e-user"
    objects = documents(cli("submit", "demo", "-m", str(USER_EXAMPLE / "demo.json"),
                            "--image", user_image, "--run-id", run_id, "-n", NAMESPACE,
                            "--artifacts-pvc", CLAIM, "--dry-run", key=key,
                            path=(str(USER_EXAMPLE / "src"),)))
    job = copy.deepcopy(only(objects, "Job"))
    secret = key_secret(artifact_key_name(run_id), key, NAMESPACE)
    return Case(name, user_image, pod_of(job), [*objects, secret], key=key, run_id=run_id,
                pipeline="demo")


def render_chart(image: str, *, runs: list[dict[str, Any]],
                 work: Path) -> list[dict[str, Any]]:
    """The chart as Helm renders it (helm_sdkpy, into the Kubernetes emulator): every
    object, the helm test hook's included."""
    from tests.k8s_emulator import Emulator, HelmError, helm_install

    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        repository, tag = image, "latest"
    values = {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
              "artifacts": {"persistentVolumeClaim": CLAIM}, "runs": runs}
    work.mkdir(parents=True, exist_ok=True)
    try:
        with Emulator(work, namespace=NAMESPACE) as k8s:
            return helm_install(CHART, k8s, release=RELEASE, namespace=NAMESPACE,
                                values=values).objects()
    except HelmError as exc:
        raise RenderError(f"helm install: {exc}") from None


def chart_key(objects: list[dict[str, Any]]) -> str:
    """RUNNER_ARTIFACT_KEY from the chart's rendered key Secret."""
    for obj in objects:
        data = obj.get("data") or {}
        if obj["kind"] == "Secret" and "RUNNER_ARTIFACT_KEY" in data:
            return base64.b64decode(data["RUNNER_ARTIFACT_KEY"]).decode()
    raise RenderError("the chart rendered no Secret with RUNNER_ARTIFACT_KEY")


def chart_unavailable() -> str | None:
    """Why the chart cannot be rendered here, or None."""
    missing = [m for m in ("helm_sdkpy", "kmock") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"the chart is rendered by helm_sdkpy into kmock's emulator; not installed: "
                f"{', '.join(missing)}")
    return None


def chart_cases(image: str, ray_image: str | None, work: Path) -> list[Case | Skip]:
    """The chart's GitOps run Job and its helm-test pod (and, with a Ray image, a run on
    a Ray started inside its own pod)."""
    why = chart_unavailable()
    if why:
        return [Skip("chart GitOps run alpha.full (Job)", why),
                Skip("chart helm test (Pod)", why)]
    runs = [{"name": "e2e", "pipeline": "alpha.full", "runId": "chart-e2e"}]
    objects = render_chart(image, runs=runs, work=work / "chart")
    key = chart_key(objects)
    job = copy.deepcopy(only(objects, "Job"))
    out: list[Case | Skip] = [
        Case("chart GitOps run alpha.full (Job)", image, pod_of(job), objects, key=key,
             run_id="chart-e2e", pipeline="alpha.full", weights=True),
        Case("chart helm test (Pod)", image, pod_of(only(objects, "Pod")), objects)]
    if ray_image is None:
        out.append(Skip("chart run alpha.parallel on Ray (Job)", "no --ray-image given"))
    else:
        ray_runs = [{"name": "e2e-ray", "pipeline": "alpha.parallel", "runId": "chart-ray",
                     "executor": "ray", "parallel": True}]
        ray_objects = render_chart(ray_image, runs=ray_runs, work=work / "chart-ray")
        ray_job = copy.deepcopy(only(ray_objects, "Job"))
        out.append(Case("chart run alpha.parallel on a Ray in its pod (Job)", ray_image,
                        pod_of(ray_job), ray_objects, key=chart_key(ray_objects),
                        run_id="chart-ray", pipeline="alpha.full", weights=True))
    return out


SKIPPED = [
    Skip("submit alpha.parallel --parallel (Job + RayCluster)",
         "its Job waits for a KubeRay head (ray://<cluster>-head-svc:10001): no KubeRay "
         "operator here, and the pods have no network"),
    Skip("chart rayCluster (RayCluster head and workers)",
         "KubeRay makes those pods (ray start ...); no operator here"),
    Skip("chart otel-s3 scenario (Job)",
         "its store is s3:// and its traces go to an OTLP collector: the pods have no "
         "network"),
]


def all_cases(image: str, ray_image: str | None, *, key: str, work: Path,
              user_image: str | None = None) -> list[Case | Skip]:
    return [submit_case(image, key), cached_case(image, key), schedule_case(image, key),
            *chart_cases(image, ray_image, work), user_case(user_image, key), *SKIPPED]
