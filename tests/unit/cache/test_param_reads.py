"""A stage that names the run parameters it reads (``reads=["params.clip"]``) is keyed
on those alone and held to them where it runs: a run that changes another parameter
takes its cached outputs, one that changes its own runs it again, and a look-up of a
parameter it does not name fails at the stage's line."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.artifacts.store import ArtifactStore
from runner.cache.keys import ABSENT, explain, read_fields, step_key
from runner.cache.step_cache import StepCache
from runner.context import SelectionContext
from runner.errors import RegistryError, UndeclaredReadError
from runner.orchestration.params import DeclaredParams, call_declaring
from runner.registry import StageEntry, StageRegistry
from runner.sdk import QuantSDK
from tests.unit.cache.stepping import step_through


def _same(context: Any) -> Any:
    return context


CLIP = StageEntry("t.clip", _same, reads=frozenset({"universe", "params.clip"}))


def _ctx(params: dict[str, Any]) -> SelectionContext:
    return SelectionContext(run_id="r", universe=["A"], params=params)


PARAMS = st.dictionaries(st.sampled_from(["clip", "tilt"]), st.one_of(st.none(), st.integers(0, 2)),
                         max_size=2)


@settings(max_examples=60, deadline=None)
@given(PARAMS, PARAMS)
def test_the_key_holds_the_named_parameter_alone(a: dict[str, Any], b: dict[str, Any]) -> None:
    same = ("clip" in a) == ("clip" in b) and a.get("clip") == b.get("clip")  # None is set
    assert (step_key(CLIP, _ctx(a)).key == step_key(CLIP, _ctx(b)).key) == same


def test_what_the_key_reads_and_says() -> None:
    assert read_fields(CLIP, _ctx({})) == ["params.clip", "universe"]
    whole = StageEntry("t.whole", _same, reads=frozenset({"universe", "params", "params.clip"}))
    assert read_fields(whole, _ctx({})) == ["params", "universe"]  # params whole wins
    unset = step_key(CLIP, _ctx({"tilt": 1}))
    assert unset.inputs.fields["params.clip"] == ABSENT
    changed = step_key(CLIP, _ctx({"clip": 2})).inputs
    assert explain(unset.inputs.as_json(), changed) == ["param clip changed"]
    assert explain(step_key(whole, _ctx({})).inputs.as_json(), changed) == [
        "it no longer reads params", "it now reads param clip"]


@pytest.mark.parametrize("reads", [["prices.close"], ["params."], [""]])
def test_a_malformed_read_is_refused_where_it_is_declared(reads: list[str]) -> None:
    with pytest.raises(RegistryError, match="reads"):
        StageRegistry().register("t.bad", _same, reads=reads)


def test_the_stage_sees_the_named_parameters_only() -> None:
    view = DeclaredParams({"tilt": 1, "clip": 2, "n": 3}, {"clip", "n", "gone"}, "t.s")
    assert dict(view) == {"clip": 2, "n": 3} and list(view) == ["clip", "n"] and len(view) == 2
    assert json.dumps(view) == '{"clip": 2, "n": 3}' and repr(view) == "{'clip': 2, 'n': 3}"
    assert view.get("gone", 7) == 7 and "gone" not in view and view["clip"] == 2
    for look in (lambda: view["tilt"], lambda: view.get("tilt"), lambda: "tilt" in view,
                 lambda: view.pop("tilt", None), lambda: view.setdefault("tilt", 0)):
        with pytest.raises(UndeclaredReadError, match=r"'t\.s' reads run parameter 'tilt'") as err:
            look()
        assert not isinstance(err.value, KeyError)  # never taken for "not set"
    for copied in (copy.deepcopy(view), pickle.loads(pickle.dumps(view)), copy.copy(view)):
        assert type(copied) is DeclaredParams and dict(copied) == {"clip": 2, "n": 3}
        with pytest.raises(UndeclaredReadError):
            copied.get("tilt")


def _call(fn: Any, params: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The context's own params object, and what the stage returned."""
    ctx = _ctx(params)
    run = ctx.params
    return run, call_declaring(StageEntry("t.s", fn, reads=frozenset({"params.clip"})), fn, ctx)


