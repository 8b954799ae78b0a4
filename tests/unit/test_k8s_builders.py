"""The controller's pure builders: every object validated against the real Kubernetes
schemas (kubernetes-validate, strict, its newest version) and RayClusters against
the KubeRay CRD; the hardened pod settings and the run's env checked one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

kubernetes = pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from runner.k8s.builders import (  # noqa: E402
    RunSpec,
    Schedule,
    config_map,
    cron_job,
    job,
    job_name,
    ray_cluster,
    to_dicts,
    to_yaml,
)

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT.parent / "shared/schemas/kuberay/ray.io_rayclusters.yaml"
VERSION = kubernetes_validate.latest_version()


def spec(**kw) -> RunSpec:
    base = {"pipeline": "alpha.full", "run_id": "nightly-2026-11-26", "namespace": "research",
            "image": "ghcr.io/acme/runner:0.1.0",
            "manifest": (ROOT / "configs/manifest.json").read_text(),
            "artifacts": "s3://quant-artifacts/runner", "secret_env": ["s3-credentials"],
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
    base.update(kw)
    return RunSpec(**base)


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, VERSION, strict=True)


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


@pytest.mark.parametrize("parallel", [False, True])
def test_every_object_is_valid_kubernetes(parallel):
    run = spec(parallel=parallel, params={"lookback": 63, "universe": "sp500"})
    objects = to_dicts([config_map(run), job(run, ray_address="x-head-svc:6379" if parallel
                                              else None),
                        cron_job(Schedule("alpha-nightly", "0 6 * * 1-5", run))])
    for obj in objects:
        validate(obj)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Job", "CronJob"]


def test_the_job_is_hardened_and_resumes():
    obj = to_dicts([job(spec())])[0]
    assert obj["metadata"]["name"] == job_name("nightly-2026-11-26") == "runner-nightly-2026-11-26"
    s = obj["spec"]
    assert s["backoffLimit"] == 2 and s["activeDeadlineSeconds"] > 0
    assert s["ttlSecondsAfterFinished"] > 0
    pod = pod_spec(obj)
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True and sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "/tmp" in mounts and mounts["/etc/runner"]["readOnly"] is True
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"] == {}
    assert container["args"][:5] == ["run", "alpha.full", "--run-id", "nightly-2026-11-26",
                                     "--resume"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HOME"] == "/tmp" and env["RUNNER_MANIFEST"] == "/etc/runner/manifest.json"
    assert env["RUNNER_ARTIFACTS"] == "s3://quant-artifacts/runner"
    assert env["TRACEPARENT"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert "RAY_ADDRESS" not in env
    # credentials only by reference
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    assert not any("SECRET" in name or "TOKEN" in name for name in env)
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "runner"
    assert labels["runner.dev/run-id"] == "nightly-2026-11-26"
    assert labels["runner.dev/pipeline"] == "alpha.full"


def test_parallel_job_points_at_its_ray_cluster():
    obj = to_dicts([job(spec(parallel=True), ray_address="runner-x-ray-head-svc:6379")])[0]
    env = {e["name"]: e.get("value") for e in pod_spec(obj)["containers"][0]["env"]}
    assert env["RAY_ADDRESS"] == "runner-x-ray-head-svc:6379"
    assert env["TV_ORCH_PARALLEL"] == "1"


def test_long_or_odd_run_ids_make_valid_names():
    run = spec(run_id="Nightly_Run.2026-11-26T06:00:00+00:00-" + "x" * 80)
    for obj in to_dicts([config_map(run), job(run)]):
        validate(obj)
        assert len(obj["metadata"]["name"]) <= 63


def test_ray_cluster_matches_the_kuberay_crd_and_is_owned_by_the_job():
    if not KUBERAY.exists():
        pytest.skip(f"KubeRay CRD not found at {KUBERAY} (the shared schemas are absent)")
    import jsonschema

    crd = yaml.safe_load(KUBERAY.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = version["schema"]["openAPIV3Schema"]
    owner = job(spec(parallel=True))
    assert owner.metadata is not None
    owner.metadata.uid = "0e7f7c2a-6b1c-4a51-9e36-8b1d6c0f3a11"
    cluster = ray_cluster(spec(parallel=True), owner=owner)
    jsonschema.validate(cluster, schema)
    (ref,) = cluster["metadata"]["ownerReferences"]
    assert ref["kind"] == "Job" and ref["uid"] == owner.metadata.uid
    assert ref["blockOwnerDeletion"] is True
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        sec = container["securityContext"]
        assert sec["allowPrivilegeEscalation"] is False
        assert sec["capabilities"] == {"drop": ["ALL"]}


def test_cron_job_forbids_overlap_and_names_each_run_after_its_job():
    obj = to_dicts([cron_job(Schedule("alpha nightly", "0 6 * * 1-5", spec()))])[0]
    validate(obj)
    assert obj["spec"]["concurrencyPolicy"] == "Forbid"
    container = pod_spec(obj)["containers"][0]
    assert container["args"][3] == "$(RUNNER_RUN_ID)"
    (run_id,) = [e for e in container["env"] if e["name"] == "RUNNER_RUN_ID"]
    assert run_id["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['batch.kubernetes.io/job-name']"


def test_dry_run_yaml_is_every_object_once():
    run = spec()
    text = to_yaml([config_map(run), job(run)], comment="made by a test\n\nsecond line")
    assert text.startswith("# made by a test\n#\n# second line\n---\n")
    docs = list(yaml.safe_load_all(text))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job"]
    assert docs == to_dicts([config_map(run), job(run)])
    assert json.loads(docs[0]["data"]["manifest.json"]) == json.loads(run.manifest)
    assert "  manifest.json: |\n" in text  # readable: the manifest as a block, not "\\n"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(min_size=1), st.text() | st.integers() | st.booleans()
                       | st.none(), max_size=5))
def test_dry_run_yaml_reads_back_as_the_same_objects(data):
    """Whatever text a ConfigMap holds (trailing spaces, tabs, unicode, lone newlines,
    things YAML would read as numbers or booleans), the YAML reads back as it was."""
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "data": data}
    assert list(yaml.safe_load_all(to_yaml([obj]))) == [obj]
