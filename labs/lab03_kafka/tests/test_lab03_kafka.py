"""Graded test suite for Lab 03 — used by `make lab-3` and instructors' grading.

Every test runs against the real Kafka broker on topics and consumer groups of its own
(`lab03_<purpose>_<uuid>`), deleted afterwards. The suite writes and reads with its own clients,
so each part is graded on its own; part D talks to a local stand-in for the OpenSky REST API that
replays snapshots of the shipped recording.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Producer

from harness.grading.suite_helpers import state_at
from harness.runtime.config import endpoints
from harness.runtime.schema import state_to_row

DAY_MS = 24 * 60 * 60 * 1000
README = "labs/lab03_kafka/README.md"


def flight(icao24: str, seq: int, **fields: Any) -> dict[str, Any]:
    """One flat row (harness.runtime.schema) whose `last_contact` grows with `seq`."""
    plain = {
        "callsign": "TEST123 ",
        "origin_country": "France",
        "longitude": 2.35,
        "latitude": 48.86,
        "baro_altitude": 10000.0,
        "velocity": 230.0,
        "geo_altitude": 10100.0,
    }
    return state_at(1_633_608_000 + seq * 10, icao24, **{**plain, **fields})


# ================================================================== part A: topics
LAB_TOPICS = {
    # suffix: (partitions, configs that must be set)
    "raw_flights": (3, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}),
    "processed_flights": (3, {"cleanup.policy": "delete", "retention.ms": str(3 * DAY_MS)}),
    "raw_flights.dlq": (1, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}),
    "aircraft_latest": (3, {"cleanup.policy": "compact"}),
}


def _lab_specs(kp, topics) -> tuple[str, list]:
    prefix = topics.unique("a") + "_"
    for suffix in LAB_TOPICS:  # whatever happens, these are deleted after the test
        topics.adopt(prefix + suffix)
    specs = list(kp.lab_topics(prefix))
    names = sorted(spec.name for spec in specs)
    expected = sorted(prefix + suffix for suffix in LAB_TOPICS)
    assert names == expected, (
        f"Lab 03, part A: lab_topics({prefix!r}) should list exactly {expected}, got {names}. "
        f"Hint: put `prefix` in front of every name; the four topics are in {README}."
    )
    return prefix, specs


@pytest.mark.points(3)
def test_partA_creates_topics_idempotently(kp, admin, topics):
    """create_topics makes the four lab topics, and a second call is not an error."""
    prefix, specs = _lab_specs(kp, topics)
    first = kp.create_topics(specs, admin)
    expected_first = {spec.name: True for spec in specs}
    assert first == expected_first, (
        f"Lab 03, part A: the first create_topics call should report every topic as created "
        f"(True), got {first}."
    )
    existing = set(admin.list_topics(timeout=10).topics)
    missing = sorted(spec.name for spec in specs if spec.name not in existing)
    assert not missing, f"Lab 03, part A: after create_topics these topics do not exist: {missing}"
    try:
        second = kp.create_topics(specs, admin)
    except Exception as exc:
        pytest.fail(
            f"Lab 03, part A: creating topics that already exist must not be an error, but the "
            f"second call raised {type(exc).__name__}: {exc}. Hint: the broker answers "
            f"TOPIC_ALREADY_EXISTS (KafkaError.TOPIC_ALREADY_EXISTS) — treat it as success."
        )
    expected_second = {spec.name: False for spec in specs}
    assert second == expected_second, (
        f"Lab 03, part A: the second call should report every topic as already there (False), "
        f"got {second}."
    )


@pytest.mark.points(3)
def test_partA_topic_configs_read_back(kp, admin, topics, broker):
    """Partitions, retention and cleanup policy of each lab topic, as the broker reports them."""
    prefix, specs = _lab_specs(kp, topics)
    kp.create_topics(specs, admin)
    for suffix, (partitions, wanted) in LAB_TOPICS.items():
        name = prefix + suffix
        count, configs = broker.describe_topic(name)
        assert count == partitions, (
            f"Lab 03, part A: topic {suffix} should have {partitions} partitions, the broker "
            f"says {count}. Hint: the table in {README} gives each topic's partitions."
        )
        for key, value in wanted.items():
            assert configs.get(key) == value, (
                f"Lab 03, part A: topic {suffix} should have {key}={value}, the broker says "
                f"{key}={configs.get(key)}. Hint: pass per-topic settings as NewTopic(config=...)"
                f" with string values."
            )


@pytest.mark.points(2)
def test_partA_invalid_topic_is_a_clear_error(kp, admin, topics, broker):
    """A bad topic name or partition count raises ValueError naming the problem; nothing is made."""
    for bad_name in ("bad name!", "", "x" * 250, "..", "flights/raw"):
        with pytest.raises(ValueError) as caught:
            kp.create_topics([kp.TopicSpec(bad_name, 1)], admin)
        assert repr(bad_name)[:40] in str(caught.value) or bad_name[:40] in str(caught.value), (
            f"Lab 03, part A: the error for the invalid topic name {bad_name[:40]!r} should quote "
            f"the name, got: {caught.value}"
        )
    for bad_count in (0, -2, "3", 1.5):
        name = topics.adopt(topics.unique("badcount"))
        with pytest.raises(ValueError) as caught:
            kp.create_topics([kp.TopicSpec(name, bad_count)], admin)
        assert "partition" in str(caught.value).lower(), (
            f"Lab 03, part A: the error for partitions={bad_count!r} should say what is wrong "
            f"with the partition count, got: {caught.value}"
        )
        assert name not in admin.list_topics(timeout=10).topics, (
            f"Lab 03, part A: a topic with partitions={bad_count!r} must not be created. Hint: "
            f"check every spec before asking the broker."
        )
    good = topics.adopt(topics.unique("mixed"))
    with pytest.raises(ValueError):
        kp.create_topics([kp.TopicSpec(good, 1), kp.TopicSpec("bad name!", 1)], admin)
    assert good not in admin.list_topics(timeout=10).topics, (
        f"Lab 03, part A: create_topics([{good!r} (valid), 'bad name!']) raised, but created "
        f"{good!r} first: a list with one bad spec must create nothing. Hint: check every spec "
        f"before asking the broker for any of them."
    )


# ================================================================== part B: producer
@pytest.mark.points(2)
def test_partB_producer_config_is_safe(kp):
    """The producer config asks for acks=all and idempotence, reaches the lab broker, and takes
    overrides."""
    conf = kp.producer_config()
    assert str(conf.get("acks")).lower() in ("all", "-1"), (
        f"Lab 03, part B: producer_config() should set acks=all (every in-sync replica "
        f"acknowledges), got acks={conf.get('acks')!r}."
    )
    assert str(conf.get("enable.idempotence")).lower() == "true", (
        f"Lab 03, part B: producer_config() should set enable.idempotence=True (retries never "
        f"duplicate or reorder), got {conf.get('enable.idempotence')!r}."
    )
    assert conf.get("bootstrap.servers") == endpoints().kafka_bootstrap, (
        f"Lab 03, part B: bootstrap.servers should come from harness.runtime.services.kafka_config() "
        f"({endpoints().kafka_bootstrap!r}), got {conf.get('bootstrap.servers')!r}."
    )
    tuned = kp.producer_config(**{"linger.ms": 5})
    assert tuned.get("linger.ms") == 5 and str(tuned.get("acks")).lower() in ("all", "-1"), (
        f"Lab 03, part B: producer_config(**{{'linger.ms': 5}}) should keep the defaults and set "
        f"linger.ms=5, got {tuned}."
    )
    Producer(conf)  # librdkafka accepts every setting


@pytest.mark.points(4)
def test_partB_one_aircraft_one_partition_in_order(kp, topics, broker):
    """Across a 3-partition topic, each aircraft's updates land on one partition, in order."""
    topic = topics.new("order", partitions=3)
    aircraft = [f"4b{n:04x}" for n in range(12)]
    rows = [flight(icao24, seq) for seq in range(15) for icao24 in aircraft]  # interleaved
    kp.publish_rows(rows, topic)
    messages = broker.read_all(topic)
    assert len(messages) == len(rows), (
        f"Lab 03, part B: {len(rows)} rows were published, the topic holds {len(messages)} "
        f"messages. Hint: flush the producer before returning."
    )
    by_aircraft: dict[str, list] = defaultdict(list)
    for msg in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        value = json.loads(msg.value())
        key = msg.key().decode() if msg.key() is not None else None
        assert key == value["icao24"], (
            f"Lab 03, part B: the message key should be the row's icao24 ({value['icao24']!r}), "
            f"got {key!r}."
        )
        by_aircraft[key].append((msg.partition(), value["last_contact"]))
    for icao24, seen in by_aircraft.items():
        partitions = {p for p, _ in seen}
        assert len(partitions) == 1, (
            f"Lab 03, part B: all updates of aircraft {icao24} should be on one partition, they "
            f"are on {sorted(partitions)}. Hint: key every message by icao24."
        )
        times = [t for _, t in seen]
        assert times == sorted(times) and len(times) == 15, (
            f"Lab 03, part B: aircraft {icao24}'s updates should be in sending order on their "
            f"partition; last_contact in offset order: {times}."
        )
    used = {p for seen in by_aircraft.values() for p, _ in seen}
    assert len(used) > 1, (
        f"Lab 03, part B: 12 different keys should spread over the 3 partitions, all went to "
        f"{sorted(used)}. Hint: let the default partitioner choose from the key."
    )


