"""The Helm chart (charts/runner), rendered by the real Helm library.

helm_sdkpy (Helm's Go code) installs the chart into kmock's Kubernetes emulator on
127.0.0.1 with the in-memory release driver, which is how it renders (it has no
``template`` command). The default values and every ``ci/*-values.yaml`` scenario are
rendered; every object is validated against the real Kubernetes schemas
(kubernetes-validate, strict, its newest version) and RayClusters against the KubeRay CRD;
then the security settings, RBAC, secrets, names and the helm test are checked.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")
jsonschema = pytest.importorskip("jsonschema")
pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")
pytest.importorskip("helm_sdkpy", reason="helm_sdkpy is not installed (pip install "
                    "--ignore-requires-python helm_sdkpy==0.1.32)")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from tests.k8s_emulator import (  # noqa: E402
    Emulator,
    HelmError,
    Release,
    helm_install,
    helm_install_and_upgrade,
    helm_lint,
)
from tests.k8s_hardening import check_objects  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "runner"
KUBERAY = ROOT.parent / "shared" / "schemas" / "kuberay" / "ray.io_rayclusters.yaml"
K8S_VERSION = kubernetes_validate.latest_version()
RELEASE = "research"
SCENARIOS = sorted(p.name.removesuffix("-values.yaml")
                   for p in (CHART / "ci").glob("*-values.yaml"))
UID = 10001

def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def scenario_values(name: str) -> dict[str, Any]:
    return load_yaml(CHART / "ci" / f"{name}-values.yaml") or {}


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def k8s(tmp_path_factory):
    """kmock's emulator on 127.0.0.1, reporting the newest Kubernetes that we validate for."""
    with Emulator(tmp_path_factory.mktemp("k8s"), version=K8S_VERSION) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def rendered(k8s) -> dict[str, Release]:
    """Every ci scenario installed once, each in a namespace of its own."""
    return {name: helm_install(CHART, k8s, release=RELEASE, namespace=f"ci-{name}",
                               values=scenario_values(name))
            for name in SCENARIOS}


@pytest.fixture(scope="module")
def values_schema() -> dict[str, Any]:
    return json.loads((CHART / "values.schema.json").read_text())


@pytest.fixture(scope="module")
def raycluster_schema() -> dict[str, Any]:
    if not KUBERAY.exists():
        pytest.skip(f"KubeRay CRD not found at {KUBERAY} (the shared schemas are absent)")
    crd = load_yaml(KUBERAY)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _no_unknown_fields(version["schema"]["openAPIV3Schema"])