def test_the_run_gets_its_own_params_back() -> None:
    given = {"clip": 2, "tilt": 1}

    def reads(ctx: Any) -> Any:
        assert dict(ctx.params) == {"clip": 2}
        return ctx

    for stage in (reads, lambda c: c.model_copy(deep=True),
                  lambda c: type(c)(**c.model_dump())):  # built anew from what it saw
        run, out = _call(stage, given)
        assert out.params is run  # the very object: not a write

    def sets(ctx: Any) -> Any:
        ctx.params["clip"] = 5
        ctx.params["added"] = True
        return ctx

    run, out = _call(sets, given)
    assert type(out.params) is dict and out.params == {"tilt": 1, "clip": 5, "added": True}

    def fails(ctx: Any) -> Any:
        return ctx.params["tilt"]

    ctx = _ctx(given)
    run = ctx.params
    with pytest.raises(UndeclaredReadError):
        call_declaring(StageEntry("t.s", fails, reads=frozenset({"params.clip"})), fails, ctx)
    assert ctx.params is run  # given back when the stage raised, for its forensics


STAGES = '''from runner.context import SelectionContext as Context
from runner.registry import stage


@stage("grid.prices", reads=["params.days"], writes=["audit_trail"])
def prices(ctx: Context) -> Context:
    ctx.log(f"prices {ctx.params.get('days', 10)}")
    return ctx


@stage("grid.signal", reads=["params.clip"], writes=["audit_trail"])
def signal(ctx: Context) -> Context:
    ctx.log(f"signal {ctx.params.get('clip', 1.0)}")
    return ctx


@stage("grid.setter", reads=["params.tilt"], writes=["params", "audit_trail"])
def setter(ctx: Context) -> Context:
    ctx.params["tilt"] = 2.0
    return ctx


@stage("grid.weights", reads=["params.tilt"], writes=["audit_trail"])
def weights(ctx: Context) -> Context:
    ctx.log(f"weights {ctx.params.get('tilt', 1.0)}")
    if ctx.params.get("tilt") == "peek":
        ctx.log(str(ctx.params["clip"]))
    return ctx
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "gridstages.py").write_text(STAGES, encoding="utf-8")
    steps = ["grid.prices", ["grid.signal", "grid.weights"]]
    line = ["grid.prices", "grid.signal", "grid.weights"]
    context = "runner.context:SelectionContext"
    manifest = {"pipelines": {"grid": {"steps": steps, "cache": True, "context": context},
                              "line": {"steps": line, "cache": True, "context": context},
                              "sets": {"steps": ["grid.setter", "grid.weights"], "cache": True,
                                       "context": context}},
                "stages": {name: f"gridstages:{name.split('.')[1]}" for name in (
                    "grid.prices", "grid.signal", "grid.setter", "grid.weights")}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_a_run_reruns_the_stages_of_the_parameter_that_changed(project: Path,
                                                               executor: str) -> None:
    sdk = QuantSDK(project / "manifest.json", artifacts=project / "store",
                   workspace_root=project / "ws")

    def run(**params: Any) -> tuple[dict[str, str], list[str]]:
        result = sdk.run_pipeline("grid", SelectionContext(params=params), executor=executor,
                                  tracing=False)
        return ({r.name: r.status for r in result.records if r.kind == "stage"},
                sorted(result.context.audit_trail))

    first = run(clip=1.0, tilt=1.0)
    assert set(first[0].values()) == {"succeeded"}
    other = run(clip=1.0, tilt=1.0, unrelated="x")
    assert set(other[0].values()) == {"cached"} and other[1] == first[1]
    assert run(clip=2.0, tilt=1.0)[0] == {
        "grid.prices": "cached", "grid.signal": "succeeded", "grid.weights": "cached"}
    statuses, trail = run(clip=2.0, tilt=1.0, days=5)
    assert statuses == {"grid.prices": "succeeded", "grid.signal": "cached",
                        "grid.weights": "cached"}
    assert trail == ["prices 5", "signal 2.0", "weights 1.0"]  # the cached outputs' lines


def test_an_undeclared_parameter_fails_at_the_users_line(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "runner.cli", "run", "line", "-m", "manifest.json",
         "--artifacts", "store", "-p", "tilt=peek", "-q"],
        cwd=project, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "stage 'grid.weights' reads run parameter 'clip'" in proc.stderr
    assert "add 'params.clip' to its reads" in proc.stderr
    assert "gridstages.py" in proc.stderr and "line 27" in proc.stderr, proc.stderr


def test_a_stage_that_changes_a_parameter_it_reads_in_part_is_not_kept(
        project: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Its outputs would carry the run's other parameters, which its key does not hold:
    restored in a run with others, they would replace them."""
    sdk = QuantSDK(project / "manifest.json", artifacts=project / "store",
                   workspace_root=project / "ws")
    for other in ("a", "b"):
        result = sdk.run_pipeline("sets", SelectionContext(params={"tilt": 1.0, "o": other}),
                                  tracing=False)
        assert [r.status for r in result.records] == ["succeeded", "cached"] if other == "b" \
            else ["succeeded", "succeeded"]
        assert result.context.params == {"tilt": 2.0, "o": other}
    assert "grid.setter" in caplog.text and "is not kept: it changed params" in caplog.text


# ------------------------------------------------------ generated pipelines, parameters

NAMES = ("p", "q", "r")
OUT = ("a", "b")


@dataclass(frozen=True)
class ParamSpec:
    params: tuple[str, ...]
    field: str | None
    write: str


def _param_stage(spec: ParamSpec) -> Any:
    def run(ctx: Any) -> Any:
        seen = [ctx.params.get(name, 0) for name in spec.params]
        base = getattr(ctx, spec.field) if spec.field else []
        setattr(ctx, spec.write, [*base[-2:], sum(seen)])
        return ctx

    return run


class ParamContext(SelectionContext):
    a: list[int] = []
    b: list[int] = []


PARAM_SPECS = st.builds(ParamSpec, params=st.lists(st.sampled_from(NAMES), min_size=1,
                                                   max_size=2, unique=True).map(tuple),
                        field=st.sampled_from((None, *OUT)), write=st.sampled_from(OUT))


def _param_run(specs: list[ParamSpec], params: dict[str, int], cache: StepCache | None,
               ) -> tuple[dict[str, Any], list[int]]:
    """The final fields, and which steps ran (the step loop's path through the cache)."""
    ctx, ran = ParamContext(params=params), []
    for i, spec in enumerate(specs):
        reads = {f"params.{n}" for n in spec.params} | ({spec.field} if spec.field else set())
        entry = StageEntry(f"s{i}", _param_stage(spec), reads=frozenset(reads))
        ctx, called = step_through(cache, entry, ctx,
                                   lambda c, e=entry: call_declaring(e, e.fn, c))
        if called:
            ran.append(i)
    return {n: getattr(ctx, n) for n in OUT}, ran


@settings(max_examples=30, deadline=None)
@given(st.lists(PARAM_SPECS, min_size=1, max_size=5), st.sampled_from(NAMES),
       st.integers(1, 9))
def test_a_parameter_change_reruns_exactly_its_readers_and_what_they_change(
        specs: list[ParamSpec], changed: str, value: int) -> None:
    start = {"p": 1, "q": 2, "r": 3}
    moved = {**start, changed: start[changed] + value}
    with tempfile.TemporaryDirectory() as root:
        cache = StepCache(ArtifactStore(root), runner_version="test")
        assert _param_run(specs, start, cache)[1] == list(range(len(specs)))
        expected, _ = _param_run(specs, moved, None)
        got, ran = _param_run(specs, moved, cache)
        assert got == expected  # a hit is indistinguishable from running the step
        # a step runs iff it reads the parameter or a field an earlier step changed
        should: list[int] = []
        before, after = ParamContext(params=start), ParamContext(params=moved)
        for i, spec in enumerate(specs):
            runs = changed in spec.params or (
                spec.field is not None and getattr(before, spec.field) != getattr(after,
                                                                                  spec.field))
            if runs:
                should.append(i)
            before = _param_stage(spec)(before)
            after = _param_stage(spec)(after)
        assert ran == should, (specs, changed)
