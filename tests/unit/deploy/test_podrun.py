"""tests/containers/podrun.py: the pods we generate, translated to ``docker run`` as a
kubelet would, on the real objects (``runner submit``/``schedule --dry-run``); what it
cannot run faithfully is refused, naming the field; the kubelet's ``$(VAR)`` expansion."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
yaml = pytest.importorskip("yaml")

from runner.k8s.builders import (  # noqa: E402
    ARTIFACTS_MOUNT,
    RunSpec,
    config_map,
    job,
    literal,
    to_dicts,
)
from tests.containers.objects import pod_of  # noqa: E402
from tests.containers.podrun import PodRunError, expand, stage, translate  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
IMAGE = "runner:e2e"
KEY = "0123456789abcdef" * 4
STAGING = Path("/staging")
STORE = Path("/host/store")


def cli(*args: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KUBERNETES_", "TRACEPARENT", "RUNNER_"))}
    env.update(RUNNER_ARTIFACT_KEY=KEY, KUBECONFIG="/nonexistent/kubeconfig")
    done = subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def key_secret(name: str, namespace: str = "default") -> dict[str, Any]:
    """The Secret runner submit/schedule make from the caller's key (not printed)."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"RUNNER_ARTIFACT_KEY": KEY}}


def options(run) -> list[tuple[str, str]]:
    """The ``--flag value`` pairs of a ContainerRun (``--read-only`` as (flag, ""))."""
    pairs, items = [], list(run.options)
    while items:
        flag = items.pop(0)
        pairs.append((flag, "" if flag == "--read-only" else items.pop(0)))
    return pairs


def values(run, flag: str) -> list[str]:
    return [v for f, v in options(run) if f == flag]


@pytest.fixture(scope="module")
def submitted() -> list[dict[str, Any]]:
    return cli("submit", "alpha.full", "--image", IMAGE, "--run-id", "e2e-submit",
               "--artifacts-pvc", "runs", "--param", "lookback=63", "--dry-run")


@pytest.fixture(scope="module")
def scheduled() -> list[dict[str, Any]]:
    return cli("schedule", "alpha.full", "--cron", "0 6 * * 1-5", "--image", IMAGE,
               "--artifacts-pvc", "runs", "--dry-run")


