"""Following a run: ``wait`` watches its Job until it ends, ``logs`` reads (or streams)
its pod's output. The watch goes through the API chokepoint like every other call: a
410 Gone lists again, a dropped or failed stream is retried by the same policy."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from kubernetes import client, watch

from runner.k8s.api import KubeApi, connection_failure
from runner.k8s.errors import ClusterError, NotFoundError
from runner.k8s.look import MOUNT_GRACE, job_of, pods, read_job, status_of
from runner.k8s.status import RunStatus, check, name_of, pod_state

__all__ = ["logs", "wait"]


def wait(api: KubeApi, run_id: str, *, on_change: Callable[[RunStatus], None] | None = None,
         timeout: float | None = None, watch_timeout: int = 30,
         mount_grace: float = MOUNT_GRACE) -> RunStatus:
    """Follow the run's Job with a watch until it succeeds or fails.

    Each stream lasts ``watch_timeout`` seconds at most (then it reconnects). Raises
    :class:`~runner.k8s.status.RunFailedError` when the Job fails or its pod is stuck,
    :class:`NotFoundError` when the Job is deleted meanwhile (cancelled).
    """
    follower = _Follower(api, run_id, name_of(job_of(api, run_id)), on_change=on_change,
                         mount_grace=mount_grace)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if follower.version is None:  # (re-)list: the current state and where to watch from
            listed = follower.relist()
            if check(listed):
                return listed
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            phase = follower.seen.phase if follower.seen else "pending"
            raise ClusterError(f"run {run_id!r} still {phase} after {timeout:.0f} s; it "
                               f"goes on in the cluster")
        span = int(min(watch_timeout, left if left is not None else 1e9)) or 1
        ended = api.call(partial(follower.watch, span), verb="watch", resource="jobs",
                         name=follower.job, ok=frozenset({410}),
                         read=span + api.timeouts.read)
        if ended is None:  # 410 Gone: too old a resourceVersion, list again
            follower.version = None
        elif ended and follower.seen is not None:
            return follower.seen


@dataclass
class _Follower:
    """One run's Job as ``wait`` last saw it, and the resourceVersion to watch from."""

    api: KubeApi
    run_id: str
    job: str
    on_change: Callable[[RunStatus], None] | None
    mount_grace: float
    seen: RunStatus | None = None
    version: str | None = None

    def look(self, found: client.V1Job | None) -> RunStatus:
        """The status of ``found`` (None: the Job was deleted), said when it changed."""
        if found is None:
            raise NotFoundError(f"job {self.job!r} was deleted in namespace "
                                f"{self.api.namespace!r} while waiting (cancelled?)")
        status = status_of(self.api, self.run_id, found, mount_grace=self.mount_grace)
        if self.on_change is not None and status != self.seen:
            self.on_change(status)
        self.seen = status
        return status

    def relist(self) -> RunStatus:
        """List the Job: its status now, and the version a watch starts from."""
        api = self.api
        listed = api.must(lambda: api.batch.list_namespaced_job(
            api.namespace, field_selector=f"metadata.name={self.job}"),
            verb="list", resource="jobs")
        current = next((j for j in listed.items
                        if j.metadata and j.metadata.name == self.job), None)
        status = self.look(current)
        self.version = (listed.metadata.resource_version if listed.metadata else None) or "0"
        return status

    def watch(self, span: int) -> bool:
        """One watch stream of at most ``span`` seconds; True once the run ended."""
        api, stream = self.api, watch.Watch()
        try:
            for event in stream.stream(
                    api.batch.list_namespaced_job, api.namespace,
                    field_selector=f"metadata.name={self.job}", resource_version=self.version,
                    allow_watch_bookmarks=True, timeout_seconds=span,
                    _request_timeout=(api.timeouts.connect, span + api.timeouts.read)):
                obj = event["object"]
                meta = getattr(obj, "metadata", None)
                if meta is not None and meta.resource_version:
                    self.version = meta.resource_version
                if event["type"] == "BOOKMARK" or meta is None or meta.name != self.job:
                    continue
                if check(self.look(None if event["type"] == "DELETED" else obj)):
                    return True
        finally:
            stream.stop()
        # the stream ended (timed out or dropped): look at the Job and its pods again
        return check(self.look(read_job(api, self.job)))


def logs(api: KubeApi, run_id: str, *, follow: bool = False, tail: int | None = None,
         pod: str | None = None, poll: float = 1.0) -> Iterator[str]:
    """Lines of the run's latest pod (or ``pod``); ``follow`` streams until it ends."""
    if pod is None:
        found = pods(api, name_of(job_of(api, run_id)))  # job_of: "not found" said clearly
        if not found:
            raise NotFoundError(f"run {run_id!r} has no pod yet in namespace "
                                f"{api.namespace!r} (runner status {run_id})")
        pod = name_of(found[-1])
    chosen = pod
    if follow:
        _started(api, chosen, poll=poll)
    kwargs: dict[str, Any] = {"follow": follow, "_preload_content": False}
    if follow:  # open-ended: a pod may print nothing for hours; a connection, though
        kwargs["_request_timeout"] = api.timeouts.open_ended
    if tail is not None:
        kwargs["tail_lines"] = tail
    response: Any = api.must(lambda: api.core.read_namespaced_pod_log(
        chosen, api.namespace, **kwargs), verb="get", resource="pods/log", name=chosen)
    try:
        pending = b""
        for chunk in response.stream(4096):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                yield line.decode("utf-8", "replace")
        if pending:
            yield pending.decode("utf-8", "replace")
    except Exception as exc:  # stalled or dropped mid-way: one line, not urllib3's
        if not connection_failure(exc):
            raise
        raise api.error(exc, "get", "pods/log", chosen) from exc
    finally:
        response.release_conn()


def _started(api: KubeApi, pod: str, *, poll: float) -> None:
    """Wait while the pod is Pending (its log cannot be read before it starts)."""
    while True:
        found = api.must(lambda: api.core.read_namespaced_pod(pod, api.namespace),
                         verb="get", resource="pods", name=pod)
        state = pod_state(found)
        if state.phase != "Pending":
            return
        if state.reason:
            raise ClusterError(f"pod {pod} cannot start: {state.reason}")
        time.sleep(poll)
