"""Scheduling a pipeline: ``schedule`` creates or updates its CronJob and manifest
ConfigMap, ``unschedule`` deletes them (the runs already started go on)."""

from __future__ import annotations

from typing import Any

from runner.k8s.api import KubeApi
from runner.k8s.builders import (
    ARTIFACT_KEY_ENV,
    Schedule,
    config_map,
    cron_job,
    manifest_name,
    secret,
)
from runner.k8s.cancel import delete_config_map
from runner.k8s.status import dig
from runner.k8s.submit import create_secret

__all__ = ["schedule", "unschedule"]


def schedule(api: KubeApi, plan: Schedule, *,
             artifact_key: str | None = None) -> tuple[str, bool]:
    """Create the CronJob and its manifest ConfigMap, or update both; returns the
    CronJob's name and whether it was created (False: updated). ``artifact_key``: the
    store's key, in a Secret the CronJob owns (made once; an update keeps it)."""
    body = cron_job(plan)
    assert body.metadata is not None
    name = str(body.metadata.name)
    cm = config_map(plan.run)
    cm_name = manifest_name(plan.run.run_id)
    if api.call(lambda: api.core.create_namespaced_config_map(api.namespace, cm),
                verb="create", resource="configmaps", name=cm_name,
                ok=frozenset({409})) is None:
        api.must(lambda: api.core.patch_namespaced_config_map(cm_name, api.namespace, cm),
                 verb="patch", resource="configmaps", name=cm_name)
    created = api.call(lambda: api.batch.create_namespaced_cron_job(api.namespace, body),
                       verb="create", resource="cronjobs", name=name, ok=frozenset({409}))
    owner = created if created is not None else api.must(
        lambda: api.batch.patch_namespaced_cron_job(name, api.namespace, body),
        verb="patch", resource="cronjobs", name=name)
    key_secret = plan.run.artifact_key_secret
    if artifact_key is not None and key_secret:
        create_secret(api, secret(plan.run, name=key_secret,
                                  data={ARTIFACT_KEY_ENV: artifact_key},
                                  component="artifact-key", owner=owner))
    return name, created is not None


def unschedule(api: KubeApi, name: str) -> list[str]:
    """Delete the CronJob (its running Jobs go on) and its manifest ConfigMap; the
    objects deleted, as ``kind/name``."""
    found = api.must(lambda: api.batch.read_namespaced_cron_job(name, api.namespace),
                     verb="get", resource="cronjob", name=name)
    api.must(lambda: api.batch.delete_namespaced_cron_job(name, api.namespace),
             verb="delete", resource="cronjob", name=name)
    deleted = [f"cronjob/{name}"]
    pod: Any = dig(found, "spec", "job_template", "spec", "template", "spec")
    volumes = list(getattr(pod, "volumes", None) or [])
    for cm in [v.config_map.name for v in volumes if v.config_map and v.config_map.name]:
        if delete_config_map(api, cm):
            deleted.append(f"configmap/{cm}")
    return deleted