@pytest.mark.points(3)
def test_partB_delivery_report_counts(kp, topics, broker):
    """The delivery report counts delivered and failed messages; every row is one or the other."""
    topic = topics.new("report", partitions=3)
    rows = [flight(f"3c{n:04x}", n) for n in range(40)]
    report = kp.publish_rows(rows, topic)
    counts = (report.produced, report.delivered, report.failed)
    assert counts == (40, 40, 0), (
        f"Lab 03, part B: for 40 good rows expected (produced, delivered, failed) = (40, 40, 0), "
        f"got {counts}. Hint: count in the delivery callback, and flush before returning."
    )
    assert sum(report.partitions.values()) == 40 and len(broker.read_all(topic)) == 40, (
        f"Lab 03, part B: report.partitions should count the 40 deliveries per partition, got "
        f"{dict(report.partitions)}."
    )

    tiny = topics.new("toolarge", partitions=1, config={"max.message.bytes": "1024"})
    # Random text: compression cannot shrink it below the limit.
    big = [flight(f"3d{n:04x}", n, callsign=os.urandom(3000).hex()) for n in range(3)]
    report = kp.publish_rows(big, tiny)
    counts = (report.produced, report.delivered, report.failed)
    assert counts == (3, 0, 3) and report.errors, (
        f"Lab 03, part B: the broker refuses 3 rows bigger than the topic's max.message.bytes; "
        f"expected (produced, delivered, failed) = (3, 0, 3) and an error text, got {counts}, "
        f"errors={report.errors}. Hint: a delivery callback with err set is a failure."
    )

    mixed = [flight("3e0001", 1), {"callsign": "NOKEY"}, flight("3e0002", 2)]
    report = kp.publish_rows(mixed, topic)
    counts = (report.produced, report.delivered, report.failed)
    assert counts == (3, 2, 1), (
        f"Lab 03, part B: a row without icao24 cannot be keyed: expected it counted as failed, "
        f"(produced, delivered, failed) = (3, 2, 1), got {counts}."
    )


