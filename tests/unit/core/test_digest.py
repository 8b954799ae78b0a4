"""runner.digest: the one place a file's sha256 is computed and checked."""

from __future__ import annotations

import hashlib

from runner.digest import digest_matches, sha256, sha256_file


def test_sha256_of_bytes_and_of_a_file_agree(tmp_path):
    data = b"field bytes\x00" * 1000
    (tmp_path / "f.parquet").write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert (sha256(data), sha256_file(str(tmp_path / "f.parquet"))) == (expected, expected)


def test_only_the_exact_hex_digest_matches():
    data = b"results"
    good = hashlib.sha256(data).hexdigest()
    assert digest_matches(data, good)
    assert not digest_matches(data + b" ", good)
    assert not digest_matches(data, good.upper())
    # what a damaged document may hold instead of a digest never matches
    for wrong in (None, 0, [good], {"sha256": good}, ""):
        assert not digest_matches(data, wrong)
