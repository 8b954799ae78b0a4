"""The controller: submit a run as a Job, follow it, look at it, cancel it, schedule it.

    ctl = Controller.connect(namespace="research")       # kubeconfig or in-cluster
    ctl.submit(run)                                      # ConfigMap + Job (attach if there)
    ctl.wait(run.run_id, on_change=print)                # watch until it ends
    for line in ctl.logs(run.run_id, follow=True): ...   # the pod's output
    ctl.status("nightly-1")                              # phase, pods, reason in words
    ctl.cancel("nightly-1")                              # the Job, its pods, RayCluster, ConfigMap
    ctl.schedule(Schedule("alpha-nightly", "0 6 * * 1-5", run)); ctl.unschedule("alpha-nightly")

A run that owns objects is created suspended; they are made with an ownerReference to
the Job (so Kubernetes deletes them with it, whatever else dies), then the Job is let
go. They are: the Secret with the store's key (``submit(run, artifact_key=...)``), and
for a parallel run (``RunSpec.ray`` set) its Ray auth token Secret, the NetworkPolicy in
front of its Ray head and its KubeRay ``RayCluster``, whose head is awaited before the
Job starts with the head's Ray client address in ``RAY_ADDRESS``.

What the controller calls is what the chart's Role grants, no more (a test records
every request and checks both ways): Jobs create/get/list/watch/patch/delete, CronJobs
create/get/patch/delete, ConfigMaps create/patch/delete, Secrets and NetworkPolicies
create, Pods get/list, pods/log get, Events list, RayClusters create/get/delete.

Configuration is found as kubectl finds it: in a pod, the service account; else
``KUBECONFIG`` or ``~/.kube/config``, with ``--context`` to choose. Every API failure
becomes one message in the project's own error types (:mod:`runner.k8s.errors`).
Transient answers (429, 5xx, a refused or dropped connection) are retried with
backoff, honouring ``Retry-After``; watches re-list on 410 Gone and reconnect when
their stream drops. Every request has a time limit (:mod:`runner.k8s.timeouts`,
``RUNNER_K8S_TIMEOUT``): a server that accepts connections and never answers is an
error after it, retried once like a transient failure, not a hang.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from runner.errors import ExecutionError
from runner.k8s.builders import (
    ARTIFACT_KEY_ENV,
    RUN_ID_LABEL,
    RunSpec,
    Schedule,
    artifact_key_name,
    config_map,
    cron_job,
    job,
    job_name,
    manifest_name,
    ray_client_address,
    ray_cluster_name,
    secret,
)
from runner.k8s.errors import ClusterError, NotFoundError, explain, timed_out
from runner.k8s.ray import (
    network_policy,
    network_policy_name,
    ray_cluster,
    ray_token_secret,
    token_secret_of,
)
from runner.k8s.timeouts import TimedApiClient, Timeouts

__all__ = ["Controller", "PodState", "RunFailedError", "RunStatus", "Submitted"]

T = TypeVar("T")
USER_AGENT = "runner-controller/0.1"
"""How the API server (and its audit log) sees the controller's requests."""
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayclusters"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
TRANSIENT = frozenset({429, 500, 502, 503, 504})
STUCK = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                   "CreateContainerConfigError", "CreateContainerError", "ErrImageNeverPull"})
"""Pod waiting reasons that a Job never gets over by itself: ``wait`` reports them."""


@dataclass(frozen=True)
class Submitted:
    """What ``submit`` did: created the run, or attached to the one already there."""

    run_id: str
    job: str
    namespace: str
    attached: bool
    ray_cluster: str | None = None


@dataclass(frozen=True)
class PodState:
    """One attempt of a run: its pod, phase and, when it went wrong, why in words."""

    name: str
    phase: str
    reason: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class RunStatus:
    """A run's Job as words: pending, running, succeeded or failed, and why."""

    run_id: str
    job: str
    phase: str
    active: int
    succeeded: int
    failed: int
    reason: str | None = None
    pods: tuple[PodState, ...] = ()
    ray: str | None = None
    """The state of the run's RayCluster (None without one)."""
    started: str | None = None
    finished: str | None = None

    @property
    def done(self) -> bool:
        return self.phase in ("succeeded", "failed")

    def to_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["pods"] = [dict(p.__dict__) for p in self.pods]
        return doc


