"""The driver's side of executors whose branches run elsewhere (:mod:`.executors.remote`)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from types import SimpleNamespace

import pytest

from runner.orchestration.executors.remote import RemoteExecutor
from runner.orchestration.tasks import BranchOutcome, BranchTask, CancelFlag, GroupTask


class Recording(RemoteExecutor):
    """Sends nothing: notes whether the driver's imports had started when it was called,
    and again once it said a core was free for them."""

    def __init__(self, module: str, *, when_sent: bool) -> None:
        self.defer_warming = when_sent
        self.module = module
        self.seen: list[bool] = []

    def dispatch(self, tasks: Sequence[BranchTask], cancel: CancelFlag,
                 ) -> Iterator[BranchOutcome]:
        warming = self._warming
        self.seen.append(warming is not None)
        self.start_warming()
        self.seen.append(self._warming is not None)
        for task in tasks:
            yield BranchOutcome(task.branch.index)


@pytest.fixture
def module(tmp_path, monkeypatch) -> Iterator[str]:
    name = "remote_warm_probe"
    (tmp_path / f"{name}.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def group(module: str) -> GroupTask:
    tasks = [BranchTask(branch=SimpleNamespace(index=i), context=None, run=None)
             for i in range(2)]
    return GroupTask(tasks=tasks, cancel=threading.Event(), warm=[module])


@pytest.mark.parametrize("when_sent", [False, True])
def test_the_driver_imports_what_follows_the_group_before_its_end(module, when_sent):
    executor = Recording(module, when_sent=when_sent)
    outcomes = list(executor.run_branches(group(module)))
    assert [o.index for o in outcomes] == [0, 1]
    assert module in sys.modules  # joined before the merge
    # by default from the start of the group; when deferred, once dispatch says so
    assert executor.seen == ([True, True] if not when_sent else [False, True])
