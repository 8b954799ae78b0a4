"""The root's commands, known by name up front and built when first used.

Building every command means importing every command module (the Kubernetes
commands, the runs, the traces, ``run``) and having typer read every function's
signature: about a third of ``runner --help``, for commands that help only lists.
:class:`LazyCommands` is the root group's ``commands`` mapping: its names (and so
click's "No such command", its suggestions and the order help lists them in) come
from a table of :class:`Deferred` entries; looking a command up imports its module
and builds that module's commands, once. The root's help lists the commands not
built yet by their entries (name, first paragraph of help, panel), which
tests/unit/cli/test_lazy_commands.py holds equal to the commands' own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

__all__ = ["Deferred", "LazyCommands"]


class Deferred:
    """A command of the root not built yet: the module whose ``register(app)`` adds it,
    the first paragraph of its help and its help panel (None: "Commands"). A plain
    class: a dataclass costs a compile per method at every start."""

    __slots__ = ("help", "module", "panel")

    def __init__(self, module: str, help: str, panel: str | None = None) -> None:
        self.module = module
        self.help = help
        self.panel = panel

    def __repr__(self) -> str:
        return f"Deferred({self.module!r}, {self.help!r}, {self.panel!r})"


class LazyCommands(MutableMapping[str, Any]):
    """``name -> click command``: a command in ``table`` is built (its module imported,
    all of that module's commands made by ``build(module)``) when first looked up;
    commands set directly are kept as they are. Iterating yields names only."""

    def __init__(self, table: Mapping[str, Deferred], *,
                 build: Callable[[str], Mapping[str, Any]],
                 built: Mapping[str, Any] | None = None) -> None:
        self._table = dict(table)
        self._build = build
        self._built: dict[str, Any] = dict(built or {})

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            entry = self._table.get(name)
            if entry is None:
                raise KeyError(name)
            self._built.update(self._build(entry.module))
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if self._table.pop(name, None) is None and name not in self._built:
            raise KeyError(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        yield from self._table
        yield from (name for name in self._built if name not in self._table)

    def __len__(self) -> int:
        return len(self._table.keys() | self._built.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._table or name in self._built

    def is_built(self, name: str) -> bool:
        return name in self._built

    def listed(self, name: str, *, make: Callable[[str, Deferred], Any]) -> Any:
        """What help lists for ``name``: the command once built, else ``make(name,
        entry)``, a stand-in with the entry's help and panel (nothing is imported)."""
        if name in self._built or name not in self._table:
            return self.get(name)
        return make(name, self._table[name])
