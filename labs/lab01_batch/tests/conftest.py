"""Fixtures and helpers for Lab 01: the module under test, hand-made inputs, scratch names.

Everything a test writes goes to names made for it (a MinIO prefix, a ClickHouse database, a
PostgreSQL table) and is removed afterwards. Services come from `harness.runtime.services` only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import Iterator

import pytest

from harness.grading import lab_module, target_dir
from harness.runtime.config import ROOT
from harness.runtime.data import RECORDING
from harness.runtime.services import clickhouse_client, minio_client
from harness.runtime.spark import spark_submit_command

LAB = "lab01_batch"
MODULE = "batch_processor"


@pytest.fixture(scope="module")
def mod():
    """The lab's `batch_processor` module (labs/ or solutions/, from `--target`)."""
    return lab_module(LAB, MODULE)


@pytest.fixture(scope="session")
def ch():
    """A clickhouse-connect client for the lab's ClickHouse (raises ServiceUnavailable if down)."""
    client = clickhouse_client()
    yield client
    client.close()


@pytest.fixture
def scratch_db(ch) -> Iterator[str]:
    """A fresh ClickHouse database name (not created: part E creates it), dropped afterwards."""
    name = f"lab01_test_{uuid.uuid4().hex[:12]}"
    yield name
    drop_database(ch, name)


def drop_database(client, name: str) -> None:
    try:
        client.command(f"DROP DATABASE IF EXISTS `{name}`")
    except Exception as exc:  # cleanup must never hide the test's own result
        warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)


def remove_prefix(bucket: str, prefix: str) -> None:
    """Delete every object under `prefix` in `bucket`; warn instead of failing."""
    try:
        client = minio_client()
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
            client.remove_object(bucket, obj.object_name)
    except Exception as exc:  # cleanup must never hide the test's own result
        warnings.warn(f"could not empty s3://{bucket}/{prefix}: {exc}", stacklevel=1)


@pytest.fixture
def s3_prefix() -> Iterator[str]:
    """A unique prefix, emptied afterwards in raw-data and processed-data."""
    prefix = f"lab01-tests/{uuid.uuid4().hex[:12]}"
    yield prefix
    for bucket in ("raw-data", "processed-data"):
        remove_prefix(bucket, prefix)


# ------------------------------------------------------------------ the recording, end to end
def run_cli(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one command of the job, bounded in time, capturing its output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)


def stores(spark, ch, database: str, output: str) -> dict:
    """What a run left behind: ClickHouse rows per hour and aggregates, Parquet and quarantine
    row counts."""
    flights = ch.query(
        f"SELECT hour, count() FROM `{database}`.flights_batch GROUP BY hour ORDER BY hour"
    ).result_rows
    stats = ch.query(
        f"SELECT toString(date), hour, origin_country, aircraft, state_vectors, avg_velocity, "
        f"max_altitude, ground_share FROM `{database}`.flight_statistics_batch"
    ).result_rows
    return {
        "flights_by_hour": {int(hour): int(n) for hour, n in flights},
        "stats": {(r[0], int(r[1]), r[2]): tuple(r[3:]) for r in stats},
        "parquet_rows": spark.read.parquet(f"{output}/flights").count(),
        "quarantined": spark.read.json(f"{output}/flights_rejected").count(),
    }


@pytest.fixture(scope="module")
def recording_runs(spark, ch) -> Iterator[dict]:
    """Upload the shipped recording under a unique prefix and run the job on it twice: with
    `python batch_processor.py s3 …`, then the same with `spark-submit --master local[1]`.

    Yields the two CompletedProcess objects and what each run left in the stores; the second
    run happens only when the first succeeded.
    """
    prefix = f"lab01-tests/{uuid.uuid4().hex[:12]}"
    database = f"lab01_test_{uuid.uuid4().hex[:12]}"
    output = f"s3a://processed-data/{prefix}"
    script = target_dir() / LAB / f"{MODULE}.py"
    args = ["s3", f"s3a://raw-data/{prefix}/*.json.gz", "--output", output, "--database", database]
    runs: dict = {"script": script}
    try:
        minio_client().fput_object("raw-data", f"{prefix}/{RECORDING.name}", str(RECORDING))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        runs["python"] = run_cli([sys.executable, str(script), *args], env)
        if runs["python"].returncode == 0:
            runs["after_python"] = stores(spark, ch, database, output)
            argv, submit_env = spark_submit_command(script, args, master="local[1]")
            runs["spark_submit"] = run_cli(argv, submit_env)
            if runs["spark_submit"].returncode == 0:
                runs["after_spark_submit"] = stores(spark, ch, database, output)
        yield runs
    finally:
        drop_database(ch, database)
        for bucket in ("raw-data", "processed-data"):
            remove_prefix(bucket, prefix)
