"""How long a Kubernetes API call may take: every request gets a limit.

The official client waits forever for an answer unless a request names a timeout, so an
API server that accepts connections and never answers (a hung apiserver, a black-holed
load balancer, a proxy that never forwards) would hang every command. :class:`TimedApiClient`
is the one place a limit is set: every generated API method goes through its
``call_api``, and a request that names no ``_request_timeout`` gets
:attr:`Timeouts.pair`. Streams name their own (a watch: a connect limit and a read
limit past its server-side ``timeoutSeconds``; ``logs --follow``: a connect limit only,
``(connect, OPEN)``: the generated methods take no None for a limit, so ``OPEN`` stands
for it and is made None here).

``RUNNER_K8S_TIMEOUT`` sets the limits in seconds: ``READ`` (connect: the smaller of it
and 5) or ``CONNECT,READ``; the default is ``5,30``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from runner.errors import UsageError

__all__ = ["ENV", "OPEN", "TimedApiClient", "Timeouts"]

ENV = "RUNNER_K8S_TIMEOUT"
CONNECT, READ = 5.0, 30.0
OPEN = math.inf
"""A read limit that is none: a stream that may be quiet for hours (``logs --follow``)."""


@dataclass(frozen=True)
class Timeouts:
    """Seconds to make a connection, and to wait for each answer on it."""

    connect: float = CONNECT
    read: float = READ

    @property
    def pair(self) -> tuple[float, float]:
        """As ``_request_timeout`` takes it: ``(connect, read)``."""
        return (self.connect, self.read)

    @property
    def open_ended(self) -> tuple[float, float]:
        """A stream's: a connection within the connect limit, then no read limit."""
        return (self.connect, OPEN)

    @classmethod
    def from_env(cls) -> Timeouts:
        """The limits from ``RUNNER_K8S_TIMEOUT``; a value that is not one or two
        positive numbers is a usage error (exit 2), never silently the default."""
        text = os.environ.get(ENV, "").strip()
        if not text:
            return cls()
        parts = [p.strip() for p in text.split(",")]
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) not in (1, 2) or not all(0 < n < 1e6 for n in numbers):
            raise UsageError(f"{ENV}={text!r}: expected seconds, READ or CONNECT,READ "
                             f"(e.g. 30 or 5,30)")
        if len(numbers) == 1:
            return cls(connect=min(CONNECT, numbers[0]), read=numbers[0])
        return cls(connect=numbers[0], read=numbers[1])


class TimedApiClient(client.ApiClient):
    """The official client with a limit on every request that names none."""

    def __init__(self, configuration: client.Configuration, *, timeouts: Timeouts) -> None:
        super().__init__(configuration)
        self.timeouts = timeouts

    def call_api(self, method: Any, url: Any, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> Any:
        """Every request of every API method: the default limits unless it names its own."""
        if _request_timeout is None:
            _request_timeout = self.timeouts.pair
        elif isinstance(_request_timeout, tuple) and _request_timeout[1] == OPEN:
            _request_timeout = (_request_timeout[0], None)  # urllib3: no read limit
        return super().call_api(method, url, header_params=header_params, body=body,
                                post_params=post_params, _request_timeout=_request_timeout)

