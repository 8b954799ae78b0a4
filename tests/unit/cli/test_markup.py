"""``runner.cli.markup.escape`` is rich's markup escape, without importing rich for
text rich would leave as it is (a command that prints nothing never loads rich)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from rich.markup import escape as rich_escape
from rich.text import Text

from runner.cli.markup import escape

MARKUPISH = st.text(alphabet=st.sampled_from(list("[]\\/@#ab =x1")), max_size=30)


@given(st.one_of(st.text(max_size=40), MARKUPISH))
def test_escape_is_richs(text: str) -> None:
    assert escape(text) == rich_escape(text)


@given(st.text(alphabet=st.sampled_from(list("[]/@#ab =x1")), max_size=30))
def test_escaped_text_renders_as_written(text: str) -> None:
    assert Text.from_markup(escape(text)).plain == text


def test_brackets_in_help_stay_literal() -> None:
    text = "Manifest path [env RUNNER_MANIFEST; default configs/manifest.json]"
    assert Text.from_markup(escape(text)).plain == text
    assert escape(text) != text  # rich would have taken "[env ...]" for a style
