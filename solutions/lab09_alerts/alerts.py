"""Lab 09 — real-time alerts: stateful Spark streaming from state vectors to alert episodes.

    python labs/lab09_alerts/alerts.py                          # 10-second micro-batches
    python labs/lab09_alerts/alerts.py --trigger availableNow   # catch up, then stop
    python labs/lab09_alerts/alerts.py --topic raw_flights      # read the replay's state mode

Input: one state vector per Kafka message, the flat row JSON of `harness.runtime.schema` (what Lab
02 publishes to `processed_flights`, and `python -m harness.runtime.replay --mode state` to
`raw_flights`), keyed by icao24. Per aircraft, a stateful processor (Spark 4's
`transformWithStateInPandas`, state in RocksDB, event-time timers) turns the state vectors into
alert *episodes* of three rules (part A):

- `squawk_7500`, `squawk_7600`, `squawk_7700`: the transponder shows an emergency code;
- `rapid_descent`: vertical rate below a threshold for N consecutive state vectors;
- `silence`: an airborne aircraft with no contact for more than 60 s of event time.

Each episode yields exactly one `opened` event and, later, one `closed` event (by the condition
clearing, or by the state timeout when the aircraft is never heard of again). Events go to the Kafka
topic `flight_alerts` (key icao24, JSON) and to the ClickHouse table `opensky.flight_alerts`, which
keeps each episode once (part B). `dashboard.py` shows them (part C).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StatefulProcessor, StatefulProcessorHandle, StreamingQuery
from pyspark.sql.streaming.stateful_processor import ExpiredTimerInfo, TimerValues

from harness.runtime.config import CLICKHOUSE_DB, STACK_DIR, TOPIC_PROCESSED, endpoints
from harness.runtime.schema import spark_row_schema
from harness.runtime.spark import session_conf

log = logging.getLogger("lab09.alerts")

# ------------------------------------------------------------------ names and defaults
ALERTS_TOPIC = "flight_alerts"  # the Kafka topic of alert events
ALERTS_TABLE = "flight_alerts"  # the ClickHouse table of alert episodes
CHECKPOINT_ROOT = STACK_DIR / "checkpoints" / "alerts"
DEFAULT_TRIGGER = "10 seconds"
AVAILABLE_NOW = "availableNow"

# Transponder codes that declare an emergency, and what each one means.
EMERGENCY_SQUAWKS = {
    "7500": "unlawful interference",
    "7600": "radio failure",
    "7700": "general emergency",
}
RULE_DESCENT = "rapid_descent"
RULE_SILENCE = "silence"
OPENED = "opened"
CLOSED = "closed"
# Why an episode closed: its condition no longer holds, or the aircraft's state timed out.
CLEARED = "cleared"
TIMED_OUT = "timeout"

# transformWithState keeps its state in RocksDB (the only state store it supports).
ROCKSDB_CONF = {
    "spark.sql.streaming.stateStore.providerClass": (
        "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
    )
}


@dataclass(frozen=True)
class AlertConfig:
    """What the job reads and writes, and the rules' thresholds; defaults are the platform's."""

    topic: str = TOPIC_PROCESSED
    alerts_topic: str = ALERTS_TOPIC
    clickhouse_database: str = CLICKHOUSE_DB
    clickhouse_table: str = ALERTS_TABLE
    checkpoint: str = str(CHECKPOINT_ROOT)
    trigger: str = DEFAULT_TRIGGER
    starting_offsets: str = "earliest"
    max_offsets_per_trigger: int | None = 20_000
    # How late (event time) a state vector may arrive and still count.
    watermark: str = "30 seconds"
    # rapid_descent: vertical_rate (m/s) strictly below this for `descent_count` vectors in a row.
    descent_rate: float = -15.0
    descent_count: int = 3
    # silence: an airborne aircraft with no contact for more than this many seconds.
    silence_seconds: int = 60
    # An aircraft not heard of for this long (event time) is forgotten: open episodes close.
    state_timeout_seconds: int = 600

    @property
    def query_name(self) -> str:
        return f"lab09_alerts_{self.topic}"


# One alert event: an episode opened or closed, with the aircraft's last known position.
# Times are unix seconds (as in the state vectors).
EVENT_SCHEMA = T.StructType(
    [
        T.StructField("alert_id", T.StringType(), False),
        T.StructField("icao24", T.StringType(), False),
        T.StructField("rule", T.StringType(), False),
        T.StructField("event", T.StringType(), False),
        T.StructField("opened_at", T.LongType(), False),
        T.StructField("closed_at", T.LongType(), True),
        T.StructField("closed_by", T.StringType(), True),
        T.StructField("detail", T.StringType(), True),
        T.StructField("callsign", T.StringType(), True),
        T.StructField("origin_country", T.StringType(), True),
        T.StructField("last_contact", T.LongType(), False),
        T.StructField("latitude", T.DoubleType(), True),
        T.StructField("longitude", T.DoubleType(), True),
        T.StructField("baro_altitude", T.DoubleType(), True),
        T.StructField("vertical_rate", T.DoubleType(), True),
        T.StructField("squawk", T.StringType(), True),
    ]
)
EVENT_COLUMNS = EVENT_SCHEMA.fieldNames()

# What the processor remembers per aircraft between micro-batches (one ValueState).
STATE_SCHEMA = T.StructType(
    [
        # the last state vector taken into account
        T.StructField("last_contact", T.LongType()),
        T.StructField("on_ground", T.BooleanType()),
        T.StructField("callsign", T.StringType()),
        T.StructField("origin_country", T.StringType()),
        T.StructField("latitude", T.DoubleType()),
        T.StructField("longitude", T.DoubleType()),
        T.StructField("baro_altitude", T.DoubleType()),
        T.StructField("vertical_rate", T.DoubleType()),
        T.StructField("squawk", T.StringType()),
        # rule progress and the open episodes (their opening time, or null)
        T.StructField("descent_run", T.LongType()),
        T.StructField("squawk_code", T.StringType()),
        T.StructField("squawk_opened", T.LongType()),
        T.StructField("descent_opened", T.LongType()),
        T.StructField("silence_opened", T.LongType()),
    ]
)
STATE_FIELDS = STATE_SCHEMA.fieldNames()
POSITION_FIELDS = (
    "callsign",
    "origin_country",
    "latitude",
    "longitude",
    "baro_altitude",
    "vertical_rate",
    "squawk",
)
# The columns of a state vector the processor reads.
INPUT_COLUMNS = ["icao24", "last_contact", "on_ground", *POSITION_FIELDS]


# ------------------------------------------------------------------ part A: the source
def read_stream(spark: SparkSession, cfg: AlertConfig) -> DataFrame:
    """The Kafka source on `cfg.topic`: one row per message (key, value, topic, partition, …).

    You wrote this source in Lab 02 (part A): the same options apply here.
    """
    # BEGIN SOLUTION (part A)
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", endpoints().kafka_bootstrap)
        .option("subscribe", cfg.topic)
        .option("startingOffsets", cfg.starting_offsets)
    )
    if cfg.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
    return reader.load()
    # END SOLUTION


def parse_states(raw: DataFrame) -> DataFrame:
    """Kafka rows -> the state vectors' `INPUT_COLUMNS` plus `event_time` (from `last_contact`).

    The input topic carries state vectors Lab 02 has already validated; a message without an
    icao24 or a last_contact cannot belong to any aircraft's timeline and is left out.
    """
    row = F.from_json(F.col("value").cast("string"), spark_row_schema()).alias("row")
    return (
        raw.select(row)
        .select(*[F.col(f"row.{c}").alias(c) for c in INPUT_COLUMNS])
        .where(F.col("icao24").isNotNull() & F.col("last_contact").isNotNull())
        .withColumn("event_time", F.timestamp_seconds("last_contact"))
    )


def alert_id(icao24: str, rule: str, opened_at: int) -> str:
    """The id of an episode: the same on every replay, so sinks can keep an episode once."""
    return f"{icao24}-{rule}-{opened_at}"


def new_state() -> dict[str, Any]:
    """The state of an aircraft seen for the first time (every field of `STATE_SCHEMA`)."""
    state: dict[str, Any] = dict.fromkeys(STATE_FIELDS)
    state["descent_run"] = 0
    return state


def _event(
    icao24: str, state: dict[str, Any], rule: str, opened_at: int, **fields: Any
) -> dict[str, Any]:
    """An alert event with the aircraft's last known position taken from `state`."""
    event = {
        "alert_id": alert_id(icao24, rule, opened_at),
        "icao24": icao24,
        "rule": rule,
        "event": OPENED,
        "opened_at": opened_at,
        "closed_at": None,
        "closed_by": None,
        "detail": None,
        "last_contact": state["last_contact"],
        **{name: state[name] for name in POSITION_FIELDS},
    }
    event.update(fields)
    return event


