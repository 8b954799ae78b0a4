"""The one chokepoint of the Kubernetes API calls: which failures are tried again, how
long it waits between tries, and the error it raises from the library's exception."""

from __future__ import annotations

import pytest

rest = pytest.importorskip("kubernetes.client.rest", reason="the k8s extra is not installed")

from kubernetes import client  # noqa: E402
from urllib3.exceptions import NewConnectionError, ProtocolError  # noqa: E402

from runner.k8s.api import KubeApi, Retry  # noqa: E402
from runner.k8s.errors import (  # noqa: E402
    ClusterError,
    ClusterUnavailableError,
    InvalidObjectError,
    NotFoundError,
)


class Flaky:
    """Raises each failure in turn, then answers."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "answer"


def api_error(status: int, retry_after: str | None = None) -> rest.ApiException:
    exc = rest.ApiException(status=status, reason="x")
    exc.headers = {"Retry-After": retry_after} if retry_after else {}
    return exc


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def api(waits) -> KubeApi:
    retry = Retry(attempts=4, backoff=0.5, cap=8.0, sleep=waits.append)
    return KubeApi(client.ApiClient(client.Configuration()), "research", retry=retry)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_transient_answer_is_tried_again_with_backoff(api, waits, status):
    fn = Flaky(api_error(status), api_error(status))
    assert api.call(fn, verb="get", resource="jobs") == "answer"
    assert fn.calls == 3 and waits == [0.5, 1.0]


def test_retry_after_is_honoured(api, waits):
    assert api.call(Flaky(api_error(429, retry_after="5")), verb="get",
                    resource="jobs") == "answer"
    assert waits == [5.0]


@pytest.mark.parametrize(("status", "kind"), [(400, ClusterError), (401, ClusterError),
                                              (403, ClusterError), (404, NotFoundError),
                                              (409, ClusterError), (422, InvalidObjectError)])
def test_a_refusal_is_one_error_at_once_raised_from_the_library_error(api, waits, status,
                                                                      kind):
    failure = api_error(status)
    with pytest.raises(ClusterError) as raised:
        api.call(Flaky(failure), verb="create", resource="jobs", name="runner-x")
    assert type(raised.value) is kind and raised.value.__cause__ is failure
    assert (raised.value.api_status, raised.value.name) == (status, "runner-x")
    assert waits == []


def test_an_expected_status_gives_none(api):
    assert api.call(Flaky(api_error(404)), verb="delete", resource="configmaps",
                    ok=frozenset({404})) is None


def test_transient_failures_give_up_after_the_attempts(api, waits):
    fn = Flaky(*[api_error(503) for _ in range(9)])
    with pytest.raises(ClusterError, match="answered 503 to get jobs"):
        api.call(fn, verb="get", resource="jobs")
    assert fn.calls == 4 and waits == [0.5, 1.0, 2.0]


def test_a_refused_connection_is_tried_once_more_only(api, waits):
    refused = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] "
                                       "Connection refused")
    fn = Flaky(refused, refused, refused)
    with pytest.raises(ClusterUnavailableError, match="cannot reach the Kubernetes API server"
                       ) as raised:
        api.call(fn, verb="list", resource="jobs")
    assert fn.calls == 2 and waits == [0.5]
    assert raised.value.__cause__ is refused and raised.value.exit_code == 4


def test_a_failed_tls_handshake_is_not_tried_again(api, waits):
    """Yesterday: status 0 counted as transient, five tries over 7.5 s for a handshake
    that fails the same way every time."""
    failure = rest.ApiException(status=0, reason="SSLError\n[SSL: WRONG_VERSION_NUMBER] wrong")
    fn = Flaky(failure, failure)
    with pytest.raises(ClusterUnavailableError, match="the TLS handshake failed") as raised:
        api.call(fn, verb="get", resource="jobs")
    assert fn.calls == 1 and waits == []
    assert raised.value.__cause__ is failure


def test_a_dropped_connection_is_tried_again(api, waits):
    fn = Flaky(ProtocolError("Connection aborted."), ConnectionResetError(104, "reset"))
    assert api.call(fn, verb="watch", resource="jobs") == "answer"
    assert fn.calls == 3


def test_other_exceptions_are_not_the_chokepoints_to_dress(api):
    with pytest.raises(KeyError):
        api.call(Flaky(KeyError("x")), verb="get", resource="jobs")


def test_the_attempts_come_from_runner_k8s_retries(monkeypatch):
    monkeypatch.setenv("RUNNER_K8S_RETRIES", "2")
    assert Retry().attempts == 2
    monkeypatch.setenv("RUNNER_K8S_RETRIES", "lots")
    assert Retry().attempts == 5