def _no_unknown_fields(node: Any) -> Any:
    """The CRD schema, refusing the fields the API server would silently prune."""
    if isinstance(node, list):
        return [_no_unknown_fields(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {key: _no_unknown_fields(value) for key, value in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def of_kind(release: Release, kind: str) -> list[dict[str, Any]]:
    return [o for o in release.objects() if o["kind"] == kind]


def pod_templates(release: Release) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod the release makes: Jobs, CronJobs, Ray pods, hooks."""
    out = []
    for obj in release.objects():
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        match obj["kind"]:
            case "Job":
                out.append((where, obj["spec"]["template"]["spec"]))
            case "CronJob":
                out.append((where, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
            case "Pod":
                out.append((where, obj["spec"]))
            case "RayCluster":
                spec = obj["spec"]
                out.append((f"{where}/head", spec["headGroupSpec"]["template"]["spec"]))
                out += [(f"{where}/{g['groupName']}", g["template"]["spec"])
                        for g in spec["workerGroupSpecs"]]
    return out


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def runner_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod["containers"] if c["name"] == "runner"]
    return container


# ----------------------------------------------------------------- the chart's own files


def test_chart_metadata_and_files():
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == "runner"
    assert chart["version"] == "0.1.0" and chart["appVersion"] == "0.1.0"
    assert chart["description"] and chart["kubeVersion"].startswith(">=")
    for name in [".helmignore", "values.yaml", "values.schema.json", "templates/NOTES.txt",
                 "templates/_helpers.tpl", "templates/tests/test-validate.yaml"]:
        assert (CHART / name).is_file(), name
    assert {"default", "schedules", "runs", "ray", "otel-s3"} <= set(SCENARIOS)


def test_the_shipped_manifest_is_configs_manifest():
    """manifest.fromFile ships files/manifest.json: it must stay a copy of configs/manifest.json."""
    shipped = (CHART / "files" / "manifest.json").read_text()
    assert json.loads(shipped) == json.loads((ROOT / "configs" / "manifest.json").read_text()), \
        "charts/runner/files/manifest.json differs: cp configs/manifest.json charts/runner/files/"


def _key_tree(text: str) -> list[dict[str, Any]]:
    """values.yaml as a tree of keys, each knowing whether a comment sits right above it."""
    root: dict[str, Any] = {"indent": -1, "children": []}
    stack = [root]
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):(\s|$)", line)
        if match and not stripped.startswith("#"):
            indent = len(match.group(1))
            while stack[-1]["indent"] >= indent:
                stack.pop()
            node = {"key": match.group(2), "indent": indent, "children": [],
                    "commented": previous.startswith("#")}
            stack[-1]["children"].append(node)
            stack.append(node)
        if stripped:
            previous = stripped
    return root["children"]


def test_every_value_is_documented():
    """Each value has a comment, on itself or on the value that holds it (nested defaults)."""
    def undocumented(nodes, path=""):
        for node in nodes:
            where = f"{path}{node['key']}"
            if node["commented"]:
                continue
            if not node["children"]:
                yield where
            else:
                yield from undocumented(node["children"], f"{where}.")

    tree = _key_tree((CHART / "values.yaml").read_text())
    assert tree, "values.yaml has no keys"
    assert list(undocumented(tree)) == []


def test_the_values_schema_is_strict_draft07(values_schema):
    assert values_schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(values_schema)
    open_ones = []

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "additionalProperties" not in node:
                open_ones.append(path)
            if node.get("properties"):
                assert node.get("additionalProperties") is False, path
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(values_schema, "#")
    # the only open objects: what Kubernetes itself validates (affinity terms, manifest parts)
    assert open_ones == ["#/definitions/passthrough"]
    defaults = load_yaml(CHART / "values.yaml")
    for section, schema in values_schema["properties"].items():  # every value has a default
        assert section in defaults, f"{section} is in the schema but not in values.yaml"
        if defaults[section] and isinstance(defaults[section], dict):  # a section, not a map
            for key in schema.get("properties", {}):
                assert key in defaults[section], f"{section}.{key} is not in values.yaml"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_and_the_defaults_match_the_schema(values_schema, scenario):
    validator = jsonschema.Draft7Validator(values_schema)
    merged = {**load_yaml(CHART / "values.yaml"), **scenario_values(scenario)}
    assert list(validator.iter_errors(merged)) == []


@pytest.mark.parametrize("values", [
    {"unknown": 1},
    {"image": {"repository": "runner", "tags": "0.1.0"}},
    {"schedules": [{"name": "a", "pipeline": "alpha.full", "cron": "* * * * *", "paralel": True}]},
    {"runs": [{"name": "a", "pipeline": "alpha.full", "runID": "x"}]},
    {"runs": [{"name": "a", "pipeline": "alpha.full", "runId": "Not_A_Run_Id"}]},
    {"artifacts": {"storageOptions": {"secret": "hunter2"}}},
    {"artifacts": {"storageOptions": {"AWS_Secret_Access_Key": "hunter2"}}},
    {"artifacts": {"storageOptions": {"sessionTOKEN": "x"}}},
    {"artifacts": {"storageOptions": {"Password": "x"}}},
    {"rayCluster": {"workers": {"replica": 3}}},
    {"logFormat": "yaml"},
    {"job": {"termGraceSeconds": 0}},
], ids=["top", "image", "schedule", "run", "run-id", "credential-option", "credential-mixed-case",
        "credential-upper", "credential-capital", "ray", "enum", "grace"])
def test_the_schema_rejects_unknown_keys_and_bad_values(values_schema, values):
    merged = copy.deepcopy(load_yaml(CHART / "values.yaml"))
    for key, value in values.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged \
            else value
    assert list(jsonschema.Draft7Validator(values_schema).iter_errors(merged))


def test_helm_lint_is_clean(k8s):
    """Nothing above INFO (INFO: Chart.yaml has no icon)."""
    messages = helm_lint(CHART, k8s)
    assert [m for m in messages if m[0] != "INFO"] == []


def test_helm_rejects_an_unknown_key(k8s):
    """What `helm install --set unknown=1` does: Helm validates values.schema.json."""
    with pytest.raises(HelmError, match="schema"):
        helm_install(CHART, k8s, release=RELEASE, namespace="reject", values={"unknown": 1})


def test_helm_refuses_a_cluster_older_than_kube_version(tmp_path):
    with Emulator(tmp_path, version="1.26.4") as old, \
            pytest.raises(HelmError, match="kubeVersion"):
        helm_install(CHART, old, release=RELEASE)


# ----------------------------------------------------------------- what renders


def test_the_scenarios_render_what_they_say(rendered):
    kinds = {name: sorted({o["kind"] for o in release.objects()})
             for name, release in rendered.items()}
    base = {"ConfigMap", "Pod", "Role", "RoleBinding", "Secret", "ServiceAccount"}
    assert set(kinds["default"]) == base
    assert set(kinds["schedules"]) == base | {"CronJob"}
    assert set(kinds["runs"]) == base | {"Job"}
    assert set(kinds["ray"]) == base | {"CronJob", "Job", "NetworkPolicy", "RayCluster"}
    assert set(kinds["otel-s3"]) == base | {"Job"}
    for name, release in rendered.items():  # the only hook is the helm test pod
        assert [h["kind"] for h in release.hooks] == ["Pod"]
        assert not [o for o in release.objects() if o["kind"] in ("ClusterRole",
                                                                   "ClusterRoleBinding")]
        # the only Secrets: the store's key (kept), and the shared Ray cluster's token
        secrets = {s["metadata"]["name"]: s for s in of_kind(release, "Secret")}
        expected = {f"{RELEASE}-runner-artifact-key"}
        if name == "ray":
            expected.add(f"{RELEASE}-runner-ray-token")
        assert set(secrets) == expected, name
        key = secrets[f"{RELEASE}-runner-artifact-key"]
        assert key["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert set(key["data"]) == {"RUNNER_ARTIFACT_KEY"}
        assert len(base64.b64decode(key["data"]["RUNNER_ARTIFACT_KEY"])) == 48


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_is_valid_kubernetes(rendered, scenario):
    objects = [o for o in rendered[scenario].objects() if o["apiVersion"] != "ray.io/v1"]
    assert objects
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({scenario}): {exc}")


def test_the_ray_cluster_matches_the_kuberay_crd(rendered, raycluster_schema):
    (cluster,) = of_kind(rendered["ray"], "RayCluster")
    jsonschema.validate(cluster, raycluster_schema)
    assert cluster["apiVersion"] == "ray.io/v1"
    workers = cluster["spec"]["workerGroupSpecs"][0]
    assert (workers["minReplicas"], workers["replicas"], workers["maxReplicas"]) == (1, 2, 6)
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    assert not of_kind(rendered["default"], "RayCluster")


def test_every_object_is_labelled(rendered):
    for release in rendered.values():
        for obj in release.objects():
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/name"] == "runner"
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["app.kubernetes.io/version"] and labels["app.kubernetes.io/component"]
            assert labels["helm.sh/chart"] == "runner-0.1.0"
            assert len(obj["metadata"]["name"]) <= 63


# ----------------------------------------------------------------- security


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_pod_is_hardened(rendered, scenario):
    release = rendered[scenario]
    autoscaled = {f"RayCluster/{c['metadata']['name']}/head" for c in of_kind(release, "RayCluster")
                  if c["spec"].get("enableInTreeAutoscaling")}  # KubeRay's autoscaler sidecar
    check_objects(release.objects(), token_allowed=autoscaled)
    run_account = f"{RELEASE}-runner-run"
    for where, pod in pod_templates(release):
        sec = pod["securityContext"]
        assert (sec["runAsUser"], sec["runAsGroup"], sec["fsGroup"]) == (UID, UID, UID), where
        assert pod.get("restartPolicy") != "OnFailure", where
        if where not in autoscaled:
            assert pod["serviceAccountName"] == run_account, where
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            manifest = mounts["/etc/runner"]
            assert manifest["readOnly"] is True, where
            assert volumes[manifest["name"]]["configMap"]["name"] == f"{RELEASE}-runner-manifest"
            env = env_of(container)
            assert env["HOME"]["value"] == "/tmp", where
            assert env["RUNNER_LOG_FORMAT"]["value"] == "json", where
            if container["name"] == "runner":
                assert env["RUNNER_MANIFEST"]["value"] == "/etc/runner/manifest.json", where
    for job in of_kind(release, "Job"):  # the store's key, from the kept Secret
        env = env_of(runner_container(job["spec"]["template"]["spec"]))
        assert env["RUNNER_ARTIFACT_KEY"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{RELEASE}-runner-artifact-key", "key": "RUNNER_ARTIFACT_KEY"}
        assert env["RUNNER_TERM_GRACE"]["value"] == "20"
    test_pod = env_of(runner_container(release.hook_objects()[0]["spec"]))
    assert "RUNNER_ARTIFACT_KEY" not in test_pod  # `runner validate` reads no store


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_secret_value_is_ever_rendered(rendered, scenario):
    """Credentials only arrive by reference: secretKeyRef or envFrom secretRef."""
    credential = re.compile(r"SECRET|TOKEN|PASSWORD|CREDENTIAL|HEADERS|_KEY", re.IGNORECASE)
    for where, pod in pod_templates(rendered[scenario]):
        for container in pod["containers"]:
            for name, var in env_of(container).items():
                assert ("value" in var) != ("valueFrom" in var), (where, name)
                if "valueFrom" in var:
                    assert set(var["valueFrom"]) <= {"secretKeyRef", "fieldRef"}, (where, name)
                if credential.search(name):
                    assert "secretKeyRef" in var.get("valueFrom", {}), (where, name)
            for source in container.get("envFrom", []):
                assert set(source) == {"secretRef"}, where
            args = container.get("args", [])
            for i, arg in enumerate(args):
                if arg == "--storage-option":
                    assert not credential.search(args[i + 1].partition("=")[0]), where
    text = rendered[scenario].manifest + "".join(h["manifest"] for h in rendered[scenario].hooks)
    assert "AWS_SECRET_ACCESS_KEY" not in text and "hunter2" not in text


def test_credentials_come_from_the_named_secrets(rendered):
    (job,) = of_kind(rendered["otel-s3"], "Job")
    container = runner_container(job["spec"]["template"]["spec"])
    env = env_of(container)
    assert container["envFrom"] == [{"secretRef": {"name": "runner-s3-credentials"}}]
    assert env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"] == {
        "name": "runner-otlp-headers", "key": "OTEL_EXPORTER_OTLP_HEADERS"}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == "grpc"
    assert env["OTEL_SERVICE_NAME"]["value"] == "runner-research"
    assert env["OTEL_RESOURCE_ATTRIBUTES"]["value"] == "deployment.environment=prod,team=quant"
    assert env["RUNNER_ARTIFACTS"]["value"] == "s3://quant-artifacts/runner"
    args = container["args"]
    assert args[args.index("--storage-option") + 1] == \
        "endpoint_url=https://s3.eu-west-1.amazonaws.com"
    default_env = env_of(runner_container(of_kind(rendered["default"], "Pod")[0]["spec"]))
    assert not [n for n in default_env if n.startswith("OTEL_EXPORTER")]  # nothing is sent
    (test_pod,) = of_kind(rendered["otel-s3"], "Pod")  # the helm test reads no store
    assert "envFrom" not in runner_container(test_pod["spec"])


def test_rbac_is_namespaced_and_bound_to_the_controller_only(rendered):
    """The Role's rules themselves are checked against every request the controller makes
    (tests/integration/k8s/test_k8s_rbac.py); here: where it applies and who gets it."""
    for name, release in rendered.items():
        (role,) = of_kind(release, "Role")
        (binding,) = of_kind(release, "RoleBinding")
        accounts = {a["metadata"]["name"]: a for a in of_kind(release, "ServiceAccount")}
        controller, run = f"{RELEASE}-runner", f"{RELEASE}-runner-run"
        assert set(accounts) == {controller, run}, name
        for rule in role["rules"]:
            assert set(rule) == {"apiGroups", "resources", "verbs"}, name  # no nonResourceURLs
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (name, rule)
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["create"], name  # never read back
        assert role["metadata"]["namespace"] == f"ci-{name}"
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": controller,
                                        "namespace": f"ci-{name}"}]
        for account in accounts.values():
            assert account["automountServiceAccountToken"] is False
        for where, pod in pod_templates(release):  # user code never runs as the controller
            assert pod.get("serviceAccountName") != controller, where
    annotations = {a["metadata"]["name"]: a["metadata"].get("annotations")
                   for a in of_kind(rendered["otel-s3"], "ServiceAccount")}
    assert annotations[f"{RELEASE}-runner-run"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/runner"}


def test_the_artifact_key_is_made_once_and_kept_across_upgrades(k8s):
    first, second = helm_install_and_upgrade(CHART, k8s, release=RELEASE, namespace="upgrade")

    def key(release: Release) -> str:
        (found,) = [s for s in of_kind(release, "Secret")
                    if s["metadata"]["name"] == f"{RELEASE}-runner-artifact-key"]
        return str(found["data"]["RUNNER_ARTIFACT_KEY"])

    assert key(first) == key(second)
    other = helm_install(CHART, k8s, release=RELEASE, namespace="upgrade-other")
    assert key(other) != key(first)  # random per install
    named = helm_install(CHART, k8s, release=RELEASE, namespace="named-key",
                         values={"artifacts": {"keySecretName": "team-key",
                                               "url": "s3://quant/runner"},
                                 "runs": [{"name": "a", "pipeline": "alpha.full"}]})
    assert not of_kind(named, "Secret")
    (job,) = of_kind(named, "Job")
    env = env_of(runner_container(job["spec"]["template"]["spec"]))
    assert env["RUNNER_ARTIFACT_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "team-key"


def test_the_ray_cluster_has_token_auth_a_network_policy_and_no_credentials(rendered):
    release = rendered["ray"]
    (cluster,) = of_kind(release, "RayCluster")
    name = cluster["metadata"]["name"]
    token = {"secretKeyRef": {"name": f"{name}-token", "key": "RAY_AUTH_TOKEN"}}
    for group in (cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]):
        (container,) = group["template"]["spec"]["containers"]
        env = env_of(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"] == token
        assert "envFrom" not in container and "RUNNER_ARTIFACT_KEY" not in env
    for job in of_kind(release, "Job") + of_kind(release, "CronJob"):  # the Ray clients
        spec = job["spec"].get("jobTemplate", job)["spec"]["template"]["spec"]
        env = env_of(runner_container(spec))
        if "RAY_ADDRESS" in env:
            assert env["RAY_AUTH_TOKEN"]["valueFrom"] == token
    (policy,) = of_kind(release, "NetworkPolicy")
    selector = {"app.kubernetes.io/name": "runner", "app.kubernetes.io/instance": RELEASE}
    assert policy["spec"]["podSelector"]["matchLabels"] == selector
    among, clients = policy["spec"]["ingress"]
    assert "ports" not in among
    assert clients["from"] == [{"podSelector": {"matchLabels": {
        **selector, "app.kubernetes.io/component": "run"}}}]
    assert {p["port"] for p in clients["ports"]} == {10001, 6379, 8265}
    # the selectors match the pods' labels
    head = cluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert {k: head[k] for k in selector} == selector
    assert head["app.kubernetes.io/component"] in \
        policy["spec"]["podSelector"]["matchExpressions"][0]["values"]
    run = of_kind(release, "Job")[0]["spec"]["template"]["metadata"]["labels"]
    assert run["app.kubernetes.io/component"] == "run"


def test_values_reach_the_run_as_they_were_written(k8s):
    """$(VAR) in a param, a storage option or an env value is not the kubelet's to expand."""
    release = helm_install(CHART, k8s, release=RELEASE, namespace="literal", values={
        "artifacts": {"url": "s3://b/$(BUCKET)", "storageOptions": {"endpoint_url": "$(X)"}},
        "runs": [{"name": "a", "pipeline": "alpha.full",
                  "params": {"note": "$(AWS_SECRET_ACCESS_KEY)"}}],
        "schedules": [{"name": "s", "pipeline": "alpha.full", "cron": "@daily"}]})
    check_objects(release.objects())
    (job,) = of_kind(release, "Job")
    container = runner_container(job["spec"]["template"]["spec"])
    assert "note=$$(AWS_SECRET_ACCESS_KEY)" in container["args"]
    assert "endpoint_url=$$(X)" in container["args"]
    assert env_of(container)["RUNNER_ARTIFACTS"]["value"] == "s3://b/$$(BUCKET)"
    (cron,) = of_kind(release, "CronJob")
    args = runner_container(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"])["args"]
    assert args[args.index("--run-id") + 1] == "$(RUNNER_RUN_ID)"  # the one meant


def test_the_term_grace_must_leave_time_to_commit(k8s):
    with pytest.raises(HelmError, match="termGraceSeconds"):
        helm_install(CHART, k8s, release=RELEASE, namespace="grace",
                     values={"job": {"termGraceSeconds": 30}})


# ----------------------------------------------------------------- no silent loss


RUN = {"name": "a", "pipeline": "alpha.full"}
SCHEDULE = {"name": "s", "pipeline": "alpha.full", "cron": "@daily"}
LOST = "lost with the pod, and a retried pod could not resume the run"


@pytest.mark.parametrize(("values", "words"), [
    ({"runs": [RUN]}, "without artifacts.url the runs write to the image's default root"),
    ({"schedules": [SCHEDULE]}, "runs and schedules need an artifact store outside the pod"),
    ({"runs": [RUN], "artifacts": {"url": "data/artifacts"}},
     'artifacts.url "data/artifacts" is a path inside the pod'),
    ({"schedules": [SCHEDULE], "artifacts": {"url": "file:///mnt/art"}},
     'artifacts.url "file:///mnt/art" is a path inside the pod'),
    ({"runs": [RUN], "artifacts": {"url": "memory://runs"}},
     "is the memory of the pod's process"),
    ({"runs": [RUN], "artifacts": {"url": "simplecache::file:///mnt/art"}},
     "is a path inside the pod"),
    ({"runs": [RUN], "artifacts": {"url": "s3://b/r", "persistentVolumeClaim": "art"}},
     'artifacts.url "s3://b/r" is not on the claim'),
], ids=["run-no-url", "schedule-no-url", "relative", "file", "memory", "chained", "claim-s3"])
def test_runs_and_schedules_without_a_store_outside_the_pod_do_not_render(k8s, values, words):
    with pytest.raises(HelmError) as refused:
        helm_install(CHART, k8s, release=RELEASE, namespace="lost", values=values)
    said = str(refused.value)
    assert words in said
    if "not on the claim" not in words:
        assert LOST in said and "artifacts.ephemeral: true" in said
        assert "artifacts.persistentVolumeClaim" in said


def test_a_claim_is_mounted_in_the_run_pods_only(rendered):
    release = rendered["ray"]  # runs and a schedule on artifacts.persistentVolumeClaim
    mount = "/var/lib/runner/artifacts"
    runs = [p for w, p in pod_templates(release) if w.startswith(("Job/", "CronJob/"))]
    assert runs
    for pod in runs:
        container = runner_container(pod)
        assert {"name": "artifacts", "persistentVolumeClaim": {
            "claimName": "runner-artifacts"}} in pod["volumes"]
        assert {"name": "artifacts", "mountPath": mount} in container["volumeMounts"]
        assert env_of(container)["RUNNER_ARTIFACTS"]["value"] == mount
    for where, pod in pod_templates(release):  # Ray pods and the helm test: no claim
        if not where.startswith(("Job/", "CronJob/")):
            assert "artifacts" not in {v["name"] for v in pod["volumes"]}, where


@pytest.mark.parametrize(("artifacts", "root"), [
    ({"ephemeral": True}, None),
    ({"url": "data/artifacts", "ephemeral": True}, "data/artifacts"),
    ({"persistentVolumeClaim": "art", "url": "/var/lib/runner/artifacts/team-a"},
     "/var/lib/runner/artifacts/team-a"),
    ({"persistentVolumeClaim": "art", "url": "file:///var/lib/runner/artifacts"},
     "file:///var/lib/runner/artifacts"),
], ids=["ephemeral", "ephemeral-path", "claim-folder", "claim-file-url"])
def test_a_store_inside_the_pod_renders_when_accepted_or_on_the_claim(k8s, artifacts, root):
    release = helm_install(CHART, k8s, release=RELEASE, namespace="accepted",
                           values={"runs": [RUN], "schedules": [SCHEDULE],
                                   "artifacts": artifacts})
    check_objects(release.objects())
    (job,) = of_kind(release, "Job")
    env = env_of(runner_container(job["spec"]["template"]["spec"]))
    assert env.get("RUNNER_ARTIFACTS", {}).get("value") == root


# ----------------------------------------------------------------- runs and schedules


def _jobs_by_run_id(release: Release) -> dict[str, dict[str, Any]]:
    return {j["metadata"]["labels"]["runner.dev/run-id"]: j for j in of_kind(release, "Job")}


def test_gitops_runs_are_one_job_each_with_a_deterministic_name(k8s, rendered):
    first = _jobs_by_run_id(rendered["runs"])
    assert set(first) == {"backtest-2024-q4", "dataops-refresh", "fanout.2026-11-26"}
    again = helm_install(CHART, k8s, release=RELEASE, namespace="resync",
                         values=scenario_values("runs"))
    assert {r: j["metadata"]["name"] for r, j in _jobs_by_run_id(again).items()} == \
        {r: j["metadata"]["name"] for r, j in first.items()}
    names = [j["metadata"]["name"] for j in first.values()]
    assert len(set(names)) == len(names)
    assert first["backtest-2024-q4"]["metadata"]["name"].startswith(
        f"{RELEASE}-runner-run-backtest-2024-")
    # a new run id is a new Job; the other entries keep theirs
    values = scenario_values("runs")
    values["runs"][0]["runId"] = "backtest-2024-q4-rerun"
    rerun = _jobs_by_run_id(helm_install(CHART, k8s, release=RELEASE, namespace="rerun",
                                         values=values))
    assert rerun["backtest-2024-q4-rerun"]["metadata"]["name"] not in names
    assert rerun["dataops-refresh"]["metadata"]["name"] == \
        first["dataops-refresh"]["metadata"]["name"]


def test_a_run_job_resumes_its_own_run_id(rendered):
    jobs = _jobs_by_run_id(rendered["runs"])
    job = jobs["backtest-2024-q4"]
    assert job["spec"]["backoffLimit"] == 3 and job["spec"]["activeDeadlineSeconds"] == 7200
    assert "ttlSecondsAfterFinished" not in job["spec"]  # a re-sync would recreate it
    assert jobs["dataops-refresh"]["spec"]["ttlSecondsAfterFinished"] == 86400
    container = runner_container(job["spec"]["template"]["spec"])
    args = container["args"]
    assert args[:7] == ["run", "alpha.full", "--run-id", "backtest-2024-q4", "--resume",
                         "--or-start", "--json"]
    params = [args[i + 1] for i, a in enumerate(args) if a == "--param"]
    assert params == ['lookback=126', 'models=["ridge","gbm"]', "start=2024-01-01"]
    assert env_of(container)["RUNNER_RUN_ID"]["value"] == "backtest-2024-q4"
    assert job["spec"]["template"]["metadata"]["labels"]["runner.dev/run-id"] == \
        "backtest-2024-q4"
    assert container["image"] == "runner:0.1.0"  # image.tag "" -> appVersion
    executor = runner_container(jobs["dataops-refresh"]["spec"]["template"]["spec"])["args"]
    assert executor[executor.index("--executor") + 1] == "processes"


def test_schedules_are_cron_jobs_that_forbid_overlap_by_default(rendered):
    crons = {c["metadata"]["labels"]["runner.dev/schedule"]: c
             for c in of_kind(rendered["schedules"], "CronJob")}
    assert set(crons) == {"alpha-nightly", "dataops-hourly", "meta-weekly"}
    nightly = crons["alpha-nightly"]["spec"]
    assert nightly["concurrencyPolicy"] == "Forbid"
    assert crons["dataops-hourly"]["spec"]["concurrencyPolicy"] == "Replace"
    assert nightly["schedule"] == "0 6 * * 1-5" and nightly["timeZone"] == "America/New_York"
    assert nightly["suspend"] is False and crons["meta-weekly"]["spec"]["suspend"] is True
    assert nightly["successfulJobsHistoryLimit"] == 3 and nightly["failedJobsHistoryLimit"] == 3
    assert "startingDeadlineSeconds" not in nightly  # set to null in the scenario
    job = nightly["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 2 and job["ttlSecondsAfterFinished"] == 604800
    container = runner_container(job["template"]["spec"])
    assert container["args"][:5] == ["run", "alpha.full", "--run-id", "$(RUNNER_RUN_ID)",
                                     "--resume"]
    run_id = env_of(container)["RUNNER_RUN_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert run_id == "metadata.labels['batch.kubernetes.io/job-name']"
    for cron in crons.values():
        assert len(cron["metadata"]["name"]) <= 52  # the CronJob controller adds 11
    ray_cron = of_kind(rendered["ray"], "CronJob")[0]["spec"]
    assert ray_cron["concurrencyPolicy"] == "Forbid" and ray_cron["startingDeadlineSeconds"] == 600


def test_parallel_runs_use_the_shared_ray_cluster(rendered):
    (cluster,) = of_kind(rendered["ray"], "RayCluster")
    address = f"ray://{cluster['metadata']['name']}-head-svc:10001"
    runs = _jobs_by_run_id(rendered["ray"])
    for run_id in ("parallel-2024", "fanout-2024"):
        env = env_of(runner_container(runs[run_id]["spec"]["template"]["spec"]))
        assert env["RAY_ADDRESS"]["value"] == address
        assert env["TV_ORCH_PARALLEL"]["value"] == "1"
    sequential = env_of(runner_container(runs["sequential"]["spec"]["template"]["spec"]))
    assert "RAY_ADDRESS" not in sequential and "TV_ORCH_PARALLEL" not in sequential
    cron = of_kind(rendered["ray"], "CronJob")[0]
    cron_env = env_of(runner_container(cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
    assert cron_env["RAY_ADDRESS"]["value"] == address
    for group in (cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]):
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "registry.example.com/quant/runner:0.1.0-ray"
        dshm = {v["name"]: v for v in pod["volumes"]}["dshm"]["emptyDir"]
        assert dshm["medium"] == "Memory"
    # without a shared cluster, a parallel run gets TV_ORCH_PARALLEL only (Ray in its pod)
    no_cluster = _jobs_by_run_id(rendered["runs"])["fanout.2026-11-26"]
    env = env_of(runner_container(no_cluster["spec"]["template"]["spec"]))
    assert env["TV_ORCH_PARALLEL"]["value"] == "1" and "RAY_ADDRESS" not in env


# ----------------------------------------------------------------- manifest, helm test, NOTES


def test_the_manifest_config_map_holds_the_shipped_manifest(rendered):
    (config_map,) = of_kind(rendered["default"], "ConfigMap")
    shipped = json.loads((CHART / "files" / "manifest.json").read_text())
    assert json.loads(config_map["data"]["manifest.json"]) == shipped
    assert re.fullmatch(r"[0-9a-f]{64}", config_map["metadata"]["annotations"]["runner.dev/sha256"])


def test_an_inline_manifest_replaces_the_file(k8s):
    inline = {"pipelines": {"demo": {"steps": ["foundation.ingest"]}}}
    release = helm_install(CHART, k8s, release=RELEASE, namespace="inline",
                           values={"manifest": {"fromFile": False, "inline": inline}})
    (config_map,) = of_kind(release, "ConfigMap")
    assert json.loads(config_map["data"]["manifest.json"]) == inline
    with pytest.raises(HelmError, match=r"manifest\.inline"):
        helm_install(CHART, k8s, release=RELEASE, namespace="no-manifest",
                     values={"manifest": {"fromFile": False}})


def test_the_helm_test_pod_runs_runner_validate(rendered, tmp_path):
    release = rendered["default"]
    (hook,) = release.hooks
    assert hook["events"] == ["test"]
    (pod,) = release.hook_objects()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = runner_container(pod["spec"])
    assert container["args"] == ["validate", "--manifest", "/etc/runner/manifest.json"]
    assert container["image"] == "runner:0.1.0"
    # and `runner validate` accepts the manifest exactly as the ConfigMap mounts it
    (config_map,) = of_kind(release, "ConfigMap")
    mounted = tmp_path / "manifest.json"
    mounted.write_text(config_map["data"]["manifest.json"])
    runner = Path(sys.executable).with_name("runner")
    if not runner.exists():
        pytest.skip(f"the runner console script is not installed beside {sys.executable}")
    done = subprocess.run([str(runner), "validate", "--manifest", str(mounted)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stderr


def test_notes_render(rendered):
    notes = rendered["default"].notes
    assert f'release "{RELEASE}"' in notes and "namespace \"ci-default\"" in notes
    for text in ("kubectl logs", "runner status", "runner report", f"helm test {RELEASE}",
                 f"--service-account {RELEASE}-runner-run",
                 f"--artifact-key-secret {RELEASE}-runner-artifact-key",
                 "jsonpath='{.data.RUNNER_ARTIFACT_KEY}'"):
        assert text in notes
    schedules = rendered["schedules"].notes
    assert "alpha-nightly: alpha.full" in schedules and "--from=cronjob/" in schedules
    assert "--artifacts s3://quant-artifacts/runner" in schedules
    assert "run id backtest-2024-q4" in rendered["runs"].notes
    assert "ray://" in rendered["ray"].notes
