"""Graded test suite for Lab 02 — used by `make lab-2` and instructors' grading.

Every test has its own Kafka topics, ClickHouse database, PostgreSQL table, S3 prefix and
checkpoint folder (fixture `cfg`), removed afterwards. Streaming tests run with the `availableNow`
trigger: they process what the test produced, then stop. Times in the hand-made messages are
around T0 = 2024-03-01 12:00:00 UTC; the window is 1 minute and the watermark 2 minutes. Tests
with sinks run under a driver memory budget (conftest's `driver_result_budget`): a job that brings
a micro-batch's rows to the driver fails, as it would on a cluster with real traffic.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from chispa.dataframe_comparer import DataFramesNotEqualError
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from harness.grading.suite_helpers import state_at
from harness.grading.testkit import read_topic
from harness.runtime import validity
from harness.runtime.config import ROOT
from harness.runtime.data import load_snapshots, snapshot_rows
from harness.runtime.schema import ROW_FIELD_NAMES, ROW_FIELDS, spark_row_schema
from harness.runtime.services import clickhouse_client, kafka_config, pg_connect
from harness.runtime.waits import wait_quietly

T0 = 1709294400  # 2024-03-01 12:00:00 UTC, the start of a minute
MINUTE = 60
STREAM_TIMEOUT_S = 240


# ------------------------------------------------------------------ hand-made data
def state(icao24: str, country: str, t: int, **fields: Any) -> dict[str, Any]:
    """A flat row (harness.runtime.schema) at unix time `t`, with plain values unless overridden."""
    plain = {
        "callsign": f"T{icao24[:5].upper()}  ",
        "origin_country": country,
        "longitude": 2.35,
        "latitude": 48.85,
        "baro_altitude": 3000.0,
        "velocity": 200.0,
        "geo_altitude": None,
    }
    return state_at(t, icao24, **{**plain, **fields})


def encode(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


def good(row: dict[str, Any]) -> tuple[str, str]:
    """A (key, value) message as `harness.runtime.replay --mode state` sends it."""
    return row["icao24"], encode(row)


KAFKA_SCHEMA = T.StructType(
    [
        T.StructField("key", T.BinaryType()),
        T.StructField("value", T.BinaryType()),
        T.StructField("topic", T.StringType()),
        T.StructField("partition", T.IntegerType()),
        T.StructField("offset", T.LongType()),
        T.StructField("timestamp", T.TimestampType()),
        T.StructField("timestampType", T.IntegerType()),
    ]
)


def _bytes(text: str | bytes | None) -> bytes | None:
    return text.encode() if isinstance(text, str) else text


def kafka_rows(
    spark, messages: list[tuple[str | None, str | bytes | None]], topic: str = "raw_flights"
) -> DataFrame:
    """A static DataFrame shaped like Spark's Kafka source: partition 0, offsets 0, 1, 2, …"""
    stamp = datetime.fromtimestamp(T0)
    data = [
        (_bytes(k), _bytes(v), topic, 0, offset, stamp, 0) for offset, (k, v) in enumerate(messages)
    ]
    return spark.createDataFrame(data, KAFKA_SCHEMA)


def produce(topic: str, messages: list[tuple[str | None, str | bytes | None]]) -> None:
    """Produce messages and wait until the broker has every one of them."""
    from confluent_kafka import Producer

    failures: list[str] = []
    producer = Producer(kafka_config(acks="all"))
    for key, value in messages:
        producer.produce(
            topic,
            key=_bytes(key),
            value=_bytes(value),
            on_delivery=lambda err, _msg: failures.append(str(err)) if err else None,
        )
    left = producer.flush(30)
    assert left == 0 and not failures, f"test set-up: producing to {topic} failed: {failures}"


def drain(topic: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every message in `topic` (all partitions, from the beginning); none when it does not exist."""
    return [
        {
            "key": msg.key().decode() if msg.key() is not None else None,
            "value": msg.value().decode() if msg.value() is not None else None,
            "partition": msg.partition(),
            "offset": msg.offset(),
        }
        for msg in read_topic(topic, timeout, missing_ok=True)
    ]


def ch_rows(cfg) -> list[dict[str, Any]]:
    """Every row of the test's ClickHouse table, times as unix seconds."""
    client = clickhouse_client()
    try:
        columns = ", ".join(
            f"toUnixTimestamp({n}) AS {n}"
            if n in ("fetch_time", "last_contact")
            else f"if(isNull({n}), NULL, toUnixTimestamp(assumeNotNull({n}))) AS {n}"
            if n == "time_position"
            else n
            for n in ROW_FIELD_NAMES
        )
        table = f"`{cfg.clickhouse_database}`.`{cfg.clickhouse_table}`"
        return list(
            client.query(
                f"SELECT {columns} FROM {table} ORDER BY icao24, fetch_time"
            ).named_results()
        )
    finally:
        client.close()


def pg_rows(cfg) -> list[dict[str, Any]]:
    """Every row of the test's PostgreSQL table, times as unix seconds."""
    from psycopg import sql
    from psycopg.rows import dict_row

    epoch = ("fetch_time", "time_position", "last_contact", "event_time")
    columns = sql.SQL(", ").join(
        sql.SQL("extract(epoch FROM {c})::bigint AS {c}").format(c=sql.Identifier(n))
        if n in epoch
        else sql.Identifier(n)
        for n in [*ROW_FIELD_NAMES, "event_time", "late"]
    )
    with pg_connect() as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY icao24, fetch_time").format(
                columns, sql.Identifier(cfg.pg_table)
            )
        )
        return cur.fetchall()


def ch_expected(row: dict[str, Any]) -> dict[str, Any]:
    """How a row reads back from ClickHouse (sensors is a non-null Array there)."""
    return {**row, "sensors": row["sensors"] or []}


def s3_windows(spark, cfg) -> list[tuple]:
    """(country, window start, aircraft, state vectors, avg velocity, max altitude) in S3."""
    try:
        df = spark.read.parquet(cfg.aggregates_path)
    except Exception as exc:  # AnalysisException: path does not exist
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return []
        raise
    return sorted(
        (
            r["origin_country"],
            r["start"],
            r["end"],
            int(r["aircraft_count"]),
            int(r["state_vectors"]),
            None if r["avg_velocity"] is None else round(float(r["avg_velocity"]), 6),
            r["max_altitude"],
        )
        for r in df.select(
            "origin_country",
            F.unix_seconds("window_start").alias("start"),
            F.unix_seconds("window_end").alias("end"),
            "aircraft_count",
            "state_vectors",
            "avg_velocity",
            "max_altitude",
        ).collect()
    )


def expected_windows(rows: list[dict[str, Any]], watermark_s: int) -> list[tuple]:
    """What the aggregates query emits (append mode) from on-time `rows` once the watermark is
    `watermark_s`: every 1-minute window that ended at or before it."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        event = row["time_position"] if row["time_position"] is not None else row["last_contact"]
        groups[(row["origin_country"], event - event % MINUTE)].append(row)
    out = []
    for (country, start), members in groups.items():
        if start + MINUTE > watermark_s:
            continue
        speeds = [r["velocity"] for r in members if r["velocity"] is not None]
        heights = [r["baro_altitude"] for r in members if r["baro_altitude"] is not None]
        out.append(
            (
                country,
                start,
                start + MINUTE,
                len({r["icao24"] for r in members}),
                len(members),
                round(sum(speeds) / len(speeds), 6) if speeds else None,
                max(heights) if heights else None,
            )
        )
    return sorted(out)


def is_valid(row: dict[str, Any]) -> bool:
    """harness.runtime.validity's row rules, written out in Python for the test's expectations."""
    icao = row["icao24"]
    lat, lon, tp = row["latitude"], row["longitude"], row["time_position"]
    return (
        isinstance(icao, str)
        and len(icao) == validity.ICAO24_LENGTH
        and set(icao) <= set(validity.ICAO24_ALPHABET)
        and None not in (lat, lon, tp)
        and validity.LATITUDE_MIN <= lat <= validity.LATITUDE_MAX
        and validity.LONGITUDE_MIN <= lon <= validity.LONGITUDE_MAX
        and (row["velocity"] is None or row["velocity"] >= validity.MIN_VELOCITY)
        and tp <= row["fetch_time"] + validity.FUTURE_TOLERANCE_S
    )


def is_late(row: dict[str, Any], watermark_s: int) -> bool:
    event = row["time_position"] if row["time_position"] is not None else row["last_contact"]
    return event - event % MINUTE + MINUTE <= watermark_s


def assert_frames(actual: DataFrame, expected: DataFrame, message: str) -> None:
    """chispa's comparison (any row order), failing with `message` above its side-by-side table."""
    try:
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    except DataFramesNotEqualError as exc:
        pytest.fail(f"{message}\n{exc}", pytrace=False)


