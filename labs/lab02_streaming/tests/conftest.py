"""Fixtures for Lab 02: the module under test, and a throw-away set of topics, tables, S3 prefix
and checkpoint folder per test (all removed afterwards)."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from harness.grading import lab_module
from harness.runtime.replay import ensure_topic
from harness.runtime.services import clickhouse_client, kafka_admin, minio_client, pg_connect

TEST_BUCKET = "streaming-aggregations"
TEST_PREFIX = "lab02-tests"


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
    try:
        admin = kafka_admin()
        topics = [cfg.topic, cfg.dlq_topic, cfg.processed_topic]
        existing = set(admin.list_topics(timeout=10).topics)
        doomed = [t for t in topics if t in existing]
        for topic, future in (admin.delete_topics(doomed) if doomed else {}).items():
            try:
                future.result(15)
            except Exception as exc:
                _warn(f"topic {topic}", exc)
    except Exception as exc:
        _warn("Kafka topics", exc)
    try:
        client = clickhouse_client()
        client.command(f"DROP DATABASE IF EXISTS `{cfg.clickhouse_database}`")
        client.close()
    except Exception as exc:
        _warn(f"ClickHouse database {cfg.clickhouse_database}", exc)
    try:
        from psycopg import sql

        with pg_connect() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(cfg.pg_table)))
    except Exception as exc:
        _warn(f"PostgreSQL table {cfg.pg_table}", exc)
    try:
        s3 = minio_client()
        prefix = cfg.aggregates_path.removeprefix(f"s3a://{TEST_BUCKET}/")
        for obj in s3.list_objects(TEST_BUCKET, prefix=prefix, recursive=True):
            s3.remove_object(TEST_BUCKET, obj.object_name)
    except Exception as exc:
        _warn(f"s3://{TEST_BUCKET}/{cfg.aggregates_path}", exc)


@pytest.fixture
def cfg(mod, spark, tmp_path) -> Iterator[Any]:
    """A StreamConfig whose topic (2 partitions, created), sinks and checkpoint are this test's."""
    uid = uuid.uuid4().hex[:10]
    config = mod.StreamConfig(
        topic=f"lab02_test_{uid}",
        dlq_topic=f"lab02_test_{uid}.dlq",
        processed_topic=f"lab02_test_{uid}.processed",
        clickhouse_database=f"lab02_test_{uid}",
        clickhouse_table="flights_streaming",
        pg_table=f"processed_flights_{uid}",
        aggregates_path=f"s3a://{TEST_BUCKET}/{TEST_PREFIX}/{uid}/country_windows",
        checkpoint=str(tmp_path / "checkpoint"),
        trigger="availableNow",
        window="1 minute",
        watermark="2 minutes",
        starting_offsets="earliest",
        max_offsets_per_trigger=None,
    )
    ensure_topic(config.topic, partitions=2)
    yield config
    _stop_queries(spark, uid)
    _cleanup(config)