def only(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


# ---------------------------------------------------------------- the real objects


def test_the_submitted_jobs_pod_runs_hardened_as_the_kubelet_would(submitted):
    pod = pod_of(copy.deepcopy(only(submitted, "Job")), suffix="x2z4b")
    run = translate(pod, objects=[*submitted, key_secret("runner-e2e-submit-key")],
                    staging=STAGING, claims={"runs": STORE})
    assert run.name == "runner-e2e-submit-x2z4b" and run.image == IMAGE
    assert values(run, "--user") == ["10001:10001"]
    assert values(run, "--group-add") == ["10001"]  # fsGroup
    assert ("--read-only", "") in options(run)
    assert values(run, "--cap-drop") == ["ALL"] and values(run, "--cap-add") == []
    assert values(run, "--security-opt") == ["no-new-privileges"]  # seccomp: the default
    assert values(run, "--network") == ["none"] and values(run, "--pull") == ["never"]
    assert values(run, "--memory") == values(run, "--memory-swap") == [str(2 * 2**30)]
    assert values(run, "--cpu-shares") == ["1024"] and values(run, "--cpus") == []
    assert values(run, "--stop-timeout") == ["30"]
    assert values(run, "--hostname") == ["runner-e2e-submit-x2z4b"]
    assert sorted(values(run, "--mount")) == [
        f"type=bind,src=/host/store,dst={ARTIFACTS_MOUNT}",
        "type=bind,src=/staging/volumes/manifest,dst=/etc/runner,readonly",
        "type=bind,src=/staging/volumes/tmp,dst=/tmp"]
    assert values(run, "--entrypoint") == []  # the image's ENTRYPOINT: runner
    assert list(run.command) == ["run", "alpha.full", "--run-id", "e2e-submit", "--resume",
                                 "--or-start", "--json", "--param", "lookback=63"]
    assert run.env["RUNNER_ARTIFACT_KEY"] == KEY and run.env["RUNNER_RUN_ID"] == "e2e-submit"
    assert run.env["RUNNER_ARTIFACTS"] == ARTIFACTS_MOUNT and run.env["HOME"] == "/tmp"
    assert sorted(values(run, "--env")) == sorted(run.env)
    assert KEY not in " ".join(run.argv())  # values travel in the client's environment
    manifest = only(submitted, "ConfigMap")["data"]["manifest.json"]
    files = {s.path: s for s in run.staged}
    assert files["volumes/manifest/manifest.json"].data == manifest.encode()
    assert files["volumes/manifest/manifest.json"].mode == 0o644
    assert files["volumes/tmp"].data is None and files["volumes/tmp"].mode == 0o2777
    assert {s.gid for s in run.staged} == {10001}


def test_a_scheduled_runs_id_is_its_jobs_name(scheduled):
    """The CronJob's pod gets RUNNER_RUN_ID from its job-name label and passes it as
    $(RUNNER_RUN_ID): the one expansion we mean."""
    cron = only(scheduled, "CronJob")
    pod = pod_of(cron, suffix="abcde", scheduled_minute=29_123_456)
    assert pod["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "alpha-full-29123456"
    run = translate(pod, objects=[*scheduled, key_secret("runner-alpha-full-key")],
                    staging=STAGING, claims={"runs": STORE})
    assert run.env["RUNNER_RUN_ID"] == "alpha-full-29123456"
    assert run.command[:4] == ("run", "alpha.full", "--run-id", "alpha-full-29123456")
    assert values(run, "--user") == ["10001:10001"] and ("--read-only", "") in options(run)


def test_a_missing_key_secret_is_named(submitted):
    with pytest.raises(PodRunError, match=r"RUNNER_ARTIFACT_KEY.*Secret default/"
                                          r"runner-e2e-submit-key not given"):
        translate(pod_of(only(submitted, "Job")), objects=submitted, staging=STAGING)


def test_stage_writes_the_files_with_their_modes(submitted, tmp_path):
    run = translate(pod_of(only(submitted, "Job")),
                    objects=[*submitted, key_secret("runner-e2e-submit-key")],
                    staging=tmp_path, claims={"runs": tmp_path / "store"})
    stage(run, tmp_path)
    manifest = tmp_path / "volumes/manifest/manifest.json"
    assert json.loads(manifest.read_text())["pipelines"]["alpha.full"]
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "volumes/tmp").stat().st_mode) == 0o2777
    if os.geteuid() == 0:
        assert manifest.stat().st_gid == 10001


# ---------------------------------------------------------------- what is refused


def a_pod(**spec) -> dict[str, Any]:
    container = {"name": "c", "image": IMAGE, "args": ["validate"]}
    container.update(spec.pop("container", {}))
    base = {"automountServiceAccountToken": False, "enableServiceLinks": False,
            "restartPolicy": "Never", "containers": [container],
            "securityContext": {"runAsUser": 10001, "runAsNonRoot": True}}
    base.update(spec)
    return {"kind": "Pod", "metadata": {"name": "p", "namespace": "ns"}, "spec": base}