# ================================================================== part C: consumer
class SimulatedCrash(Exception):
    """Raised by a test's handler to play a consumer that dies mid-processing."""


@pytest.mark.points(4)
def test_partC_crash_before_commit_redelivers(kp, topics, groups, broker):
    """A consumer that crashes while processing did not commit that message: the group gets it
    again."""
    topic = topics.new("crash", partitions=1)
    broker.produce(topic, [{"value": {"n": n}} for n in range(10)])
    group = groups("crash")
    first: list[int] = []

    def crash_on_fourth(record) -> None:
        first.append(record.value["n"])
        if record.value["n"] == 3:
            raise SimulatedCrash("the consumer died while processing message 3")

    with pytest.raises(SimulatedCrash):
        kp.consume(topic, group, crash_on_fourth, max_messages=10, timeout=30)
    assert first == [0, 1, 2, 3], (
        f"Lab 03, part C: the consumer should see messages 0,1,2,3 in order and stop when the "
        f"handler raised; it saw {first}. Hint: let the handler's exception propagate."
    )
    committed = broker.committed_offsets(topic, group, [0])[0]
    assert committed <= 3, (
        f"Lab 03, part C: message 3 (offset 3) was being processed when the consumer crashed, "
        f"yet the group's committed offset is {committed} — that message would be lost. Hint: "
        f"enable.auto.commit=False and commit only after the handler returned."
    )
    start = max(committed, 0)
    second: list[int] = []
    report = kp.consume(
        topic, group, lambda r: second.append(r.value["n"]), max_messages=10 - start, timeout=30
    )
    assert second == list(range(start, 10)), (
        f"Lab 03, part C: a new consumer in the same group should resume at the committed offset "
        f"{start} and get messages {list(range(start, 10))} (message 3 again: at-least-once); "
        f"it got {second}. Hint: close the consumer in a `finally:` block, so the crashed one "
        f"leaves the group instead of holding its partition."
    )
    assert report.processed == 10 - start, (
        f"Lab 03, part C: report.processed should be {10 - start}, got {report.processed}."
    )
    assert dict(report.committed) == {0: 10}, (
        f"Lab 03, part C: after processing up to offset 9, report.committed should be {{0: 10}} "
        f"(per partition, the next offset to read: the one committed), got "
        f"{dict(report.committed)}."
    )


