"""Every request of the controller has a time limit: against kmock's emulator on
127.0.0.1, a request the server answers too late is one clear error (after one retry),
never a hang; streams keep a connect limit and stay open as long as they need."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")

from kubernetes import client, config

from runner.k8s.builders import RunSpec, Schedule
from runner.k8s.controller import Controller, Retry
from runner.k8s.errors import ClusterError, ClusterUnavailableError
from runner.k8s.timeouts import Timeouts
from tests.k8s_emulator import Emulator, PodLog

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
LIMIT = "0.5"
"""RUNNER_K8S_TIMEOUT in these tests: a stalled request fails in 2 x 0.5 s."""
STALL = 5.0
"""Seconds a stalled request waits before the emulator answers it: far past the limit."""


@pytest.fixture
def k8s(tmp_path):
    with Emulator(tmp_path, version="1.37.0") as emulator:
        yield emulator


@pytest.fixture
def ctl(k8s, monkeypatch):
    monkeypatch.setenv("RUNNER_K8S_TIMEOUT", LIMIT)
    found = Controller.connect("research", kubeconfig=str(k8s.kubeconfig),
                               retry=Retry(sleep=lambda _: None))
    found.watch_timeout = 1
    return found


def run_spec(run_id: str = "nightly-1") -> RunSpec:
    return RunSpec(pipeline="alpha.full", run_id=run_id, namespace="research",
                   image="ghcr.io/acme/runner:0.1.0",
                   manifest=(ROOT / "configs/manifest.json").read_text(),
                   artifacts="s3://quant/runner")


def cluster(k8s) -> client.ApiClient:
    """Another client: what the cluster's own controllers write (not recorded as ours)."""
    return config.new_client_from_config(str(k8s.kubeconfig))


def add_pod(k8s, tmp_path: Path, job: str = "runner-nightly-1") -> str:
    """A running pod of ``job`` with a finished log, as a kubelet would leave it."""
    name = f"{job}-abcde"
    client.CoreV1Api(cluster(k8s)).create_namespaced_pod("research", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"batch.kubernetes.io/job-name": job}},
        "spec": {"containers": [{"name": "runner", "image": "x"}]},
        "status": {"phase": "Running"}})
    log = PodLog(tmp_path / f"{name}.log")
    log.path.write_text("first\nsecond\n")
    log.done.set()
    k8s.pod_logs[("research", name)] = log
    return name


def test_the_limits_come_from_the_environment(k8s, monkeypatch):
    monkeypatch.delenv("RUNNER_K8S_TIMEOUT", raising=False)
    assert Controller.connect("research", kubeconfig=str(k8s.kubeconfig)).timeouts == \
        Timeouts(5, 30)
    monkeypatch.setenv("RUNNER_K8S_TIMEOUT", "2,60")
    assert Controller.connect("research", kubeconfig=str(k8s.kubeconfig)).timeouts == \
        Timeouts(2, 60)


def test_every_request_names_a_time_limit(k8s, ctl, tmp_path):
    """The whole life of a run and a schedule, each request as the client sends it: one
    that is not a stream has (connect, read); a watch, a read limit past its server-side
    timeoutSeconds; ``logs --follow``, a connect limit only."""
    seen: list[tuple[str, str, Any]] = []
    real = ctl.api.rest_client.request

    def spy(method: str, url: str, **kwargs: Any) -> Any:
        seen.append((method, url.partition("?")[0], kwargs.get("_request_timeout")))
        return real(method, url, **kwargs)

    ctl.api.rest_client.request = spy
    ctl.submit(run_spec())
    assert ctl.status("nightly-1").phase == "pending"
    with pytest.raises(ClusterError, match="still pending after 1 s"):
        ctl.wait("nightly-1", timeout=1)  # a list, then a 1 s watch
    add_pod(k8s, tmp_path)
    assert list(ctl.logs("nightly-1")) == ["first", "second"]
    assert list(ctl.logs("nightly-1", follow=True)) == ["first", "second"]
    ctl.cancel("nightly-1")
    ctl.schedule(Schedule("alpha-nightly", "0 6 * * 1-5", run_spec("alpha-nightly")))
    ctl.unschedule("alpha-nightly")

    limit = ctl.timeouts.pair
    assert limit == (0.5, 0.5)
    streams = [s for s in seen if s[2] != limit]
    assert len(seen) > 15 and all(timeout is not None for _, _, timeout in seen), seen
    watches = [s for s in streams if s[1].endswith("/jobs")]
    follows = [s for s in streams if s[1].endswith("/log")]
    assert [t for _, _, t in watches] == [(0.5, 1.5)], streams
    assert [t for _, _, t in follows] == [(0.5, None)], streams  # no read limit
    assert len(streams) == 2, streams


