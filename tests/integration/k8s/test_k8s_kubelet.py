"""The test cluster itself: kmock's API emulator (tests/k8s_emulator.py) with the test
kubelet (tests/k8s_kubelet.py) running Jobs as local processes, driven here with the
official client only (not the project's controller), plus the emulator's fault injection.

Jobs are the project's own (runner.k8s.builders). The runs of the shipped pipeline use
the real ``runner`` command; the rest use a stand-in entrypoint (a Python one-liner) so
that they take a fraction of a second.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.util.retry import Retry

from runner.k8s.builders import (
    RunSpec,
    Schedule,
    config_map,
    cron_job,
    job,
    ray_client_address,
    ray_cluster_name,
    to_dicts,
)
from runner.k8s.ray import ray_cluster
from tests.k8s_emulator import Emulator, labels_match
from tests.k8s_kubelet import Kubelet, KubeletError, mount_host_folder

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
NS = "research"
MANIFEST = (ROOT / "configs/manifest.json").read_text()
SHOW = [sys.executable, "-c", "import json, os, sys; print(json.dumps({'argv': sys.argv[1:], "
        "'cwd': os.getcwd(), 'env': dict(os.environ)}))"]
"""A stand-in entrypoint: prints what it was given, exits 0."""
SLEEP = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(120)"]
"""A stand-in entrypoint that runs until it is stopped."""


@pytest.fixture
def k8s(tmp_path) -> Iterator[Emulator]:
    with Emulator(tmp_path, version="1.37.0") as emulator:
        yield emulator


class Api:
    """The official client's APIs for one test."""

    def __init__(self, k8s: Emulator) -> None:
        self.client = config.new_client_from_config(config_file=str(k8s.kubeconfig))
        self.core = client.CoreV1Api(self.client)
        self.batch = client.BatchV1Api(self.client)
        self.custom = client.CustomObjectsApi(self.client)

    def job(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.client.sanitize_for_serialization(
            self.batch.read_namespaced_job(name, NS))
        return found

    def conditions(self, name: str) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.job(name).get("status", {}).get("conditions", [])}


@pytest.fixture
def api(k8s) -> Iterator[Api]:
    found = Api(k8s)
    yield found
    found.client.rest_client.close()


@pytest.fixture
def kubelet(k8s, tmp_path) -> Iterator[Any]:
    """``kubelet(**options)`` starts one (stopped at the end of the test)."""
    with ExitStack() as stack:
        def start(**options: Any) -> Kubelet:
            return stack.enter_context(Kubelet(k8s, workdir=tmp_path / "nodes", **options))
        yield start


def spec(run_id: str = "nightly-1", **changes: Any) -> RunSpec:
    return RunSpec(**{"pipeline": "alpha.full", "run_id": run_id, "namespace": NS,
                      "image": "ghcr.io/acme/runner:0.1.0", "manifest": MANIFEST, **changes})


def submit(api: Api, run: RunSpec, *, manifest: bool = True, **job_options: Any) -> \
        dict[str, Any]:
    """What the controller would do: the manifest's ConfigMap, then the Job (a dict)."""
    body = to_dicts([job(run, **job_options)])[0]
    if run.artifacts and run.artifacts.startswith("/"):
        mount_host_folder(body, run.artifacts, name="artifacts")
    if manifest:
        api.core.create_namespaced_config_map(NS, config_map(run))
    api.batch.create_namespaced_job(NS, body)
    return body


def shown(kubelet: Kubelet, job_name: str) -> dict[str, Any]:
    """What the SHOW entrypoint printed in the Job's last pod."""
    return json.loads(kubelet.runs(job_name)[-1].text().strip().splitlines()[-1])


