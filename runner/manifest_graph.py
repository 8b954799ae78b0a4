"""The include graph of a manifest: cycles, nesting depth and expanded size, in linear time.

Pipelines name other pipelines as steps, so a manifest is a graph whose paths
can multiply: pipeline L0 including L1 twice, L1 including L2 twice, and so on,
expands to 2^n stages from n short lines. Everything here visits each pipeline
and each reference once (depth first, with an explicit stack, memoised), so
checking costs as much as the manifest is long, never as much as it expands to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runner.errors import Problem
from runner.manifest_json import MAX_NESTING, format_path

__all__ = ["MAX_PLAN_STEPS", "Ref", "count_stage_steps", "graph_problems", "iter_refs"]

MAX_PLAN_STEPS = 10_000
"""Most stage steps one pipeline may expand to once its nested pipelines are opened."""

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Ref:
    """A name used as a step, with the JSON path where it appears."""

    name: str
    loc: Loc

    @property
    def groups(self) -> int:
        """How many parallel groups enclose the reference inside its own pipeline:
        ``steps[i]`` none, ``steps[i][j]`` and ``steps[i][j][k]`` one, and so on."""
        return (len(self.loc) - 3) // 2


def iter_refs(steps: Sequence[Any], loc: Loc) -> Iterator[Ref]:
    """Every name in a (validated) step list, depth first, with its location."""
    stack: list[tuple[Any, Loc]] = [(steps, loc)]
    while stack:
        node, here = stack.pop()
        if isinstance(node, str):
            yield Ref(node, here)
        else:
            stack.extend((node[i], (*here, i)) for i in reversed(range(len(node))))


def _edges(pipelines: Mapping[str, Sequence[Any]]) -> dict[str, list[Ref]]:
    return {name: list(iter_refs(steps, ("pipelines", name, "steps")))
            for name, steps in pipelines.items()}


def _postorder(edges: Mapping[str, list[Ref]]) -> tuple[list[str], list[Problem]]:
    """Pipelines with the ones they include first, and one problem per cycle found.

    A cycle is reported once, at the reference from its first pipeline (in the
    order the search met them) to the next one.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    order: list[str] = []
    problems: list[Problem] = []
    reported: set[frozenset[str]] = set()
    for root in edges:
        if root in state:
            continue
        path: list[str] = [root]
        taken: list[Ref] = []  # taken[i]: the reference from path[i] to path[i + 1]
        todo: list[Iterator[Ref]] = [iter(edges[root])]
        state[root] = 1
        while todo:
            ref = next(todo[-1], None)
            if ref is None:
                todo.pop()
                done = path.pop()
                state[done] = 2
                order.append(done)
                if taken:
                    taken.pop()
                continue
            if ref.name not in edges or state.get(ref.name) == 2:
                continue
            if state.get(ref.name) == 1:
                start = path.index(ref.name)
                cycle = [*path[start:], ref.name]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    where = taken[start] if start < len(taken) else ref
                    problems.append(Problem(format_path(where.loc),
                                            "pipeline includes itself: " + " -> ".join(cycle)))
                continue
            state[ref.name] = 1
            path.append(ref.name)
            taken.append(ref)
            todo.append(iter(edges[ref.name]))
    return order, problems


def _depth_problems(edges: Mapping[str, list[Ref]], order: list[str]) -> list[Problem]:
    """Pipelines nesting more than :data:`MAX_NESTING` levels of pipelines and groups.

    Only the innermost offenders are reported (every pipeline including one of
    them is too deep as well), each at the step that makes it too deep.
    """
    depth: dict[str, int] = {}
    deepest: dict[str, Ref | None] = {}
    problems: list[Problem] = []
    for name in order:
        best, best_ref = 0, None
        for ref in edges[name]:
            level = ref.groups + (1 + depth[ref.name] if ref.name in edges else 0)
            if level > best:
                best, best_ref = level, ref
        depth[name], deepest[name] = best, best_ref
        inner_ok = all(depth[r.name] <= MAX_NESTING for r in edges[name] if r.name in edges)
        if best > MAX_NESTING and inner_ok and best_ref is not None:
            chain: list[str] = [name]
            step: Ref | None = best_ref
            while step is not None and step.name in edges:
                chain.append(step.name)
                step = deepest[step.name]
            shown = chain if len(chain) <= 8 else [*chain[:4], "...", *chain[-3:]]
            problems.append(Problem(
                format_path(best_ref.loc),
                f"nested pipelines and parallel groups nest {best} levels deep here, more "
                f"than the limit of {MAX_NESTING}: {' -> '.join(shown)}"))
    return problems


def graph_problems(pipelines: Mapping[str, Sequence[Any]]) -> list[Problem]:
    """Cycles among pipelines, then (for an acyclic manifest) over-deep nesting."""
    edges = _edges(pipelines)
    order, problems = _postorder(edges)
    if problems:
        return problems
    return _depth_problems(edges, order)


def count_stage_steps(pipelines: Mapping[str, Sequence[Any]]) -> dict[str, int]:
    """How many stage steps each pipeline runs once its nested pipelines are expanded.

    Exact (Python integers), computed once per pipeline: a diamond of 30 levels
    is counted in 31 sums. A pipeline on a cycle counts the cycle once.
    """
    edges = _edges(pipelines)
    order, _ = _postorder(edges)
    counts: dict[str, int] = {}
    for name in order:
        counts[name] = sum(counts.get(r.name, 0) if r.name in edges else 1
                           for r in edges[name])
    return counts
