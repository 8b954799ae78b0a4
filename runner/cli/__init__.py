"""The ``runner`` command line: one Typer app (:mod:`.app`) over one module per
command group.

- :mod:`.app`: the entry point, the one place an error becomes its exit code
  (through :func:`.output.say_error`); it imports :mod:`.root`, the typer app (its
  global options, the table of its commands, each module below imported when one of
  its commands is used, :mod:`.lazy`), unless :mod:`.quick` answers from a kept check;
- :mod:`.pipelines`: ``validate``, ``list``, ``schema``, ``graph``;
- :mod:`.run` (and :mod:`.run_report`, what a run says when it ends): ``run``;
- :mod:`.runs`: ``runs list|show|prune``, ``artifacts get``;
- :mod:`.traces`: ``trace``, ``report``;
- :mod:`.kube`: ``submit``, ``status``, ``logs``, ``cancel``, ``schedule``, ``unschedule``;
- shared: :mod:`.options` (options declared once), :mod:`.parsing` (``KEY=VALUE``, the
  SDK and store they open), :mod:`.output` (consoles, errors), :mod:`.json_stdout`
  (``--json``), and what keeps start-up fast: :mod:`.cache`, :mod:`.coerce`,
  :mod:`.help`, :mod:`.lazy`, :mod:`.quick`, :mod:`.format` (help that shows what to
  type).

Nothing is imported here: ``python -m runner.cli`` and the console script load
:mod:`.app`, and each command loads what it needs when it runs.
"""

from __future__ import annotations

from runner._lazy import lazy_getattr

__all__ = ["ExecutorName", "app", "globals_first", "main"]

__getattr__ = lazy_getattr(__name__, {
    "app": "runner.cli.root", "main": "runner.cli.app", "globals_first": "runner.cli.app",
    "ExecutorName": "runner.cli.run",
}, globals())
