"""What ``runner run`` says a run came up with: the final context's ``report()``.

Results are the command's output, so they go to stdout (``runner run alpha.full >
out.txt`` keeps them; progress and status stay on stderr). With ``--log-format
json`` they are one log line, event ``run_result``; ``--json`` carries them in
its single object under ``result``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runner.cli.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["log_results", "print_results"]

TOP = 10
"""Rows shown of a long table (the rest counted), e.g. the weights of a large universe."""


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_results(report: Mapping[str, Any], console: Console, *, top: int = TOP) -> None:
    """The report as text: a table per mapping (its first ``top`` rows), a line per
    plain value."""
    from rich.table import Table

    for title, body in report.items():
        if isinstance(body, Mapping) and body:
            table = Table(box=None, title=str(title), title_justify="left", show_header=False)
            for key, value in list(body.items())[:top]:
                table.add_row(escape(str(key)), escape(_shown(value)))
            if len(body) > top:
                table.add_row(f"... {len(body) - top} more", "")
            console.print(table)
        else:
            console.print(f"[bold]{escape(str(title))}[/]: {escape(_shown(body))}")


def log_results(report: Mapping[str, Any], *, run_id: str, trace_id: str | None) -> None:
    """The report as one JSON log line (event ``run_result``, the report under ``result``)."""
    logging.getLogger("runner").info(
        "run %s results", run_id,
        extra={"event": "run_result", "result": dict(report), "run_id": run_id,
               "trace_id": trace_id})