def run_stream(mod, spark, cfg, **changes: Any) -> list[Any]:
    """run_available_now with this test's config (plus `changes`)."""
    return mod.run_available_now(spark, replace(cfg, **changes), timeout=STREAM_TIMEOUT_S)


def parse(mod, df: DataFrame) -> DataFrame:
    return mod.with_event_time(mod.parse_messages(df))


# ------------------------------------------------------------------ messages used by several tests
def bad_messages() -> list[tuple[str, str | None, str | None, str, str | None]]:
    """(label, key, value, expected reason, field the detail must name)."""
    no_icao = state("3c6444", "Germany", T0)
    del no_icao["icao24"]
    return [
        ("a tombstone (null value)", "3c6444", None, "empty message", None),
        ("a blank value", None, "   ", "empty message", None),
        ("truncated JSON", None, '{"icao24": "3c6444", "veloc', "malformed JSON", None),
        ("a JSON array", None, "[1, 2, 3]", "malformed JSON", None),
        ("NaN (not JSON)", None, '{"icao24": "3c6444", "velocity": NaN}', "malformed JSON", None),
        (
            "a whole snapshot",
            None,
            encode({"time": T0, "states": [["3c6444", "DLH1", "Germany"]]}),
            "snapshot message",
            None,
        ),
        ("no icao24", None, encode(no_icao), "missing field", "icao24"),
        (
            "last_contact null",
            "3c6445",
            encode(state("3c6445", "Germany", T0, last_contact=None)),
            "missing field",
            "last_contact",
        ),
        (
            "velocity as text",
            "3c6446",
            encode(state("3c6446", "Germany", T0, velocity="fast")),
            "wrong type",
            "velocity",
        ),
        (
            "on_ground as text",
            "3c6447",
            encode(state("3c6447", "Germany", T0, on_ground="false")),
            "wrong type",
            "on_ground",
        ),
        (
            "fetch_time with a fraction",
            "3c6448",
            encode(state("3c6448", "Germany", T0, fetch_time=T0 + 0.5)),
            "wrong type",
            "fetch_time",
        ),
        (
            "icao24 as a number",
            None,
            encode({**state("3c6449", "Germany", T0), "icao24": 123456}),
            "wrong type",
            "icao24",
        ),
        (
            "sensors not a list",
            "3c644a",
            encode(state("3c644a", "Germany", T0, sensors="x")),
            "wrong type",
            "sensors",
        ),
        (
            "icao24 not hex",
            "zz6444",
            encode(state("zz6444", "Germany", T0)),
            "invalid icao24",
            "icao24",
        ),
        # The rules of a valid state vector (harness.runtime.validity), as Lab 01 applies them.
        (
            "icao24 in upper case",
            "3C644B",
            encode(state("3C644B", "Germany", T0)),
            "invalid icao24",
            "icao24",
        ),
        (
            "icao24 of 5 digits",
            "3c644",
            encode(state("3c644", "Germany", T0)),
            "invalid icao24",
            "icao24",
        ),
        (
            "no latitude",
            "3c644c",
            encode(state("3c644c", "Germany", T0, latitude=None)),
            "null position",
            None,
        ),
        (
            "no time_position",
            "3c644d",
            encode(state("3c644d", "Germany", T0, time_position=None)),
            "null position",
            None,
        ),
        (
            "latitude 95",
            "3c644e",
            encode(state("3c644e", "Germany", T0, latitude=95.0)),
            "latitude/longitude out of range",
            "latitude",
        ),
        (
            "longitude 200.5",
            "3c644f",
            encode(state("3c644f", "Germany", T0, longitude=200.5)),
            "latitude/longitude out of range",
            "longitude",
        ),
        (
            "velocity -50",
            "3c6450",
            encode(state("3c6450", "Germany", T0, velocity=-50.0)),
            "negative velocity",
            "velocity",
        ),
        (
            "a position 6 s in the future",
            "3c6451",
            encode(state("3c6451", "Germany", T0, time_position=T0 + 6)),
            "time_position after fetch_time",
            "time_position",
        ),
        (
            "a position an hour in the future",
            "3c6452",
            encode(state("3c6452", "Germany", T0, time_position=T0 + 3600, last_contact=T0)),
            "time_position after fetch_time",
            "time_position",
        ),
    ]


def on_the_bounds() -> list[dict[str, Any]]:
    """Valid state vectors right on the bounds of harness.runtime.validity's rules."""
    return [
        state("b0a001", "Norway", T0, latitude=90.0, longitude=-180.0),
        state("b0a002", "Chile", T0, latitude=-90.0, longitude=180.0),
        state("b0a003", "France", T0, velocity=0.0),
        state("b0a004", "France", T0, time_position=T0 + 5),  # within the clock tolerance
        state("b0a005", "France", T0, velocity=None, callsign=None, squawk=None),
    ]


# ================================================================== part A
@pytest.mark.points(2)
def test_partA_parses_state_vectors_with_the_schema(mod, spark) -> None:
    """Real state vectors (as `replay --mode state` sends them) parse to typed row fields."""
    rows = [r for r in snapshot_rows(load_snapshots()[0]) if is_valid(r)]
    picked = rows[:3]
    picked += [r for r in rows if r["time_position"] != r["last_contact"]][:1]
    picked += [r for r in rows if r["on_ground"]][:1]
    # A hand-made one: a float field sent as an integer, `category` left out (it is optional).
    floats = [name for name, kind, _ in ROW_FIELDS if kind == "float"]
    picked = [{**r, **{n: float(r[n]) for n in floats if r[n] is not None}} for r in picked]
    extra = state("4b1806", "Switzerland", T0, velocity=230, sensors=[1, 2])
    del extra["category"]
    bounds = on_the_bounds()
    parsed = mod.parse_messages(
        kafka_rows(spark, [good(r) for r in picked] + [good(extra)] + [good(r) for r in bounds])
    )

    assert parsed.columns == mod.PARSED_COLUMNS, (
        f"Lab 02, part A: parse_messages() should return the columns PARSED_COLUMNS in order.\n"
        f"expected: {mod.PARSED_COLUMNS}\nactual:   {parsed.columns}"
    )
    verdicts = [(r["source_offset"], r["reason"], r["detail"]) for r in parsed.collect()]
    wrong = [v for v in verdicts if v[1] is not None]
    assert not wrong, (
        f"Lab 02, part A: valid state vectors were rejected (offset, reason, detail): {wrong}. "
        "Hint: integers are fine for float fields, nullable fields may be missing or null, and "
        "the bounds of harness.runtime.validity's rules are valid (latitude 90, velocity 0, a "
        "time_position up to FUTURE_TOLERANCE_S after fetch_time)."
    )
    expected_rows = [*picked, {**extra, "velocity": 230.0, "category": None}, *bounds]
    expected = spark.createDataFrame(expected_rows, spark_row_schema())
    assert_frames(
        parsed.select(*ROW_FIELD_NAMES),
        expected,
        "Lab 02, part A: the parsed row fields differ from the messages' values (left: "
        "yours, right: expected). Hint: from_json with harness.runtime.schema.spark_row_schema().",
    )


