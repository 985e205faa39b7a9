# Generated from solutions/lab06_s3/s3_lake.py by `make skeletons` — this is the file you edit.
"""Lab 06 — a data lake for OpenSky snapshots on S3 (MinIO).

A: buckets and access policies · B: raw layout and paginated listing · C: partitioned Parquet with
pyarrow and Spark · D: presigned links · E: versioning, lifecycle, multipart uploads, clear errors.

Every function takes its clients as arguments: a `minio.Minio` from `harness.services.minio_client()`,
a pyarrow `S3FileSystem` from `harness.services.s3_filesystem()`, a `SparkSession` from
`harness.spark.get_spark()`. Run `python -m labs.lab06_s3.s3_lake setup` to build the course's lake.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from minio import Minio
from minio.commonconfig import ENABLED, CopySource, Filter
from minio.error import S3Error
from minio.lifecycleconfig import (
    Expiration,
    LifecycleConfig,
    NoncurrentVersionExpiration,
    Rule,
)
from minio.versioningconfig import VersioningConfig

from harness.config import BUCKETS, endpoints
from harness.schema import arrow_row_schema, spark_row_schema, state_to_row

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem
    from pyspark.sql import DataFrame, SparkSession

# The seed's three buckets, names kept exactly.
RAW_BUCKET, PROCESSED_BUCKET, AGGREGATIONS_BUCKET = BUCKETS
RAW_PREFIX = "flights"
RAW_RETENTION_DAYS = 30
# S3 returns at most 1000 keys per ListObjectsV2 request.
MAX_PAGE_SIZE = 1000
# S3's smallest allowed multipart part (every part but the last must be at least this big).
MIN_PART_SIZE = 5 * 1024 * 1024
# The longest lifetime S3 (SigV4) accepts for a presigned URL.
MAX_LINK_LIFETIME = timedelta(days=7)
CHUNK_SIZE = 1024 * 1024
# Partition columns of the Parquet datasets (part C): a day as text and an hour as a number.
PARTITION_SCHEMA = pa.schema([("date", pa.string()), ("hour", pa.int32())])


class LakeError(Exception):
    """A data-lake operation failed; the message names the bucket and key involved."""

    def __init__(self, message: str, bucket: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.bucket = bucket
        self.key = key


class BucketNotFound(LakeError):
    """The bucket does not exist."""


class ObjectNotFound(LakeError):
    """The bucket exists but holds no object under that key (or that version)."""


class ChecksumMismatch(LakeError):
    """A downloaded object's SHA-256 differs from the one recorded at upload."""


