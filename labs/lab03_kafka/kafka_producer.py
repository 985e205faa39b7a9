# Generated from solutions/lab03_kafka/kafka_producer.py by `make skeletons` — this is the file you edit.
"""Lab 03 — Kafka: topics, a keyed idempotent producer, an at-least-once consumer, a dead-letter topic.

Parts (see labs/lab03_kafka/README.md):
  A. `lab_topics`, `create_topics`            — the lab's topics, created idempotently
  B. `producer_config`, `publish_rows`        — state vectors keyed by icao24, acks=all, idempotent
  C. `consumer_config`, `consume`, `offsets_for_time`, `replay_from`, `consumer_lag`
  E. `validate_record`, `route_records`       — bad records to `raw_flights.dlq`, reason in headers
Part D (the OpenSky collector) lives in `collector.py` and publishes with part B's `publish_rows`.

Everything reaches the broker through `harness.services.kafka_config()`: no host or port here.
Messages are JSON: a *row* is one state vector as a flat dict (`fetch_time` + the 18 fields of
`harness.schema`), its key the aircraft's `icao24`.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from harness.config import TOPIC_PROCESSED, TOPIC_RAW, TOPIC_RAW_DLQ
from harness.services import kafka_admin, kafka_config

# ------------------------------------------------------------------ the lab's topics (part A)
# raw_flights, processed_flights and raw_flights.dlq keep the platform's names (harness.config).
TOPIC_AIRCRAFT_LATEST = "aircraft_latest"  # compacted: the latest state of every aircraft

DAY_MS = 24 * 60 * 60 * 1000
RAW_PARTITIONS = 3  # raw_flights, processed_flights and aircraft_latest
RAW_RETENTION_MS = 7 * DAY_MS  # raw_flights: a week to replay from
PROCESSED_RETENTION_MS = 3 * DAY_MS  # processed_flights: downstream sinks keep the history
DLQ_PARTITIONS = 1
DLQ_RETENTION_MS = 30 * DAY_MS  # raw_flights.dlq: someone has to look at dead letters in time

# Kafka's own rule for topic names.
TOPIC_NAME_RULE = (
    "1 to 249 characters from ASCII letters, digits, '.', '_' and '-' (not '.' or '..')"
)
_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._-]{1,249}$")

# ------------------------------------------------------------------ dead letters (part E)
# Header names on every dead-lettered message (values are UTF-8 text).
HEADER_REASON = "error.reason"
HEADER_MESSAGE = "error.message"
# `error.reason` is one of these.
MALFORMED_JSON = "malformed_json"
NOT_AN_OBJECT = "not_an_object"
MISSING_ICAO24 = "missing_icao24"
INVALID_ICAO24 = "invalid_icao24"
NULL_POSITION = "null_position"
LATITUDE_OUT_OF_RANGE = "latitude_out_of_range"
LONGITUDE_OUT_OF_RANGE = "longitude_out_of_range"
REASONS = (
    MALFORMED_JSON,
    NOT_AN_OBJECT,
    MISSING_ICAO24,
    INVALID_ICAO24,
    NULL_POSITION,
    LATITUDE_OUT_OF_RANGE,
    LONGITUDE_OUT_OF_RANGE,
)

WAIT_S = 30.0  # default bound on every wait for the broker
MAX_ERRORS_KEPT = 10


# ------------------------------------------------------------------ given helpers
@dataclass
class TopicSpec:
    """A topic to create: name, partition count and per-topic configs (Kafka's names, str values)."""

    name: str
    partitions: int = 1
    config: dict[str, str] = field(default_factory=dict)
    replication_factor: int = 1  # the lab broker is a single node


class TopicError(ValueError):
    """A topic cannot be created as specified (bad name, bad partition count, broker refused)."""


def wait_for_topic(admin: AdminClient, name: str, timeout: float = WAIT_S) -> None:
    """Wait until the broker's metadata lists `name` with all its partitions (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        if meta is not None and meta.error is None and meta.partitions:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name!r} did not appear in the metadata within {timeout} s")
        time.sleep(0.1)


def topic_configs(name: str, admin: AdminClient | None = None) -> dict[str, str]:
    """Every config of topic `name` as the broker reports it (use it to check part A)."""
    admin = admin or kafka_admin()
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(timeout=WAIT_S)
    return {key: entry.value for key, entry in entries.items()}


def encode_json(doc: Any) -> bytes:
    """Compact JSON bytes; NaN and infinity are refused (JSON has no such numbers)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")


def to_millis(when: datetime | int) -> int:
    """Kafka timestamps are milliseconds since the epoch; a naive datetime is read as UTC."""
    if isinstance(when, datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return int(when.timestamp() * 1000)
    if isinstance(when, int) and not isinstance(when, bool):
        return when
    raise TypeError(f"expected a datetime or milliseconds since the epoch, got {when!r}")


def partitions_of(client: Consumer | AdminClient, topic: str, timeout: float = WAIT_S) -> list[int]:
    """The partition ids of `topic`; a clear error when the topic does not exist."""
    meta = client.list_topics(topic=topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        detail = f" ({meta.error.str()})" if meta is not None and meta.error is not None else ""
        raise ValueError(f"topic {topic!r} does not exist on the broker{detail}")
    return sorted(meta.partitions)


def lookup_consumer(**overrides: Any) -> Consumer:
    """A consumer in a throw-away group that never commits: for offset look-ups and replays."""
    settings: dict[str, Any] = {
        "group.id": f"lab03-lookup-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
    }
    settings.update(overrides)
    return Consumer(kafka_config(**settings))


def watermarks(consumer: Consumer, topic: str, partition: int, timeout: float = WAIT_S):
    """(low, high): the partition's first offset still kept, and the offset the next message gets."""
    return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)


# The signature of a delivery callback: `err` is None when the broker acknowledged `msg`.
DeliveryCallback = Callable[[KafkaError | None, Message], None]


@dataclass
class DeliveryReport:
    """What a publish did: rows handed in, delivered (acknowledged), failed; per-partition counts.

    After the producer is flushed, `produced == delivered + failed`.
    """

    topic: str
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    partitions: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.delivered == self.produced

    def note_error(self, text: str) -> None:
        """Keep the first few error texts (all are counted in `failed`)."""
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text)

    def summary(self) -> str:
        text = (
            f"{self.topic}: produced {self.produced}, delivered {self.delivered}, "
            f"failed {self.failed}, per partition {dict(sorted(self.partitions.items()))}"
        )
        return text + (f"; first errors: {'; '.join(self.errors[:3])}" if self.errors else "")


def produce_waiting(producer: Producer, topic: str, **kwargs: Any) -> None:
    """`producer.produce`, waiting (serving delivery reports) while its local queue is full."""
    while True:
        try:
            producer.produce(topic, **kwargs)
            return
        except BufferError:
            producer.poll(0.5)


@dataclass
class ConsumedRecord:
    """One consumed message: where it was, its key, its JSON value (None if not JSON) and bytes."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    value: Any
    raw: bytes | None
    headers: dict[str, str] = field(default_factory=dict)


def to_record(msg: Message) -> ConsumedRecord:
    """A confluent-kafka `Message` as a `ConsumedRecord`."""
    raw = msg.value()
    try:
        value = json.loads(raw) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        value = None
    key = msg.key()
    return ConsumedRecord(
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        timestamp_ms=msg.timestamp()[1],
        key=key.decode("utf-8", "replace") if key is not None else None,
        value=value,
        raw=raw,
        headers={k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])},
    )


@dataclass
class ConsumeReport:
    """What `consume` did: messages processed and, per partition, the next offset committed."""

    topic: str
    group_id: str
    processed: int = 0
    committed: dict[int, int] = field(default_factory=dict)


class InvalidRecord(ValueError):
    """A record that fails validation: `reason` (one of REASONS) and a human-readable message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass
class RoutingReport:
    """What `route_records` did. After flushing, `received == published + dead_lettered + failed`."""

    topic: str
    dlq_topic: str
    received: int = 0
    published: int = 0  # valid records acknowledged on `topic`
    dead_lettered: int = 0  # invalid records acknowledged on `dlq_topic`
    failed: int = 0  # records the broker did not take (either topic)
    reasons: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.received == self.published + self.dead_lettered

    def note_error(self, text: str) -> None:
        """Keep the first few error texts (all are counted in `failed`)."""
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text)

    def summary(self) -> str:
        return (
            f"received {self.received}: published {self.published} to {self.topic}, "
            f"dead-lettered {self.dead_lettered} to {self.dlq_topic} {dict(self.reasons)}, "
            f"failed {self.failed}"
        )


