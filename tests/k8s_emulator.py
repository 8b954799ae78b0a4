"""A Kubernetes API for the tests: kmock's emulator on 127.0.0.1, and Helm against it.

* :class:`Emulator` -- kmock's ``KubernetesEmulator`` served over real HTTP on 127.0.0.1
  (a free port) from a background thread, with a kubeconfig file pointing at it::

      with Emulator(tmp_path) as k8s:
          k8s.kubeconfig                 # path of a kubeconfig (context "emulator")
          k8s.url                        # http://127.0.0.1:PORT
          k8s.objects                    # kmock's store: {(resource, namespace, name): object}
          k8s.call(some_coroutine())     # run something on the emulator's event loop
          k8s.requests                   # [(method, path, query)] the clients under test sent
          k8s.accesses                   # {(verb, group, resource, subresource)} the
                                         #  controller used (also in SESSION_ACCESSES)
          k8s.requests_to("GET", r"/jobs")          # the same, filtered
          k8s.fail_next("POST", r"/jobs$", 409)     # the next matching request fails, once
          k8s.gone_next_watch(r"/jobs")  # the next watch gets 410 Gone (in-stream ERROR)
          k8s.drop_next_watch(r"/jobs")  # the next watch ends after its initial events
          k8s.stall_next("GET", r"/jobs/", 3)       # the next match is answered 3 s late
          k8s.clear_faults()             # forget the faults not yet spent
          k8s.pod_logs[(ns, pod)] = PodLog(path, done)   # what GET .../pods/NAME/log serves

  Pods do not run here: tests/k8s_kubelet.py is a Job controller and kubelet (and a tiny
  KubeRay operator) that runs a Job's container as a local process and writes pod logs.

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
* kmock's list answers ``resourceVersion: "..."`` and ignores selectors; its watch ignores
  ``resourceVersion``, ``timeoutSeconds`` and selectors, replays every object as ADDED, and
  can miss an event made between its snapshot and its subscription. List and watch are
  served here instead: a list carries the current resourceVersion, sorted by namespace
  and name; a watch from resourceVersion N sends only what changed after N (objects
  changed since as ADDED; kmock keeps no event log), ends after ``timeoutSeconds``, and
  subscribes before it takes its snapshot. Label selectors (``=``, ``==``, ``!=``, ``in``,
  ``notin``, ``key``, ``!key``) and field selectors (``=``, ``==``, ``!=`` on any dotted
  field, e.g. ``metadata.name``) filter both. A deletion gets a resourceVersion of its own.
  An object that stops matching a selector is not sent as DELETED.
* kmock answers ``GET .../pods/NAME/log`` with the Pod object. Logs are served here from
  the file a kubelet registers in ``pod_logs``: plain text, ``follow=true`` streaming until
  the process ends, ``tailLines``, ``limitBytes``; 404 for an unknown pod, 400 "is waiting
  to start" while none is registered and the pod is Pending (``timestamps``,
  ``sinceSeconds``/``sinceTime`` are ignored).
* Fault injection (``fail_next``, ``gone_next_watch``, ``drop_next_watch``, ``stall_next``)
  is checked
  before kmock's ``_handle``: kmock's own reactions (``kmock['post /path'] << 409``) do not
  fit, because kmock changes its store before it looks at reactions (a "failed" create
  would still create). ``commit=True`` asks for exactly that: the change is made, the
  client gets the error.
* Requests whose User-Agent starts with :data:`INTERNAL_AGENT` (the test kubelet's) are
  cluster-internal: neither recorded in ``requests`` nor hit by injected faults.
* Requests whose User-Agent starts with :data:`CONTROLLER_AGENT` (the project's
  controller, from the CLI in a subprocess or from Python) are also recorded as an RBAC
  :class:`Access` -- (verb, API group, resource, subresource), as the API server's
  authorizer sees them -- in ``accesses`` and in the session-wide
  :data:`SESSION_ACCESSES`, which the chart's Role is checked against.
* Left as kmock does it (see the issue): PUT answering 404, PATCH merging dicts and
  replacing lists whatever the patch type (no strategic merge, no resourceVersion
  precondition), no controllers of any kind (see tests/k8s_kubelet.py), no garbage
  collection of dependents.
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
import contextlib
import datetime
import gzip
import http
import importlib.resources
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, TypeVar, cast

T = TypeVar("T")

RAYCLUSTERS = "ray.io/v1/rayclusters"
DEFAULT_VERSION = "1.33.0"
INTERNAL_AGENT = "kubelet-emulator"
"""User-Agent prefix of cluster-internal clients (the test kubelet): not recorded, no faults."""


CONTROLLER_AGENT = "runner-controller/"
"""User-Agent prefix of the project's controller (runner.k8s.controller.USER_AGENT)."""


