"""Least privilege that matches the code: the chart's Role against what the controller calls.

The emulator records every request of the controller (its User-Agent) as RBAC sees it,
(verb, API group, resource, subresource), in the session-wide
``tests.k8s_emulator.SESSION_ACCESSES``. Here the controller is driven through every
operation it has (submit, a parallel submit, wait, logs, status, runs, a pod stuck on a
missing volume, cancel, release_ray, schedule twice, unschedule) against the emulator
and the test kubelet, and the union of what it did here and in every Kubernetes test of
the session before this one is compared with the Role that the real Helm library
renders from charts/runner: a missing grant fails, and so does an unused one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")
pytest.importorskip("helm_sdkpy", reason="helm_sdkpy is not installed")

from kubernetes import client, config

from runner.k8s.builders import RayClusterSpec, RunSpec, Schedule, artifact_key_name
from runner.k8s.controller import Controller, RunFailedError
from tests.k8s_emulator import SESSION_ACCESSES, Access, Emulator, helm_install
from tests.k8s_hardening import check_objects
from tests.k8s_kubelet import Kubelet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "runner"
NS = "research"
IMAGE = "ghcr.io/acme/runner:0.1.0"
SHOW = [sys.executable, "-c", "print('ran')"]
"""A stand-in entrypoint: the pods' work is not what is tested here."""


def granted(role: dict[str, Any]) -> set[Access]:
    """The Role's rules as the accesses they allow (no wildcards: a test checks that)."""
    found = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                plural, _, sub = resource.partition("/")
                found |= {Access(verb, group, plural, sub) for verb in rule["verbs"]}
    assert not [a for a in found if "*" in a], "a wildcard in the Role"
    return found


def live(k8s: Emulator, plural: str) -> list[dict[str, Any]]:
    return [v for k, v in k8s.objects.items()
            if k[0].plural == plural and k[1] == NS and not v.deleted]


def run(run_id: str, **changes: Any) -> RunSpec:
    return RunSpec(**{"pipeline": "alpha.full", "run_id": run_id, "namespace": NS,
                      "image": IMAGE, "manifest": (ROOT / "configs/manifest.json").read_text(),
                      "artifact_key_secret": artifact_key_name(run_id), **changes})


def drive_every_operation(k8s: Emulator, workdir: Path) -> None:
    """Each public method of the Controller, along each of its paths to the API."""
    ctl = Controller.connect(NS, kubeconfig=str(k8s.kubeconfig))
    ctl.watch_timeout, ctl.poll = 2, 0.1
    other = client.CoreV1Api(config.new_client_from_config(str(k8s.kubeconfig)))
    with Kubelet(k8s, workdir=workdir, entrypoint=SHOW) as kubelet:
        ctl.submit(run("rbac-1"), artifact_key="k" * 64)
        assert ctl.wait("rbac-1", timeout=60).phase == "succeeded"
        assert list(ctl.logs("rbac-1", follow=True)) == ["ran"]
        assert ctl.submit(run("rbac-1"), artifact_key="k" * 64).attached
        assert ctl.runs() == ["rbac-1"] and ctl.pods("rbac-1")
        parallel = run("rbac-par", parallel=True, ray=RayClusterSpec(worker_replicas=1))
        assert ctl.submit(parallel, artifact_key="k" * 64).ray_cluster == "runner-rbac-par-ray"
        assert ctl.status("rbac-par").ray == "ready"
        assert ctl.wait("rbac-par", timeout=60).phase == "succeeded"
        check_objects([*live(k8s, "jobs"), *live(k8s, "rayclusters")])
        (policy,) = live(k8s, "networkpolicies")
        assert policy["metadata"]["name"] == "runner-rbac-par-ray-head"
        secrets = {s["metadata"]["name"]: s for s in live(k8s, "secrets")}
        token = secrets["runner-rbac-par-ray-token"]
        assert len(token["stringData"]["RAY_AUTH_TOKEN"]) == 64  # random, per run
        (par_job,) = [j for j in live(k8s, "jobs")
                      if j["metadata"]["name"] == "runner-rbac-par"]
        for owned in (policy, token, secrets["runner-rbac-par-key"],
                      *live(k8s, "rayclusters")):
            assert owned["metadata"]["ownerReferences"][0]["uid"] == \
                par_job["metadata"]["uid"], owned["metadata"]["name"]
        assert ctl.release_ray("rbac-par")
        # a pod stuck on a missing volume: only an Event says why
        ctl.mount_grace = 0.0
        ctl.submit(run("rbac-stuck", artifact_key_secret=None))
        other.delete_namespaced_config_map("runner-rbac-stuck-manifest", NS)
        kubelet.wait(lambda: any(r.reason == "ContainerCreating"
                                 for r in kubelet.runs("runner-rbac-stuck", NS)),
                     what="the pod to wait for its volume")
        with pytest.raises(RunFailedError, match="a volume cannot be mounted"):
            ctl.wait("rbac-stuck", timeout=30)
        assert ctl.cancel("rbac-stuck")[0] == "job/runner-rbac-stuck"
        assert "raycluster/runner-rbac-par-ray" not in ctl.cancel("rbac-par")
    nightly = Schedule("rbac-nightly", "0 6 * * *",
                       run("rbac-nightly", artifact_key_secret=artifact_key_name("rbac-nightly")))
    assert ctl.schedule(nightly, artifact_key="k" * 64) == ("rbac-nightly", True)
    assert ctl.schedule(nightly, artifact_key="k" * 64) == ("rbac-nightly", False)
    check_objects(live(k8s, "cronjobs"))  # what the controller made is hardened too
    (key,) = [s for s in live(k8s, "secrets") if s["metadata"]["name"] == "runner-rbac-nightly-key"]
    assert key["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    assert "cronjob/rbac-nightly" in ctl.unschedule("rbac-nightly")


def test_the_role_grants_exactly_what_the_controller_calls(tmp_path):
    with Emulator(tmp_path, version="1.37.0", namespace=NS) as k8s:
        drive_every_operation(k8s, tmp_path / "nodes")
        used = set(k8s.accesses) | SESSION_ACCESSES
        release = helm_install(CHART, k8s, release="rbac", namespace="rbac")
    (role,) = [o for o in release.objects() if o["kind"] == "Role"]
    grants = granted(role)
    print("the controller used:", *sorted(used), sep="\n  ")
    assert sorted(used - grants) == [], "the controller calls what the Role does not grant"
    assert sorted(grants - used) == [], "the Role grants what the controller never calls"


def test_a_missing_or_an_unused_grant_is_seen():
    """The comparison itself: an extra or a missing verb shows on its side."""
    role = {"rules": [{"apiGroups": ["batch"], "resources": ["jobs", "jobs/status"],
                       "verbs": ["get", "patch"]}]}
    grants = granted(role)
    used = {Access("get", "batch", "jobs"), Access("create", "", "secrets")}
    assert used - grants == {Access("create", "", "secrets")}
    assert grants - used == {Access("patch", "batch", "jobs"),
                             Access("get", "batch", "jobs", "status"),
                             Access("patch", "batch", "jobs", "status")}
