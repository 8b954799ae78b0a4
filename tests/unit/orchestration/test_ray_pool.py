"""The warm Ray pool's choices that need no Ray: which branches go to it, and the code
fingerprint that retires a pool when the code its actors loaded changes."""

from __future__ import annotations

import importlib
import os
import sys

import pytest

from runner.orchestration.executors.ray_pool import code_key, pool_enabled, poolable


def test_only_branches_asking_for_nothing_run_on_the_pool():
    assert poolable({})
    assert poolable({"num_cpus": 0, "max_retries": 0})
    for asked in ({"num_cpus": 2}, {"num_gpus": 1}, {"memory": 10**9},
                  {"resources": {"node2": 1}}, {"max_retries": 1}):
        assert not poolable(asked), asked


@pytest.mark.parametrize(("value", "on"), [(None, True), ("1", True), ("0", False),
                                           ("off", False), ("no", False)])
def test_the_pool_can_be_turned_off(monkeypatch, value, on):
    if value is None:
        monkeypatch.delenv("RUNNER_RAY_POOL", raising=False)
    else:
        monkeypatch.setenv("RUNNER_RAY_POOL", value)
    assert pool_enabled() is on


def test_the_code_key_changes_with_a_loaded_module_file_and_the_modules_asked(tmp_path,
                                                                             monkeypatch):
    module = tmp_path / "pool_key_probe.py"
    module.write_text("VALUE = 1\n")
    os.utime(module, ns=(1_000_000_000, 1_000_000_000))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("pool_key_probe")
    try:
        before = code_key(["pool_key_probe"])
        assert code_key(["pool_key_probe"]) == before  # stable while nothing changes
        assert code_key(["pool_key_probe", "sklearn"]) != before
        module.write_text("VALUE = 2\n")  # same size: the edit shows in the mtime
        os.utime(module, ns=(2_000_000_000, 2_000_000_000))
        assert code_key(["pool_key_probe"]) != before
    finally:
        sys.modules.pop("pool_key_probe", None)
