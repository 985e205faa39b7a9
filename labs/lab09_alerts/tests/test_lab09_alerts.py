"""Graded test suite for Lab 09, parts A and B — used by `make lab-9` and instructors' grading.

Planted state vectors (one story per aircraft, below) are produced to a throw-away topic in two
phases. The alerts run with the `availableNow` trigger after each phase, from the same checkpoint:
the second run is a restart. Times are seconds after T0 = 2024-03-01 12:00:00 UTC; the watermark
is 30 s, the silence limit 60 s, the state timeout 600 s, a rapid descent is 3 state vectors in a
row below -15 m/s. A `clock` aircraft reports every 10 s up to t=900 and moves the watermark on.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.grading.suite_helpers import state_at
from harness.grading.testkit import read_topic
from harness.runtime.services import clickhouse_client, kafka_config

# The first test of each part also runs the module's streaming fixture (two or three runs).
pytestmark = pytest.mark.timeout(900)

T0 = 1709294400
PHASE_SPLIT = 300  # state vectors with t < 300 go in phase 1, the others in phase 2
RUN_TIMEOUT_S = 280
CLOCK = "c0ffee"

# The episodes the planted stories must give: (icao24, rule) -> (opened_at, closed_at, closed_by)
EXPECTED = {
    ("a00001", "squawk_7700"): (30, 60, "cleared"),
    ("a00002", "squawk_7600"): (250, 330, "cleared"),
    ("a00003", "rapid_descent"): (30, 50, "cleared"),
    ("a00005", "silence"): (160, 200, "cleared"),
    ("a00007", "silence"): (350, 420, "cleared"),
    ("a00008", "silence"): (260, 800, "timeout"),
}


# ------------------------------------------------------------------ planted stories
def sv(icao24: str, t: int, **fields: Any) -> dict[str, Any]:
    """A state vector of `icao24` at T0 + t: airborne, level, squawk 1000 unless overridden."""
    base = {
        "callsign": f"T{icao24.upper()}",
        "origin_country": "France",
        "latitude": 48.0 + t / 10000,
        "longitude": 2.0 + t / 10000,
        "baro_altitude": 9000.0,
        "on_ground": False,
        "vertical_rate": 0.0,
        "squawk": "1000",
    }
    return state_at(T0 + t, icao24, **{**base, **fields})


def stories() -> list[tuple[dict[str, Any], int]]:
    """Every planted state vector with how many times it is sent (2 = a duplicated message)."""
    out: list[tuple[dict[str, Any], int]] = []

    def add(icao24: str, t: int, times: int = 1, **fields: Any) -> None:
        out.append((sv(icao24, t, **fields), times))

    for t in range(0, 901, 10):  # the clock: keeps the watermark moving
        add(CLOCK, t)
    # a00001: squawk 7700 from t=30 to 60 (duplicated messages; a null squawk changes nothing)
    for t in (0, 10, 20):
        add("a00001", t)
    for t in (30, 40, 50):
        add("a00001", t, times=2, squawk="7700")
    add("a00001", 55, squawk=None)
    for t in (60, 70, 80, 90):
        add("a00001", t)
    add("a00001", 100, on_ground=True)
    # a00002: squawk 7600 from t=250, across the restart, cleared at 330
    for t in range(250, 330, 10):
        add("a00002", t, squawk="7600")
    add("a00002", 330, squawk="2000")
    add("a00002", 340, on_ground=True)
    # a00003: rapid descent, the third vector below -15 m/s at t=30 opens it, t=50 closes it
    add("a00003", 0, vertical_rate=-1.0)
    for t in (10, 20, 30, 40):
        add("a00003", t, times=2, vertical_rate=-20.0)
    add("a00003", 50, vertical_rate=-2.0)
    add("a00003", 60, on_ground=True)
    # a00004: descending, never 3 vectors in a row below -15 m/s (-15 itself is not below)
    rates = [-20.0, -20.0, -5.0, -20.0, -20.0, -15.0, -20.0, -20.0, -1.0]
    for i, rate in enumerate(rates):
        add("a00004", i * 10, vertical_rate=rate)
    add("a00004", 90, on_ground=True)
    # a00005: no contact from t=100 to 200 while airborne: silence 160..200
    for t in [*range(0, 101, 10), *range(200, 261, 10)]:
        add("a00005", t)
    add("a00005", 270, on_ground=True)
    # a00006: a gap of exactly 60 s is not more than the limit
    for t in [*range(0, 101, 10), 160, 170]:
        add("a00006", t)
    add("a00006", 180, on_ground=True)
    # a00007: silent across the restart, heard again at t=420: silence 350..420
    for t in [*range(200, 291, 10), 420, 430]:
        add("a00007", t)
    add("a00007", 440, on_ground=True)
    # a00008: never heard again after t=200: silence opens at 260, the state timeout closes it
    for t in range(100, 201, 10):
        add("a00008", t)
    # a00009: on the ground, then nothing: not airborne, so no silence
    for t in range(0, 101, 10):
        add("a00009", t, on_ground=True, baro_altitude=None)
    return out


def late_messages() -> list[dict[str, Any]]:
    """Phase-2 messages older than the watermark (260 s after phase 1): they must not count."""
    return [
        sv("a0000a", 100, squawk="7500"),  # an aircraft only ever heard of too late
        sv("a00001", 45, squawk="7500"),  # a late emergency code for a known aircraft
        sv("a00009", 110, on_ground=False, vertical_rate=-30.0),
    ]


def phase_messages(phase: int) -> list[dict[str, Any]]:
    """The messages of phase 1 or 2, each duplicate right after its original; phase 2 also
    repeats a phase-1 vector of a00002, sends an older one out of order, and the late messages."""
    rows: list[dict[str, Any]] = []
    for row, times in stories():
        t = row["last_contact"] - T0
        if (t < PHASE_SPLIT) == (phase == 1):
            rows += [row] * times
    if phase == 2:
        rows += [
            sv("a00002", 290, squawk="7600"),  # a duplicate of the last phase-1 vector
            sv("a00002", 280, squawk="1000"),  # out of order, yet newer than the watermark
            *late_messages(),
        ]
    return rows


def produce(topic: str, rows: list[dict[str, Any]]) -> None:
    """Send the rows (key icao24, value the row JSON) and wait until the broker has them all."""
    from confluent_kafka import Producer

    failures: list[str] = []
    producer = Producer(kafka_config(acks="all"))
    for row in rows:
        producer.produce(
            topic,
            key=row["icao24"].encode(),
            value=json.dumps(row).encode(),
            on_delivery=lambda err, _msg: failures.append(str(err)) if err else None,
        )
    left = producer.flush(30)
    assert left == 0 and not failures, f"test set-up: producing to {topic} failed: {failures}"


def rel(value: Any) -> int | None:
    """A unix time (int, or datetime from ClickHouse) as seconds after T0."""
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        value = int(value.timestamp())
    return int(value) - T0


def episodes_of(events: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Events -> per (icao24, rule): the opening times seen, closed_at and closed_by."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for e in events:
        empty = {"opened_at": set(), "closed_at": None, "closed_by": None}
        ep = out.setdefault((e["icao24"], e["rule"]), empty)
        ep["opened_at"].add(rel(e["opened_at"]))
        if e["event"] == "closed":
            ep["closed_at"] = rel(e["closed_at"])
            ep["closed_by"] = e["closed_by"]
    return out


def describe(events: list[dict[str, Any]]) -> str:
    rows = sorted(
        (e["icao24"], e["rule"], e["event"], rel(e["opened_at"]), rel(e["closed_at"]))
        for e in events
    )
    return "\n".join(f"  {r}" for r in rows) or "  (no events)"


# ------------------------------------------------------------------ part A: the stream's events
def collect_run(spark, mod, cfg, sink: list[dict[str, Any]]) -> None:
    """Run `alert_events` on the topic with availableNow from `cfg.checkpoint`; append the events
    (as dicts) to `sink`. The test's own foreachBatch sink: part A is graded without part B."""

    def keep(batch, _batch_id: int) -> None:
        sink.extend(row.asDict() for row in batch.collect())

    events = mod.alert_events(mod.parse_states(mod.read_stream(spark, cfg)), cfg)
    writer = (
        events.writeStream.outputMode("append")
        .option("checkpointLocation", cfg.checkpoint)
        .foreachBatch(keep)
        .trigger(availableNow=True)
    )
    with mod.session_conf(spark, mod.ROCKSDB_CONF):
        query = writer.start()
    try:
        assert query.awaitTermination(RUN_TIMEOUT_S), (
            f"Lab 09, part A: the alert stream did not finish within {RUN_TIMEOUT_S} s "
            "(trigger availableNow)"
        )
    finally:
        query.stop()


