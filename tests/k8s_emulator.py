"""A Kubernetes API for the tests: kmock's emulator on 127.0.0.1, and Helm against it.

* :class:`Emulator` -- kmock's ``KubernetesEmulator`` served over real HTTP on 127.0.0.1
  (a free port) from a background thread, with a kubeconfig file pointing at it::

      with Emulator(tmp_path) as k8s:
          k8s.kubeconfig                 # path of a kubeconfig (context "emulator")
          k8s.url                        # http://127.0.0.1:PORT
          k8s.objects                    # kmock's store: {(resource, namespace, name): object}
          k8s.call(some_coroutine())     # run something on the emulator's event loop

* :func:`helm_install` -- the real Helm library (``helm_sdkpy``, Helm's Go code) installs
  a chart into the emulator and returns the :class:`Release`: the rendered ``manifest``,
  the hooks (helm test pods) and the NOTES. ``helm_sdkpy`` has no ``template`` command;
  an install with the in-memory release driver is the way to render. :func:`helm_lint`
  is ``helm lint``.

What kmock 0.8 and helm_sdkpy 0.1.32 do, and what is done about it here:

* kmock's core discovery (``GET /api/v1``) answers ``"groupVersion": "/v1"``; client-go
  then knows no core kind (``no matches for kind "ConfigMap" in version "v1"``), so the
  emulator here answers ``"v1"``.
* kmock knows the built-in resources only once its bundled list is loaded (a K3s list,
  without CRDs; ``resources.load_bundled()`` warns of a deprecated importlib call, an
  error under ``filterwarnings = error``, so the file is read here); ``ray.io/v1``
  RayClusters are declared here.
* kmock reports Kubernetes v1.26.4 from ``/version``; Helm checks a chart's
  ``kubeVersion`` against it, so the version is a parameter here.
* kmock stores objects as they are posted: no uid, resourceVersion, creationTimestamp,
  nor a namespace taken from the URL. Objects created here get all four.
* Left as kmock does it (see the issue): label selectors ignored on list and watch, PUT
  answering 404, watches ignoring ``timeoutSeconds``, no controllers of any kind.
* helm_sdkpy's Go runtime reads its environment once, when the process starts:
  ``HELM_DRIVER=memory`` set later from Python is not seen, and Helm's default driver
  stores releases in Secrets as protobuf, which kmock cannot decode. So every install runs
  in a child Python started with ``HELM_DRIVER=memory`` (and Helm's config, cache and data
  homes in a scratch folder). That also keeps Go's threads out of the test process.
* kmock registers a pytest plugin that imports ``pytest_asyncio``, which kmock does not
  depend on: without pytest-asyncio every pytest run fails at start-up, and with it
  ``asyncio_default_fixture_loop_scope`` must be set (its warning is an error here).
  ``-p no:kmock`` turns the plugin off instead; nothing here uses it.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import importlib.resources
import json
import os
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

T = TypeVar("T")

RAYCLUSTERS = "ray.io/v1/rayclusters"
DEFAULT_VERSION = "1.33.0"


class HelmError(RuntimeError):
    """Helm refused or failed the install; the message is Helm's own."""


def _emulator_class() -> type:
    """kmock's KubernetesEmulator with the fixes listed in the module docstring."""
    import kmock

    class FixedEmulator(kmock.KubernetesEmulator):
        server_version: str = DEFAULT_VERSION
        _resource_version: int = 0

        async def _serve_version(self, request: Any) -> Any:
            doc = cast("dict[str, Any]", await super()._serve_version(request))
            if request.resource is not None and request.resource.group == "":
                doc["groupVersion"] = request.resource.version  # "v1", not "/v1"
            return doc

        async def _serve_server_version(self, request: Any) -> Any:
            doc = cast("dict[str, Any]", await super()._serve_server_version(request))
            major, minor, *_ = self.server_version.split(".")
            doc.update(major=major, minor=minor, gitVersion=f"v{self.server_version}")
            return doc

        async def _handle(self, request: Any) -> Any:
            if request.resource is not None and isinstance(request.data, dict):
                if request.action == kmock.action.CREATE:
                    self._fill_metadata(request)
                elif request.action == kmock.action.UPDATE:
                    self._resource_version += 1
                    request.data.setdefault("metadata", {})["resourceVersion"] = str(
                        self._resource_version)
            return await super()._handle(request)

        def _fill_metadata(self, request: Any) -> None:
            meta = request.data.setdefault("metadata", {})
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            self._resource_version += 1
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["resourceVersion"] = str(self._resource_version)
            now = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)
            meta.setdefault("creationTimestamp", now.isoformat().replace("+00:00", "Z"))

    FixedEmulator.__name__ = "KubernetesEmulator"
    return FixedEmulator


