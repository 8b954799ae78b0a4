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

The controller is a facade: each verb family is a module of its own (:mod:`.submit`,
:mod:`.follow`, :mod:`.cancel`, :mod:`.schedule`, reading in :mod:`.look`), each call
goes through the one chokepoint :class:`runner.k8s.api.KubeApi`, and the run's state in
words is the pure :mod:`runner.k8s.status`.

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

from collections.abc import Callable, Iterator

from kubernetes import client

from runner.k8s import cancel as cancelling
from runner.k8s import follow as following
from runner.k8s import look
from runner.k8s import schedule as scheduling
from runner.k8s import submit as submitting
from runner.k8s.api import USER_AGENT, KubeApi, Retry
from runner.k8s.builders import RunSpec, Schedule
from runner.k8s.status import PodState, RunFailedError, RunStatus, check, name_of
from runner.k8s.submit import RayWait, Submitted
from runner.k8s.timeouts import Timeouts

__all__ = ["USER_AGENT", "Controller", "PodState", "Retry", "RunFailedError",
           "RunStatus",
           "Submitted"]


class Controller:
    """Talks to one namespace of one cluster with the official client."""

    watch_timeout: int = 30
    """Seconds a watch asks the server to keep its stream (it reconnects after)."""
    ray_timeout: float = 600.0
    """Seconds ``submit`` waits for a parallel run's Ray head to be ready."""
    poll: float = 1.0
    """Seconds between looks where no watch applies (the Ray head, a pod to start)."""
    mount_grace: float = look.MOUNT_GRACE
    """Seconds a pod may wait for a missing ConfigMap, Secret or claim behind one of its
    volumes before ``wait`` calls it stuck (GitOps tools may apply the Job first)."""

    def __init__(self, api: client.ApiClient, namespace: str, *,
                 retry: Retry | None = None) -> None:
        self.kube = KubeApi(api, namespace, retry=retry)
        self.api: client.ApiClient = api
        """The official client every request goes out through."""
        self.namespace: str = self.kube.namespace
        self.core: client.CoreV1Api = self.kube.core
        self.timeouts: Timeouts = self.kube.timeouts

    @classmethod
    def connect(cls, namespace: str | None = None, *, context: str | None = None,
                kubeconfig: str | None = None, retry: Retry | None = None) -> Controller:
        """Configuration as kubectl finds it; the namespace from the flag, the context,
        or the pod's service account, else ``default``."""
        kube = KubeApi.connect(namespace, context=context, kubeconfig=kubeconfig,
                               retry=retry)
        return cls(kube.client, kube.namespace, retry=kube.retry)

    def submit(self, run: RunSpec, *, ray_address: str | None = None,
               artifact_key: str | None = None) -> Submitted:
        """Create the manifest ConfigMap and the Job, or attach to the run's Job.

        ``artifact_key``: the store's key, put in a Secret the Job owns
        (``run.artifact_key_secret`` must name :func:`artifact_key_name`). With
        ``run.ray`` set, the Job also gets a Ray token Secret, a NetworkPolicy and a
        RayCluster, and is let go once the Ray head is ready. ``ray_address`` instead
        points the run at a Ray that already exists.
        """
        return submitting.submit(self.kube, run, ray_address=ray_address,
                             artifact_key=artifact_key,
                             ray_wait=RayWait(timeout=self.ray_timeout, poll=self.poll))

    def status(self, run_id: str) -> RunStatus:
        """The run's phase, pods and reason in words."""
        return look.status_of(self.kube, run_id, look.job_of(self.kube, run_id),
                              mount_grace=self.mount_grace)

    def runs(self) -> list[str]:
        """Run ids of the Jobs this controller made in the namespace."""
        return look.runs(self.kube)

    def pods(self, run_id: str) -> list[str]:
        """Names of the run's pods, oldest attempt first."""
        job = name_of(look.job_of(self.kube, run_id))
        return [name_of(p) for p in look.pods(self.kube, job)]

    def wait(self, run_id: str, *, on_change: Callable[[RunStatus], None] | None = None,
             timeout: float | None = None) -> RunStatus:
        """Follow the run's Job with a watch until it succeeds or fails
        (:func:`runner.k8s.follow.wait`)."""
        return following.wait(self.kube, run_id, on_change=on_change, timeout=timeout,
                           watch_timeout=self.watch_timeout, mount_grace=self.mount_grace)

    @staticmethod
    def check(status: RunStatus) -> bool:
        """True once the run succeeded; :class:`RunFailedError` if it failed or cannot start."""
        return check(status)

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None,
             pod: str | None = None) -> Iterator[str]:
        """Lines of the run's latest pod (or ``pod``); ``follow`` streams until it ends."""
        return following.logs(self.kube, run_id, follow=follow, tail=tail,
                                        pod=pod, poll=self.poll)

    def cancel(self, run_id: str) -> list[str]:
        """Delete the run's Job (its pods with it), its RayCluster and its ConfigMap."""
        return cancelling.cancel(self.kube, run_id)

    def release_ray(self, run_id: str) -> bool:
        """Delete a finished run's RayCluster (it is also deleted with the Job)."""
        return cancelling.release_ray(self.kube, run_id)

    def schedule(self, schedule: Schedule, *,
                 artifact_key: str | None = None) -> tuple[str, bool]:
        """Create or update the CronJob and its manifest ConfigMap; its name and whether
        it was created."""
        return scheduling.schedule(self.kube, schedule, artifact_key=artifact_key)

    def unschedule(self, name: str) -> list[str]:
        """Delete the CronJob (its running Jobs go on) and its manifest ConfigMap."""
        return scheduling.unschedule(self.kube, name)