@pytest.mark.points(3)
def test_partA_rejects_bad_messages_with_a_reason(mod, spark) -> None:
    """Malformed and schema-violating messages get the right reason, a detail, and null fields."""
    cases = bad_messages()
    ok = state("3c6450", "Germany", T0)
    messages = [(key, value) for _label, key, value, _r, _f in cases] + [good(ok)]
    parsed = mod.parse_messages(kafka_rows(spark, messages)).collect()
    by_offset = {r["source_offset"]: r for r in parsed}
    assert len(parsed) == len(messages), (
        f"Lab 02, part A: {len(messages)} messages in, {len(parsed)} rows out of parse_messages(). "
        "Every message must come out exactly once, parsed or with a reason."
    )
    problems = []
    for offset, (label, _key, _value, reason, field) in enumerate(cases):
        row = by_offset[offset]
        if row["reason"] != reason:
            problems.append(f"{label}: reason {row['reason']!r}, expected {reason!r}")
        elif field is not None and field not in (row["detail"] or ""):
            problems.append(f"{label}: detail {row['detail']!r} should name the field {field!r}")
        if row["reason"] is not None and any(row[n] is not None for n in ROW_FIELD_NAMES):
            problems.append(f"{label}: a rejected message should have all row fields null")
    last = by_offset[len(cases)]
    if last["reason"] is not None or last["icao24"] != ok["icao24"]:
        problems.append(f"a valid state vector came out as reason={last['reason']!r}")
    assert not problems, (
        "Lab 02, part A: parse_messages() judged these messages wrongly:\n  "
        + "\n  ".join(problems)
        + "\nHint: check in the README's order: empty, malformed JSON, snapshot, then each field "
        "(missing / wrong type) in schema order, then the icao24 format."
    )


@pytest.mark.points(1)
def test_partA_dead_letters_keep_the_raw_value_and_reason(mod, spark) -> None:
    """dead_letter_messages(): key = topic/partition/offset; value = reason, detail, raw value."""
    cases = bad_messages()[:4] + bad_messages()[8:9]
    df = kafka_rows(spark, [(k, v) for _l, k, v, _r, _f in cases], topic="raw_flights")
    parsed = mod.parse_messages(df)
    details = {r["source_offset"]: r["detail"] for r in parsed.collect()}
    records = mod.dead_letter_messages(parsed.filter("reason IS NOT NULL"), 42)
    assert records.columns == ["key", "value"], (
        f"Lab 02, part A: dead_letter_messages() should return columns ['key', 'value'] (what "
        f"Spark's Kafka sink writes), got {records.columns}"
    )
    got = {r["key"]: r["value"] for r in records.collect()}
    problems = []
    for offset, (label, key, value, reason, _field) in enumerate(cases):
        position = f"raw_flights/0/{offset}"
        if position not in got:
            problems.append(f"{label}: no record with key {position!r} (keys: {sorted(got)})")
            continue
        doc = json.loads(got[position])
        want = {
            "reason": reason,
            "value": value,
            "key": key,
            "source_topic": "raw_flights",
            "source_partition": 0,
            "source_offset": offset,
            "batch_id": 42,
            "detail": details[offset],
        }
        for name, expected in want.items():
            if name not in doc or doc[name] != expected:
                problems.append(
                    f"{label}: {name} = {doc.get(name, '<missing>')!r}, expected {expected!r}"
                )
        stamp = doc.get("kafka_timestamp")
        if not isinstance(stamp, str) or not stamp.startswith("2024-03-01T"):
            problems.append(
                f"{label}: kafka_timestamp = {stamp!r}, expected the message's Kafka timestamp "
                "as an ISO-8601 text (2024-03-01T...)"
            )
    assert not problems, (
        "Lab 02, part A: dead-letter records are missing information:\n  "
        + "\n  ".join(problems)
        + "\nHint: to_json(struct(...), {'ignoreNullFields': 'false'}) keeps null fields."
    )


