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
    RayClusterSpec,
    RunSpec,
    Schedule,
    artifact_key_name,
    config_map,
    cron_job,
    job,
    job_name,
    manifest_name,
    ray_client_address,
    secret,
    to_dicts,
    to_yaml,
)
from runner.k8s.ray import (  # noqa: E402
    network_policy,
    ray_cluster,
    ray_token_name,
    ray_token_secret,
    token_secret_of,
)
from tests.k8s_hardening import check_object, check_objects  # noqa: E402
from tests.k8s_kubelet import expand  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
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


def kuberay_schema() -> dict:
    if not KUBERAY.exists():
        pytest.skip(f"KubeRay CRD not found at {KUBERAY} (the shared schemas are absent)")
    crd = yaml.safe_load(KUBERAY.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def owned_job(run: RunSpec):
    owner = job(run, ray_address=ray_client_address(run), ray_token=token_secret_of(run),
                suspend=True)
    assert owner.metadata is not None
    owner.metadata.uid = "0e7f7c2a-6b1c-4a51-9e36-8b1d6c0f3a11"
    return owner


def test_ray_objects_match_their_schemas_and_are_owned_by_the_job():
    import jsonschema

    run = spec(parallel=True, ray=RayClusterSpec())
    owner = owned_job(run)
    cluster = ray_cluster(run, owner=owner)
    jsonschema.validate(cluster, kuberay_schema())
    policy = network_policy(run, owner=owner)
    token = to_dicts([ray_token_secret(run, token="t" * 64, owner=owner)])[0]
    for obj in (to_dicts([owner])[0], policy, token):
        validate(obj)
    for obj in (cluster, policy, token):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {"apiVersion": "batch/v1", "kind": "Job", "name": job_name(run.run_id),
                       "uid": owner.metadata.uid, "controller": True,
                       "blockOwnerDeletion": True}
    assert token["metadata"]["name"] == ray_token_name(run.run_id)
    assert token["stringData"] == {"RAY_AUTH_TOKEN": "t" * 64} and token["immutable"] is True


def test_ray_pods_are_as_hard_as_the_jobs_pod_with_token_auth_and_no_credentials():
    run = spec(parallel=True, ray=RayClusterSpec(), service_account="runner-run",
               artifact_key_secret="runner-key")
    cluster = ray_cluster(run, owner=owned_job(run))
    assert check_object(cluster) == 2  # head and workers
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["serviceAccountName"] == "runner-run"
        (container,) = pod["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": ray_token_name(run.run_id), "key": "RAY_AUTH_TOKEN"}
        assert set(env) == {"HOME", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}  # no credentials
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert mounts == {"/tmp", "/dev/shm"}  # Ray's session dir is /tmp/ray
    # the run's pod is the Ray client: the same token, from the same Secret
    run_env = {e["name"]: e for e in pod_spec(to_dicts([owned_job(run)])[0])["containers"][0]
               ["env"]}
    assert run_env["RAY_AUTH_MODE"]["value"] == "token"
    assert run_env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == \
        ray_token_name(run.run_id)
    named = spec(parallel=True, ray=RayClusterSpec(token_secret="shared-ray-token"))
    assert token_secret_of(named) == "shared-ray-token"


def test_the_network_policy_admits_only_the_runs_pods_to_the_head():
    run = spec(parallel=True, ray=RayClusterSpec())
    policy = network_policy(run)
    validate(policy)
    instance = job_name(run.run_id)
    selector = policy["spec"]["podSelector"]
    assert selector["matchLabels"] == {"app.kubernetes.io/instance": instance}
    assert selector["matchExpressions"][0]["values"] == ["ray-head", "ray-worker"]
    among, clients = policy["spec"]["ingress"]
    assert "ports" not in among
    assert [p["matchLabels"]["app.kubernetes.io/component"] for p in
            (f["podSelector"] for f in among["from"])] == ["ray-head", "ray-worker"]
    (peer,) = clients["from"]
    assert peer == {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": instance,
                                                    "app.kubernetes.io/component": "run"}}}
    assert {p["port"] for p in clients["ports"]} == {10001, 6379, 8265}
    # the selectors match what the pods carry
    cluster = ray_cluster(run)
    head_labels = cluster["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert head_labels["app.kubernetes.io/instance"] == instance
    run_labels = to_dicts([job(run)])[0]["spec"]["template"]["metadata"]["labels"]
    assert run_labels["app.kubernetes.io/component"] == "run"
    assert run_labels["app.kubernetes.io/instance"] == instance


def test_every_pod_spec_is_hardened():
    run = spec(parallel=True, ray=RayClusterSpec(), artifact_key_secret="k")
    owner = owned_job(run)
    objects = to_dicts([owner, job(spec()), cron_job(Schedule("alpha-nightly", "0 6 * * *",
                                                                spec()))])
    assert check_objects([*objects, ray_cluster(run, owner=owner)]) == 5


def test_preemption_is_not_a_failure_and_the_runner_finishes_within_the_grace():
    obj = to_dicts([job(spec())])[0]
    assert obj["spec"]["podFailurePolicy"] == {"rules": [{
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}
    pod = pod_spec(obj)
    assert pod["restartPolicy"] == "Never"  # what podFailurePolicy requires
    assert pod["terminationGracePeriodSeconds"] == 30
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["RUNNER_TERM_GRACE"] == "20"


def test_the_store_key_comes_from_a_secret_never_as_a_value():
    obj = to_dicts([job(spec(artifact_key_secret="runner-nightly-key"))])[0]
    (container,) = pod_spec(obj)["containers"]
    (key,) = [e for e in container["env"] if e["name"] == "RUNNER_ARTIFACT_KEY"]
    assert key == {"name": "RUNNER_ARTIFACT_KEY", "valueFrom": {"secretKeyRef": {
        "name": "runner-nightly-key", "key": "RUNNER_ARTIFACT_KEY"}}}
    made = to_dicts([secret(spec(), name=artifact_key_name("nightly-1"),
                            data={"RUNNER_ARTIFACT_KEY": "k" * 64}, component="artifact-key",
                            owner=owned_job(spec()))])[0]
    validate(made)
    assert made["metadata"]["name"] == "runner-nightly-1-key"
    assert made["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert "RUNNER_ARTIFACT_KEY" not in to_yaml([job(spec())])  # none without one


def test_no_value_is_expanded_by_the_kubelet():
    """The kubelet expands $(VAR) in args and env values: a --param or --env naming a
    secret's variable would put the secret into params.json."""
    trap = "$(AWS_SECRET_ACCESS_KEY)"
    run = spec(params={"note": trap, "n": {"x": trap}}, storage_options={"endpoint_url": trap},
               env={"NOTE": f"a{trap}b", "PLAIN": "$HOME $$( $"}, run_id="nightly-1")
    for obj in to_dicts([job(run), cron_job(Schedule("s", "0 6 * * *", run))]):
        check_object(obj)
        container = pod_spec(obj)["containers"][0]
        secrets_env = {"AWS_SECRET_ACCESS_KEY": "hunter2", "RUNNER_RUN_ID": "s-1"}
        env = {e["name"]: expand(e["value"], secrets_env) for e in container["env"]
               if "value" in e}
        args = [expand(a, secrets_env) for a in container["args"]]
        assert env["NOTE"] == f"a{trap}b" and env["PLAIN"] == "$HOME $$( $"
        assert f"note={trap}" in args and f"endpoint_url={trap}" in args
        assert 'n={"x": "$(AWS_SECRET_ACCESS_KEY)"}' in args
        assert "hunter2" not in " ".join(args) + " ".join(env.values())
        if obj["kind"] == "CronJob":  # the one expansion meant: the scheduled run's id
            assert args[args.index("--run-id") + 1] == "s-1"


@pytest.mark.parametrize(("a", "b"), [("nightly.1", "nightly-1"), ("Nightly-1", "nightly-1"),
                                      ("a_b", "a-b"), ("x" * 70, "x" * 71)])
def test_two_run_ids_never_share_a_job_name(a, b):
    assert job_name(a) != job_name(b)
    assert manifest_name(a) != manifest_name(b)
    for run_id in (a, b):
        for obj in to_dicts([config_map(spec(run_id=run_id)), job(spec(run_id=run_id))]):
            validate(obj)
    assert job_name("nightly-1") == "runner-nightly-1"  # unchanged ids keep their names
    assert job_name("nightly.1").startswith("runner-nightly-1-")


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


@pytest.mark.parametrize(("cache", "flags"), [(None, []), (True, ["--cache"]),
                                              (False, ["--no-cache"])])
def test_the_step_cache_choice_is_on_the_pods_command_line(cache, flags):
    run = spec(cache=cache)
    objects = to_dicts([job(run), cron_job(Schedule("alpha-nightly", "0 6 * * 1-5", run))])
    for obj in objects:
        validate(obj)
        args = pod_spec(obj)["containers"][0]["args"]
        assert [a for a in args if a in ("--cache", "--no-cache")] == flags
