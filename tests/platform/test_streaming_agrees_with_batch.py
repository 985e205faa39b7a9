"""One platform, one answer: a slice of the shipped recording streamed through the Lab 02 reference job
lands in ClickHouse, PostgreSQL and the processed topic as exactly the rows the Lab 01 reference keeps
from the same slice (same count, same keys), and its dead letters carry Lab 01's reasons."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from harness.grading.testkit import read_topic, stream_scratch
from harness.runtime.data import load_snapshots
from harness.runtime.replay import replay
from harness.runtime.services import (
    clickhouse_client,
    kafka_admin,
    minio_client,
    pg_connect,
)

# The first 20 minutes of the recording (about 6,600 state vectors, some of them rejected): the
# agreement is about rules, not volume, and the whole recording would triple the test's time.
SLICE_SNAPSHOTS = 120
# Spark's start, a streaming job and a batch job in one test: more than the suite's 300 s on a busy
# 2-core machine.
pytestmark = pytest.mark.timeout(900)


def _solution(lab: str, module: str) -> Any:
    from harness.grading.loader import lab_module, set_target

    set_target("solutions")
    return lab_module(lab, module)


@pytest.fixture
def stream_cfg(tmp_path) -> Iterator[Any]:
    """The Lab 02 job's configuration on throw-away names, removed afterwards."""
    mod = _solution("lab02_streaming", "streaming_processor")
    name = f"agreement_{uuid.uuid4().hex[:10]}"
    cfg = mod.StreamConfig(**stream_scratch(name, tmp_path), trigger="availableNow")
    yield cfg
    admin = kafka_admin()
    for future in admin.delete_topics([cfg.topic, cfg.dlq_topic, cfg.processed_topic]).values():
        try:
            future.result(15)
        except Exception:  # a topic the job never created
            pass
    client = clickhouse_client()
    client.command(f"DROP DATABASE IF EXISTS `{cfg.clickhouse_database}`")
    client.close()
    with pg_connect() as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{cfg.pg_table}", "{cfg.pg_table}_staging"')
    s3 = minio_client()
    for obj in s3.list_objects("streaming-aggregations", prefix=f"{name}/", recursive=True):
        s3.remove_object("streaming-aggregations", obj.object_name)


def test_streaming_and_batch_keep_the_same_rows(spark, stream_cfg, tmp_path) -> None:
    """Replay a slice through Lab 02's job; compare with Lab 01's clean() of the same slice."""
    streaming = _solution("lab02_streaming", "streaming_processor")
    batch = _solution("lab01_batch", "batch_processor")
    cfg = stream_cfg
    snapshots = load_snapshots()[:SLICE_SNAPSHOTS]
    recording = tmp_path / "slice.json"
    recording.write_text("".join(json.dumps(s) + "\n" for s in snapshots))

    sent = replay(topic=cfg.topic, speed=0, mode="state", snapshots=snapshots).messages
    reports = streaming.run_available_now(spark, cfg, timeout=600)
    assert sum(r.messages for r in reports) == sent

    read = batch.read_snapshots(spark, str(recording))
    cleaned = batch.clean(read.rows)
    kept = {
        (r["icao24"], r["fetch_time"])
        for r in cleaned.kept.select("icao24", "fetch_time").collect()
    }
    batch_reasons = Counter(r["reason"] for r in cleaned.rejected.select("reason").collect())
    assert read.rejected.count() == 0, "the shipped recording should read without rejects"
    assert batch_reasons, "the slice should hold rows Lab 01 rejects: take a longer slice"

    client = clickhouse_client()
    try:
        table = f"`{cfg.clickhouse_database}`.`{cfg.clickhouse_table}`"
        ch = client.query(f"SELECT icao24, toUnixTimestamp(fetch_time) FROM {table}").result_rows
    finally:
        client.close()
    with pg_connect() as conn:
        pg = conn.execute(
            f'SELECT icao24, extract(epoch FROM fetch_time)::bigint FROM "{cfg.pg_table}"'
        ).fetchall()
    processed = [json.loads(m.value()) for m in read_topic(cfg.processed_topic)]
    topic = [(d["icao24"], d["fetch_time"]) for d in processed]

    for name, rows in (("ClickHouse", ch), ("PostgreSQL", pg), ("processed topic", topic)):
        keys = [tuple(r) for r in rows]
        assert len(keys) == len(kept) and set(keys) == kept, (
            f"{name} holds {len(keys)} rows ({len(set(keys))} keys), Lab 01 keeps {len(kept)}: "
            f"{len(set(keys) - kept)} only in {name}, {len(kept - set(keys))} only in Lab 01"
        )
    dead = Counter(json.loads(m.value())["reason"] for m in read_topic(cfg.dlq_topic))
    assert dead == batch_reasons, (
        f"dead letters by reason {dict(dead)}, Lab 01's rejects by reason {dict(batch_reasons)}"
    )
