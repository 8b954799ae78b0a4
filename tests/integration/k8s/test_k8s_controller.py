"""The controller over real HTTP: the official client against kmock's Kubernetes API
emulator on 127.0.0.1 (tests/k8s_emulator.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")

from kubernetes import client, config

from runner.k8s.builders import RunSpec
from runner.k8s.controller import Controller
from runner.k8s.errors import ClusterError, ClusterUnavailableError, NotFoundError
from tests.k8s_emulator import Emulator, kubeconfig_text

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def k8s(tmp_path):
    with Emulator(tmp_path, version="1.37.0") as emulator:
        yield emulator


@pytest.fixture
def ctl(k8s):
    return Controller.connect("research", kubeconfig=str(k8s.kubeconfig))


def run_spec(run_id="nightly-1") -> RunSpec:
    return RunSpec(pipeline="alpha.full", run_id=run_id, namespace="research",
                   image="ghcr.io/acme/runner:0.1.0",
                   manifest=(ROOT / "configs/manifest.json").read_text(),
                   artifacts="s3://quant/runner")


def stored(k8s, plural):
    """Live objects (kmock keeps a deleted object's history, ending in None)."""
    return {k[2]: v for k, v in k8s.objects.items() if k[0].plural == plural
            and k[1] == "research" and not v.deleted}


def test_submit_creates_the_manifest_and_the_job_and_attaches_the_second_time(k8s, ctl):
    first = ctl.submit(run_spec())
    assert not first.attached and first.job == "runner-nightly-1"
    jobs, maps = stored(k8s, "jobs"), stored(k8s, "configmaps")
    assert list(jobs) == ["runner-nightly-1"] and list(maps) == ["runner-nightly-1-manifest"]
    again = ctl.submit(run_spec())
    assert again.attached and again.job == first.job
    assert list(stored(k8s, "jobs")) == ["runner-nightly-1"]  # nothing created twice
    assert ctl.runs() == ["nightly-1"]


@pytest.mark.parametrize(("status", "phase", "words"), [
    ({}, "pending", None),
    ({"active": 1}, "running", None),
    ({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
     "succeeded", None),
    ({"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                   "reason": "DeadlineExceeded", "message": "too long"}]},
     "failed", "longer than activeDeadlineSeconds"),
    ({"failed": 3, "conditions": [{"type": "Failed", "status": "True",
                                   "reason": "BackoffLimitExceeded"}]},
     "failed", "failed on every attempt"),
])
def test_status_in_words(k8s, ctl, status, phase, words):
    ctl.submit(run_spec())
    if status:  # what the cluster's Job controller writes (not ours: RBAC records ours)
        jobs = client.BatchV1Api(config.new_client_from_config(str(k8s.kubeconfig)))
        jobs.patch_namespaced_job_status("runner-nightly-1", "research", {"status": status})
    got = ctl.status("nightly-1")
    assert got.phase == phase
    assert (got.reason is None) if words is None else (words in got.reason)


def test_cancel_deletes_the_job_and_its_manifest(k8s, ctl):
    ctl.submit(run_spec())
    assert ctl.cancel("nightly-1") == ["job/runner-nightly-1",
                                       "configmap/runner-nightly-1-manifest"]
    assert stored(k8s, "jobs") == {} and stored(k8s, "configmaps") == {}
    with pytest.raises(NotFoundError, match=r"run 'nightly-1' not found in namespace "
                                            r"'research' \(no job 'runner-nightly-1'\)"):
        ctl.status("nightly-1")
    with pytest.raises(NotFoundError):
        ctl.cancel("nightly-1")


def test_an_unreachable_api_server_is_one_clear_error(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(kubeconfig_text(f"http://127.0.0.1:{port}"))
    ctl = Controller.connect("research", kubeconfig=str(path))
    ctl.api.configuration.retries = 0
    with pytest.raises(ClusterUnavailableError, match=f"cannot reach the Kubernetes API server at "
                                           f"http://127.0.0.1:{port}"):
        ctl.status("nightly-1")


def test_a_missing_kubeconfig_is_one_clear_error(tmp_path):
    with pytest.raises(ClusterError, match="no usable Kubernetes configuration"):
        Controller.connect(kubeconfig=str(tmp_path / "nope"))


def test_the_namespace_comes_from_the_kubeconfig_context(k8s, tmp_path):
    path = tmp_path / "kc"
    path.write_text(kubeconfig_text(k8s.url, namespace="desk-7"))
    assert Controller.connect(kubeconfig=str(path)).namespace == "desk-7"
    assert Controller.connect("other", kubeconfig=str(path)).namespace == "other"