@pytest.mark.points(3)
def test_partC_committed_messages_are_not_redelivered(kp, topics, groups, broker):
    """After a consumer processed and committed everything, the group resumes after it."""
    topic = topics.new("commit", partitions=1)
    broker.produce(topic, [{"value": {"n": n}} for n in range(6)])
    group = groups("commit")
    first: list[int] = []
    report = kp.consume(topic, group, lambda r: first.append(r.value["n"]), max_messages=6)
    assert first == list(range(6)) and report.processed == 6, (
        f"Lab 03, part C: the consumer should process messages 0..5 from the earliest offset, it "
        f"processed {first} (report.processed={report.processed}). Hint: auto.offset.reset="
        f"earliest for a new group."
    )
    assert dict(report.committed) == {0: 6}, (
        f"Lab 03, part C: report.committed should be {{0: 6}} (the offset committed on partition "
        f"0: the next one to read), got {dict(report.committed)}."
    )
    committed = broker.committed_offsets(topic, group, [0])[0]
    assert committed == 6, (
        f"Lab 03, part C: after processing offsets 0..5 the group's committed offset should be "
        f"6 (the next to read), got {committed}."
    )
    broker.produce(topic, [{"value": {"n": 6}}])
    second: list[int] = []
    kp.consume(topic, group, lambda r: second.append(r.value["n"]), max_messages=1)
    assert second == [6], (
        f"Lab 03, part C: the group committed 0..5, so a new consumer should get only the new "
        f"message 6, it got {second}."
    )


@pytest.mark.points(4)
def test_partC_replay_from_timestamp(kp, topics, broker):
    """offsets_for_time finds each partition's first message at or after a time; replay_from
    reads exactly those messages."""
    topic = topics.new("replay", partitions=3)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    t0_ms = int(t0.timestamp() * 1000)
    # One message a second; from n = 18 on, partition 2 gets nothing (its answer is the end).
    sent = broker.produce(
        topic,
        [
            {
                "value": {"n": n},
                "partition": n % 3 if n < 18 else n % 2,
                "timestamp": t0_ms + n * 1000,
            }
            for n in range(30)
        ],
    )
    when = t0 + timedelta(seconds=17.5)
    when_ms = t0_ms + 17_500
    expected: dict[int, int] = {}
    for p in range(3):
        in_p = [s for s in sent if s.partition == p]
        later = [s.offset for s in in_p if s.timestamp_ms >= when_ms]
        expected[p] = min(later) if later else len(in_p)
    for argument in (when, when_ms):
        got = kp.offsets_for_time(topic, argument)
        assert got == expected, (
            f"Lab 03, part C: offsets_for_time({argument!r}) should give each partition's first "
            f"offset at or after that time (the end offset when there is none): expected "
            f"{expected}, got {got}. Hint: Consumer.offsets_for_times with the time in ms."
        )
    records = kp.replay_from(topic, when)
    got_ids = sorted((r.partition, r.offset) for r in records)
    want_ids = sorted((s.partition, s.offset) for s in sent if s.timestamp_ms >= when_ms)
    assert got_ids == want_ids, (
        f"Lab 03, part C: replay_from should return the {len(want_ids)} messages stamped at or "
        f"after {when.isoformat()} (n = 18..29), got {len(got_ids)}: "
        f"{sorted(r.value['n'] for r in records)}."
    )
    firsts = {p: min(o for q, o in got_ids if q == p) for p in {q for q, _ in got_ids}}
    assert all(firsts[p] == expected[p] for p in firsts), (
        f"Lab 03, part C: the first replayed offset per partition should be {expected}, got "
        f"{firsts}."
    )


