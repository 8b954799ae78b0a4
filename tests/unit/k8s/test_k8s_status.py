"""A run's status in words from plain client objects: no server, no emulator."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

client = pytest.importorskip("kubernetes.client", reason="the k8s extra is not installed")

from runner.k8s.status import (  # noqa: E402
    PodState,
    RunFailedError,
    check,
    mount_failure,
    pod_state,
    run_status,
    waiting_to_mount,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def a_job(*, conditions=(), active=0, suspend=False):
    return client.V1Job(
        metadata=client.V1ObjectMeta(name="runner-r1"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(), suspend=suspend),
        status=client.V1JobStatus(active=active, conditions=[
            client.V1JobCondition(type=kind, status="True", reason=reason, message=message)
            for kind, reason, message in conditions]))


def a_pod(name="runner-r1-a", *, phase="Running", waiting=None, terminated=None,
          reason=None, born=NOW):
    state = client.V1ContainerState(
        waiting=client.V1ContainerStateWaiting(reason=waiting, message=None) if waiting else None,
        terminated=client.V1ContainerStateTerminated(exit_code=terminated[0],
                                                     reason=terminated[1])
        if terminated else None)
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, creation_timestamp=born),
        status=client.V1PodStatus(phase=phase, reason=reason, container_statuses=[
            client.V1ContainerStatus(name="run", image="i", image_id="", ready=False,
                                     restart_count=0, state=state)]))


def test_a_complete_job_succeeded():
    status = run_status("r1", a_job(conditions=[("Complete", None, None)]), ())
    assert (status.phase, status.reason, status.job, status.done) == \
        ("succeeded", None, "runner-r1", True)
    assert check(status) is True


def test_a_failed_job_says_why_with_its_last_attempt():
    pods = (pod_state(a_pod(phase="Failed", terminated=(137, "OOMKilled"))),)
    status = run_status("r1", a_job(conditions=[("Failed", "BackoffLimitExceeded", None)]),
                        pods)
    assert status.phase == "failed"
    assert status.reason == ("the pod failed on every attempt (backoffLimit reached); last "
                             "attempt: the pod ran out of memory (OOMKilled): raise its "
                             "memory limit")
    assert pods[0].exit_code == 137
    with pytest.raises(RunFailedError) as failed:
        check(status)
    error = failed.value
    assert (error.run_id, error.phase, error.pod, error.exit_code) == ("r1", "failed", None, 1)
    assert error.reason == status.reason and error.status is status


def test_an_error_exit_says_its_code():
    assert pod_state(a_pod(phase="Failed", terminated=(2, "Error"))) == \
        PodState("runner-r1-a", "Failed", "failed, exit code 2", 2)


def test_a_suspended_job_is_pending_until_what_it_owns_exists():
    status = run_status("r1", a_job(suspend=True), ())
    assert status.phase == "pending"
    assert status.reason is not None and status.reason.startswith("suspended")


@pytest.mark.parametrize(("phases", "expected"), [
    (("Running",), "running"), (("Pending",), "pending"), ((), "running")])
def test_an_active_job_runs_once_a_pod_left_pending(phases, expected):
    pods = tuple(PodState(f"p{i}", phase) for i, phase in enumerate(phases))
    assert run_status("r1", a_job(active=1), pods).phase == expected


def test_a_pod_that_cannot_pull_its_image_is_stuck_and_says_which():
    pods = (pod_state(a_pod(phase="Pending", waiting="ImagePullBackOff")),)
    status = run_status("r1", a_job(active=1), pods)
    assert (status.phase, status.reason) == \
        ("pending", "the image cannot be pulled: check the name, tag and pull secret")
    with pytest.raises(RunFailedError, match=r"^run 'r1' cannot start: pod runner-r1-a: the "
                                        r"image cannot be pulled") as failed:
        check(status)
    assert (failed.value.pod, failed.value.phase) == ("runner-r1-a", "pending")


def test_an_evicted_pod_says_so():
    state = pod_state(a_pod(phase="Failed", reason="Evicted"))
    assert state.reason == "the node evicted the pod (it ran short of memory or disk)"


def test_a_pod_waiting_for_a_volume_is_stuck_only_after_the_grace_and_a_failed_mount():
    pod = a_pod(phase="Pending", waiting="ContainerCreating", born=NOW - timedelta(seconds=90))
    assert waiting_to_mount(pod, now=NOW, grace=120) is None
    assert waiting_to_mount(pod, now=NOW, grace=60) == 90
    assert waiting_to_mount(a_pod(waiting="ContainerCreating"), now=NOW, grace=0) is None
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="e"), reason="FailedMount",
        message='MountVolume.SetUp failed for volume "manifest" : configmap "m" not found',
        involved_object=client.V1ObjectReference(name="runner-r1-a"))
    other = client.CoreV1Event(metadata=client.V1ObjectMeta(name="f"), reason="FailedMount",
                               message="not found",
                               involved_object=client.V1ObjectReference(name="elsewhere"))
    assert mount_failure("runner-r1-a", [other], age=90) is None
    stuck = mount_failure("runner-r1-a", [other, event], age=90)
    assert stuck is not None and stuck.reason is not None
    assert stuck.reason.startswith("a volume cannot be mounted after 90 s (MountVolume")