class Access(NamedTuple):
    """What RBAC authorizes for one request: ``("patch", "batch", "jobs", "")``."""

    verb: str
    group: str
    resource: str
    subresource: str = ""


SESSION_ACCESSES: set[Access] = set()
"""Every access the controller made, across every emulator of the test session."""


class Recorded(NamedTuple):
    """One request a client under test sent: ``(method, path, query)``."""

    method: str
    path: str
    query: dict[str, str]


@dataclass
class PodLog:
    """A pod's log as its kubelet registers it: the file, and set once the process ended."""

    path: Path
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Fault:
    """An injected failure, waiting for ``times`` matching requests (``hits`` got it)."""

    kind: str  # "status", "gone", "drop" or "stall"
    method: str  # an HTTP method, or "*"
    pattern: re.Pattern[str]  # searched in the request path
    times: int = 1
    status: int = 500
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    watch: bool | None = None  # None: any request; True: watches only; False: no watches
    commit: bool = False  # make the change anyway, then answer the error
    in_stream: bool = True  # for "gone": an ERROR event in a 200 stream, else an HTTP 410
    delay: float = 0.0  # for "stall": seconds before the request is handled as usual
    hits: list[Recorded] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.times - len(self.hits)

    def matches(self, method: str, path: str, is_watch: bool) -> bool:
        if self.remaining <= 0:
            return False
        if self.method != "*" and self.method != method.upper():
            return False
        if self.watch is not None and self.watch != is_watch:
            return False
        return self.pattern.search(path) is not None