@pytest.mark.points(3)
def test_partC_consumer_lag_per_partition(kp, topics, groups, broker):
    """Lag per partition = end offset − the group's committed offset (all of it when none)."""
    topic = topics.new("lag", partitions=3)
    counts = {0: 10, 1: 5, 2: 7}
    broker.produce(
        topic, [{"value": {"p": p}, "partition": p} for p, n in counts.items() for _ in range(n)]
    )
    # Partition 2's first 3 messages are gone (as retention would remove them): low watermark 3.
    broker.delete_before(topic, 2, 3)
    group = groups("lag")
    broker.commit_offsets(topic, group, {0: 4, 1: 5})
    lag = kp.consumer_lag(topic, group)
    assert lag == {0: 6, 1: 0, 2: 4}, (
        f"Lab 03, part C: with {counts} messages per partition, partition 2's first 3 deleted "
        f"(low watermark 3) and commits {{0: 4, 1: 5}} (none on 2), the lag should be "
        f"{{0: 6, 1: 0, 2: 4}}, got {lag}. Hint: high watermark (get_watermark_offsets) minus "
        f"Consumer.committed; no commit = from the low watermark, where `earliest` starts."
    )
    broker.commit_offsets(topic, group, {2: 5})
    lag = kp.consumer_lag(topic, group)
    assert lag == {0: 6, 1: 0, 2: 2}, (
        f"Lab 03, part C: after committing offset 5 on partition 2 the lag should be "
        f"{{0: 6, 1: 0, 2: 2}}, got {lag}."
    )


# ================================================================== part D: collector
def _client(collector, opensky, sleeps: list[float], **settings: Any):
    """An anonymous client of the local OpenSky whose sleep records the waits."""
    conf = collector.CollectorSettings(
        api_url=opensky.api_url, token_url=opensky.token_url, **settings
    )
    return collector.OpenSkyClient(conf, sleep=sleeps.append)


@pytest.mark.points(3)
def test_partD_token_request_uses_client_credentials(collector, opensky, monkeypatch):
    """With OPENSKY_CLIENT_ID/SECRET set, the client gets one OAuth2 token and sends it as a
    bearer header."""
    monkeypatch.setenv("OPENSKY_API_URL", opensky.api_url)
    monkeypatch.setenv("OPENSKY_TOKEN_URL", opensky.token_url)
    monkeypatch.setenv("OPENSKY_CLIENT_ID", opensky.client_id)
    monkeypatch.setenv("OPENSKY_CLIENT_SECRET", opensky.client_secret)
    sleeps: list[float] = []
    client = collector.OpenSkyClient(collector.CollectorSettings.from_env(), sleep=sleeps.append)
    europe = collector.REGIONS["europe"]
    snapshots = [client.get_states(europe), client.get_states(europe)]

    posts = opensky.token_requests()
    assert len(posts) == 1, (
        f"Lab 03, part D: two API calls should share one token (reuse it until it expires); "
        f"the token endpoint got {len(posts)} requests."
    )
    expected_form = {
        "grant_type": "client_credentials",
        "client_id": opensky.client_id,
        "client_secret": opensky.client_secret,
    }
    assert posts[0].method == "POST" and posts[0].form == expected_form, (
        f"Lab 03, part D: the token request should be a form POST with {expected_form}, got "
        f"{posts[0].method} with form {posts[0].form}. Hint: requests.post(url, data={{...}})."
    )
    for request in opensky.states_requests():
        assert request.headers.get("authorization") == f"Bearer {opensky.tokens[0]}", (
            f"Lab 03, part D: every /states/all request should carry 'Authorization: Bearer "
            f"<access_token>', got {request.headers.get('authorization')!r}."
        )
    assert snapshots == opensky.served[:2], (
        "Lab 03, part D: get_states should return the JSON document the API sent "
        '({"time": ..., "states": [...]}), unchanged.'
    )


@pytest.mark.points(1)
def test_partD_rejected_credentials_are_a_clear_error(collector, opensky):
    """Wrong client credentials raise CollectorError naming the HTTP status."""
    client = _client(collector, opensky, [], client_id=opensky.client_id, client_secret="wrong")
    with pytest.raises(collector.CollectorError) as caught:
        client.get_states(collector.REGIONS["europe"])
    assert "401" in str(caught.value), (
        f"Lab 03, part D: the error for rejected credentials should name the status (401), got: "
        f"{caught.value}"
    )


@pytest.mark.points(2)
def test_partD_anonymous_mode_sends_no_token(collector, opensky):
    """Without client credentials the client asks for no token and sends no Authorization."""
    client = _client(collector, opensky, [])
    snapshot = client.get_states(collector.REGIONS["europe"])
    assert not opensky.token_requests(), (
        "Lab 03, part D: without OPENSKY_CLIENT_ID/SECRET the client must not call the token "
        "endpoint (anonymous access)."
    )
    headers = [r.headers.get("authorization") for r in opensky.states_requests()]
    assert headers == [None], (
        f"Lab 03, part D: an anonymous /states/all request has no Authorization header; the API "
        f"received {headers}."
    )
    assert snapshot == opensky.served[0], "Lab 03, part D: get_states should return the snapshot."