@pytest.mark.points(1)
def test_partA_reads_the_topic_as_a_stream(mod, spark, cfg, tmp_path) -> None:
    """read_raw_stream() + parse_messages() stream every message once, in bounded micro-batches."""
    rows = [state(f"a0000{i}", "France", T0 + 10 * i) for i in range(6)]
    bad = [("x", "{oops"), ("y", None), ("z", encode({"time": T0, "states": []}))]
    produce(cfg.topic, [good(r) for r in rows] + bad)
    limited = replace(cfg, max_offsets_per_trigger=4)
    raw = mod.read_raw_stream(spark, limited)
    assert raw.isStreaming, "Lab 02, part A: read_raw_stream() must return a streaming DataFrame."
    batches: list[list[tuple]] = []

    def collect(batch: DataFrame, _batch_id: int) -> None:
        batches.append(
            [
                tuple(r)
                for r in batch.select("source_partition", "source_offset", "reason").collect()
            ]
        )

    query = (
        mod.parse_messages(raw)
        .writeStream.queryName(cfg.query_name("partA"))
        .option("checkpointLocation", str(tmp_path / "partA"))
        .foreachBatch(collect)
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(STREAM_TIMEOUT_S), "Lab 02, part A: the stream did not finish."
    seen = [item for batch in batches for item in batch]
    positions = {(p, o) for p, o, _ in seen}
    assert len(seen) == len(positions) == 9, (
        f"Lab 02, part A: 9 messages were produced, the stream delivered {len(seen)} rows "
        f"({len(positions)} distinct positions). Hint: subscribe to cfg.topic from "
        "cfg.starting_offsets."
    )
    reasons = sorted(r for _p, _o, r in seen if r is not None)
    assert reasons == ["empty message", "malformed JSON", "snapshot message"], (
        f"Lab 02, part A: expected 6 parsed + 3 rejected messages, got reasons {reasons}"
    )
    biggest = max(len(b) for b in batches)
    assert biggest <= 4, (
        f"Lab 02, part A: with max_offsets_per_trigger=4 a micro-batch held {biggest} messages. "
        "Hint: the Kafka source option maxOffsetsPerTrigger."
    )


# ================================================================== part B
def timed_rows(spark, rows: list[tuple]) -> DataFrame:
    """(icao24, origin_country, unix time, velocity, baro_altitude) -> rows with event_time."""
    df = spark.createDataFrame(
        rows, "icao24 string, origin_country string, t long, velocity double, baro_altitude double"
    )
    return df.withColumn("event_time", F.timestamp_seconds("t")).drop("t")


@pytest.mark.points(1)
def test_partB_event_time_falls_back_to_last_contact(mod, spark) -> None:
    """with_event_time(): time_position when known, else last_contact, as a timestamp."""
    df = spark.createDataFrame(
        [("a", T0 + 5, T0 + 7), ("b", None, T0 + 20)],
        "icao24 string, time_position long, last_contact long",
    )
    out = mod.with_event_time(df)
    assert dict(out.dtypes).get("event_time") == "timestamp", (
        f"Lab 02, part B: with_event_time() should add a timestamp column event_time, got "
        f"{out.dtypes}"
    )
    got = {
        r["icao24"]: r["t"]
        for r in out.select("icao24", F.unix_seconds("event_time").alias("t")).collect()
    }
    assert got == {"a": T0 + 5, "b": T0 + 20}, (
        f"Lab 02, part B: event_time (as unix seconds) is {got}, expected "
        f"{ {'a': T0 + 5, 'b': T0 + 20} }. Hint: coalesce(time_position, last_contact)."
    )


@pytest.mark.points(2)
def test_partB_window_aggregates_per_country_and_minute(mod, spark) -> None:
    """window_aggregates(): exact distinct aircraft, state vectors, avg velocity, max altitude."""
    rows = timed_rows(
        spark,
        [
            ("aaa001", "France", T0 + 0, 200.0, 1000.0),
            ("aaa001", "France", T0 + 30, 210.0, 1100.0),
            ("bbb002", "France", T0 + 59, None, None),
            ("bbb002", "France", T0 + 60, 100.0, 900.0),  # 12:01:00 opens the next window
            ("ccc003", "Germany", T0 + 10, None, None),
            ("ccc003", "Germany", T0 + 150, 250.0, 5000.0),
            ("ddd004", "Germany", T0 + 170, 150.0, 6000.0),
        ],
    )
    out = mod.window_aggregates(rows, "1 minute", "2 minutes")
    assert out.columns == mod.AGGREGATE_COLUMNS, (
        f"Lab 02, part B: window_aggregates() columns should be AGGREGATE_COLUMNS "
        f"{mod.AGGREGATE_COLUMNS}, got {out.columns}"
    )
    actual = out.select(
        F.unix_seconds("window_start").alias("start"),
        F.unix_seconds("window_end").alias("end"),
        "origin_country",
        F.col("aircraft_count").cast("long").alias("aircraft_count"),
        F.col("state_vectors").cast("long").alias("state_vectors"),
        F.col("avg_velocity").cast("double").alias("avg_velocity"),
        F.col("max_altitude").cast("double").alias("max_altitude"),
    )
    expected = spark.createDataFrame(
        [
            (T0, T0 + 60, "France", 2, 3, 205.0, 1100.0),
            (T0 + 60, T0 + 120, "France", 1, 1, 100.0, 900.0),
            (T0, T0 + 60, "Germany", 1, 1, None, None),
            (T0 + 120, T0 + 180, "Germany", 2, 2, 200.0, 6000.0),
        ],
        actual.schema,
    )
    assert_frames(
        actual,
        expected,
        "Lab 02, part B: window aggregates differ (left: yours, right: expected; times in unix "
        "seconds). Hint: group by window(event_time, '1 minute') and origin_country; the "
        "aircraft count is distinct icao24 (size(collect_set(...))), averages skip nulls.",
    )


@pytest.mark.points(2)
def test_partB_flags_rows_whose_window_closed(mod, spark) -> None:
    """flag_late(): late when the row's window ended at or before the watermark."""
    rows = timed_rows(
        spark,
        [
            ("early", "France", T0 + 90, 1.0, 1.0),  # 12:01:30, window ends 12:02
            ("edge", "France", T0 + 179, 1.0, 1.0),  # 12:02:59, window ends 12:03 = watermark
            ("open", "France", T0 + 180, 1.0, 1.0),  # 12:03:00, window ends 12:04
            ("behind", "France", T0 + 175, 1.0, 1.0),  # 12:02:55 < watermark, window ends 12:03
            ("unknown", "France", None, None, None),  # no event time (a rejected message)
        ],
    )
    watermark_ms = (T0 + 180) * 1000

    def flags(window: str, watermark: int) -> dict[str, bool]:
        out = mod.flag_late(rows, watermark, window)
        assert "late" in out.columns and set(rows.columns) <= set(out.columns), (
            f"Lab 02, part B: flag_late() should keep the columns and add `late`, got {out.columns}"
        )
        return {r["icao24"]: r["late"] for r in out.collect()}

    cases = [
        ("1 minute", watermark_ms, {"early": True, "edge": True, "open": False, "behind": True}),
        ("2 minutes", watermark_ms, {"early": True, "edge": False, "open": False, "behind": False}),
        ("1 minute", 0, {"early": False, "edge": False, "open": False, "behind": False}),
    ]
    for window, watermark, want in cases:
        want = {**want, "unknown": False}
        got = flags(window, watermark)
        assert got == want, (
            f"Lab 02, part B: flag_late(window={window!r}, watermark_ms={watermark}) gave {got}, "
            f"expected {want}. Hint: a row is late when its window's end <= watermark — Spark "
            "drops whole windows, not single events; a row without event_time is kept, not late "
            "(F.window() in a select silently drops rows with a null time)."
        )


@pytest.mark.points(2)
def test_partB_streaming_windows_drop_late_events(mod, spark, cfg, tmp_path) -> None:
    """A streamed window is emitted once, when the watermark passes it; late events are dropped."""
    first = [state("aaa001", "France", T0 + s, velocity=200.0 + s) for s in range(0, 600, 30)]
    late = state("bbb002", "France", T0 + 65, velocity=999.0)  # its window closed at 12:02
    second = [state("aaa001", "France", T0 + s) for s in range(600, 800, 30)]
    emitted: list[tuple] = []
    dropped: list[int] = []

    def collect(batch: DataFrame, _batch_id: int) -> None:
        emitted.extend(
            (r["origin_country"], r["s"], int(r["aircraft_count"]), int(r["state_vectors"]))
            for r in batch.select("*", F.unix_seconds("window_start").alias("s")).collect()
        )

    def run() -> None:
        kept = mod.parse_messages(mod.read_raw_stream(spark, cfg)).filter("reason IS NULL")
        query = (
            mod.window_aggregates(mod.with_event_time(kept), "1 minute", "2 minutes")
            .writeStream.outputMode("append")
            .queryName(cfg.query_name("partB"))
            .option("checkpointLocation", str(tmp_path / "partB"))
            .foreachBatch(collect)
            .trigger(availableNow=True)
            .start()
        )
        assert query.awaitTermination(STREAM_TIMEOUT_S), "Lab 02, part B: the stream did not end"
        for progress in query.recentProgress:
            dropped.extend(
                op.get("numRowsDroppedByWatermark", 0) for op in progress["stateOperators"]
            )

    produce(cfg.topic, [good(r) for r in first])
    run()
    after_first = sorted(emitted)
    want_first = [("France", T0 + m * MINUTE, 1, 2) for m in range(7)]  # watermark 12:07:30
    assert after_first == want_first, (
        f"Lab 02, part B: after the first run the stream emitted {after_first}, expected the "
        f"windows 12:00–12:06 (ended before the watermark 12:07:30): {want_first}. Hint: append "
        "output mode with withWatermark('event_time', watermark) before the groupBy."
    )
    produce(cfg.topic, [good(late)] + [good(r) for r in second])
    run()
    want_all = want_first + [("France", T0 + m * MINUTE, 1, 2) for m in range(7, 11)]
    assert sorted(emitted) == want_all, (
        f"Lab 02, part B: after the second run the stream emitted {sorted(emitted)}, expected "
        f"{want_all}: the late event (12:01:05, window closed) must not change or re-emit a "
        "window, and 12:07–12:10 close when the watermark reaches 12:11."
    )
    assert sum(dropped) >= 1, (
        "Lab 02, part B: Spark reported no row dropped by the watermark "
        f"(numRowsDroppedByWatermark: {dropped}). Hint: the watermark must be on event_time."
    )


# ================================================================== part C
def unit_batch(cfg) -> tuple[list[tuple[str | None, str | None]], list[dict], list[dict]]:
    """Messages of one hand-made micro-batch: (messages, on-time rows, late rows)."""
    on_time = [
        state("aaa001", "France", T0 + 190, velocity=210.5, sensors=[3, 4]),
        state("aaa001", "France", T0 + 200),
        state("bbb002", "Germany", T0 + 195, last_contact=T0 + 197, vertical_rate=None),
        state("ccc003", "Spain", T0 + 230, on_ground=True, baro_altitude=None, category=None),
        state("ddd004", "Italy", T0 + 185, squawk=None, callsign=None),
    ]
    late = [state("eee005", "France", T0 + 70)]  # window ended 12:02, watermark 12:03
    messages = [good(r) for r in on_time[:2]] + [("x", "{nope")] + [good(r) for r in on_time[2:]]
    messages += [good(late[0]), ("y", encode(state("fff006", "France", T0 + 200, spi="no")))]
    return messages, on_time, late


# The watermark (12:03) unit_batch's rows are processed at: eee005's window has closed.
UNIT_WATERMARK_MS = (T0 + 180) * 1000


def parsed_unit_batch(mod, spark, cfg) -> tuple[list, list[dict], list[dict], Any]:
    """The sinks made, and unit_batch() as parsed Kafka rows: (messages, on_time, late, parsed)."""
    mod.ensure_sinks(cfg)
    messages, on_time, late = unit_batch(cfg)
    return messages, on_time, late, parse(mod, kafka_rows(spark, messages, topic=cfg.topic))


def check_sinks(cfg, on_time: list[dict], late: list[dict], part: str) -> None:
    """ClickHouse and PostgreSQL hold exactly these rows (PostgreSQL with the late flags)."""
    rows = on_time + late
    want_ch = sorted((ch_expected(r) for r in rows), key=lambda r: (r["icao24"], r["fetch_time"]))
    got_ch = ch_rows(cfg)
    assert got_ch == want_ch, (
        f"Lab 02, part {part}: ClickHouse {cfg.clickhouse_database}.{cfg.clickhouse_table} holds "
        f"{len(got_ch)} rows, expected {len(want_ch)}.\nfirst differences: "
        f"{[(g, w) for g, w in zip(got_ch, want_ch, strict=False) if g != w][:2]}\n"
        f"Hint: insert the 19 row fields of every parsed row, once (insert_deduplication_token)."
    )
    late_keys = {(r["icao24"], r["fetch_time"]) for r in late}
    want_pg = sorted(
        (
            {
                **r,
                "event_time": r["time_position"]
                if r["time_position"] is not None
                else r["last_contact"],
                "late": (r["icao24"], r["fetch_time"]) in late_keys,
            }
            for r in rows
        ),
        key=lambda r: (r["icao24"], r["fetch_time"]),
    )
    got_pg = pg_rows(cfg)
    assert got_pg == want_pg, (
        f"Lab 02, part {part}: PostgreSQL {cfg.pg_table} holds {len(got_pg)} rows, expected "
        f"{len(want_pg)}.\nfirst differences: "
        f"{[(g, w) for g, w in zip(got_pg, want_pg, strict=False) if g != w][:2]}\n"
        "Hint: upsert every parsed row with its event_time and late flag, ON CONFLICT "
        "(icao24, fetch_time)."
    )


@pytest.mark.points(3)
def test_partC_batch_lands_in_every_sink(mod, spark, cfg) -> None:
    """process_rows_batch() puts exactly the batch's rows in every sink and reports the counts."""
    messages, on_time, late, parsed = parsed_unit_batch(mod, spark, cfg)
    report = mod.process_rows_batch(parsed, 7, cfg, UNIT_WATERMARK_MS)

    want = (7, 8, 6, 2, 1, UNIT_WATERMARK_MS)
    got = (
        report.batch_id,
        report.messages,
        report.parsed,
        report.dead_lettered,
        report.late,
        report.watermark_ms,
    )
    assert got == want, (
        f"Lab 02, part C: BatchReport (batch_id, messages, parsed, dead_lettered, late, "
        f"watermark_ms) is {got}, expected {want}."
    )
    check_sinks(cfg, on_time, late, "C")

    processed = drain(cfg.processed_topic)
    docs = sorted((json.loads(m["value"]) for m in processed), key=lambda d: d["source_offset"])
    assert len(docs) == 6 and all(
        m["key"] == json.loads(m["value"])["icao24"] for m in processed
    ), (
        f"Lab 02, part C: {cfg.processed_topic} should hold 6 messages keyed by icao24, got "
        f"{[(m['key'], m['value'][:60]) for m in processed]}"
    )
    by_icao = {(d["icao24"], d["fetch_time"]): d for d in docs}
    problems = []
    for row in on_time + late:
        doc = by_icao.get((row["icao24"], row["fetch_time"]))
        if doc is None:
            problems.append(f"no message for {row['icao24']} at {row['fetch_time']}")
            continue
        fields = {n: doc.get(n) for n in ROW_FIELD_NAMES}
        if fields != row:
            problems.append(f"{row['icao24']}: row fields {fields} != {row}")
        if doc.get("late") != (row in late):
            problems.append(f"{row['icao24']}: late = {doc.get('late')!r}")
        event = row["time_position"] if row["time_position"] is not None else row["last_contact"]
        if doc.get("event_time") != event:
            problems.append(
                f"{row['icao24']}: event_time = {doc.get('event_time')!r}, expected {event}"
            )
        if not {"source_topic", "source_partition", "source_offset"} <= doc.keys():
            problems.append(f"{row['icao24']}: no source_topic/source_partition/source_offset")
    assert not problems, "Lab 02, part C: processed_flights messages:\n  " + "\n  ".join(problems)

    dead = drain(cfg.dlq_topic)
    got_dead = sorted(
        (json.loads(m["value"])["reason"], json.loads(m["value"])["value"]) for m in dead
    )
    want_dead = sorted([("malformed JSON", "{nope"), ("wrong type", messages[-1][1])])
    assert got_dead == want_dead, (
        f"Lab 02, part C: the dead-letter topic holds (reason, value) {got_dead}, expected "
        f"{want_dead}. Hint: write dead_letter_messages(...) to cfg.dlq_topic."
    )
    # Each dead letter points back at its message: key, source position, batch id, detail.
    offsets = {value: offset for offset, (_key, value) in enumerate(messages)}
    for message in dead:
        doc = json.loads(message["value"])
        offset = offsets[doc["value"]]
        want = (f"{cfg.topic}/0/{offset}", cfg.topic, 0, offset, 7)
        got = (
            message["key"],
            doc.get("source_topic"),
            doc.get("source_partition"),
            doc.get("source_offset"),
            doc.get("batch_id"),
        )
        assert got == want, (
            f"Lab 02, part C: the dead letter of {doc['value']!r} has (key, source_topic, "
            f"source_partition, source_offset, batch_id) {got}, expected {want}."
        )
    spi = next(
        json.loads(m["value"])
        for m in dead
        if json.loads(m["value"])["reason"] != ("malformed JSON")
    )
    assert "spi" in (spi.get("detail") or ""), (
        f"Lab 02, part C: the dead letter for a text `spi` has detail {spi.get('detail')!r}; it "
        "should name the field (spi)."
    )


def pg_versions(cfg) -> dict[tuple[str, int], str]:
    """(icao24, fetch_time) -> the row version's xmin: it changes whenever a row is rewritten."""
    from psycopg import sql

    with pg_connect() as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT icao24, extract(epoch FROM fetch_time)::bigint, xmin::text FROM {}"
            ).format(sql.Identifier(cfg.pg_table))
        ).fetchall()
    return {(icao, t): xmin for icao, t, xmin in rows}


