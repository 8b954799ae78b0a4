"""The error tree drawn in ``runner.errors`` is the tree of classes, each exported, and
each exits with the code the drawing says, from the one table (issue 16 §3)."""

from __future__ import annotations

import importlib
import pkgutil
import re
import signal

import pytest

import runner
from runner.errors import (
    EXIT_CODES,
    INTERNAL_ERROR,
    Collision,
    ContextCollisionError,
    RunInterruptedError,
    RunnerError,
    UsageError,
    exit_code_of,
)

LINE = re.compile(r"^    (?P<indent>(?:[│ ]   )*)(?:[├└]── )?(?P<name>[A-Z]\w*Error)\b"
                  r"\s*(?:\[(?P<module>[\w.]+)\])?(?P<said>.*)$")
EXIT = re.compile(r"\(exit (\d+)(\+N)?\)$")


def _drawing() -> dict[str, tuple[str | None, str, int]]:
    """Each class drawn: its parent (None for the root), its module and its exit code
    (what the line says, else its parent's)."""
    import runner.errors as errors

    assert errors.__doc__ is not None
    drawn: dict[str, tuple[str | None, str, int]] = {}
    parents: list[str] = []
    for text in errors.__doc__.splitlines():
        line = LINE.match(text)
        if line is None:
            continue
        depth = len(line["indent"]) // 4 + (0 if line["name"] == "RunnerError" else 1)
        del parents[depth:]
        parent = parents[-1] if parents else None
        said = EXIT.search(line["said"].strip())
        code = int(said[1]) if said else drawn[parent][2] if parent else -1
        drawn[line["name"]] = (parent, line["module"] or "runner.errors", code)
        parents.append(line["name"])
    return drawn


def _classes() -> dict[str, type[RunnerError]]:
    """Every RunnerError subclass defined in runner/, after importing every module."""
    for info in pkgutil.walk_packages(runner.__path__, "runner."):
        importlib.import_module(info.name)
    found: dict[str, type[RunnerError]] = {}
    todo: list[type[RunnerError]] = [RunnerError]
    while todo:
        cls = todo.pop()
        if cls.__module__.split(".")[0] == "runner":
            assert found.setdefault(cls.__name__, cls) is cls, f"two {cls.__name__} classes"
        todo.extend(cls.__subclasses__())
    return found


def test_the_drawing_is_the_tree_of_classes_each_exported_where_it_says() -> None:
    drawn, classes = _drawing(), _classes()
    assert sorted(drawn) == sorted(classes)
    for name, cls in classes.items():
        parent, module, _ = drawn[name]
        bases = [b.__name__ for b in cls.__bases__ if issubclass(b, RunnerError)]
        assert bases == ([parent] if parent else []), name
        assert cls.__module__ == module, name
        public = importlib.import_module(module)
        assert name in public.__all__ and getattr(public, name) is cls, name
        assert name.endswith("Error"), name


def test_each_class_exits_with_the_code_drawn_from_the_one_table() -> None:
    drawn, classes = _drawing(), _classes()
    codes = {name: cls.exit_code for name, cls in classes.items()}
    assert codes == {name: code for name, (_, _, code) in drawn.items()}
    assert {cls.__name__: code for cls, code in EXIT_CODES.items()} == {
        "RunnerError": 2, "ExecutionError": 1, "InfrastructureError": 4,
        "StorageUnavailableError": 4, "RunInterruptedError": 128}
    for name, cls in classes.items():  # the table is the one place: no class sets its own
        assert "exit_code" not in vars(cls) or cls is RunnerError, name


@pytest.mark.parametrize(("error", "code"), [
    (UsageError("x"), 2),
    (ContextCollisionError([Collision("w", ("a", "b"))]), 1),
    (RunInterruptedError(run_id="r", signal_name="SIGTERM", signum=int(signal.SIGTERM)), 143),
    (RunInterruptedError(run_id="r", signal_name="SIGINT", signum=int(signal.SIGINT)), 130),
    (KeyboardInterrupt(), 130),
    (RuntimeError("a bug"), INTERNAL_ERROR),
])
def test_exit_code_of_an_error(error: BaseException, code: int) -> None:
    assert exit_code_of(error) == code
    if isinstance(error, RunnerError):
        assert error.exit_code == code


def test_a_collision_carries_its_run_as_typed_fields() -> None:
    error = ContextCollisionError([Collision("w", ("a", "b"))], group="p[1]", run_id="r1",
                                  error_context="file:///art/runs/r1/error", records=["s"])
    assert (error.group, error.run_id, error.error_context, error.records) == (
        "p[1]", "r1", "file:///art/runs/r1/error", ("s",))
    bare = ContextCollisionError([Collision("w", ("a", "b"))])
    assert (bare.run_id, bare.error_context, bare.records) == ("", None, ())


