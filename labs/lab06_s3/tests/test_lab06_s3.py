"""Graded test suite for Lab 06 — used by `make lab-6` and instructors' grading.

Every test runs against the real MinIO of the lab stack (`make up`), in a bucket made for that test
and removed afterwards. Anonymous access and presigned links are checked with plain HTTP requests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from chispa import assert_df_equality
from minio.error import S3Error
from pyarrow.fs import FileSelector

from harness.grading.suite_helpers import hive_partitions
from harness.runtime.data import load_snapshots
from harness.runtime.schema import ROW_FIELD_NAMES, spark_row_schema, state_to_row
from harness.runtime.waits import wait_quietly

HTTP_TIMEOUT = 10
MiB = 1024 * 1024
# 2024-01-15 23:56:40, 2024-01-16 00:01:40 and 01:01:40 UTC: two days, three hours.
PARQUET_TIMES = (1705363000, 1705363300, 1705366900)
PARQUET_PARTITIONS = {("2024-01-15", 23), ("2024-01-16", 0), ("2024-01-16", 1)}


# ---------------------------------------------------------------- helpers
def anonymous(method: str, url: str, data: bytes | None = None) -> requests.Response:
    """A plain HTTP request with no credentials and no signature, as a stranger would send it."""
    return requests.request(method, url, data=data, timeout=HTTP_TIMEOUT)


def put_bytes(client, bucket: str, key: str, data: bytes, **kwargs) -> str:
    """Store `data` with the SDK directly (setup that does not depend on the student's code)."""
    return client.put_object(bucket, key, io.BytesIO(data), len(data), **kwargs).version_id


def get_bytes(client, bucket: str, key: str, **kwargs) -> bytes:
    """Fetch an object's bytes exactly as stored."""
    response = client.get_object(bucket, key, **kwargs)
    try:
        return response.read(decode_content=False)
    finally:
        response.close()
        response.release_conn()


def make_snapshot(snapshot_time: int, n_states: int = 3, velocity: float = 230.5) -> dict:
    """A small `/states/all` snapshot with known values (one state without `category`)."""
    states = []
    for i in range(n_states):
        state = [
            f"3c6{i:03x}",
            f"DLH{100 + i:<5}",
            "Germany",
            snapshot_time - 1,
            snapshot_time,
            8.5 + i / 10,
            50.0 + i / 10,
            10000.0 + 100 * i,
            False,
            velocity + i,
            90.0,
            -1.5,
            [1, 2] if i == 0 else None,
            10150.0 + 100 * i,
            "1000",
            False,
            0,
            3,
        ]
        states.append(state[:17] if i == 1 else state)
    return {"time": snapshot_time, "states": states}


def with_partitions(snapshots: list[dict]) -> list[dict]:
    """Expected flat rows plus UTC `date` and `hour`, sorted by (fetch_time, icao24)."""
    rows = []
    for snapshot in snapshots:
        moment = datetime.fromtimestamp(snapshot["time"], tz=UTC)
        for state in snapshot["states"]:
            row = state_to_row(snapshot["time"], state)
            row.update(date=moment.strftime("%Y-%m-%d"), hour=moment.hour)
            rows.append(row)
    return sort_rows(rows)


def sort_rows(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["fetch_time"], r["icao24"]))