@pytest.mark.parametrize(("spec", "words"), [
    ({"hostNetwork": True}, "spec.hostNetwork"),
    ({"hostPID": True}, "spec.hostPID"),
    ({"initContainers": [{"name": "i", "image": IMAGE}]}, "spec.initContainers"),
    ({"automountServiceAccountToken": None}, "spec.automountServiceAccountToken"),
    ({"enableServiceLinks": True}, "spec.enableServiceLinks"),
    ({"restartPolicy": "OnFailure"}, "spec.restartPolicy"),
    ({"containers": []}, "spec.containers: 0 containers"),
    ({"container": {"securityContext": {"privileged": True}}}, "privileged"),
    ({"container": {"securityContext": {"runAsUser": 0}}}, "runAsNonRoot: the user is root"),
    ({"securityContext": {"runAsNonRoot": True}}, "runAsNonRoot: the user is the image's"),
    ({"securityContext": {"runAsUser": 1, "sysctls": [{"name": "a", "value": "1"}]}},
     "spec.securityContext.sysctls"),
    ({"container": {"securityContext": {"seccompProfile": {"type": "Localhost"}}}},
     "seccompProfile: type 'Localhost'"),
    ({"container": {"livenessProbe": {"exec": {"command": ["true"]}}}}, "livenessProbe"),
    ({"container": {"lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}}, "lifecycle"),
    ({"container": {"resources": {"limits": {"nvidia.com/gpu": 1}}}},
     "resources.limits.nvidia.com/gpu"),
    ({"volumes": [{"name": "t", "projected": {"sources": []}}]}, "volume type projected"),
    ({"volumes": [{"name": "h", "hostPath": {"path": "/etc"}}]}, "hostPath '/etc' is not"),
    ({"volumes": [{"name": "c", "persistentVolumeClaim": {"claimName": "data"}}]},
     "persistentVolumeClaim 'data' has no host folder"),
    ({"volumes": [{"name": "s", "secret": {"secretName": "gone"}}]},
     r"Secret ns/gone not given"),
    ({"volumes": [{"name": "e", "emptyDir": {}}],
      "container": {"volumeMounts": [{"name": "e", "mountPath": "/x", "subPath": "a"}]}},
     "volumeMounts[0].subPath"),
    ({"container": {"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}},
     "no volume named 'nope'"),
    ({"container": {"env": [{"name": "IP", "valueFrom": {"fieldRef": {
        "fieldPath": "status.podIP"}}}]}}, "fieldRef status.podIP"),
    ({"container": {"env": [{"name": "M", "valueFrom": {"resourceFieldRef": {
        "resource": "limits.memory"}}}]}}, "resourceFieldRef limits.memory is not set"),
    ({"container": {"env": [{"name": "DOCKER_HOST", "value": "x"}]}}, "'DOCKER_HOST'"),
    ({"container": {"workingDir": "rel"}}, "workingDir: 'rel' is not absolute"),
])
def test_what_podrun_cannot_run_is_refused_by_name(spec, words):
    with pytest.raises(PodRunError) as caught:
        translate(a_pod(**spec), staging=STAGING)
    assert words in str(caught.value)


def test_the_rest_of_a_pod_translates(tmp_path):
    """Memory emptyDir, Secret items and modes, envFrom with a prefix, fieldRefs,
    resourceFieldRef, command, workingDir, claims and the grace period."""
    pod = a_pod(
        terminationGracePeriodSeconds=5,
        securityContext={"runAsUser": 1000, "runAsGroup": 2000, "supplementalGroups": [3],
                         "seccompProfile": {"type": "RuntimeDefault"}},
        volumes=[{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                 {"name": "creds", "secret": {"secretName": "s", "defaultMode": 0o400,
                                              "items": [{"key": "a", "path": "d/a.txt"},
                                                        {"key": "b", "path": "b", "mode": 0o600}]}},
                 {"name": "data", "persistentVolumeClaim": {"claimName": "store"}}],
        container={"command": ["python", "-m", "x"], "args": ["$(A)", "$$(A)", "$(NOPE)"],
                   "workingDir": "/work",
                   "resources": {"limits": {"cpu": "1500m", "memory": "512Mi"},
                                 "requests": {"cpu": "250m"}},
                   "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"},
                               {"secretRef": {"name": "gone", "optional": True}}],
                   "env": [{"name": "A", "value": "x$(CM_K)y"},
                           {"name": "POD", "valueFrom": {"fieldRef": {
                               "fieldPath": "metadata.name"}}},
                           {"name": "TIER", "valueFrom": {"fieldRef": {
                               "fieldPath": "metadata.labels['tier']"}}},
                           {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                               "resource": "limits.memory", "divisor": "1Mi"}}},
                           {"name": "OPT", "valueFrom": {"secretKeyRef": {
                               "name": "s", "key": "zz", "optional": True}}}],
                   "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"},
                                    {"name": "creds", "mountPath": "/creds"},
                                    {"name": "data", "mountPath": "/data", "readOnly": True}]})
    pod["metadata"]["labels"] = {"tier": "batch"}
    objects = [{"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "ns"},
                "data": {"K": "v"}},
               {"kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
                "data": {"a": "QQ==", "b": "Qg=="}},
               {"kind": "Secret", "metadata": {"name": "s", "namespace": "other"},
                "data": {"a": "WA=="}}]
    run = translate(pod, objects=objects, staging=tmp_path, claims={"store": Path("/srv")})
    assert values(run, "--user") == ["1000:2000"] and values(run, "--group-add") == ["3"]
    assert values(run, "--security-opt") == [] and values(run, "--stop-timeout") == ["5"]
    assert values(run, "--cpus") == ["1.5"] and values(run, "--cpu-shares") == ["256"]
    assert values(run, "--tmpfs") == [f"/dev/shm:rw,exec,nosuid,nodev,mode=0777,size={2**30}"]
    assert "type=bind,src=/srv,dst=/data,readonly" in values(run, "--mount")
    assert values(run, "--entrypoint") == ["python"] and values(run, "--workdir") == ["/work"]
    assert list(run.command) == ["-m", "x", "xvy", "$(A)", "$(NOPE)"]
    assert run.env == {"CM_K": "v", "A": "xvy", "POD": "p", "TIER": "batch", "MEM": "512"}
    files = {s.path: s for s in run.staged if s.data is not None}
    assert files["volumes/creds/d/a.txt"].data == b"A" and \
        files["volumes/creds/d/a.txt"].mode == 0o400
    assert files["volumes/creds/b"].mode == 0o600