class RunFailedError(ExecutionError):
    """The run's Job failed, or its pod cannot start (exit 1, as a failed local run)."""

    def __init__(self, message: str, status: RunStatus) -> None:
        super().__init__(message)
        self.status = status


RunFailed = RunFailedError
"""Deprecated: the name before :class:`RunFailedError`."""


@dataclass
class Retry:
    """How transient API failures are retried (tests make it quick)."""

    attempts: int = field(default_factory=lambda: _env_int("RUNNER_K8S_RETRIES", 5))
    """Tries per call (env RUNNER_K8S_RETRIES); 5 waits about 7.5 s in all."""
    unreachable_attempts: int = 2
    """Tries per call while no connection to the server can be made at all (refused,
    no such host): one short retry, then the error, not seconds of waiting."""
    timeout_attempts: int = 2
    """Tries per call that ran out of time (``RUNNER_K8S_TIMEOUT``): one more after a
    backoff, then the error; each try already waited the whole limit."""
    backoff: float = 0.5
    cap: float = 8.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, attempt: int, exc: BaseException) -> float:
        after = _retry_after(exc)
        base = min(self.cap, self.backoff * 2.0 ** attempt)
        return float(max(base, after) if after is not None else base)


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


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


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in TRANSIENT or exc.status == 0 or exc.status is None
    return isinstance(exc, OSError) or type(exc).__module__.startswith("urllib3")


