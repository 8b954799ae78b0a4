"""API failures become one clear message with the project's exit codes."""

from __future__ import annotations

import json

import pytest

rest = pytest.importorskip("kubernetes.client.rest", reason="the k8s extra is not installed")

from runner.errors import UsageError  # noqa: E402
from runner.k8s.errors import ClusterError, NotFoundError, explain  # noqa: E402


def api_error(status: int, message: str) -> Exception:
    exc = rest.ApiException(status=status, reason="x")
    exc.body = json.dumps({"kind": "Status", "message": message})
    return exc


@pytest.mark.parametrize(("status", "kind", "words"), [
    (403, ClusterError, "forbidden: this identity may not create jobs in namespace 'research'"),
    (401, ClusterError, "unauthorized"),
    (404, NotFoundError, "job 'runner-x' not found in namespace 'research'"),
    (409, ClusterError, "conflict: job 'runner-x' already exists"),
    (422, UsageError, "the cluster refused job 'runner-x'"),
    (500, ClusterError, "answered 500 to create job 'runner-x'"),
])
def test_api_statuses(status, kind, words):
    error = explain(api_error(status, "boom"), verb="create", resource="jobs" if status == 403
                    else "job", name="runner-x", namespace="research")
    assert type(error) is kind
    assert words in str(error)
    assert error.exit_code == 2


def test_unreachable_server_names_it():
    error = explain(ConnectionRefusedError(111, "Connection refused"), verb="list",
                    resource="jobs", server="https://127.0.0.1:6443")
    assert isinstance(error, ClusterError)
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:6443" in str(error)