@pytest.mark.points(2)
def test_partD_region_parameters_are_sent(collector, opensky):
    """Each region's bounding box goes out as lamin/lomin/lamax/lomax."""
    client = _client(collector, opensky, [])
    for name, region in collector.REGIONS.items():
        client.get_states(region)
        sent = opensky.states_requests()[-1].params
        try:
            box = {k: float(sent[k]) for k in ("lamin", "lomin", "lamax", "lomax")}
        except (KeyError, ValueError):
            box = sent
        want = {"lamin": region.lamin, "lomin": region.lomin, "lamax": region.lamax}
        want["lomax"] = region.lomax
        assert box == want, (
            f"Lab 03, part D: the request for region {name} should have the query parameters "
            f"{want}, it had {sent}. Hint: requests.get(url, params=region.params())."
        )
    assert set(collector.REGIONS) >= {"europe", "north_america"}, (
        "Lab 03, part D: REGIONS should hold europe and north_america."
    )


@pytest.mark.points(3)
def test_partD_rate_limit_waits_as_told(collector, opensky):
    """HTTP 429 is retried after the wait the server names (Retry-After or OpenSky's header)."""
    opensky.throttle({"Retry-After": "7"}, {"X-Rate-Limit-Retry-After-Seconds": "3"})
    sleeps: list[float] = []
    client = _client(collector, opensky, sleeps)
    snapshot = client.get_states(collector.REGIONS["europe"])
    assert sleeps == [7.0, 3.0], (
        f"Lab 03, part D: after '429 Retry-After: 7' and '429 X-Rate-Limit-Retry-After-Seconds: "
        f"3' the client should sleep 7 then 3 seconds (with the sleep it was given), it slept "
        f"{sleeps}."
    )
    assert len(opensky.states_requests()) == 3 and snapshot == opensky.served[0], (
        f"Lab 03, part D: two 429 answers then a success make 3 requests and return the "
        f"snapshot; the API saw {len(opensky.states_requests())} requests."
    )


@pytest.mark.points(2)
def test_partD_backoff_is_exponential_and_bounded(collector, opensky):
    """Without a wait from the server: backoff_s·2ⁿ capped at max_backoff_s, then give up."""
    opensky.throttle(*[{} for _ in range(10)])
    sleeps: list[float] = []
    client = _client(collector, opensky, sleeps, max_retries=4, backoff_s=0.5, max_backoff_s=3.0)
    with pytest.raises(collector.RateLimited):
        client.get_states(collector.REGIONS["europe"])
    assert sleeps == [0.5, 1.0, 2.0, 3.0], (
        f"Lab 03, part D: with backoff_s=0.5, max_backoff_s=3 and max_retries=4 the waits "
        f"should be [0.5, 1.0, 2.0, 3.0] before raising RateLimited, got {sleeps}."
    )
    assert len(opensky.states_requests()) == 5, (
        f"Lab 03, part D: max_retries=4 means 1 request + 4 retries = 5 requests, the API saw "
        f"{len(opensky.states_requests())}."
    )


@pytest.mark.points(2)
def test_partD_server_errors_are_retried(collector, opensky):
    """HTTP 5xx answers are retried with the same backoff; other errors are not retried."""
    opensky.fail(503, 500)
    sleeps: list[float] = []
    client = _client(collector, opensky, sleeps, backoff_s=0.5, max_backoff_s=3.0)
    snapshot = client.get_states(collector.REGIONS["europe"])
    assert sleeps == [0.5, 1.0] and len(opensky.states_requests()) == 3, (
        f"Lab 03, part D: after HTTP 503 and 500 (the server's trouble, worth another try) the "
        f"client should back off 0.5 then 1.0 s and succeed on the 3rd request; it slept "
        f"{sleeps} and sent {len(opensky.states_requests())} requests."
    )
    assert snapshot == opensky.served[0], "Lab 03, part D: get_states should return the snapshot."
    opensky.fail(400)
    with pytest.raises(collector.CollectorError) as caught:
        client.get_states(collector.REGIONS["europe"])
    assert "400" in str(caught.value) and sleeps == [0.5, 1.0], (
        f"Lab 03, part D: HTTP 400 is the request's fault: raise CollectorError naming the "
        f"status at once, without waiting; got {caught.value!r} after sleeping {sleeps}."
    )