class Controller:
    """Talks to one namespace of one cluster with the official client."""

    watch_timeout: int = 30
    """Seconds a watch asks the server to keep its stream (it reconnects after)."""
    ray_timeout: float = 600.0
    """Seconds ``submit`` waits for a parallel run's Ray head to be ready."""
    poll: float = 1.0
    """Seconds between looks where no watch applies (the Ray head, a pod to start)."""
    mount_grace: float = 120.0
    """Seconds a pod may wait for a missing ConfigMap, Secret or claim behind one of its
    volumes before ``wait`` calls it stuck (GitOps tools may apply the Job first)."""

    def __init__(self, api: client.ApiClient, namespace: str, *,
                 retry: Retry | None = None) -> None:
        self.api = api
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
                kubeconfig: str | None = None, retry: Retry | None = None) -> Controller:
        """Configuration as kubectl finds it; the namespace from the flag, the context,
        or the pod's service account, else ``default``."""
        timeouts = Timeouts.from_env()  # a bad RUNNER_K8S_TIMEOUT says so before any call
        configuration = client.Configuration()
        configuration.retries = False  # retried in :meth:`_call` only, and said there once
        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ and kubeconfig is None \
            and context is None
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)
                found = (IN_CLUSTER_NAMESPACE.read_text().strip()
                         if IN_CLUSTER_NAMESPACE.exists() else None)
            else:
                config.load_kube_config(config_file=kubeconfig, context=context,
                                        client_configuration=configuration)
                _, active = config.list_kube_config_contexts(config_file=kubeconfig)
                if context is not None:
                    contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
                    active = next((c for c in contexts if c["name"] == context), active)
                found = (active or {}).get("context", {}).get("namespace")
        except (config.ConfigException, OSError, TypeError, ValueError) as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ClusterError(f"no usable Kubernetes configuration ({where}): {exc}") from None
        return cls(TimedApiClient(configuration, timeouts=timeouts),
                   namespace or found or "default", retry=retry)

    # ------------------------------------------------------------ calling the API

    def _error(self, exc: BaseException, verb: str, resource: str, name: str | None = None,
               *, read: float | None = None) -> Exception:
        return explain(exc, verb=verb, resource=resource, name=name,
                       namespace=self.namespace, server=self.server,
                       timeouts=(self.timeouts.connect, read or self.timeouts.read))

    def _call(self, fn: Callable[[], T], *, verb: str, resource: str,
              name: str | None = None, ok: frozenset[int] = frozenset()) -> T | None:
        """``fn()``, retried on transient failures; an API status in ``ok`` gives None;
        anything else becomes one clear error. The one chokepoint of the API calls: each
        request in ``fn`` has the time limit its client (:class:`TimedApiClient`) sets."""
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
                if not type(exc).__module__.startswith("urllib3"):
                    raise
                failure = exc
            limit = self.retry.attempts
            if _unreachable(failure):
                limit = min(limit, self.retry.unreachable_attempts)
            elif timed_out(failure):
                limit = min(limit, self.retry.timeout_attempts)
            if not _transient(failure) or attempt + 1 >= limit:
                raise self._error(failure, verb, resource, name) from None
            self.retry.sleep(self.retry.delay(attempt, failure))
            attempt += 1

    def _must(self, fn: Callable[[], T], *, verb: str, resource: str,
              name: str | None = None) -> T:
        found = self._call(fn, verb=verb, resource=resource, name=name)
        assert found is not None
        return found

    # ------------------------------------------------------------ submit

    def submit(self, run: RunSpec, *, ray_address: str | None = None,
               artifact_key: str | None = None) -> Submitted:
        """Create the manifest ConfigMap and the Job; the same run id again attaches
        to the Job already there instead of failing.

        ``artifact_key``: the store's key, put in a Secret the Job owns
        (``run.artifact_key_secret`` must name :func:`artifact_key_name`). With
        ``run.ray`` set, the Job also gets a Ray token Secret, a NetworkPolicy and a
        RayCluster, and is let go once the Ray head is ready. Whatever it owns, the
        Job starts suspended until that exists (an attach finishes it if it was cut
        short). ``ray_address`` instead points the run at a Ray that already exists.
        """
        name = job_name(run.run_id)
        with_ray = run.ray is not None and ray_address is None
        if artifact_key is not None and run.artifact_key_secret != artifact_key_name(run.run_id):
            raise ValueError("artifact_key needs run.artifact_key_secret = "
                             "artifact_key_name(run.run_id)")
        owns = with_ray or artifact_key is not None
        existing = self._read_job(name)
        if existing is None:
            self._call(lambda: self.core.create_namespaced_config_map(
                self.namespace, config_map(run)), verb="create", resource="configmaps",
                name=manifest_name(run.run_id), ok=frozenset({409}))
            body = job(run, ray_address=ray_client_address(run) if with_ray else ray_address,
                       ray_token=token_secret_of(run) if with_ray else None, suspend=owns)
            created = self._call(lambda: self.batch.create_namespaced_job(
                self.namespace, body), verb="create", resource="jobs", name=name,
                ok=frozenset({409}))
            attached = created is None  # 409: made meanwhile by someone else
            existing = created if created is not None else self._read_job(name)
        else:
            attached = True
        if existing is None:
            raise NotFoundError(f"job {name!r} vanished right after it was created "
                                f"in namespace {self.namespace!r}")
        cluster = None
        spec = existing.spec
        if spec is not None and spec.suspend:  # ours, waiting for what it owns (or cut short)
            if not owns:
                raise ClusterError(f"job {name!r} is suspended and this run has nothing "
                                   f"to wait for: resume it with kubectl or "
                                   f"runner cancel {run.run_id}")
            if artifact_key is not None:
                self._create_secret(secret(run, name=artifact_key_name(run.run_id),
                                           data={ARTIFACT_KEY_ENV: artifact_key},
                                           component="artifact-key", owner=existing))
            if with_ray:
                cluster = self._start_ray(run, existing)
            self._call(lambda: self.batch.patch_namespaced_job(
                name, self.namespace, {"spec": {"suspend": False}}),
                verb="patch", resource="jobs", name=name)
        elif with_ray:
            cluster = ray_cluster_name(run.run_id)
        return Submitted(run.run_id, name, self.namespace, attached=attached,
                         ray_cluster=cluster)

    def _read_job(self, name: str) -> client.V1Job | None:
        return self._call(lambda: self.batch.read_namespaced_job(name, self.namespace),
                          verb="get", resource="jobs", name=name, ok=frozenset({404}))

    def _create_secret(self, body: client.V1Secret) -> None:
        """Create a Secret; one already there (an attach) is kept as it is."""
        name = body.metadata.name if body.metadata else None
        self._call(lambda: self.core.create_namespaced_secret(self.namespace, body),
                   verb="create", resource="secrets", name=name, ok=frozenset({409}))

    def _start_ray(self, run: RunSpec, owner: client.V1Job) -> str:
        """The run's token Secret, NetworkPolicy and RayCluster, owned by its Job;
        returns once the head is ready."""
        if run.ray is not None and run.ray.token_secret is None:
            self._create_secret(ray_token_secret(run, token=secrets.token_hex(32),
                                                 owner=owner))
        policy: Any = network_policy(run, owner=owner)  # a dict, as the API takes it
        self._call(lambda: self.networking.create_namespaced_network_policy(
            self.namespace, policy), verb="create", resource="networkpolicies",
            name=network_policy_name(run.run_id), ok=frozenset({409}))
        name = ray_cluster_name(run.run_id)
        body = ray_cluster(run, owner=owner)
        self._call(lambda: self.custom.create_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, self.namespace, RAY_PLURAL, body),
            verb="create", resource="rayclusters", name=name, ok=frozenset({409}))
        deadline = time.monotonic() + self.ray_timeout
        while True:
            state = self._ray_state(name)
            if state == "ready":
                return name
            if state == "failed":
                raise ClusterError(f"raycluster {name!r} failed to start in namespace "
                                   f"{self.namespace!r}: see kubectl describe raycluster "
                                   f"{name}")
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"raycluster {name!r} was not ready after {self.ray_timeout:.0f} s "
                    f"(state {state or 'unknown'}); is the KubeRay operator installed? The "
                    f"job stays suspended: submit the same --run-id again to keep "
                    f"waiting, or runner cancel {run.run_id}")
            time.sleep(self.poll)

    def _ray_state(self, name: str) -> str | None:
        found = self._call(lambda: self.custom.get_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, self.namespace, RAY_PLURAL, name),
            verb="get", resource="rayclusters", name=name, ok=frozenset({404}))
        if not isinstance(found, dict):
            return None
        status = found.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []
                      if isinstance(c, dict)}
        if conditions.get("HeadPodReady") == "True":  # KubeRay >= 1.2; `state` is deprecated
            return "ready"
        state = status.get("state")
        return str(state) if state else None

    # ------------------------------------------------------------ look

    def status(self, run_id: str) -> RunStatus:
        return self._status_of(run_id, self._job_of(run_id))

    def _job_of(self, run_id: str) -> client.V1Job:
        """The run's Job: ``runner-<id>`` as submitted, or a scheduled run's own Job (a
        CronJob's Job is named ``<schedule>-<n>`` and that name is its run id)."""
        name = job_name(run_id)
        found = self._read_job(name)
        if found is None and run_id != name:
            other = self._read_job(run_id) if _is_dns_label(run_id) else None
            labels = (other.metadata.labels or {}) if other and other.metadata else {}
            if labels.get("app.kubernetes.io/name") == "runner":
                found = other
        if found is None:
            raise NotFoundError(f"run {run_id!r} not found in namespace {self.namespace!r} "
                                f"(no job {name!r})")
        return found

    def _status_of(self, run_id: str, found: client.V1Job) -> RunStatus:
        name = _name(found)
        st = found.status or client.V1JobStatus()
        conditions = {c.type: c for c in (st.conditions or [])}
        pods = tuple(self._mount_stuck(p) or self._pod_state(p) for p in self._pods(name))
        reason = None
        if "Complete" in conditions and conditions["Complete"].status == "True":
            phase = "succeeded"
        elif "Failed" in conditions and conditions["Failed"].status == "True":
            phase = "failed"
            cond = conditions["Failed"]
            reason = _words(cond.reason, cond.message)
            why = next((p.reason for p in reversed(pods) if p.reason), None)
            if why and cond.reason in (None, "BackoffLimitExceeded"):
                reason = f"{reason}; last attempt: {why}"
        elif found.spec is not None and found.spec.suspend:
            phase = "pending"
            reason = ("suspended (until what it owns exists: its Secrets, its Ray cluster; "
                      f"runner submit --run-id {run_id} again finishes it)")
        elif st.active and (not pods or any(p.phase != "Pending" for p in pods)):
            phase = "running"  # (a Job counts a pod still being made as active)
        else:
            phase = "pending"
        if phase in ("pending", "running"):
            stuck = next((p for p in reversed(pods) if p.phase == "Pending" and p.reason), None)
            if stuck is not None:
                reason = stuck.reason
        ray = None
        if found.spec is not None:
            env = _container_env(found)
            if "RAY_ADDRESS" in env and "-head-svc" in env["RAY_ADDRESS"]:
                ray = self._ray_state(ray_cluster_name(run_id)) or "absent"
        return RunStatus(run_id, name, phase, st.active or 0, st.succeeded or 0,
                         st.failed or 0, reason, pods, ray,
                         _when(st.start_time), _when(st.completion_time))

    def _pods(self, job: str) -> list[client.V1Pod]:
        """The Job's pods, oldest first (filtered here too: not every server filters)."""
        found = self._must(lambda: self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{JOB_NAME_LABEL}={job}"),
            verb="list", resource="pods")
        mine = [p for p in found.items if p.metadata is not None and
                ((p.metadata.labels or {}).get(JOB_NAME_LABEL) == job
                 or (p.metadata.labels or {}).get("job-name") == job)]
        return sorted(mine, key=_pod_order)

    @staticmethod
    def _pod_state(pod: client.V1Pod) -> PodState:
        st = pod.status or client.V1PodStatus()
        name = (pod.metadata.name if pod.metadata else None) or "?"
        phase = st.phase or "Pending"
        if st.reason:  # Evicted, DeadlineExceeded, ...
            return PodState(name, phase, _words(st.reason, st.message))
        for cs in st.container_statuses or []:
            state = cs.state or client.V1ContainerState()
            if state.terminated is not None:
                term = state.terminated
                if term.reason not in (None, "Completed") or (term.exit_code or 0) != 0:
                    said = _words(term.reason if term.reason != "Error" else None,
                                  term.message)
                    return PodState(name, phase, f"{said}, exit code {term.exit_code}"
                                    if term.reason in (None, "Error") else said,
                                    term.exit_code)
                return PodState(name, phase, None, term.exit_code)
            if state.waiting is not None and state.waiting.reason in STUCK:
                return PodState(name, phase, _words(state.waiting.reason,
                                                    state.waiting.message))
        return PodState(name, phase)

    def _mount_stuck(self, pod: client.V1Pod) -> PodState | None:
        """A pod still ``ContainerCreating`` after :attr:`mount_grace` because a volume
        names something that does not exist. The kubelet says so only in a FailedMount
        Event (``MountVolume.SetUp failed for volume "manifest" : configmap "x" not
        found``); without the right to list events, the pod just keeps waiting."""
        st = pod.status or client.V1PodStatus()
        waiting = [cs.state.waiting for cs in st.container_statuses or []
                   if cs.state is not None and cs.state.waiting is not None]
        if st.phase not in (None, "Pending") or not waiting \
                or waiting[0].reason != "ContainerCreating":
            return None
        born = _dig(pod, "metadata", "creation_timestamp")
        age = (datetime.now(UTC) - born).total_seconds() \
            if isinstance(born, datetime) else 0.0
        if age < self.mount_grace:
            return None
        name = _name(pod)
        found = self._call(lambda: self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name},reason=FailedMount"),
            verb="list", resource="events", ok=frozenset({401, 403, 404}))
        said = sorted((e for e in (found.items if found is not None else [])
                       if e.reason == "FailedMount" and "not found" in (e.message or "")
                       and _dig(e, "involved_object", "name") == name),
                      key=lambda e: _when(e.last_timestamp) or "")
        if not said:
            return None
        return PodState(name, "Pending", f"a volume cannot be mounted after {age:.0f} s "
                        f"({said[-1].message})")

    def runs(self) -> list[str]:
        """Run ids of the Jobs this controller made in the namespace."""
        found = self._must(lambda: self.batch.list_namespaced_job(
            self.namespace, label_selector=RUN_ID_LABEL), verb="list", resource="jobs")
        ids = [((j.metadata and j.metadata.labels) or {}).get(RUN_ID_LABEL)
               for j in found.items]
        return sorted(i for i in ids if i)

    # ------------------------------------------------------------ follow

    def wait(self, run_id: str, *, on_change: Callable[[RunStatus], None] | None = None,
             timeout: float | None = None) -> RunStatus:
        """Follow the run's Job with a watch until it succeeds or fails.

        Re-lists on 410 Gone, reconnects when a stream drops or times out, backs off on
        429 and 5xx. Raises :class:`RunFailedError` when the Job fails or its pod is stuck
        (an image that cannot be pulled, a missing Secret), :class:`NotFoundError` when
        the Job is deleted meanwhile (cancelled).
        """
        name = _name(self._job_of(run_id))
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: RunStatus | None = None
        version: str | None = None
        attempt = 0

        def look(found: client.V1Job | None) -> RunStatus:
            nonlocal seen
            if found is None:
                raise NotFoundError(f"job {name!r} was deleted in namespace "
                                    f"{self.namespace!r} while waiting (cancelled?)")
            status = self._status_of(run_id, found)
            if on_change is not None and status != seen:
                on_change(status)
            seen = status
            return status

        while True:
            if version is None:  # (re-)list: the current state and where to watch from
                listed = self._must(lambda: self.batch.list_namespaced_job(
                    self.namespace, field_selector=f"metadata.name={name}"),
                    verb="list", resource="jobs")
                current = next((j for j in listed.items
                                if j.metadata and j.metadata.name == name), None)
                now = look(current)
                if self.check(now):
                    return now
                version = (listed.metadata.resource_version if listed.metadata else None) \
                    or "0"
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ClusterError(f"run {run_id!r} still {seen.phase if seen else 'pending'} "
                                   f"after {timeout:.0f} s; it goes on in the cluster")
            span = int(min(self.watch_timeout, left if left is not None else 1e9)) or 1
            try:
                status, version = self._watch_once(name, version, span, look)
                attempt = 0
                if status is not None:
                    return status
            except ApiException as exc:
                if exc.status == 410:  # too old a resourceVersion: list again
                    version = None
                    continue
                if not _transient(exc) or attempt + 1 >= self.retry.attempts:
                    raise self._error(exc, "watch", "jobs", name,
                                      read=span + self.timeouts.read) from None
                self.retry.sleep(self.retry.delay(attempt, exc))
                attempt += 1
            except Exception as exc:  # a dropped or refused connection
                if not (isinstance(exc, OSError) or type(exc).__module__.startswith("urllib3")):
                    raise
                if attempt + 1 >= self.retry.attempts:
                    raise self._error(exc, "watch", "jobs", name,
                                      read=span + self.timeouts.read) from None
                self.retry.sleep(self.retry.delay(attempt, exc))
                attempt += 1
                version = None

    def _watch_once(self, name: str, version: str, span: int,
                    look: Callable[[client.V1Job | None], RunStatus]
                    ) -> tuple[RunStatus | None, str]:
        """One watch stream: the final status if the run ended, and where it got to."""
        stream = watch.Watch()
        try:
            for event in stream.stream(
                    self.batch.list_namespaced_job, self.namespace,
                    field_selector=f"metadata.name={name}", resource_version=version,
                    allow_watch_bookmarks=True, timeout_seconds=span,
                    _request_timeout=(self.timeouts.connect, span + self.timeouts.read)):
                obj = event["object"]
                meta = getattr(obj, "metadata", None)
                if meta is not None and meta.resource_version:
                    version = meta.resource_version
                if event["type"] == "BOOKMARK" or meta is None or meta.name != name:
                    continue
                status = look(None if event["type"] == "DELETED" else obj)
                if self.check(status):
                    return status, version
        finally:
            stream.stop()
        # the stream ended (timed out or dropped): look at the Job and its pods again
        status = look(self._read_job(name))
        return (status if self.check(status) else None), version

    def check(self, status: RunStatus) -> bool:
        """True once the run succeeded; :class:`RunFailedError` if it failed or cannot start."""
        if status.phase == "succeeded":
            return True
        if status.phase == "failed":
            raise RunFailedError(f"run {status.run_id!r} failed: {status.reason or 'failed'}",
                            status)
        stuck = next((p for p in reversed(status.pods) if p.phase == "Pending" and p.reason),
                     None)
        if stuck is not None:
            raise RunFailedError(f"run {status.run_id!r} cannot start: pod {stuck.name}: "
                            f"{stuck.reason}; the Job stays (runner cancel "
                            f"{status.run_id} deletes it)", status)
        return False

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None,
             pod: str | None = None) -> Iterator[str]:
        """Lines of the run's latest pod (or ``pod``); ``follow`` streams until it ends."""
        if pod is None:
            name = _name(self._job_of(run_id))  # a clear "not found" for an unknown run
            pods = self._pods(name)
            if not pods:
                raise NotFoundError(f"run {run_id!r} has no pod yet in namespace "
                                    f"{self.namespace!r} (runner status {run_id})")
            pod = _name(pods[-1])
        chosen = pod
        if follow:
            self._started(chosen)
        kwargs: dict[str, Any] = {"follow": follow, "_preload_content": False}
        if follow:  # open-ended: a pod may print nothing for hours; a connection, though
            kwargs["_request_timeout"] = self.timeouts.open_ended
        if tail is not None:
            kwargs["tail_lines"] = tail
        response: Any = self._must(lambda: self.core.read_namespaced_pod_log(
            chosen, self.namespace, **kwargs), verb="get", resource="pods/log", name=chosen)
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
            if not (isinstance(exc, OSError) or type(exc).__module__.startswith("urllib3")):
                raise
            raise self._error(exc, "get", "pods/log", chosen) from None
        finally:
            response.release_conn()

    def _started(self, pod: str) -> None:
        """Wait while the pod is Pending (its log cannot be read before it starts)."""
        while True:
            found = self._must(lambda: self.core.read_namespaced_pod(pod, self.namespace),
                               verb="get", resource="pods", name=pod)
            state = self._pod_state(found)
            if state.phase != "Pending":
                return
            if state.reason:
                raise ClusterError(f"pod {pod} cannot start: {state.reason}")
            time.sleep(self.poll)

    def pods(self, run_id: str) -> list[str]:
        """Names of the run's pods, oldest attempt first."""
        return [_name(p) for p in self._pods(_name(self._job_of(run_id)))]

    # ------------------------------------------------------------ cancel

    def cancel(self, run_id: str) -> list[str]:
        """Delete the run's Job (its pods with it: foreground), its RayCluster and its
        ConfigMap."""
        name = _name(self._job_of(run_id))
        deleted = []
        body = client.V1DeleteOptions(propagation_policy="Foreground")
        self._must(lambda: self.batch.delete_namespaced_job(name, self.namespace, body=body),
                   verb="delete", resource="job", name=name)
        deleted.append(f"job/{name}")
        ray = ray_cluster_name(run_id)
        if self._call(lambda: self.custom.delete_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, self.namespace, RAY_PLURAL, ray),
                verb="delete", resource="rayclusters", name=ray,
                ok=frozenset({404})) is not None:
            deleted.append(f"raycluster/{ray}")
        cm = manifest_name(run_id)
        if self._call(lambda: self.core.delete_namespaced_config_map(cm, self.namespace),
                      verb="delete", resource="configmaps", name=cm,
                      ok=frozenset({404})) is not None:
            deleted.append(f"configmap/{cm}")
        return deleted

    def release_ray(self, run_id: str) -> bool:
        """Delete a finished run's RayCluster (it is also deleted with the Job)."""
        ray = ray_cluster_name(run_id)
        return self._call(lambda: self.custom.delete_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, self.namespace, RAY_PLURAL, ray),
            verb="delete", resource="rayclusters", name=ray, ok=frozenset({404})) is not None

    # ------------------------------------------------------------ schedules

    def schedule(self, schedule: Schedule, *,
                 artifact_key: str | None = None) -> tuple[str, bool]:
        """Create the CronJob and its manifest ConfigMap, or update both; returns the
        CronJob's name and whether it was created (False: updated). ``artifact_key``:
        the store's key, in a Secret the CronJob owns (made once; an update keeps it)."""
        body = cron_job(schedule)
        assert body.metadata is not None
        name = str(body.metadata.name)
        cm = config_map(schedule.run)
        cm_name = manifest_name(schedule.run.run_id)
        if self._call(lambda: self.core.create_namespaced_config_map(self.namespace, cm),
                      verb="create", resource="configmaps", name=cm_name,
                      ok=frozenset({409})) is None:
            self._must(lambda: self.core.patch_namespaced_config_map(
                cm_name, self.namespace, cm), verb="patch", resource="configmaps",
                name=cm_name)
        created = self._call(lambda: self.batch.create_namespaced_cron_job(
            self.namespace, body), verb="create", resource="cronjobs", name=name,
            ok=frozenset({409}))
        if created is None:
            created_or_found = self._must(lambda: self.batch.patch_namespaced_cron_job(
                name, self.namespace, body), verb="patch", resource="cronjobs", name=name)
        else:
            created_or_found = created
        key_secret = schedule.run.artifact_key_secret
        if artifact_key is not None and key_secret:
            self._create_secret(secret(schedule.run, name=key_secret,
                                       data={ARTIFACT_KEY_ENV: artifact_key},
                                       component="artifact-key", owner=created_or_found))
        return name, created is not None

    def unschedule(self, name: str) -> list[str]:
        """Delete the CronJob (its running Jobs go on) and its manifest ConfigMap."""
        found = self._must(lambda: self.batch.read_namespaced_cron_job(name, self.namespace),
                           verb="get", resource="cronjob", name=name)
        self._must(lambda: self.batch.delete_namespaced_cron_job(name, self.namespace),
                   verb="delete", resource="cronjob", name=name)
        deleted = [f"cronjob/{name}"]
        pod: Any = _dig(found, "spec", "job_template", "spec", "template", "spec")
        volumes = list(getattr(pod, "volumes", None) or [])
        for cm in [v.config_map.name for v in volumes if v.config_map and v.config_map.name]:
            if self._delete_config_map(cm):
                deleted.append(f"configmap/{cm}")
        return deleted


    def _delete_config_map(self, name: str) -> bool:
        return self._call(lambda: self.core.delete_namespaced_config_map(
            name, self.namespace), verb="delete", resource="configmaps", name=name,
            ok=frozenset({404})) is not None


