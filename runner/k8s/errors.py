"""Kubernetes API failures in the project's own words: one clear message each.

    RunnerError
    ├── ClusterError                 the cluster refused the call (exit 2)
    │   ├── NotFoundError            the run, Job or schedule does not exist
    │   └── InvalidObjectError       the API server refused an object as invalid (HTTP 422)
    └── InfrastructureError
        └── ClusterUnavailableError  no answer came: refused, no such host, TLS, too slow (exit 4)

A Job that failed or cannot start is :class:`runner.k8s.status.RunFailedError`, an
``ExecutionError`` (exit 1, as a failed local run): see the tree in :mod:`runner.errors`.

An error made from a failed call carries what was asked (``verb``, ``resource``,
``name``, ``namespace``); a :class:`ClusterError` also the API's answer ``api_status``, a
:class:`ClusterUnavailableError` the ``server`` that did not answer. Each is raised from
the client library's exception.
"""

from __future__ import annotations

import json
import re
from typing import Any

from runner.errors import InfrastructureError, RunnerError

__all__ = ["ClusterError", "ClusterUnavailableError", "InvalidObjectError", "NotFoundError",
           "explain", "timed_out"]


class _Asked:
    """What a failed API call asked, kept on its error (None where not known)."""

    verb: str | None
    resource: str | None
    name: str | None
    namespace: str | None

    def _keep_asked(self, *, verb: str | None = None, resource: str | None = None,
                    name: str | None = None, namespace: str | None = None) -> None:
        self.verb, self.resource, self.name, self.namespace = verb, resource, name, namespace


class ClusterError(_Asked, RunnerError):
    """The cluster answered and refused the call (exit 2: fix access or input, not the run)."""

    def __init__(self, message: str, *, api_status: int | None = None,
                 **asked: str | None) -> None:
        super().__init__(message)
        self.api_status = api_status
        self._keep_asked(**asked)


class NotFoundError(ClusterError):
    """The run, Job or schedule does not exist."""


class InvalidObjectError(ClusterError):
    """The API server refused an object as invalid (HTTP 422): ``fields`` names each
    field it objected to, with why, as ``(field, message)`` pairs."""

    def __init__(self, message: str, *, fields: tuple[tuple[str, str], ...] = (),
                 **call: Any) -> None:
        super().__init__(message, **call)
        self.fields = fields


class ClusterUnavailableError(_Asked, InfrastructureError):
    """No answer came from the Kubernetes API server at ``server``: the connection was
    refused, its host does not resolve, the TLS handshake failed, or it did not answer in
    time (exit 4: neither the input nor the run is wrong; try again once it is up)."""

    def __init__(self, message: str, *, server: str = "", **asked: str | None) -> None:
        super().__init__(message)
        self.server = server
        self._keep_asked(**asked)


def _causes(exc: Any) -> tuple[tuple[str, str], ...]:
    """The ``(field, message)`` pairs of a 422 Status's ``details.causes``."""
    try:
        doc = json.loads(getattr(exc, "body", None) or "")
    except (TypeError, ValueError):
        return ()
    details = doc.get("details") if isinstance(doc, dict) else None
    causes = details.get("causes") if isinstance(details, dict) else None
    return tuple((str(c.get("field") or "?"), str(c.get("message") or c.get("reason") or ""))
                 for c in causes or [] if isinstance(c, dict))


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
            namespace: str | None = None, server: str | None = None,
            timeouts: tuple[float, float | None] | None = None) -> RunnerError:
    """The error for a failed API call: forbidden (which verb on which resource), not
    found, conflict, an invalid object (each field the server named), any other answer
    (:class:`ClusterError`); or no answer at all: an unreachable server, a failed TLS
    handshake, or one that did not answer within ``timeouts`` (the call's ``(connect,
    read)`` limits in seconds) (:class:`ClusterUnavailableError`)."""
    what = f"{resource} {name!r}" if name else resource
    where = f" in namespace {namespace!r}" if namespace else ""
    status = getattr(exc, "status", None)
    asked: dict[str, Any] = {"verb": verb, "resource": resource, "name": name,
                             "namespace": namespace}
    call: dict[str, Any] = {"api_status": status, **asked}
    if status == 403:
        return ClusterError(f"forbidden: this identity may not {verb} {resource}{where} "
                            f"({_reason(exc)}); grant it in the Role (charts/runner does)",
                            **call)
    if status == 401:
        return ClusterError(f"unauthorized: the cluster rejected the credentials "
                            f"({_reason(exc)}); check the kubeconfig or service account",
                            **call)
    if status == 404:
        return NotFoundError(f"{what} not found{where}", **call)
    if status == 409:
        return ClusterError(f"conflict: {what} already exists{where} ({_reason(exc)})",
                            **call)
    if status == 422:
        fields = _causes(exc)
        said = "; ".join(f"{f}: {m}" for f, m in fields) or _reason(exc)
        return InvalidObjectError(f"the cluster refused {what}{where} as invalid: {said}",
                                  fields=fields, **call)
    if status and not tls_failure(exc):  # the kubernetes client says 0 for no answer
        return ClusterError(f"the Kubernetes API answered {status} to {verb} {what}{where}: "
                            f"{_reason(exc)}", **call)
    target = f" at {server}" if server else ""
    kind = timed_out(exc)
    if kind is not None:
        return ClusterUnavailableError(_too_slow(exc, kind, target, timeouts),
                                       server=server or "", **asked)
    return ClusterUnavailableError(f"cannot reach the Kubernetes API server{target}: "
                                   f"{_connection_failure(exc)}", server=server or "", **asked)


