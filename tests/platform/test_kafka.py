"""Platform tests for the Kafka broker: a produce/consume round trip and a multi-partition topic.

Every topic and consumer group has a unique name; topics are deleted afterwards. The broker is
reached only through `harness.runtime.services` (a missing broker raises `ServiceUnavailable`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness.grading.testkit import read_topic
from harness.runtime.config import endpoints
from harness.runtime.services import ServiceUnavailable, kafka_admin, kafka_config
from harness.runtime.waits import wait_until

WAIT_S = 30.0


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def admin() -> AdminClient:
    client = kafka_admin()
    try:
        client.list_topics(timeout=10)
    except Exception as exc:  # KafkaException: the port is open but no broker answers
        raise ServiceUnavailable("Kafka broker", endpoints().kafka_bootstrap, str(exc)) from exc
    return client


@pytest.fixture
def topics(admin: AdminClient) -> Iterator[list[str]]:
    """Collects topic names the test uses; deletes them afterwards."""
    names: list[str] = []
    yield names
    if names:
        for future in admin.delete_topics(names, operation_timeout=10).values():
            try:
                future.result(timeout=15)
            except Exception:  # already gone (never created): nothing to clean
                pass


def _create_topic(admin: AdminClient, name: str, partitions: int) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=15)

    def shown() -> bool:
        meta = admin.list_topics(topic=name, timeout=5).topics.get(name)
        return meta is not None and meta.error is None and len(meta.partitions) == partitions

    wait_until(shown, f"topic {name} showing {partitions} partitions", WAIT_S, 0.2, AssertionError)


def _produce(topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(kafka_config(**{"acks": "all", "enable.idempotence": True}))
    failures: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    remaining = producer.flush(WAIT_S)
    assert remaining == 0, f"{remaining} messages were not delivered within {WAIT_S:.0f} s"
    assert not failures, f"delivery failed: {failures[:3]}"


def test_produce_consume_round_trip(admin: AdminClient, topics: list[str]) -> None:
    """Messages produced to a new topic come back unchanged, keys and order included."""
    topic = _unique("pt_roundtrip")
    topics.append(topic)
    _create_topic(admin, topic, partitions=1)
    records = [
        (f"icao{i:02d}".encode(), json.dumps({"seq": i, "callsign": f"TST{i:03d}"}).encode())
        for i in range(20)
    ]

    _produce(topic, records)
    received = read_topic(topic)

    got = [(m.key(), m.value()) for m in received]
    assert got == records, f"expected the 20 produced records in order, got {len(got)}: {got[:3]}"
    assert [m.offset() for m in received] == list(range(len(records)))


def test_topic_with_three_partitions(admin: AdminClient, topics: list[str]) -> None:
    """A topic created with 3 partitions has them, and keyed messages land on all of them."""
    topic = _unique("pt_partitions")
    topics.append(topic)
    _create_topic(admin, topic, partitions=3)

    meta = admin.list_topics(topic=topic, timeout=5).topics[topic]
    assert sorted(meta.partitions) == [0, 1, 2]
    assert all(p.leader == 1 for p in meta.partitions.values()), "the single broker leads all"

    records = [(f"aircraft-{i}".encode(), str(i).encode()) for i in range(60)]
    _produce(topic, records)
    received = read_topic(topic)

    assert sorted(m.value() for m in received) == sorted(v for _, v in records)
    by_key: dict[bytes, set[int]] = {}
    for m in received:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(parts) == 1 for parts in by_key.values()), "one key maps to one partition"
    used = {m.partition() for m in received}
    assert used == {0, 1, 2}, f"60 distinct keys should use all 3 partitions, used {sorted(used)}"