@dataclass(frozen=True)
class ListPage:
    """One page of a listing; `next_start_after` is None on the last page."""

    keys: list[str]
    next_start_after: str | None


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object in a versioned bucket."""

    version_id: str
    is_latest: bool
    is_delete_marker: bool
    size: int | None
    last_modified: datetime | None


@dataclass(frozen=True)
class UploadResult:
    """What an upload stored: the S3 ETag (multipart ETags end in `-<parts>`), size and SHA-256."""

    key: str
    etag: str
    size: int
    sha256: str
    parts: int


# ---------------------------------------------------------------- given helpers
def object_url(bucket: str, key: str) -> str:
    """The plain (unsigned) HTTP address of an object, as an anonymous client would use it."""
    return f"{endpoints().minio_url}/{bucket}/{key}"


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks so large files never sit in memory."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def snapshots_to_table(snapshots: Iterable[dict[str, Any]]) -> pa.Table:
    """Flatten `/states/all` snapshots into one pyarrow table of rows (`fetch_time` + state)."""
    rows = [
        state_to_row(snapshot["time"], state)
        for snapshot in snapshots
        for state in snapshot.get("states") or []
    ]
    return pa.Table.from_pylist(rows, schema=arrow_row_schema())


def spark_lake_schema():
    """Spark schema of a partitioned dataset: the row fields plus `date` (string), `hour` (int)."""
    from pyspark.sql import types as T

    return T.StructType(
        [
            *spark_row_schema().fields,
            T.StructField("date", T.StringType(), True),
            T.StructField("hour", T.IntegerType(), True),
        ]
    )


# ---------------------------------------------------------------- part A: buckets
def ensure_buckets(client: Minio, names: Iterable[str] = BUCKETS) -> list[str]:
    """Create the buckets that do not exist yet; return the names created (empty on a re-run)."""
    raise NotImplementedError("Lab 06, part A: ensure_buckets() — see labs/lab06_s3/README.md")


def read_only_policy(bucket: str, prefix: str = "") -> dict[str, Any]:
    """A bucket policy letting anyone download objects under `prefix` and nothing else."""
    raise NotImplementedError("Lab 06, part A: read_only_policy() — see labs/lab06_s3/README.md")


def allow_public_read(client: Minio, bucket: str, prefix: str = "") -> None:
    """Attach `read_only_policy(bucket, prefix)` to the bucket."""
    raise NotImplementedError("Lab 06, part A: allow_public_read() — see labs/lab06_s3/README.md")


# ---------------------------------------------------------------- part B: raw layout
def raw_key(snapshot_time: int, prefix: str = RAW_PREFIX) -> str:
    """Hive-style key of a raw snapshot: `<prefix>/date=YYYY-MM-DD/hour=HH/<time>.json.gz` (UTC)."""
    raise NotImplementedError("Lab 06, part B: raw_key() — see labs/lab06_s3/README.md")


def partition_prefix(day: date, hour: int | None = None, prefix: str = RAW_PREFIX) -> str:
    """Key prefix of one day (`<prefix>/date=YYYY-MM-DD/`) or one hour of it (`.../hour=HH/`)."""
    raise NotImplementedError("Lab 06, part B: partition_prefix() — see labs/lab06_s3/README.md")


def upload_snapshot(
    client: Minio, bucket: str, snapshot: dict[str, Any], prefix: str = RAW_PREFIX
) -> str:
    """Store one snapshot as gzipped JSON under `raw_key(snapshot["time"])`; return the key."""
    raise NotImplementedError("Lab 06, part B: upload_snapshot() — see labs/lab06_s3/README.md")


def read_snapshot(client: Minio, bucket: str, key: str) -> dict[str, Any]:
    """Download and decode one snapshot stored by `upload_snapshot`."""
    raise NotImplementedError("Lab 06, part B: read_snapshot() — see labs/lab06_s3/README.md")


def list_page(
    client: Minio,
    bucket: str,
    prefix: str,
    page_size: int = MAX_PAGE_SIZE,
    start_after: str | None = None,
) -> ListPage:
    """Up to `page_size` keys under `prefix` that sort after `start_after`, in key order."""
    raise NotImplementedError("Lab 06, part B: list_page() — see labs/lab06_s3/README.md")


def iter_pages(
    client: Minio, bucket: str, prefix: str, page_size: int = MAX_PAGE_SIZE
) -> Iterator[ListPage]:
    """Every non-empty page of keys under `prefix`, each key exactly once, in key order."""
    raise NotImplementedError("Lab 06, part B: iter_pages() — see labs/lab06_s3/README.md")


# ---------------------------------------------------------------- part C: Parquet
def add_partition_columns(table: pa.Table) -> pa.Table:
    """Append `date` ("YYYY-MM-DD") and `hour` (int32), both in UTC, computed from `fetch_time`."""
    raise NotImplementedError(
        "Lab 06, part C: add_partition_columns() — see labs/lab06_s3/README.md"
    )


def write_partitioned(
    filesystem: FileSystem, table: pa.Table, bucket: str, prefix: str
) -> list[str]:
    """Write rows as Parquet under `bucket/prefix/date=…/hour=…/`; return the paths written.

    Re-writing a partition replaces it (no duplicates); other partitions are left alone.
    """
    raise NotImplementedError("Lab 06, part C: write_partitioned() — see labs/lab06_s3/README.md")


def read_partitioned(
    filesystem: FileSystem, bucket: str, prefix: str, day: str | None = None
) -> pa.Table:
    """Read a partitioned dataset (all of it, or one `day`) with `date` and `hour` as columns."""
    raise NotImplementedError("Lab 06, part C: read_partitioned() — see labs/lab06_s3/README.md")


def read_with_spark(
    spark: SparkSession, bucket: str, prefix: str, day: str | None = None
) -> DataFrame:
    """Read a partitioned dataset through `s3a://` with `spark_lake_schema()` (optionally one day)."""
    raise NotImplementedError("Lab 06, part C: read_with_spark() — see labs/lab06_s3/README.md")


def write_with_spark(df: DataFrame, bucket: str, prefix: str) -> str:
    """Write rows with Spark as Parquet partitioned by UTC `date`/`hour`; return the s3a URL."""
    raise NotImplementedError("Lab 06, part C: write_with_spark() — see labs/lab06_s3/README.md")


# ---------------------------------------------------------------- part D: sharing
def share_link(client: Minio, bucket: str, key: str, expires: timedelta) -> str:
    """A presigned GET URL for an existing object, valid for `expires` (1 second to 7 days)."""
    raise NotImplementedError("Lab 06, part D: share_link() — see labs/lab06_s3/README.md")


# ---------------------------------------------------------------- part E: safety
def as_lake_error(exc: S3Error, bucket: str, key: str | None = None) -> LakeError:
    """Translate the SDK's `S3Error` into the lake's own error, naming bucket and key."""
    raise NotImplementedError("Lab 06, part E: as_lake_error() — see labs/lab06_s3/README.md")


def enable_versioning(client: Minio, bucket: str) -> None:
    """Turn on versioning: overwrites and deletes keep the previous versions."""
    raise NotImplementedError("Lab 06, part E: enable_versioning() — see labs/lab06_s3/README.md")


def object_versions(client: Minio, bucket: str, key: str) -> list[ObjectVersion]:
    """All versions of exactly `key` (delete markers included), newest first."""
    raise NotImplementedError("Lab 06, part E: object_versions() — see labs/lab06_s3/README.md")


def restore_version(client: Minio, bucket: str, key: str, version_id: str) -> str:
    """Make an old version current again by copying it onto the key; return the new version id."""
    raise NotImplementedError("Lab 06, part E: restore_version() — see labs/lab06_s3/README.md")


def set_expiry_rule(client: Minio, bucket: str, prefix: str, days: int) -> str:
    """Expire objects under `prefix` after `days` days; keep the bucket's other rules. Return the rule id."""
    raise NotImplementedError("Lab 06, part E: set_expiry_rule() — see labs/lab06_s3/README.md")


