"""A translated pod in a real container engine: what the container sees is what the
pod spec says (user and groups, read-only root, no capabilities, no new privileges,
seccomp, memory limit, env with the kubelet's expansion, the Secret's files and modes,
the writable emptyDir, no network).

Needs an engine and any image with a POSIX shell: ``PODRUN_DOCKER`` (the docker CLI,
with ``DOCKER_HOST`` set as it needs) and ``PODRUN_IMAGE`` (e.g. the base image
``local/debian-python:3.11`` that scripts/container-e2e.sh builds); skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.containers.objects import pod_of
from tests.containers.podrun import stage, translate

pytestmark = pytest.mark.integration

DOCKER = os.environ.get("PODRUN_DOCKER")
IMAGE = os.environ.get("PODRUN_IMAGE")
SCRIPT = r"""
echo "id=$(id -u):$(id -g)"
echo "groups=$(id -G)"
grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\t' ' '
echo "note=$NOTE"
echo "run=$RUN_ID"
touch /root-fs-write 2>/dev/null && echo rootfs=rw || echo rootfs=ro
touch /tmp/x && echo tmp=rw
ls -lnL /creds/token | awk '{print "token=" $1; print "gid=" $4}'
echo "secret=$(cat /creds/token)"
echo "interfaces=$(ls /sys/class/net | tr '\n' ' ')"
cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max
"""


@pytest.mark.skipif(not (DOCKER and IMAGE), reason="PODRUN_DOCKER and PODRUN_IMAGE not set")
def test_the_container_sees_what_the_pod_spec_says(tmp_path):
    job = {"kind": "Job", "metadata": {"name": "probe", "namespace": "ns"}, "spec": {
        "template": {"metadata": {"labels": {"app": "probe"}}, "spec": {
            "automountServiceAccountToken": False, "enableServiceLinks": False,
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 2000,
                                "runAsNonRoot": True,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "volumes": [{"name": "tmp", "emptyDir": {}},
                        {"name": "creds", "secret": {"secretName": "s", "defaultMode": 0o400}}],
            "containers": [{
                "name": "probe", "image": IMAGE, "command": ["/bin/sh", "-c", SCRIPT],
                "env": [{"name": "A", "value": "x"},
                        {"name": "NOTE", "value": "$(A)-$$(A)-a$$$$b"},
                        {"name": "RUN_ID", "valueFrom": {"fieldRef": {
                            "fieldPath": "metadata.labels['job-name']"}}}],
                "resources": {"limits": {"memory": "256Mi", "cpu": "500m"}},
                "securityContext": {"readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                                 {"name": "creds", "mountPath": "/creds"}]}]}}}}
    secret = {"kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
              "stringData": {"token": "hunter2"}}
    run = translate(pod_of(job), objects=[secret], staging=tmp_path,
                    name=f"podrun-probe-{os.getpid()}")
    stage(run, tmp_path)
    argv = run.argv(str(DOCKER))
    argv.insert(2, "--rm")
    done = subprocess.run(argv, env=run.client_env(os.environ), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    seen = dict(line.split("=", 1) for line in done.stdout.split("\n")
                if "=" in line and ":" not in line.split("=", 1)[0])
    lines = done.stdout.splitlines()
    print(done.stdout)
    assert seen["id"] == "10001:10001" and "2000" in seen["groups"].split()
    assert "CapEff: 0000000000000000" in lines and "NoNewPrivs: 1" in lines
    assert "Seccomp: 2" in lines  # filtered: the engine's default profile
    assert seen["note"] == "x-$(A)-a$$b" and seen["run"] == "probe"
    assert seen["rootfs"] == "ro" and seen["tmp"] == "rw"
    assert seen["token"] == "-r--r-----" and seen["gid"] == "2000"
    assert seen["secret"] == "hunter2" and "hunter2" not in " ".join(argv)
    assert seen["interfaces"].split() == ["lo"]
    assert str(256 * 2**20) in lines
