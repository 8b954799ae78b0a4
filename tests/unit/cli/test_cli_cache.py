"""``runner list`` and ``runner validate`` reuse the outcome of a check that passed
while nothing it rests on changed, and check in full as soon as anything did
(runner.cli.cache). Checked on real CLI processes and on what they import."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from runner.cli import cache
from runner.digest import sha256_file
from tests.cli_probe import probe

STAGES = '''from runner.registry import stage
from runner.context import Context


@stage("prep", writes=["audit_trail"])
def prep(ctx: Context) -> Context:
    ctx.audit_trail = [*ctx.audit_trail, "prep"]
    return ctx
'''


def _project(tmp_path: Path) -> Path:
    (tmp_path / "mystages.py").write_text(STAGES)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"pipelines": {"p": {"steps": ["prep"],
                                                        "description": "one step"}},
                                    "stages": {"prep": "mystages:prep"}}))
    return manifest


def _run(tmp_path: Path, *args: str) -> tuple[dict[str, object], subprocess.CompletedProcess[str]]:
    out = tmp_path.parent / f"{tmp_path.name}-probe.json"  # not in the project's folder
    code, modules, proc = probe(args, cwd=tmp_path, out=out)
    return {"code": code, "full": "runner.manifest" in modules,
            "stages": "mystages" in modules, "pydantic": "pydantic" in modules,
            "typer": "typer" in modules}, proc


def test_a_check_that_passed_is_reused_without_importing_anything(tmp_path: Path) -> None:
    manifest = str(_project(tmp_path))
    first, proc1 = _run(tmp_path, "validate", "-m", manifest)
    again, proc2 = _run(tmp_path, "validate", "-m", manifest)
    assert first == {"code": 0, "full": True, "stages": True, "pydantic": True, "typer": True}
    assert again == {"code": 0, "full": False, "stages": False, "pydantic": False,
                     "typer": False}  # answered before the app loads (runner.cli.quick)
    assert proc1.stderr == proc2.stderr and "1 pipeline, 1 stage" in proc2.stderr
    listed, out1 = _run(tmp_path, "list", "-m", manifest)
    relisted, out2 = _run(tmp_path, "list", "-m", manifest)
    assert listed["full"] and not relisted["full"] and not relisted["pydantic"]
    assert not relisted["typer"]
    assert out1.stdout == out2.stdout and "one step" in out2.stdout
    as_json, out3 = _run(tmp_path, "list", "--json", "-m", manifest)
    assert not as_json["typer"] and json.loads(out3.stdout)["pipelines"][0]["name"] == "p"
    logged, out4 = _run(tmp_path, "list", "-m", manifest, "--log-level", "INFO")
    assert logged["typer"] and not logged["full"]  # not plain: the app parses it, kept
    assert out4.stdout == out1.stdout
    full, proc3 = _run(tmp_path, "validate", "-m", manifest, "--no-cache")
    assert full["full"] and full["stages"] and proc3.stderr == proc1.stderr


def test_an_edited_stage_module_is_checked_again_even_at_the_same_size(tmp_path: Path
                                                                      ) -> None:
    manifest = str(_project(tmp_path))
    module = tmp_path / "mystages.py"
    soon = time.time_ns() + 30 * 10**9  # modified as the outcome is kept, whenever it is
    os.utime(module, ns=(soon, soon))  # (within RACY_NS of it: its content is checked)
    assert _run(tmp_path, "validate", "-m", manifest)[0]["code"] == 0
    stat = module.stat()
    module.write_text(STAGES.replace("def prep(", "def prop("))
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    result, proc = _run(tmp_path, "validate", "-m", manifest)
    assert result["full"] and result["code"] == 2, proc.stderr
    assert "has no attribute 'prep'" in proc.stderr


def test_an_edited_manifest_or_a_new_module_beside_it_is_checked_again(tmp_path: Path
                                                                        ) -> None:
    manifest = _project(tmp_path)
    assert _run(tmp_path, "validate", "-m", str(manifest))[0]["code"] == 0
    (tmp_path / "other.py").write_text("x = 1\n")  # the folder changed: maybe a shadow
    result, _ = _run(tmp_path, "validate", "-m", str(manifest))
    assert result["full"]
    manifest.write_text(manifest.read_text().replace("one step", "two steps"))
    result, proc = _run(tmp_path, "list", "-m", str(manifest))
    assert result["full"] and "two steps" in proc.stdout


def test_a_failed_check_is_never_kept(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"pipelines": {"p": {"steps": ["nope"]}}}))
    cache = Path(os.environ["RUNNER_CACHE_DIR"])
    before = set(cache.glob("*.json"))
    for _ in range(2):
        result, proc = _run(tmp_path, "validate", "-m", str(manifest))
        assert result["code"] == 2 and result["full"] and "nope" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert set(cache.glob("*.json")) == before


def test_only_a_file_modified_near_the_keeping_is_read_again(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """Size and mtime are checked for every file; the content only for a file modified
    within RACY_NS of the keeping (an older one would show a later edit in its mtime)."""
    old, recent = tmp_path / "old.py", tmp_path / "recent.py"
    old.write_text("a = 1\n")
    recent.write_text("b = 2\n")
    hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(old, ns=(hour_ago, hour_ago))
    records = [[str(f), f.stat().st_size, f.stat().st_mtime_ns, sha256_file(str(f))]
               for f in (old, recent)]
    racy_from = time.time_ns() - cache.RACY_NS
    read: list[bytes] = []
    real = cache.digest_matches
    monkeypatch.setattr(cache, "digest_matches",
                        lambda data, sha: read.append(data) is None and real(data, sha))
    assert cache._files_unchanged(records, racy_from=racy_from)
    assert read == [b"b = 2\n"]  # the old file is trusted on its size and mtime
    stat = recent.stat()
    recent.write_text("b = 3\n")
    os.utime(recent, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    assert not cache._files_unchanged(records, racy_from=racy_from)
    read.clear()
    old.write_text("a = 2\n")  # now: a new mtime, found without reading the file
    assert not cache._files_unchanged(records[:1], racy_from=racy_from) and read == []