@pytest.fixture(scope="module")
def part_a(spark, mod, alert_config) -> dict[str, list[dict[str, Any]]]:
    """The events of run 1 (phase 1) and run 2 (phase 2, restarted from the checkpoint)."""
    cfg = alert_config("a")
    runs: dict[str, list[dict[str, Any]]] = {"run1": [], "run2": []}
    produce(cfg.topic, phase_messages(1))
    collect_run(spark, mod, cfg, runs["run1"])
    produce(cfg.topic, phase_messages(2))
    collect_run(spark, mod, cfg, runs["run2"])
    runs["all"] = runs["run1"] + runs["run2"]
    return runs


def check_episode(events: list[dict[str, Any]], icao24: str, rule: str, hint: str) -> None:
    """Exactly one opened and one closed event for the expected episode of (icao24, rule)."""
    opened_at, closed_at, closed_by = EXPECTED[(icao24, rule)]
    mine = [e for e in events if e["icao24"] == icao24]
    kinds = Counter((e["rule"], e["event"]) for e in mine)
    expected_kinds = Counter({(rule, "opened"): 1, (rule, "closed"): 1})
    assert kinds == expected_kinds, (
        f"Lab 09, part A: aircraft {icao24} should give one {rule} episode (one 'opened' and "
        f"one 'closed' event, nothing else); got events:\n{describe(mine)}\nHint: {hint}"
    )
    got = episodes_of(mine)[(icao24, rule)]
    assert got["opened_at"] == {opened_at} and got["closed_at"] == closed_at, (
        f"Lab 09, part A: {icao24} {rule}: expected opened at t={opened_at}, closed at "
        f"t={closed_at}; got opened at {sorted(got['opened_at'])}, closed at "
        f"{got['closed_at']}. Hint: {hint}"
    )
    assert got["closed_by"] == closed_by, (
        f"Lab 09, part A: {icao24} {rule} should be closed by {closed_by!r}, got "
        f"{got['closed_by']!r}. Hint: {hint}"
    )


