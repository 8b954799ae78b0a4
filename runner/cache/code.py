"""A stage's code version: what must change for the step cache to run it again.

An explicit ``@stage(version="...")`` is taken as given. Otherwise the version is the
sha256 of the stage function's source and of the *closure of what it calls within
the user's code*: the functions and classes it names (globals, closure cells,
defaults), followed recursively through the same module and through any module
that is not installed (the project's own, and runner's shipped stages), and
module-level constants by value. Not the whole module's source: five stages often
share one module, and editing ``alpha.policy`` must not re-run ``alpha.inference``
beside it (the issue's target). Not only the function's own source either: a stage
that calls a helper whose body changed must run again.

A function is described by its source, read from its file by the lines its code spans,
and by its bytecode (the file may have been edited since the module was imported: the
key must describe the code that runs; so laptop and pod share entries when they run
the same Python minor version). A class is
described by its bases, annotations and members (methods by source, constants by
value). What it cannot see: installed libraries (their version is the environment's, a
cache entry records runner's; runner's own engine counts as one, its shipped stages
and price helpers do not), data read from files, and a name reached only
through ``getattr`` with a computed string. Give such a stage a ``version``, an
``observe`` (the version of the data it reads: :mod:`runner.cache.keys`) or
``cache=False``. A function without source (built at run time) gets a version from
its bytecode and constants.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import linecache
import re
import sys
import sysconfig
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runner.artifacts.signing import canonical_json
from runner.digest import sha256
from runner.registry import StageEntry

__all__ = ["code_version"]

_SHIPPED = ("runner.stages", "runner.prices")
"""Within runner, what is stage code (the shipped stages and the price helpers they
call), followed as a user's; the rest is the engine, never followed: its version is
runner's, and its state is the run's (an executor sets a worker's core share in a
module global that the stages' thread limits read: followed, it gave a branch in a
worker process another key than the same step on the driver)."""
_MAX_OBJECTS = 2_000
_PYTHON = "cpython-{}.{}".format(*sys.version_info[:2])  # bytecode differs between versions
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")  # reprs that differ from process to process
_CACHE: weakref.WeakKeyDictionary[Callable[..., Any], str] = weakref.WeakKeyDictionary()
_INSTALLED = tuple(
    str(Path(p).resolve()) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib",
                                                                        "purelib", "platlib")}
)


def code_version(entry: StageEntry) -> str:
    """``explicit:<version>`` for a stage that gives one, else ``source:<sha256>``."""
    if entry.version is not None:
        return f"explicit:{entry.version}"
    fn = entry.fn
    try:
        return _CACHE[fn]
    except (KeyError, TypeError):
        pass
    version = "source:" + sha256(canonical_json(_closure(fn)))
    with contextlib.suppress(TypeError):  # not weak-referenceable: computed each time
        _CACHE[fn] = version  # one process runs one version of a function
    return version


def _closure(fn: Callable[..., Any]) -> list[Any]:
    """Descriptions of ``fn`` and of every user-code object it reaches, in a stable order."""
    seen: dict[int, Any] = {}
    described: dict[str, Any] = {}
    top = (getattr(fn, "__module__", None) or "").split(".")[0]
    todo: list[Any] = [inspect.unwrap(fn) if callable(fn) else fn]
    while todo and len(seen) < _MAX_OBJECTS:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj  # held, so no id is reused while we walk
        name, text, reached = _describe(obj)
        described[name] = text
        todo.extend(o for o in reached if id(o) not in seen and _user_code(o, top))
    return sorted(described.items())


def _describe(obj: Any) -> tuple[str, Any, list[Any]]:
    """A stable name, what stands for the object's code, and what its code reaches."""
    name = f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"
    if isinstance(obj, _Constants):
        return name, obj.values, []
    if isinstance(obj, type):
        return name, _class(obj), [obj.__dict__[k] for k in sorted(obj.__dict__)
                                   if _function_of(obj.__dict__[k]) is not None]
    function = _function_of(obj)
    if function is None:  # a callable instance: its class says what it does
        return name, {"instance of": _class(type(obj))}, [type(obj)]
    return name, {"source": _source(function), "code": _code_bits(function.__code__)}, \
        _reached(function)


def _class(cls: type) -> dict[str, Any]:
    """A class by its bases, annotations and members: methods by their source (followed
    as reached), constants by value, anything else by type. Not ``inspect.getsource``,
    which parses the whole module for every class (a tenth of a second a stage)."""
    members: dict[str, Any] = {}
    for key in sorted(cls.__dict__):
        value = cls.__dict__[key]
        if key.startswith("__") and key != "__init__":
            continue
        function = _function_of(value)
        if function is not None:
            members[key] = f"{type(value).__name__}:{function.__qualname__}"
        elif _constant(value):
            members[key] = _stable_repr(value)
        else:
            members[key] = f"{type(value).__module__}.{type(value).__qualname__}"
    annotations = inspect.get_annotations(cls)  # text under ``from __future__ import annotations``
    return {"bases": [f"{b.__module__}.{b.__qualname__}" for b in cls.__bases__],
            "annotations": {k: _ADDRESS.sub("", str(v)) for k, v in annotations.items()},
            "members": members}


