"""The Kubernetes commands as a user types them: ``python -m runner.cli submit|status|
logs|cancel|schedule|unschedule`` in a subprocess, against kmock's API emulator on
127.0.0.1 through a kubeconfig (or no cluster at all for ``--dry-run``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kubernetes", reason="the k8s extra is not installed")
pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate")
yaml = pytest.importorskip("yaml")

from tests.k8s_emulator import Emulator, kubeconfig_text  # noqa: E402
from tests.k8s_hardening import check_objects  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
KUBERAY = ROOT.parent / "shared/schemas/kuberay/ray.io_rayclusters.yaml"
IMAGE = "ghcr.io/acme/runner:0.1.0"
KEY = "0123456789abcdef" * 4
"""The caller's store key in these tests (never a key file of the machine's)."""
STORE = ("--artifacts", "s3://quant/runner")
"""A store outside the pod: without one (or a claim, or --ephemeral-artifacts) submit
and schedule refuse."""


def cli(*args: str, kubeconfig: Path | str | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items()
            if not k.startswith(("KUBERNETES_", "TRACEPARENT", "RUNNER_"))}
    full["KUBECONFIG"] = str(kubeconfig) if kubeconfig else "/nonexistent/kubeconfig"
    full["RUNNER_ARTIFACT_KEY"] = KEY
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "runner.cli", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout, check=False)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture
def k8s(tmp_path):
    with Emulator(tmp_path, version="1.37.0", namespace="research") as emulator:
        yield emulator


def live(k8s, plural: str, namespace: str = "research") -> dict:
    return {k[2]: v for k, v in k8s.objects.items()
            if k[0].plural == plural and k[1] == namespace and not v.deleted}


def crd_schema() -> dict:
    if not KUBERAY.exists():
        pytest.skip(f"KubeRay CRD not found at {KUBERAY} (the shared schemas are absent)")
    crd = yaml.safe_load(KUBERAY.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


# ---------------------------------------------------------------- --dry-run: no cluster


@pytest.mark.parametrize(("pipeline", "flags", "kinds"), [
    ("alpha.full", [], ["ConfigMap", "Job"]),
    ("alpha.parallel", ["--parallel"], ["ConfigMap", "Job", "NetworkPolicy", "RayCluster"]),
    ("alpha.full", ["--parallel"], ["ConfigMap", "Job"]),  # no group: no Ray, a warning
])
def test_submit_dry_run_prints_valid_objects_and_needs_no_cluster(pipeline, flags, kinds):
    done = cli("submit", pipeline, "--image", IMAGE, "-n", "research", "--run-id", "dry-1",
               "--artifacts", "s3://quant/runner", "--secret-env", "s3-credentials",
               "--param", "lookback=63", *flags, "--dry-run")
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    assert [d["kind"] for d in docs] == kinds
    check_objects(docs)
    assert KEY not in done.stdout
    version = kubernetes_validate.latest_version()
    for doc in docs:
        if doc["kind"] == "RayCluster":
            import jsonschema

            jsonschema.validate(doc, crd_schema())
        else:
            kubernetes_validate.validate(doc, version, strict=True)
    job = next(d for d in docs if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:4] == ["run", pipeline, "--run-id", "dry-1"]
    assert "--param" in container["args"] and "lookback=63" in container["args"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["RUNNER_ARTIFACTS"] == "s3://quant/runner"
    assert env["TRACEPARENT"].startswith("00-") and len(env["TRACEPARENT"]) == 55
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    # YAML as people write it (the manifest a readable block), led by a note for Ray
    assert "  manifest.json: |\n" in done.stdout
    # what the Job owns is made once it exists: the key's Secret (and the Ray token's)
    assert done.stdout.startswith("# runner submit creates these")
    assert "Secret runner-dry-1-key" in done.stdout
    assert job["spec"]["suspend"] is True
    key_ref = {"name": "runner-dry-1-key", "key": "RUNNER_ARTIFACT_KEY"}
    assert {"name": "RUNNER_ARTIFACT_KEY", "valueFrom": {"secretKeyRef": key_ref}} in \
        container["env"]
    if "RayCluster" in kinds:
        assert "Secret runner-dry-1-ray-token" in done.stdout
        assert env["RAY_ADDRESS"] == ("ray://runner-dry-1-ray-head-svc.research.svc:10001")
    else:
        assert "RAY_ADDRESS" not in env
    if flags and "RayCluster" not in kinds:
        assert "no parallel group" in done.stderr


def test_submit_joins_the_callers_trace():
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    done = cli("submit", "alpha.full", "--image", IMAGE, "--dry-run", *STORE,
               env={"TRACEPARENT": parent})
    job = next(d for d in documents(done.stdout) if d["kind"] == "Job")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    assert env["TRACEPARENT"] == parent


def test_schedule_dry_run_prints_a_valid_cron_job():
    done = cli("schedule", "alpha.full", "--cron", "0 6 * * 1-5", "--image", IMAGE,
               "--time-zone", "Europe/London", "--dry-run", *STORE)
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    assert [d["kind"] for d in docs] == ["ConfigMap", "CronJob"]
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    cron = docs[1]
    assert cron["metadata"]["name"] == "alpha-full"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["timeZone"] == "Europe/London"
    volumes = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "manifest", "configMap": {"name": docs[0]["metadata"]["name"]}} in volumes


def test_schedule_takes_the_resources_submit_takes():
    """``schedule`` had no --cpu, --memory, --backoff-limit nor --deadline: every
    scheduled run got 1 CPU, 2Gi, 2 retries and 6 h. Now the Job template carries them."""
    done = cli("schedule", "alpha.full", "--cron", "0 6 * * 1-5", "--image", IMAGE,
               "--cpu", "500m", "--memory", "3Gi", "--backoff-limit", "0",
               "--deadline", "900", "--dry-run", *STORE)
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    job = docs[1]["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 900
    (container,) = job["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "3Gi"}
    assert container["resources"]["limits"]["memory"] == "3Gi"
    bad = cli("schedule", "alpha.full", "--cron", "@daily", "--image", IMAGE, "--cpu", "two",
              "--dry-run", *STORE)
    assert bad.returncode == 2 and "--cpu 'two' is not a Kubernetes quantity" in bad.stderr


def test_submit_and_schedule_declare_the_resource_options_alike():
    import typer

    from runner.cli import app

    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    options = {}
    for name in ("submit", "schedule"):
        command = group.get_command(ctx, name)  # type: ignore[attr-defined]
        options[name] = {p.opts[0]: (p.default, p.help, p.metavar) for p in command.params
                         if p.opts[0] in ("--cpu", "--memory", "--backoff-limit",
                                          "--deadline")}
    assert len(options["submit"]) == 4
    assert options["submit"] == options["schedule"]


@pytest.mark.parametrize(("args", "words"), [
    (["submit", "no.such", "--image", IMAGE, "--dry-run"], "no pipeline named 'no.such'"),
    (["submit", "alpha.full", "--image", IMAGE, "--param", "oops", "--dry-run"],
     "expected KEY=VALUE"),
    (["submit", "alpha.full", "--image", IMAGE, "-m", "nowhere.json", "--dry-run"],
     "nowhere.json"),
    (["status", "r1"], "no usable Kubernetes configuration"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, words):
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert words in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(("args", "words"), [
    (["submit", "alpha.full", "--image", IMAGE, "--cpu", "two"],
     "--cpu 'two' is not a Kubernetes quantity"),
    (["submit", "alpha.full", "--image", IMAGE, "--memory", "2GB"],
     "--memory '2GB' is not a Kubernetes quantity"),
    (["submit", "alpha.full", "--image", IMAGE, "-n", "Research"],
     "namespace 'Research' is not a DNS label"),
    (["submit", "alpha.full", "--image", IMAGE, "--run-id", "x" * 64], "label value"),
    (["submit", "alpha.full", "--image", IMAGE, "--run-id", "a/b"], "label value"),
    (["submit", "alpha.full", "--image", IMAGE, "--secret-env", "S3_Creds"], "--secret-env"),
    (["submit", "alpha.full", "--image", IMAGE, "--image-pull-policy", "always"],
     "--image-pull-policy"),
    (["submit", "alpha.full", "--image", IMAGE, "--storage-option", "secret=hunter2"],
     "use --secret-env"),
    (["submit", "alpha.full", "--image", IMAGE, "--storage-option", "AWS_Session_Token=x"],
     "looks like a credential"),
    (["submit", "alpha.full", "--image", IMAGE, "--artifact-key-secret", "Key_1"],
     "--artifact-key-secret"),
    (["schedule", "alpha.full", "--image", IMAGE, "--cron", "0 25 * * *"],
     "--cron '0 25 * * *': hour '25' is not in 0-23"),
    (["schedule", "alpha.full", "--image", IMAGE, "--cron", "0 6 * *"], "expected 5 fields"),
    (["schedule", "alpha.full", "--image", IMAGE, "--cron", "@daily", "--time-zone",
      "Mars/Olympus"], "--time-zone 'Mars/Olympus' is not an IANA time zone"),
    (["schedule", "alpha.full", "--image", IMAGE, "--cron", "@daily", "--name", "Nightly"],
     "--name 'Nightly'"),
    (["schedule", "alpha.full", "--image", IMAGE, "--cron", "@daily", "--storage-option",
      "Password=x"], "use --secret-env"),
])
@pytest.mark.parametrize("mode", ["dry-run", "cluster"])
def test_kubernetes_values_are_checked_before_anything_is_sent(args, words, mode, tmp_path):
    """Exit 2 and one line, with --dry-run as without it; with a cluster, before any
    request reaches it."""
    if mode == "dry-run":
        done = cli(*args, *STORE, "--dry-run")
    else:
        with Emulator(tmp_path, version="1.37.0", namespace="research") as k8s:
            done = cli(*args, *STORE, kubeconfig=k8s.kubeconfig)
            assert k8s.requests == []
    assert done.returncode == 2, done.stderr
    assert words in done.stderr and "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_dollar_parentheses_reach_the_run_as_they_were_typed():
    done = cli("submit", "alpha.full", "--image", IMAGE, "--run-id", "esc-1", "--dry-run", *STORE,
               "--param", "note=$(AWS_SECRET_ACCESS_KEY)", "--env", "MSG=a$(HOME)b",
               "--storage-option", "endpoint_url=http://$(MINIO_HOST):9000")
    assert done.returncode == 0, done.stderr
    job = next(d for d in documents(done.stdout) if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "note=$$(AWS_SECRET_ACCESS_KEY)" in container["args"]
    assert "endpoint_url=http://$$(MINIO_HOST):9000" in container["args"]
    assert {"name": "MSG", "value": "a$$(HOME)b"} in container["env"]
    check_objects([job])


def test_the_artifact_key_secret_can_be_named():
    done = cli("submit", "alpha.full", "--image", IMAGE, "--run-id", "k-1", "--dry-run", *STORE,
               "--artifact-key-secret", "team-artifact-key")
    assert done.returncode == 0, done.stderr
    job = next(d for d in documents(done.stdout) if d["kind"] == "Job")
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "RUNNER_ARTIFACT_KEY", "valueFrom": {"secretKeyRef": {
        "name": "team-artifact-key", "key": "RUNNER_ARTIFACT_KEY"}}} in env
    assert "not printed" not in done.stdout and not job["spec"].get("suspend")


def test_without_the_kubernetes_client_the_commands_say_how_to_install_it():
    code = ("import sys; sys.modules['kubernetes'] = None; sys.argv = ['runner', 'status', "
            "'r1']; from runner.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "pip install 'runner[k8s]'" in done.stderr and "Traceback" not in done.stderr


# ---------------------------------------------------------------- against the emulator


def test_submit_status_cancel(k8s):
    done = cli("submit", "alpha.full", "--image", IMAGE, "--run-id", "cli-1", "--json",
               *STORE, kubeconfig=k8s.kubeconfig)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["run_id"] == "cli-1" and doc["job"] == "runner-cli-1"
    assert doc["namespace"] == "research"  # the kubeconfig context's namespace
    assert not doc["attached"] and len(doc["trace_id"]) == 32
    assert set(live(k8s, "jobs")) == {"runner-cli-1"}
    (job,) = live(k8s, "jobs").values()
    # the store's key: in a Secret owned by the Job, read by the pod from it, nowhere else
    (key,) = live(k8s, "secrets").values()
    assert key["metadata"]["name"] == "runner-cli-1-key"
    assert key["stringData"] == {"RUNNER_ARTIFACT_KEY": KEY}
    assert key["metadata"]["ownerReferences"] == [{
        "apiVersion": "batch/v1", "kind": "Job", "name": "runner-cli-1",
        "uid": job["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    assert KEY not in json.dumps(job, default=dict)
    assert job["spec"]["suspend"] is False  # let go once its Secret exists
    check_objects([job])
    again = json.loads(cli("submit", "alpha.full", "--image", IMAGE, "--run-id", "cli-1",
                           "--json", *STORE, kubeconfig=k8s.kubeconfig).stdout)
    assert again["attached"]

    status = cli("status", "cli-1", "--json", kubeconfig=k8s.kubeconfig)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["phase"] == "pending"

    cancelled = cli("cancel", "cli-1", kubeconfig=k8s.kubeconfig)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "job/runner-cli-1" in cancelled.stderr
    assert "configmap/runner-cli-1-manifest" in cancelled.stderr
    assert live(k8s, "jobs") == {} and live(k8s, "configmaps") == {}

    gone = cli("status", "cli-1", kubeconfig=k8s.kubeconfig)
    assert gone.returncode == 2 and "not found" in gone.stderr


def test_schedule_creates_then_updates_and_unschedule_deletes(k8s):
    made = cli("schedule", "alpha.full", "--cron", "0 6 * * 1-5", "--image", IMAGE, *STORE,
               kubeconfig=k8s.kubeconfig)
    assert made.returncode == 0, made.stderr
    assert "created cronjob/alpha-full" in made.stderr
    (cron,) = live(k8s, "cronjobs").values()
    assert cron["spec"]["schedule"] == "0 6 * * 1-5"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert "runner-alpha-full-manifest" in live(k8s, "configmaps")

    moved = cli("schedule", "alpha.full", "--cron", "30 7 * * *", "--image", IMAGE,
                "--concurrency-policy", "Replace", *STORE, kubeconfig=k8s.kubeconfig)
    assert moved.returncode == 0, moved.stderr
    assert "updated cronjob/alpha-full" in moved.stderr
    (cron,) = live(k8s, "cronjobs").values()
    assert cron["spec"]["schedule"] == "30 7 * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Replace"

    gone = cli("unschedule", "alpha-full", kubeconfig=k8s.kubeconfig)
    assert gone.returncode == 0, gone.stderr
    assert live(k8s, "cronjobs") == {} and live(k8s, "configmaps") == {}
    again = cli("unschedule", "alpha-full", kubeconfig=k8s.kubeconfig)
    assert again.returncode == 2 and "not found" in again.stderr


def test_an_unreachable_api_server_is_named_and_exits_4(tmp_path):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(f"http://127.0.0.1:{port}"))
    done = cli("submit", "alpha.full", "--image", IMAGE, *STORE, kubeconfig=config,
               env={"RUNNER_K8S_RETRIES": "1"})
    assert done.returncode == 4, done.stderr
    assert f"cannot reach the Kubernetes API server at http://127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [["status", "run-1"], ["logs", "run-1"],
                                     ["submit", "alpha.full", "--image", IMAGE, *STORE]],
                         ids=["status", "logs", "submit"])
def test_an_unreachable_api_server_is_one_line_at_once(command, tmp_path):
    """Yesterday: 15 urllib3 ``Retrying`` warnings over 13 s, then the error. Now the
    client does not retry by itself and ours retries a refused connection once: the
    one error line, and nothing else (the retries setting left as users have it)."""
    import time

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(f"https://127.0.0.1:{port}"))
    started = time.monotonic()
    done = cli(*command, kubeconfig=config)
    print(f"runner {command[0]} against a closed port: {time.monotonic() - started:.2f} s wall")
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == [
        f"error: cannot reach the Kubernetes API server at https://127.0.0.1:{port}: "
        "connection refused (is the cluster up, and the kubeconfig's context the one you "
        "meant? --context and --kubeconfig choose another)"], done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("command", [["status", "run-1"],
                                     ["submit", "alpha.full", "--image", IMAGE, *STORE]],
                         ids=["status", "submit"])
def test_a_stopped_api_server_is_infrastructure_exit_4_not_the_users_fault(command, tmp_path):
    """The same command and kubeconfig: while the server is up, a missing run is the
    user's (exit 2); once it is stopped, nothing answers: exit 4, the one line naming it."""
    with Emulator(tmp_path, version="1.37.0", namespace="research") as emulator:
        url, config = emulator.url, tmp_path / "kubeconfig"
        config.write_text(emulator.kubeconfig.read_text())
        if command[0] == "status":
            up = cli(*command, kubeconfig=config)
            assert up.returncode == 2 and "not found" in up.stderr, up.stderr
    done = cli(*command, kubeconfig=config)
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == [
        f"error: cannot reach the Kubernetes API server at {url}: connection refused (is the "
        "cluster up, and the kubeconfig's context the one you meant? --context and "
        "--kubeconfig choose another)"], done.stderr
    assert done.stdout == ""