@pytest.mark.points(3)
def test_partA_emergency_squawk_is_one_episode(part_a):
    """An emergency squawk held over several (duplicated) state vectors is one episode."""
    check_episode(
        part_a["all"],
        "a00001",
        "squawk_7700",
        "an episode opens at the first vector with the code and closes at the first vector with "
        "another code; a null squawk says nothing; a duplicate must not open a second episode.",
    )


@pytest.mark.points(3)
def test_partA_episode_survives_restart(part_a):
    """An episode open when the query stops is still open after the restart, and closes once."""
    opened_run1 = [e for e in part_a["run1"] if e["icao24"] == "a00002"]
    assert [(e["rule"], e["event"]) for e in opened_run1] == [("squawk_7600", "opened")], (
        "Lab 09, part A: after the first run a00002's squawk_7600 episode should be opened (once), "
        f"got:\n{describe(opened_run1)}\nHint: the state of open episodes lives in Spark's state "
        "store, keyed by icao24."
    )
    check_episode(
        part_a["all"],
        "a00002",
        "squawk_7600",
        "after a restart the processor reads its state back from the checkpoint: the open "
        "episode must not open again, and a repeated old vector must change nothing.",
    )


@pytest.mark.points(3)
def test_partA_rapid_descent(part_a):
    """N state vectors in a row below the threshold open a rapid-descent episode, once."""
    check_episode(
        part_a["all"],
        "a00003",
        "rapid_descent",
        "count consecutive vectors with vertical_rate strictly below the threshold; open at the "
        "N-th, close at the first vector that is not below; duplicates count once.",
    )


@pytest.mark.points(2)
def test_partA_descent_that_is_not_rapid(part_a):
    """Descents that never stay below the threshold for N vectors in a row raise nothing."""
    mine = [e for e in part_a["all"] if e["icao24"] == "a00004"]
    assert not mine, (
        "Lab 09, part A: a00004 never has 3 vectors in a row below -15 m/s (and -15 itself is "
        f"not below), so no alert; got:\n{describe(mine)}\nHint: a vector not below the threshold "
        "resets the count."
    )


@pytest.mark.points(3)
def test_partA_silence_longer_than_limit(part_a):
    """A gap of more than 60 s in an airborne aircraft's contacts is a silence episode."""
    check_episode(
        part_a["all"],
        "a00005",
        "silence",
        "the episode opens at last contact + 60 s and closes when the aircraft is heard again; "
        "both can happen in the same micro-batch.",
    )


@pytest.mark.points(2)
def test_partA_no_silence_within_limit_or_on_ground(part_a):
    """A gap of exactly 60 s, or an aircraft on the ground, is not a silence."""
    mine = [e for e in part_a["all"] if e["icao24"] in ("a00006", "a00009")]
    assert not mine, (
        "Lab 09, part A: a00006 (a gap of exactly 60 s) and a00009 (on the ground) must raise "
        f"nothing; got:\n{describe(mine)}\nHint: silence means *more than* 60 s without contact "
        "while airborne (on_ground false at the last contact)."
    )