def _cause_chain(error: BaseException) -> list[type[BaseException]]:
    chain: list[type[BaseException]] = []
    cause = error.__cause__
    while cause is not None:
        chain.append(type(cause))
        cause = cause.__cause__
    return chain


def test_errors_raised_from_a_failure_keep_it_as_their_cause(tmp_path) -> None:
    """The one line says what is wrong; ``__cause__`` keeps what the library said."""
    import json

    from runner.artifacts.documents import parse_document
    from runner.errors import DataError, IntegrityError, ManifestError, RegistryError
    from runner.manifest import load_manifest, parse_manifest
    from runner.manifest_json import JSONProblems
    from runner.prices.params import param_float
    from runner.prices.read import read_price_file
    from runner.registry import import_object

    cases = [
        (lambda: load_manifest(tmp_path / "missing.json"), ManifestError, [FileNotFoundError]),
        (lambda: load_manifest(tmp_path), ManifestError, [IsADirectoryError]),
        (lambda: parse_manifest("{"), ManifestError, [JSONProblems, json.JSONDecodeError]),
        (lambda: import_object("json:nope"), RegistryError, [AttributeError]),
        (lambda: parse_document(b"{", where="run.json"), IntegrityError,
         [json.JSONDecodeError]),
        (lambda: read_price_file(str(tmp_path / "missing.csv")), DataError,
         [FileNotFoundError]),
        (lambda: param_float({"x": "a"}, "x", 1.0), ValueError, [ValueError]),
    ]
    for call, kind, chain in cases:
        with pytest.raises(kind) as info:
            call()
        assert _cause_chain(info.value) == chain, info.value


def _samples() -> list[RunnerError]:
    """One error of each class, its fields set."""
    from runner.errors import (
        ArtifactError,
        DataError,
        ExecutionError,
        InfrastructureError,
        IntegrityError,
        LeaseLostError,
        ManifestError,
        ModuleImportError,
        PlanError,
        Problem,
        RayUnavailableError,
        RegistryError,
        StageFailedError,
        StorageUnavailableError,
        UndeclaredReadError,
        UndeclaredWriteError,
        WorkerPoolError,
    )
    from runner.k8s.controller import RunFailedError, RunStatus
    from runner.k8s.errors import (
        ClusterError,
        ClusterUnavailableError,
        InvalidObjectError,
        NotFoundError,
    )

    return [
        RunnerError("r"), UsageError("u"), RegistryError("g"), InfrastructureError("i"),
        ExecutionError("e"), ClusterError("c", api_status=403, verb="create", resource="Job",
                                          name="runner-r1", namespace="research"),
        NotFoundError("n"),
        ClusterUnavailableError("away", server="https://k8s:6443", verb="get", resource="jobs",
                                name="runner-r1", namespace="research"),
        InvalidObjectError("bad", fields=(("spec.x", "required"),)),
        ManifestError("m.json", [Problem("pipelines.p", "bad")]),
        ModuleImportError("boom", module="my_stages", where="my_stages.py line 3"),
        PlanError([Problem("steps[0]", "unknown")], source="m.json"),
        DataError("prices.csv", "too few rows", expected="250 rows"),
        ArtifactError("gone", url="s3://b/x", missing=True),
        IntegrityError("tampered", url="s3://b/y"),
        StorageUnavailableError("away", url="s3://b/z"),
        RayUnavailableError("no Ray", address="ray://head:10001"),
        WorkerPoolError("no pool", workers=2, start_method="forkserver"),
        StageFailedError(run_id="r1", stage="s", path="p[0]", exc_type="ValueError",
                         message="no", traceback="tb", error_context="file:///e",
                         where="my.py line 1", user_traceback="utb"),
        LeaseLostError("taken", run_id="r1"),
        ContextCollisionError([Collision("w", ("a", "b"), "x")], group="p[1]", run_id="r1",
                              error_context="file:///e", records=("rec",)),
        UndeclaredWriteError(stage="s", fields=["a"], declared=["b"]),
        UndeclaredReadError(stage="s", param="tilt", declared=["signal_clip"]),
        RunFailedError("failed", status=RunStatus(run_id="r1", job="runner-r1", phase="failed",
                                                  active=0, succeeded=0, failed=1,
                                                  reason="OOM")),
        RunInterruptedError(run_id="r1", signal_name="SIGTERM", signum=15,
                            completed=("a",), total=3, forced=True),
    ]


def test_every_error_crosses_a_process_boundary_whole() -> None:
    """Pickled as a worker process or Ray sends it: same class, message, fields."""
    import pickle

    samples = _samples()
    assert sorted(type(e).__name__ for e in samples) == sorted(_classes())
    for error in samples:
        error.add_note("a note")
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (str(back), back.args, vars(back)) == (str(error), error.args, vars(error))
        assert back.exit_code == error.exit_code