# ------------------------------------------------------------------ part A: topics
def lab_topics(prefix: str = "") -> list[TopicSpec]:
    """The lab's four topics with partitions and configs; `prefix` is put before every name."""
    raise NotImplementedError("Lab 03, part A: lab_topics() — see labs/lab03_kafka/README.md")


def create_topics(
    specs: Iterable[TopicSpec], admin: AdminClient | None = None, timeout: float = WAIT_S
) -> dict[str, bool]:
    """Create each topic unless it exists: {name: True if created now, False if it was there}."""
    raise NotImplementedError("Lab 03, part A: create_topics() — see labs/lab03_kafka/README.md")


# ------------------------------------------------------------------ part B: producer
def producer_config(**overrides: Any) -> dict[str, Any]:
    """Producer settings: acks=all, idempotence on, a little batching; `overrides` win."""
    raise NotImplementedError("Lab 03, part B: producer_config() — see labs/lab03_kafka/README.md")


def publish_rows(
    rows: Iterable[dict[str, Any]],
    topic: str = TOPIC_RAW,
    producer: Producer | None = None,
    flush_timeout: float = WAIT_S,
) -> DeliveryReport:
    """Publish rows as JSON values keyed by `icao24`; flush, and return the delivery report."""
    raise NotImplementedError("Lab 03, part B: publish_rows() — see labs/lab03_kafka/README.md")