def opened(
    icao24: str, state: dict[str, Any], rule: str, at: int, detail: str | None = None
) -> dict[str, Any]:
    """The `opened` event of an episode of `rule` starting at `at`."""
    return _event(icao24, state, rule, at, detail=detail)


def closed(
    icao24: str, state: dict[str, Any], rule: str, opened_at: int, at: int, by: str
) -> dict[str, Any]:
    """The `closed` event of the episode of `rule` opened at `opened_at`."""
    return _event(icao24, state, rule, opened_at, event=CLOSED, closed_at=at, closed_by=by)


def _clean(value: Any) -> Any:
    """A pandas cell as a plain Python value (NaN/NA/NaT -> None, numpy scalars -> Python)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


# ------------------------------------------------------------------ part A: the rules
def step(
    icao24: str, state: dict[str, Any] | None, row: dict[str, Any], cfg: AlertConfig
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Apply one state vector (a dict of `INPUT_COLUMNS`) to an aircraft's state.

    Returns the new state and the alert events it causes (in order). A vector whose `last_contact`
    is not newer than the state's (a duplicate, or one that arrived out of order) changes nothing.
    """
    # BEGIN SOLUTION (part A)
    t = int(row["last_contact"])
    if state is not None and state["last_contact"] is not None and t <= state["last_contact"]:
        return state, []
    state = dict(state) if state is not None else new_state()
    events: list[dict[str, Any]] = []

    # silence: contact is back. Either the timer opened the episode already, or the gap is found
    # here (the timer had not fired yet): then the episode opens and closes at once.
    previous = state["last_contact"]
    silence_from = state["silence_opened"]
    if silence_from is None and previous is not None and state["on_ground"] is False:
        if t - previous > cfg.silence_seconds:
            silence_from = previous + cfg.silence_seconds
            events.append(opened(icao24, state, RULE_SILENCE, silence_from))

    state["last_contact"] = t
    state["on_ground"] = bool(row["on_ground"]) if row["on_ground"] is not None else False
    for name in POSITION_FIELDS:
        state[name] = row[name]
    if silence_from is not None:
        events.append(closed(icao24, state, RULE_SILENCE, silence_from, t, CLEARED))
        state["silence_opened"] = None

    # emergency squawk: a null squawk says nothing; another code closes the open episode.
    squawk = row["squawk"]
    if squawk is not None:
        code = state["squawk_code"]
        if code is not None and squawk != code:
            rule = f"squawk_{code}"
            events.append(closed(icao24, state, rule, state["squawk_opened"], t, CLEARED))
            state["squawk_code"] = state["squawk_opened"] = None
        if squawk in EMERGENCY_SQUAWKS and state["squawk_code"] is None:
            detail = f"squawk {squawk}: {EMERGENCY_SQUAWKS[squawk]}"
            events.append(opened(icao24, state, f"squawk_{squawk}", t, detail))
            state["squawk_code"], state["squawk_opened"] = squawk, t

    # rapid descent: N vectors in a row below the threshold; a null rate says nothing.
    rate = row["vertical_rate"]
    if rate is not None:
        if rate < cfg.descent_rate:
            state["descent_run"] += 1
            if state["descent_run"] >= cfg.descent_count and state["descent_opened"] is None:
                detail = (
                    f"vertical rate below {cfg.descent_rate:g} m/s for "
                    f"{state['descent_run']} state vectors"
                )
                events.append(opened(icao24, state, RULE_DESCENT, t, detail))
                state["descent_opened"] = t
        else:
            state["descent_run"] = 0
            if state["descent_opened"] is not None:
                events.append(
                    closed(icao24, state, RULE_DESCENT, state["descent_opened"], t, CLEARED)
                )
                state["descent_opened"] = None
    return state, events
    # END SOLUTION