class Emulator:
    """kmock's KubernetesEmulator on 127.0.0.1 in a background thread, plus a kubeconfig."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, *,
                 version: str = DEFAULT_VERSION, namespace: str = "default") -> None:
        self.version = version
        self.namespace = namespace
        self._folder = Path(folder) if folder is not None else None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.handler: Any = None
        self.port = 0
        self.kubeconfig = Path()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def objects(self) -> Any:
        """kmock's object store, keyed by (resource, namespace, name)."""
        return self.handler.objects

    def __enter__(self) -> Emulator:
        if self._folder is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="k8s-emulator-")
            self._folder = Path(self._scratch.name)
        self._thread = threading.Thread(target=self._serve, name="k8s-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the Kubernetes emulator did not start within 30 s")
        if self._error is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._error
        self.kubeconfig = self._folder / "kubeconfig.yaml"
        self.kubeconfig.write_text(kubeconfig_text(self.url, namespace=self.namespace))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)
        if self._scratch is not None:
            self._scratch.cleanup()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the emulator's event loop (e.g. to feed a watch stream)."""
        assert self._loop is not None, "the emulator is not running"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to __enter__ if it happens before ready
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        import kmock

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        handler = _emulator_class()()
        handler.server_version = self.version
        # = resources.load_bundled(), without its deprecated importlib.resources.read_binary
        bundled = importlib.resources.files("kmock._internal") / "resources.json.gz"
        handler.resources.load_data(gzip.decompress(bundled.read_bytes()))
        handler.resources[RAYCLUSTERS] = kmock.ResourceInfo(
            kind="RayCluster", singular="raycluster", namespaced=True,
            verbs={"create", "get", "list", "watch", "update", "patch", "delete"},
            subresources={"status"})
        async with handler, kmock.Server(handler, host="127.0.0.1") as server:
            self.handler = handler
            self.port = server.port
            self._ready.set()
            await self._stop.wait()


def kubeconfig_text(server: str, *, namespace: str = "default") -> str:
    """A kubeconfig (JSON, which is YAML) with one context, "emulator", for ``server``."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {"token": "emulator"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                      "namespace": namespace}}],
        "current-context": "emulator",
    }, indent=2)


@dataclass(frozen=True)
class Release:
    """What Helm returned for an install: the rendered manifest, hooks and notes."""

    name: str
    namespace: str
    manifest: str
    notes: str
    hooks: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def manifest_objects(self) -> list[dict[str, Any]]:
        """The release's objects (hooks excluded), parsed."""
        return _documents(self.manifest)

    def hook_objects(self) -> list[dict[str, Any]]:
        return [doc for hook in self.hooks for doc in _documents(hook.get("manifest", ""))]

    def objects(self) -> list[dict[str, Any]]:
        """Every object Helm rendered: the manifest's, then the hooks'."""
        return self.manifest_objects() + self.hook_objects()


def _documents(text: str) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


_CHILD = """
import asyncio, json, sys
import helm_sdkpy

req = json.load(sys.stdin)
try:
    config = helm_sdkpy.Configuration(namespace=req["namespace"], kubeconfig=req["kubeconfig"])
    if req["action"] == "lint":
        answer = asyncio.run(helm_sdkpy.Lint(config).run(req["chart"]))
    else:
        answer = asyncio.run(helm_sdkpy.Install(config).run(
            req["release"], req["chart"], values=req["values"], wait=False,
            timeout=req["timeout"]))
except helm_sdkpy.HelmError as exc:
    json.dump({"error": str(exc)}, sys.stdout)
else:
    json.dump({"answer": answer}, sys.stdout)
"""


def _helm(action: str, chart: str | os.PathLike[str], emulator: Emulator, *, timeout: int,
          **request: Any) -> Any:
    """Run one helm_sdkpy action in a child Python whose environment Helm can see."""
    with tempfile.TemporaryDirectory(prefix="helm-home-") as home:
        env = {**os.environ, "HELM_DRIVER": "memory", "GOMAXPROCS": "1",
               "HELM_CONFIG_HOME": f"{home}/config", "HELM_CACHE_HOME": f"{home}/cache",
               "HELM_DATA_HOME": f"{home}/data", "KUBECONFIG": str(emulator.kubeconfig)}
        request |= {"action": action, "chart": str(Path(chart).resolve()),
                    "kubeconfig": str(emulator.kubeconfig), "timeout": timeout}
        request.setdefault("namespace", emulator.namespace)
        proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(request),
                              capture_output=True, text=True, env=env, timeout=timeout + 60,
                              check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise HelmError(f"the helm child process failed (exit {proc.returncode}): "
                        f"{proc.stderr.strip()[-2000:]}")
    answer = json.loads(proc.stdout)
    if "error" in answer:
        raise HelmError(answer["error"])
    return answer["answer"]


def helm_install(chart: str | os.PathLike[str], emulator: Emulator, *, release: str = "runner",
                 namespace: str | None = None, values: dict[str, Any] | None = None,
                 timeout: int = 60) -> Release:
    """``helm install RELEASE CHART -n NAMESPACE`` (values as with ``-f``) into the emulator.

    Raises :class:`HelmError` with Helm's message when Helm refuses (schema, kubeVersion,
    template ``fail``) or the API server does.
    """
    namespace = namespace or emulator.namespace
    raw = _helm("install", chart, emulator, timeout=timeout, release=release,
                namespace=namespace, values=values or {})
    return Release(name=raw["name"], namespace=raw.get("namespace", namespace),
                   manifest=raw.get("manifest", ""), notes=raw.get("info", {}).get("notes", ""),
                   hooks=list(raw.get("hooks") or []), raw=raw)


LINT_SEVERITIES = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def helm_lint(chart: str | os.PathLike[str], emulator: Emulator, *,
              timeout: int = 60) -> list[tuple[str, str]]:
    """``helm lint CHART`` (default values): (severity, path) of each message.

    helm_sdkpy 0.1.32 serialises each message's Go error as ``{}``: only the severity and
    the file are known.
    """
    result = _helm("lint", chart, emulator, timeout=timeout)
    return [(LINT_SEVERITIES.get(m.get("Severity"), str(m.get("Severity"))), m.get("Path", ""))
            for m in result.get("Messages") or []] + \
        [("ERROR", str(e)) for e in result.get("Errors") or []]