@pytest.mark.points(3)
def test_partA_silence_across_restart(part_a):
    """A silence that starts before the restart and ends after it is one episode."""
    check_episode(
        part_a["all"],
        "a00007",
        "silence",
        "the last contact before the stop is in the state store; the gap to the next contact "
        "counts from there.",
    )


@pytest.mark.points(3)
def test_partA_silence_opened_by_timer_closed_by_timeout(part_a):
    """An aircraft never heard again: the watermark opens its silence, the state timeout closes it."""
    check_episode(
        part_a["all"],
        "a00008",
        "silence",
        "register event-time timers: one at last contact + 60 s (opens the silence), one at last "
        "contact + the state timeout (closes what is open with closed_by 'timeout' and removes "
        "the state).",
    )


@pytest.mark.points(2)
def test_partA_late_messages_do_not_count(part_a):
    """State vectors older than the watermark change nothing."""
    late = [e for e in part_a["run2"] if e["icao24"] in ("a0000a", "a00009")]
    late += [e for e in part_a["all"] if e["rule"] == "squawk_7500"]
    assert not late, (
        "Lab 09, part A: messages older than the watermark must not raise alerts; got:\n"
        f"{describe(late)}\nHint: withWatermark on the event time (last_contact) before the "
        "stateful operator, and ignore vectors not newer than the aircraft's last contact."
    )


@pytest.mark.points(3)
def test_partA_exactly_the_expected_episodes(part_a):
    """All planted stories together: exactly the expected episodes, each opened and closed once."""
    events = part_a["all"]
    kinds = Counter((e["icao24"], e["rule"], e["event"]) for e in events)
    expected = Counter()
    for icao24, rule in EXPECTED:
        expected[(icao24, rule, "opened")] = 1
        expected[(icao24, rule, "closed")] = 1
    assert kinds == expected, (
        f"Lab 09, part A: expected exactly the episodes {sorted(EXPECTED)} (one opened and one "
        f"closed event each); got:\n{describe(events)}\nHint: one alert per episode, not per "
        "state vector."
    )
    for e in events:
        assert e["alert_id"] and e["last_contact"] is not None, (
            f"Lab 09, part A: every event needs an alert_id and the last position; got {e}"
        )


# ------------------------------------------------------------------ part B: Kafka and ClickHouse
def table_rows(cfg) -> list[dict[str, Any]]:
    """The ClickHouse table read as the dashboard reads it: FINAL, one row per episode."""
    client = clickhouse_client()
    try:
        table = f"`{cfg.clickhouse_database}`.`{cfg.clickhouse_table}`"
        return list(client.query(f"SELECT * FROM {table} FINAL").named_results())
    finally:
        client.close()


def topic_events(topic: str) -> list[dict[str, Any]]:
    """Every message of the alerts topic: its key and its decoded JSON value."""
    out = []
    for msg in read_topic(topic):
        value = json.loads(msg.value())
        value["_key"] = msg.key().decode() if msg.key() is not None else None
        out.append(value)
    return out


def crash_before_commit(checkpoint: str) -> int:
    """Make the checkpoint look as if the query died after its last batch wrote its sinks but
    before Spark recorded the batch as done: remove the last file of `commits/`."""
    commits = [p for p in (Path(checkpoint) / "commits").iterdir() if p.name.isdigit()]
    last = max(commits, key=lambda p: int(p.name))
    last.unlink()
    crc = last.with_name(f".{last.name}.crc")
    if crc.exists():
        crc.unlink()
    return int(last.name)


@pytest.fixture(scope="module")
def part_b(spark, mod, alert_config) -> dict[str, Any]:
    """The module's whole job, run three times: phase 1, phase 2 (restart), and the last batch
    replayed after a simulated crash. What the sinks held after each run."""
    cfg = alert_config("b")
    out: dict[str, Any] = {"cfg": cfg}
    produce(cfg.topic, phase_messages(1))
    mod.run_available_now(spark, cfg, timeout=RUN_TIMEOUT_S)
    out["table1"] = table_rows(cfg)
    produce(cfg.topic, phase_messages(2))
    mod.run_available_now(spark, cfg, timeout=RUN_TIMEOUT_S)
    out["table2"] = table_rows(cfg)
    out["kafka2"] = topic_events(cfg.alerts_topic)
    out["replayed_batch"] = crash_before_commit(cfg.checkpoint)
    started = time.monotonic()
    mod.run_available_now(spark, cfg, timeout=RUN_TIMEOUT_S)
    out["replay_seconds"] = time.monotonic() - started
    out["table3"] = table_rows(cfg)
    out["kafka3"] = topic_events(cfg.alerts_topic)
    return out