# ------------------------------------------------------------------ part C: consumer
def consumer_config(group_id: str, **overrides: Any) -> dict[str, Any]:
    """Consumer settings for at-least-once: no auto-commit, start from the earliest offset."""
    raise NotImplementedError("Lab 03, part C: consumer_config() — see labs/lab03_kafka/README.md")


def consume(
    topic: str,
    group_id: str,
    handle: Callable[[ConsumedRecord], None],
    max_messages: int,
    timeout: float = WAIT_S,
) -> ConsumeReport:
    """Process up to `max_messages` of `topic` in group `group_id`, committing after processing.

    Stops after `timeout` seconds. If `handle` raises, the consumer closes without committing that
    message and the exception propagates (the message is delivered again: at-least-once).
    """
    raise NotImplementedError("Lab 03, part C: consume() — see labs/lab03_kafka/README.md")


def offsets_for_time(topic: str, when: datetime | int, timeout: float = WAIT_S) -> dict[int, int]:
    """Per partition: the offset of the first message stamped at or after `when` (else the end)."""
    raise NotImplementedError("Lab 03, part C: offsets_for_time() — see labs/lab03_kafka/README.md")


def replay_from(
    topic: str, when: datetime | int, max_messages: int = 10_000, timeout: float = WAIT_S
) -> list[ConsumedRecord]:
    """Every message of `topic` stamped at or after `when` (up to `max_messages`), no commits."""
    raise NotImplementedError("Lab 03, part C: replay_from() — see labs/lab03_kafka/README.md")


def consumer_lag(topic: str, group_id: str, timeout: float = WAIT_S) -> dict[int, int]:
    """Per partition: messages not yet committed by `group_id` (end offset - committed offset)."""
    raise NotImplementedError("Lab 03, part C: consumer_lag() — see labs/lab03_kafka/README.md")


# ------------------------------------------------------------------ part E: validation and DLQ
def validate_record(value: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The record as a dict when it is valid; otherwise raise `InvalidRecord(reason, message)`."""
    raise NotImplementedError("Lab 03, part E: validate_record() — see labs/lab03_kafka/README.md")


def route_records(
    values: Iterable[bytes | str | dict[str, Any]],
    topic: str = TOPIC_PROCESSED,
    dlq_topic: str = TOPIC_RAW_DLQ,
    producer: Producer | None = None,
    flush_timeout: float = WAIT_S,
) -> RoutingReport:
    """Valid records to `topic` (keyed by icao24), invalid ones unchanged to `dlq_topic` with
    the reason and message in headers; flush, and return the counts."""
    raise NotImplementedError("Lab 03, part E: route_records() — see labs/lab03_kafka/README.md")