def test_seccomp_unset_is_unconfined_as_on_a_default_kubelet():
    pod = a_pod()
    assert values(translate(pod, staging=STAGING), "--security-opt") == [
        "seccomp=unconfined"]


# ---------------------------------------------------------------- $(VAR) expansion


@pytest.mark.parametrize(("text", "expected"), [
    ("$(A)", "a"), ("$(A)$(B)", "ab"), ("x$(A)y", "xay"), ("$$(A)", "$(A)"),
    ("$$$(A)", "$a"), ("$$$$(A)", "$$(A)"), ("$(NOPE)", "$(NOPE)"), ("$(A", "$(A"),
    ("$A", "$A"), ("$", "$"), ("a$", "a$"), ("$$", "$"), ("$()", "$()"),
    ("$(A B)", "no"), ("$((A))", "$((A))"), ("$(ü)", "ü"),  # any name in the parentheses
    ("$é", "$\u00c3\udca9"),  # Go's string(byte): the lead byte as a code point
])
def test_expand_is_the_kubelets(text, expected):
    assert expand(text, {"A": "a", "B": "b", "A B": "no", "ü": "ü"}) == expected


printable = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=40)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.sampled_from(["$", "(", ")", "$(", "$$", "A", "é", " "]) | printable)
       .map("".join), env=st.dictionaries(names | st.just("A"), printable, max_size=4))
def test_what_the_container_sees_is_what_was_typed(text, env):
    """The escape every value we write into args and env goes through."""
    assert expand(literal(text), env) == text


@settings(max_examples=40, deadline=None)
@given(param=printable, note=printable)
def test_a_params_and_envs_reach_the_container_as_typed(param, note):
    """Through the real Job builder and the translation."""
    spec = RunSpec(pipeline="alpha.full", run_id="r-1", namespace="default", image=IMAGE,
                   manifest="{}", artifacts="/artifacts", params={"note": param},
                   env={"NOTE": note, "A": "trap"})
    manifest, made = to_dicts([config_map(spec), job(spec)])
    run = translate(pod_of(made), objects=[manifest], staging=STAGING)
    assert f"note={param}" in run.command and run.env["NOTE"] == note
