"""Kubernetes API failures in the project's own words: one clear message each."""

from __future__ import annotations

import json
from typing import Any

from runner.errors import RunnerError, UsageError

__all__ = ["ClusterError", "NotFoundError", "explain"]


class ClusterError(RunnerError):
    """The cluster refused or could not be reached (exit 2: fix access, not the run)."""

    exit_code = 2


class NotFoundError(ClusterError):
    """The run, Job or schedule does not exist."""


def _reason(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            doc = json.loads(body)
        except (TypeError, ValueError):
            return str(body)[:300]
        if isinstance(doc, dict) and doc.get("message"):
            return str(doc["message"])
    return str(getattr(exc, "reason", "") or exc)


def explain(exc: BaseException, *, verb: str, resource: str, name: str | None = None,
            namespace: str | None = None, server: str | None = None) -> RunnerError:
    """A RunnerError for a failed API call: forbidden (which verb on which resource),
    not found, conflict, or an unreachable server."""
    what = f"{resource} {name!r}" if name else resource
    where = f" in namespace {namespace!r}" if namespace else ""
    status = getattr(exc, "status", None)
    if status == 403:
        return ClusterError(f"forbidden: this identity may not {verb} {resource}{where} "
                            f"({_reason(exc)}); grant it in the Role (charts/runner does)")
    if status == 401:
        return ClusterError(f"unauthorized: the cluster rejected the credentials "
                            f"({_reason(exc)}); check the kubeconfig or service account")
    if status == 404:
        return NotFoundError(f"{what} not found{where}")
    if status == 409:
        return ClusterError(f"conflict: {what} already exists{where} ({_reason(exc)})")
    if status == 422:
        return UsageError(f"the cluster refused {what}: {_reason(exc)}")
    if status is not None:
        return ClusterError(f"the Kubernetes API answered {status} to {verb} {what}{where}: "
                            f"{_reason(exc)}")
    target = f" at {server}" if server else ""
    return ClusterError(f"cannot reach the Kubernetes API server{target}: "
                        f"{_connection_failure(exc)}")


def _connection_failure(exc: BaseException) -> str:
    """Why no answer came, in a few words: ``connection refused (is the cluster up?
    ...)`` rather than urllib3's nested reprs."""
    reason = getattr(exc, "reason", None)  # MaxRetryError: the failure it gave up on
    inner = reason if isinstance(reason, BaseException) else exc
    text = str(inner)
    _, sep, tail = text.partition("Failed to establish a new connection: ")
    if sep:
        why = tail.split("] ", 1)[-1].strip().rstrip(")\"'").lower()
        return (f"{why} (is the cluster up, and the kubeconfig's context the one you "
                "meant? --context and --kubeconfig choose another)")
    return f"{type(inner).__name__}: {text}"
