"""--storage-option pairs to fsspec options: the coercion (the command line splits
KEY=VALUE: tests/unit/cli/test_package.py)."""

from __future__ import annotations

from runner.artifacts import storage_options


def test_split_pairs_are_coerced_in_order() -> None:
    got = storage_options([("anon", "TRUE"), ("use_ssl", "false"), ("region", "eu-west-1"),
                           ("endpoint_url", "http://127.0.0.1:9000"), ("anon", "no")])
    assert got == {"anon": "no", "use_ssl": False, "region": "eu-west-1",
                   "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}

