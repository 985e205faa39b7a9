"""Lab 06 — a data lake for OpenSky snapshots on S3 (MinIO).

A: buckets and access policies · B: raw layout and paginated listing · C: partitioned Parquet with
pyarrow and Spark · D: presigned links · E: versioning, lifecycle, multipart uploads, clear errors.

Every function takes its clients as arguments: a `minio.Minio` from `harness.runtime.services.minio_client()`,
a pyarrow `S3FileSystem` from `harness.runtime.services.s3_filesystem()`, a `SparkSession` from
`harness.runtime.spark.get_spark()`. Run `python -m labs.lab06_s3.s3_lake setup` to build the course's lake.
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
from minio.error import S3Error

from harness.runtime.config import BUCKETS, endpoints
from harness.runtime.schema import arrow_row_schema, spark_row_schema, state_to_row

if TYPE_CHECKING:
    from pyarrow.fs import FileSystem
    from pyspark.sql import DataFrame, SparkSession

# The platform's three buckets, names kept exactly.
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
    # BEGIN SOLUTION (part A)
    created = []
    for name in names:
        if not client.bucket_exists(name):
            client.make_bucket(name)
            created.append(name)
    return created
    # END SOLUTION


def read_only_policy(bucket: str, prefix: str = "") -> dict[str, Any]:
    """A bucket policy letting anyone download objects under `prefix` and nothing else."""
    # BEGIN SOLUTION (part A)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AnonymousReadOnly",
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{prefix}*"],
            }
        ],
    }
    # END SOLUTION


def allow_public_read(client: Minio, bucket: str, prefix: str = "") -> None:
    """Attach `read_only_policy(bucket, prefix)` to the bucket."""
    # BEGIN SOLUTION (part A)
    client.set_bucket_policy(bucket, json.dumps(read_only_policy(bucket, prefix)))
    # END SOLUTION


# ---------------------------------------------------------------- part B: raw layout
def raw_key(snapshot_time: int, prefix: str = RAW_PREFIX) -> str:
    """Hive-style key of a raw snapshot: `<prefix>/date=YYYY-MM-DD/hour=HH/<time>.json.gz` (UTC)."""
    # BEGIN SOLUTION (part B)
    if isinstance(snapshot_time, bool) or not isinstance(snapshot_time, int) or snapshot_time < 0:
        raise ValueError(
            f"a snapshot time is a non-negative int (unix seconds), got {snapshot_time!r}"
        )
    moment = datetime.fromtimestamp(snapshot_time, tz=UTC)
    return f"{prefix}/date={moment:%Y-%m-%d}/hour={moment:%H}/{snapshot_time}.json.gz"
    # END SOLUTION


def partition_prefix(day: date, hour: int | None = None, prefix: str = RAW_PREFIX) -> str:
    """Key prefix of one day (`<prefix>/date=YYYY-MM-DD/`) or one hour of it (`.../hour=HH/`)."""
    # BEGIN SOLUTION (part B)
    day_prefix = f"{prefix}/date={day:%Y-%m-%d}/"
    if hour is None:
        return day_prefix
    if isinstance(hour, bool) or not isinstance(hour, int) or not 0 <= hour <= 23:
        raise ValueError(f"hour must be an int from 0 to 23, got {hour!r}")
    return f"{day_prefix}hour={hour:02d}/"
    # END SOLUTION


def upload_snapshot(
    client: Minio, bucket: str, snapshot: dict[str, Any], prefix: str = RAW_PREFIX
) -> str:
    """Store one snapshot as gzipped JSON under `raw_key(snapshot["time"])`; return the key."""
    # BEGIN SOLUTION (part B)
    if not isinstance(snapshot, dict) or "time" not in snapshot:
        raise ValueError(f"a snapshot is a dict with a 'time' field, got {snapshot!r:.80}")
    key = raw_key(snapshot["time"], prefix)
    body = gzip.compress(json.dumps(snapshot, separators=(",", ":")).encode("utf-8"))
    metadata = {
        "Content-Encoding": "gzip",
        "snapshot-time": str(snapshot["time"]),
        "state-count": str(len(snapshot.get("states") or [])),
    }
    try:
        client.put_object(
            bucket,
            key,
            io.BytesIO(body),
            len(body),
            content_type="application/json",
            metadata=metadata,
        )
    except S3Error as exc:
        raise as_lake_error(exc, bucket, key) from exc
    return key
    # END SOLUTION


def read_snapshot(client: Minio, bucket: str, key: str) -> dict[str, Any]:
    """Download and decode one snapshot stored by `upload_snapshot`."""
    # BEGIN SOLUTION (part B)
    try:
        response = client.get_object(bucket, key)
    except S3Error as exc:
        raise as_lake_error(exc, bucket, key) from exc
    try:
        # The stored bytes are gzip; ask for them as stored (urllib3 would otherwise gunzip).
        body = response.read(decode_content=False)
    finally:
        response.close()
        response.release_conn()
    return json.loads(gzip.decompress(body))
    # END SOLUTION


def list_page(
    client: Minio,
    bucket: str,
    prefix: str,
    page_size: int = MAX_PAGE_SIZE,
    start_after: str | None = None,
) -> ListPage:
    """Up to `page_size` keys under `prefix` that sort after `start_after`, in key order."""
    # BEGIN SOLUTION (part B)
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValueError(f"page_size must be from 1 to {MAX_PAGE_SIZE}, got {page_size}")
    objects = client.list_objects(bucket, prefix=prefix, recursive=True, start_after=start_after)
    # One key more than asked tells whether another page follows.
    keys = [obj.object_name for obj in islice(objects, page_size + 1)]
    has_more = len(keys) > page_size
    keys = keys[:page_size]
    return ListPage(keys=keys, next_start_after=keys[-1] if has_more else None)
    # END SOLUTION


def iter_pages(
    client: Minio, bucket: str, prefix: str, page_size: int = MAX_PAGE_SIZE
) -> Iterator[ListPage]:
    """Every non-empty page of keys under `prefix`, each key exactly once, in key order."""
    # BEGIN SOLUTION (part B)
    start_after = None
    while True:
        page = list_page(client, bucket, prefix, page_size, start_after)
        if page.keys:
            yield page
        if page.next_start_after is None:
            return
        start_after = page.next_start_after
    # END SOLUTION


# ---------------------------------------------------------------- part C: Parquet
def add_partition_columns(table: pa.Table) -> pa.Table:
    """Append `date` ("YYYY-MM-DD") and `hour` (int32), both in UTC, computed from `fetch_time`."""
    # BEGIN SOLUTION (part C)
    # A timestamp without a time zone is read as UTC by pyarrow's compute functions.
    moment = pc.cast(table["fetch_time"], pa.timestamp("s"))
    day = pc.strftime(moment, format="%Y-%m-%d")
    hour = pc.cast(pc.hour(moment), pa.int32())
    return table.append_column("date", day).append_column("hour", hour)
    # END SOLUTION


def write_partitioned(
    filesystem: FileSystem, table: pa.Table, bucket: str, prefix: str
) -> list[str]:
    """Write rows as Parquet under `bucket/prefix/date=…/hour=…/`; return the paths written.

    Re-writing a partition replaces it (no duplicates); other partitions are left alone.
    """
    # BEGIN SOLUTION (part C)
    written: list[str] = []
    ds.write_dataset(
        add_partition_columns(table),
        f"{bucket}/{prefix}",
        filesystem=filesystem,
        format="parquet",
        partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="delete_matching",
        file_visitor=lambda written_file: written.append(written_file.path),
    )
    return sorted(written)
    # END SOLUTION


def read_partitioned(
    filesystem: FileSystem, bucket: str, prefix: str, day: str | None = None
) -> pa.Table:
    """Read a partitioned dataset (all of it, or one `day`) with `date` and `hour` as columns."""
    # BEGIN SOLUTION (part C)
    dataset = ds.dataset(
        f"{bucket}/{prefix}",
        filesystem=filesystem,
        format="parquet",
        partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
    )
    # A filter on a partition column skips whole folders: only that day's files are opened.
    return dataset.to_table(filter=None if day is None else ds.field("date") == day)
    # END SOLUTION


def read_with_spark(
    spark: SparkSession, bucket: str, prefix: str, day: str | None = None
) -> DataFrame:
    """Read a partitioned dataset through `s3a://` with `spark_lake_schema()` (optionally one day)."""
    # BEGIN SOLUTION (part C)
    from pyspark.sql import functions as F

    df = spark.read.schema(spark_lake_schema()).parquet(f"s3a://{bucket}/{prefix}")
    return df if day is None else df.where(F.col("date") == day)
    # END SOLUTION


def write_with_spark(df: DataFrame, bucket: str, prefix: str) -> str:
    """Write rows with Spark as Parquet partitioned by UTC `date`/`hour`; return the s3a URL."""
    # BEGIN SOLUTION (part C)
    from pyspark.sql import functions as F

    # Arithmetic on unix seconds is UTC whatever the session time zone is.
    days = F.floor(F.col("fetch_time") / 86400).cast("int")
    partitioned = df.withColumn("date", F.date_from_unix_date(days).cast("string")).withColumn(
        "hour", F.floor((F.col("fetch_time") % 86400) / 3600).cast("int")
    )
    url = f"s3a://{bucket}/{prefix}"
    (
        partitioned.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("date", "hour")
        .parquet(url)
    )
    return url
    # END SOLUTION


# ---------------------------------------------------------------- part D: sharing
def share_link(client: Minio, bucket: str, key: str, expires: timedelta) -> str:
    """A presigned GET URL for an existing object, valid for `expires` (1 second to 7 days)."""
    # BEGIN SOLUTION (part D)
    if not timedelta(seconds=1) <= expires <= MAX_LINK_LIFETIME:
        raise ValueError(f"a link lives from 1 second to {MAX_LINK_LIFETIME}, got {expires}")
    try:
        client.stat_object(bucket, key)  # never hand out a link to nothing
    except S3Error as exc:
        raise as_lake_error(exc, bucket, key) from exc
    return client.presigned_get_object(bucket, key, expires=expires)
    # END SOLUTION


# ---------------------------------------------------------------- part E: safety
def as_lake_error(exc: S3Error, bucket: str, key: str | None = None) -> LakeError:
    """Translate the SDK's `S3Error` into the lake's own error, naming bucket and key."""
    # BEGIN SOLUTION (part E)
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if exc.code == "NoSuchBucket":
        return BucketNotFound(
            f"bucket {bucket!r} does not exist (while accessing {where}); create it first",
            bucket,
            key,
        )
    if exc.code in ("NoSuchKey", "NoSuchVersion"):
        return ObjectNotFound(f"no object {key!r} in bucket {bucket!r} ({where})", bucket, key)
    return LakeError(f"S3 refused the request on {where}: {exc.code}: {exc.message}", bucket, key)
    # END SOLUTION


def enable_versioning(client: Minio, bucket: str) -> None:
    """Turn on versioning: overwrites and deletes keep the previous versions."""
    # BEGIN SOLUTION (part E)
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    try:
        client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    except S3Error as exc:
        raise as_lake_error(exc, bucket) from exc
    # END SOLUTION


def object_versions(client: Minio, bucket: str, key: str) -> list[ObjectVersion]:
    """All versions of exactly `key` (delete markers included), newest first."""
    # BEGIN SOLUTION (part E)
    listing = client.list_objects(bucket, prefix=key, include_version=True)
    return [
        ObjectVersion(
            version_id=obj.version_id,
            is_latest=str(obj.is_latest).lower() == "true",
            is_delete_marker=obj.is_delete_marker,
            size=obj.size,
            last_modified=obj.last_modified,
        )
        for obj in listing
        if obj.object_name == key  # a prefix also matches "key2", "key/…"
    ]
    # END SOLUTION


def restore_version(client: Minio, bucket: str, key: str, version_id: str) -> str:
    """Make an old version current again by copying it onto the key; return the new version id."""
    # BEGIN SOLUTION (part E)
    from minio.commonconfig import CopySource

    try:
        result = client.copy_object(bucket, key, CopySource(bucket, key, version_id=version_id))
    except S3Error as exc:
        raise as_lake_error(exc, bucket, key) from exc
    return result.version_id
    # END SOLUTION


def set_expiry_rule(client: Minio, bucket: str, prefix: str, days: int) -> str:
    """Expire objects under `prefix` after `days` days; keep the bucket's other rules. Return the rule id."""
    # BEGIN SOLUTION (part E)
    from minio.commonconfig import ENABLED, Filter
    from minio.lifecycleconfig import (
        Expiration,
        LifecycleConfig,
        NoncurrentVersionExpiration,
        Rule,
    )

    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ValueError(f"days must be a positive int, got {days!r}")
    rule_id = f"expire:{prefix}"
    current = client.get_bucket_lifecycle(bucket)
    # PutBucketLifecycle replaces the whole configuration, so carry the other rules over.
    rules = [rule for rule in (current.rules if current else []) if rule.rule_id != rule_id]
    rules.append(
        Rule(
            ENABLED,
            rule_filter=Filter(prefix=prefix),
            rule_id=rule_id,
            expiration=Expiration(days=days),
            # In a versioned bucket expiry only adds a delete marker; this frees the old bytes.
            noncurrent_version_expiration=NoncurrentVersionExpiration(noncurrent_days=days),
        )
    )
    client.set_bucket_lifecycle(bucket, LifecycleConfig(rules))
    return rule_id
    # END SOLUTION