@pytest.mark.points(2)
def test_partC_replaying_a_batch_adds_no_duplicates(mod, spark, cfg) -> None:
    """A batch processed twice leaves ClickHouse and PostgreSQL as after once; a new batch lands."""
    _messages, on_time, late, parsed = parsed_unit_batch(mod, spark, cfg)
    first = mod.process_rows_batch(parsed, 3, cfg, UNIT_WATERMARK_MS)
    versions = pg_versions(cfg)
    again = mod.process_rows_batch(parsed, 3, cfg, UNIT_WATERMARK_MS)
    assert first == again, (
        f"Lab 02, part C: a replayed batch reported {again}, the first run {first}"
    )
    check_sinks(cfg, on_time, late, "C (after replaying batch 3)")
    rewritten = sorted(k for k, v in pg_versions(cfg).items() if versions.get(k) != v)
    assert not rewritten, (
        f"Lab 02, part C: replaying batch 3 rewrote the unchanged PostgreSQL rows {rewritten} "
        "(new row versions: each is a change event for Lab 05's Debezium). Hint: ON CONFLICT "
        "... DO UPDATE ... WHERE (the stored values) IS DISTINCT FROM (EXCLUDED values)."
    )

    processed = [json.loads(m["value"]) for m in drain(cfg.processed_topic)]
    positions = {(d["source_topic"], d["source_partition"], d["source_offset"]) for d in processed}
    assert len(positions) == 6 and len(processed) <= 12, (
        f"Lab 02, part C: after a replay, {cfg.processed_topic} should hold the 6 rows, each "
        f"position at most twice (at-least-once); got {len(processed)} messages at "
        f"{len(positions)} distinct source positions."
    )

    # New positions (offsets 100…) are new data, even with equal contents, and even under a batch
    # id already seen: a new checkpoint starts the ids at 0 again, Kafka positions never repeat.
    changed = {**on_time[1], "velocity": 111.5, "squawk": "7700"}
    newer = [state("abc007", "Poland", T0 + 240), on_time[0], changed]
    df = kafka_rows(spark, [good(r) for r in newer], topic=cfg.topic).withColumn(
        "offset", F.col("offset") + 100
    )
    mod.process_rows_batch(parse(mod, df), 3, cfg, UNIT_WATERMARK_MS)
    count = len(ch_rows(cfg))
    assert count == 9, (
        f"Lab 02, part C: after a batch of 3 new messages ClickHouse holds {count} rows, "
        "expected 9 (6 + 3). Hint: the deduplication token must differ between batches of "
        "different data and not depend on the batch id — build it from the batch's source "
        "positions (source_range)."
    )
    stored = {(r["icao24"], r["fetch_time"]): r for r in pg_rows(cfg)}
    key = (changed["icao24"], changed["fetch_time"])
    got = (stored[key]["velocity"], stored[key]["squawk"])
    assert got == (111.5, "7700"), (
        f"Lab 02, part C: a newer message for {key} changed velocity and squawk to "
        f"(111.5, '7700'); PostgreSQL holds {got}. Hint: the upsert must update rows that changed."
    )
    after = pg_versions(cfg)
    rewritten = sorted(
        k for k, v in after.items() if k in versions and k != key and versions[k] != v
    )
    assert not rewritten and len(after) == 7, (
        f"Lab 02, part C: the new batch should add 1 row, update 1 and leave the others alone; "
        f"PostgreSQL holds {len(after)} rows (expected 7) and rewrote {rewritten}."
    )


