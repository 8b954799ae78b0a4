"""Draw a plan: Mermaid text, and Graphviz DOT for ``dot -Tsvg``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runner.orchestration.plan import (
    AdapterStep,
    Branch,
    ParallelGroup,
    PipelineStep,
    Plan,
    StageStep,
    Step,
)

__all__ = ["outline", "render_dot", "render_mermaid"]


def outline(plan: Plan) -> dict[str, Any]:
    """The plan as plain nested data (kept in run.json, drawn by ``runner report``).

    Every node has ``kind`` (pipeline, stage, adapter, group, branch), ``name``
    and ``path``; containers have ``children`` in plan order.
    """

    def node(item: Step | Branch) -> dict[str, Any]:
        if isinstance(item, PipelineStep):
            return {"kind": "pipeline", "name": item.pipeline, "path": item.path,
                    "children": [node(s) for s in item.steps]}
        if isinstance(item, ParallelGroup):
            return {"kind": "group", "name": item.name, "path": item.path,
                    "merge": item.merge_adapter.name if item.merge_adapter else "merge",
                    "children": [node(b) for b in item.branches]}
        if isinstance(item, Branch):
            return {"kind": "branch", "name": item.label, "path": item.path,
                    "children": [node(s) for s in item.steps]}
        kind = "adapter" if isinstance(item, AdapterStep) else "stage"
        assert isinstance(item, StageStep | AdapterStep)
        return {"kind": kind, "name": item.name, "path": item.path}

    return {"kind": "pipeline", "name": plan.pipeline, "path": plan.pipeline,
            "children": [node(s) for s in plan.steps]}


@dataclass
class _Drawing:
    """Nodes, clusters and edges of a plan, independent of the output syntax."""

    nodes: list[tuple[str, str, str]] = field(default_factory=list)  # id, label, shape
    edges: list[tuple[str, str]] = field(default_factory=list)
    lines: list[tuple[str, str, str]] = field(default_factory=list)  # ("node"|"open"|"close", ..)

    def node(self, label: str, shape: str) -> str:
        nid = f"n{len(self.nodes)}"
        self.nodes.append((nid, label, shape))
        self.lines.append(("node", nid, ""))
        return nid

    def connect(self, tails: list[str], head: str) -> None:
        self.edges.extend((t, head) for t in tails)

    def steps(self, steps: tuple[Step, ...], tails: list[str]) -> list[str]:
        for step in steps:
            if isinstance(step, PipelineStep):
                self.lines.append(("open", f"c{len(self.lines)}", step.pipeline))
                tails = self.steps(step.steps, tails)
                self.lines.append(("close", "", ""))
            elif isinstance(step, ParallelGroup):
                ends: list[str] = []
                for branch in step.branches:
                    ends += self.steps(branch.steps, tails)
                label = step.merge_adapter.name if step.merge_adapter else "merge"
                merge = self.node(label, "merge")
                self.connect(ends, merge)
                tails = [merge]
            else:
                nid = self.node(step.name, "adapter" if isinstance(step, AdapterStep) else "stage")
                self.connect(tails, nid)
                tails = [nid]
        return tails


def _draw(plan: Plan) -> _Drawing:
    drawing = _Drawing()
    drawing.steps(plan.steps, [])
    return drawing


def _mermaid_lines(plan: Plan) -> Iterator[str]:
    d = _draw(plan)
    shapes = {"stage": '["{}"]', "adapter": '[/"{}"/]', "merge": '{{{{"{}"}}}}'}
    labels = {nid: (label, shape) for nid, label, shape in d.nodes}
    yield "flowchart TD"
    depth = 1
    for kind, ident, title in d.lines:
        pad = "    " * depth
        if kind == "open":
            yield f'{pad}subgraph {ident}["{title}"]'
            depth += 1
        elif kind == "close":
            depth -= 1
            yield "    " * depth + "end"
        else:
            label, shape = labels[ident]
            yield pad + ident + shapes[shape].format(label.replace('"', "'"))
    for a, b in d.edges:
        yield f"    {a} --> {b}"


def render_mermaid(plan: Plan) -> str:
    """The plan as a Mermaid flowchart: stages, adapters, merges, nested pipelines."""
    return "\n".join(_mermaid_lines(plan)) + "\n"


def render_dot(plan: Plan) -> str:
    """The plan as a Graphviz digraph."""
    d = _draw(plan)
    shapes = {"stage": "box", "adapter": "parallelogram", "merge": "diamond"}
    labels = {nid: (label, shape) for nid, label, shape in d.nodes}
    out = [f"digraph {json.dumps(plan.pipeline)} {{", "  rankdir=TB;",
           '  node [fontname="Helvetica"];']
    for kind, ident, title in d.lines:
        if kind == "open":
            out.append(f"  subgraph cluster_{ident} {{ label={json.dumps(title)};")
        elif kind == "close":
            out.append("  }")
        else:
            label, shape = labels[ident]
            out.append(f"  {ident} [label={json.dumps(label)}, shape={shapes[shape]}];")
    out += [f"  {a} -> {b};" for a, b in d.edges]
    out.append("}")
    return "\n".join(out) + "\n"
