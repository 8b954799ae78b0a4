"""The translation of one pod into a ``docker run``, field by field (see
``tests.containers.podrun`` for what it maps to what and what it refuses)."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
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
    refuse_unknown,
)

POD_PASSED_OVER = {"serviceAccountName", "serviceAccount", "nodeSelector", "affinity",
                   "tolerations", "priorityClassName", "priority", "preemptionPolicy",
                   "schedulerName", "topologySpreadConstraints", "imagePullSecrets",
                   "dnsPolicy", "nodeName"}
POD_HANDLED = {"containers", "volumes", "securityContext", "terminationGracePeriodSeconds",
               "restartPolicy", "automountServiceAccountToken", "enableServiceLinks",
               "hostname"}
CONTAINER_PASSED_OVER = {"ports", "terminationMessagePath", "terminationMessagePolicy",
                         "imagePullPolicy"}
CONTAINER_HANDLED = {"name", "image", "command", "args", "workingDir", "env", "envFrom",
                     "resources", "securityContext", "volumeMounts"}
POD_SECURITY = {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups",
                "seccompProfile", "appArmorProfile", "fsGroupChangePolicy"}
CONTAINER_SECURITY = {"runAsUser", "runAsGroup", "runAsNonRoot", "readOnlyRootFilesystem",
                      "allowPrivilegeEscalation", "privileged", "capabilities",
                      "seccompProfile", "appArmorProfile", "procMount"}
MOUNT_KEYS = {"name", "mountPath", "readOnly"}
VOLUME_KINDS = ("emptyDir", "configMap", "secret", "persistentVolumeClaim", "hostPath")
FIELD_PATHS = {"metadata.name", "metadata.namespace", "metadata.uid",
               "spec.serviceAccountName"}



class Translation:
    """One pod's translation: :meth:`run` makes its :class:`ContainerRun`."""

    def __init__(self, pod: Mapping[str, Any], objects: Iterable[Mapping[str, Any]],
                 staging: Path, claims: Mapping[str, Path],
                 host_paths: Mapping[str, Path]) -> None:
        meta = pod.get("metadata") or {}
        self.pod_name = str(meta.get("name") or "")
        self.namespace = str(meta.get("namespace") or "default")
        self.meta = meta
        self.spec: Mapping[str, Any] = pod.get("spec") or {}
        self.staging, self.claims, self.host_paths = staging, claims, host_paths
        self.objects: dict[tuple[str, str], dict[str, str]] = {}
        for obj in objects:
            om = obj.get("metadata") or {}
            if obj.get("kind") not in ("ConfigMap", "Secret") or \
                    (om.get("namespace") or self.namespace) != self.namespace:
                continue
            data = decode_secret(obj) if obj["kind"] == "Secret" else {
                **(obj.get("data") or {}),
                **{k: base64.b64decode(v).decode("utf-8", "surrogateescape")
                   for k, v in (obj.get("binaryData") or {}).items()}}
            self.objects[(obj["kind"], om["name"])] = data
        self.options: list[str] = []
        self.staged: list[StagedPath] = []

    # -- the pod

    def run(self, name: str | None) -> ContainerRun:
        spec, where = self.spec, "spec"
        if not self.pod_name:
            raise PodRunError("metadata.name: the pod has no name")
        refuse_unknown(spec, POD_HANDLED | POD_PASSED_OVER, where)
        if spec.get("automountServiceAccountToken") is not False:
            raise PodRunError("spec.automountServiceAccountToken: not false, so the kubelet "
                              "would mount a projected service-account token; podrun has none")
        if spec.get("enableServiceLinks") is not False:
            raise PodRunError("spec.enableServiceLinks: not false, so the kubelet would add "
                              "the namespace's Services as variables; podrun knows none")
        if spec.get("restartPolicy") != "Never":
            raise PodRunError(f"spec.restartPolicy: {spec.get('restartPolicy')!r}; podrun "
                              "runs a container once (Never), retries are the Job's")
        containers = spec.get("containers") or []
        if len(containers) != 1:
            raise PodRunError(f"spec.containers: {len(containers)} containers; podrun runs "
                              "exactly one")
        container = containers[0]
        refuse_unknown(container, CONTAINER_HANDLED | CONTAINER_PASSED_OVER,
                        "spec.containers[0]")
        grace = int(spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        hostname = spec.get("hostname") or self.pod_name
        self.options += ["--name", name or self.pod_name, "--hostname", hostname[:63],
                         "--network", "none", "--pull", "never", "--stop-timeout", str(grace),
                         "--label", f"io.kubernetes.pod.name={self.pod_name}",
                         "--label", f"io.kubernetes.pod.namespace={self.namespace}"]
        self._security(container)
        self._resources(container)
        env = self._env(container)
        for key in env:
            self.options += ["--env", key]
        self._volumes(container)
        command = self._command(container, env)
        if not container.get("image"):
            raise PodRunError("spec.containers[0].image: not set")
        return ContainerRun(name=name or self.pod_name, image=str(container["image"]),
                            options=tuple(self.options), command=tuple(command), env=env,
                            staged=tuple(self.staged), stop_timeout=grace)

    def _security(self, container: Mapping[str, Any]) -> None:
        where = "spec.containers[0]"
        pod_sc = self.spec.get("securityContext") or {}
        sc = container.get("securityContext") or {}
        refuse_unknown(pod_sc, POD_SECURITY, "spec.securityContext")
        refuse_unknown(sc, CONTAINER_SECURITY, f"{where}.securityContext")
        merged = {**{k: v for k, v in pod_sc.items() if v is not None},
                  **{k: v for k, v in sc.items() if v is not None}}
        uid, gid = merged.get("runAsUser"), merged.get("runAsGroup")
        if merged.get("runAsNonRoot") and (uid is None or int(uid) == 0):
            raise PodRunError(f"{where}.securityContext.runAsNonRoot: the user is "
                              + ("root" if uid is not None else "the image's, which podrun "
                                 "does not read; set runAsUser"))
        if uid is not None:
            self.options += ["--user", f"{int(uid)}" + (f":{int(gid)}" if gid is not None
                                                         else "")]
        elif gid is not None:
            raise PodRunError(f"{where}.securityContext.runAsGroup: without runAsUser")
        groups = ([pod_sc["fsGroup"]] if pod_sc.get("fsGroup") is not None else []) + \
            list(pod_sc.get("supplementalGroups") or [])
        for group in dict.fromkeys(int(g) for g in groups):
            self.options += ["--group-add", str(group)]
        if sc.get("privileged"):
            raise PodRunError(f"{where}.securityContext.privileged: a privileged container")
        if sc.get("procMount") not in (None, "Default"):
            raise PodRunError(f"{where}.securityContext.procMount: {sc['procMount']!r}")
        if sc.get("readOnlyRootFilesystem"):
            self.options.append("--read-only")
        caps = sc.get("capabilities") or {}
        refuse_unknown(caps, {"add", "drop"}, f"{where}.securityContext.capabilities")
        for cap in caps.get("drop") or []:
            self.options += ["--cap-drop", str(cap)]
        for cap in caps.get("add") or []:
            self.options += ["--cap-add", str(cap)]
        if sc.get("allowPrivilegeEscalation") is False:
            self.options += ["--security-opt", "no-new-privileges"]
        self._profile("seccomp", merged.get("seccompProfile"), unset="unconfined")
        self._profile("apparmor", merged.get("appArmorProfile"), unset=None)

    def _profile(self, kind: str, profile: Mapping[str, Any] | None,
                 unset: str | None) -> None:
        kind_of = (profile or {}).get("type")
        if kind_of is None and unset is not None:
            self.options += ["--security-opt", f"{kind}={unset}"]
        elif kind_of == "Unconfined":
            self.options += ["--security-opt", f"{kind}=unconfined"]
        elif kind_of not in (None, "RuntimeDefault"):
            raise PodRunError(f"securityContext.{kind}Profile: type {kind_of!r} (a profile "
                              "on the node) is not supported")

    def _resources(self, container: Mapping[str, Any]) -> None:
        res = container.get("resources") or {}
        where = "spec.containers[0].resources"
        refuse_unknown(res, {"limits", "requests"}, where)
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        for section, values in (("limits", limits), ("requests", requests)):
            for key in values:
                if key not in ("cpu", "memory"):
                    raise PodRunError(f"{where}.{section}.{key}: not supported by podrun")
        if "memory" in limits:
            memory = str(bytes_of(limits["memory"]))
            self.options += ["--memory", memory, "--memory-swap", memory]
        if "cpu" in limits:
            self.options += ["--cpus", f"{cpu_of(limits['cpu']).normalize():f}"]
        if "cpu" in requests:  # the kubelet's MilliCPUToShares
            shares = max(2, int(cpu_of(requests["cpu"]) * 1000) * 1024 // 1000)
            self.options += ["--cpu-shares", str(shares)]

    # -- the environment

    def _source(self, kind: str, name: str, optional: bool, where: str) -> dict[str, str] | None:
        found = self.objects.get((kind, name))
        if found is None and not optional:
            raise PodRunError(f"{where}: {kind} {self.namespace}/{name} not given (the "
                              "kubelet would keep the pod waiting)")
        return found

    def _env(self, container: Mapping[str, Any]) -> dict[str, str]:
        """envFrom first, then env, each value expanded over the ones before it."""
        where = "spec.containers[0]"
        env: dict[str, str] = {}
        for i, source in enumerate(container.get("envFrom") or []):
            refuse_unknown(source, {"configMapRef", "secretRef", "prefix"},
                            f"{where}.envFrom[{i}]")
            for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = source.get(key)
                if ref:
                    data = self._source(kind, ref["name"], bool(ref.get("optional")),
                                        f"{where}.envFrom[{i}].{key}")
                    env.update({f"{source.get('prefix') or ''}{k}": v
                                for k, v in (data or {}).items()})
        for i, var in enumerate(container.get("env") or []):
            here = f"{where}.env[{i}] ({var.get('name')})"
            value = self._value(var, env, container, here)
            if value is not None:
                env[var["name"]] = value
        for key, value in env.items():
            if "=" in key or not key or key.startswith("DOCKER_"):
                raise PodRunError(f"{where}: variable name {key!r} cannot go through the "
                                  "docker client")
            if "\0" in value:
                raise PodRunError(f"{where}: variable {key} holds a NUL byte")
        return env

    def _value(self, var: Mapping[str, Any], env: Mapping[str, str],
               container: Mapping[str, Any], where: str) -> str | None:
        source = var.get("valueFrom")
        if source is None:
            return expand(str(var.get("value") or ""), env)
        refuse_unknown(source, {"fieldRef", "secretKeyRef", "configMapKeyRef",
                                 "resourceFieldRef"}, f"{where}.valueFrom")
        if "fieldRef" in source:
            return self._field(source["fieldRef"]["fieldPath"], where)
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
            ref = source.get("secretKeyRef") or source["configMapKeyRef"]
            data = self._source(kind, ref["name"], bool(ref.get("optional")), where)
            if data is not None and ref["key"] not in data and not ref.get("optional"):
                raise PodRunError(f"{where}: no key {ref['key']} in {kind} "
                                  f"{self.namespace}/{ref['name']}")
            return None if data is None else data.get(ref["key"])
        ref = source["resourceFieldRef"]
        section, _, what = str(ref["resource"]).partition(".")
        raw = ((container.get("resources") or {}).get(section) or {}).get(what)
        if raw is None:
            raise PodRunError(f"{where}: resourceFieldRef {ref['resource']} is not set (the "
                              "kubelet would use the node's allocatable)")
        return str(math.ceil(cpu_of(raw) / cpu_of(ref.get("divisor") or "1")))

    def _field(self, path: str, where: str) -> str:
        labels = self.meta.get("labels") or {}
        annotations = self.meta.get("annotations") or {}
        for prefix, values in (("metadata.labels['", labels),
                               ("metadata.annotations['", annotations)):
            if path.startswith(prefix) and path.endswith("']"):
                return str(values.get(path[len(prefix):-2], ""))
        fields = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace,
                  "metadata.uid": str(self.meta.get("uid") or ""),
                  "spec.serviceAccountName": str(self.spec.get("serviceAccountName")
                                                 or "default")}
        if path not in fields:
            raise PodRunError(f"{where}: fieldRef {path} is not supported by podrun")
        return fields[path]

    # -- volumes and the command

    def _volumes(self, container: Mapping[str, Any]) -> None:
        volumes = {}
        for i, volume in enumerate(self.spec.get("volumes") or []):
            where = f"spec.volumes[{i}] ({volume.get('name')})"
            kinds = [k for k in volume if k != "name"]
            if len(kinds) != 1 or kinds[0] not in VOLUME_KINDS:
                raise PodRunError(f"{where}: volume type {', '.join(kinds) or 'none'} is not "
                                  "supported by podrun")
            volumes[volume["name"]] = self._volume(volume["name"], kinds[0],
                                                   volume[kinds[0]] or {}, where)
        for i, mount in enumerate(container.get("volumeMounts") or []):
            where = f"spec.containers[0].volumeMounts[{i}]"
            refuse_unknown({k: v for k, v in mount.items() if not (
                k == "mountPropagation" and v == "None")}, MOUNT_KEYS, where)
            if mount["name"] not in volumes:
                raise PodRunError(f"{where}: no volume named {mount['name']!r}")
            kind, source, read_only = volumes[mount["name"]]
            target = str(mount["mountPath"])
            if not target.startswith("/") or "," in target:
                raise PodRunError(f"{where}.mountPath: {target!r} must be absolute, no ','")
            if kind == "tmpfs":
                self.options += ["--tmpfs", f"{target}:{source}"]
                continue
            read_only = read_only or bool(mount.get("readOnly"))
            self.options += ["--mount", f"type=bind,src={source},dst={target}"
                             + (",readonly" if read_only else "")]

    def _volume(self, name: str, kind: str, source: Mapping[str, Any],
                where: str) -> tuple[str, str, bool]:
        """(tmpfs or bind, its options or host folder, read-only) of one volume."""
        fs_group = (self.spec.get("securityContext") or {}).get("fsGroup")
        folder = f"volumes/{name}"
        if kind == "emptyDir":
            refuse_unknown(source, {"medium", "sizeLimit"}, f"{where}.emptyDir")
            if source.get("medium") not in (None, "", "Memory"):
                raise PodRunError(f"{where}.emptyDir.medium: {source['medium']!r}")
            if source.get("medium") == "Memory" or source.get("sizeLimit"):
                size = f",size={bytes_of(source['sizeLimit'])}" if source.get("sizeLimit") \
                    else ""
                return "tmpfs", f"rw,exec,nosuid,nodev,mode=0777{size}", False
            mode = 0o2777 if fs_group is not None else 0o777
            self.staged.append(StagedPath(folder, None, mode, fs_group))
            return "bind", str(self.staging / folder), False
        if kind in ("configMap", "secret"):
            return "bind", self._files(name, kind, source, fs_group, where), True
        if kind == "persistentVolumeClaim":
            refuse_unknown(source, {"claimName", "readOnly"}, f"{where}.{kind}")
            claim = str(source.get("claimName"))
            if claim not in self.claims:
                raise PodRunError(f"{where}: persistentVolumeClaim {claim!r} has no host "
                                  "folder given (claims)")
            return "bind", str(self.claims[claim]), bool(source.get("readOnly"))
        refuse_unknown(source, {"path", "type"}, f"{where}.{kind}")
        path = str(source.get("path"))
        if path not in self.host_paths:
            raise PodRunError(f"{where}: hostPath {path!r} is not one of the host folders "
                              "given (host_paths)")
        return "bind", str(self.host_paths[path]), False

    def _files(self, name: str, kind: str, source: Mapping[str, Any], fs_group: int | None,
               where: str) -> str:
        title = "ConfigMap" if kind == "configMap" else "Secret"
        ref = source.get("name") if kind == "configMap" else source.get("secretName")
        refuse_unknown(source, {"name", "secretName", "items", "defaultMode", "optional"},
                        f"{where}.{kind}")
        data = self._source(title, str(ref), bool(source.get("optional")), where) or {}
        default = int(source.get("defaultMode", CONFIG_MODE))
        folder = f"volumes/{name}"
        self.staged.append(StagedPath(folder, None, 0o755 if fs_group is None else 0o2755,
                                      fs_group))
        items = source.get("items") or [{"key": k, "path": k} for k in sorted(data)]
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise PodRunError(f"{where}: no key {item['key']} in {title} "
                                  f"{self.namespace}/{ref}")
            rel = PurePosixPath(str(item["path"]))
            if rel.is_absolute() or ".." in rel.parts or not rel.parts:
                raise PodRunError(f"{where}: item path {item['path']!r} must be relative, "
                                  "without '..'")
            mode = int(item.get("mode", default))
            if fs_group is not None:  # the kubelet's SetVolumeOwnership (read-only)
                mode |= 0o440
            for parent in list(reversed(rel.parents))[1:]:
                self.staged.append(StagedPath(f"{folder}/{parent}", None, 0o755, fs_group))
            self.staged.append(StagedPath(
                f"{folder}/{rel}", data[item["key"]].encode("utf-8", "surrogateescape"),
                mode, fs_group))
        return str(self.staging / folder)

    def _command(self, container: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
        """command -> --entrypoint and the rest; args after it; both expanded."""
        command = [expand(str(a), env) for a in container.get("command") or []]
        args = [expand(str(a), env) for a in container.get("args") or []]
        working = container.get("workingDir")
        if working:
            if not str(working).startswith("/"):
                raise PodRunError(f"spec.containers[0].workingDir: {working!r} is not "
                                  "absolute")
            self.options += ["--workdir", str(working)]
        if command:
            if not command[0]:
                raise PodRunError("spec.containers[0].command: an empty program")
            self.options += ["--entrypoint", command[0]]
            return command[1:] + args
        return args