@pytest.mark.points(3)
def test_partD_token_renewed_before_expiry_and_after_401(collector, opensky):
    """A token is reused until TOKEN_MARGIN_S before it expires, then renewed; after a 401 for a
    revoked token the client gets a new one and retries once."""
    opensky.expires_in = 600
    now = [1000.0]
    conf = collector.CollectorSettings(
        api_url=opensky.api_url,
        token_url=opensky.token_url,
        client_id=opensky.client_id,
        client_secret=opensky.client_secret,
    )
    client = collector.OpenSkyClient(conf, sleep=[].append, clock=lambda: now[0])
    europe = collector.REGIONS["europe"]
    client.get_states(europe)
    now[0] += 600 - collector.TOKEN_MARGIN_S - 5  # 5 s before the renewal point
    client.get_states(europe)
    assert len(opensky.token_requests()) == 1, (
        f"Lab 03, part D: a token that expires in 600 s is still good {600 - 5:.0f} - "
        f"TOKEN_MARGIN_S s later; the client asked for {len(opensky.token_requests())} tokens."
    )
    now[0] += 10  # now inside the margin before expiry
    client.get_states(europe)
    last = opensky.states_requests()[-1].headers.get("authorization")
    assert len(opensky.token_requests()) == 2 and last == f"Bearer {opensky.tokens[-1]}", (
        f"Lab 03, part D: within TOKEN_MARGIN_S of its expiry (self.clock() + expires_in) the "
        f"token must be renewed before the request; token requests: "
        f"{len(opensky.token_requests())}, the request carried {last!r}."
    )
    opensky.revoke_tokens()
    snapshot = client.get_states(europe)
    statuses = len(opensky.states_requests())
    assert len(opensky.token_requests()) == 3 and snapshot == opensky.served[-1], (
        f"Lab 03, part D: after the server refused the token (HTTP 401) the client should forget "
        f"it, get a new one and retry once; token requests: {len(opensky.token_requests())} "
        f"(expected 3), /states/all requests: {statuses}."
    )
    assert opensky.states_requests()[-1].headers.get("authorization") == (
        f"Bearer {opensky.tokens[-1]}"
    ), "Lab 03, part D: the retry after a 401 should carry the new token."


@pytest.mark.points(3)
def test_partD_collected_records_are_published(collector, opensky, topics, broker):
    """collect_once turns each region's state arrays into rows and publishes them keyed by
    icao24."""
    topic = topics.new("collect", partitions=3)
    client = _client(collector, opensky, [])
    regions = [collector.REGIONS["europe"], collector.REGIONS["north_america"]]
    report = collector.collect_once(client, regions, topic)
    expected = [
        state_to_row(snapshot["time"], state)
        for snapshot in opensky.served
        for state in snapshot["states"] or []
    ]
    assert expected, "test set-up: the local API served no state vectors"
    assert report.states == {"europe": len(expected), "north_america": 0}, (
        f"Lab 03, part D: report.states should count rows per region: "
        f"{{'europe': {len(expected)}, 'north_america': 0}} (the recording is over France and "
        f"Switzerland; North America answers states: null), got {report.states}."
    )
    messages = broker.read_all(topic)
    got = sorted((json.loads(m.value()) for m in messages), key=lambda r: r["icao24"])
    want = sorted(expected, key=lambda r: r["icao24"])
    assert got == want, (
        f"Lab 03, part D: the topic should hold one row per state vector "
        f"(harness.runtime.schema.state_to_row(snapshot['time'], state)); expected {len(want)} rows, "
        f"got {len(got)}; first expected {want[:1]}, first got {got[:1]}."
    )
    keys = {m.key().decode() if m.key() else None for m in messages}
    assert keys == {r["icao24"] for r in expected}, (
        "Lab 03, part D: publish with part B's publish_rows so every message is keyed by icao24."
    )
    assert report.rows == len(expected) and report.delivery.delivered == len(expected), (
        f"Lab 03, part D: report.rows and report.delivery.delivered should both be "
        f"{len(expected)}, got {report.rows} and {report.delivery.delivered}."
    )