def upload_file(
    client: Minio, bucket: str, key: str, path: Path, part_size: int = MIN_PART_SIZE
) -> UploadResult:
    """Upload a file in parts of `part_size` bytes, recording its SHA-256 in the object's metadata."""
    raise NotImplementedError("Lab 06, part E: upload_file() — see labs/lab06_s3/README.md")


def download_file(client: Minio, bucket: str, key: str, path: Path) -> str:
    """Stream an object to `path`, check it against its recorded SHA-256, return the digest."""
    raise NotImplementedError("Lab 06, part E: download_file() — see labs/lab06_s3/README.md")


# ---------------------------------------------------------------- putting it together (given)
def setup_lake(client: Minio) -> None:
    """The course's lake: three buckets, public-read processed data, versioned expiring raw data."""
    ensure_buckets(client, BUCKETS)
    allow_public_read(client, PROCESSED_BUCKET)
    enable_versioning(client, RAW_BUCKET)
    set_expiry_rule(client, RAW_BUCKET, f"{RAW_PREFIX}/", RAW_RETENTION_DAYS)


def main(argv: list[str] | None = None) -> int:
    """`python -m labs.lab06_s3.s3_lake setup` builds the lake on the running MinIO."""
    import argparse

    from harness.services import minio_client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["setup"])
    parser.parse_args(argv)
    setup_lake(minio_client())
    print(f"buckets {', '.join(BUCKETS)} ready; {PROCESSED_BUCKET} is public-read;")
    print(f"{RAW_BUCKET} is versioned and expires {RAW_PREFIX}/ after {RAW_RETENTION_DAYS} days.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