def _submit(ctl: Controller, k8s: Any) -> None:
    ctl.submit(run_spec())


def _status(ctl: Controller, k8s: Any) -> None:
    ctl.status("nightly-1")


def _logs(ctl: Controller, k8s: Any) -> None:
    list(ctl.logs("nightly-1"))


def _cancel(ctl: Controller, k8s: Any) -> None:
    ctl.cancel("nightly-1")


def _schedule(ctl: Controller, k8s: Any) -> None:
    ctl.schedule(Schedule("alpha-nightly", "0 6 * * 1-5", run_spec("alpha-nightly")))


def _unschedule(ctl: Controller, k8s: Any) -> None:
    ctl.unschedule("alpha-nightly")


def _runs(ctl: Controller, k8s: Any) -> None:
    ctl.runs()


@pytest.mark.parametrize(("act", "stalled"), [
    (_submit, r"/jobs/runner-nightly-1$"), (_status, r"/pods$"), (_logs, r"/log$"),
    (_cancel, r"/jobs/runner-nightly-1$"), (_schedule, r"/cronjobs$"),
    (_unschedule, r"/cronjobs/alpha-nightly$"), (_runs, r"/jobs$")],
    ids=["submit", "status", "logs", "cancel", "schedule", "unschedule", "runs"])
def test_a_request_answered_too_late_is_one_clear_error_after_one_retry(
        k8s, ctl, tmp_path, act: Callable[[Controller, Any], None], stalled: str):
    """The server holds the request 5 s; the limit is 0.5 s: tried twice, then the line."""
    if act not in (_submit, _schedule):
        ctl.submit(run_spec())
        ctl.schedule(Schedule("alpha-nightly", "0 6 * * 1-5", run_spec("alpha-nightly")))
        add_pod(k8s, tmp_path)
    fault = k8s.stall_next("*", stalled, STALL, times=5, watch=False)
    with pytest.raises(ClusterUnavailableError) as caught:
        act(ctl, k8s)
    assert str(caught.value) == (
        f"the Kubernetes API server at {k8s.url} did not answer within 0.5 s (is it "
        "overloaded, or a proxy or load balancer in the way? RUNNER_K8S_TIMEOUT=SECONDS "
        "waits longer)")
    assert caught.value.exit_code == 4
    assert len(fault.hits) == 2  # one retry, then the error


def test_wait_retries_a_watch_that_stalls(k8s, ctl):
    """A watch the server holds past its read limit is retried (re-list, watch again) as
    a dropped stream is: the run's end is still seen."""
    ctl.submit(run_spec())
    fault = k8s.stall_next("GET", r"/jobs$", STALL, watch=True)
    finished = threading.Event()

    def on_change(status: Any) -> None:
        if status.phase == "pending" and not finished.is_set():
            finished.set()  # the run ends while the watch is stalled
            client.BatchV1Api(cluster(k8s)).patch_namespaced_job_status(
                "runner-nightly-1", "research", {"status": {
                    "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}})

    assert ctl.wait("nightly-1", on_change=on_change, timeout=60).phase == "succeeded"
    assert len(fault.hits) == 1
