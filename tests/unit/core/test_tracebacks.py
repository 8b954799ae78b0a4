"""The user's side of a traceback: their frames kept, the runner's dropped, library
frames folded into one line (runner.tracebacks)."""

from __future__ import annotations

import json

from runner.tracebacks import MAX_FRAMES, user_trace


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def _hook(doc):
    raise ValueError(f"bad row {doc}")


def _parse(text):
    return json.loads(text, object_hook=_hook)


def test_library_frames_between_the_users_are_folded_into_one_line(monkeypatch):
    monkeypatch.delenv("RUNNER_DEBUG", raising=False)
    trace = user_trace(_raised(_parse, '{"a": 1}'))
    lines = trace.text.splitlines()
    assert trace.where.endswith(
        f"test_tracebacks.py line {_hook.__code__.co_firstlineno + 1}, in _hook")
    folded = [line for line in lines if line.startswith("  ... ")]
    assert len(folded) == 1 and " in json" in folded[0] and "raised at" not in folded[0]
    assert lines[-1] == "ValueError: bad row {'a': 1}"
    assert trace.frames == 3  # _raised, _parse, _hook


def _deep(n):
    if n == 0:
        raise RecursionError("too deep for the desk")
    return _deep(n - 1)


def test_a_deep_recursion_shows_the_innermost_frames_and_how_many_more(monkeypatch):
    monkeypatch.delenv("RUNNER_DEBUG", raising=False)
    trace = user_trace(_raised(_deep, 30))
    assert f"  ... {32 - MAX_FRAMES} earlier frames of yours" in trace.text
    assert trace.text.count("in _deep") == MAX_FRAMES


def test_without_a_user_frame_the_stage_definition_is_where(monkeypatch):
    monkeypatch.delenv("RUNNER_DEBUG", raising=False)
    error = _raised(json.loads, "{")
    assert error.__traceback__ is not None
    error.__traceback__ = error.__traceback__.tb_next  # only json's own frames left
    assert user_trace(error).where == ""
    trace = user_trace(error, code=_parse)
    line = _parse.__code__.co_firstlineno
    assert trace.where.endswith(f"test_tracebacks.py line {line}, in _parse (the stage)")


def test_runner_debug_gives_the_whole_traceback(monkeypatch):
    monkeypatch.setenv("RUNNER_DEBUG", "1")
    trace = user_trace(_raised(_parse, '{"a": 1}'))
    assert trace.text.startswith("Traceback (most recent call last):")
    assert "json/decoder.py" in trace.text
