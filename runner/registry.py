"""The StageRegistry: names to stage callables, merge adapters and context adapters.

A stage is any callable ``execute(context) -> context``. It is registered with
the :func:`stage` decorator, by an import path in the manifest, or by the
``runner.stages`` entry-point group (a module whose import registers stages,
or a callable registered under the entry point's name).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal, TypeVar

from runner.declared import checked_reads, checked_version, split_reads
from runner.errors import ModuleImportError, RegistryError, RunnerError
from runner.tracebacks import user_trace

__all__ = [
    "REGISTRY",
    "AdapterEntry",
    "StageEntry",
    "StageRegistry",
    "add_module_folders",
    "context_adapter",
    "import_object",
    "merge_adapter",
    "stage",
]

log = logging.getLogger("runner")
F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["stage", "merge_adapter"]
ENTRY_POINT_GROUP = "runner.stages"


@dataclass(frozen=True)
class StageEntry:
    """A registered stage (or merge adapter) and what it declares about the context."""

    name: str
    fn: Callable[..., Any]
    kind: Kind = "stage"
    reads: frozenset[str] = frozenset()
    """As declared: field names, and ``params.NAME`` for one run parameter."""
    writes: frozenset[str] | None = None  # None: not declared
    origin: str = ""
    imports: tuple[str, ...] = ()
    """Modules the stage imports when it runs (heavy ones it defers): the engine may
    import them ahead, e.g. on the driver while a parallel group runs on workers."""
    version: str | None = None
    """The stage's code version for the step cache, given by its author; None: derived
    from its source (:mod:`runner.cache.keys`)."""
    cache: bool | None = None
    """Step cache: None follows the run and pipeline; True in every run with a store
    (unless ``--no-cache``); False never (a stage that reads the outside world)."""
    observe: Callable[[Any], str | None] | None = None
    """For the step cache, the version of what the stage reads outside its context (a
    data file a parameter names): ``observe(context)``, part of its key."""

    @property
    def qualname(self) -> str:
        return f"{getattr(self.fn, '__module__', '?')}:{getattr(self.fn, '__qualname__', '?')}"

    @functools.cached_property  # asked at every step: split once per entry
    def fields_read(self) -> frozenset[str]:
        """The context fields the stage declares it reads (``params.tilt``: ``params``)."""
        return split_reads(self.name, self.reads)[0]

    @functools.cached_property
    def params_read(self) -> frozenset[str] | None:
        """The run parameters it reads, when it names them one by one; None: every one."""
        return split_reads(self.name, self.reads)[1]


@dataclass(frozen=True)
class AdapterEntry:
    """A context adapter: maps a context of type ``source`` to one of type ``target``."""

    source: type
    target: type
    fn: Callable[[Any], Any]
    origin: str = ""


_SEARCHED: dict[str, str] = {}
"""Folders added for stage modules, each with why (what an import error names)."""


def add_module_folders(folders: Iterable[str | os.PathLike[str]], *, why: str = "--path") -> None:
    """Let ``module:attr`` paths of a manifest find modules in ``folders``.

    The folders go at the END of ``sys.path``: a file beside the manifest (or in
    an explicit ``--path``) never shadows the standard library or an installed
    package, and the current folder is not searched unless it is one of them.
    Worker processes add the folders of the plan's modules
    (:func:`runner.orchestration.warm.module_folders`); Ray ships such modules with
    the job.
    """
    for folder in folders:
        text = os.path.abspath(os.fspath(folder))  # noqa: PTH100
        _SEARCHED.setdefault(text, why)
        if text not in sys.path:
            sys.path.append(text)
            importlib.invalidate_caches()


def _searched(module_name: str) -> str:
    """Where a missing module was looked for, in the user's terms."""
    here = Path.cwd()
    shown = []
    for folder, why in _SEARCHED.items():
        path = Path(folder)
        text = os.path.relpath(path, here) if path.is_relative_to(here) else folder
        shown.append(f"{text} ({why})")
    where = ", ".join(shown) + (" and " if shown else "") + "the installed packages"
    top = module_name.split(".", maxsplit=1)[0]
    if str(here) not in _SEARCHED and ((here / f"{top}.py").is_file() or (here / top).is_dir()):
        where += (f"; the current folder is not searched, where {top!r} is: put it beside "
                  "the manifest, or pass --path .")
    return f"searched {where}"


