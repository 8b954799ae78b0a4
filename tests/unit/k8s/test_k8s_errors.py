"""API failures become one clear message with the project's exit codes."""

from __future__ import annotations

import json

import pytest

rest = pytest.importorskip("kubernetes.client.rest", reason="the k8s extra is not installed")

from runner.errors import UsageError  # noqa: E402
from runner.k8s.errors import (  # noqa: E402
    ClusterError,
    ClusterUnavailableError,
    InvalidObjectError,
    NotFoundError,
    explain,
)


def api_error(status: int, message: str) -> Exception:
    exc = rest.ApiException(status=status, reason="x")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


@pytest.mark.parametrize(("status", "kind", "words"), [
    (403, ClusterError, "forbidden: this identity may not create jobs in namespace 'research'"),
    (401, ClusterError, "unauthorized"),
    (404, NotFoundError, "job 'runner-x' not found in namespace 'research'"),
    (409, ClusterError, "conflict: job 'runner-x' already exists"),
    (422, InvalidObjectError, "the cluster refused job 'runner-x' in namespace 'research' "
                              "as invalid: boom"),
    (500, ClusterError, "answered 500 to create job 'runner-x'"),
])
def test_api_statuses(status, kind, words):
    error = explain(api_error(status, "boom"), verb="create", resource="jobs" if status == 403
                    else "job", name="runner-x", namespace="research")
    assert type(error) is kind
    assert words in str(error)
    assert error.exit_code == 2
    assert (error.api_status, error.verb, error.namespace) == (status, "create", "research")


def test_an_invalid_object_names_each_field_the_server_refused():
    exc = rest.ApiException(status=422, reason="Unprocessable Entity")
    exc.body = json.dumps({
        "kind": "Status", "reason": "Invalid", "code": 422,
        "message": 'Job.batch "runner-x" is invalid: [...]',
        "details": {"name": "runner-x", "kind": "Job", "causes": [
            {"reason": "FieldValueRequired", "message": "Required value",
             "field": "spec.template.spec.containers[0].image"},
            {"reason": "FieldValueInvalid", "message": "Invalid value: -1",
             "field": "spec.backoffLimit"}]}})
    error = explain(exc, verb="create", resource="job", name="runner-x", namespace="research")
    assert isinstance(error, InvalidObjectError) and not isinstance(error, UsageError)
    assert str(error) == ("the cluster refused job 'runner-x' in namespace 'research' as "
                          "invalid: spec.template.spec.containers[0].image: Required value; "
                          "spec.backoffLimit: Invalid value: -1")
    assert error.fields == (("spec.template.spec.containers[0].image", "Required value"),
                            ("spec.backoffLimit", "Invalid value: -1"))
    assert (error.resource, error.name, error.exit_code) == ("job", "runner-x", 2)


def test_unreachable_server_names_it():
    error = explain(ConnectionRefusedError(111, "Connection refused"), verb="list",
                    resource="jobs", server="https://127.0.0.1:6443")
    assert type(error) is ClusterUnavailableError and error.exit_code == 4
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:6443" in str(error)
    assert (error.server, error.verb, error.resource) == ("https://127.0.0.1:6443", "list",
                                                          "jobs")


def test_a_host_that_does_not_resolve_is_named_in_a_few_words():
    import socket

    from urllib3.exceptions import MaxRetryError, NameResolutionError

    failure = MaxRetryError(None, "/api", NameResolutionError(
        "k8s.nowhere.invalid", None, socket.gaierror(-2, "Name or service not known")))
    error = explain(failure, verb="get", resource="jobs",
                    server="https://k8s.nowhere.invalid:6443")
    assert type(error) is ClusterUnavailableError and error.exit_code == 4
    assert str(error) == (
        "cannot reach the Kubernetes API server at https://k8s.nowhere.invalid:6443: no such "
        "host 'k8s.nowhere.invalid' (is the kubeconfig's server address right? --context and "
        "--kubeconfig choose another)")


