"""Read manifest JSON text into plain data, within bounds, every problem at its JSON path.

The manifest is parsed before anything trusts its shape, so this module keeps
what a hostile or generated file could blow up within fixed limits: the size of
the text, how deep objects and lists nest (how many parallel groups nest inside
one another, in particular) and how long a number may be. Past a limit the
manifest is refused with one :class:`Problem` naming where; nothing downstream
(pydantic, the plan compiler, the engine, the report) then meets a structure
deep enough to exhaust Python's recursion limit. Every walk here is iterative.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from runner.errors import Problem
from runner.words import plural

__all__ = [
    "DEFAULT_MANIFEST",
    "MAX_JSON_DEPTH",
    "MAX_MANIFEST_BYTES",
    "MAX_NESTING",
    "MAX_NUMBER_DIGITS",
    "MAX_PROBLEMS",
    "JSONProblems",
    "capped",
    "default_manifest",
    "format_path",
    "read_json",
]

DEFAULT_MANIFEST = "configs/manifest.json"


def default_manifest() -> str:
    """The manifest used when none is named: ``RUNNER_MANIFEST``, else the default
    (here, not in :mod:`runner.manifest`: the command line needs it without pydantic)."""
    return os.environ.get("RUNNER_MANIFEST", DEFAULT_MANIFEST)


MAX_NESTING = 32
"""Most levels of nested pipelines and parallel groups on any path of a plan."""
MAX_JSON_DEPTH = 2 * MAX_NESTING + 16
"""Most levels of JSON objects and lists anywhere (steps at the nesting limit fit)."""
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""Largest manifest text: generated manifests stay far below it."""
MAX_NUMBER_DIGITS = 30
"""Longest number literal (digits and exponent); an int64 has 19 digits."""
MAX_PROBLEMS = 100
"""Most problems one error lists; the rest are counted."""
_LONGEST_PART = 200


def capped(problems: list[Problem]) -> list[Problem]:
    """The first :data:`MAX_PROBLEMS` problems, and how many more there were."""
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS],
            Problem("", f"... and {plural(more, 'more problem', 'more problems', sep=',')}")]


class JSONProblems(Exception):
    """The text is not a manifest-shaped JSON document within the limits."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(map(str, self.problems)))


_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(loc: Iterable[str | int]) -> str:
    """``("pipelines", "alpha.full", "steps", 2)`` -> ``pipelines."alpha.full".steps[2]``.

    A key longer than any valid name is shortened, so a path stays one short line.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = part if len(part) <= _LONGEST_PART else (
                f"{part[:40]}...({len(part):,} characters)")
            text = key if _BARE.match(key) else json.dumps(key)
            out += f".{text}" if out else text
    return out


class _Pairs(dict[str, Any]):
    """A JSON object that remembers keys given more than once."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _Pairs:
    obj = _Pairs()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj and key not in obj.duplicates:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


@dataclass(frozen=True)
class _BadNumber:
    """A number literal kept out of Python's numbers, reported at its path later."""

    literal: str
    reason: str


def _short(literal: str) -> str:
    return literal if len(literal) <= 24 else f"{literal[:12]}...({len(literal)} characters)"


def _parse_int(literal: str) -> int | _BadNumber:
    if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:  # also spares int() its quadratic cost
        return _BadNumber(literal, f"has more than {MAX_NUMBER_DIGITS} digits")
    return int(literal)


def _parse_float(literal: str) -> float | _BadNumber:
    if len(literal.lstrip("-")) > MAX_NUMBER_DIGITS:
        return _BadNumber(literal, f"has more than {MAX_NUMBER_DIGITS} characters")
    value = float(literal)
    if not math.isfinite(value):
        return _BadNumber(literal, "is out of range")
    return value


def _parse_constant(literal: str) -> _BadNumber:
    return _BadNumber(literal, "is not a JSON number (NaN and Infinity are not allowed)")


def read_json(text: str) -> tuple[Any, list[Problem]]:
    """Parse manifest text; raise :class:`JSONProblems` for anything past the limits.

    Returns the data (objects as dicts, numbers as ``int``/``float``; steps nest
    at most :data:`MAX_NESTING` parallel groups) and the keys given more than
    once, which the caller reports with the other problems it finds.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_MANIFEST_BYTES:
        raise JSONProblems([Problem("", f"the manifest is {size:,} bytes, more than the limit "
                                        f"of {MAX_MANIFEST_BYTES:,}")])
    try:
        raw = json.loads(text, object_pairs_hook=_pairs_hook, parse_int=_parse_int,
                         parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise JSONProblems([Problem("", f"malformed JSON at line {exc.lineno}, column "
                                        f"{exc.colno}: {exc.msg}")]) from exc
    except RecursionError:
        raise JSONProblems([Problem("", f"the JSON nests more than {MAX_JSON_DEPTH} levels "
                                        f"deep{_where_too_deep(text)}")]) from None
    problems = list(_shape_problems(raw))
    if any(fatal for _, fatal in problems):
        raise JSONProblems(problem for problem, _ in problems)
    return raw, [problem for problem, _ in problems]


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _where_too_deep(text: str) -> str:
    """Where the text first opens more than :data:`MAX_JSON_DEPTH` brackets, for text
    too deep for the JSON parser to say where."""
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                line = text.count("\n", 0, match.start()) + 1
                column = match.start() - text.rfind("\n", 0, match.start())
                return f" (at line {line}, column {column})"
        elif token in "]}":
            depth -= 1
    return ""


Loc = tuple[str | int, ...]


def _shape_problems(raw: Any) -> Iterator[tuple[Problem, bool]]:
    """Duplicate keys, bad numbers and over-deep nesting, depth first, without recursion.

    ``steps`` counts list levels: a list at level 1, 3, 5... below a pipeline's
    ``steps`` is a parallel group. Nothing below an over-deep node is visited.
    """
    stack: list[tuple[Any, Loc, int, int | None]] = [(raw, (), 0, None)]
    while stack:
        node, loc, depth, level = stack.pop()
        if isinstance(node, _BadNumber):
            message = f"the number {_short(node.literal)} {node.reason}"
            yield Problem(format_path(loc), message), True
            continue
        if not isinstance(node, dict | list):
            continue
        if level is not None and (level + 1) // 2 > MAX_NESTING:
            yield Problem(format_path(loc), f"parallel groups nest more than {MAX_NESTING} "
                                            "deep here (the limit)"), True
            continue
        if depth >= MAX_JSON_DEPTH:
            yield Problem(format_path(loc), f"the JSON nests more than {MAX_JSON_DEPTH} levels "
                                            "deep here (the limit)"), True
            continue
        children: list[tuple[Any, Loc, int, int | None]] = []
        if isinstance(node, dict):
            for key in getattr(node, "duplicates", ()):
                yield Problem(format_path((*loc, key)), "key given more than once"), False
            steps_here = len(loc) == 2 and loc[0] == "pipelines"
            for key, value in node.items():
                inner = 0 if steps_here and key == "steps" and isinstance(value, list) else None
                children.append((value, (*loc, key), depth + 1, inner))
        else:
            for i, value in enumerate(node):
                inner = level + 1 if level is not None and isinstance(value, list) else None
                children.append((value, (*loc, i), depth + 1, inner))
        stack.extend(reversed(children))