@pytest.mark.points(2)
def test_partC_duplicates_are_dead_lettered_like_lab01(mod, spark, cfg) -> None:
    """A state vector repeating an earlier one's (icao24, time_position) — stored by an earlier
    batch, or earlier in the same batch — is dead-lettered as a duplicate; the earliest stays."""
    mod.ensure_sinks(cfg)
    first = state("abc001", "France", T0 + 200)
    again = {**first, "fetch_time": T0 + 210, "last_contact": T0 + 211}  # batch 1 stored it
    other = state("abc002", "Spain", T0 + 200)
    other_again = {**other, "fetch_time": T0 + 210}  # the same batch has it already
    third = state("abc003", "Italy", T0 + 205)
    watermark_ms = (T0 + 180) * 1000

    def batch(rows: list[dict[str, Any]], offset: int) -> DataFrame:
        df = kafka_rows(spark, [good(r) for r in rows], topic=cfg.topic)
        return parse(mod, df.withColumn("offset", F.col("offset") + offset))

    one = mod.process_rows_batch(batch([first], 0), 0, cfg, watermark_ms)
    second = batch([other_again, again, other, third], 10)  # out of order within the batch
    two = mod.process_rows_batch(second, 1, cfg, watermark_ms)
    replay = mod.process_rows_batch(second, 1, cfg, watermark_ms)
    got = [(r.messages, r.parsed, r.dead_lettered) for r in (one, two, replay)]
    assert got == [(1, 1, 0), (4, 2, 2), (4, 2, 2)], (
        f"Lab 02, part C: (messages, parsed, dead-lettered) of the batches [first, second, second "
        f"replayed] are {got}, expected [(1, 1, 0), (4, 2, 2), (4, 2, 2)]. Hint: a row is a "
        "duplicate when PostgreSQL already holds its (icao24, time_position) with an EARLIER "
        "fetch_time (stored_positions), or an earlier row of the batch has them (a window)."
    )
    check_sinks(cfg, [first, other, third], [], "C (duplicates)")
    dead = sorted(
        (json.loads(m["value"])["reason"], json.loads(m["value"])["source_offset"])
        for m in drain(cfg.dlq_topic)
    )
    want = sorted([(validity.DUPLICATE, 10), (validity.DUPLICATE, 11)] * 2)
    assert dead == want, (
        f"Lab 02, part C: the dead-letter topic holds (reason, source_offset) {dead}, expected "
        f"{want} (the two duplicates, each written again by the replay: at-least-once)."
    )


def count_rows(cfg) -> tuple[int, int]:
    """(ClickHouse rows, PostgreSQL rows) of the test's tables."""
    from psycopg import sql

    client = clickhouse_client()
    try:
        table = f"`{cfg.clickhouse_database}`.`{cfg.clickhouse_table}`"
        ch = int(client.command(f"SELECT count() FROM {table}"))
    finally:
        client.close()
    with pg_connect() as conn:
        pg = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(cfg.pg_table))
        ).fetchone()[0]
    return ch, pg


@pytest.mark.points(2)
def test_partC_batch_stays_on_the_executors(mod, spark, cfg) -> None:
    """A micro-batch larger than the driver may receive (spark.driver.maxResultSize) still lands
    in every sink: the rows are written from the executors, never collected to the driver."""
    mod.ensure_sinks(cfg)
    rows = [
        state(f"d{i:05x}", "France", T0 + 180 + i % 60, velocity=100.0 + i % 7) for i in range(4000)
    ]
    parsed = parse(mod, kafka_rows(spark, [good(r) for r in rows], topic=cfg.topic))
    try:
        report = mod.process_rows_batch(parsed, 0, cfg, (T0 + 180) * 1000)
    except Exception as exc:
        if "maxResultSize" not in str(exc):
            raise
        budget = spark.sparkContext._jsc.sc().conf().get("spark.driver.maxResultSize")
        pytest.fail(
            "Lab 02, part C: process_rows_batch() sent a micro-batch's rows to the driver "
            f"(the job's results passed spark.driver.maxResultSize={budget}). On a "
            "cluster the driver is one process: every sink must be written from the executors "
            "(Spark's Kafka sink, Parquet + s3() for ClickHouse, a COPY per partition for "
            "PostgreSQL). Only counts and Kafka positions may come back.\n"
            f"Spark said: {str(exc).splitlines()[0][:300]}",
            pytrace=False,
        )
    assert (report.messages, report.parsed, report.dead_lettered) == (4000, 4000, 0), (
        f"Lab 02, part C: the report of a batch of 4,000 state vectors is {report}"
    )
    stored = count_rows(cfg)
    assert stored == (4000, 4000), (
        f"Lab 02, part C: (ClickHouse, PostgreSQL) hold {stored} rows, expected 4,000 each"
    )
    processed = drain(cfg.processed_topic)
    assert len(processed) == 4000, (
        f"Lab 02, part C: {cfg.processed_topic} holds {len(processed)} messages, expected 4,000"
    )


@pytest.mark.points(2)
def test_partC_aggregates_are_written_once_per_batch_id(mod, spark, cfg) -> None:
    """write_aggregates(): Parquet under <path>/batch_id=N, replaced (not appended) on a replay."""
    mod.ensure_sinks(cfg)

    def frame(rows: list[tuple]) -> DataFrame:
        df = spark.createDataFrame(
            rows,
            "s long, origin_country string, aircraft_count long, state_vectors long, "
            "avg_velocity double, max_altitude double",
        )
        return df.select(
            F.timestamp_seconds("s").alias("window_start"),
            F.timestamp_seconds(F.col("s") + 60).alias("window_end"),
            *mod.AGGREGATE_COLUMNS[2:],
        )

    batch3 = [(T0, "France", 2, 5, 200.0, 3000.0), (T0, "Spain", 1, 1, None, None)]
    assert mod.write_aggregates(frame(batch3), 3, cfg.aggregates_path) == 2
    assert mod.write_aggregates(frame(batch3), 3, cfg.aggregates_path) == 2
    batch4 = [(T0 + 60, "France", 1, 2, 100.0, 2000.0)]
    mod.write_aggregates(frame(batch4), 4, cfg.aggregates_path)
    empty = mod.write_aggregates(frame([]), 5, cfg.aggregates_path)
    assert empty == 0, f"Lab 02, part C: write_aggregates() of an empty batch returned {empty}"

    def stored() -> list[tuple]:
        df = spark.read.parquet(cfg.aggregates_path)
        return sorted(
            (
                int(r["batch_id"]),
                r["origin_country"],
                r["s"],
                r["aircraft_count"],
                r["state_vectors"],
            )
            for r in df.select(
                "batch_id",
                "origin_country",
                F.unix_seconds("window_start").alias("s"),
                "aircraft_count",
                "state_vectors",
            ).collect()
        )

    want = [(3, "France", T0, 2, 5), (3, "Spain", T0, 1, 1), (4, "France", T0 + 60, 1, 2)]
    assert stored() == want, (
        f"Lab 02, part C: {cfg.aggregates_path} holds (batch_id, country, start, aircraft, "
        f"state vectors) {stored()}, expected {want}. Hint: mode('overwrite') on "
        "<path>/batch_id=<batch_id>."
    )
    mod.write_aggregates(frame(batch3[:1]), 3, cfg.aggregates_path)
    want = [(3, "France", T0, 2, 5), (4, "France", T0 + 60, 1, 2)]
    assert stored() == want, (
        f"Lab 02, part C: rewriting batch 3 with one window should replace that batch's files; "
        f"the path holds {stored()}, expected {want}."
    )


# ================================================================== part D
@pytest.mark.points(1)
def test_partD_trigger_options(mod) -> None:
    """trigger_options(): availableNow, processing-time intervals, and a clear error otherwise."""
    cases = {
        "availableNow": {"availableNow": True},
        "10 seconds": {"processingTime": "10 seconds"},
        "1 minute": {"processingTime": "1 minute"},
    }
    for text, want in cases.items():
        got = mod.trigger_options(text)
        assert got == want, f"Lab 02, part D: trigger_options({text!r}) = {got}, expected {want}"
    for bad in ("soon", "", "10 parsecs", "-5 seconds", "0 seconds"):
        with pytest.raises(ValueError):
            mod.trigger_options(bad)
            pytest.fail(f"Lab 02, part D: trigger_options({bad!r}) should raise ValueError")