# ================================================================== part E: validation, DLQ
def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# (description, value, expected reason or None when valid)
CASES: list[tuple[str, Any, str | None]] = [
    ("a valid row", _bytes(flight("4ca7b5", 1)), None),
    ("a valid row given as a dict", flight("4ca7b6", 2), None),
    ("null position", _bytes(flight("3c6444", 3, latitude=None, longitude=None)), "null_position"),
    ("latitude 95", _bytes(flight("400a0e", 4, latitude=95.0)), "latitude_out_of_range"),
    ("longitude 181.5", _bytes(flight("39ac45", 5, longitude=181.5)), "longitude_out_of_range"),
    (
        "missing icao24",
        _bytes({k: v for k, v in flight("x", 6).items() if k != "icao24"}),
        "missing_icao24",
    ),
    ("upper-case icao24", _bytes(flight("ZZ9999", 7)), "invalid_icao24"),
    ("upper-case hex icao24", _bytes(flight("4CA7B5", 10)), "invalid_icao24"),
    (
        "latitude true (a bool)",
        _bytes(flight("4ca7b7", 11, latitude=True)),
        "latitude_out_of_range",
    ),
    (
        "longitude NaN",
        _bytes(flight("4ca7b8", 12, longitude=float("nan"))),
        "longitude_out_of_range",
    ),
    ("malformed JSON", b'{"icao24": "4b1805", "latitude": 47.4', "malformed_json"),
    ("a JSON array", b"[1, 2, 3]", "not_an_object"),
]


@pytest.mark.points(3)
def test_partE_validate_record_gives_reasons(kp):
    """validate_record returns valid records as dicts and raises InvalidRecord with the reason."""
    for description, value, reason in CASES:
        if reason is None:
            record = kp.validate_record(value)
            original = value if isinstance(value, dict) else json.loads(value)
            assert record == original, (
                f"Lab 03, part E: {description} is valid: validate_record should return it as a "
                f"dict, got {record!r:.200}."
            )
            continue
        try:
            accepted = kp.validate_record(value)
        except kp.InvalidRecord as rejected:
            assert rejected.reason == reason, (
                f"Lab 03, part E: {description} should be rejected with reason {reason!r}, got "
                f"{rejected.reason!r} ({rejected})."
            )
            assert rejected.message, f"Lab 03, part E: {description}: the message is empty."
        else:
            pytest.fail(
                f"Lab 03, part E: {description} should be rejected with reason {reason!r}, but "
                f"validate_record accepted it: {accepted!r:.200}. Hint: the table in {README} "
                f"lists the checks in order."
            )


@pytest.mark.points(4)
def test_partE_invalid_records_go_to_dlq_with_headers(kp, topics, broker):
    """Valid records reach the topic, invalid ones the DLQ unchanged with error headers; counts
    add up."""
    out = topics.new("valid", partitions=3)
    dlq = topics.new("dlq", partitions=1)
    values = [value for _, value, _ in CASES]
    report = kp.route_records(values, out, dlq)

    bad = [(d, v, r) for d, v, r in CASES if r is not None]
    good = [(d, v) for d, v, r in CASES if r is None]
    counts = (report.received, report.published, report.dead_lettered, report.failed)
    want = (len(CASES), len(good), len(bad), 0)
    assert counts == want, (
        f"Lab 03, part E: expected (received, published, dead_lettered, failed) = {want}, got "
        f"{counts}. Every record received is published or dead-lettered."
    )
    want_reasons = dict(Counter(r for _, _, r in bad))
    assert dict(report.reasons) == want_reasons, (
        f"Lab 03, part E: report.reasons should count dead letters per reason: {want_reasons}, "
        f"got {dict(report.reasons)}."
    )

    published = broker.read_all(out)
    got_good = sorted(json.loads(m.value())["icao24"] for m in published)
    assert got_good == sorted(["4ca7b5", "4ca7b6"]) and all(
        m.key() and m.key().decode() == json.loads(m.value())["icao24"] for m in published
    ), (
        f"Lab 03, part E: the topic should hold the 2 valid records keyed by icao24, it holds "
        f"{got_good}."
    )

    letters = broker.read_all(dlq)
    by_value = {m.value(): m for m in letters}
    assert len(letters) == len(bad), (
        f"Lab 03, part E: the DLQ should hold {len(bad)} messages, it holds {len(letters)}."
    )
    for description, value, reason in bad:
        msg = by_value.get(value)
        assert msg is not None, (
            f"Lab 03, part E: the DLQ should hold the {description} record byte for byte, as it "
            f"was received (so it can be inspected and replayed); it is not there. Values found: "
            f"{[m.value()[:60] for m in letters]}"
        )
        headers = {k: (v or b"").decode() for k, v in (msg.headers() or [])}
        assert headers.get("error.reason") == reason, (
            f"Lab 03, part E: the dead letter for {description} should carry the header "
            f"error.reason={reason!r}, its headers are {headers}."
        )
        assert headers.get("error.message"), (
            f"Lab 03, part E: the dead letter for {description} should carry a non-empty "
            f"error.message header saying what is wrong; its headers are {headers}."
        )
