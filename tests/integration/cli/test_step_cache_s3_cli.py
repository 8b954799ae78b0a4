"""``runner cache list|clear`` on S3 (moto): the step cache lives in the artifact store,
so what one machine filled is listed and cleared from another."""

from __future__ import annotations

import json

from tests.unit.cli.test_cli import cli
from tests.unit.cli.test_step_cache_cli import CACHED, fill_first_step

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def test_cache_list_and_clear_on_s3(s3_root, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps(CACHED))
    fill_first_step(tmp_path, tmp_path / "manifest.json", "ok", store_url=s3_root.url,
                    storage_options=s3_root.storage_options)
    fill_first_step(tmp_path, tmp_path / "manifest.json", "clash", store_url=s3_root.url,
                    storage_options=s3_root.storage_options)
    store = ["--artifacts", s3_root.url, "--storage-option",
             f"endpoint_url={s3_root.server.endpoint}"]
    elsewhere = tmp_path / "another-machine"
    elsewhere.mkdir()
    listed = cli("cache", "list", "--json", *store, cwd=elsewhere, env=KEYS)
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["store"].startswith("s3://")
    assert sorted(e["stage"] for e in doc["entries"]) == ["log.a", "value.1"]
    cleared = cli("cache", "clear", "--stage", "value.1", "--yes", *store, cwd=elsewhere, env=KEYS)
    assert cleared.returncode == 0, cleared.stderr
    assert "deleted 1 entry of stage 'value.1'" in cleared.stderr
    left = json.loads(cli("cache", "list", "--json", *store, cwd=elsewhere, env=KEYS).stdout)
    assert [e["stage"] for e in left["entries"]] == ["log.a"]
    empty = cli("cache", "clear", "--all", "--yes", *store, cwd=elsewhere, env=KEYS)
    assert empty.returncode == 0 and "deleted 1 entry" in empty.stderr
    nothing = cli("cache", "list", *store, cwd=elsewhere, env=KEYS)
    assert nothing.returncode == 0 and "no step-cache entries" in nothing.stderr
