"""Lab 03 — Kafka: topics, a keyed idempotent producer, an at-least-once consumer, a dead-letter topic.

Parts (see labs/lab03_kafka/README.md):
  A. `lab_topics`, `create_topics`            — the lab's topics, created idempotently
  B. `producer_config`, `publish_rows`        — state vectors keyed by icao24, acks=all, idempotent
  C. `consumer_config`, `consume`, `offsets_for_time`, `replay_from`, `consumer_lag`
  E. `validate_record`, `route_records`       — bad records to `raw_flights.dlq`, reason in headers
Part D (the OpenSky collector) lives in `collector.py` and publishes with part B's `publish_rows`.

Everything reaches the broker through `harness.runtime.services.kafka_config()`: no host or port here.
Messages are JSON: a *row* is one state vector as a flat dict (`fetch_time` + the 18 fields of
`harness.runtime.schema`), its key the aircraft's `icao24`.
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

from harness.runtime.config import TOPIC_PROCESSED, TOPIC_RAW, TOPIC_RAW_DLQ
from harness.runtime.services import kafka_admin, kafka_config
from harness.runtime.waits import wait_until

# ------------------------------------------------------------------ the lab's topics (part A)
# raw_flights, processed_flights and raw_flights.dlq keep the platform's names (harness.runtime.config).
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

    def listed() -> bool:
        meta = admin.list_topics(topic=name, timeout=timeout).topics.get(name)
        return meta is not None and meta.error is None and bool(meta.partitions)

    wait_until(listed, f"topic {name!r} in the broker's metadata", timeout, every=0.1)


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
    # BEGIN SOLUTION (part A)
    return [
        TopicSpec(
            prefix + TOPIC_RAW,
            RAW_PARTITIONS,
            {"cleanup.policy": "delete", "retention.ms": str(RAW_RETENTION_MS)},
        ),
        TopicSpec(
            prefix + TOPIC_PROCESSED,
            RAW_PARTITIONS,
            {"cleanup.policy": "delete", "retention.ms": str(PROCESSED_RETENTION_MS)},
        ),
        TopicSpec(
            prefix + TOPIC_RAW_DLQ,
            DLQ_PARTITIONS,
            {"cleanup.policy": "delete", "retention.ms": str(DLQ_RETENTION_MS)},
        ),
        # Compaction keeps at least the last message per key: the latest state of each aircraft.
        TopicSpec(
            prefix + TOPIC_AIRCRAFT_LATEST,
            RAW_PARTITIONS,
            {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"},
        ),
    ]
    # END SOLUTION


def create_topics(
    specs: Iterable[TopicSpec], admin: AdminClient | None = None, timeout: float = WAIT_S
) -> dict[str, bool]:
    """Create each topic unless it exists: {name: True if created now, False if it was there}."""
    # BEGIN SOLUTION (part A)
    specs = list(specs)
    seen: set[str] = set()
    for spec in specs:
        # Check everything before asking the broker, so a bad list creates nothing.
        name = spec.name
        if not isinstance(name, str) or not _TOPIC_NAME.match(name) or name in (".", ".."):
            raise TopicError(f"invalid topic name {name!r}: a name is {TOPIC_NAME_RULE}")
        if name in seen:
            raise TopicError(f"topic {name!r} is listed twice")
        seen.add(name)
        count = spec.partitions
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise TopicError(
                f"topic {name!r}: the partition count must be a whole number >= 1, got {count!r}"
            )
    if not specs:
        return {}
    admin = admin or kafka_admin()
    futures = admin.create_topics(
        [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=s.replication_factor,
                config={k: str(v) for k, v in s.config.items()},
            )
            for s in specs
        ],
        operation_timeout=timeout,
        request_timeout=timeout,
    )
    created: dict[str, bool] = {}
    for spec in specs:
        try:
            futures[spec.name].result(timeout=timeout)
            created[spec.name] = True
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicError(f"topic {spec.name!r} was not created: {error.str()}") from exc
            created[spec.name] = False  # idempotent: an existing topic is left as it is
        wait_for_topic(admin, spec.name, timeout)
    return created
    # END SOLUTION


# ------------------------------------------------------------------ part B: producer
def producer_config(**overrides: Any) -> dict[str, Any]:
    """Producer settings: acks=all, idempotence on, a little batching; `overrides` win."""
    # BEGIN SOLUTION (part B)
    settings: dict[str, Any] = {
        # Wait for every in-sync replica: an acknowledged message survives a broker loss.
        "acks": "all",
        # Retries can never duplicate or reorder a partition's messages.
        "enable.idempotence": True,
        "linger.ms": 20,
        "compression.type": "lz4",
    }
    settings.update(overrides)
    return kafka_config(**settings)
    # END SOLUTION


def publish_rows(
    rows: Iterable[dict[str, Any]],
    topic: str = TOPIC_RAW,
    producer: Producer | None = None,
    flush_timeout: float = WAIT_S,
) -> DeliveryReport:
    """Publish rows as JSON values keyed by `icao24`; flush, and return the delivery report."""
    # BEGIN SOLUTION (part B)
    report = DeliveryReport(topic)

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            report.delivered += 1
            report.partitions[msg.partition()] += 1
        else:
            report.failed += 1
            report.note_error(str(err))

    producer = producer or Producer(producer_config())
    try:
        for number, row in enumerate(rows):
            report.produced += 1
            icao24 = row.get("icao24") if isinstance(row, dict) else None
            if not isinstance(icao24, str) or not icao24:
                report.failed += 1  # counted, never dropped silently
                report.note_error(f"row {number} has no icao24 to key it by: {row!r:.80}")
                continue
            try:
                value = encode_json(row)
            except (TypeError, ValueError) as exc:
                report.failed += 1
                report.note_error(f"row {number} is not JSON-serialisable: {exc}")
                continue
            # Same key -> same partition -> one aircraft's updates stay in order.
            produce_waiting(
                producer, topic, key=icao24.encode(), value=value, on_delivery=on_delivery
            )
            producer.poll(0)  # serve delivery reports as we go
    finally:
        remaining = producer.flush(flush_timeout)
        if remaining:
            report.failed += remaining
            report.note_error(f"{remaining} messages not delivered within {flush_timeout} s")
    return report
    # END SOLUTION


# ------------------------------------------------------------------ part C: consumer
def consumer_config(group_id: str, **overrides: Any) -> dict[str, Any]:
    """Consumer settings for at-least-once: no auto-commit, start from the earliest offset."""
    # BEGIN SOLUTION (part C)
    settings: dict[str, Any] = {
        "group.id": group_id,
        # A new group starts at the beginning of the topic, not at its end.
        "auto.offset.reset": "earliest",
        # We commit ourselves, after processing; auto-commit could commit unprocessed messages.
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }
    settings.update(overrides)
    return kafka_config(**settings)
    # END SOLUTION


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
    # BEGIN SOLUTION (part C)
    report = ConsumeReport(topic, group_id)
    consumer = Consumer(consumer_config(group_id))
    deadline = time.monotonic() + timeout
    try:
        consumer.subscribe([topic])
        while report.processed < max_messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() in (
                    KafkaError._PARTITION_EOF,
                    KafkaError.UNKNOWN_TOPIC_OR_PART,
                ):
                    continue
                raise KafkaException(msg.error())
            handle(to_record(msg))  # may raise: then nothing below runs for this message
            consumer.commit(message=msg, asynchronous=False)  # commits offset + 1
            report.processed += 1
            report.committed[msg.partition()] = msg.offset() + 1
    finally:
        consumer.close()  # leaves the group; commits nothing (auto-commit is off)
    return report
    # END SOLUTION


def offsets_for_time(topic: str, when: datetime | int, timeout: float = WAIT_S) -> dict[int, int]:
    """Per partition: the offset of the first message stamped at or after `when` (else the end)."""
    # BEGIN SOLUTION (part C)
    millis = to_millis(when)
    consumer = lookup_consumer()
    try:
        wanted = [TopicPartition(topic, p, millis) for p in partitions_of(consumer, topic, timeout)]
        offsets: dict[int, int] = {}
        for tp in consumer.offsets_for_times(wanted, timeout=timeout):
            if tp.error is not None:
                raise KafkaException(tp.error)
            if tp.offset < 0:  # no message that late: the end of the partition
                offsets[tp.partition] = watermarks(consumer, topic, tp.partition, timeout)[1]
            else:
                offsets[tp.partition] = tp.offset
        return offsets
    finally:
        consumer.close()
    # END SOLUTION


def replay_from(
    topic: str, when: datetime | int, max_messages: int = 10_000, timeout: float = WAIT_S
) -> list[ConsumedRecord]:
    """Every message of `topic` stamped at or after `when` (up to `max_messages`), no commits."""
    # BEGIN SOLUTION (part C)
    start = offsets_for_time(topic, when, timeout)
    # enable.partition.eof: the consumer tells us when a partition is read to its end.
    consumer = lookup_consumer(**{"enable.partition.eof": True})
    records: list[ConsumedRecord] = []
    deadline = time.monotonic() + timeout
    try:
        pending = set()
        assignment = []
        for partition, offset in start.items():
            if offset < watermarks(consumer, topic, partition, timeout)[1]:
                pending.add(partition)
                assignment.append(TopicPartition(topic, partition, offset))
        consumer.assign(assignment)
        while pending and len(records) < max_messages:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            msg = consumer.poll(min(left, 1.0))
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
                    continue
                raise KafkaException(msg.error())
            records.append(to_record(msg))
    finally:
        consumer.close()
    return records
    # END SOLUTION


def consumer_lag(topic: str, group_id: str, timeout: float = WAIT_S) -> dict[int, int]:
    """Per partition: messages not yet committed by `group_id` (end offset - committed offset)."""
    # BEGIN SOLUTION (part C)
    # A consumer that never subscribes does not join the group: it only reads the group's offsets.
    consumer = lookup_consumer(**{"group.id": group_id})
    try:
        wanted = [TopicPartition(topic, p) for p in partitions_of(consumer, topic, timeout)]
        lag: dict[int, int] = {}
        for tp in consumer.committed(wanted, timeout=timeout):
            low, high = watermarks(consumer, topic, tp.partition, timeout)
            # No commit yet: the group would start at the earliest offset still kept.
            position = tp.offset if tp.offset >= 0 else low
            lag[tp.partition] = max(high - position, 0)
        return lag
    finally:
        consumer.close()
    # END SOLUTION


# ------------------------------------------------------------------ part E: validation and DLQ
def validate_record(value: bytes | str | dict[str, Any]) -> dict[str, Any]:
    """The record as a dict when it is valid; otherwise raise `InvalidRecord(reason, message)`."""
    # BEGIN SOLUTION (part E)
    record: Any = value
    if isinstance(value, bytes | str):
        try:
            record = json.loads(value)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidRecord(MALFORMED_JSON, f"the value is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InvalidRecord(NOT_AN_OBJECT, f"expected a JSON object, got {type(record).__name__}")
    icao24 = record.get("icao24")
    if icao24 is None or icao24 == "":
        raise InvalidRecord(MISSING_ICAO24, "the record has no icao24")
    if not isinstance(icao24, str) or not re.fullmatch(r"[0-9a-f]{6}", icao24):
        raise InvalidRecord(
            INVALID_ICAO24, f"icao24 must be 6 lower-case hex digits, got {icao24!r}"
        )
    lat, lon = record.get("latitude"), record.get("longitude")
    if lat is None or lon is None:
        raise InvalidRecord(NULL_POSITION, f"latitude={lat!r}, longitude={lon!r}")
    for name, number, limit, reason in (
        ("latitude", lat, 90, LATITUDE_OUT_OF_RANGE),
        ("longitude", lon, 180, LONGITUDE_OUT_OF_RANGE),
    ):
        is_number = isinstance(number, int | float) and not isinstance(number, bool)
        if not is_number or not math.isfinite(number) or not -limit <= number <= limit:
            raise InvalidRecord(
                reason, f"{name} must be a number in [-{limit}, {limit}], got {number!r}"
            )
    return record
    # END SOLUTION


def route_records(
    values: Iterable[bytes | str | dict[str, Any]],
    topic: str = TOPIC_PROCESSED,
    dlq_topic: str = TOPIC_RAW_DLQ,
    producer: Producer | None = None,
    flush_timeout: float = WAIT_S,
) -> RoutingReport:
    """Valid records to `topic` (keyed by icao24), invalid ones unchanged to `dlq_topic` with
    the reason and message in headers; flush, and return the counts."""
    # BEGIN SOLUTION (part E)
    report = RoutingReport(topic, dlq_topic)

    def delivered_to(counter: str) -> DeliveryCallback:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                setattr(report, counter, getattr(report, counter) + 1)
            else:
                report.failed += 1
                report.note_error(str(err))

        return on_delivery

    on_published = delivered_to("published")
    on_dead_lettered = delivered_to("dead_lettered")
    producer = producer or Producer(producer_config())
    try:
        for value in values:
            report.received += 1
            raw = value if isinstance(value, bytes) else None
            if isinstance(value, str):
                raw = value.encode("utf-8")
            try:
                record = validate_record(value)
            except InvalidRecord as bad:
                report.reasons[bad.reason] += 1
                if raw is None:  # a dict: dead-letter it as JSON (repr if even that fails)
                    try:
                        raw = encode_json(value)
                    except (TypeError, ValueError):
                        raw = repr(value).encode("utf-8")
                icao24 = value.get("icao24") if isinstance(value, dict) else None
                produce_waiting(
                    producer,
                    dlq_topic,
                    key=icao24.encode() if isinstance(icao24, str) and icao24 else None,
                    value=raw,
                    headers=[
                        (HEADER_REASON, bad.reason.encode()),
                        (HEADER_MESSAGE, bad.message.encode("utf-8")),
                    ],
                    on_delivery=on_dead_lettered,
                )
            else:
                try:
                    # Forward what was received, byte for byte; a dict is encoded once here.
                    payload = raw if raw is not None else encode_json(record)
                except (TypeError, ValueError) as exc:
                    report.failed += 1
                    report.note_error(f"record {report.received} is not JSON: {exc}")
                    continue
                produce_waiting(
                    producer,
                    topic,
                    key=record["icao24"].encode(),
                    value=payload,
                    on_delivery=on_published,
                )
            producer.poll(0)
    finally:
        remaining = producer.flush(flush_timeout)
        if remaining:
            report.failed += remaining
            report.note_error(f"{remaining} messages not delivered within {flush_timeout} s")
    return report
    # END SOLUTION
