"""submit -> Job -> pod -> ``runner run`` -> artifacts -> status -> ``--wait``, end to end.

The API is kmock's emulator on 127.0.0.1; the test-side kubelet (tests/k8s_kubelet.py)
runs each Job's container as a local ``runner`` process, and stands in for KubeRay by
readying RayClusters (their head address then points at the tests' local Ray cluster).
The controller is the real one, through the CLI in a subprocess or from Python.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")

from runner.k8s.builders import RunSpec
from runner.k8s.controller import Controller, Retry
from tests.k8s_emulator import Emulator
from tests.k8s_kubelet import Kubelet
from tests.raycluster import ray_cluster_fixture  # noqa: F401 -- "ray_cluster"

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
IMAGE = "ghcr.io/acme/runner:0.1.0"


@pytest.fixture
def k8s(tmp_path):
    (tmp_path / "api").mkdir()
    with Emulator(tmp_path / "api", version="1.37.0", namespace="research") as emulator:
        yield emulator


def cli(k8s, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBERNETES_", "TRACEPARENT", "RUNNER_", "RAY_"))}
    env["KUBECONFIG"] = str(k8s.kubeconfig)
    env["RUNNER_ARTIFACT_KEY"] = "e2e-" + "0" * 60  # the caller's key: into the run's Secret
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


CLAIM = ("--artifacts-pvc", "runs")
"""The runs' store: a PersistentVolumeClaim, which the test-side kubelet keeps as one folder
that every pod shares (:func:`claim`)."""


def claim(tmp_path: Path) -> Path:
    return tmp_path / "nodes" / "claims" / "research" / "runs"


def run_json(art: Path, run_id: str) -> dict:
    return json.loads((art / "runs" / run_id / "run.json").read_text())


def test_submit_wait_follow_runs_the_pipeline_in_the_pod(k8s, tmp_path):
    art = claim(tmp_path)
    with Kubelet(k8s, workdir=tmp_path / "nodes") as kubelet:
        done = cli(k8s, "submit", "alpha.full", "--image", IMAGE, "--run-id", "e2e-1",
                   *CLAIM, "--wait", "--follow", "--json")
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        doc = json.loads(lines[-1])
        assert doc["status"] == "succeeded" and doc["run"]["succeeded"] == 1
        pod_output = json.loads(lines[-2])  # the pod's own `runner run --json`, followed
        assert pod_output["run_id"] == "e2e-1" and pod_output["status"] == "succeeded"
        # the run joined the trace that submit started and printed
        assert pod_output["trace_id"] == doc["trace_id"]
        (attempt,) = kubelet.runs("runner-e2e-1", "research")
        assert attempt.argv[1:5] == ["run", "alpha.full", "--run-id", "e2e-1"]
        assert "--resume" in attempt.argv

    stored = run_json(art, "e2e-1")
    assert stored["status"] == "succeeded" and stored["pipeline"] == "alpha.full"
    status = cli(k8s, "status", "e2e-1", "--json")
    assert json.loads(status.stdout)["phase"] == "succeeded"
    logs = cli(k8s, "logs", "e2e-1", "--tail", "1")
    assert json.loads(logs.stdout)["run_id"] == "e2e-1"


def test_an_oom_killed_pod_fails_the_run_with_the_reason_in_words(k8s, tmp_path):
    with Kubelet(k8s, workdir=tmp_path / "nodes") as kubelet:
        made = cli(k8s, "submit", "alpha.full", "--image", IMAGE, "--run-id", "oom-1",
                   "--backoff-limit", "0", *CLAIM)
        assert made.returncode == 0, made.stderr
        kubelet.wait_running("runner-oom-1", "research")
        kubelet.kill("runner-oom-1", "OOMKilled", namespace="research")
        waited = cli(k8s, "submit", "alpha.full", "--image", IMAGE, "--run-id", "oom-1",
                     *CLAIM, "--wait")  # the same id: attach, then wait
    assert waited.returncode == 1, waited.stderr
    assert "attached to run oom-1" in waited.stderr
    assert "ran out of memory (OOMKilled)" in waited.stderr
    assert "Traceback" not in waited.stderr
    status = json.loads(cli(k8s, "status", "oom-1", "--json").stdout)
    assert status["phase"] == "failed" and status["pods"][0]["exit_code"] == 137


def test_a_retried_pod_resumes_the_run_from_its_checkpoints(k8s, tmp_path):
    """The first attempt dies mid-run; the second resumes (``--resume``) and succeeds."""
    art = claim(tmp_path)
    with Kubelet(k8s, workdir=tmp_path / "nodes") as kubelet:
        cli(k8s, "submit", "alpha.full", "--image", IMAGE, "--run-id", "retry-1",
            *CLAIM, "--backoff-limit", "1")
        kubelet.wait((art / "runs" / "retry-1").exists, timeout=120,
                     what="the first checkpoint")
        kubelet.kill("runner-retry-1", "OOMKilled", namespace="research")
        ctl = Controller.connect("research", kubeconfig=str(k8s.kubeconfig))
        final = ctl.wait("retry-1", timeout=240)
        attempts = kubelet.runs("runner-retry-1", "research")
    assert final.phase == "succeeded" and final.failed == 1 and final.succeeded == 1
    assert [a.reason for a in attempts][:1] == ["OOMKilled"] and len(attempts) == 2
    assert run_json(art, "retry-1")["status"] == "succeeded"


def test_the_watch_survives_410_dropped_streams_and_5xx(k8s, tmp_path):
    """One run, followed by ``wait`` while the API server expires its watch (410 in the
    stream), drops a stream, answers 500 to a watch and 503 to a read."""
    art = tmp_path / "art"
    quick = Retry(attempts=5, backoff=0.05)
    with Kubelet(k8s, workdir=tmp_path / "nodes"):
        ctl = Controller.connect("research", kubeconfig=str(k8s.kubeconfig), retry=quick)
        create = k8s.fail_next("POST", r"/jobs$", 409, commit=True)  # a lost response
        done = ctl.submit(RunSpec(pipeline="alpha.full", run_id="flaky-1",
                                  namespace="research", image=IMAGE,
                                  manifest=(ROOT / "configs/manifest.json").read_text(),
                                  artifacts=f"file://{art}"))
        assert len(create.hits) == 1 and done.attached  # the 409 meant it was there: attach
        gone = k8s.gone_next_watch(r"/jobs")
        dropped = k8s.drop_next_watch(r"/jobs")
        broken = k8s.fail_next("GET", r"/jobs", 500, watch=True)
        busy = k8s.fail_next("GET", r"/pods$", 503, watch=False)
        final = ctl.wait("flaky-1", timeout=240)
    assert final.phase == "succeeded"
    assert [len(f.hits) for f in (gone, dropped, broken, busy)] == [1, 1, 1, 1]
    lists = [r for r in k8s.requests_to("GET", r"/namespaces/research/jobs$")
             if "watch" not in r.query]
    assert len(lists) >= 2  # listed again after the 410
    assert run_json(art, "flaky-1")["status"] == "succeeded"


def test_a_pod_that_cannot_start_is_reported_not_waited_for_forever(k8s, tmp_path):
    with Kubelet(k8s, workdir=tmp_path / "nodes"):
        done = cli(k8s, "submit", "alpha.full", "--image", IMAGE, "--run-id", "nosecret",
                   "--secret-env", "missing-credentials", "--ephemeral-artifacts", "--wait")
    assert done.returncode == 1, done.stderr
    assert "cannot start" in done.stderr and "missing-credentials" in done.stderr


def test_a_parallel_run_gets_a_ray_cluster_owned_by_its_job(k8s, tmp_path, ray_cluster):
    art = claim(tmp_path)
    from kubernetes import client, config

    # the cluster's token reaches the pod as a real one's would: from a Secret
    api = client.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig)))
    api.create_namespaced_secret("research", client.V1Secret(
        metadata=client.V1ObjectMeta(name="ray-token"),
        string_data={"RAY_AUTH_TOKEN": ray_cluster.token_path.read_text().strip()}))
    flags = ["--ray-token-secret", "ray-token"]  # the test's Ray has a token of its own
    with Kubelet(k8s, workdir=tmp_path / "nodes",
                 ray_address=ray_cluster.client_address) as kubelet:
        done = cli(k8s, "submit", "alpha.parallel", "--image", IMAGE, "--run-id", "par-1",
                   "--parallel", *CLAIM, "--wait", "--json", *flags)
        assert done.returncode == 0, done.stderr + "".join(
            a.text() for a in kubelet.runs("runner-par-1", "research"))
        doc = json.loads(done.stdout.strip().splitlines()[-1])
        assert doc["ray_cluster"] == "runner-par-1-ray" and doc["status"] == "succeeded"
        # a loaded machine may need the Job's retry (it resumes): the last attempt won
        attempts = kubelet.runs("runner-par-1", "research")
        attempt = attempts[-1]
        assert attempt.exit_code == 0
        for earlier in attempts[:-1]:  # why, for the report should a later check fail
            print(f"attempt exited {earlier.exit_code} ({earlier.reason}) and was retried; "
                  f"its log ends:\n{earlier.text()[-3000:]}")
        pod_output = json.loads(attempt.text().strip().splitlines()[-1])
        assert attempt.env["TV_ORCH_PARALLEL"] == "1"
        assert attempt.env["RAY_ADDRESS"] == ray_cluster.client_address
        # made owned by the Job (while it was suspended), deleted once the run ended
        history = [v for k, v in k8s.objects.items() if k[0].plural == "rayclusters"]
        assert history and all(v.deleted for v in history)
    created = list(k8s.requests_to("POST", r"/rayclusters$"))
    assert len(created) == 1
    stored = run_json(art, "par-1")
    assert stored["status"] == "succeeded" and stored["executor"] == "ray"
    branches = [s for s in pod_output["steps"] if s.get("branch")]
    assert branches and {s["executor"] for s in branches} == {"ray"}
    nodes = {s.get("node") for s in branches}
    assert nodes <= {ray_cluster.head_node_id, ray_cluster.worker_node_id} and None not in nodes


def test_a_pod_whose_manifest_configmap_is_gone_is_reported_after_the_grace(k8s, tmp_path):
    """The kubelet says why a volume cannot be mounted only in a FailedMount Event; the
    pod itself just stays ContainerCreating. ``wait`` reads the Event once the pod has
    waited longer than ``mount_grace`` (a GitOps sync may still be creating it)."""
    from runner.k8s.controller import RunFailedError

    ctl = Controller.connect("research", kubeconfig=str(k8s.kubeconfig))
    ctl.mount_grace, ctl.watch_timeout = 3.0, 2
    ctl.submit(RunSpec(pipeline="alpha.full", run_id="nomanifest", namespace="research",
                       image=IMAGE, manifest=(ROOT / "configs/manifest.json").read_text()))
    ctl.core.delete_namespaced_config_map("runner-nomanifest-manifest", "research")
    with Kubelet(k8s, workdir=tmp_path / "nodes") as kubelet:
        kubelet.wait(lambda: any(r.reason == "ContainerCreating"
                                 for r in kubelet.runs("runner-nomanifest", "research")),
                     what="the pod to wait for its volume")
        early = ctl.status("nomanifest")  # within the grace: just pending
        assert early.phase == "pending" and early.reason is None
        with pytest.raises(RunFailedError) as failed:
            ctl.wait("nomanifest", timeout=60)
    said = str(failed.value)
    assert "cannot start" in said and "a volume cannot be mounted" in said
    assert 'configmap "runner-nomanifest-manifest" not found' in said
    assert failed.value.status.phase == "pending"