def started(kubelet: Kubelet, job_name: str) -> str:
    """Until the Job's pod runs the SLEEP entrypoint and it said so; the pod's name."""
    pod = kubelet.wait_running(job_name)
    kubelet.wait(lambda: kubelet.run(pod).text() == "started\n", what=f"{pod} to start")
    return pod


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def gone(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


# ---------------------------------------------------------------------------- runs


def test_the_shipped_pipeline_runs_in_a_pod_with_logs_and_artifacts(k8s, api, kubelet,
                                                                    tmp_path):
    kube = kubelet()
    artifacts = tmp_path / "artifacts"
    phases: list[tuple[str, str | None, str | None]] = []

    def follow_pods() -> None:  # every change of the pod, as a watch sees it
        stream = watch.Watch()
        for event in stream.stream(api.core.list_namespaced_pod, NS, timeout_seconds=120):
            status = event["raw_object"].get("status") or {}
            states = [next(iter(cs.get("state") or {}), None)
                      for cs in status.get("containerStatuses") or []]
            phases.append((event["type"], status.get("phase"), (states or [None])[0]))
            if status.get("phase") in ("Succeeded", "Failed"):
                stream.stop()

    watcher = threading.Thread(target=follow_pods)
    watcher.start()
    kube.wait(lambda: any(r.query.get("watch") for r in k8s.requests_to("GET", "/pods")),
              what="the pod watch")
    time.sleep(0.1)  # the watch is open before the Job exists
    submit(api, spec(artifacts=str(artifacts)))
    pod = kube.wait_running("runner-nightly-1")

    followed = list(watch.Watch().stream(api.core.read_namespaced_pod_log, pod, NS))
    done = kube.wait_job("runner-nightly-1")
    watcher.join(30)

    conditions = {c["type"]: c for c in done["status"]["conditions"]}
    assert conditions["Complete"]["status"] == "True"
    assert conditions["SuccessCriteriaMet"]["reason"] == "CompletionsReached"
    assert done["status"]["succeeded"] == 1 and done["status"]["active"] == 0
    assert done["status"]["completionTime"] and done["status"]["startTime"]

    assert [p for p in phases if p[0] == "ADDED"] == [("ADDED", "Pending", None)]
    assert ("MODIFIED", "Running", "running") in phases
    assert phases[-1] == ("MODIFIED", "Succeeded", "terminated")

    (found,) = kube.pods("runner-nightly-1")
    meta = found["metadata"]
    assert meta["name"] == pod and meta["name"].startswith("runner-nightly-1-")
    assert meta["labels"]["job-name"] == meta["labels"]["batch.kubernetes.io/job-name"] \
        == "runner-nightly-1"
    assert meta["labels"]["runner.dev/run-id"] == "nightly-1"
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Job", "runner-nightly-1", api.job("runner-nightly-1")["metadata"]["uid"], True)
    assert meta["labels"]["controller-uid"] == owner["uid"]
    assert found["status"]["phase"] == "Succeeded"
    assert terminated(found)["exitCode"] == 0 and terminated(found)["reason"] == "Completed"

    text = api.core.read_namespaced_pod_log(pod, NS)
    lines = text.splitlines()
    assert followed == lines  # followed from Running to the end: all of it
    doc = next(json.loads(line) for line in lines if line.startswith('{"run_id"'))
    assert doc["status"] == "succeeded" and doc["pipeline"] == "alpha.full"
    assert api.core.read_namespaced_pod_log(pod, NS, tail_lines=2).splitlines() == lines[-2:]
    assert (artifacts / "runs" / "nightly-1" / "run.json").is_file()
    assert json.loads((artifacts / "runs" / "nightly-1" / "run.json").read_text())


def test_the_container_gets_its_args_environment_volumes_and_secrets(k8s, api, kubelet,
                                                                     monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-test-process")
    kube = kubelet(entrypoint=SHOW, ray_address="ray://127.0.0.1:10001")
    api.core.create_namespaced_secret(NS, {"metadata": {"name": "aws"}, "data": {
        "AWS_ACCESS_KEY_ID": base64.b64encode(b"AKIA-test").decode(),
        "AWS_SECRET_ACCESS_KEY": base64.b64encode(b"s3cr3t").decode()}})
    run = spec(secret_env=("aws",), params={"lookback": 20}, env={"EXTRA": "/tmp/extra"},
               traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
               parallel=True)
    submit(api, run, ray_address=ray_client_address(run))
    kube.wait_job("runner-nightly-1")

    got = shown(kube, "runner-nightly-1")
    (pod,) = kube.runs("runner-nightly-1")
    env = got["env"]
    tmp = pod.folder / "volumes" / "tmp"
    assert got["argv"] == ["run", "alpha.full", "--run-id", "nightly-1", "--resume", "--or-start",
                           "--json",
                           "--param", "lookback=20"]
    assert got["cwd"] == str(pod.folder) and pod.argv == [*SHOW, *got["argv"]]
    assert Path(env["RUNNER_MANIFEST"]) == pod.folder / "volumes" / "manifest" / "manifest.json"
    assert Path(env["RUNNER_MANIFEST"]).read_text() == MANIFEST
    assert env["HOME"] == env["TMPDIR"] == str(tmp) and env["EXTRA"] == f"{tmp}/extra"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("AKIA-test", "s3cr3t")
    assert env["RAY_ADDRESS"] == "ray://127.0.0.1:10001"  # the head service, made local
    assert env["RUNNER_RUN_ID"] == "nightly-1" and env["TRACEPARENT"].startswith("00-0af7")
    assert env["PYTHONPATH"].split(":")[0] == str(ROOT) and env["HOSTNAME"] == pod.name
    assert "RUNNER_WORKSPACE_ROOT" not in env  # nothing leaks in from the test process


def test_a_scheduled_job_takes_its_run_id_from_its_own_name(k8s, api, kubelet):
    kube = kubelet(entrypoint=SHOW)
    cron = to_dicts([cron_job(Schedule(name="nightly", cron="0 2 * * *", run=spec()))])[0]
    api.core.create_namespaced_config_map(NS, config_map(spec()))
    # what the CronJob controller would make at 02:00 (kubectl create job --from=cronjob/...)
    api.batch.create_namespaced_job(NS, {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "nightly-29123456", "labels": cron["spec"]["jobTemplate"]
                     ["metadata"]["labels"]},
        "spec": cron["spec"]["jobTemplate"]["spec"]})
    kube.wait_job("nightly-29123456")
    got = shown(kube, "nightly-29123456")
    assert got["env"]["RUNNER_RUN_ID"] == "nightly-29123456"
    assert got["argv"][:4] == ["run", "alpha.full", "--run-id", "nightly-29123456"]


def test_a_missing_configmap_or_secret_keeps_the_pod_waiting_until_it_exists(k8s, api,
                                                                            kubelet):
    kube = kubelet(entrypoint=SHOW)
    run = spec(secret_env=("aws",))
    submit(api, run, manifest=False)

    def waiting() -> dict[str, Any]:
        pods = kube.pods("runner-nightly-1")
        statuses = pods[0]["status"].get("containerStatuses") if pods else None
        return statuses[0]["state"].get("waiting") if statuses else {}

    kube.wait(lambda: kube.runs("runner-nightly-1") and kube.runs("runner-nightly-1")[0].reason
              == "ContainerCreating", what="the pod to wait for its volume")
    assert waiting() == {"reason": "ContainerCreating"}  # why: only in the Event
    (pod,) = kube.pods("runner-nightly-1")
    assert pod["status"]["phase"] == "Pending"
    with pytest.raises(ApiException) as refused:
        api.core.read_namespaced_pod_log(pod["metadata"]["name"], NS)
    assert refused.value.status == 400
    assert json.loads(refused.value.body or "")["message"] == (
        f'container "runner" in pod "{pod["metadata"]["name"]}" is waiting to start: '
        "ContainerCreating")
    events = api.core.list_namespaced_event(NS).items
    assert [(e.reason, e.type, e.involved_object.name, e.message) for e in events] == [
        ("FailedMount", "Warning", pod["metadata"]["name"],
         'MountVolume.SetUp failed for volume "manifest" : configmap '
         '"runner-nightly-1-manifest" not found')]

    api.core.create_namespaced_config_map(NS, config_map(run))
    kube.wait(lambda: kube.runs("runner-nightly-1")[0].reason == "CreateContainerConfigError",
              what="the pod to wait for its secret")
    assert waiting() == {"reason": "CreateContainerConfigError",
                         "message": 'secret "aws" not found'}

    api.core.create_namespaced_secret(NS, {"metadata": {"name": "aws"},
                                           "stringData": {"AWS_ACCESS_KEY_ID": "AKIA-late"}})
    done = kube.wait_job("runner-nightly-1")
    assert done["status"]["succeeded"] == 1 and len(kube.pods("runner-nightly-1")) == 1
    assert shown(kube, "runner-nightly-1")["env"]["AWS_ACCESS_KEY_ID"] == "AKIA-late"


def test_a_failing_run_is_retried_up_to_the_backoff_limit_then_fails(k8s, api, kubelet):
    kube = kubelet()
    submit(api, spec(pipeline="no-such-pipeline", backoff_limit=1))
    done = kube.wait_job("runner-nightly-1")

    status = done["status"]
    assert (status["failed"], status["succeeded"], status["active"]) == (2, 0, 0)
    assert "completionTime" not in status
    conditions = {c["type"]: c for c in status["conditions"]}
    for kind in ("FailureTarget", "Failed"):
        assert conditions[kind]["status"] == "True"
        assert conditions[kind]["reason"] == "BackoffLimitExceeded"
        assert conditions[kind]["message"] == "Job has reached the specified backoff limit"
    pods = kube.pods("runner-nightly-1")
    assert len(pods) == 2 and pods[0]["metadata"]["name"] != pods[1]["metadata"]["name"]
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        assert (terminated(pod)["exitCode"], terminated(pod)["reason"]) == (2, "Error")
        text = api.core.read_namespaced_pod_log(pod["metadata"]["name"], NS)
        assert "no pipeline named 'no-such-pipeline'" in text


def test_kills_are_reported_as_oomkilled_or_evicted_and_only_oom_counts(k8s, api, kubelet):
    """An eviction is a disruption (DisruptionTarget): the Job's podFailurePolicy retries
    it without counting; an OOM kill is the pod's own failure and counts."""
    kube = kubelet(entrypoint=SLEEP)
    submit(api, spec(backoff_limit=0))
    first = started(kube, "runner-nightly-1")

    evicted = kube.kill("runner-nightly-1", reason="Evicted")
    assert evicted == first
    pod = api.core.read_namespaced_pod(evicted, NS).to_dict()
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "Evicted"
    assert pod["status"]["message"].startswith("The node was low on resource: memory.")
    assert {c["type"]: c["reason"] for c in pod["status"]["conditions"]}[
        "DisruptionTarget"] == "TerminationByKubelet"
    assert api.job("runner-nightly-1")["status"]["failed"] == 0

    second = started(kube, "runner-nightly-1")  # the retry, though backoffLimit is 0
    assert second != evicted
    kube.kill("runner-nightly-1", reason="OOMKilled")
    done = kube.wait_job("runner-nightly-1")
    last = kube.pods("runner-nightly-1")[-1]
    assert last["metadata"]["name"] == second and last["status"]["phase"] == "Failed"
    assert (terminated(last)["exitCode"], terminated(last)["reason"]) == (137, "OOMKilled")
    assert {c["type"]: c["reason"] for c in done["status"]["conditions"]}["Failed"] == \
        "BackoffLimitExceeded"
    assert done["status"]["failed"] == 1
    assert [r.reason for r in kube.runs("runner-nightly-1")] == ["Evicted", "OOMKilled"]
    assert api.core.read_namespaced_pod_log(second, NS) == "started\n"


@pytest.mark.parametrize("reason", ["Preempted", "Drained"])
def test_a_preempted_pod_gets_sigterm_and_a_retry_that_does_not_count(k8s, api, kubelet,
                                                                      tmp_path, reason):
    """Preemption and node drain: SIGTERM within the pod's grace, a DisruptionTarget
    condition, and with the project's Job (podFailurePolicy Ignore) a retry even at
    backoffLimit 0; the retry succeeds."""
    marker = tmp_path / "second-attempt"
    code = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: (print('sigterm', os.environ["
            "'RUNNER_TERM_GRACE'], flush=True), sys.exit(143)))\n"
            f"if os.path.exists({str(marker)!r}):\n    print('done'); sys.exit(0)\n"
            "print('started', flush=True); time.sleep(120)\n")
    kube = kubelet(entrypoint=[sys.executable, "-c", code])
    submit(api, spec(backoff_limit=0))
    first = started(kube, "runner-nightly-1")
    marker.touch()
    assert kube.preempt("runner-nightly-1", reason) == first
    pod = api.core.read_namespaced_pod(first, NS).to_dict()
    assert {c["type"] for c in pod["status"]["conditions"]} >= {"DisruptionTarget"}
    assert api.core.read_namespaced_pod_log(first, NS) == "started\nsigterm 20\n"
    done = kube.wait_job("runner-nightly-1")
    assert "Complete" in {c["type"] for c in done["status"]["conditions"]}
    assert done["status"]["failed"] == 0 and done["status"]["succeeded"] == 1
    assert [r.exit_code for r in kube.runs("runner-nightly-1")] == [143, 0]


def test_without_the_policy_a_preempted_pod_counts(k8s, api, kubelet, tmp_path):
    """What the podFailurePolicy changes: the same Job without it fails at backoffLimit 0."""
    kube = kubelet(entrypoint=SLEEP)
    body = to_dicts([job(spec(backoff_limit=0))])[0]
    del body["spec"]["podFailurePolicy"]
    api.core.create_namespaced_config_map(NS, config_map(spec()))
    api.batch.create_namespaced_job(NS, body)
    started(kube, "runner-nightly-1")
    kube.preempt("runner-nightly-1")
    done = kube.wait_job("runner-nightly-1")
    assert {c["type"]: c["reason"] for c in done["status"]["conditions"]}["Failed"] == \
        "BackoffLimitExceeded"


def test_a_suspended_job_starts_when_resumed_and_stops_when_suspended(k8s, api, kubelet):
    kube = kubelet(entrypoint=SLEEP)
    submit(api, spec(), suspend=True)
    kube.wait_idle()
    assert kube.pods("runner-nightly-1") == []
    assert api.conditions("runner-nightly-1")["Suspended"]["status"] == "True"
    assert api.job("runner-nightly-1")["status"].get("startTime") is None

    api.batch.patch_namespaced_job("runner-nightly-1", NS, {"spec": {"suspend": False}})
    first = kube.wait_running("runner-nightly-1")
    status = api.job("runner-nightly-1")["status"]
    assert (status["active"], status["ready"]) == (1, 1) and status["startTime"]
    assert api.conditions("runner-nightly-1")["Suspended"]["reason"] == "JobResumed"

    api.batch.patch_namespaced_job("runner-nightly-1", NS, {"spec": {"suspend": True}})
    kube.wait_idle()
    status = api.job("runner-nightly-1")["status"]
    assert (status["active"], status["failed"]) == (0, 0)  # a suspension is no failure
    assert kube.runs("runner-nightly-1")[0].reason == "Suspended"

    api.batch.patch_namespaced_job("runner-nightly-1", NS, {"spec": {"suspend": False}})
    assert kube.wait_running("runner-nightly-1") != first


def test_an_active_deadline_stops_the_pod_and_fails_the_job(k8s, api, kubelet):
    kube = kubelet(entrypoint=SLEEP)
    submit(api, spec(active_deadline_seconds=1))
    pod = kube.wait_running("runner-nightly-1")
    started = time.monotonic()
    done = kube.wait_job("runner-nightly-1", timeout=30)  # SLEEP alone would run 120 s
    print(f"the 1 s deadline stopped the pod after {time.monotonic() - started:.2f} s wall")
    failed = {c["type"]: c for c in done["status"]["conditions"]}["Failed"]
    assert (failed["reason"], failed["message"]) == (
        "DeadlineExceeded", "Job was active longer than specified deadline")
    kube.wait_idle()
    stopped = api.core.read_namespaced_pod(pod, NS).to_dict()["status"]
    assert (stopped["phase"], stopped["reason"]) == ("Failed", "DeadlineExceeded")
    assert stopped["container_statuses"][0]["state"]["terminated"]["exit_code"] == 143


def test_deleting_a_job_kills_its_process_and_collects_its_pods_and_raycluster(k8s, api,
                                                                              kubelet):
    kube = kubelet(entrypoint=SLEEP, ray_delay=0.2)
    run = spec(parallel=True)
    submit(api, run, ray_address=ray_client_address(run))
    owner = api.batch.read_namespaced_job("runner-nightly-1", NS)
    api.custom.create_namespaced_custom_object("ray.io", "v1", NS, "rayclusters",
                                               ray_cluster(run, owner=owner))
    name = ray_cluster_name("nightly-1")
    kube.wait_running("runner-nightly-1")

    def ray() -> dict[str, Any]:
        found: dict[str, Any] = api.custom.get_namespaced_custom_object(
            "ray.io", "v1", NS, "rayclusters", name)
        return found

    deadline = time.monotonic() + 60
    while (ray().get("status") or {}).get("state") != "ready":
        assert time.monotonic() < deadline, "the RayCluster never got ready"
        time.sleep(0.1)
    status = ray()["status"]
    assert status["head"] == {**status["head"], "podIP": "127.0.0.1", "serviceIP": "127.0.0.1"}
    assert status["readyWorkerReplicas"] == 2
    service = api.core.read_namespaced_service(f"{name}-head-svc", NS)
    assert service.metadata.owner_references[0].uid == ray()["metadata"]["uid"]
    (running,) = kube.runs("runner-nightly-1")
    assert running.pid is not None and not gone(running.pid)

    api.batch.delete_namespaced_job("runner-nightly-1", NS, propagation_policy="Foreground")
    kube.wait_idle()
    assert gone(running.pid)
    assert kube.pods("runner-nightly-1") == []
    assert kube.runs("runner-nightly-1")[0].reason == "Deleted"
    deadline = time.monotonic() + 60
    while True:
        names = [r["metadata"]["name"] for r in api.custom.list_namespaced_custom_object(
            "ray.io", "v1", NS, "rayclusters")["items"]]
        services = [s.metadata.name for s in api.core.list_namespaced_service(NS).items]
        if not names and not services:
            break
        assert time.monotonic() < deadline, f"still there: {names} {services}"
        time.sleep(0.1)


def test_a_job_held_by_the_foreground_finalizer_goes_once_its_pods_are_gone(k8s, api,
                                                                          kubelet):
    # kmock does not add the finalizer for propagationPolicy=Foreground: the Job has it here
    kube = kubelet(entrypoint=SLEEP, grace_cap=0.5)
    body = to_dicts([job(spec())])[0]
    body["metadata"]["finalizers"] = ["foregroundDeletion"]
    api.core.create_namespaced_config_map(NS, config_map(spec()))
    api.batch.create_namespaced_job(NS, body)
    kube.wait_running("runner-nightly-1")
    api.batch.delete_namespaced_job("runner-nightly-1", NS, propagation_policy="Foreground")
    assert api.job("runner-nightly-1")["metadata"]["deletionTimestamp"]  # held
    kube.wait_idle()
    deadline = time.monotonic() + 60
    while api.batch.list_namespaced_job(NS).items:
        assert time.monotonic() < deadline, "the Job is still held"
        time.sleep(0.1)
    assert kube.pods("runner-nightly-1") == []
    assert kube.runs("runner-nightly-1")[0].reason == "Deleted"


def test_leaving_kills_every_process_of_a_pod(k8s, tmp_path):
    script = "import subprocess, sys, time; print(subprocess.Popen([sys.executable, '-c', " \
             "'import time; time.sleep(120)']).pid, flush=True); time.sleep(120)"
    with Kubelet(k8s, workdir=tmp_path / "nodes",
                 entrypoint=[sys.executable, "-c", script]) as kube:
        api = Api(k8s)
        submit(api, spec())
        api.client.rest_client.close()
        kube.wait_running("runner-nightly-1")
        (run,) = kube.runs("runner-nightly-1")
        kube.wait(lambda: run.text().strip(), what="the child's pid")
        child = int(run.text().split()[0])
        assert run.pid is not None and not gone(child)
    assert gone(run.pid)
    deadline = time.monotonic() + 60  # SIGKILL is sent to the group; it lands a bit later
    while not gone(child):
        assert time.monotonic() < deadline, f"pid {child} outlived its pod"
        time.sleep(0.05)


def test_an_error_in_the_kubelet_is_raised_not_swallowed(k8s, tmp_path):
    kube = Kubelet(k8s, workdir=tmp_path / "nodes")

    def broken() -> None:
        raise RuntimeError("boom")

    kube._tick = broken  # type: ignore[method-assign]
    with pytest.raises(KubeletError, match="boom"), kube:
        kube.wait_idle(timeout=10)


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize(("status", "reason", "message"), [
    (409, "AlreadyExists", 'configmaps "m" already exists'),
    (500, "InternalError", "Internal error occurred: injected fault"),
    (403, "Forbidden", 'configmaps "m" is forbidden: User "system:serviceaccount:research:'
                       'runner" cannot create resource "configmaps" in API group "" in the '
                       'namespace "research"'),
])
def test_an_injected_failure_happens_once_then_the_server_answers_normally(
        k8s, api, status, reason, message):
    fault = k8s.fail_next("POST", r"/namespaces/research/configmaps$", status)
    with pytest.raises(ApiException) as failed:
        api.core.create_namespaced_config_map(NS, {"metadata": {"name": "m"}})
    assert failed.value.status == status
    body = json.loads(failed.value.body or "")
    assert (body["kind"], body["code"], body["reason"], body["message"]) == (
        "Status", status, reason, message)
    assert api.core.list_namespaced_config_map(NS).items == []  # nothing was made
    api.core.create_namespaced_config_map(NS, {"metadata": {"name": "m"}})
    assert fault.remaining == 0 and len(fault.hits) == 1
    assert [(r.method, r.path) for r in k8s.requests_to("POST", "configmaps")] == [
        ("POST", "/api/v1/namespaces/research/configmaps")] * 2


def test_a_committed_failure_makes_the_change_and_still_answers_an_error(k8s, api):
    k8s.fail_next("POST", r"/configmaps$", 500, commit=True)
    with pytest.raises(ApiException, match="500"):
        api.core.create_namespaced_config_map(NS, {"metadata": {"name": "m"}})
    with pytest.raises(ApiException) as again:  # the retry of a lost answer
        api.core.create_namespaced_config_map(NS, {"metadata": {"name": "m"}})
    assert again.value.status == 409
    assert [c.metadata.name for c in api.core.list_namespaced_config_map(NS).items] == ["m"]


def test_a_429_carries_retry_after_and_the_official_client_waits_and_retries(
        k8s, api, monkeypatch):
    api.core.create_namespaced_config_map(NS, {"metadata": {"name": "m"}})
    fault = k8s.fail_next("GET", r"/configmaps/m$", 429, times=1)
    waits: list[float | None] = []  # what urllib3 read off each answer and slept for
    sleep_for_retry = Retry.sleep_for_retry

    def recorded(self: Retry, response: Any) -> bool:
        waits.append(self.get_retry_after(response))
        return sleep_for_retry(self, response)

    monkeypatch.setattr(Retry, "sleep_for_retry", recorded)
    started = time.monotonic()
    assert api.core.read_namespaced_config_map("m", NS).metadata.name == "m"
    print(f"read after a 429 with Retry-After: 1 in {time.monotonic() - started:.2f} s wall")
    assert waits == [1.0]  # urllib3 honoured Retry-After: 1, once
    assert len(k8s.requests_to("GET", r"/configmaps/m$")) == 2 and fault.remaining == 0


def test_a_custom_body_and_any_method(k8s, api):
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 503,
            "reason": "ServiceUnavailable", "message": "etcd is down"}
    k8s.fail_next("*", r"/jobs", 503, body=body, times=2)
    for call in (lambda: api.batch.list_namespaced_job(NS),
                 lambda: api.batch.read_namespaced_job("x", NS)):
        with pytest.raises(ApiException) as failed:
            call()
        assert failed.value.status == 503 and json.loads(failed.value.body or "") == body
    assert api.batch.list_namespaced_job(NS).items == []


def _watch(api: Api, until: int = 4, **kwargs: Any) -> list[tuple[str, str]]:
    """Events of a raw Watch on the namespace's ConfigMaps, until it ends or saw ``until``."""
    stream = watch.Watch()
    seen = []
    for event in stream.stream(api.core.list_namespaced_config_map, NS, **kwargs):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == until:
            stream.stop()
    return seen


def test_a_gone_watch_is_an_in_stream_410_that_the_watch_recovers_from_once(k8s, api):
    for name in ("a", "b"):
        api.core.create_namespaced_config_map(NS, {"metadata": {"name": name}})
    version = api.core.list_namespaced_config_map(NS).metadata.resource_version
    api.core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})

    def watches() -> list[str | None]:
        return [r.query.get("resourceVersion") for r in k8s.requests_to("GET", "configmaps")
                if r.query.get("watch")]

    k8s.gone_next_watch(r"/configmaps")  # the official Watch retries once, same version
    assert _watch(api, 1, resource_version=version) == [("ADDED", "c")]
    assert watches() == [version, version]

    k8s.requests.clear()
    k8s.gone_next_watch(r"/configmaps", times=2)  # a second 410 in a row is raised
    with pytest.raises(ApiException) as gone_twice:
        _watch(api, resource_version=version)
    assert gone_twice.value.status == 410
    assert "Expired: too old resource version" in gone_twice.value.reason
    assert watches() == [version, version]

    k8s.gone_next_watch(r"/configmaps")  # with a server timeout, Watch never retries
    with pytest.raises(ApiException, match="410"):
        _watch(api, resource_version=version, timeout_seconds=5)
    k8s.gone_next_watch(r"/configmaps", in_stream=False)  # the HTTP form
    with pytest.raises(ApiException) as http_gone:
        _watch(api, resource_version=version, timeout_seconds=5)
    assert http_gone.value.status == 410
    assert not any(f.remaining for f in k8s.faults)
    assert _watch(api, resource_version=version, timeout_seconds=1) == [("ADDED", "c")]


