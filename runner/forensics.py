"""The engine's forensics interface: where a failed run's evidence goes.

The engine holds only this protocol and no path of its own; the front door (the
SDK, the CLI) wires in the writer, :class:`runner.artifacts.forensics.StoreForensics`,
which writes ``error_context.pkl`` and ``error.json`` under
``summaries/runs/<RUN_ID>/`` of the artifact store, where the seed design puts them.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["ForensicsWriter"]


class ForensicsWriter(Protocol):
    """Where the engine puts a failed run's forensics; returns the pickle's location."""

    def write(self, run_id: str, context: Any, info: dict[str, Any]) -> str | None: ...