def tls_failure(exc: BaseException) -> str | None:
    """What a failed TLS handshake said (``[SSL: ...] ...``), else None. The kubernetes
    client turns urllib3's SSLError into an ApiException of status 0 whose reason is
    ``"SSLError\\n<what OpenSSL said>"``; without it, urllib3 raises it (maybe wrapped)."""
    from urllib3.exceptions import MaxRetryError, SSLError

    if getattr(exc, "status", None) == 0:
        kind, _, said = str(getattr(exc, "reason", "") or "").partition("\n")
        return (said.strip() or kind) if kind == "SSLError" else None
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    return str(exc) if isinstance(exc, SSLError) else None


def _connection_failure(exc: BaseException) -> str:
    """Why no answer came, in a few words: ``connection refused (is the cluster up?
    ...)``, ``no such host ...`` or ``the TLS handshake failed ...`` rather than
    urllib3's nested reprs."""
    from urllib3.exceptions import NameResolutionError

    tls = tls_failure(exc)
    if tls is not None:
        return (f"the TLS handshake failed ({tls}); check the server's scheme and port and "
                "the certificate authority in the kubeconfig")
    reason = getattr(exc, "reason", None)  # MaxRetryError: the failure it gave up on
    inner = reason if isinstance(reason, BaseException) else exc
    host = re.search(r"Failed to resolve '([^']*)'", str(inner))
    if isinstance(inner, NameResolutionError) and host:
        return (f"no such host {host[1]!r} (is the kubeconfig's server address right? "
                "--context and --kubeconfig choose another)")
    text = str(inner)
    _, sep, tail = text.partition("Failed to establish a new connection: ")
    if sep:
        why = tail.split("] ", 1)[-1].strip().rstrip(")\"'").lower()
        return (f"{why} (is the cluster up, and the kubeconfig's context the one you "
                "meant? --context and --kubeconfig choose another)")
    return f"{type(inner).__name__}: {text}"


def timed_out(exc: BaseException) -> str | None:
    """``"connect"`` or ``"read"`` when ``exc`` is a request that ran out of time (as
    urllib3 raises it, possibly wrapped in its MaxRetryError), else None."""
    from urllib3.exceptions import (
        ConnectTimeoutError,
        MaxRetryError,
        NewConnectionError,
        ReadTimeoutError,
    )

    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, NewConnectionError):  # refused: a ConnectTimeoutError to urllib3
        return None
    if isinstance(exc, ConnectTimeoutError):
        return "connect"
    if isinstance(exc, ReadTimeoutError | TimeoutError):
        return "read"
    return None


def _too_slow(exc: BaseException, kind: str, target: str,
              timeouts: tuple[float, float | None] | None) -> str:
    """The one line for a call that ran out of time, with the limit it ran out of: the
    one urllib3 names (``(read timeout=5)``: a TLS handshake is read under the connect
    limit), else the caller's."""
    said = re.search(r"timeout=([0-9.]+)\)", str(exc))
    limit = float(said.group(1)) if said else \
        None if timeouts is None else timeouts[0 if kind == "connect" else 1]
    within = f" within {limit:g} s" if limit is not None else " in time"
    what = "accept a connection" if kind == "connect" else "answer"
    return (f"the Kubernetes API server{target} did not {what}{within} (is it overloaded, "
            f"or a proxy or load balancer in the way? RUNNER_K8S_TIMEOUT=SECONDS waits "
            f"longer)")