@pytest.fixture
def far_from_utc(monkeypatch):
    """Run the test with the process in Tokyo time, so local-time bugs show up."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


# ---------------------------------------------------------------- part A: buckets
@pytest.mark.points(2)
def test_partA_ensure_buckets_is_idempotent(mod, s3, bucket_names):
    """ensure_buckets() creates missing buckets once and leaves existing ones (and data) alone."""
    first, second = bucket_names(), bucket_names()
    created = mod.ensure_buckets(s3, [first, second])
    assert sorted(created or []) == sorted([first, second]), (
        f"Part A: ensure_buckets() on two new buckets should return both names, got {created!r}."
    )
    for name in (first, second):
        assert s3.bucket_exists(name), f"Part A: bucket {name!r} was not created."
    put_bytes(s3, first, "keep-me.txt", b"still here")

    again = mod.ensure_buckets(s3, [first, second])
    assert again == [], (
        f"Part A: a second ensure_buckets() should create nothing and return [], got {again!r}. "
        "Hint: check client.bucket_exists() before client.make_bucket()."
    )
    assert get_bytes(s3, first, "keep-me.txt") == b"still here", (
        "Part A: ensure_buckets() must not empty or recreate a bucket that already exists."
    )


@pytest.mark.points(2)
def test_partA_new_bucket_is_private(mod, s3, bucket_names):
    """A bucket made by ensure_buckets() refuses anonymous downloads (HTTP 403)."""
    name = bucket_names()
    mod.ensure_buckets(s3, [name])
    put_bytes(s3, name, "secret.json", b'{"private": true}')
    response = anonymous("GET", mod.object_url(name, "secret.json"))
    assert response.status_code == 403, (
        f"Part A: an anonymous GET on a new bucket should get 403 Forbidden, got "
        f"{response.status_code}. Hint: do not attach any policy when creating buckets."
    )


@pytest.mark.points(3)
def test_partA_public_read_allows_get_refuses_put(mod, s3, bucket):
    """With allow_public_read(), anonymous HTTP can download objects but not upload or delete."""
    put_bytes(s3, bucket, "reports/summary.json", b'{"flights": 42}')
    mod.allow_public_read(s3, bucket)

    got = anonymous("GET", mod.object_url(bucket, "reports/summary.json"))
    assert got.status_code == 200, (
        f"Part A: after allow_public_read() an anonymous GET should succeed (200), got "
        f"{got.status_code}: {got.text[:200]}. Hint: allow s3:GetObject for Principal "
        '{"AWS": ["*"]} on arn:aws:s3:::<bucket>/*.'
    )
    assert got.content == b'{"flights": 42}', "Part A: the anonymous GET returned other bytes."

    put = anonymous("PUT", mod.object_url(bucket, "reports/vandal.json"), data=b"{}")
    assert put.status_code == 403, (
        f"Part A: an anonymous PUT must be refused (403) by a read-only policy, got "
        f"{put.status_code}. Hint: allow only s3:GetObject, never s3:PutObject or s3:*."
    )
    delete = anonymous("DELETE", mod.object_url(bucket, "reports/summary.json"))
    assert delete.status_code == 403, (
        f"Part A: an anonymous DELETE must be refused (403), got {delete.status_code}."
    )
    assert get_bytes(s3, bucket, "reports/summary.json") == b'{"flights": 42}'


@pytest.mark.points(2)
def test_partA_policy_can_be_limited_to_a_prefix(mod, s3, bucket):
    """read_only_policy(bucket, prefix) is a policy S3 accepts that opens only that prefix."""
    put_bytes(s3, bucket, "public/flights.json", b"[1, 2, 3]")
    put_bytes(s3, bucket, "internal/costs.json", b"[4, 5, 6]")
    policy = mod.read_only_policy(bucket, prefix="public/")
    assert isinstance(policy, dict), (
        f"Part A: read_only_policy() should return the policy as a dict, got {type(policy)}."
    )
    s3.set_bucket_policy(bucket, json.dumps(policy))

    inside = anonymous("GET", mod.object_url(bucket, "public/flights.json"))
    outside = anonymous("GET", mod.object_url(bucket, "internal/costs.json"))
    assert inside.status_code == 200, (
        f"Part A: a key under the public prefix should be readable (200), got {inside.status_code}."
    )
    assert outside.status_code == 403, (
        f"Part A: a key outside the public prefix must stay private (403), got "
        f"{outside.status_code}. Hint: the Resource is arn:aws:s3:::<bucket>/<prefix>*."
    )


# ---------------------------------------------------------------- part B: raw layout
@pytest.mark.points(2)
def test_partB_raw_key_is_hive_style_in_utc(mod, far_from_utc):
    """raw_key() builds flights/date=YYYY-MM-DD/hour=HH/<time>.json.gz from the UTC time."""
    cases = {
        1705311000: "flights/date=2024-01-15/hour=09/1705311000.json.gz",
        1705363199: "flights/date=2024-01-15/hour=23/1705363199.json.gz",
        1705363200: "flights/date=2024-01-16/hour=00/1705363200.json.gz",
    }
    for snapshot_time, expected in cases.items():
        actual = mod.raw_key(snapshot_time)
        assert actual == expected, (
            f"Part B: raw_key({snapshot_time}) should be {expected!r}, got {actual!r}. "
            "Hint: the process runs in Tokyo time here; use datetime.fromtimestamp(t, tz=UTC) "
            "and zero-pad the hour."
        )
    assert mod.raw_key(1705311000, prefix="archive") == (
        "archive/date=2024-01-15/hour=09/1705311000.json.gz"
    ), "Part B: raw_key(t, prefix=...) should start with the given prefix."


@pytest.mark.points(1)
def test_partB_partition_prefix_selects_a_day_or_an_hour(mod):
    """partition_prefix() ends with '/' so that hour=01 never matches hour=010 or a sibling."""
    assert mod.partition_prefix(date(2024, 1, 15)) == "flights/date=2024-01-15/", (
        "Part B: partition_prefix(day) should be 'flights/date=YYYY-MM-DD/'."
    )
    assert mod.partition_prefix(date(2024, 1, 15), 9) == "flights/date=2024-01-15/hour=09/", (
        "Part B: partition_prefix(day, 9) should be 'flights/date=YYYY-MM-DD/hour=09/'."
    )
    with pytest.raises(ValueError):
        mod.partition_prefix(date(2024, 1, 15), 24)


@pytest.mark.points(3)
def test_partB_upload_sets_type_encoding_and_metadata(mod, s3, bucket):
    """upload_snapshot() stores gzipped JSON with content type, encoding and metadata."""
    snapshot = make_snapshot(1705311000, n_states=3)
    key = mod.upload_snapshot(s3, bucket, snapshot)
    assert key == "flights/date=2024-01-15/hour=09/1705311000.json.gz", (
        f"Part B: upload_snapshot() should return the key from raw_key(), got {key!r}."
    )
    stat = s3.stat_object(bucket, key)
    headers = stat.metadata
    assert stat.content_type == "application/json", (
        f"Part B: Content-Type should be application/json, got {stat.content_type!r}."
    )
    assert headers.get("Content-Encoding") == "gzip", (
        f"Part B: Content-Encoding should be gzip, got {headers.get('Content-Encoding')!r}. "
        "Hint: pass it in put_object(metadata={'Content-Encoding': 'gzip', ...})."
    )
    user = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")}
    expected_user = {"x-amz-meta-snapshot-time": "1705311000", "x-amz-meta-state-count": "3"}
    for name, value in expected_user.items():
        assert user.get(name) == value, (
            f"Part B: metadata {name} should be {value!r}, got {user.get(name)!r} "
            f"(all user metadata: {user})."
        )
    stored = get_bytes(s3, bucket, key)
    assert stored[:2] == b"\x1f\x8b", "Part B: the stored bytes should be gzip (gzip.compress)."
    assert json.loads(gzip.decompress(stored)) == snapshot, (
        "Part B: the stored JSON differs from the snapshot that was uploaded."
    )
    assert mod.read_snapshot(s3, bucket, key) == snapshot, (
        "Part B: read_snapshot() should return the uploaded snapshot unchanged."
    )


@pytest.mark.points(1)
def test_partB_upload_rejects_a_snapshot_without_time(mod, s3, bucket):
    """upload_snapshot() refuses a snapshot with no integer `time` and stores nothing."""
    for bad in ({"states": []}, {"time": "yesterday", "states": []}):
        with pytest.raises(ValueError):
            mod.upload_snapshot(s3, bucket, bad)
    leftovers = [o.object_name for o in s3.list_objects(bucket, recursive=True)]
    assert leftovers == [], f"Part B: a rejected snapshot must not be stored, found {leftovers}."


@pytest.mark.points(3)
def test_partB_pages_return_every_key_exactly_once(mod, s3, bucket):
    """iter_pages() lists an hour or a day page by page, every key once, in key order."""
    hour_keys = [
        f"flights/date=2024-01-15/hour=09/{1705309200 + 60 * i}.json.gz" for i in range(30)
    ]
    next_hour = [f"flights/date=2024-01-15/hour=10/{1705312800 + i}.json.gz" for i in range(3)]
    next_day = [f"flights/date=2024-01-16/hour=00/{1705363200 + i}.json.gz" for i in range(2)]
    for key in hour_keys + next_hour + next_day:
        put_bytes(s3, bucket, key, b"{}")

    pages = list(mod.iter_pages(s3, bucket, "flights/date=2024-01-15/hour=09/", page_size=7))
    sizes = [len(page.keys) for page in pages]
    assert sizes == [7, 7, 7, 7, 2], (
        f"Part B: 30 keys with page_size=7 should come in pages of [7, 7, 7, 7, 2], got {sizes}."
    )
    listed = [key for page in pages for key in page.keys]
    assert listed == sorted(hour_keys), (
        f"Part B: the pages should hold each of the 30 keys of hour 09 exactly once, in key order; "
        f"got {len(listed)} keys, {len(set(listed))} distinct, "
        f"{len(set(listed) - set(hour_keys))} from other hours. "
        "Hint: start each page after the last key of the previous page (start_after)."
    )
    assert pages[-1].next_start_after is None, "Part B: the last page should say no more pages."

    day = [k for p in mod.iter_pages(s3, bucket, "flights/date=2024-01-15/", 10) for k in p.keys]
    assert day == sorted(hour_keys + next_hour), (
        f"Part B: listing the day should give its 33 keys once each, got {len(day)}."
    )


@pytest.mark.points(2)
def test_partB_list_page_resumes_after_a_key(mod, s3, bucket):
    """list_page() returns at most page_size keys after start_after and says where to go on."""
    prefix = "flights/date=2024-01-15/hour=09/"
    keys = sorted(f"{prefix}{1705309200 + i}.json.gz" for i in range(25))
    for key in keys:
        put_bytes(s3, bucket, key, b"{}")

    first = mod.list_page(s3, bucket, prefix, page_size=10)
    assert first.keys == keys[:10] and first.next_start_after == keys[9], (
        f"Part B: the first page of 10 should be keys 1-10 with next_start_after = key 10; got "
        f"{len(first.keys)} keys, next_start_after={first.next_start_after!r}."
    )
    second = mod.list_page(s3, bucket, prefix, page_size=10, start_after=first.next_start_after)
    assert second.keys == keys[10:20] and second.next_start_after == keys[19], (
        "Part B: list_page(start_after=<key 10>) should return keys 11-20 and point at key 20."
    )
    last = mod.list_page(s3, bucket, prefix, page_size=5, start_after=keys[19])
    assert last.keys == keys[20:] and last.next_start_after is None, (
        f"Part B: the last 5 keys with page_size=5 form the last page (next_start_after None); "
        f"got {len(last.keys)} keys, next_start_after={last.next_start_after!r}. "
        "Hint: ask for page_size + 1 keys to learn whether another page follows."
    )
    for bad_size in (0, 1001):
        with pytest.raises(ValueError):
            mod.list_page(s3, bucket, prefix, page_size=bad_size)


@pytest.mark.points(2)
def test_partB_real_recording_lands_in_the_right_hours(mod, s3, bucket):
    """Real snapshots from the shipped recording land in their UTC hour and read back equal."""
    snapshots = load_snapshots()[::27]  # 41 snapshots spread over 2021-10-07 12:00-15:00 UTC
    for snapshot in snapshots:
        mod.upload_snapshot(s3, bucket, snapshot)

    for hour in (12, 13, 14):
        prefix = f"flights/date=2021-10-07/hour={hour:02d}/"
        expected = sorted(
            f"{prefix}{s['time']}.json.gz"
            for s in snapshots
            if datetime.fromtimestamp(s["time"], tz=UTC).hour == hour
        )
        listed = [k for page in mod.iter_pages(s3, bucket, prefix, page_size=5) for k in page.keys]
        assert listed == expected, (
            f"Part B: hour {hour:02d} of the recording should list {len(expected)} snapshots "
            f"(once each, in key order), got {len(listed)}."
        )
    sample = snapshots[len(snapshots) // 2]
    assert mod.read_snapshot(s3, bucket, mod.raw_key(sample["time"])) == sample, (
        "Part B: a real snapshot should read back exactly as it was uploaded."
    )


# ---------------------------------------------------------------- part C: Parquet
@pytest.mark.points(2)
def test_partC_partition_columns_are_utc_date_and_hour(mod, far_from_utc):
    """add_partition_columns() appends `date` (string) and `hour` (int32) in UTC."""
    import pyarrow as pa

    table = mod.snapshots_to_table([make_snapshot(t, n_states=1) for t in PARQUET_TIMES])
    out = mod.add_partition_columns(table)
    assert out.column_names == [*ROW_FIELD_NAMES, "date", "hour"], (
        f"Part C: expected the row columns then date, hour; got {out.column_names}."
    )
    assert out.schema.field("date").type == pa.string(), "Part C: `date` should be a string."
    assert out.schema.field("hour").type == pa.int32(), "Part C: `hour` should be int32."
    pairs = list(zip(out["date"].to_pylist(), out["hour"].to_pylist(), strict=True))
    expected = [("2024-01-15", 23), ("2024-01-16", 0), ("2024-01-16", 1)]
    assert pairs == expected, (
        f"Part C: (date, hour) should be {expected} in UTC, got {pairs}. "
        "Hint: cast fetch_time to pa.timestamp('s') and use pyarrow.compute."
    )


@pytest.mark.points(2)
def test_partC_parquet_layout_is_hive_partitioned(mod, s3, fs, bucket):
    """write_partitioned() writes <prefix>/date=…/hour=…/*.parquet and returns those paths."""
    table = mod.snapshots_to_table([make_snapshot(t) for t in PARQUET_TIMES])
    paths = mod.write_partitioned(fs, table, bucket, "flights")
    partitions = hive_partitions(s3, bucket, "flights", "Part C", "Hive-style partitions")
    assert partitions == PARQUET_PARTITIONS, (
        f"Part C: expected partitions {sorted(PARQUET_PARTITIONS)}, found {sorted(partitions)}."
    )
    stored = sorted(
        f"{bucket}/{o.object_name}"
        for o in s3.list_objects(bucket, prefix="flights/", recursive=True)
        if o.object_name.endswith(".parquet")
    )
    assert sorted(paths or []) == stored, (
        f"Part C: write_partitioned() should return the paths it wrote ({stored}), got {paths}. "
        "Hint: ds.write_dataset(file_visitor=...)."
    )


@pytest.mark.points(3)
def test_partC_pyarrow_round_trip_and_day_filter(mod, fs, bucket):
    """read_partitioned() gives back what write_partitioned() wrote, or only the day asked for."""
    snapshots = [make_snapshot(t) for t in PARQUET_TIMES]
    mod.write_partitioned(fs, mod.snapshots_to_table(snapshots), bucket, "flights")
    expected = with_partitions(snapshots)

    back = mod.read_partitioned(fs, bucket, "flights")
    assert sort_rows(back.to_pylist()) == expected, (
        f"Part C: read_partitioned() should return the {len(expected)} rows written, with date "
        f"and hour columns; got {back.num_rows} rows with columns {back.column_names}."
    )
    one_day = mod.read_partitioned(fs, bucket, "flights", day="2024-01-16")
    expected_day = [row for row in expected if row["date"] == "2024-01-16"]
    assert sort_rows(one_day.to_pylist()) == expected_day, (
        f"Part C: read_partitioned(day='2024-01-16') should return only that day's "
        f"{len(expected_day)} rows, got {one_day.num_rows}. Hint: filter on ds.field('date')."
    )


@pytest.mark.points(2)
def test_partC_rewriting_a_partition_replaces_it(mod, fs, bucket):
    """Writing an hour again replaces that hour's files; other hours stay, nothing doubles."""
    snapshots = [make_snapshot(t) for t in PARQUET_TIMES]
    mod.write_partitioned(fs, mod.snapshots_to_table(snapshots), bucket, "flights")
    # A second file in hour 00 of 2024-01-16, as a bigger earlier run would have left: re-writing
    # the hour must replace the whole partition, not only the files whose names it happens to reuse.
    hour_files = [
        info.path
        for info in fs.get_file_info(FileSelector(f"{bucket}/flights", recursive=True))
        if "/date=2024-01-16/hour=0" in info.path and info.path.endswith(".parquet")
    ]
    assert hour_files, "Part C: write_partitioned() wrote no file for 2024-01-16 hour 00."
    folder = hour_files[0].rsplit("/", 1)[0]
    fs.copy_file(hour_files[0], f"{folder}/from-an-earlier-run.parquet")
    corrected = make_snapshot(PARQUET_TIMES[1], velocity=999.0)
    mod.write_partitioned(fs, mod.snapshots_to_table([corrected]), bucket, "flights")

    expected = with_partitions([snapshots[0], corrected, snapshots[2]])
    back = sort_rows(mod.read_partitioned(fs, bucket, "flights").to_pylist())
    assert back == expected, (
        f"Part C: after re-writing hour 00 of 2024-01-16 there should be {len(expected)} rows, "
        f"hour 00 with the new values; got {len(back)} rows. "
        "Hint: look at the values of existing_data_behavior: one of them removes what a partition "
        "held before, the others only overwrite files of the same name."
    )


@pytest.mark.points(3)
def test_partC_spark_reads_what_pyarrow_wrote(mod, fs, bucket, spark):
    """read_with_spark() reads pyarrow's Parquet through s3a:// with date and hour columns."""
    snapshots = [make_snapshot(t) for t in PARQUET_TIMES]
    mod.write_partitioned(fs, mod.snapshots_to_table(snapshots), bucket, "flights")
    schema = mod.spark_lake_schema()
    rows = with_partitions(snapshots)

    actual = mod.read_with_spark(spark, bucket, "flights")
    expected = spark.createDataFrame([tuple(r[f.name] for f in schema) for r in rows], schema)
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)

    one_day = mod.read_with_spark(spark, bucket, "flights", day="2024-01-15")
    assert_df_equality(
        one_day,
        expected.where("date = '2024-01-15'"),
        ignore_row_order=True,
        ignore_nullable=True,
    )


@pytest.mark.points(3)
def test_partC_pyarrow_reads_what_spark_wrote(mod, s3, fs, bucket, spark):
    """write_with_spark() writes s3a:// Parquet partitioned by UTC date/hour that pyarrow reads."""
    snapshots = [make_snapshot(t) for t in PARQUET_TIMES]
    rows = [state_to_row(s["time"], state) for s in snapshots for state in s["states"]]
    schema = spark_row_schema()
    df = spark.createDataFrame([tuple(r[f.name] for f in schema) for r in rows], schema)

    # The session's time zone is Tokyo's here: UTC partitions must not depend on it.
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "Asia/Tokyo")
    try:
        url = mod.write_with_spark(df, bucket, "spark_flights")
        # A corrected hour 00 of 2024-01-16, written again: only that partition is replaced.
        corrected = make_snapshot(PARQUET_TIMES[1], velocity=999.0)
        fixed = [state_to_row(corrected["time"], state) for state in corrected["states"]]
        mod.write_with_spark(
            spark.createDataFrame([tuple(r[f.name] for f in schema) for r in fixed], schema),
            bucket,
            "spark_flights",
        )
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)
    assert url == f"s3a://{bucket}/spark_flights", (
        f"Part C: write_with_spark() should return s3a://{bucket}/spark_flights, got {url!r}."
    )
    partitions = hive_partitions(s3, bucket, "spark_flights", "Part C", "Hive-style partitions")
    assert partitions == PARQUET_PARTITIONS, (
        f"Part C: after writing three hours and then re-writing one of them, Spark's dataset "
        f"should hold partitions {sorted(PARQUET_PARTITIONS)}, found {sorted(partitions)}. Hint: "
        f".partitionBy('date', 'hour') with UTC values (whatever the session's time zone), and "
        f"an overwrite that replaces only the partitions being written."
    )
    back = sort_rows(mod.read_partitioned(fs, bucket, "spark_flights").to_pylist())
    expected = with_partitions([snapshots[0], corrected, snapshots[2]])
    assert back == expected, (
        f"Part C: pyarrow should read back {len(expected)} rows (hour 00 of 2024-01-16 as "
        f"re-written, the other hours as first written); got {len(back)} rows; first difference: "
        f"{next(((a, b) for a, b in zip(back, expected, strict=False) if a != b), 'row count')}."
    )


# ---------------------------------------------------------------- part D: sharing
@pytest.mark.points(3)
def test_partD_presigned_link_works_over_plain_http(mod, s3, bucket):
    """A presigned link downloads a private object with plain HTTP; the bare URL is refused."""
    body = b'{"report": "daily flights"}'
    put_bytes(s3, bucket, "shared/report.json", body)
    url = mod.share_link(s3, bucket, "shared/report.json", timedelta(minutes=5))

    assert "X-Amz-Expires=300" in url, (
        f"Part D: a 5-minute link should carry X-Amz-Expires=300, got {url!r}. "
        "Hint: client.presigned_get_object(..., expires=expires)."
    )
    got = anonymous("GET", url)
    assert got.status_code == 200 and got.content == body, (
        f"Part D: the presigned link should download the object (200), got {got.status_code}: "
        f"{got.text[:200]}"
    )
    bare = anonymous("GET", mod.object_url(bucket, "shared/report.json"))
    assert bare.status_code == 403, (
        f"Part D: the object itself stays private (the link is the permission), but the plain "
        f"URL got {bare.status_code}."
    )


@pytest.mark.points(2)
def test_partD_expired_link_is_refused(mod, s3, bucket):
    """A link made with a 1-second lifetime is refused (HTTP 403) once it has expired."""
    put_bytes(s3, bucket, "shared/old.json", b"{}")
    url = mod.share_link(s3, bucket, "shared/old.json", timedelta(seconds=1))
    query = parse_qs(urlsplit(url).query)
    assert query.get("X-Amz-Expires") == ["1"] and "X-Amz-Signature" in query, (
        f"Part D: a 1-second link should be signed and carry X-Amz-Expires=1, got {url!r}."
    )
    last = {}

    def refused() -> bool:
        last["response"] = anonymous("GET", url)
        return last["response"].status_code == 403

    wait_quietly(refused, 15, every=0.5)
    response = last["response"]
    assert response.status_code == 403 and "expired" in response.text.lower(), (
        f"Part D: 15 s after making a 1-second link it should be refused as expired (403, "
        f"'Request has expired'), got {response.status_code}: {response.text[:200]}"
    )


@pytest.mark.points(1)
def test_partD_link_lifetime_is_checked(mod, s3, bucket):
    """share_link() refuses lifetimes S3 cannot sign: under 1 second or over 7 days."""
    put_bytes(s3, bucket, "shared/x.json", b"{}")
    for bad in (timedelta(0), timedelta(days=8)):
        with pytest.raises(ValueError):
            mod.share_link(s3, bucket, "shared/x.json", bad)
        # A lifetime is checked before anything is asked of S3 (here: even for a missing key).
        try:
            mod.share_link(s3, bucket, "shared/missing.json", bad)
        except ValueError:
            continue
        except Exception as exc:
            pytest.fail(
                f"Part D: share_link(..., {bad!r}) for a missing key raised "
                f"{type(exc).__name__}: {exc}; a bad lifetime is the caller's mistake and should "
                f"be a ValueError before any request to S3."
            )
        pytest.fail(f"Part D: share_link(..., {bad!r}) should raise ValueError.")


# ---------------------------------------------------------------- part E: safety
@pytest.mark.points(4)
def test_partE_overwritten_version_can_be_restored(mod, s3, bucket):
    """With versioning on, an overwritten object's old version is listed and can be restored."""
    mod.enable_versioning(s3, bucket)
    status = s3.get_bucket_versioning(bucket).status
    assert status == "Enabled", f"Part E: bucket versioning should be Enabled, got {status!r}."

    key = "flights/date=2024-01-15/hour=09/1705311000.json.gz"
    v1 = put_bytes(s3, bucket, key, b"first")
    v2 = put_bytes(s3, bucket, key, b"second")
    put_bytes(s3, bucket, key + ".bak", b"a different key with the same prefix")
    versions = mod.object_versions(s3, bucket, key)
    ids = [v.version_id for v in versions]
    assert ids == [v2, v1], (
        f"Part E: object_versions() should list exactly this key's versions newest first "
        f"[{v2}, {v1}], got {ids}. Hint: list_objects(prefix=key, include_version=True) and "
        "keep only object_name == key."
    )
    assert versions[0].is_latest and not versions[1].is_latest, (
        "Part E: only the newest version should have is_latest=True."
    )

    restored = mod.restore_version(s3, bucket, key, v1)
    assert restored not in (None, v1, v2), (
        f"Part E: restore_version() should return the id of a new version, got {restored!r}."
    )
    assert get_bytes(s3, bucket, key) == b"first", (
        "Part E: after restore_version(v1) the key should read 'first' again. Hint: copy_object "
        "with CopySource(bucket, key, version_id=...)."
    )
    after = [v.version_id for v in mod.object_versions(s3, bucket, key)]
    assert after == [restored, v2, v1], (
        f"Part E: restoring keeps history: expected [{restored}, {v2}, {v1}], got {after}."
    )


@pytest.mark.points(3)
def test_partE_lifecycle_rule_expires_a_prefix(mod, s3, bucket):
    """set_expiry_rule() adds or replaces one prefix's rule and keeps the others."""
    mod.set_expiry_rule(s3, bucket, "flights/", 30)
    mod.set_expiry_rule(s3, bucket, "tmp/", 1)
    mod.set_expiry_rule(s3, bucket, "flights/", 7)

    config = s3.get_bucket_lifecycle(bucket)
    rules = config.rules if config else []
    days = {
        (r.rule_filter.prefix if r.rule_filter else None): (r.expiration and r.expiration.days)
        for r in rules
    }
    assert days == {"flights/": 7, "tmp/": 1}, (
        f"Part E: expected expiry days {{'flights/': 7, 'tmp/': 1}} (one rule per prefix, the "
        f"second call for flights/ replacing the first), got {days}. Hint: "
        "set_bucket_lifecycle() replaces the whole configuration: read it, change it, write it."
    )
    listed = sorted(
        ((r.rule_filter.prefix if r.rule_filter else None), r.expiration and r.expiration.days)
        for r in rules
    )
    assert listed == [("flights/", 7), ("tmp/", 1)], (
        f"Part E: the bucket should hold exactly two rules, (flights/, 7 days) and (tmp/, 1 day); "
        f"it holds {listed}. Hint: the second call for flights/ replaces that prefix's rule "
        f"instead of adding another one next to it."
    )
    assert all(r.status == "Enabled" for r in rules), "Part E: lifecycle rules must be Enabled."
    with pytest.raises(ValueError):
        mod.set_expiry_rule(s3, bucket, "flights/", 0)


@pytest.mark.points(4)
def test_partE_multipart_upload_round_trips_by_checksum(mod, s3, bucket, tmp_path):
    """A 12 MiB file goes up in three 5 MiB parts and comes back with the same SHA-256."""
    data = random.Random(6).randbytes(12 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    source = tmp_path / "big.bin"
    source.write_bytes(data)

    result = mod.upload_file(s3, bucket, "exports/big.bin", source, part_size=5 * MiB)
    assert result.sha256 == digest and result.size == len(data), (
        f"Part E: upload_file() should report size {len(data)} and SHA-256 {digest}, got "
        f"{result.size} and {result.sha256}."
    )
    stat = s3.stat_object(bucket, "exports/big.bin")
    assert stat.etag.endswith("-3") and result.parts == 3, (
        f"Part E: a 12 MiB upload with 5 MiB parts is a multipart upload of 3 parts (ETag ending "
        f"'-3'); got ETag {stat.etag!r}, parts={result.parts}. Hint: put_object(part_size=...)."
    )
    recorded = stat.metadata.get("x-amz-meta-sha256")
    assert recorded == digest, (
        f"Part E: the object's metadata should record sha256={digest}, got {recorded!r}."
    )

    target = tmp_path / "back.bin"
    got = mod.download_file(s3, bucket, "exports/big.bin", target)
    assert got == digest, f"Part E: download_file() should return SHA-256 {digest}, got {got}."
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest, (
        "Part E: the downloaded file's bytes differ from the uploaded file."
    )


@pytest.mark.points(2)
def test_partE_corrupt_download_is_detected(mod, s3, bucket, tmp_path):
    """download_file() raises ChecksumMismatch when bytes and recorded SHA-256 disagree."""
    wrong = hashlib.sha256(b"what was meant to be stored").hexdigest()
    put_bytes(s3, bucket, "exports/bad.bin", b"what is stored", metadata={"sha256": wrong})
    target = tmp_path / "bad.bin"
    with pytest.raises(mod.ChecksumMismatch) as caught:
        mod.download_file(s3, bucket, "exports/bad.bin", target)
    assert "exports/bad.bin" in str(caught.value), (
        f"Part E: the checksum error should name the key, got: {caught.value}"
    )
    assert not target.exists(), (
        "Part E: a download that fails its checksum must not leave a file at the target path."
    )


@pytest.mark.points(2)
def test_partE_missing_bucket_is_a_clear_error(mod, s3, tmp_path, bucket_names):
    """Uploading to a bucket that does not exist raises BucketNotFound naming the bucket."""
    missing = bucket_names()
    source = tmp_path / "small.bin"
    source.write_bytes(b"payload")
    with pytest.raises(mod.LakeError) as caught:
        mod.upload_file(s3, missing, "exports/small.bin", source)
    assert isinstance(caught.value, mod.BucketNotFound) and missing in str(caught.value), (
        f"Part E: expected BucketNotFound naming {missing!r}, got "
        f"{type(caught.value).__name__}: {caught.value}. Hint: catch S3Error and use as_lake_error()."
    )
    with pytest.raises(mod.BucketNotFound):
        mod.download_file(s3, missing, "exports/small.bin", tmp_path / "out.bin")
    try:
        s3.get_object(missing, "exports/small.bin")
    except S3Error as exc:  # a real error from MinIO, to translate
        translated = mod.as_lake_error(exc, missing, "exports/small.bin")
    assert isinstance(translated, mod.BucketNotFound) and missing in str(translated), (
        f"Part E: as_lake_error() should turn NoSuchBucket into BucketNotFound naming the "
        f"bucket, got {type(translated).__name__}: {translated}"
    )


@pytest.mark.points(2)
def test_partE_missing_key_is_a_clear_error(mod, s3, bucket, tmp_path):
    """Downloading a key that does not exist raises ObjectNotFound naming bucket and key."""
    target = tmp_path / "out.bin"
    with pytest.raises(mod.LakeError) as caught:
        mod.download_file(s3, bucket, "exports/nothing-here.bin", target)
    error = caught.value
    assert isinstance(error, mod.ObjectNotFound), (
        f"Part E: expected ObjectNotFound, got {type(error).__name__}: {error}."
    )
    assert bucket in str(error) and "exports/nothing-here.bin" in str(error), (
        f"Part E: the message should name bucket {bucket!r} and the key, got: {error}"
    )
    assert not target.exists(), "Part E: a failed download must not create the target file."
    try:
        s3.get_object(bucket, "exports/nothing-here.bin")
    except S3Error as exc:  # a real error from MinIO, to translate
        translated = mod.as_lake_error(exc, bucket, "exports/nothing-here.bin")
    assert isinstance(translated, mod.ObjectNotFound) and "nothing-here" in str(translated), (
        f"Part E: as_lake_error() should turn NoSuchKey into ObjectNotFound naming the key, "
        f"got {type(translated).__name__}: {translated}"
    )
