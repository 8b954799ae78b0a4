"""typer's rich help loads without rich.markdown and rich.traceback, and what needs
them still gets the real classes (runner.cli.help)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import runner.cli.root  # the app installs the deferral
import typer.rich_utils as rich_utils
from typer.models import DeveloperExceptionConfig
before = [m for m in ("rich.markdown", "rich.traceback") if m in sys.modules]
md = rich_utils._make_rich_text(text="**bold**", markup_mode="markdown")
try:
    raise ValueError("boom")
except ValueError as exc:
    tb = rich_utils.get_traceback(exc, DeveloperExceptionConfig(), [])
import rich.markdown, rich.traceback
print(before, type(md) is rich.markdown.Markdown, type(tb) is rich.traceback.Traceback,
      sys.modules["rich.markdown"] is rich.markdown)
"""


def test_the_stand_ins_turn_into_the_real_classes_when_used() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.split() == ["[]", "True", "True", "True"], proc.stderr


def test_usage_errors_still_get_typers_panel() -> None:
    proc = subprocess.run([sys.executable, "-m", "runner.cli", "nosuch"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "No such command 'nosuch'" in proc.stderr
    assert "╭─ Error" in proc.stderr