def _is_dns_label(text: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", text))


def _dig(obj: Any, *path: str) -> Any:
    for attr in path:
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


def _name(obj: Any) -> str:
    return str(_dig(obj, "metadata", "name") or "?")


def _pod_order(pod: client.V1Pod) -> tuple[str, str]:
    return (_when(_dig(pod, "metadata", "creation_timestamp")) or "", _name(pod))


def _container_env(found: client.V1Job) -> dict[str, str]:
    containers: Any = _dig(found, "spec", "template", "spec", "containers") or []
    return {e.name: e.value or "" for c in containers for e in c.env or []}


def _when(value: Any) -> str | None:
    if value is None:
        return None
    iso = getattr(value, "isoformat", None)
    return str(iso()) if callable(iso) else str(value)


_REASONS = {
    "BackoffLimitExceeded": "the pod failed on every attempt (backoffLimit reached)",
    "DeadlineExceeded": "the run took longer than activeDeadlineSeconds and was stopped",
    "OOMKilled": "the pod ran out of memory (OOMKilled): raise its memory limit",
    "Evicted": "the node evicted the pod (it ran short of memory or disk)",
    "ImagePullBackOff": "the image cannot be pulled: check the name, tag and pull secret",
    "ErrImagePull": "the image cannot be pulled: check the name, tag and pull secret",
    "InvalidImageName": "the image name is not valid",
    "CreateContainerConfigError": "the pod's configuration cannot be made: a Secret or "
                                  "ConfigMap it names is missing",
    "Error": "the container exited with an error",
}


def _words(reason: str | None, message: str | None) -> str:
    said = _REASONS.get(reason or "", reason or "failed")
    return f"{said} ({message})" if message else said
