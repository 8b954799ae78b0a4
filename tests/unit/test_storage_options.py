"""--storage-option text to fsspec options: the coercion apart from the KEY=VALUE split."""

from __future__ import annotations

import pytest

from runner.artifacts import storage_options, storage_options_from
from runner.errors import ArtifactError, exit_code_of


def test_split_pairs_are_coerced_in_order() -> None:
    got = storage_options([("anon", "TRUE"), ("use_ssl", "false"), ("region", "eu-west-1"),
                           ("endpoint_url", "http://127.0.0.1:9000"), ("anon", "no")])
    assert got == {"anon": "no", "use_ssl": False, "region": "eu-west-1",
                   "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}


def test_text_pairs_give_the_same_options() -> None:
    pairs = ["anon=true", "endpoint_url=http://h:1", "key=a=b"]
    assert storage_options_from(pairs) == storage_options(
        [("anon", "true"), ("endpoint_url", "http://h:1"), ("key", "a=b")])


@pytest.mark.parametrize("pair", ["anon", "=true", ""])
def test_a_pair_without_key_or_equals_is_a_storage_error(pair: str) -> None:
    with pytest.raises(ArtifactError, match="expected KEY=VALUE") as info:
        storage_options_from([pair])
    assert exit_code_of(info.value) == 2
