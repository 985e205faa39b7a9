"""Fixtures for Lab 06: the module under test, MinIO clients, and throw-away buckets."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

from harness.grading import lab_module
from harness.runtime.services import minio_client, s3_filesystem


@pytest.fixture(scope="module")
def mod():
    """The lab's `s3_lake` module (labs/ or solutions/, from `--target`)."""
    return lab_module("lab06_s3", "s3_lake")


@pytest.fixture(scope="session")
def s3():
    """A `minio.Minio` client for the lab's MinIO (raises ServiceUnavailable if it is down)."""
    return minio_client()


@pytest.fixture(scope="session")
def fs():
    """A pyarrow S3FileSystem pointed at the lab's MinIO."""
    return s3_filesystem()


def unique_bucket_name() -> str:
    """A fresh bucket name that no other test (or student) uses."""
    return f"lab06-test-{uuid.uuid4().hex[:16]}"


def remove_bucket_completely(client, bucket: str) -> None:
    """Delete every object version, delete marker and the bucket itself; warn instead of failing."""
    try:
        if not client.bucket_exists(bucket):
            return
        for obj in client.list_objects(bucket, recursive=True, include_version=True):
            client.remove_object(bucket, obj.object_name, version_id=obj.version_id)
        client.remove_bucket(bucket)
    except Exception as exc:  # cleanup must never hide the test's own result
        warnings.warn(f"could not remove test bucket {bucket}: {exc}", stacklevel=1)


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    """An empty private bucket made for this test only, removed afterwards."""
    name = unique_bucket_name()
    s3.make_bucket(name)
    yield name
    remove_bucket_completely(s3, name)


@pytest.fixture
def bucket_names(s3) -> Iterator[Callable[[], str]]:
    """Hands out fresh bucket names (not created); any bucket made under them is removed after."""
    handed_out: list[str] = []

    def new_name() -> str:
        handed_out.append(unique_bucket_name())
        return handed_out[-1]

    yield new_name
    for name in handed_out:
        remove_bucket_completely(s3, name)
