"""Platform tests for `harness.runtime.replay`: a slice of the recording through the real Kafka broker.

Each test replays into its own topic (uuid name, deleted afterwards) and reads it back to its end with a
fresh consumer group. Pacing is checked on the messages' own timestamps, never on wall time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator

import pytest

from harness.grading.testkit import read_topic
from harness.runtime.config import ROOT, endpoints
from harness.runtime.data import load_snapshots, snapshot_rows
from harness.runtime.replay import messages_for, replay
from harness.runtime.services import ServiceUnavailable, kafka_admin

WAIT_S = 30.0


@pytest.fixture(scope="module")
def snapshots() -> list[dict]:
    return load_snapshots()


@pytest.fixture
def topic() -> Iterator[str]:
    """A unique topic name; the topic is deleted after the test."""
    admin = kafka_admin()
    try:
        admin.list_topics(timeout=10)
    except Exception as exc:  # the port is open but no broker answers
        raise ServiceUnavailable("Kafka broker", endpoints().kafka_bootstrap, str(exc)) from exc
    name = f"test_replay_{uuid.uuid4().hex[:12]}"
    yield name
    for future in admin.delete_topics([name], operation_timeout=10).values():
        try:
            future.result(timeout=15)
        except Exception:  # never created: nothing to clean
            pass


def test_snapshot_mode_round_trip(topic, snapshots):
    """At speed 0, 20 snapshots go out as 20 messages that come back equal and in order."""
    report = replay(topic=topic, speed=0, limit=20, partitions=1, snapshots=snapshots)
    assert report.ok, report.summary()
    assert (report.snapshots, report.messages, report.delivered) == (20, 20, 20)
    assert (report.first_time, report.last_time) == (snapshots[0]["time"], snapshots[19]["time"])
    received = read_topic(topic)
    assert len(received) == 20, f"expected 20 messages back, got {len(received)}"
    assert [json.loads(m.value()) for m in received] == snapshots[:20]
    assert all(m.key() is None for m in received)
    assert report.bytes == sum(len(m.value()) for m in received)


def test_state_mode_round_trip(topic, snapshots):
    """State mode sends one row per state vector, keyed by icao24, each aircraft in order."""
    expected_rows = [row for snap in snapshots[:6] for row in snapshot_rows(snap)]
    report = replay(topic=topic, speed=0, limit=6, mode="state", partitions=3, snapshots=snapshots)
    assert report.ok, report.summary()
    assert report.messages == report.delivered == len(expected_rows)
    received = read_topic(topic)
    assert len(received) == len(expected_rows)
    rows = [json.loads(m.value()) for m in received]
    key = lambda r: (r["fetch_time"], r["icao24"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected_rows, key=key)
    assert all(m.key().decode() == json.loads(m.value())["icao24"] for m in received)
    per_aircraft = defaultdict(list)
    for m in received:  # one key lives in one partition, read in offset order
        per_aircraft[(m.key(), m.partition())].append(json.loads(m.value())["fetch_time"])
    assert len({k for k, _ in per_aircraft}) == len(per_aircraft), "a key spread over partitions"
    assert all(times == sorted(times) for times in per_aircraft.values())


def test_state_mode_without_key(snapshots):
    """`key="none"` produces unkeyed state messages (no broker needed to build them)."""
    messages = list(messages_for(snapshots[0], mode="state", key="none"))
    assert len(messages) == len(snapshots[0]["states"])
    assert all(k is None for k, _ in messages)


def test_speed_paces_the_messages(topic, snapshots):
    """At speed 200, snapshots 10 s apart keep to their schedule (never early), in order.

    The replay keeps a schedule from its start, so a message a busy machine sent late is followed
    by one sent on time: the check is against the schedule, not the gap to the previous one."""
    speed, count = 200, 4
    report = replay(topic=topic, speed=speed, limit=count, partitions=1, snapshots=snapshots)
    assert report.ok, report.summary()
    received = read_topic(topic)
    assert [json.loads(m.value())["time"] for m in received] == [
        s["time"] for s in snapshots[:count]
    ]
    stamps = [m.timestamp()[1] for m in received]  # producer CreateTime, ms
    for i in range(1, count):
        due_ms = (snapshots[i]["time"] - snapshots[0]["time"]) / speed * 1000
        after = stamps[i] - stamps[0]
        assert after >= due_ms - 25, (
            f"message {i} was sent {after} ms after the first; the schedule says {due_ms:.0f} ms"
        )
    assert report.seconds >= (snapshots[count - 1]["time"] - snapshots[0]["time"]) / speed


def test_bad_arguments_are_refused(snapshots):
    """Unknown modes and negative speeds fail before anything is sent."""
    with pytest.raises(ValueError, match="mode"):
        replay(mode="rows", snapshots=snapshots[:1])
    with pytest.raises(ValueError, match="speed"):
        replay(speed=-1, snapshots=snapshots[:1])


def test_command_line(topic):
    """`python -m harness.runtime.replay` replays, prints a summary and exits 0."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.runtime.replay",
            "--speed",
            "0",
            "--limit",
            "3",
            "--topic",
            topic,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "replayed 3 snapshots as 3 messages" in result.stdout
    assert "delivered 3, failed 0" in result.stdout
    assert len(read_topic(topic)) == 3


def test_shift_to_now_ends_the_recording_now(topic, snapshots):
    """`shift_to_now` stamps the last replayed snapshot with the start time; gaps stay the same."""
    count = 5
    before = int(time.time())
    report = replay(
        topic=topic, speed=0, limit=count, partitions=1, snapshots=snapshots, shift_to_now=True
    )
    after = int(time.time())
    assert report.ok, report.summary()
    received = [json.loads(m.value()) for m in read_topic(topic)]
    assert len(received) == count
    offset = received[0]["time"] - snapshots[0]["time"]
    assert offset == report.shift > 0
    assert before <= received[-1]["time"] <= after, "the last snapshot should be stamped now"
    for got, recorded in zip(received, snapshots[:count], strict=True):
        assert got["time"] - recorded["time"] == offset, "every snapshot moves by one offset"
        for new, old in zip(got["states"], recorded["states"], strict=True):
            for i in (3, 4):  # time_position, last_contact
                assert new[i] == (None if old[i] is None else old[i] + offset)
            assert new[:3] == old[:3] and new[5:] == old[5:], "only the times change"
    assert "shifted by" in report.summary()


def test_shift_to_now_on_the_command_line(topic):
    """`--shift-to-now` on the command line: the messages' times are within the last minute."""
    result = subprocess.run(
        [sys.executable, "-m", "harness.runtime.replay", "--speed", "0", "--limit", "2"]
        + ["--mode", "state", "--shift-to-now", "--topic", topic],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(m.value()) for m in read_topic(topic)]
    assert rows and abs(rows[-1]["fetch_time"] - time.time()) < 60, rows[-1:]
