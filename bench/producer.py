"""Section 5 — Kafka: Lab 03's producer against confluent-kafka's best case.

Three ways to publish the same state vectors (JSON, keyed by icao24) to a throw-away topic:

- `lab03`: the reference `publish_rows()` with `producer_config()` (acks=all, idempotence, linger
  20 ms, lz4) — what the lab teaches;
- `lab03_code_best_settings`: the same `publish_rows()` code with the best-case settings below, which
  separates the cost of the settings from the cost of the Python loop;
- `best_case`: the messages encoded beforehand and produced in a tight loop without delivery
  callbacks, best-case settings — the ceiling of confluent-kafka on this machine.

Delivered counts come from the topic's end offsets, so every figure counts acknowledged messages.
"""

from __future__ import annotations

import json
from typing import Any

from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from bench.cleanup import delete_topics
from bench.common import Section, Timer, log, solution_module, unique
from bench.scale import scaled_rows
from harness.runtime.services import kafka_admin, kafka_config

PARTITIONS = 3
# confluent-kafka's throughput-oriented settings (Confluent's producer tuning advice): large
# batches that wait a little, cheap compression, one acknowledgement, no idempotence.
BEST_CASE: dict[str, Any] = {
    "acks": "1",
    "enable.idempotence": False,
    "linger.ms": 100,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
}


def _end_offsets(topic: str) -> int:
    from confluent_kafka import Consumer

    consumer = Consumer(kafka_config(**{"group.id": unique("probe"), "enable.auto.commit": False}))
    try:
        total = 0
        for p in range(PARTITIONS):
            total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        return total
    finally:
        consumer.close()


def _create_topic(topic: str) -> None:
    admin = kafka_admin()
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=30)


def _best_case_loop(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer(kafka_config(**BEST_CASE))
    produce = producer.produce
    for key, value in messages:
        try:
            produce(topic, value, key)
        except BufferError:
            producer.poll(0.1)
            produce(topic, value, key)
    left = producer.flush(60)
    if left:
        raise RuntimeError(f"{left} messages not delivered within 60 s")


def run(section: Section, quick: bool, repeats: int) -> None:
    rows_count = 20_000 if quick else 300_000
    rows = scaled_rows(rows_count)
    messages = [(r["icao24"].encode(), json.dumps(r, separators=(",", ":")).encode()) for r in rows]
    mean_bytes = sum(len(v) for _, v in messages) / len(messages)
    kafka_mod = solution_module("lab03_kafka", "kafka_producer")
    section.tables["settings"] = {
        "lab03": {k: v for k, v in kafka_mod.producer_config().items() if k != "bootstrap.servers"},
        "best_case": BEST_CASE,
    }
    section.tables["workload"] = {
        "messages_per_run": len(rows),
        "mean_value_bytes": round(mean_bytes),
        "partitions": PARTITIONS,
        "repeats": repeats,
    }
    lab = section.figure("lab03_msgs_per_s", "Lab 03 publish_rows + producer_config", "msg/s")
    same_code = section.figure(
        "lab03_code_best_settings_msgs_per_s", "Lab 03 publish_rows, best-case settings", "msg/s"
    )
    best = section.figure("best_case_msgs_per_s", "confluent-kafka best case", "msg/s")
    ratio = section.figure("ratio_lab03_vs_best", "ratio Lab 03 / best case", "x")
    ratio_settings = section.figure(
        "ratio_settings_only", "ratio Lab 03 settings / best settings (same code)", "x"
    )

    topics: list[str] = []
    try:
        for i in range(repeats):
            figures = {}
            for kind, figure in (("lab03", lab), ("same", same_code), ("best", best)):
                topic = unique("kafka")
                topics.append(topic)
                _create_topic(topic)
                with Timer() as t:
                    if kind == "lab03":
                        report = kafka_mod.publish_rows(rows, topic)
                    elif kind == "same":
                        producer = Producer(kafka_config(**BEST_CASE))
                        report = kafka_mod.publish_rows(rows, topic, producer=producer)
                    else:
                        report = None
                        _best_case_loop(topic, messages)
                if report is not None and not report.ok:
                    raise RuntimeError(f"publish_rows failed: {report.summary()}")
                delivered = _end_offsets(topic)
                if delivered != len(rows):
                    raise RuntimeError(
                        f"{topic}: {delivered} messages on the broker, {len(rows)} sent"
                    )
                figures[kind] = figure.add(delivered / t.seconds)
            ratio.add(figures["lab03"] / figures["best"])
            ratio_settings.add(figures["lab03"] / figures["same"])
            log(
                f"kafka run {i + 1}/{repeats}: lab03 {figures['lab03']:,.0f} msg/s, "
                f"same code best settings {figures['same']:,.0f}, best {figures['best']:,.0f}"
            )
            delete_topics(topics)
            topics.clear()
    finally:
        delete_topics(topics)
    if ratio.median is not None and ratio_settings.median is not None:
        section.note(
            f"Lab 03 reaches {ratio.median:.0%} of the best case. With the same publish_rows() "
            f"code, the best-case settings give only {1 / ratio_settings.median - 1:+.0%}: "
            "acks=all and idempotence cost little on this single broker. The rest of the gap is "
            "the per-message Python work in publish_rows() (a dict checked and encoded to JSON, "
            "a produce() call and a delivery callback per message), which the best-case loop "
            "does not do (its messages are encoded beforehand, without callbacks)."
        )
    section.note(
        f"{len(rows):,} state vectors per run (JSON values of {mean_bytes:.0f} bytes on average, "
        f"keyed by icao24) to a fresh {PARTITIONS}-partition topic; a figure is acknowledged "
        "messages (the topic's end offsets) divided by the wall time from the first produce to "
        "the end of flush()."
    )
