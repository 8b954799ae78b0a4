"""The SDK's own run hooks: the run's spans written when it ends, and its lease given back.

:class:`~runner.sdk.QuantSDK` adds them to every run it wires with checkpoints.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from runner.artifacts import ArtifactStore, RunLease
from runner.artifacts.spans import write_spans
from runner.orchestration.hooks import RunHook
from runner.orchestration.plan import Step
from runner.orchestration.records import RunInfo, RunResult
from runner.telemetry import encode_jsonl

__all__ = ["ReleaseLock", "SpansWriter"]

log = logging.getLogger("runner")


class SpansWriter:
    """Writes a run's spans to ``runs/<RUN_ID>/spans.jsonl`` when the run ends."""

    def __init__(self, store: ArtifactStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id

    def __call__(self, spans: list[dict[str, Any]]) -> None:
        try:
            write_spans(self.store, self.run_id, encode_jsonl(spans))
        except Exception as exc:
            log.error("could not write the spans of run %s to %s: %s", self.run_id,
                      self.store.url, exc)


class ReleaseLock(RunHook):
    """Gives the run id back when the run ends, however it ends (an abort included);
    stops the run at the next step once its lease was lost (another process took
    the run over)."""

    def __init__(self, lock: RunLease) -> None:
        self.lock = lock
        self._once = threading.Lock()
        self._released = False

    def on_step_start(self, run: RunInfo, step: Step) -> None:
        self.lock.check()

    def on_run_end(self, run: RunInfo, result: RunResult | None,
                   error: BaseException | None) -> None:
        self._release()

    def on_run_abort(self, run: RunInfo, error: BaseException) -> None:
        self._release()

    def _release(self) -> None:
        with self._once:
            if self._released:
                return
            self._released = True
            self.lock.release()