def end_to_end_messages() -> tuple[list, list[dict], list, list[dict], list[dict]]:
    """Two rounds of messages: (round 1, its rows, round 2, its late rows, its on-time rows)."""
    first_rows = (
        [state("aaa001", "France", T0 + s, velocity=200.0 + s / 30) for s in range(0, 600, 30)]
        + [state("bbb002", "Germany", T0 + s, velocity=100.0) for s in range(0, 600, 60)]
        + [
            state("ccc003", "France", T0 + s, last_contact=T0 + s + 2, velocity=250.0)
            for s in range(0, 600, 120)
        ]
    )
    cases = bad_messages()
    first = [good(r) for r in first_rows] + [(k, v) for _l, k, v, _r, _f in cases[::2]]
    late_rows = [
        state("ddd004", "France", T0 + 65),  # window 12:01 closed (watermark 12:07:30)
        state("eee005", "Spain", T0 + 400),  # window 12:06 closed at 12:07
    ]
    on_time_rows = [state("fff006", "Italy", T0 + 435)]  # 12:07:15 is behind the watermark,
    # but its window (12:07–12:08) is still open: not late.
    on_time_rows += [state("aaa001", "France", T0 + s) for s in range(600, 800, 30)]
    second = [good(r) for r in late_rows + on_time_rows] + [
        (k, v) for _l, k, v, _r, _f in cases[1::2]
    ]
    return first, first_rows, second, late_rows, on_time_rows


@pytest.mark.points(3)
def test_partD_available_now_fills_every_sink_exactly(mod, spark, cfg) -> None:
    """Two availableNow runs fill every sink exactly; late rows are counted; two checkpoints."""
    first, first_rows, second, late_rows, on_time_rows = end_to_end_messages()
    produce(cfg.topic, first)
    reports = list(run_stream(mod, spark, cfg))
    produce(cfg.topic, second)
    reports += run_stream(mod, spark, cfg)

    in_total = len(first) + len(second)
    good_rows = first_rows + late_rows + on_time_rows
    counted = (
        sum(r.messages for r in reports),
        sum(r.parsed for r in reports),
        sum(r.dead_lettered for r in reports),
        sum(r.late for r in reports),
    )
    want = (in_total, len(good_rows), in_total - len(good_rows), len(late_rows))
    assert counted == want, (
        f"Lab 02, part D: the batch reports add up to (messages, parsed, dead-lettered, late) "
        f"{counted}, expected {want}."
    )
    check_sinks(cfg, first_rows + on_time_rows, late_rows, "D")

    processed = drain(cfg.processed_topic)
    assert len(processed) == len(good_rows), (
        f"Lab 02, part D: {cfg.processed_topic} holds {len(processed)} messages, expected "
        f"{len(good_rows)} (one per state vector, no repeats without a replay)."
    )
    dead = [json.loads(m["value"]) for m in drain(cfg.dlq_topic)]
    got_dead = sorted((d["reason"], d["value"] or "") for d in dead)
    want_dead = sorted((r, v or "") for _l, _k, v, r, _f in bad_messages())
    assert got_dead == want_dead, (
        f"Lab 02, part D: the dead-letter topic holds (reason, value) {got_dead}, expected "
        f"{want_dead}."
    )

    # Watermark after round 2: latest event 12:13:00 - 2 minutes = 12:11:00.
    want_windows = expected_windows(first_rows + on_time_rows, T0 + 11 * MINUTE)
    got_windows = s3_windows(spark, cfg)
    assert got_windows == want_windows, (
        f"Lab 02, part D: the window aggregates in {cfg.aggregates_path} differ.\n"
        f"expected (country, start, end, aircraft, state vectors, avg velocity, max altitude):\n"
        f"  {want_windows}\nactual:\n  {got_windows}\nHint: only windows that ended before the "
        "watermark are emitted (append mode), late rows are not in them."
    )

    folders = {q: Path(cfg.checkpoint_for(q)) for q in ("rows", "aggregates")}
    for query, folder in folders.items():
        assert (folder / "offsets").is_dir() and (folder / "commits").is_dir(), (
            f"Lab 02, part D: the {query} query's checkpoint {folder} has no offsets/, commits/. "
            "Hint: option('checkpointLocation', cfg.checkpoint_for(query)) on each query."
        )


def pending_batches(cfg) -> dict[str, list[int]]:
    """Per query: batches planned in offsets/ but never committed (what an interrupted stop leaves)."""
    out = {}
    for query in ("rows", "aggregates"):
        folder = Path(cfg.checkpoint_for(query))
        planned = {int(p.name) for p in (folder / "offsets").glob("*") if p.name.isdigit()}
        done = {int(p.name) for p in (folder / "commits").glob("*") if p.name.isdigit()}
        out[query] = sorted(planned - done)
    return out


@pytest.mark.points(2)
def test_partD_processing_time_trigger_stops_cleanly(mod, spark, cfg) -> None:
    """With a processing-time trigger the queries run until stop_streams() stops them, between
    two micro-batches: a batch running at the stop finishes and is committed."""
    rows = [state(f"c0{i:04x}", "France", T0 + 5 * i) for i in range(24)]
    produce(cfg.topic, [good(r) for r in rows[:12]])
    job = mod.start_streams(spark, replace(cfg, trigger="1 second"))
    try:

        def first_twelve_parsed() -> bool:
            assert all(q.isActive for q in job.queries), (
                f"Lab 02, part D: a query ended on its own: "
                f"{[(q.name, q.exception()) for q in job.queries]}"
            )
            return sum(r.parsed for r in job.reports) >= 12

        wait_quietly(first_twelve_parsed, STREAM_TIMEOUT_S, every=0.2)
        assert all(q.isActive for q in job.queries), (
            "Lab 02, part D: with trigger '1 second' both queries should keep running"
        )
        # More data, and the stop while the rows query is busy with it.
        produce(cfg.topic, [good(r) for r in rows[12:]])

        def rows_query_busy() -> bool:
            status = job.rows.status
            return status["isTriggerActive"] and status["isDataAvailable"]

        wait_quietly(rows_query_busy, STREAM_TIMEOUT_S, every=0.02)
    finally:
        mod.stop_streams(job, timeout=60)
    assert not any(q.isActive for q in job.queries), (
        "Lab 02, part D: stop_streams() returned but a query is still active"
    )
    errors = [(q.name, str(q.exception())) for q in job.queries if q.exception() is not None]
    assert not errors, f"Lab 02, part D: the queries stopped with errors: {errors}"
    pending = pending_batches(cfg)
    assert not any(pending.values()), (
        f"Lab 02, part D: stop_streams() interrupted a running micro-batch: batches planned but "
        f"not committed {pending}. Hint: while query.status['isTriggerActive'] is true a batch is "
        "running; wait (bounded by the timeout) for it to finish, then stop()."
    )
    got = ch_rows(cfg)
    assert len(got) == len(rows), (
        f"Lab 02, part D: ClickHouse holds {len(got)} rows after the stop, expected {len(rows)}"
    )
    assert len(pg_rows(cfg)) == len(rows), (
        f"Lab 02, part D: PostgreSQL holds {len(pg_rows(cfg))} rows after the stop, expected "
        f"{len(rows)}"
    )
    processed = drain(cfg.processed_topic)
    positions = {
        (json.loads(m["value"])["source_partition"], json.loads(m["value"])["source_offset"])
        for m in processed
    }
    assert len(positions) == len(rows), (
        f"Lab 02, part D: {cfg.processed_topic} holds {len(positions)} distinct source positions "
        f"after the stop, expected {len(rows)}"
    )