def test_a_dropped_watch_ends_after_its_initial_events_and_resumes(k8s, api):
    for name in ("a", "b"):
        api.core.create_namespaced_config_map(NS, {"metadata": {"name": name}})
    k8s.drop_next_watch(r"/configmaps")
    stream = watch.Watch()
    seen = []
    for event in stream.stream(api.core.list_namespaced_config_map, NS):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 2:  # the stream is closed now; this lands before the reconnect
            api.core.delete_namespaced_config_map("a", NS)
            api.core.create_namespaced_config_map(NS, {"metadata": {"name": "c"}})
        if len(seen) == 4:
            stream.stop()
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a"), ("ADDED", "c")]
    watches = [r for r in k8s.requests_to("GET", "configmaps") if r.query.get("watch")]
    assert len(watches) == 2 and "resourceVersion" not in watches[0].query
    assert watches[1].query["resourceVersion"] == str(int(
        api.core.read_namespaced_config_map("b", NS).metadata.resource_version))


def test_lists_and_watches_honour_selectors_versions_and_timeouts(k8s, api):
    for name, tier in (("a", "gold"), ("b", "silver"), ("c", "gold")):
        api.core.create_namespaced_config_map(NS, {"metadata": {"name": name,
                                                                "labels": {"tier": tier}}})
    listed = api.core.list_namespaced_config_map(NS, label_selector="tier=gold")
    assert [c.metadata.name for c in listed.items] == ["a", "c"]
    assert int(listed.metadata.resource_version) >= 3
    assert [c.metadata.name for c in api.core.list_namespaced_config_map(
        NS, field_selector="metadata.name!=a", label_selector="tier in (gold, silver)").items
            ] == ["b", "c"]
    k8s.requests.clear()
    started = time.monotonic()
    # it ends by itself (four events were asked for): the server's timeout ended it
    assert _watch(api, label_selector="tier!=gold", timeout_seconds=1) == [("ADDED", "b")]
    print(f"a watch of timeoutSeconds=1 ended after {time.monotonic() - started:.2f} s wall")
    (sent,) = k8s.requests_to("GET", "configmaps")
    assert (sent.query["watch"], sent.query["timeoutSeconds"]) == ("true", "1")
    assert labels_match("tier,!legacy,app notin (x)", {"tier": "gold", "app": "y"})
    with pytest.raises(ApiException) as refused:
        api.core.list_namespaced_config_map(NS, label_selector="tier in gold")
    assert refused.value.status == 400


def test_the_log_endpoint_refuses_unknown_pods_and_containers(k8s, api):
    with pytest.raises(ApiException) as missing:
        api.core.read_namespaced_pod_log("nope", NS)
    assert missing.value.status == 404
    assert json.loads(missing.value.body or "")["message"] == 'pods "nope" not found'
    api.core.create_namespaced_pod(NS, {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "runner", "image": "x"}]}})
    with pytest.raises(ApiException) as wrong:
        api.core.read_namespaced_pod_log("p", NS, container="sidecar")
    assert wrong.value.status == 400
    assert json.loads(wrong.value.body or "")["message"] == \
        "container sidecar is not valid for pod p"
