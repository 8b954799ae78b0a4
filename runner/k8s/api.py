"""The one chokepoint of every Kubernetes API request, and the retry policy it follows.

Every call of the layer (a watch included) goes through :meth:`KubeApi.call`: it runs
one request, retries a transient failure (429, 5xx, a refused, dropped or stalled
connection) with backoff honouring ``Retry-After``, gives None for a status the caller
expects (``ok``: 404 on a delete, 409 on a create, 410 on a watch) and turns anything
else into one error of :mod:`runner.k8s.errors`, raised from the library's exception: a
``ClusterError`` for an answer, a ``ClusterUnavailableError`` (exit 4) for none.
How often and how long it tries again is data (:class:`Retry`), shared in shape with
Ray's connection retry (:mod:`runner.retry`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from runner.k8s.errors import ClusterError, explain, timed_out, tls_failure
from runner.k8s.timeouts import TimedApiClient, Timeouts
from runner.retry import RetryPolicy, env_int

__all__ = ["TRANSIENT", "USER_AGENT", "KubeApi", "Retry", "connection_failure"]

T = TypeVar("T")
USER_AGENT = "runner-controller/0.1"
"""How the API server (and its audit log) sees the controller's requests."""
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TRANSIENT = frozenset({429, 500, 502, 503, 504})
"""API statuses worth another try: the server is busy or restarting, not refusing."""


@dataclass
class Retry(RetryPolicy):
    """How transient API failures are retried (tests make it quick)."""

    attempts: int = field(default_factory=lambda: env_int("RUNNER_K8S_RETRIES", 5))
    """Tries per call (env RUNNER_K8S_RETRIES); 5 waits about 7.5 s in all."""
    backoff: float = 0.5
    cap: float = 8.0
    unreachable_attempts: int = 2
    """Tries per call while no connection to the server can be made at all (refused,
    no such host): one short retry, then the error, not seconds of waiting."""
    timeout_attempts: int = 2
    """Tries per call that ran out of time (``RUNNER_K8S_TIMEOUT``): one more after a
    backoff, then the error; each try already waited the whole limit."""
    transient: frozenset[int] = TRANSIENT
    """API statuses retried."""

    def tries_for(self, exc: BaseException) -> int:
        """How many tries ``exc`` earns in all: 1 when it is not transient (a failed TLS
        handshake fails the same way again)."""
        if tls_failure(exc) is not None:
            return 1
        if isinstance(exc, ApiException):
            return self.attempts if exc.status in self.transient or not exc.status else 1
        if _unreachable(exc):
            return min(self.attempts, self.unreachable_attempts)
        if timed_out(exc):
            return min(self.attempts, self.timeout_attempts)
        return self.attempts if connection_failure(exc) else 1


def connection_failure(exc: BaseException) -> bool:
    """A failure of the connection rather than an answer: refused, dropped, stalled
    (urllib3 raises OSErrors and its own exceptions)."""
    return isinstance(exc, OSError) or type(exc).__module__.startswith("urllib3")


def _retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _unreachable(exc: BaseException) -> bool:
    """No connection to the server could be made (refused, unknown host), as opposed to
    one that failed on the way or an answer."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    if isinstance(exc, MaxRetryError):
        exc = exc.reason or exc
    return isinstance(exc, NewConnectionError | ConnectionRefusedError)


class KubeApi:
    """One namespace of one cluster: the typed API groups and the chokepoint they are
    called through."""

    def __init__(self, api: client.ApiClient, namespace: str, *,
                 retry: Retry | None = None) -> None:
        self.client = api
        api.user_agent = USER_AGENT
        self.namespace = namespace
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.networking = client.NetworkingV1Api(api)
        self.server = str(getattr(api.configuration, "host", "") or "")
        self.retry = retry or Retry()
        self.timeouts: Timeouts = getattr(api, "timeouts", None) or Timeouts()

    @classmethod
    def connect(cls, namespace: str | None = None, *, context: str | None = None,
                kubeconfig: str | None = None, retry: Retry | None = None) -> KubeApi:
        """Configuration as kubectl finds it; the namespace from the flag, the context,
        or the pod's service account, else ``default``."""
        timeouts = Timeouts.from_env()  # a bad RUNNER_K8S_TIMEOUT says so before any call
        configuration = client.Configuration()
        configuration.retries = False  # retried in :meth:`call` only, and said there once
        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and kubeconfig is None \
            and context is None
        try:
            found = _in_cluster(configuration) if in_cluster else \
                _from_kubeconfig(configuration, kubeconfig=kubeconfig, context=context)
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ClusterError(f"no usable Kubernetes configuration ({where}): {exc}") from exc
        return cls(TimedApiClient(configuration, timeouts=timeouts),
                   namespace or found or "default", retry=retry)

    def error(self, exc: BaseException, verb: str, resource: str, name: str | None = None,
              *, read: float | None = None) -> Exception:
        """The project's error for a failed call (``read``: the call's own read limit)."""
        return explain(exc, verb=verb, resource=resource, name=name,
                       namespace=self.namespace, server=self.server,
                       timeouts=(self.timeouts.connect, read or self.timeouts.read))

    def call(self, fn: Callable[[], T], *, verb: str, resource: str,
             name: str | None = None, ok: frozenset[int] = frozenset(),
             read: float | None = None) -> T | None:
        """``fn()``, retried on transient failures; an API status in ``ok`` gives None;
        anything else becomes one clear error. Each request in ``fn`` has the time limit
        its client (:class:`TimedApiClient`) sets, or ``read`` when it names its own."""
        attempt = 0
        while True:
            try:
                return fn()
            except ApiException as exc:
                if exc.status in ok:
                    return None
                failure: BaseException = exc
            except (OSError, ValueError) as exc:  # urllib3: refused is an OSError
                failure = exc
            except Exception as exc:
                if not connection_failure(exc):
                    raise
                failure = exc
            if attempt + 1 >= self.retry.tries_for(failure):
                raise self.error(failure, verb, resource, name, read=read) from failure
            self.retry.pause(attempt, at_least=_retry_after(failure))
            attempt += 1

    def must(self, fn: Callable[[], T], *, verb: str, resource: str,
             name: str | None = None) -> T:
        """:meth:`call` for an answer that cannot be missing."""
        found = self.call(fn, verb=verb, resource=resource, name=name)
        assert found is not None
        return found


def _in_cluster(configuration: client.Configuration) -> str | None:
    """Load the pod's service account; its namespace."""
    config.load_incluster_config(client_configuration=configuration)
    return IN_CLUSTER_NAMESPACE.read_text().strip() if IN_CLUSTER_NAMESPACE.exists() else None


def _from_kubeconfig(configuration: client.Configuration, *, kubeconfig: str | None,
                     context: str | None) -> str | None:
    """Load the kubeconfig's context (``context`` or the active one); its namespace."""
    config.load_kube_config(config_file=kubeconfig, context=context,
                            client_configuration=configuration)
    contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
    if context is not None:
        active = next((c for c in contexts if c["name"] == context), active)
    namespace = (active or {}).get("context", {}).get("namespace")
    return str(namespace) if namespace else None