@pytest.mark.points(1)
def test_partD_cli_rejects_bad_arguments(mod) -> None:
    """The command line exits with status 2 and a usage message on bad options."""
    script = Path(mod.__file__)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    bad = [
        ["--trigger", "soon"],
        ["--trigger", "0 seconds"],
        ["--window", "1 fortnight"],
        ["--watermark", "late"],
        ["--max-offsets-per-trigger", "0"],
        ["--no-such-option"],
    ]
    for args in bad:
        done = subprocess.run(
            [sys.executable, str(script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 2 and "usage:" in done.stderr, (
            f"Lab 02, part D: `streaming_processor.py {' '.join(args)}` exited with "
            f"{done.returncode}, expected 2 with a usage message. stderr:\n{done.stderr[-1500:]}"
        )
    shown = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert (
        shown.returncode == 0 and "--trigger" in shown.stdout and "--watermark" in shown.stdout
    ), (
        f"Lab 02, part D: `streaming_processor.py --help` should list the options; got "
        f"{shown.returncode}:\n{shown.stdout[-1000:]}{shown.stderr[-1000:]}"
    )


# ================================================================== part E
def write_log(folder: Path, batch: int, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / str(batch)).write_text("\n".join(lines))


@pytest.mark.points(1)
def test_partE_checkpoint_progress_reads_the_logs(mod, tmp_path) -> None:
    """checkpoint_progress() reads the last commit, its offsets, a pending batch, the watermark."""
    empty = mod.checkpoint_progress(tmp_path / "never-started")
    want_empty = (None, {}, None, 0)
    got_empty = (
        empty.last_committed_batch,
        empty.committed_offsets,
        empty.pending_batch,
        empty.watermark_ms,
    )
    assert got_empty == want_empty, (
        f"Lab 02, part E: a checkpoint folder that does not exist gives {got_empty}, expected "
        f"{want_empty}"
    )
    root = tmp_path / "checkpoint"
    meta = '{"batchWatermarkMs":%d,"batchTimestampMs":1709294500000,"conf":{}}'
    write_log(root / "offsets", 0, ["v1", meta % 0, '{"raw_flights":{"1":7,"0":12}}'])
    write_log(root / "offsets", 1, ["v1", meta % 1709294460000, '{"raw_flights":{"1":9,"0":20}}'])
    write_log(root / "offsets", 2, ["v1", meta % 1709294520000, '{"raw_flights":{"1":15,"0":20}}'])
    write_log(root / "commits", 0, ["v1", '{"nextBatchWatermarkMs":1709294460000}'])
    write_log(root / "commits", 1, ["v1", '{"nextBatchWatermarkMs":1709294520000}'])
    (root / "commits" / ".1.crc").write_bytes(b"\x00")  # Hadoop's checksum files are not batches
    got = mod.checkpoint_progress(root)
    want = (1, {"raw_flights": {0: 20, 1: 9}}, 2, 1709294520000)
    actual = (got.last_committed_batch, got.committed_offsets, got.pending_batch, got.watermark_ms)
    assert actual == want, (
        f"Lab 02, part E: checkpoint_progress() = (last committed, committed offsets, pending, "
        f"watermark) {actual}, expected {want}. Hint: offsets/<n> line 3 holds the end offsets; "
        "commits/<n> line 2 holds nextBatchWatermarkMs; partitions are ints."
    )


@pytest.mark.points(3)
def test_partE_restart_between_batches_loses_and_duplicates_nothing(mod, spark, cfg) -> None:
    """Restarted from its checkpoint with more data, every input lands once in every sink."""
    rows = [state(f"e0{i:04x}", "France" if i % 3 else "Austria", T0 + 15 * i) for i in range(24)]
    bad = [("k1", "{broken"), ("k2", None)]
    produce(cfg.topic, [good(r) for r in rows[:14]] + bad[:1])
    limited = replace(cfg, max_offsets_per_trigger=8)
    reports = list(run_stream(mod, spark, limited))
    assert len(reports) >= 2, (
        f"Lab 02, part E: 15 messages with max_offsets_per_trigger=8 should take 2 or more "
        f"micro-batches, the rows query ran {len(reports)}"
    )
    progress = mod.checkpoint_progress(cfg.checkpoint_for("rows"))
    assert (
        progress.pending_batch is None and progress.last_committed_batch == reports[-1].batch_id
    ), (
        f"Lab 02, part E: after a finished run the rows checkpoint should have no pending batch "
        f"and end at batch {reports[-1].batch_id}; got {progress}"
    )
    produce(cfg.topic, [good(r) for r in rows[14:]] + bad[1:])
    reports += run_stream(mod, spark, limited)
    ids = [r.batch_id for r in reports]
    assert ids == sorted(set(ids)), (
        f"Lab 02, part E: the second run should continue the batch ids after the first, got {ids}"
    )

    total = len(rows) + len(bad)
    assert sum(r.messages for r in reports) == total, (
        f"Lab 02, part E: the rows query read {sum(r.messages for r in reports)} messages over two "
        f"runs, expected {total} (each once)"
    )
    got_ch = ch_rows(cfg)
    assert sorted((r["icao24"], r["fetch_time"]) for r in got_ch) == sorted(
        (r["icao24"], r["fetch_time"]) for r in rows
    ), f"Lab 02, part E: ClickHouse holds {len(got_ch)} rows, expected each of the {len(rows)} once"
    got_pg = pg_rows(cfg)
    assert len(got_pg) == len(rows), (
        f"Lab 02, part E: PostgreSQL holds {len(got_pg)} rows, expected {len(rows)}"
    )
    processed = [json.loads(m["value"]) for m in drain(cfg.processed_topic)]
    assert (
        len(processed)
        == len({(d["source_partition"], d["source_offset"]) for d in processed})
        == len(rows)
    ), (
        f"Lab 02, part E: {cfg.processed_topic} holds {len(processed)} messages, expected each of "
        f"the {len(rows)} state vectors once"
    )
    dead = drain(cfg.dlq_topic)
    assert len(dead) == len(bad), (
        f"Lab 02, part E: the DLQ holds {len(dead)} messages, expected {len(bad)}"
    )
    committed = mod.checkpoint_progress(cfg.checkpoint_for("rows")).committed_offsets.get(
        cfg.topic, {}
    )
    assert sum(committed.values()) == total, (
        f"Lab 02, part E: the rows checkpoint's committed offsets {committed} should cover all "
        f"{total} messages"
    )
    # Windows: what Spark emitted must match the rows flagged on time, up to the final watermark.
    watermark_s = mod.checkpoint_progress(cfg.checkpoint_for("aggregates")).watermark_ms // 1000
    on_time = [r for r in got_pg if not r["late"]]
    for r in on_time:
        r["time_position"] = r["event_time"]
    assert s3_windows(spark, cfg) == expected_windows(on_time, watermark_s), (
        "Lab 02, part E: the S3 window aggregates do not match the on-time rows after a restart: "
        f"{s3_windows(spark, cfg)} vs {expected_windows(on_time, watermark_s)}"
    )


@pytest.mark.points(2)
def test_partE_uncommitted_batch_is_replayed_without_duplicates(mod, spark, cfg) -> None:
    """A batch without its commit (a crash) is replayed; ClickHouse, PostgreSQL, S3 stay exact."""
    rows = [state(f"f0{i:04x}", "Belgium", T0 + 30 * i) for i in range(12)]
    produce(cfg.topic, [good(r) for r in rows] + [("bad", "{x")])
    first = run_stream(mod, spark, cfg)
    windows_before = s3_windows(spark, cfg)
    assert windows_before, "Lab 02, part E: the first run wrote no window aggregates to S3"
    # Simulate a crash after the sinks were written but before Spark committed the batch.
    for query in ("rows", "aggregates"):
        folder = Path(cfg.checkpoint_for(query)) / "commits"
        last = max(int(p.name) for p in folder.iterdir() if p.name.isdigit())
        (folder / str(last)).unlink()
        (folder / f".{last}.crc").unlink(missing_ok=True)
    progress = mod.checkpoint_progress(cfg.checkpoint_for("rows"))
    assert progress.pending_batch == first[-1].batch_id, (
        f"Lab 02, part E: with its commit removed, batch {first[-1].batch_id} should be pending; "
        f"checkpoint_progress() says {progress}"
    )
    replayed = run_stream(mod, spark, cfg)
    assert [r.batch_id for r in replayed] == [first[-1].batch_id], (
        f"Lab 02, part E: the restart should replay batch {first[-1].batch_id} (same id, same "
        f"offsets), it ran {[r.batch_id for r in replayed]}"
    )
    assert replayed[-1] == first[-1], (
        f"Lab 02, part E: the replayed batch reported {replayed[-1]}, the original {first[-1]}"
    )
    check_sinks(cfg, rows, [], "E (after a replay)")
    assert s3_windows(spark, cfg) == windows_before, (
        "Lab 02, part E: replaying the aggregates batch changed S3: "
        f"{s3_windows(spark, cfg)} vs {windows_before}"
    )
    processed = [json.loads(m["value"]) for m in drain(cfg.processed_topic)]
    positions = {(d["source_partition"], d["source_offset"]) for d in processed}
    assert len(positions) == len(rows) and len(processed) == 2 * len(rows), (
        f"Lab 02, part E: after the replay {cfg.processed_topic} should hold each of the "
        f"{len(rows)} rows twice (at-least-once, same source position), got {len(processed)} "
        f"messages at {len(positions)} positions"
    )
