"""Remove what the benchmarks create: `python -m bench --cleanup` after an interrupted run.

Everything the benchmarks create is named `bench_*`: Kafka topics, ClickHouse databases,
PostgreSQL tables, MinIO prefixes in the lab's buckets, checkpoint folders in the temp folder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from bench.common import PREFIX, log

BUCKETS = ("raw-data", "processed-data", "streaming-aggregations")


def delete_topics(topics: list[str]) -> None:
    """Delete Kafka topics, waiting for the broker; a topic that does not exist is fine."""
    from confluent_kafka import KafkaError, KafkaException

    from harness.runtime.services import kafka_admin

    if not topics:
        return
    admin = kafka_admin()  # keep a reference: the requests go out while it lives
    for topic, future in admin.delete_topics(topics, operation_timeout=30).items():
        try:
            future.result(timeout=60)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                log(f"could not delete topic {topic}: {exc}")


def cleanup() -> dict[str, list[str]]:
    """Remove every `bench_*` topic, database, table, object prefix and temp folder."""
    from bench.batch import remove_prefix
    from harness.runtime.services import clickhouse_client, kafka_admin, minio_client, pg_connect

    removed: dict[str, list[str]] = {}
    topics = [t for t in kafka_admin().list_topics(timeout=30).topics if t.startswith(PREFIX)]
    delete_topics(topics)
    removed["kafka topics"] = topics

    client = clickhouse_client()
    databases = [
        row[0]
        for row in client.query(
            "SELECT name FROM system.databases WHERE startsWith(name, {p:String})",
            parameters={"p": PREFIX},
        ).result_rows
    ]
    for name in databases:
        client.command(f"DROP DATABASE IF EXISTS `{name}`")
    removed["clickhouse databases"] = databases

    with pg_connect() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND starts_with(tablename, %s)",
                (PREFIX,),
            ).fetchall()
        ]
        for name in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')
    removed["postgresql tables"] = tables

    minio = minio_client()
    prefixes = []
    for bucket in BUCKETS:
        if not minio.bucket_exists(bucket):
            continue
        for item in minio.list_objects(bucket, prefix=PREFIX):
            name = item.object_name.rstrip("/")
            remove_prefix(bucket, name)
            prefixes.append(f"{bucket}/{name}")
    removed["minio prefixes"] = prefixes

    folders = [p for p in Path(tempfile.gettempdir()).glob(f"{PREFIX}*") if p.is_dir()]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    removed["temp folders"] = [str(p) for p in folders]
    return removed
