"""A price file on S3 (moto) is versioned by what its store says of it (its ETag):
the same content written again keeps the version, other content changes it, also in
a process that has listed the folder before (no stale listing answers)."""

from __future__ import annotations

import pytest

from runner.prices import file_version
from tests.integration.conftest import S3Root, clear_s3fs_caches

pytestmark = pytest.mark.integration


def test_a_price_file_on_s3_is_versioned_by_its_store(s3_root: S3Root,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_root.server.endpoint)  # as --data s3://... reads
    clear_s3fs_caches()
    admin = s3_root.server.admin()
    url = f"s3://{s3_root.bucket}/prices/p.csv"
    admin.pipe(url, b"date,A\n2020-01-01,1\n")
    first = file_version(url)
    import fsspec

    fsspec.core.url_to_fs(url)[0].ls(f"{s3_root.bucket}/prices")  # a listing, kept
    admin.pipe(url, b"date,A\n2020-01-01,1\n")
    assert file_version(url) == first
    admin.pipe(url, b"date,A\n2020-01-01,2\n")  # the same size, another content
    assert file_version(url) != first