def test_a_failed_tls_handshake_is_unavailable_not_an_answer_of_status_0():
    """The kubernetes client turns urllib3's SSLError into an ApiException of status 0:
    it is no answer (exit 4), said on one line, not 'the API answered 0'."""
    failure = rest.ApiException(status=0, reason="SSLError\n[SSL: WRONG_VERSION_NUMBER] "
                                                  "wrong version number (_ssl.c:1006)")
    error = explain(failure, verb="get", resource="jobs", server="https://127.0.0.1:8080")
    assert type(error) is ClusterUnavailableError and error.exit_code == 4
    assert str(error) == (
        "cannot reach the Kubernetes API server at https://127.0.0.1:8080: the TLS handshake "
        "failed ([SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)); check the "
        "server's scheme and port and the certificate authority in the kubeconfig")
    assert "\n" not in str(error)


@pytest.mark.parametrize(("exc", "words"), [
    ("read", "did not answer within 30 s"),
    ("connect", "did not accept a connection within 5 s"),
    ("socket", "did not answer within 30 s"),
    ("wrapped", "did not accept a connection within 5 s"),
])
def test_a_request_that_ran_out_of_time_names_the_server_and_the_limit(exc, words):
    from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ReadTimeoutError

    failure = {"read": ReadTimeoutError(None, "/api", "Read timed out. (read timeout=30)"),
               "connect": ConnectTimeoutError("Connection to 10.0.0.1 timed out."),
               "socket": TimeoutError("timed out"),
               "wrapped": MaxRetryError(None, "/api", ConnectTimeoutError("timed out"))}[exc]
    error = explain(failure, verb="get", resource="jobs", server="https://10.0.0.1:6443",
                    timeouts=(5, 30))
    assert type(error) is ClusterUnavailableError and error.exit_code == 4
    assert str(error).startswith(f"the Kubernetes API server at https://10.0.0.1:6443 {words} ")
    assert "RUNNER_K8S_TIMEOUT" in str(error)


def test_a_refused_connection_is_not_a_timeout():
    """urllib3 makes NewConnectionError a ConnectTimeoutError: refused stays 'cannot reach'."""
    from urllib3.exceptions import NewConnectionError

    error = explain(NewConnectionError(None, "Failed to establish a new connection: [Errno "
                                             "111] Connection refused"),
                    verb="get", resource="jobs", server="https://127.0.0.1:1", timeouts=(5, 30))
    assert str(error).startswith("cannot reach the Kubernetes API server at https://127.0.0.1:1: "
                                 "connection refused")


@pytest.mark.parametrize(("value", "limits"), [
    ("", (5, 30)), ("30", (5, 30)), ("2", (2, 2)), ("0.5", (0.5, 0.5)), ("3,60", (3, 60)),
    (" 1 , 10 ", (1, 10))])
def test_runner_k8s_timeout_sets_the_limits(monkeypatch, value, limits):
    from runner.k8s.timeouts import Timeouts

    monkeypatch.setenv("RUNNER_K8S_TIMEOUT", value)
    assert Timeouts.from_env().pair == limits


@pytest.mark.parametrize("value", ["soon", "0", "-1", "1,2,3", "5,", "nan", "inf"])
def test_a_bad_runner_k8s_timeout_is_a_usage_error(monkeypatch, value):
    from runner.k8s.timeouts import Timeouts

    monkeypatch.setenv("RUNNER_K8S_TIMEOUT", value)
    with pytest.raises(UsageError, match=r"RUNNER_K8S_TIMEOUT=.*: expected seconds, READ or "
                                         r"CONNECT,READ \(e.g. 30 or 5,30\)"):
        Timeouts.from_env()


def test_the_limit_urllib3_ran_out_of_is_the_one_said():
    """A TLS handshake that never ends is a 'read' timeout under the connect limit."""
    from urllib3.exceptions import ReadTimeoutError

    failure = ReadTimeoutError(None, "/api", "Read timed out. (read timeout=5.0)")
    error = explain(failure, verb="get", resource="jobs", server="https://10.0.0.1:6443",
                    timeouts=(5, 30))
    assert "did not answer within 5 s " in str(error)
