"""One checker for every pod spec the project makes: the controller's builders, the CLI's
``--dry-run`` output, what the controller created in the emulator, and the chart.

    for obj in objects:
        check_object(obj)          # raises AssertionError naming the object and the field

A pod runs user code, so each one is checked the same way:

* non-root, RuntimeDefault seccomp, no service-account token (``automountServiceAccountToken:
  false``; the one exception, KubeRay's autoscaler sidecar on a head, must be asked for);
* each container: read-only root filesystem, no privilege escalation, not privileged,
  every capability dropped, an emptyDir at /tmp;
* no ``$(`` the kubelet would expand, except ``$(RUNNER_RUN_ID)`` (a scheduled run's id);
* credentials only by reference (``secretKeyRef``, ``envFrom`` a Secret); the store's key
  only in run pods;
* a run pod (a Job's): ``restartPolicy: Never``, ``terminationGracePeriodSeconds: 30`` and
  ``RUNNER_TERM_GRACE`` well inside it; its Job ignores disruptions (``podFailurePolicy``);
* a Ray pod: token authentication on, the token from a Secret, no storage credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

TERMINATION_GRACE = 30
EXPANDED = re.compile(r"(?<!\$)\$\(")
"""A ``$(`` the kubelet expands (``$$(`` is its escape)."""
ALLOWED_EXPANSIONS = {"$(RUNNER_RUN_ID)"}
CREDENTIAL = re.compile(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|HEADERS|_KEY", re.IGNORECASE)


def pod_specs(obj: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, role, pod spec) of each pod ``obj`` makes; role is "run", "ray" or "pod"."""
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    match obj["kind"]:
        case "Job":
            yield where, "run", obj["spec"]["template"]["spec"]
        case "CronJob":
            yield where, "run", obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        case "Pod":
            yield where, "pod", obj["spec"]
        case "RayCluster":
            spec = obj["spec"]
            yield f"{where}/head", "ray", spec["headGroupSpec"]["template"]["spec"]
            for group in spec.get("workerGroupSpecs") or []:
                yield f"{where}/{group['groupName']}", "ray", group["template"]["spec"]


def job_specs(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] == "Job":
        yield where, obj["spec"]
    elif obj["kind"] == "CronJob":
        yield where, obj["spec"]["jobTemplate"]["spec"]


def _values(container: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for arg in container.get("args") or []:
        yield "args", arg
    for arg in container.get("command") or []:
        yield "command", arg
    for var in container.get("env") or []:
        if "value" in var:
            yield f"env {var['name']}", str(var["value"])


def check_escaped(where: str, container: dict[str, Any]) -> None:
    for field, value in _values(container):
        for match in EXPANDED.finditer(value):
            rest = value[match.start():]
            assert any(rest.startswith(ok) for ok in ALLOWED_EXPANSIONS), \
                f"{where}: {field} {value!r} would be expanded by the kubelet"


def check_pod(where: str, role: str, pod: dict[str, Any], *,
              token_allowed: bool = False) -> None:
    sec = pod.get("securityContext") or {}
    assert sec.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot"
    assert sec.get("runAsUser", 1) != 0, f"{where}: pod runs as root"
    assert sec.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{where}: seccomp"
    if not token_allowed:
        assert pod.get("automountServiceAccountToken") is False, \
            f"{where}: the service-account token is mounted"
    assert pod.get("hostNetwork") is not True and pod.get("hostPID") is not True, where
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for container in pod["containers"]:
        at = f"{where}/{container['name']}"
        csec = container.get("securityContext") or {}
        assert csec.get("readOnlyRootFilesystem") is True, f"{at}: writable root"
        assert csec.get("allowPrivilegeEscalation") is False, f"{at}: privilege escalation"
        assert csec.get("privileged") in (None, False), f"{at}: privileged"
        assert csec.get("capabilities") == {"drop": ["ALL"]}, f"{at}: capabilities"
        assert csec.get("runAsNonRoot", True) is True and csec.get("runAsUser", 1) != 0, at
        assert csec.get("seccompProfile", {"type": "RuntimeDefault"}) == \
            {"type": "RuntimeDefault"}, at
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts") or []}
        assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]], \
            f"{at}: no emptyDir at /tmp"
        check_escaped(at, container)
        env = {e["name"]: e for e in container.get("env") or []}
        for name, var in env.items():
            assert ("value" in var) != ("valueFrom" in var), (at, name)
            if CREDENTIAL.search(name):
                assert "secretKeyRef" in var.get("valueFrom", {}), \
                    f"{at}: {name} is not read from a Secret"
        for source in container.get("envFrom") or []:
            assert set(source) == {"secretRef"}, f"{at}: envFrom {source}"
        if role == "run":
            assert pod.get("restartPolicy") == "Never", f"{where}: restartPolicy"
            assert pod.get("terminationGracePeriodSeconds") == TERMINATION_GRACE, \
                f"{where}: terminationGracePeriodSeconds"
            grace = int(env["RUNNER_TERM_GRACE"]["value"])
            assert 0 < grace <= TERMINATION_GRACE - 5, f"{at}: RUNNER_TERM_GRACE {grace}"
        if role == "ray":
            assert env["RAY_AUTH_MODE"]["value"] == "token", f"{at}: Ray token auth is off"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"], at
            assert not container.get("envFrom"), f"{at}: credentials in a Ray pod"
            assert "RUNNER_ARTIFACT_KEY" not in env, f"{at}: the store's key in a Ray pod"
        if "RAY_ADDRESS" in env and role == "run":
            assert env["RAY_AUTH_MODE"]["value"] == "token", f"{at}: Ray client without token"
            assert "secretKeyRef" in env["RAY_AUTH_TOKEN"]["valueFrom"], at


def check_job(where: str, spec: dict[str, Any]) -> None:
    """A Job that a preempted or evicted pod does not fail."""
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    assert any(r["action"] == "Ignore" and {"type": "DisruptionTarget", "status": "True"}
               in r.get("onPodConditions", []) for r in rules), \
        f"{where}: a disruption counts against backoffLimit"
    assert spec["template"]["spec"]["restartPolicy"] == "Never", where


def check_object(obj: dict[str, Any], *, token_allowed: set[str] | frozenset[str] = frozenset()
                 ) -> int:
    """Check every pod and Job of ``obj``; returns how many pod specs were checked.
    ``token_allowed``: the places (``RayCluster/x/head``) that may mount a token."""
    count = 0
    for where, role, pod in pod_specs(obj):
        check_pod(where, role, pod, token_allowed=where in token_allowed)
        count += 1
    for where, spec in job_specs(obj):
        check_job(where, spec)
    return count


def check_objects(objects: list[dict[str, Any]], **kw: Any) -> int:
    count = sum(check_object(o, **kw) for o in objects)
    assert count, "no pod spec among the objects"
    return count
