"""A test-side kubelet for real containers: one pod spec -> one ``docker run``.

:func:`translate` is a pure function from a Pod (as :func:`pod_of` makes it from a Job, a
CronJob or a Pod the controller, ``runner submit --dry-run`` or the chart produce) and the
ConfigMaps and Secrets it references to a :class:`ContainerRun`: the ``docker run`` options,
the environment and the files to stage. Nothing runs here; :func:`stage` writes the files::

    pod = pod_of(job)
    run = translate(pod, objects=[config_map, secret], staging=work / "staging",
                    host_paths={"/artifacts": work / "store"})
    stage(run, work / "staging")
    subprocess.run(run.argv("/usr/bin/docker"), env=run.client_env(os.environ))

What it translates, as the kubelet does with a CRI runtime:

* ``runAsUser``/``runAsGroup`` -> ``--user uid[:gid]``; ``fsGroup`` and
  ``supplementalGroups`` -> ``--group-add``; ``runAsNonRoot`` checked (the user must be set
  and not 0); ``readOnlyRootFilesystem`` -> ``--read-only``; ``capabilities`` ->
  ``--cap-drop``/``--cap-add``; ``allowPrivilegeEscalation: false`` ->
  ``--security-opt no-new-privileges``; seccomp and AppArmor ``RuntimeDefault`` -> the
  engine's default profile (``Unconfined`` -> ``unconfined``; seccomp unset is Unconfined,
  as on a kubelet without ``--seccomp-default``).
* ``resources.limits`` memory -> ``--memory`` and ``--memory-swap`` (no swap, as a
  kubelet), cpu -> ``--cpus``; ``requests.cpu`` -> ``--cpu-shares`` (the kubelet's
  milli-CPU x 1024 / 1000); a memory request has no runtime setting.
* ``env`` (values with the kubelet's ``$(VAR)`` expansion, :func:`expand`;
  ``secretKeyRef``/``configMapKeyRef`` from the given objects; ``fieldRef`` metadata.name,
  namespace, uid, labels[...], annotations[...] and spec.serviceAccountName;
  ``resourceFieldRef`` of a set limit or request) and ``envFrom``: passed as ``--env NAME``
  with the value in the docker client's environment (:meth:`ContainerRun.client_env`),
  so no value, secret or not, is ever in an argv.
* volumes: ``emptyDir`` -> ``--tmpfs`` when ``medium: Memory`` or a ``sizeLimit`` is set
  (its size), else a private folder of the pod in the staging folder (0777, group fsGroup,
  as the kubelet makes it); ``configMap``/``secret`` -> files in the staging folder (items,
  keys, ``mode``/``defaultMode``; with fsGroup, group-readable and of that group) mounted
  read-only; ``persistentVolumeClaim`` -> a bind mount of ``claims[claimName]``;
  ``hostPath`` -> a bind mount of ``host_paths[path]``.
* ``command`` -> ``--entrypoint`` + the rest, ``args`` after the image, both with ``$(VAR)``
  expansion; ``workingDir`` -> ``--workdir``; ``terminationGracePeriodSeconds`` ->
  ``--stop-timeout``; the pod name -> ``--hostname``; ``--network none`` always;
  ``--pull never`` (there is no registry: the image must be in the engine).

Fields of the scheduler, the Job controller or the network (nodeSelector, affinity,
tolerations, priorityClassName, serviceAccountName, imagePullSecrets, dnsPolicy, ports,
terminationMessage*) change nothing a container sees without a network and are passed
over. Anything else is refused with :class:`PodRunError` naming the field (hostNetwork,
privileged, initContainers, probes, a service-account token, projected or other volume
types, subPath, ...), never ignored. Not modelled: the cluster's service variables
(``KUBERNETES_SERVICE_HOST``: there is no API server to reach).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.containers.podrun_model import (
    CONFIG_MODE,
    DEFAULT_GRACE,
    ContainerRun,
    PodRunError,
    StagedPath,
    bytes_of,
    cpu_of,
    decode_secret,
    expand,
    stage,
)
from tests.containers.podrun_translation import Translation

__all__ = ["CONFIG_MODE", "DEFAULT_GRACE", "ContainerRun", "PodRunError", "StagedPath",
           "bytes_of", "cpu_of", "decode_secret", "expand", "stage", "translate"]


def translate(pod: Mapping[str, Any], *, objects: Iterable[Mapping[str, Any]] = (),
              staging: Path, claims: Mapping[str, Path] | None = None,
              host_paths: Mapping[str, Path] | None = None,
              name: str | None = None) -> ContainerRun:
    """The ``docker run`` of ``pod`` (a Pod dict: see ``tests.containers.objects.pod_of``).
    ``objects``: the ConfigMaps and Secrets it may reference; ``staging``: the host folder
    :func:`stage` writes to; ``claims``: claimName -> host folder; ``host_paths``: a
    hostPath's path -> host folder. Raises :class:`PodRunError` naming what it cannot run
    as the kubelet would."""
    return Translation(pod, objects, staging, claims or {}, host_paths or {}).run(name)