def status_body(code: int, message: str, reason: str | None = None,
                details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``kind: Status`` failure body as the API server sends it."""
    doc: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason or _REASONS.get(code, ""), "code": code}
    if details:
        doc["details"] = dict(details)
    return doc


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "AlreadyExists", 410: "Expired", 422: "Invalid",
            429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}


def _verb(method: str, name: str | None, params: Mapping[str, str]) -> str:
    if method == "GET":
        return "watch" if params.get("watch") in ("true", "1") else "get" if name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection"}.get(method, method.lower())


def fault_body(status: int, method: str, path: str, params: Mapping[str, str],
               data: Any = None) -> dict[str, Any]:
    """The Status a real API server would send for ``status`` on this request."""
    from kmock._internal.parsing import parse_path

    parsed = parse_path(path)
    plural, group = parsed.plural or "", parsed.group or ""
    name = parsed.name
    if name is None and isinstance(data, dict):
        name = (data.get("metadata") or {}).get("name")
    qualified = f"{plural}.{group}" if group else plural
    what = f'{qualified} "{name}"' if name else qualified
    verb = _verb(method.upper(), parsed.name, params)
    details: dict[str, Any] = {"kind": plural}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    where = f' in the namespace "{parsed.namespace}"' if parsed.namespace else ""
    if status == 403:
        user = f"system:serviceaccount:{parsed.namespace or 'default'}:runner"
        return status_body(403, f'{what} is forbidden: User "{user}" cannot {verb} resource '
                                f'"{plural}" in API group "{group}"{where}', details=details)
    if status == 404:
        return status_body(404, f"{what} not found", details=details)
    if status == 409 and verb == "create":
        return status_body(409, f"{what} already exists", details=details)
    if status == 409:
        return status_body(409, f"Operation cannot be fulfilled on {what}: the object has "
                                "been modified; please apply your changes to the latest "
                                "version and try again", "Conflict", details)
    if status == 410:
        version = params.get("resourceVersion") or "1"
        return status_body(410, f"too old resource version: {version} (999999)")
    if status == 422:
        kind = (data or {}).get("kind", plural) if isinstance(data, dict) else plural
        return status_body(422, f'{kind}.{group or "core"} "{name}" is invalid: spec: '
                                "Invalid value: injected fault", details=details)
    if status == 429:
        return status_body(429, "Too many requests, please try again later.",
                           details={**details, "retryAfterSeconds": 1})
    if status == 500:
        return status_body(500, "Internal error occurred: injected fault",
                           details={"causes": [{"message": "injected fault"}]})
    if status == 503:
        return status_body(503, "the server is currently unable to handle the request")
    if status == 504:
        return status_body(504, "Timeout: request did not complete within requested timeout "
                                "- context deadline exceeded")
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Unknown"
    return status_body(status, phrase, _REASONS.get(status, phrase.replace(" ", "")))


class SelectorError(ValueError):
    """A label or field selector the API server would refuse."""


_TERM = re.compile(r"^(?P<key>[^\s!=,()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s,()]*)$"
                   r"|^(?P<skey>[^\s!=,()]+)\s+(?P<sop>in|notin)\s*\((?P<values>[^()]*)\)$"
                   r"|^(?P<neg>!)?\s*(?P<ekey>[^\s!=,()]+)$")


def _terms(selector: str) -> list[str]:
    """Split on the commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return [t.strip() for t in terms if t.strip()]


def labels_match(selector: str, labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy a label selector (equality- and set-based)."""
    for term in _terms(selector):
        m = _TERM.match(term)
        if m is None:
            raise SelectorError(f"unable to parse requirement: {term!r}")
        if m["key"] is not None:
            has = labels.get(m["key"]) == m["value"]
            if has != (m["op"] != "!="):
                return False
        elif m["skey"] is not None:
            values = {v.strip() for v in m["values"].split(",") if v.strip()}
            inside = m["skey"] in labels and labels[m["skey"]] in values
            if inside != (m["sop"] == "in"):
                return False
        elif (m["ekey"] in labels) == bool(m["neg"]):
            return False
    return True


def fields_match(selector: str, obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` satisfies a field selector (``a.b=x``, ``a.b==x``, ``a.b!=x``)."""
    for term in _terms(selector):
        m = _TERM.match(term)
        if m is None or m["key"] is None:
            raise SelectorError(f"invalid field selector: {term!r}")
        value: Any = obj
        for part in m["key"].split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        got = "" if value is None else str(value).lower() if isinstance(value, bool) \
            else str(value)
        if (got == m["value"]) != (m["op"] != "!="):
            return False
    return True


def _selected(obj: Mapping[str, Any], params: Mapping[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return (labels_match(params.get("labelSelector") or "", labels)
            and fields_match(params.get("fieldSelector") or "", obj))


def _version_of(obj: Any) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def _method(request: Any) -> str:
    return str(request.method.value).upper()


def _created_version(obj: Any) -> int:
    """The resourceVersion a kmock object had when it was (last) created."""
    versions = list(obj.history)
    while versions and versions[-1] is None:
        versions.pop()
    start = max((i for i, v in enumerate(versions) if v is None), default=-1) + 1
    return _version_of(versions[start].raw) if start < len(versions) else 0


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


class HelmError(RuntimeError):
    """Helm refused or failed the install; the message is Helm's own."""


def _emulator_class() -> type:
    """kmock's KubernetesEmulator with the fixes listed in the module docstring."""
    import aiohttp.web
    import kmock

    class FixedEmulator(kmock.KubernetesEmulator):
        server_version: str = DEFAULT_VERSION
        _resource_version: int = 0
        # shared with the Emulator in the test's thread (set by Emulator._main)
        recorded: list[Recorded]
        faults: list[Fault]
        faults_lock: threading.Lock
        pod_logs: dict[tuple[str, str], PodLog]
        accesses: set[Access]
        closing: bool = False

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
            agent = next((v for k, v in request.headers.items() if k.lower() == "user-agent"), "")
            if agent.startswith(CONTROLLER_AGENT) and request.resource is not None:
                access = Access(
                    "watch" if request.action == kmock.action.WATCH
                    else _verb(_method(request), request.name, {}),
                    request.resource.group or "", request.resource.plural,
                    request.subresource or "")
                self.accesses.add(access)
                SESSION_ACCESSES.add(access)
            if not agent.startswith(INTERNAL_AGENT):
                seen = Recorded(_method(request), request.url.path, dict(request.params))
                self.recorded.append(seen)
                fault = self._take_fault(request, seen)
                if fault is not None and fault.kind == "stall":
                    await self._stall(fault)  # then answered as usual, too late
                elif fault is not None:
                    return await self._inject(fault, request)
            if (request.resource is not None and request.resource.plural == "pods"
                    and request.subresource == "log" and request.name
                    and _method(request) == "GET"):
                return await self._serve_log(request)
            return await self._handle_normally(request)

        async def _handle_normally(self, request: Any) -> Any:
            if request.resource is not None and isinstance(request.data, dict):
                if request.action == kmock.action.CREATE:
                    self._fill_metadata(request)
                elif request.action == kmock.action.UPDATE:
                    self._resource_version += 1
                    request.data.setdefault("metadata", {})["resourceVersion"] = str(
                        self._resource_version)
            if request.resource is not None and request.action == kmock.action.DELETE \
                    and request.name is not None:
                # the DELETED event gets a version of its own; no await from here to kmock's
                # lock, so that events go out in the order of their versions
                key = (request.resource, request.namespace, request.name)
                if key in self._objects and not self._objects[key].deleted:
                    self._resource_version += 1
                    self._objects[key].patch(
                        {"metadata": {"resourceVersion": str(self._resource_version)}})
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

        # ------------------------------------------------------------ list and watch

        def _addressed(self, request: Any) -> Iterator[tuple[str | None, str, Any]]:
            """(namespace, name, stored object) of the request's resource, namespace
            and name, deleted ones included."""
            for (resource, namespace, name), obj in self._objects.items():
                if resource == request.resource \
                        and request.namespace in (None, namespace) \
                        and request.name in (None, name):
                    yield namespace, name, obj

        def _matching(self, request: Any) -> list[dict[str, Any]]:
            """Live objects of the request's resource, namespace, name and selectors."""
            found = []
            for namespace, name, obj in self._addressed(request):
                if not obj.deleted and _selected(obj.raw, request.params):
                    found.append(((namespace or "", name), obj.raw))
            return [raw for _, raw in sorted(found, key=lambda pair: pair[0])]

        def _known(self, request: Any) -> bool:
            return any(r == request.resource for r in self._get_resources())

        def _changes_since(self, request: Any, since: int) -> list[dict[str, Any]]:
            """A watch's initial events: every live object as ADDED (``since`` 0), or the
            net change of each object after version ``since`` (kmock keeps each object's
            history, not an event log): ADDED, MODIFIED or DELETED."""
            found = []
            for namespace, name, obj in self._addressed(request):
                if obj.empty:
                    continue
                if since <= 0:
                    if obj.deleted:
                        continue
                    raw, kind = obj.raw, "ADDED"
                else:
                    raw = obj.last.raw
                    if _version_of(raw) <= since:
                        continue
                    created = _created_version(obj)
                    if obj.deleted and created > since:
                        continue  # born and gone since: nothing to tell
                    kind = "DELETED" if obj.deleted else "ADDED" if created > since \
                        else "MODIFIED"
                if _selected(raw, request.params):
                    found.append(((namespace or "", name), {"type": kind, "object": raw}))
            return [event for _, event in sorted(found, key=lambda pair: pair[0])]

        async def _serve_list(self, request: Any) -> Any:
            if not self._known(request):
                raise kmock.KubernetesResourceNotFoundError()
            try:
                async with self._lock:
                    items = self._matching(request)
                    version = self._resource_version
            except SelectorError as exc:
                raise kmock.KubernetesError(status=400, reason="BadRequest", message=str(exc),
                                            details={"kind": request.resource.plural}) from None
            return {"metadata": {"resourceVersion": str(version)}, "items": items}

        async def _serve_watch(self, request: Any) -> Any:
            yield b""  # the headers go out now, even if nothing ever happens
            async for event in self._watch_events(request, live=True):
                yield event

        async def _watch_events(self, request: Any, *, live: bool) -> Any:
            since = int(_number(request.params.get("resourceVersion")) or 0)
            timeout = _number(request.params.get("timeoutSeconds"))
            loop = asyncio.get_running_loop()
            deadline = None if not timeout else loop.time() + timeout
            bus = self._buses[request.resource]
            async with self._lock:  # events are put under this lock: none slips between
                mark = await bus.mark()
                try:
                    snapshot = self._changes_since(request, since)
                except SelectorError as exc:
                    snapshot = []
                    error: dict[str, Any] | None = status_body(400, str(exc))
                else:
                    error = None
            stream = bus.stream(since=mark)
            try:
                if error is not None:
                    yield {"type": "ERROR", "object": error}
                    return
                for initial in snapshot:
                    yield initial
                if not live:
                    return
                while not self.closing:
                    left = None if deadline is None else deadline - loop.time()
                    if left is not None and left <= 0:
                        return
                    try:
                        event = await asyncio.wait_for(anext(stream), left)
                    except TimeoutError:
                        return
                    obj = event.get("object") or {}
                    meta = obj.get("metadata") or {}
                    if request.namespace is not None and meta.get("namespace") != \
                            request.namespace:
                        continue
                    if request.name is not None and meta.get("name") != request.name:
                        continue
                    if _version_of(obj) <= since or not _selected(obj, request.params):
                        continue
                    yield event
            finally:
                await stream.aclose()
                await bus.unmark(mark)

        # ------------------------------------------------------------ faults

        def _take_fault(self, request: Any, seen: Recorded) -> Fault | None:
            is_watch = request.action == kmock.action.WATCH
            with self.faults_lock:
                for fault in self.faults:
                    if fault.matches(seen.method, seen.path, is_watch):
                        fault.hits.append(seen)
                        return fault
            return None

        async def _stall(self, fault: Fault) -> None:
            """A hung API server: nothing for ``fault.delay`` seconds (or until shutdown)."""
            loop = asyncio.get_running_loop()
            until = loop.time() + fault.delay
            while not self.closing and loop.time() < until:
                await asyncio.sleep(0.05)

        async def _inject(self, fault: Fault, request: Any) -> Any:
            if fault.kind == "status":
                if fault.commit:
                    with contextlib.suppress(kmock.KubernetesError):
                        await self._handle_normally(request)
                body = fault.body or fault_body(fault.status, _method(request),
                                                request.url.path, request.params, request.data)
                headers = dict(fault.headers)
                if fault.status == 429:
                    headers.setdefault("Retry-After", "1")
                return aiohttp.web.json_response(body, status=fault.status, headers=headers)
            gone = fault_body(410, "GET", request.url.path, request.params)
            if fault.kind == "gone" and not fault.in_stream:
                return aiohttp.web.json_response(gone, status=410)
            response = aiohttp.web.StreamResponse(
                status=200, headers={"Content-Type": "application/json"})
            await response.prepare(request._raw_request)
            try:
                if fault.kind == "gone":
                    await response.write(json.dumps({"type": "ERROR", "object": gone})
                                         .encode() + b"\n")
                else:  # "drop": the initial events, then the stream ends
                    async for event in self._watch_events(request, live=False):
                        await response.write(json.dumps(event).encode() + b"\n")
                await response.write_eof()
            except ConnectionError:
                pass
            return response

        # ------------------------------------------------------------ pod logs

        async def _serve_log(self, request: Any) -> Any:
            def error(code: int, message: str) -> Any:
                return aiohttp.web.json_response(status_body(code, message), status=code)

            ns, name = request.namespace, request.name
            key = (request.resource, ns, name)
            async with self._lock:
                pod = self._objects[key].raw if key in self._objects \
                    and not self._objects[key].deleted else None
            if pod is None:
                return error(404, f'pods "{name}" not found')
            containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
            container = request.params.get("container")
            if container is None and len(containers) > 1:
                return error(400, f"a container name must be specified for pod {name}, "
                                  f"choose one of: [{' '.join(map(str, containers))}]")
            container = container or (containers[0] if containers else "")
            if containers and container not in containers:
                return error(400, f"container {container} is not valid for pod {name}")
            if request.params.get("previous") in ("true", "1"):
                return error(400, f'previous terminated container "{container}" in pod '
                                  f'"{name}" not found')
            status = pod.get("status") or {}
            log = self.pod_logs.get((ns, name))
            if log is None:
                if status.get("phase", "Pending") == "Pending":
                    waiting = next((((cs.get("state") or {}).get("waiting") or {})
                                    for cs in status.get("containerStatuses") or []
                                    if cs.get("name") == container), {})
                    why = waiting.get("reason") or "ContainerCreating"
                    return error(400, f'container "{container}" in pod "{name}" is waiting '
                                      f"to start: {why}")
                return aiohttp.web.Response(body=b"", content_type="text/plain",
                                            charset="utf-8")
            tail = _number(request.params.get("tailLines"))
            limit = _number(request.params.get("limitBytes"))
            left = int(limit) if limit is not None else None
            data = log.path.read_bytes() if log.path.exists() else b""
            offset = len(data)
            if tail is not None:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[len(lines) - int(tail):]) if tail > 0 else b""
            if left is not None:
                data, left = data[:left], left - len(data[:left])
            if request.params.get("follow") not in ("true", "1"):
                return aiohttp.web.Response(body=data, content_type="text/plain",
                                            charset="utf-8")
            response = aiohttp.web.StreamResponse(status=200)
            response.content_type, response.charset = "text/plain", "utf-8"
            await response.prepare(request._raw_request)
            try:
                if data:
                    await response.write(data)
                while not self.closing and (left is None or left > 0):
                    finished = log.done.is_set()  # before the read: nothing is missed
                    with log.path.open("rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                    offset += len(chunk)
                    if left is not None:
                        chunk, left = chunk[:left], left - len(chunk[:left])
                    if chunk:
                        await response.write(chunk)
                    if finished:
                        break
                    await asyncio.sleep(0.05)
                await response.write_eof()
            except ConnectionError:  # the client went away
                pass
            return response

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
        self.requests: list[Recorded] = []
        """What the clients under test sent, in order (cluster-internal clients excluded)."""
        self.accesses: set[Access] = set()
        """What the project's controller did, as RBAC sees it (see :class:`Access`)."""
        self.faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self.pod_logs: dict[tuple[str, str], PodLog] = {}
        """(namespace, pod) -> its log, registered by whoever runs the pod (the kubelet)."""

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
        if self.handler is not None:
            self.handler.closing = True  # log follows and watches end
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

    # ------------------------------------------------------------ fault injection

    def _add(self, fault: Fault) -> Fault:
        with self._faults_lock:
            self.faults.append(fault)
        return fault

    def fail_next(self, method: str, path: str, status: int, times: int = 1,
                  body: dict[str, Any] | None = None, *, headers: Mapping[str, str] | None = None,
                  watch: bool | None = None, commit: bool = False) -> Fault:
        """The next ``times`` requests ``method`` (or "*") whose path matches the regex
        ``path`` get ``status`` with a realistic Status body (or ``body``). A 429 carries
        ``Retry-After: 1`` unless ``headers`` say otherwise. ``watch`` restricts it to (or
        away from) watch requests; ``commit`` makes the change first (a lost response)."""
        return self._add(Fault("status", method.upper(), re.compile(path), times, status,
                               body, dict(headers or {}), watch, commit))

    def gone_next_watch(self, path: str = "", times: int = 1, *,
                        in_stream: bool = True) -> Fault:
        """The next ``times`` watches whose path matches get 410 Gone: as a real API server
        does on an expired resourceVersion, an ``ERROR`` event (Status, code 410, reason
        Expired) in a 200 stream that then ends; or ``in_stream=False``: an HTTP 410."""
        return self._add(Fault("gone", "GET", re.compile(path), times, 410, watch=True,
                               in_stream=in_stream))

    def drop_next_watch(self, path: str = "", times: int = 1) -> Fault:
        """The next ``times`` watches whose path matches end right after their initial
        events (a dropped connection, or a server-side timeout)."""
        return self._add(Fault("drop", "GET", re.compile(path), times, 200, watch=True))

    def stall_next(self, method: str, path: str, seconds: float, times: int = 1, *,
                   watch: bool | None = None) -> Fault:
        """The next ``times`` requests ``method`` (or "*") whose path matches the regex
        ``path`` are answered only after ``seconds`` (a hung or overloaded API server);
        ``watch`` restricts it to (or away from) watches. Shutdown cuts the wait short."""
        return self._add(Fault("stall", method.upper(), re.compile(path), times, 200,
                               watch=watch, delay=seconds))

    def clear_faults(self) -> None:
        """Forget every fault not yet spent."""
        with self._faults_lock:
            self.faults.clear()

    def requests_to(self, method: str, path: str) -> list[Recorded]:
        """The recorded requests ``method`` (or "*") whose path matches the regex."""
        pattern = re.compile(path)
        return [r for r in list(self.requests) if method in ("*", r.method)
                and pattern.search(r.path)]

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
        handler.recorded = self.requests
        handler.faults = self.faults
        handler.faults_lock = self._faults_lock
        handler.pod_logs = self.pod_logs
        handler.accesses = self.accesses
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
    elif req["action"] == "install-upgrade":  # one process: the memory driver keeps it
        first = asyncio.run(helm_sdkpy.Install(config).run(
            req["release"], req["chart"], values=req["values"], wait=False,
            timeout=req["timeout"]))
        second = asyncio.run(helm_sdkpy.Upgrade(config).run(
            req["release"], req["chart"], values=req["values"], wait=False,
            timeout=req["timeout"]))
        answer = [first, second]
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


def _release(raw: dict[str, Any], namespace: str) -> Release:
    return Release(name=raw["name"], namespace=raw.get("namespace", namespace),
                   manifest=raw.get("manifest", ""), notes=raw.get("info", {}).get("notes", ""),
                   hooks=list(raw.get("hooks") or []), raw=raw)


def helm_install_and_upgrade(chart: str | os.PathLike[str], emulator: Emulator, *,
                             release: str = "runner", namespace: str | None = None,
                             values: dict[str, Any] | None = None,
                             timeout: int = 60) -> tuple[Release, Release]:
    """``helm install`` then ``helm upgrade`` with the same values: what each rendered
    (the upgrade's ``lookup`` sees what the install created)."""
    namespace = namespace or emulator.namespace
    first, second = _helm("install-upgrade", chart, emulator, timeout=timeout,
                          release=release, namespace=namespace, values=values or {})
    return _release(first, namespace), _release(second, namespace)


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
