"""A stage failing on a Ray worker, through the CLI on a researcher's folder: the
user's frame and short traceback are formatted on the worker and reach the terminal
as on every other executor, and with ``--json`` stdout is the JSON object only,
whatever the driver and the Ray workers print."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.raycluster import child_env, require_ray
from tests.unit.cli.test_user_errors import LOOKUP_LINE, MANIFEST, SIGNAL_LINE, STAGES

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_stage_failing_on_ray_shows_the_users_frames_and_json_stays_clean(tmp_path):
    require_ray()
    (tmp_path / "my_stages.py").write_text(STAGES)
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST))
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "run", "fanout", "-m", "manifest.json",
         "-e", "ray", "--json", "--run-id", "ray-bad"],
        cwd=tmp_path, env=child_env({"RAY_ADDRESS": ""}), capture_output=True, text=True,
        timeout=600, check=False)
    assert proc.returncode == 1, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)  # the object only, though the stages printed
    assert doc["status"] == "failed" and "KeyError: 'momentum'" in doc["error"]
    assert doc["where"] == f"my_stages.py line {LOOKUP_LINE}, in lookup"
    assert f'File "my_stages.py", line {SIGNAL_LINE}, in signal' in doc["traceback"]
    assert "runner/orchestration" not in doc["traceback"]
    assert doc["resume_command"].endswith("-e ray --json --resume --run-id ray-bad")
    assert "preparing the data" in proc.stderr  # the driver's stage
    # a Ray worker's prints reach the driver when Ray forwards them (maybe after the
    # run ended): never on stdout, which json.loads above proves
    block = proc.stderr[proc.stderr.index("error: stage 'signal'"):].splitlines()
    assert block[1] == f"  at my_stages.py line {LOOKUP_LINE}, in lookup"