def import_object(path: str) -> Any:
    """Import ``"package.module:attr.attr"``; raise :class:`RegistryError` in words."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise RegistryError(f"{path!r} is not an import path 'module:attribute'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if not _names_module(exc, module_name):  # the module itself imports a missing one
            raise _import_failed(module_name, path, exc) from exc
        raise RegistryError(f"cannot import module {module_name!r} for {path!r}: {exc}; "
                            f"{_searched(module_name)}") from exc
    except RunnerError:
        raise  # the module's own registrations said what is wrong (a name taken twice)
    except (Exception, SystemExit) as exc:
        raise _import_failed(module_name, path, exc) from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise RegistryError(f"module {module_name!r} has no attribute {attr!r}") from exc
    return obj


def _names_module(exc: ModuleNotFoundError, module_name: str) -> bool:
    """True when the module (or a package above it) is what cannot be found."""
    parts = module_name.split(".")
    return exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def _import_failed(module_name: str, path: str, exc: BaseException) -> ModuleImportError:
    """A module that exists but raised while it was imported: the user's code, at
    their file and line, with their traceback (exit 2, never "a bug in runner")."""
    trace = user_trace(exc)
    where = f" at {trace.where}" if trace.where else ""
    detail = "\n".join(f"    {line}" for line in trace.text.splitlines())
    return ModuleImportError(f"importing module {module_name!r} (for {path!r}) failed"
                             f"{where}:\n{detail}", module=module_name, where=trace.where)


def _same(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """Same function, even when its module was imported twice under one name.

    Only module-level functions qualify by name: two lambdas, or two closures
    of one factory, share a qualified name without being the same stage.
    """
    if a is b:
        return True
    qualname = getattr(a, "__qualname__", "")
    if "<lambda>" in qualname or "<locals>" in qualname:
        return False
    return bool(
        getattr(a, "__module__", 1) == getattr(b, "__module__", 2)
        and qualname == getattr(b, "__qualname__", None)
    )


def _shipped(fn: Callable[..., Any]) -> bool:
    """A stage that comes with the runner (the user's own of the same name wins)."""
    module = getattr(fn, "__module__", None) or ""
    return module == "runner.stages" or module.startswith("runner.stages.")


_NOTED: set[tuple[str, str]] = set()


def _note_once(name: str, shipped: StageEntry, mine: StageEntry) -> None:
    if (name, mine.origin) not in _NOTED:
        _NOTED.add((name, mine.origin))
        log.warning("note: %s (%s) replaces the shipped stage %r (%s) for this manifest",
                    mine.origin, mine.qualname, name, shipped.qualname, extra={"event": "note"})


@dataclass
class StageRegistry:
    """Names to stages; registering one name twice is an error."""

    _entries: dict[str, StageEntry] = field(default_factory=dict)
    _adapters: dict[tuple[type, type], AdapterEntry] = field(default_factory=dict)
    _entry_points_loaded: bool = False

    def register(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        kind: Kind = "stage",
        reads: Iterable[str] = (),
        writes: Iterable[str] | None = None,
        origin: str = "",
        imports: Iterable[str] = (),
        replace_shipped: bool = False,
        version: str | None = None,
        cache: bool | None = None,
        observe: Callable[[Any], str | None] | None = None,
    ) -> StageEntry:
        """Register ``fn`` under ``name``; the same function again is a no-op.

        A shipped stage (``runner.stages``) of that name is no clash: the user's
        function replaces it with ``replace_shipped`` (a manifest's own ``stages``
        entry, noted once), and is otherwise returned unregistered (a ``@stage``
        decorator in the user's module, for the manifest to name)."""
        if not callable(fn):
            raise RegistryError(f"stage {name!r}: {fn!r} is not callable")
        entry = StageEntry(
            name=name,
            fn=fn,
            kind=kind,
            reads=checked_reads(name, reads),
            writes=None if writes is None else frozenset(writes),
            origin=origin or f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}",
            imports=tuple(imports),
            version=checked_version(name, version, cache),
            cache=cache,
            observe=observe,
        )
        old = self._entries.get(name)
        if old is not None:
            if _same(old.fn, fn):
                return old
            if _shipped(old.fn) and not _shipped(fn):
                if replace_shipped:  # the manifest names its own: it wins, in its namespace
                    _note_once(name, old, entry)
                    self._entries[name] = entry
                # else a decorator in the user's module: kept aside for the manifest to name
                return entry
            if _shipped(fn) and not _shipped(old.fn) and not replace_shipped:
                self._entries[name] = entry  # the user's module was imported first (a worker)
                return entry
            raise RegistryError(
                f"stage {name!r} registered twice: by {old.origin} and by {entry.origin}"
            )
        self._entries[name] = entry
        return entry

    def register_adapter(
        self, source: type, target: type, fn: Callable[[Any], Any], *, origin: str = ""
    ) -> AdapterEntry:
        """Register a context adapter from ``source`` to ``target``."""
        old = self._adapters.get((source, target))
        entry = AdapterEntry(source, target, fn, origin or getattr(fn, "__qualname__", "?"))
        if old is not None and not _same(old.fn, fn):
            raise RegistryError(
                f"context adapter {source.__name__} -> {target.__name__} registered twice: "
                f"by {old.origin} and by {entry.origin}"
            )
        self._adapters[(source, target)] = entry
        return entry

    def get(self, name: str) -> StageEntry | None:
        self.load_entry_points()
        return self._entries.get(name)

    def names(self) -> list[str]:
        self.load_entry_points()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[StageEntry]:
        self.load_entry_points()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def find_adapter(self, source: type, target: type) -> AdapterEntry | None:
        """An adapter for exactly ``source`` or, failing that, its nearest base class."""
        self.load_entry_points()
        for klass in source.__mro__:
            found = self._adapters.get((klass, target))
            if found is not None:
                return found
        return None

    def child(self) -> StageRegistry:
        """A registry that starts with everything in this one (for manifest stages)."""
        self.load_entry_points()
        return StageRegistry(dict(self._entries), dict(self._adapters), True)

    def load_entry_points(self) -> None:
        """Import the ``runner.stages`` entry points once."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
            except Exception as exc:
                trace = user_trace(exc)
                where = f" at {trace.where}" if trace.where else ""
                raise RegistryError(
                    f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                    f"failed to load{where}: {type(exc).__name__}: {exc}"
                ) from exc
            if inspect.ismodule(obj):
                continue  # importing it registered its stages
            meta = getattr(obj, "__runner_stage__", None)
            if meta is None:
                self.register(ep.name, obj, origin=f"entry point {ep.value}")


REGISTRY = StageRegistry()
"""The default registry that the decorators fill."""


def stage(
    name: str,
    *,
    reads: Iterable[str] = (),
    writes: Iterable[str] | None = None,
    imports: Iterable[str] = (),
    registry: StageRegistry | None = None,
    version: str | None = None,
    cache: bool | None = None,
    observe: Callable[[Any], str | None] | None = None,
) -> Callable[[F], F]:
    """Register a function ``execute(context) -> context`` as stage ``name``.

    ``reads``/``writes`` name the context fields it uses; the plan compiler
    uses ``writes`` to find branches that would collide before anything runs.
    ``imports`` names heavy modules the stage imports only when it runs (e.g.
    ``sklearn.ensemble``): worker processes and the driver import them ahead, off
    the critical path. ``version`` is the stage's code version for the step cache
    (change it to invalidate cached results; default: derived from its source);
    ``cache``: None follows the run and pipeline; True caches it in every run with a
    store; False never (a stage that reads the outside world, a download);
    ``observe(context)``: the version of the outside data it reads (a file's hash),
    part of its cache key, so it is cached and still runs when that data changed.
    """

    def decorate(fn: F) -> F:
        entry = (registry or REGISTRY).register(name, fn, reads=reads, writes=writes,
                                                imports=imports, version=version, cache=cache,
                                                observe=observe)
        fn.__runner_stage__ = entry  # type: ignore[attr-defined]
        return fn

    return decorate


def merge_adapter(
    name: str, *, registry: StageRegistry | None = None
) -> Callable[[F], F]:
    """Register ``fn(base, branches) -> context`` as a merge adapter named ``name``."""

    def decorate(fn: F) -> F:
        entry = (registry or REGISTRY).register(name, fn, kind="merge_adapter")
        fn.__runner_stage__ = entry  # type: ignore[attr-defined]
        return fn

    return decorate


def context_adapter(
    source: type, target: type, *, registry: StageRegistry | None = None
) -> Callable[[F], F]:
    """Register ``fn(source_context) -> target_context`` between two context types."""

    def decorate(fn: F) -> F:
        (registry or REGISTRY).register_adapter(source, target, fn)
        return fn

    return decorate