def upload_file(
    client: Minio, bucket: str, key: str, path: Path, part_size: int = MIN_PART_SIZE
) -> UploadResult:
    """Upload a file in parts of `part_size` bytes, recording its SHA-256 in the object's metadata."""
    # BEGIN SOLUTION (part E)
    if part_size < MIN_PART_SIZE:
        raise ValueError(f"S3 parts are at least {MIN_PART_SIZE} bytes, got part_size={part_size}")
    path = Path(path)
    size = path.stat().st_size
    digest = file_sha256(path)
    try:
        with path.open("rb") as fh:
            result = client.put_object(
                bucket,
                key,
                fh,
                size,
                part_size=part_size,
                metadata={"sha256": digest},
            )
    except S3Error as exc:
        raise as_lake_error(exc, bucket, key) from exc
    return UploadResult(
        key=key,
        etag=result.etag,
        size=size,
        sha256=digest,
        parts=max(1, math.ceil(size / part_size)),
    )
    # END SOLUTION


def download_file(client: Minio, bucket: str, key: str, path: Path) -> str:
    """Stream an object to `path`, check it against its recorded SHA-256, return the digest."""
    # BEGIN SOLUTION (part E)
    path = Path(path)
    partial = path.with_name(path.name + ".part")
    try:
        response = client.get_object(bucket, key)
    except S3Error as exc:
        raise as_lake_error(exc, bucket, key) from exc
    digest = hashlib.sha256()
    try:
        expected = response.headers.get("x-amz-meta-sha256")
        with partial.open("wb") as out:
            for chunk in response.stream(CHUNK_SIZE, decode_content=False):
                digest.update(chunk)
                out.write(chunk)
    finally:
        response.close()
        response.release_conn()
    actual = digest.hexdigest()
    if expected and expected != actual:
        partial.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"s3://{bucket}/{key} is corrupt: SHA-256 {actual} but {expected} was recorded",
            bucket,
            key,
        )
    partial.replace(path)  # the file appears only once it is complete and verified
    return actual
    # END SOLUTION


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

    from harness.runtime.services import minio_client

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["setup"])
    parser.parse_args(argv)
    setup_lake(minio_client())
    print(f"buckets {', '.join(BUCKETS)} ready; {PROCESSED_BUCKET} is public-read;")
    print(f"{RAW_BUCKET} is versioned and expires {RAW_PREFIX}/ after {RAW_RETENTION_DAYS} days.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
