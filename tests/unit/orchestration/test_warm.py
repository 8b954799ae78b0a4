"""What the driver does ahead, off the critical path: imports and libraries' set-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys

FIRST_FIT = r"""
import importlib.metadata, json, subprocess, sys
import numpy as np
from runner.orchestration.warm import import_modules
if sys.argv[1] == "warm":
    import_modules(["sklearn.cluster"])
else:
    import sklearn.cluster
seen = []
entry_points, run = importlib.metadata.entry_points, subprocess.run
importlib.metadata.entry_points = lambda *a, **k: (seen.append("entry points"),
                                                   entry_points(*a, **k))[1]
subprocess.run = lambda *a, **k: (seen.append("subprocess"), run(*a, **k))[1]
from sklearn.cluster import KMeans
KMeans(n_clusters=2, n_init=1, random_state=0).fit(np.arange(8.0).reshape(-1, 1))
print(json.dumps(sorted(set(seen))))
"""


def first_fit(how: str) -> list[str]:
    """What scikit-learn's first fit in a fresh process did once per process."""
    out = subprocess.run([sys.executable, "-c", FIRST_FIT, how], capture_output=True,
                         text=True, check=True, env=os.environ | {"PYTHONWARNINGS": ""})
    return list(json.loads(out.stdout))


def test_a_warmed_process_leaves_no_one_off_set_up_to_the_first_fit():
    """After ``import_modules`` (the driver's warming, the forkserver's preload) the
    first k-means fit neither reads entry points (narwhals' plugins) nor runs a
    subprocess (joblib counting physical cores); a cold process's first fit does."""
    assert first_fit("cold") == ["entry points", "subprocess"]
    assert first_fit("warm") == []


def test_warming_the_libraries_twice_does_their_set_up_once(monkeypatch):
    from runner.orchestration import warm

    calls: list[str] = []
    monkeypatch.setattr(warm, "_warmed", set())
    monkeypatch.setattr(warm, "LIBRARY_WARMERS", (("json", lambda: calls.append("json")),
                                                  ("not_loaded_lib", lambda: calls.append("x"))))
    thread = warm.warm_in_background(["json"])  # loaded, not yet warmed
    assert thread is not None
    thread.join()
    warm.warm_libraries()
    assert calls == ["json"]
    assert warm.warm_in_background(["json"]) is None  # nothing left to do