def _function_of(obj: Any) -> types.FunctionType | None:
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    elif isinstance(obj, property):
        obj = obj.fget
    elif isinstance(obj, types.MethodType):
        obj = obj.__func__
    obj = inspect.unwrap(obj) if callable(obj) else obj
    return obj if isinstance(obj, types.FunctionType) else None


def _source(fn: types.FunctionType) -> Any:
    """The function's source lines (decorators included) from its file, found by the
    lines its code spans: no tokenizing (``inspect.getsource`` tokenizes the module
    from the def on). A function without a file (built at run time): its bytecode."""
    code = fn.__code__
    lines = linecache.getlines(code.co_filename, fn.__globals__)
    last = _last_line(code)
    if not lines or last is None or last > len(lines):
        return {"bytecode": _code_bits(code)}
    return "".join(lines[code.co_firstlineno - 1:last])


@functools.lru_cache(maxsize=4096)
def _last_line(code: types.CodeType) -> int | None:
    """The last line the code (and the code nested in it) spans. Code objects are
    immutable, so each is walked once a process (stages share helpers)."""
    ends = [end for _, end, _, _ in code.co_positions() if end is not None]
    ends += [e for c in code.co_consts if isinstance(c, types.CodeType)
             if (e := _last_line(c)) is not None]
    return max(ends, default=None)


@functools.lru_cache(maxsize=4096)
def _code_bits(code: types.CodeType) -> tuple[Any, ...]:
    """The bytecode the process runs, its constants and names (no file or line numbers):
    the source on disk may have been edited since the module was imported, and a key
    must describe the code that runs. Sets of constants are sorted (their order
    changes with the hash seed)."""
    consts = tuple(_code_bits(c) if isinstance(c, types.CodeType)
                   else _stable_repr(c) for c in code.co_consts)
    return (_PYTHON, code.co_code.hex(), consts, code.co_names)


def _names(code: types.CodeType) -> set[str]:
    """Every global or attribute name the code (and the code nested in it) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _reached(fn: types.FunctionType) -> list[Any]:
    """What ``fn`` names: globals (a module's attributes named after it too), closure
    cells and default values; constants among them are described by value."""
    top = (fn.__module__ or "").split(".")[0]
    names = _names(fn.__code__)
    out: list[Any] = []
    constants: dict[str, Any] = {}
    scopes = [fn.__globals__]
    for cell_name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            scopes.append({cell_name: cell.cell_contents})
            names.add(cell_name)
        except ValueError:  # an empty cell
            continue
    for scope in scopes:
        for name in names & scope.keys():
            value = scope[name]
            if isinstance(value, types.ModuleType):
                if _user_code(value, top):  # helpers.compute(...): the attributes it names
                    out.extend(getattr(value, n) for n in names if hasattr(value, n))
            elif _constant(value):
                constants[name] = _stable_repr(value)
            else:
                out.append(value)
    out.extend(d for d in (fn.__defaults__ or ()) if not _constant(d))
    out.extend(v for v in (fn.__kwdefaults__ or {}).values() if not _constant(v))
    if constants:
        out.append(_Constants(fn, constants))
    return out


def _stable_repr(value: Any) -> str:
    """``repr``, with sets sorted: their order changes with the hash seed."""
    if isinstance(value, frozenset):
        return "frozenset({" + ", ".join(sorted(_stable_repr(v) for v in value)) + "})"
    if type(value) is tuple:
        return "(" + ", ".join(_stable_repr(v) for v in value) + ",)"
    return repr(value)


def _constant(value: Any) -> bool:
    return value is None or type(value) in (bool, int, float, complex, str, bytes) or (
        type(value) in (tuple, frozenset) and all(_constant(v) for v in value))


class _Constants:
    """The module-level constants a function reads, described by value."""

    def __init__(self, fn: types.FunctionType, values: dict[str, str]) -> None:
        self.__module__ = fn.__module__
        self.__qualname__ = f"{fn.__qualname__}.<constants>"
        self.values = values


def _user_code(obj: Any, top: str) -> bool:
    """Whether ``obj`` is a module, function or class of the stage's own top-level
    package, or of code that is not installed (the project's). By package as well as by
    path, so a laptop (a checkout) and a pod (the package installed) follow the same
    code; where they differ in what they follow, the keys differ: a miss, never a
    wrong hit."""
    if isinstance(obj, _Constants):
        return True
    if not isinstance(obj, (types.ModuleType, types.FunctionType, type, staticmethod,
                            classmethod, property, types.MethodType)) and not callable(obj):
        return False
    module_name = obj.__name__ if isinstance(obj, types.ModuleType) else (
        getattr(obj, "__module__", None) or "")
    if module_name.split(".")[0] == "runner":  # its engine is runner's version, not code
        return any(module_name == p or module_name.startswith(p + ".") for p in _SHIPPED)
    if top and module_name.split(".")[0] == top and top not in sys.stdlib_module_names:
        return True
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if not path:
        return not isinstance(obj, types.ModuleType) and module is not None \
            and module.__name__ == "__main__"
    return not _installed(path)


@functools.cache
def _installed(path: str) -> bool:
    """Whether the module file at ``path`` is installed code (resolved once a file:
    every stage's walk asks of the same few modules)."""
    return str(Path(path).resolve()).startswith(_INSTALLED)
