"""What the Podman check plays and how it judges a container (tests/containers/podman.py).

The plays themselves run in CI (scripts/container-e2e.sh, a Podman 5 node); here: the one
transformation it makes (a CronJob's job template into the Job the controller would
make), the hardening read off ``podman inspect`` and the script's Podman steps that
need no engine. The objects it plays: tests/integration/deploy/test_podman_plays.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.containers.podman import hardening_gaps, job_of_cronjob
from tests.unit.deploy.test_container_e2e_script import SCRIPT, _bash

UID = "00000000-0000-4000-8000-000000000009"


def _cron() -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "alpha-full", "namespace": "research",
                         "labels": {"app": "cron"}},
            "spec": {"schedule": "0 6 * * *", "jobTemplate": {
                "metadata": {"labels": {"runner.dev/run-id": "alpha-full"}},
                "spec": {"backoffLimit": 2, "template": {
                    "metadata": {"labels": {"runner.dev/run-id": "alpha-full"}},
                    "spec": {"restartPolicy": "Never",
                             "containers": [{"name": "runner", "image": "i"}]}}}}}}


def test_a_cronjobs_job_is_its_template_named_for_the_minute_with_the_selector_labels(
) -> None:
    cron = _cron()
    job = job_of_cronjob(cron, scheduled_minute=29_000_000, uid=UID)
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    assert job["metadata"] == {"labels": {"runner.dev/run-id": "alpha-full"},
                               "name": "alpha-full-29000000", "namespace": "research"}
    assert job["spec"]["backoffLimit"] == 2
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels == {"runner.dev/run-id": "alpha-full",
                      "batch.kubernetes.io/controller-uid": UID, "controller-uid": UID,
                      "batch.kubernetes.io/job-name": "alpha-full-29000000",
                      "job-name": "alpha-full-29000000"}
    assert job["spec"]["template"]["spec"] == cron["spec"]["jobTemplate"]["spec"][
        "template"]["spec"]
    # the CronJob itself is left as it was
    assert "job-name" not in cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"][
        "labels"]
    with pytest.raises(ValueError, match="not a CronJob: Job"):
        job_of_cronjob(job, scheduled_minute=1, uid=UID)


HARDENED = {"securityContext": {"readOnlyRootFilesystem": True,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"]}},
            "resources": {"limits": {"memory": "2Gi"}}}
INSPECT = {"Config": {"User": "10001:10001"}, "EffectiveCaps": [],
           "HostConfig": {"ReadonlyRootfs": True, "SecurityOpt": ["no-new-privileges"],
                          "Memory": 2 * 1024**3}}


def test_hardening_gaps_are_none_when_podman_kept_every_setting() -> None:
    assert hardening_gaps(INSPECT, HARDENED, {"runAsUser": 10001}) == []


def test_hardening_gaps_name_each_setting_podman_dropped() -> None:
    lost = {"Config": {"User": "0"}, "EffectiveCaps": ["CAP_CHOWN"],
            "HostConfig": {"ReadonlyRootfs": False, "SecurityOpt": [], "Memory": 0}}
    assert hardening_gaps(lost, HARDENED, {"runAsUser": 10001}) == [
        "user '0', not 10001", "root filesystem writable", "capabilities ['CAP_CHOWN']",
        "new privileges allowed", "memory limit 0, not 2Gi"]
    # nothing asked, nothing to miss
    assert hardening_gaps(lost, {}, {}) == []


def test_the_podman_mirror_falls_back_to_the_host_serving_bookworm(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://one.example/debian bookworm main\n")
    proc = _bash("podman_mirror", APT_ETC=str(tmp_path))
    assert proc.stdout.strip() == "http://one.example/debian", proc.stderr
    (tmp_path / "sources.list.d" / "t.list").write_text(
        "deb http://trixie.example/debian trixie main\n")
    proc = _bash("podman_mirror", APT_ETC=str(tmp_path))
    assert proc.stdout.strip() == "http://trixie.example/debian", proc.stderr
    proc = _bash("podman_mirror", APT_ETC=str(tmp_path), DEBIAN_MIRROR="http://m.example/d")
    assert proc.stdout.strip() == "http://m.example/d"


def test_the_podman_config_uses_runc_cgroupfs_a_file_log_and_the_hard_nofile(
        tmp_path: Path) -> None:
    proc = _bash(f'write_podman_config "{tmp_path}" 4096')
    assert proc.returncode == 0, proc.stderr
    import tomllib

    conf = tomllib.loads((tmp_path / "etc/containers/containers.conf").read_text())
    assert conf == {"containers": {"default_ulimits": ["nofile=4096:4096"], "netns": "none"},
                    "engine": {"cgroup_manager": "cgroupfs", "events_logger": "file",
                               "runtime": "runc"}}
    storage = tomllib.loads((tmp_path / "etc/containers/storage.conf").read_text())
    assert storage["storage"]["driver"] == "overlay"


def test_only_podman_is_a_known_partial_run() -> None:
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30,
                          check=False, env={**os.environ, "CONTAINER_E2E_ONLY": "pods"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("container-e2e: CONTAINER_E2E_ONLY='pods': only 'podman' "
                                   "is known")
