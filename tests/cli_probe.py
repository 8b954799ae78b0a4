"""Run the CLI in a fresh interpreter and read back what it imported.

``probe(args, cwd=..., out=...)`` runs ``runner ARGS`` through ``runner.cli.main``
in a subprocess and returns its exit code, the modules it had loaded at exit and
the finished process: the import tests and the check-cache tests read
``sys.modules`` rather than time anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
out = sys.argv[2]
sys.argv = ["runner", *json.loads(sys.argv[1])]
from runner.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as fh:
    json.dump({"code": code or 0, "modules": sorted(sys.modules)}, fh)
"""


def probe(args: Sequence[str], *, cwd: Path, out: Path
          ) -> tuple[int, set[str], subprocess.CompletedProcess[str]]:
    """``runner ARGS`` in a subprocess from ``cwd``; its exit code, modules, process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args)), str(out)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert out.exists(), proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    return int(doc["code"]), set(doc["modules"]), proc
