"""What the cache tests run in other processes (spawned: importable by name).

Each worker opens the store itself, from its own working folder, as another
machine would: nothing is shared with the test process but the store and the key.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from runner.artifacts.objects import ObjectStore
from runner.artifacts.store import ArtifactStore
from runner.cache.entries import read_entry, write_entry
from runner.cache.keys import step_key
from runner.cache.outputs import restore_outputs, store_outputs
from runner.context import SelectionContext
from runner.registry import StageRegistry


def double(context: Any) -> Any:
    """The stage whose step the workers cache (never run: only its key counts)."""
    context.params = {**context.params, "doubled": True}
    return context


REGISTRY = StageRegistry()
ENTRY = REGISTRY.register("test.double", double, reads=["params", "universe"])


def big_payload(seed: int, size: int) -> bytes:
    """Bytes large enough that a torn write would show (several MB)."""
    return bytes((seed + i * 7) % 251 for i in range(256)) * (size // 256)


def put_many(url: str, options: dict[str, Any], cwd: str, seed: int, size: int,
             rounds: int) -> list[str]:
    """Put the same object ``rounds`` times; return the digests seen."""
    os.chdir(cwd)
    objects = ObjectStore(ArtifactStore(url, options))
    data = big_payload(seed, size)
    return [objects.put_bytes(data).digest for _ in range(rounds)]


def frame(rows: int) -> pd.DataFrame:
    return pd.DataFrame({"x": [float(i) for i in range(rows)],
                         "y": [i % 3 for i in range(rows)]})


def fill_entry(url: str, options: dict[str, Any], cwd: str, rows: int) -> dict[str, Any]:
    """One "machine": compute the step's key, restore it when the entry is there, else
    store the outputs and write the entry. What it did and what it got."""
    os.chdir(cwd)
    store = ArtifactStore(url, options)
    objects = ObjectStore(store)
    context = SelectionContext(run_id=f"run-{os.getpid()}", universe=["A", "B"],
                               params={"rows": rows})
    key = step_key(ENTRY, context)
    found = read_entry(store, ENTRY.name, key.key)
    if found is not None:
        values = restore_outputs(objects, found.outputs)
        return {"key": key.key, "hit": True, "wrote": False,
                "frame": values["result"].to_dict(), "note": values["note"]}
    refs = store_outputs(objects, {"result": frame(rows), "note": ("a", "tuple")})
    wrote = write_entry(store, key, refs, runner_version="test")
    again = read_entry(store, ENTRY.name, key.key)
    assert again is not None
    values = restore_outputs(objects, again.outputs)
    return {"key": key.key, "hit": False, "wrote": wrote,
            "frame": values["result"].to_dict(), "note": values["note"]}
