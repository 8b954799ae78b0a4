"""The public API is curated: what ``runner`` exports is exactly ``__all__``."""

from __future__ import annotations

from types import ModuleType

import runner


def test_all_is_curated_and_importable():
    public = {
        name for name in dir(runner)
        if not name.startswith("_") and not isinstance(getattr(runner, name), ModuleType)
    }
    assert public == set(runner.__all__)
    for name in runner.__all__:
        assert getattr(runner, name) is not None


def test_error_tree_has_one_root():
    for name in runner.__all__:
        obj = getattr(runner, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, runner.RunnerError), name
    assert runner.StageFailedError.exit_code == 1
    assert runner.ContextCollisionError.exit_code == 1
    assert runner.ManifestError.exit_code == 2
    assert runner.PlanError.exit_code == 2