def test_a_host_that_does_not_resolve_exits_4_naming_it(tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text("https://k8s.nowhere.invalid:6443"))
    done = cli("status", "run-1", kubeconfig=config)
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == [
        "error: cannot reach the Kubernetes API server at https://k8s.nowhere.invalid:6443: no "
        "such host 'k8s.nowhere.invalid' (is the kubeconfig's server address right? --context "
        "and --kubeconfig choose another)"], done.stderr


def test_a_failed_tls_handshake_exits_4_on_one_line(k8s, tmp_path):
    """https:// to the emulator's plain-HTTP port: the handshake fails. Yesterday: 'the
    Kubernetes API answered 0' over two lines, exit 2, after five tries."""
    server = k8s.url.replace("http://", "https://")
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(server, namespace="research"))
    done = cli("status", "run-1", kubeconfig=config)
    assert done.returncode == 4, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"error: cannot reach the Kubernetes API server at {server}: the "
                           "TLS handshake failed ([SSL: "), line
    assert line.endswith("); check the server's scheme and port and the certificate "
                         "authority in the kubeconfig"), line
    assert "Traceback" not in done.stderr


@pytest.fixture
def silent_server():
    """A "Kubernetes API server" on 127.0.0.1 that accepts connections and never answers
    (a hung apiserver, a black-holed load balancer): its URL; stopped at the end."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop, held = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])  # kept open, never read, never answered
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, name="silent-api-server", daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(10)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("command", [["status", "run-1"], ["logs", "run-1"],
                                     ["submit", "alpha.full", "--image", IMAGE, *STORE]],
                         ids=["status", "logs", "submit"])
def test_an_api_server_that_never_answers_is_one_line_not_a_hang(command, silent_server,
                                                                 tmp_path):
    """Yesterday: the command hung for ever (the client sets no limit but on watches).
    Now each request has one (RUNNER_K8S_TIMEOUT), is tried twice, then the one line."""
    import time

    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(silent_server))
    started = time.monotonic()
    done = cli(*command, kubeconfig=config, env={"RUNNER_K8S_TIMEOUT": "1"}, timeout=60)
    print(f"runner {command[0]} against a silent server (limit 1 s): "
          f"{time.monotonic() - started:.2f} s wall")
    assert done.returncode == 4, done.stderr
    assert done.stderr.splitlines() == [
        f"error: the Kubernetes API server at {silent_server} did not answer within 1 s (is "
        "it overloaded, or a proxy or load balancer in the way? RUNNER_K8S_TIMEOUT=SECONDS "
        "waits longer)"], done.stderr
    assert done.stdout == ""


def test_a_bad_runner_k8s_timeout_is_one_line_before_any_call(silent_server, tmp_path):
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(silent_server))
    done = cli("status", "run-1", kubeconfig=config, env={"RUNNER_K8S_TIMEOUT": "soon"},
               timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "error: RUNNER_K8S_TIMEOUT='soon': expected seconds, READ or CONNECT,READ (e.g. 30 "
        "or 5,30)"], done.stderr


def test_submit_passes_the_callers_otel_settings_but_not_a_loopback_endpoint():
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
           "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_RESOURCE_ATTRIBUTES": "desk=alpha"}
    done = cli("submit", "alpha.full", "--image", IMAGE, "--dry-run", *STORE, env=env)
    job = next(d for d in documents(done.stdout) if d["kind"] == "Job")
    got = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    assert {k: got[k] for k in env} == env
    local = cli("submit", "alpha.full", "--image", IMAGE, "--dry-run", *STORE, "--env",
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
                env={**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    job = next(d for d in documents(local.stdout) if d["kind"] == "Job")
    got = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in got and "loopback" in local.stderr
    assert got["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"  # --env wins


# ---------------------------------------------------------------- no silent loss


POD_LOCAL = [
    ([], "no --artifacts: the run would write to the image's default root inside the pod"),
    (["--artifacts", "data/artifacts"], "--artifacts data/artifacts is a path inside the pod"),
    (["--artifacts", "/mnt/art"], "--artifacts /mnt/art is a path inside the pod"),
    (["--artifacts", "file:///mnt/art"], "--artifacts file:///mnt/art is a path inside"),
    (["--artifacts", "memory://runs"], "memory://runs is the memory of the pod's process"),
    (["--artifacts", "simplecache::file:///mnt/art"], "is a path inside the pod"),
]


@pytest.mark.parametrize(("flags", "words"), POD_LOCAL)
@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_a_store_inside_the_pod_is_refused_before_anything_is_sent(flags, words, command,
                                                                   k8s):
    args = [command, "alpha.full", "--image", IMAGE, *flags]
    if command == "schedule":
        args += ["--cron", "@daily"]
    done = cli(*args, kubeconfig=k8s.kubeconfig)
    assert done.returncode == 2, done.stderr
    assert k8s.requests == []
    (line,) = done.stderr.strip().splitlines()
    assert words in line
    assert ("lost with the pod and a retried pod could not resume the run" in line
            and "--artifacts-pvc NAME" in line and "--ephemeral-artifacts" in line)
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize(("flags", "words"), POD_LOCAL[:3])
def test_ephemeral_artifacts_accepts_the_loss(flags, words):
    done = cli("submit", "alpha.full", "--image", IMAGE, "--run-id", "eph-1", *flags,
               "--ephemeral-artifacts", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert words not in done.stderr
    job = next(d for d in documents(done.stdout) if d["kind"] == "Job")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    assert env.get("RUNNER_ARTIFACTS") == (flags[1] if flags else None)


@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_a_claim_mounted_in_the_run_pod_is_a_store_outside_it(command):
    args = [command, "alpha.full", "--image", IMAGE, "--artifacts-pvc", "runner-artifacts",
            "--dry-run"]
    if command == "schedule":
        args += ["--cron", "@daily"]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    work = docs[1]["spec"]
    work = work.get("jobTemplate", {}).get("spec", work)
    pod = work["template"]["spec"]
    check_objects([docs[1]])
    container = pod["containers"][0]
    assert {"name": "artifacts", "persistentVolumeClaim": {"claimName": "runner-artifacts"}} \
        in pod["volumes"]
    assert {"name": "artifacts", "mountPath": "/var/lib/runner/artifacts"} in \
        container["volumeMounts"]
    assert {"name": "RUNNER_ARTIFACTS", "value": "/var/lib/runner/artifacts"} in \
        container["env"]


@pytest.mark.parametrize(("flags", "code", "words"), [
    (["--artifacts", "/var/lib/runner/artifacts/team-a"], 0, ""),
    (["--artifacts", "file:///var/lib/runner/artifacts"], 0, ""),
    (["--artifacts", "/var/lib/runner/artifacts-old"], 2, "is not on the claim"),
    (["--artifacts", "s3://quant/runner"], 2, "is not on the claim"),
])
def test_artifacts_with_a_claim_must_be_on_it(flags, code, words):
    done = cli("submit", "alpha.full", "--image", IMAGE, "--artifacts-pvc", "art", *flags,
               "--dry-run")
    assert done.returncode == code, done.stderr
    assert words in done.stderr


def test_a_bad_claim_name_is_refused():
    done = cli("submit", "alpha.full", "--image", IMAGE, "--artifacts-pvc", "Art_1",
               "--dry-run")
    assert done.returncode == 2 and "--artifacts-pvc 'Art_1'" in done.stderr, done.stderr


# ---------------------------------------------------------------- stages the image lacks


QUICKSTART = ROOT / "README.md"


def _quickstart(folder: Path) -> Path:
    """The README quickstart as a user has it on a laptop: my_stages.py beside demo.json."""
    import re

    blocks = re.findall(r"```(\w*)\n(.*?)```", QUICKSTART.read_text(), re.S)
    code = next(body for lang, body in blocks if lang == "python" and "# my_stages.py" in body)
    manifest = next(body for lang, body in blocks if lang == "json" and '"demo"' in body)
    (folder / "my_stages.py").write_text(code)
    (folder / "demo.json").write_text(manifest)
    return folder / "demo.json"


def _loose_warning(module: str, places: str, kind: str, location: str) -> str:
    return (f"warning: module {module!r} ({places}) is not from an installed distribution: "
            f"found in the loose {kind} {location}, which the image does not have; put your "
            "stages in a package and build an image FROM the runner image that installs it, "
            'then pass it with --image (README: "Your own stages on the cluster")')


def test_submit_warns_about_a_stage_module_beside_the_manifest(tmp_path):
    manifest = _quickstart(tmp_path)
    done = cli("submit", "demo", "-m", str(manifest), "--image", IMAGE, *STORE, "--dry-run")
    assert done.returncode == 0, done.stderr
    places = 'stages."demo.load", stages."demo.returns", stages."demo.trend"'
    assert done.stderr.strip().splitlines() == [
        _loose_warning("my_stages", places, "file", str(tmp_path / "my_stages.py"))]
    assert [d["kind"] for d in documents(done.stdout)] == ["ConfigMap", "Job"]


def test_schedule_warns_too_and_json_output_stays_clean(tmp_path, k8s):
    manifest = _quickstart(tmp_path)
    made = cli("schedule", "demo", "-m", str(manifest), "--cron", "@daily", "--image", IMAGE,
               *STORE, kubeconfig=k8s.kubeconfig)
    assert made.returncode == 0, made.stderr
    assert "warning: module 'my_stages'" in made.stderr and "created cronjob/demo" in made.stderr
    done = cli("submit", "demo", "-m", str(manifest), "--image", IMAGE, *STORE, "--json",
               "--run-id", "loose-1", kubeconfig=k8s.kubeconfig)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run_id"] == "loose-1"  # stdout: the one JSON object
    assert done.stderr.count("warning: module 'my_stages'") == 1


def test_context_types_merge_rules_and_adapters_are_checked_too(tmp_path):
    """A loose package (a folder) named by a context type, a merge rule and an adapter,
    besides the stages; the shipped and standard-library modules are not warned about."""
    pkg = tmp_path / "desk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from runner import Context\n\n"
        "class DeskContext(Context):\n    pass\n\n"
        "def note(ctx):\n    ctx.log('desk')\n    return ctx\n\n"
        "def to_desk(ctx):\n    return DeskContext(**dict(ctx))\n\n"
        "def keep_first(before, values):\n    return values[0]\n")
    manifest = tmp_path / "desk.json"
    manifest.write_text(json.dumps({
        "pipelines": {"desk": {"steps": ["desk.note"], "context": "desk:DeskContext",
                               "merge": {"audit_trail": "desk:keep_first"}}},
        "stages": {"desk.note": "desk:note", "desk.copy": "copy:copy"},
        "adapters": [{"from": "runner:Context", "to": "desk:DeskContext",
                      "fn": "desk:to_desk"}],
    }))
    done = cli("submit", "desk", "-m", str(manifest), "--image", IMAGE, *STORE, "--dry-run")
    assert done.returncode == 0, done.stderr
    places = ('stages."desk.note", pipelines.desk.context, pipelines.desk.merge.audit_trail '
              'and 2 more')
    assert done.stderr.strip().splitlines() == [
        _loose_warning("desk", places, "folder", f"{pkg}/")]


@pytest.mark.parametrize(("flag", "forwarded"), [
    ([], []), (["--cache"], ["--cache"]), (["--no-cache"], ["--no-cache"])])
@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_the_step_cache_option_reaches_the_pods_run_command(command, flag, forwarded):
    """``--cache``/``--no-cache`` is passed on to the pod's ``runner run`` (neither: the
    manifest decides there), in objects the API server takes."""
    extra = ["--cron", "0 6 * * 1-5"] if command == "schedule" else []
    done = cli(command, "alpha.full", "--image", IMAGE, *extra, *flag, "--dry-run", *STORE)
    assert done.returncode == 0, done.stderr
    docs = documents(done.stdout)
    for doc in docs:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    (run,) = [d for d in docs if d["kind"] in ("Job", "CronJob")]
    pod = run["spec"]["jobTemplate"]["spec"] if command == "schedule" else run["spec"]
    args = pod["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["run", "alpha.full"]
    assert [a for a in args if a in ("--cache", "--no-cache")] == forwarded
