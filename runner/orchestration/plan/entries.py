"""The manifest's own stages and context adapters, registered for one compile.

A manifest may name stages (``"stages": {"name": "module:function"}``) and adapters
beside the registered ones: they go into a child of the registry, so compiling never
changes the shared one; each problem names its JSON path, and a module that fails to
import is reported once, with its traceback, at the first entry that names it.
"""

from __future__ import annotations

from pathlib import Path

from runner.errors import ModuleImportError, Problem, RegistryError
from runner.manifest import Manifest, format_path
from runner.registry import StageRegistry, add_module_folders, import_object

__all__ = ["with_manifest_entries"]


def with_manifest_entries(manifest: Manifest, registry: StageRegistry) -> tuple[
    StageRegistry, list[Problem]
]:
    """A child registry that also holds the manifest's stages and adapters."""
    child = registry.child()
    problems: list[Problem] = []
    source = Path(manifest.source)
    if source.is_file():  # stage modules resolve relative to the manifest's folder
        add_module_folders([source.resolve().parent], why="the manifest's folder")
    broken: dict[str, str] = {}  # a module that failed to import: its traceback once
    for name, target in manifest.stages.items():
        loc = format_path(("stages", name))
        module = target.partition(":")[0]
        if module in broken:
            problems.append(Problem(loc, f"module {module!r} failed to import: see "
                                         f"{broken[module]}"))
            continue
        try:
            fn = import_object(target)
            meta = getattr(fn, "__runner_stage__", None)
            declared = {"reads": meta.reads, "writes": meta.writes, "kind": meta.kind,
                        "imports": meta.imports, "version": meta.version,
                        "cache": meta.cache, "observe": meta.observe} if meta else {}
            child.register(name, fn, origin=f"manifest {loc}", replace_shipped=True,
                           **declared)
        except RegistryError as exc:
            problems.append(Problem(loc, str(exc)))
            if isinstance(exc, ModuleImportError):
                broken[exc.module] = loc
    for i, spec in enumerate(manifest.adapters):
        loc = format_path(("adapters", i))
        try:
            source_type, target_type, fn = (import_object(p)
                                            for p in (spec.from_, spec.to, spec.fn))
            child.register_adapter(source_type, target_type, fn, origin=f"manifest {loc}")
        except RegistryError as exc:
            problems.append(Problem(loc, str(exc)))
    return child, problems