def check_table(rows: list[dict[str, Any]], when: str) -> None:
    by_episode = Counter((r["icao24"], r["rule"]) for r in rows)
    assert by_episode == Counter(dict.fromkeys(EXPECTED, 1)), (
        f"Lab 09, part B ({when}): the ClickHouse table read with FINAL should hold each of the "
        f"{len(EXPECTED)} episodes once; got {sorted(by_episode.items())}. Hint: one row per "
        "episode id; a closed row must replace the opened one (ReplacingMergeTree with a version)."
    )
    for r in rows:
        opened_at, closed_at, closed_by = EXPECTED[(r["icao24"], r["rule"])]
        got = (rel(r["opened_at"]), rel(r["closed_at"]), r["closed_by"], r["status"])
        assert got == (opened_at, closed_at, closed_by, "closed"), (
            f"Lab 09, part B ({when}): {r['icao24']} {r['rule']}: expected (opened_at, closed_at, "
            f"closed_by, status) = {(opened_at, closed_at, closed_by, 'closed')}, got {got}"
        )


@pytest.mark.points(3)
def test_partB_clickhouse_holds_open_episode_after_first_run(part_b):
    """After the first run the table shows a00002's squawk episode as open."""
    rows = [r for r in part_b["table1"] if r["icao24"] == "a00002"]
    got = [(r["rule"], r["status"], rel(r["opened_at"]), r["closed_at"]) for r in rows]
    assert got == [("squawk_7600", "opened", 250, None)], (
        "Lab 09, part B: after the first run the table should hold a00002's open episode once "
        f"(rule squawk_7600, status 'opened', opened at t=250, no closed_at); got {got}. Hint: "
        "write every event of the batch; `status` is the event."
    )


@pytest.mark.points(4)
def test_partB_clickhouse_keeps_each_episode_once(part_b):
    """After the restart the table holds each episode once, closed, with its times."""
    check_table(part_b["table2"], "after the restart")


@pytest.mark.points(4)
def test_partB_kafka_alert_events(part_b):
    """The alerts topic has one message per event, keyed by icao24, JSON with the episode."""
    events = part_b["kafka2"]
    kinds = Counter((e.get("icao24"), e.get("rule"), e.get("event")) for e in events)
    expected = Counter()
    for icao24, rule in EXPECTED:
        expected[(icao24, rule, "opened")] = 1
        expected[(icao24, rule, "closed")] = 1
    assert kinds == expected, (
        "Lab 09, part B: the alerts topic should hold one 'opened' and one 'closed' message per "
        f"episode; got {sorted(kinds.items())}"
    )
    for e in events:
        assert e["_key"] == e["icao24"], (
            f"Lab 09, part B: messages are keyed by icao24; got key {e['_key']!r} for {e}"
        )
        missing = [
            k for k in ("alert_id", "opened_at", "closed_at", "latitude", "longitude") if k not in e
        ]
        assert not missing, (
            f"Lab 09, part B: an alert message carries the rule, opened/closed times and the "
            f"last position; {missing} missing in {e}"
        )
        ep = EXPECTED[(e["icao24"], e["rule"])]
        closed_at = ep[1] if e["event"] == "closed" else None
        assert (rel(e["opened_at"]), rel(e["closed_at"])) == (ep[0], closed_at), (
            f"Lab 09, part B: {e['icao24']} {e['rule']} {e['event']}: expected opened_at/closed_at "
            f"{(ep[0], closed_at)} (seconds after T0, unix seconds in the JSON), got "
            f"{(rel(e['opened_at']), rel(e['closed_at']))}"
        )


@pytest.mark.points(4)
def test_partB_replayed_batch_keeps_each_episode_once(part_b):
    """A batch Spark runs again after a crash leaves each episode once in ClickHouse."""
    check_table(part_b["table3"], f"after batch {part_b['replayed_batch']} ran again")
    ids2 = {(e["alert_id"], e["event"]) for e in part_b["kafka2"]}
    ids3 = {(e["alert_id"], e["event"]) for e in part_b["kafka3"]}
    assert ids3 == ids2, (
        "Lab 09, part B: a replayed batch must produce the same alert events (same alert_id) so "
        f"consumers can drop the repeats; new ids after the replay: {sorted(ids3 - ids2)}"
    )
