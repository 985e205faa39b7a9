"""The graded suites' shared test kit: bounded waits for what a test reads, sample rows, a
ClickHouse client for a fixture and the cleanup of scratch names.

A test never reads a Kafka topic before its partitions have leaders, and never sleeps for a
fixed time: it waits, with a bound, for the thing it needs (a leader, a watermark, a condition),
and a bound that runs out is a clear failure naming what was awaited.

    from harness.grading.testkit import read_topic, state_row, wait_for_leaders, wait_until
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from harness.runtime import waits as runtime_waits
from harness.runtime.schema import STATE_FIELDS
from harness.runtime.services import clickhouse_client, kafka_config, minio_client

WAIT_S = 60.0
T = TypeVar("T")

# Answers of a broker that is still electing a partition's leader (e.g. for a topic that was just
# created by someone else, such as Debezium): worth asking again.
RETRIABLE = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError._TRANSPORT,
}


def wait_until(
    condition: Callable[[], T], what: str, timeout: float = WAIT_S, every: float = 0.3
) -> T:
    """Call `condition` until it returns something truthy (returned); AssertionError after
    `timeout` seconds, naming `what` was awaited (the course's one bounded wait, as a test
    set-up failure)."""
    return runtime_waits.wait_until(
        condition, f"test set-up: {what}", timeout, every, error=AssertionError
    )


def _retriable(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (error.code() in RETRIABLE or error.retriable())


def wait_for_leaders(client: Any, topic: str, timeout: float = WAIT_S) -> dict[int, int]:
    """Wait until `topic` exists and every partition has a leader: {partition: leader id}.

    `client` is anything with `list_topics` (a Consumer, a Producer or an AdminClient).
    """

    def leaders() -> dict[int, int] | None:
        meta = client.list_topics(topic=topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return None
        found = {p: part.leader for p, part in meta.partitions.items()}
        ready = all(leader >= 0 for leader in found.values()) and not any(
            part.error is not None for part in meta.partitions.values()
        )
        return found if ready else None

    return wait_until(leaders, f"every partition of {topic} has a leader", timeout)


def watermarks(
    consumer: Consumer, topic: str, partition: int, timeout: float = WAIT_S
) -> tuple[int, int]:
    """(low, high) watermark of one partition, asking again while its leader is not known yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        except KafkaException as exc:
            if not _retriable(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.3)


def read_topic(topic: str, timeout: float = WAIT_S, *, missing_ok: bool = False) -> list[Message]:
    """Every message now in `topic`, from each partition's start to the end it had when asked.

    Reads with a throw-away group and commits nothing; waits (bounded) for partition leaders.
    `missing_ok`: a topic that does not exist (yet) reads as empty instead of being awaited.
    """
    consumer = Consumer(
        kafka_config(
            **{
                "group.id": f"testkit-reader-{uuid.uuid4().hex[:10]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
    )
    try:
        if missing_ok and topic not in consumer.list_topics(timeout=10).topics:
            return []
        partitions = wait_for_leaders(consumer, topic, timeout)
        ends = {}
        for p in partitions:
            low, high = watermarks(consumer, topic, p, timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        received: list[Message] = []
        deadline = time.monotonic() + timeout
        while ends and (left := deadline - time.monotonic()) > 0:
            msg = consumer.poll(min(left, 0.5))
            if msg is None or msg.error() is not None:
                continue
            received.append(msg)
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
        if ends:
            raise AssertionError(
                f"test set-up: could not read {topic} to its end within {timeout:.0f} s "
                f"(partitions left: {sorted(ends)})"
            )
        return received
    finally:
        consumer.close()


_SAMPLE: dict[str, Any] = {
    "icao24": "4b1814",
    "callsign": "SWR100  ",
    "origin_country": "Switzerland",
    "time_position": 1_633_608_000,
    "last_contact": 1_633_608_000,
    "longitude": 8.55,
    "latitude": 47.45,
    "baro_altitude": 1200.0,
    "on_ground": False,
    "velocity": 80.5,
    "true_track": 90.0,
    "vertical_rate": 0.0,
    "sensors": None,
    "geo_altitude": 1250.0,
    "squawk": "1000",
    "spi": False,
    "position_source": 0,
    "category": 0,
}


def state_row(fetch_time: int = 1_633_608_000, **fields: Any) -> dict[str, Any]:
    """A valid flat row (`fetch_time` + every field of `STATE_FIELDS`, in that order) with plain
    values; `fields` override them. An unknown field name is an error (a typo never passes)."""
    names = [name for name, _, _ in STATE_FIELDS]
    unknown = sorted(set(fields) - set(names) - {"fetch_time"})
    if unknown:
        raise TypeError(f"state_row: unknown field(s) {unknown}; the fields are {names}")
    row = {"fetch_time": fetch_time, **{name: _SAMPLE.get(name) for name in names}}
    row.update(fields)
    return row


# ------------------------------------------------------------------ ClickHouse and MinIO scratch
def clickhouse_session() -> Iterator[Any]:
    """The body of a suite's `ch` fixture: a clickhouse-connect client for the lab's ClickHouse
    (raises ServiceUnavailable if down), closed afterwards."""
    client = clickhouse_client()
    yield client
    client.close()


def drop_database(client: Any, name: str) -> None:
    """DROP a scratch ClickHouse database; warn instead of failing."""
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
