"""Imports the plan will need, done ahead and off the critical path.

Stages import heavy libraries (scikit-learn, SciPy) when they run, so that
loading the registry stays fast; they say which in ``@stage(imports=[...])``.
When a parallel group runs on worker processes, the driver would otherwise pay
those imports in the first stage after the group (0.8 s for scikit-learn): the
engine imports them on a background thread while the group runs, and waits for
that thread before it merges.

Importing is not all: some libraries set themselves up on their first call, once
per process (scikit-learn's first fit asks narwhals for its plugins' entry
points, joblib for the physical cores, threadpoolctl scans the loaded native
libraries: about 0.1 s). :func:`warm_libraries` does that too, for the libraries
already loaded, without starting any native thread pool (the processes
executor's driver does it before it forks the forkserver, so its workers inherit
it as well).
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from runner.orchestration.plan import ParallelGroup, PipelineStep, Plan, StageStep, Step

__all__ = [
    "branch_imports",
    "declared_imports",
    "group_width",
    "import_modules",
    "imports_after_groups",
    "module_folders",
    "stage_modules",
    "warm_in_background",
    "warm_libraries",
]

log = logging.getLogger("runner")


def _stage_steps(steps: Iterable[Step], *, into_branches: bool) -> Iterable[StageStep]:
    for step in steps:
        if isinstance(step, StageStep):
            yield step
        elif isinstance(step, PipelineStep):
            yield from _stage_steps(step.steps, into_branches=into_branches)
        elif isinstance(step, ParallelGroup) and into_branches:
            for branch in step.branches:
                yield from _stage_steps(branch.steps, into_branches=True)


def declared_imports(steps: Iterable[Step], *, into_branches: bool = True) -> list[str]:
    """The modules the stages among ``steps`` (and, with ``into_branches``, inside
    their groups' branches) declare they import when they run; merge adapters too."""
    steps = list(steps)
    modules: list[str] = []
    for stage in _stage_steps(steps, into_branches=into_branches):
        modules += stage.entry.imports
    for group in _groups(steps, into_branches=into_branches):
        if group.merge_adapter is not None:
            modules += group.merge_adapter.imports
    return list(dict.fromkeys(modules))


def _groups(steps: Iterable[Step], *, into_branches: bool) -> Iterable[ParallelGroup]:
    for step in steps:
        if isinstance(step, PipelineStep):
            yield from _groups(step.steps, into_branches=into_branches)
        elif isinstance(step, ParallelGroup):
            yield step
            if into_branches:
                for branch in step.branches:
                    yield from _groups(branch.steps, into_branches=True)


def stage_modules(plan: Plan) -> list[str]:
    """Modules that hold the plan's stages, for worker processes to import up front."""
    modules = []
    for step in plan.walk():
        fn = getattr(getattr(step, "entry", None), "fn", None)
        module = getattr(fn, "__module__", None)
        if module and module != "__main__":
            modules.append(module)
        adapter = getattr(step, "merge_adapter", None)
        if adapter is not None and getattr(adapter.fn, "__module__", "__main__") != "__main__":
            modules.append(adapter.fn.__module__)
    return list(dict.fromkeys(modules))


def group_width(plan: Plan) -> int:
    """The most branches one parallel group of the plan runs at once (0: no group)."""
    return max((len(s.branches) for s in plan.walk() if isinstance(s, ParallelGroup)),
               default=0)


def branch_imports(plan: Plan) -> list[str]:
    """What the stages inside parallel branches import: worker processes load it up front."""
    modules: list[str] = []
    for step in plan.walk():
        if isinstance(step, ParallelGroup):
            for branch in step.branches:
                modules += declared_imports(branch.steps)
    return list(dict.fromkeys(modules))


def imports_after_groups(plan: Plan) -> dict[str, tuple[str, ...]]:
    """For each parallel group of the driver's line of steps: what the driver imports
    after it (its merge adapter, the stages that follow, later groups' adapters)."""
    main = plan.main_line()
    out: dict[str, tuple[str, ...]] = {}
    for i, step in enumerate(main):
        if isinstance(step, ParallelGroup):
            later = declared_imports([step], into_branches=False)
            later += declared_imports(main[i + 1:], into_branches=False)
            out[step.path] = tuple(dict.fromkeys(later))
    return out


def import_modules(modules: Sequence[str]) -> None:
    """Import each module not loaded yet (one that fails is left for its stage to
    report), then set up the libraries loaded (:func:`warm_libraries`)."""
    for name in modules:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception as exc:
            log.debug("warming %s failed (its stage will say why): %s: %s", name,
                      type(exc).__name__, exc)
    warm_libraries()


def _narwhals() -> None:
    from narwhals.dependencies import is_into_dataframe  # finds its plugins, cached

    is_into_dataframe(None)


def _joblib() -> None:
    from joblib import cpu_count  # type: ignore[import-untyped]  # physical cores, cached

    cpu_count(only_physical_cores=True)


def _threadpoolctl() -> None:
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    ThreadpoolController()  # the first scan of the loaded libraries is the slow one


LIBRARY_WARMERS: tuple[tuple[str, Callable[[], object]], ...] = (
    ("narwhals", _narwhals), ("joblib", _joblib), ("threadpoolctl", _threadpoolctl))
"""Per library (warmed once it is loaded): its once-per-process set-up, done ahead.
None starts a native thread pool, so a process may still fork afterwards."""

_warmed: set[str] = set()


def _unwarmed() -> list[tuple[str, Callable[[], object]]]:
    return [(name, warm) for name, warm in LIBRARY_WARMERS
            if name in sys.modules and name not in _warmed]


def warm_libraries() -> None:
    """Do the once-per-process set-up of the loaded libraries of :data:`LIBRARY_WARMERS`
    that the first stage calling them would do; one that fails is left for it."""
    for name, warm in _unwarmed():
        _warmed.add(name)
        try:
            warm()
        except Exception as exc:
            log.debug("warming %s failed: %s: %s", name, type(exc).__name__, exc)


def warm_in_background(modules: Sequence[str]) -> threading.Thread | None:
    """Start importing ``modules`` and warming the loaded libraries on a daemon thread
    (None when there is nothing to do); the caller joins it before running anything
    that may import them too."""
    missing = [m for m in modules if m not in sys.modules]
    if not missing and not _unwarmed():
        return None
    thread = threading.Thread(target=import_modules, args=(missing,), daemon=True,
                              name="runner-warm-imports")
    thread.start()
    return thread


def module_folders(modules: Iterable[str]) -> list[str]:
    """The folders that the (imported) ``modules`` were found in, outside the standard
    library and installed packages: what a worker process adds to ``sys.path`` to
    import the same modules as the driver, whatever its own start-up saw."""
    folders: list[str] = []
    for top in dict.fromkeys(m.split(".")[0] for m in modules):
        module = sys.modules.get(top)
        if module is None or top == "runner" or top in sys.stdlib_module_names:
            continue
        locations = list(getattr(module, "__path__", None) or [])
        origin = locations[0] if locations else getattr(module, "__file__", None)
        if not origin or any(part in ("site-packages", "dist-packages")
                             for part in Path(origin).parts):
            continue
        folders.append(str(Path(origin).parent))
    return list(dict.fromkeys(folders))