def expire(
    icao24: str, state: dict[str, Any] | None, expiry: int, cfg: AlertConfig
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """An event-time timer for time `expiry` (unix s) fired: the watermark has passed it.

    Opens the silence episode of an airborne aircraft unheard of for more than
    `cfg.silence_seconds`; after `cfg.state_timeout_seconds` closes every open episode (closed_by
    `timeout`) and returns None: the aircraft's state is removed.
    """
    # BEGIN SOLUTION (part A)
    if state is None or state["last_contact"] is None:
        return None, []
    state = dict(state)
    events: list[dict[str, Any]] = []
    last = state["last_contact"]
    silence_at = last + cfg.silence_seconds
    if state["on_ground"] is False and state["silence_opened"] is None and expiry >= silence_at:
        events.append(opened(icao24, state, RULE_SILENCE, silence_at))
        state["silence_opened"] = silence_at
    end = last + cfg.state_timeout_seconds
    if expiry < end:
        return state, events
    open_episodes = [
        (f"squawk_{state['squawk_code']}", state["squawk_opened"]),
        (RULE_DESCENT, state["descent_opened"]),
        (RULE_SILENCE, state["silence_opened"]),
    ]
    for rule, since in open_episodes:
        if since is not None:
            events.append(closed(icao24, state, rule, since, end, TIMED_OUT))
    return None, events
    # END SOLUTION


def timers_for(state: dict[str, Any] | None, cfg: AlertConfig) -> list[int]:
    """The event-time timers (ms) an aircraft in `state` needs: the silence limit while airborne
    and no silence episode is open, and the state timeout. Each fires once the watermark passes it
    (one millisecond after the limit: *more than* 60 s)."""
    # BEGIN SOLUTION (part A)
    if state is None or state["last_contact"] is None:
        return []
    last_ms = state["last_contact"] * 1000
    timers = [last_ms + cfg.state_timeout_seconds * 1000 + 1]
    if state["on_ground"] is False and state["silence_opened"] is None:
        timers.append(last_ms + cfg.silence_seconds * 1000 + 1)
    return sorted(timers)
    # END SOLUTION


def events_frame(events: list[dict[str, Any]]) -> pd.DataFrame:
    """Alert events as a pandas DataFrame with `EVENT_COLUMNS` (nullable integer times)."""
    frame = pd.DataFrame(events, columns=EVENT_COLUMNS)
    for name in ("opened_at", "closed_at", "last_contact"):
        frame[name] = frame[name].astype("Int64")
    return frame


class AlertProcessor(StatefulProcessor):
    """Spark's stateful processor: one `aircraft` ValueState and event-time timers per icao24."""

    def __init__(self, cfg: AlertConfig) -> None:
        self.cfg = cfg

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.aircraft = handle.getValueState("aircraft", STATE_SCHEMA)

    def _load(self) -> dict[str, Any] | None:
        value = self.aircraft.get()
        return dict(zip(STATE_FIELDS, value, strict=True)) if value is not None else None

    def _save(self, state: dict[str, Any] | None) -> None:
        """Store the state (or remove it) and replace the aircraft's timers with its new ones."""
        for timer in list(self.handle.listTimers()):
            self.handle.deleteTimer(timer)
        if state is None:
            self.aircraft.clear()
            return
        self.aircraft.update(tuple(state[name] for name in STATE_FIELDS))
        for timer in timers_for(state, self.cfg):
            self.handle.registerTimer(timer)

    def handleInputRows(
        self, key: Any, rows: Iterator[pd.DataFrame], timerValues: TimerValues
    ) -> Iterator[pd.DataFrame]:
        """The micro-batch's state vectors of one aircraft, applied in event-time order."""
        # BEGIN SOLUTION (part A)
        icao24 = key[0]
        batch = pd.concat(list(rows), ignore_index=True)
        # Event-time order within the batch; a duplicated vector counts once.
        batch = batch.sort_values("last_contact", kind="stable")
        batch = batch.drop_duplicates("last_contact", keep="first")
        state = self._load()
        events: list[dict[str, Any]] = []
        for record in batch[INPUT_COLUMNS].to_dict("records"):
            state, caused = step(icao24, state, {k: _clean(v) for k, v in record.items()}, self.cfg)
            events += caused
        self._save(state)
        if events:
            yield events_frame(events)
        # END SOLUTION

    def handleExpiredTimer(
        self, key: Any, timerValues: TimerValues, expiredTimerInfo: ExpiredTimerInfo
    ) -> Iterator[pd.DataFrame]:
        """A timer of this aircraft fired (the watermark passed it)."""
        # BEGIN SOLUTION (part A)
        expiry = expiredTimerInfo.getExpiryTimeInMs() // 1000
        state, events = expire(key[0], self._load(), expiry, self.cfg)
        self._save(state)
        if events:
            yield events_frame(events)
        # END SOLUTION

    def close(self) -> None:
        pass


def alert_events(states: DataFrame, cfg: AlertConfig) -> DataFrame:
    """Streaming alert events (`EVENT_SCHEMA`) from parsed state vectors (`parse_states`)."""
    # BEGIN SOLUTION (part A)
    return (
        states.withWatermark("event_time", cfg.watermark)
        .groupBy("icao24")
        .transformWithStateInPandas(
            statefulProcessor=AlertProcessor(cfg),
            outputStructType=EVENT_SCHEMA,
            outputMode="Append",
            timeMode="EventTime",
        )
    )
    # END SOLUTION


# ------------------------------------------------------------------ part B: alerts out
def alert_messages(events: DataFrame) -> DataFrame:
    """Kafka records for alert events: key = icao24, value = the event as JSON (times in unix s,
    nulls kept)."""
    # BEGIN SOLUTION (part B)
    payload = F.struct(*EVENT_COLUMNS)
    return events.select(
        F.col("icao24").alias("key"),
        F.to_json(payload, {"ignoreNullFields": "false"}).alias("value"),
    )
    # END SOLUTION


def _qualified(database: str, table: str) -> str:
    for name in (database, table):
        if not name.replace("_", "").isalnum():
            raise ValueError(f"{name!r} is not a plain identifier")
    return f"`{database}`.`{table}`"


def ensure_sinks(cfg: AlertConfig) -> None:
    """Create the alerts topic and the ClickHouse table of episodes when they are missing."""
    # BEGIN SOLUTION (part B)
    from harness.runtime.replay import ensure_topic
    from harness.runtime.services import clickhouse_client

    ensure_topic(cfg.alerts_topic, partitions=3)
    client = clickhouse_client()
    try:
        client.command(f"CREATE DATABASE IF NOT EXISTS `{cfg.clickhouse_database}`")
        # One row per episode once merged (read with FINAL): the `closed` row (version 1)
        # replaces the `opened` one (version 0); a replayed batch writes identical rows.
        client.command(
            f"""
            CREATE TABLE IF NOT EXISTS {_qualified(cfg.clickhouse_database, cfg.clickhouse_table)} (
                alert_id       String,
                icao24         String,
                rule           LowCardinality(String),
                status         LowCardinality(String),
                opened_at      DateTime('UTC'),
                closed_at      Nullable(DateTime('UTC')),
                closed_by      Nullable(String),
                detail         Nullable(String),
                callsign       Nullable(String),
                origin_country Nullable(String),
                last_contact   DateTime('UTC'),
                latitude       Nullable(Float64),
                longitude      Nullable(Float64),
                baro_altitude  Nullable(Float64),
                vertical_rate  Nullable(Float64),
                squawk         Nullable(String),
                version        UInt8
            ) ENGINE = ReplacingMergeTree(version)
            ORDER BY alert_id
            """
        )
    finally:
        client.close()
    # END SOLUTION


# The ClickHouse columns in insert order (the event's columns, `event` renamed to `status`).
TABLE_COLUMNS = [
    "alert_id",
    "icao24",
    "rule",
    "status",
    "opened_at",
    "closed_at",
    "closed_by",
    "detail",
    "callsign",
    "origin_country",
    "last_contact",
    "latitude",
    "longitude",
    "baro_altitude",
    "vertical_rate",
    "squawk",
    "version",
]


def _utc(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def insert_partition(rows: Iterator[Any], database: str, table: str) -> int:
    """Insert one partition of alert events (Rows of `EVENT_SCHEMA`) into ClickHouse; runs on an
    executor. Returns the number of rows."""
    # BEGIN SOLUTION (part B)
    from harness.runtime.services import clickhouse_client

    data = []
    for row in rows:
        event = row.asDict()
        data.append(
            [
                event["alert_id"],
                event["icao24"],
                event["rule"],
                event["event"],
                _utc(event["opened_at"]),
                _utc(event["closed_at"]),
                event["closed_by"],
                event["detail"],
                event["callsign"],
                event["origin_country"],
                _utc(event["last_contact"]),
                event["latitude"],
                event["longitude"],
                event["baro_altitude"],
                event["vertical_rate"],
                event["squawk"],
                1 if event["event"] == CLOSED else 0,
            ]
        )
    if not data:
        return 0
    client = clickhouse_client(database)
    try:
        client.insert(table, data, column_names=TABLE_COLUMNS, database=database)
    finally:
        client.close()
    return len(data)
    # END SOLUTION


def write_batch(events: DataFrame, batch_id: int, cfg: AlertConfig) -> None:
    """The foreachBatch sink: one micro-batch of alert events to Kafka and ClickHouse, written
    from the executors. A batch Spark replays after a crash must leave each episode once."""
    # BEGIN SOLUTION (part B)
    # Persisted: each action would otherwise run the stateful plan again.
    batch = events.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        if batch.isEmpty():
            return
        (
            alert_messages(batch)
            .write.format("kafka")
            .option("kafka.bootstrap.servers", endpoints().kafka_bootstrap)
            .option("topic", cfg.alerts_topic)
            .save()
        )
        database, table = cfg.clickhouse_database, cfg.clickhouse_table
        batch.foreachPartition(lambda rows: insert_partition(rows, database, table))
    finally:
        batch.unpersist()
    # END SOLUTION


def trigger_options(trigger: str) -> dict[str, Any]:
    """`DataStreamWriter.trigger(**options)` for "availableNow" or an interval like "10 seconds"."""
    if trigger.replace("-", "").replace("_", "").lower() == AVAILABLE_NOW.lower():
        return {"availableNow": True}
    return {"processingTime": trigger}


def start_alerts(spark: SparkSession, cfg: AlertConfig) -> StreamingQuery:
    """Start the alerts query: Kafka -> `alert_events` -> `write_batch`, checkpointed in
    `cfg.checkpoint`."""
    # BEGIN SOLUTION (part B)
    ensure_sinks(cfg)
    events = alert_events(parse_states(read_stream(spark, cfg)), cfg)
    writer = (
        events.writeStream.queryName(cfg.query_name)
        .outputMode("append")
        .option("checkpointLocation", cfg.checkpoint)
        .foreachBatch(lambda batch, batch_id: write_batch(batch, batch_id, cfg))
        .trigger(**trigger_options(cfg.trigger))
    )
    with session_conf(spark, ROCKSDB_CONF):
        return writer.start()
    # END SOLUTION


def run_available_now(spark: SparkSession, cfg: AlertConfig, timeout: float = 300.0) -> None:
    """Process everything in the topic now (trigger availableNow) and wait for the query to end;
    TimeoutError after `timeout` s, the query's own error if it fails."""
    query = start_alerts(spark, replace(cfg, trigger=AVAILABLE_NOW))
    try:
        if not query.awaitTermination(timeout):
            raise TimeoutError(f"query {query.name} did not finish within {timeout:g} s")
    finally:
        query.stop()


# ------------------------------------------------------------------ command line
def build_parser() -> argparse.ArgumentParser:
    defaults = AlertConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topic", default=defaults.topic, help="input topic of state vectors")
    parser.add_argument("--alerts-topic", default=defaults.alerts_topic)
    parser.add_argument("--database", default=defaults.clickhouse_database)
    parser.add_argument("--table", default=defaults.clickhouse_table)
    parser.add_argument("--checkpoint", default=defaults.checkpoint)
    parser.add_argument("--trigger", default=defaults.trigger, help="availableNow or '10 seconds'")
    parser.add_argument("--watermark", default=defaults.watermark)
    parser.add_argument(
        "--starting-offsets",
        default=defaults.starting_offsets,
        help="where a new checkpoint starts: earliest, latest or Spark's JSON of offsets per "
        'partition (\'{"raw_flights": {"0": 120, "1": 98}}\')',
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = build_parser().parse_args(argv)
    cfg = AlertConfig(
        topic=args.topic,
        alerts_topic=args.alerts_topic,
        clickhouse_database=args.database,
        clickhouse_table=args.table,
        checkpoint=args.checkpoint,
        trigger=args.trigger,
        watermark=args.watermark,
        starting_offsets=args.starting_offsets,
    )
    Path(cfg.checkpoint).parent.mkdir(parents=True, exist_ok=True)
    if "PYSPARK_GATEWAY_PORT" in os.environ:  # under spark-submit: its session and settings
        spark = SparkSession.builder.appName("lab09-alerts").getOrCreate()
    else:
        from harness.runtime.spark import get_spark

        spark = get_spark("lab09-alerts")
    if cfg.trigger == AVAILABLE_NOW:
        run_available_now(spark, cfg)
        return 0
    query = start_alerts(spark, cfg)
    print(f"alerts running: {cfg.topic} -> {cfg.alerts_topic}, ClickHouse {cfg.clickhouse_table}")
    try:
        while query.isActive:
            time.sleep(5)
            progress = query.lastProgress
            if progress:
                log.info(json.dumps({k: progress.get(k) for k in ("batchId", "numInputRows")}))
    except KeyboardInterrupt:
        query.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
