"""Replay a recording to Kafka as if OpenSky were being polled live.

    python -m harness.runtime.replay                       # the shipped recording to raw_flights, 1x
    python -m harness.runtime.replay --speed 60            # one minute of recording per second
    python -m harness.runtime.replay --speed 0 --limit 30  # the first 30 snapshots, as fast as possible
    python -m harness.runtime.replay --mode state          # one message per state vector, key = icao24
    python -m harness.runtime.replay --shift-to-now        # recorded times moved to end now

Snapshot mode (default) sends one message per snapshot, its value the snapshot JSON
`{"time": ..., "states": [...]}` exactly as recorded, without a key. State mode sends one message
per state vector, its value the flat row JSON (`fetch_time` + the 18 fields of
`harness.runtime.schema`), its key the `icao24` (or none with `--key none`), so one aircraft's states
stay in one partition, in order.

`--shift-to-now` moves every time of the recording (snapshot `time`, each state's `time_position`
and `last_contact`) by one offset, so that the last snapshot replayed is stamped with the moment the
replay starts: queries over "the last hour" (`now() - INTERVAL 1 HOUR`) then see the replayed
flights as if they were live. Intervals between times are kept, so pacing and windows do not change.

Pacing: snapshot `time` t is sent `(t - t_first) / speed` seconds after the start; speed 0 sends
as fast as the broker takes them. Every message's delivery report is counted, the producer is
flushed at the end (also on Ctrl-C), and a summary is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.runtime.config import TOPIC_RAW
from harness.runtime.data import RECORDING, load_snapshots, snapshot_rows
from harness.runtime.services import kafka_admin, kafka_config

MODES = ("snapshot", "state")
KEYS = ("icao24", "none")
FLUSH_TIMEOUT_S = 60.0


@dataclass
class ReplayReport:
    """What a replay sent: messages produced, delivered (acknowledged) and failed."""

    topic: str
    mode: str
    speed: float
    snapshots: int = 0
    messages: int = 0
    delivered: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    first_time: int | None = None
    last_time: int | None = None
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    shift: int = 0  # seconds added to every recorded time (--shift-to-now)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.delivered == self.messages and not self.interrupted

    def summary(self) -> str:
        span = (
            f", recording {self.first_time}..{self.last_time} ({self.last_time - self.first_time} s)"
            if self.first_time is not None and self.last_time is not None
            else ""
        )
        text = (
            f"replayed {self.snapshots} snapshots as {self.messages} messages ({self.mode} mode) "
            f"to {self.topic!r} at speed {self.speed:g}: delivered {self.delivered}, "
            f"failed {self.failed}, {self.bytes} bytes, {self.seconds:.2f} s{span}"
        )
        if self.shift:
            text += f"; times shifted by +{self.shift} s to end now"
        if self.interrupted:
            text += " — interrupted"
        if self.errors:
            text += "\nfirst errors: " + "; ".join(self.errors[:5])
        return text


def encode(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


def messages_for(
    snapshot: dict[str, Any], mode: str = "snapshot", key: str = "icao24"
) -> Iterator[tuple[bytes | None, bytes]]:
    """The (key, value) messages of one snapshot in the given mode."""
    if mode == "snapshot":
        yield None, encode(snapshot)
    elif mode == "state":
        for row in snapshot_rows(snapshot):
            yield (row["icao24"].encode() if key == "icao24" else None), encode(row)
    else:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


# Positions of the unix-second times in a state vector (harness.runtime.schema.STATE_FIELDS).
TIME_POSITION, LAST_CONTACT = 3, 4


def shift_times(snapshot: dict[str, Any], offset: int) -> dict[str, Any]:
    """A copy of `snapshot` with its `time` and every state's time_position/last_contact moved by
    `offset` seconds (missing times stay missing; a state that is not a list is left as it is)."""
    states = []
    for state in snapshot.get("states") or []:
        if isinstance(state, list):
            state = list(state)
            for i in (TIME_POSITION, LAST_CONTACT):
                if (
                    i < len(state)
                    and isinstance(state[i], int | float)
                    and not isinstance(state[i], bool)
                ):
                    state[i] += offset
        states.append(state)
    return {**snapshot, "time": snapshot["time"] + offset, "states": states}


def offset_to_now(snapshots: list[dict[str, Any]], now: float | None = None) -> int:
    """Seconds to add so that the last of `snapshots` is stamped `now` (default: this moment)."""
    if not snapshots:
        return 0
    return int(time.time() if now is None else now) - int(snapshots[-1]["time"])


def ensure_topic(topic: str, partitions: int = 3, timeout: float = 30.0) -> None:
    """Create `topic` (replication 1) unless it exists."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = kafka_admin()
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    future = admin.create_topics([NewTopic(topic, partitions, 1)])[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def replay(
    path: Path | str = RECORDING,
    topic: str = TOPIC_RAW,
    speed: float = 1.0,
    mode: str = "snapshot",
    limit: int | None = None,
    key: str = "icao24",
    partitions: int = 3,
    snapshots: list[dict[str, Any]] | None = None,
    producer_config: dict[str, Any] | None = None,
    shift_to_now: bool = False,
) -> ReplayReport:
    """Publish a recording (or the given `snapshots`) to `topic` at `speed`x real time.

    `limit` keeps the first N snapshots; `partitions` is used only when the topic is created;
    `shift_to_now` moves the recorded times so that the last snapshot sent is stamped now.
    """
    from confluent_kafka import Producer

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if key not in KEYS:
        raise ValueError(f"key must be one of {KEYS}, got {key!r}")
    if speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or positive, got {speed}")
    if snapshots is None:
        snapshots = load_snapshots(path)
    if limit is not None:
        snapshots = snapshots[:limit]
    report = ReplayReport(topic=topic, mode=mode, speed=speed)
    if shift_to_now:
        report.shift = offset_to_now(snapshots)
        snapshots = [shift_times(snapshot, report.shift) for snapshot in snapshots]

    def on_delivery(err, msg) -> None:
        if err is None:
            report.delivered += 1
        else:
            report.failed += 1
            if len(report.errors) < 5:
                report.errors.append(str(err))

    ensure_topic(topic, partitions)
    producer = Producer(kafka_config(**{"linger.ms": 10, "acks": "all", **(producer_config or {})}))
    started = time.monotonic()
    try:
        for snapshot in snapshots:
            if report.first_time is None:
                report.first_time = snapshot["time"]
            if speed > 0:
                due = started + (snapshot["time"] - report.first_time) / speed
                while (wait := due - time.monotonic()) > 0:
                    producer.poll(min(wait, 0.1))  # serve delivery reports while waiting
            for k, value in messages_for(snapshot, mode, key):
                _produce(producer, topic, k, value, on_delivery)
                report.messages += 1
                report.bytes += len(value) + (len(k) if k else 0)
            report.snapshots += 1
            report.last_time = snapshot["time"]
            producer.poll(0)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        remaining = producer.flush(FLUSH_TIMEOUT_S)
        if remaining:
            report.failed += remaining
            report.errors.append(f"{remaining} messages not delivered within {FLUSH_TIMEOUT_S} s")
        report.seconds = time.monotonic() - started
    return report


def _produce(producer, topic: str, key: bytes | None, value: bytes, on_delivery) -> None:
    """Produce one message, waiting for room when the producer's local queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.runtime.replay", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--path", type=Path, default=RECORDING, help="recording (JSON Lines, .gz ok)"
    )
    parser.add_argument("--topic", default=TOPIC_RAW, help=f"Kafka topic (default {TOPIC_RAW})")
    parser.add_argument("--speed", type=float, default=1.0, help="N x real time; 0 = no pauses")
    parser.add_argument("--limit", type=int, default=None, help="replay only the first N snapshots")
    parser.add_argument("--mode", choices=MODES, default="snapshot")
    parser.add_argument("--key", choices=KEYS, default="icao24", help="message key in state mode")
    parser.add_argument("--partitions", type=int, default=3, help="when the topic is created")
    parser.add_argument(
        "--shift-to-now",
        action="store_true",
        help="move the recorded times so that the last snapshot replayed is stamped now",
    )
    args = parser.parse_args(argv)
    print(f"replaying {args.path} to {args.topic!r} (speed {args.speed:g}, {args.mode} mode)...")
    report = replay(
        args.path,
        args.topic,
        args.speed,
        args.mode,
        args.limit,
        args.key,
        args.partitions,
        shift_to_now=args.shift_to_now,
    )
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
