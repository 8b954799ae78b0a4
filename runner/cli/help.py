"""Typer's rich help and error panels without the parts of rich this CLI never uses.

``typer.rich_utils`` (loaded when help or a usage error is printed) imports
``rich.markdown`` (markdown-it, pygments) and ``rich.traceback`` at module level,
about 60 ms of a 0.3 s ``runner --help``: the first only renders help written with
``rich_markup_mode="markdown"``, the second only pretty tracebacks. This CLI uses
rich markup and has pretty exceptions off, so while ``typer.rich_utils`` loads,
those two modules are stand-ins whose classes import the real module on first use
(calling ``Markdown(...)`` or ``Traceback.from_exception`` still works, a little
later). Nothing else changes: the help is typer's own rich help.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from importlib.abc import Loader as _LoaderBase
    from importlib.abc import MetaPathFinder as _FinderBase
else:  # importlib.abc imports importlib.resources: a loader and a finder by protocol
    _LoaderBase = _FinderBase = object

__all__ = ["defer_rich_extras"]

DEFERRED = {"rich.markdown": ("Markdown",), "rich.traceback": ("Traceback",)}
"""The modules ``typer.rich_utils`` imports but rarely uses, and the names it takes."""
TARGET = "typer.rich_utils"


class _StandIn(type):
    """A class that stands for ``module.name``: using it imports the real class."""

    _module: str

    def _real(cls) -> Any:
        return getattr(importlib.import_module(cls._module), cls.__name__)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._real()(*args, **kwargs)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls._real(), name)


def _stand_in_module(name: str, attrs: Sequence[str]) -> types.ModuleType:
    module = types.ModuleType(name, f"stand-in for {name} while {TARGET} loads")
    for attr in attrs:
        setattr(module, attr, _StandIn(attr, (), {"_module": name}))
    return module


class _Loader(_LoaderBase):
    """Runs the real loader of ``typer.rich_utils`` with the stand-ins in place; if it
    needs more of them than they offer (another typer), loads it again for real."""

    def __init__(self, real: _LoaderBase) -> None:
        self.real = real

    def create_module(self, spec: ModuleSpec) -> types.ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        planted = {name: _stand_in_module(name, attrs) for name, attrs in DEFERRED.items()
                   if name not in sys.modules}
        sys.modules.update(planted)
        try:
            self.real.exec_module(module)
        except ImportError:
            _unplant(planted)
            self.real.exec_module(module)
        finally:
            _unplant(planted)


def _unplant(planted: dict[str, types.ModuleType]) -> None:
    for name, stand_in in planted.items():
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


class _Finder(_FinderBase):
    """Finds ``typer.rich_utils`` once, through the other finders, with :class:`_Loader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> ModuleSpec | None:
        if fullname != TARGET:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # once: then the module is in sys.modules
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


def defer_rich_extras() -> None:
    """Have ``typer.rich_utils`` load without ``rich.markdown`` and ``rich.traceback``
    (no-op once it is loaded, or when those are loaded already)."""
    if TARGET in sys.modules or all(name in sys.modules for name in DEFERRED):
        return
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
