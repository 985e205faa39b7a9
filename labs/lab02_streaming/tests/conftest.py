"""Fixtures for Lab 02: the module under test, and a throw-away set of topics, tables, S3 prefixes
and checkpoint folder per test (all removed afterwards), run under a driver memory budget."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from harness.grading import lab_module
from harness.grading.suite_helpers import drop_clickhouse_database, drop_topics
from harness.runtime.replay import ensure_topic
from harness.runtime.services import minio_client, pg_connect

TEST_BUCKET = "streaming-aggregations"
TEST_PREFIX = "lab02-tests"
# The most a Spark job of a streaming test may send to the driver (spark.driver.maxResultSize):
# counts and Kafka positions fit easily, a micro-batch's rows do not.
DRIVER_RESULT_BUDGET = "1m"


@pytest.fixture(scope="module")
def mod():
    """The lab's `streaming_processor` module (labs/ or solutions/, from `--target`)."""
    return lab_module("lab02_streaming", "streaming_processor")


def _warn(what: str, exc: Exception) -> None:
    warnings.warn(f"Lab 02 test cleanup: could not remove {what}: {exc}", stacklevel=1)


def _stop_queries(spark, marker: str) -> None:
    for query in spark.streams.active:
        if marker in (query.name or ""):
            try:
                query.stop()
            except Exception as exc:  # cleanup must never hide the test's own result
                _warn(f"streaming query {query.name}", exc)


def _cleanup(cfg: Any) -> None:
    drop_topics([cfg.topic, cfg.dlq_topic, cfg.processed_topic], _warn)
    drop_clickhouse_database(cfg.clickhouse_database, _warn)
    try:
        from psycopg import sql

        with pg_connect() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(cfg.pg_table)))
    except Exception as exc:
        _warn(f"PostgreSQL table {cfg.pg_table}", exc)
    try:
        with pg_connect() as conn:
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"{cfg.pg_table}_staging"))
            )
    except Exception as exc:
        _warn(f"PostgreSQL table {cfg.pg_table}_staging", exc)
    s3 = minio_client()
    for path in (cfg.aggregates_path, cfg.staging_path):
        try:
            bucket, _, prefix = path.removeprefix("s3a://").partition("/")
            for obj in s3.list_objects(bucket, prefix=prefix, recursive=True):
                s3.remove_object(bucket, obj.object_name)
        except Exception as exc:
            _warn(path, exc)


@contextmanager
def driver_result_budget(spark, size: str = DRIVER_RESULT_BUDGET) -> Iterator[None]:
    """Run the block with spark.driver.maxResultSize = `size`: a job whose results (a collect(),
    toArrow(), toPandas() …) exceed it fails. The live setting of the running SparkContext is
    changed (every new job reads it) and restored afterwards."""
    conf = spark.sparkContext._jsc.sc().conf()
    before = conf.get("spark.driver.maxResultSize", "1g")
    conf.set("spark.driver.maxResultSize", size)
    try:
        yield
    finally:
        conf.set("spark.driver.maxResultSize", before)


@pytest.fixture
def cfg(mod, spark, tmp_path) -> Iterator[Any]:
    """A StreamConfig whose topic (2 partitions, created), sinks and checkpoint are this test's;
    the test runs under the driver memory budget (`driver_result_budget`)."""
    uid = uuid.uuid4().hex[:10]
    config = mod.StreamConfig(
        topic=f"lab02_test_{uid}",
        dlq_topic=f"lab02_test_{uid}.dlq",
        processed_topic=f"lab02_test_{uid}.processed",
        clickhouse_database=f"lab02_test_{uid}",
        clickhouse_table="flights_streaming",
        pg_table=f"processed_flights_{uid}",
        aggregates_path=f"s3a://{TEST_BUCKET}/{TEST_PREFIX}/{uid}/country_windows",
        staging_path=f"s3a://{TEST_BUCKET}/{TEST_PREFIX}/{uid}/staging",
        checkpoint=str(tmp_path / "checkpoint"),
        trigger="availableNow",
        window="1 minute",
        watermark="2 minutes",
        starting_offsets="earliest",
        max_offsets_per_trigger=None,
    )
    ensure_topic(config.topic, partitions=2)
    try:
        with driver_result_budget(spark):
            yield config
    finally:
        _stop_queries(spark, uid)
        _cleanup(config)
