"""The Lab 05 suite's own tools: names, the suite's pipeline set-up and clean-up, and readers of
PostgreSQL, Kafka and ClickHouse — independent of the code under test.

Imported by `conftest.py` (fixtures) and `test_lab05_cdc.py`.
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from confluent_kafka import Consumer, Message, TopicPartition

from harness.grading.testkit import read_topic, wait_for_leaders, watermarks
from harness.runtime.config import ROOT, endpoints, setting, stack
from harness.runtime.services import ServiceUnavailable, kafka_config
from harness.runtime.waits import WaitTimeout, wait_quietly, wait_until

WAIT_S = 60.0  # the bound on every wait for Connect, Debezium and Kafka
CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
CONFIG_FILE = ROOT / "infra" / "debezium" / "opensky-postgres.json"
TABLES = ("processed_flights", "flight_statistics")
COLUMNS = {
    "processed_flights": (
        "icao24",
        "fetch_time",
        "callsign",
        "origin_country",
        "longitude",
        "latitude",
        "baro_altitude",
        "velocity",
        "on_ground",
    ),
    "flight_statistics": (
        "origin_country",
        "stat_date",
        "flight_count",
        "avg_velocity",
        "max_altitude",
    ),
}
PRIMARY_KEYS = {
    "processed_flights": ("icao24", "fetch_time"),
    "flight_statistics": ("origin_country", "stat_date"),
}
REPLICA_TABLES = {table: f"{table}_replica" for table in TABLES}

# Part A's tables as the README specifies them (the suite's own copy, so B-E never depend on A).
SOURCE_DDL = """
CREATE TABLE {schema}.processed_flights (
    icao24 text NOT NULL, fetch_time timestamptz NOT NULL, callsign text,
    origin_country text NOT NULL, longitude double precision, latitude double precision,
    baro_altitude double precision, velocity double precision, on_ground boolean NOT NULL,
    PRIMARY KEY (icao24, fetch_time));
CREATE TABLE {schema}.flight_statistics (
    origin_country text NOT NULL, stat_date date NOT NULL, flight_count integer NOT NULL,
    avg_velocity double precision, max_altitude double precision,
    PRIMARY KEY (origin_country, stat_date));
ALTER TABLE {schema}.processed_flights REPLICA IDENTITY FULL;
ALTER TABLE {schema}.flight_statistics REPLICA IDENTITY FULL;
"""
# Part D's replica tables as the README specifies them.
REPLICA_DDL = (
    """CREATE TABLE `{db}`.processed_flights_replica (
        icao24 String, fetch_time DateTime64(6, 'UTC'), callsign Nullable(String),
        origin_country LowCardinality(String), longitude Nullable(Float64),
        latitude Nullable(Float64), baro_altitude Nullable(Float64), velocity Nullable(Float64),
        on_ground Bool, _version UInt64, _deleted UInt8
    ) ENGINE = ReplacingMergeTree(_version, _deleted) ORDER BY (icao24, fetch_time)""",
    """CREATE TABLE `{db}`.flight_statistics_replica (
        origin_country String, stat_date Date, flight_count Int32, avg_velocity Nullable(Float64),
        max_altitude Nullable(Float64), _version UInt64, _deleted UInt8
    ) ENGINE = ReplacingMergeTree(_version, _deleted) ORDER BY (origin_country, stat_date)""",
)


# ------------------------------------------------------------------ Kafka Connect
def connect_url() -> str:
    return endpoints().connect_url.rstrip("/")


def connect(method: str, path: str, **kwargs: Any) -> requests.Response:
    """The suite's own request to the Kafka Connect REST API."""
    kwargs.setdefault("timeout", 60)
    try:
        return requests.request(method, connect_url() + path, **kwargs)
    except requests.ConnectionError as exc:
        raise ServiceUnavailable("Kafka Connect (Debezium)", connect_url(), str(exc)) from exc


# ------------------------------------------------------------------ names and clean-up
@dataclass(frozen=True)
class CdcNames:
    """Unique names for one CDC pipeline."""

    tag: str
    schema: str
    connector: str
    prefix: str
    slot: str
    publication: str

    def topic(self, table: str) -> str:
        return f"{self.prefix}.{self.schema}.{table}"

    @property
    def topics(self) -> list[str]:
        return [self.topic(table) for table in TABLES]


def new_names(purpose: str) -> CdcNames:
    tag = uuid.uuid4().hex[:10]
    return CdcNames(
        tag=tag,
        schema=f"lab05_{purpose}_{tag}",
        connector=f"lab05-{purpose}-{tag}",
        prefix=f"lab05{purpose}{tag}",
        slot=f"lab05_{purpose}_{tag}",
        publication=f"lab05_{purpose}_{tag}",
    )


def warn_cleanup(what: str, exc: Exception) -> None:
    warnings.warn(f"Lab 05 test clean-up: could not {what}: {exc}", stacklevel=2)


def remove_pipeline(pg, admin, names: CdcNames) -> None:
    """Delete the connector, then its slot, publication, schema and topics (warn, never fail)."""
    try:
        connect("DELETE", f"/connectors/{names.connector}", timeout=30)
        wait_quietly(
            lambda: connect("GET", f"/connectors/{names.connector}").status_code == 404,
            WAIT_S,
            every=0.3,
        )
    except Exception as exc:  # clean-up must never hide the test's own result
        warn_cleanup(f"delete connector {names.connector}", exc)
    try:
        # The task lets go of the slot shortly after the connector is deleted.
        if not wait_quietly(lambda: slot_pid(pg, names.slot) is None, 30, every=0.3):
            pg.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active_pid IS NOT NULL",
                (names.slot,),
            )
            wait_quietly(lambda: slot_pid(pg, names.slot) is None, 5, every=0.3)
        pg.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (names.slot,),
        )
    except Exception as exc:
        warn_cleanup(f"drop replication slot {names.slot}", exc)
    for statement in (
        f"DROP PUBLICATION IF EXISTS {names.publication}",
        f"DROP SCHEMA IF EXISTS {names.schema} CASCADE",
    ):
        try:
            pg.execute(statement)
        except Exception as exc:
            warn_cleanup(statement, exc)
    try:
        existing = set(admin.list_topics(timeout=10).topics)
        ours = [t for t in existing if t.startswith(names.prefix + ".")]
        if ours:
            for future in admin.delete_topics(ours, operation_timeout=15).values():
                future.result(timeout=30)
    except Exception as exc:
        warn_cleanup(f"delete topics {names.prefix}.*", exc)


# ------------------------------------------------------------------ the suite's own pipeline
def create_source_tables(pg, schema: str) -> None:
    with pg.transaction():
        pg.execute(f"CREATE SCHEMA {schema}")
        for statement in SOURCE_DDL.format(schema=schema).split(";"):
            if statement.strip():
                pg.execute(statement)


def fill_placeholders(text: str) -> str:
    """The connector file's `${POSTGRES_*}` placeholders, as the Connect worker sees PostgreSQL."""
    ep = endpoints()
    host, port = ep.pg_host, str(ep.pg_port)
    if stack() == "docker":
        from harness.ops.docker_stack import in_network_endpoints

        inside = in_network_endpoints()
        host, port = inside["pg_host"], inside["pg_port"]
    values = {
        "POSTGRES_HOST": setting("DEBEZIUM_DATABASE_HOST", host),
        "POSTGRES_PORT": setting("DEBEZIUM_DATABASE_PORT", port),
        "POSTGRES_DB": ep.pg_db,
        "POSTGRES_USER": ep.pg_user,
        "POSTGRES_PASSWORD": ep.pg_password,
    }
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return text


def file_config(names: CdcNames, path: Path = CONFIG_FILE) -> dict[str, str]:
    """The shipped connector file, filled in and renamed for `names` (the suite's own reading)."""
    config = json.loads(fill_placeholders(path.read_text()))
    config.update(
        {
            "name": names.connector,
            "topic.prefix": names.prefix,
            "slot.name": names.slot,
            "publication.name": names.publication,
            "table.include.list": ",".join(f"{names.schema}.{t}" for t in TABLES),
        }
    )
    return config


def suite_config(names: CdcNames) -> dict[str, str]:
    """The pipeline's config: the file's, but with the worker's converters (schema envelope on)."""
    config = file_config(names)
    for key in [k for k in config if k.startswith(("key.converter", "value.converter"))]:
        del config[key]
    return config


def connector_states(name: str) -> tuple[list[str], dict[str, Any]]:
    response = connect("GET", f"/connectors/{name}/status")
    if response.status_code != 200:
        return [], {}
    status = response.json()
    return [status["connector"]["state"]] + [t["state"] for t in status["tasks"]], status


def wait_running(name: str) -> dict[str, Any]:
    """The suite's own wait: connector and task RUNNING (set-up errors name the trace)."""
    last: dict[str, Any] = {}

    def running() -> dict[str, Any] | None:
        states, status = connector_states(name)
        last["status"] = status
        if "FAILED" in states:
            traces = [status["connector"].get("trace")] + [t.get("trace") for t in status["tasks"]]
            raise AssertionError(
                f"Lab 05 test set-up: connector {name} FAILED: {next(t for t in traces if t)[:1500]}"
            )
        return status if len(states) > 1 and all(s == "RUNNING" for s in states) else None

    try:
        return wait_until(running, f"connector {name} RUNNING", WAIT_S, every=0.3)
    except WaitTimeout:
        raise AssertionError(
            f"Lab 05 test set-up: connector {name} not RUNNING: {last.get('status', {})}"
        ) from None


def slot_pid(pg, slot: str) -> int | None:
    row = pg.execute(
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ).fetchone()
    return None if row is None else row[0]


def wait_slot_active(pg, slot: str, not_pid: int | None = None) -> int | None:
    """Wait until `slot` is held by a walsender (other than `not_pid`); its pid, or None."""

    def holder() -> int | None:
        pid = slot_pid(pg, slot)
        return pid if pid is not None and pid != not_pid else None

    try:
        return wait_until(holder, f"a walsender holding slot {slot}", WAIT_S, every=0.3)
    except WaitTimeout:
        return None


@dataclass
class Pipeline:
    """The module's running CDC pipeline: names, and the keys the seed rows used."""

    names: CdcNames
    seeded: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
D0 = date(2024, 3, 1)


# ------------------------------------------------------------------ PostgreSQL helpers
def insert(pg, schema: str, table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    pg.execute(f"INSERT INTO {schema}.{table} ({columns}) VALUES ({marks})", list(row.values()))


def source_rows(pg, schema: str, table: str) -> list[tuple]:
    """The source table, sorted by primary key (in Python: no collation differences), UTC times."""
    rows = pg.execute(f"SELECT {', '.join(COLUMNS[table])} FROM {schema}.{table}").fetchall()
    return sorted(normalise(row) for row in rows)


def normalise(row: tuple) -> tuple:
    return tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in row)


# ------------------------------------------------------------------ Kafka helpers
def read_all(topic: str, timeout: float = WAIT_S) -> list[Message]:
    """Every message now in `topic`, from the earliest offset of each partition to its end; a
    topic Debezium has not created yet reads as empty. Waits (bounded) for partition leaders: a
    topic Debezium has just created may have none for a moment."""
    return read_topic(topic, timeout, missing_ok=True)


def end_offsets(topics: list[str]) -> dict[tuple[str, int], int]:
    """The high watermark of every partition of `topics` (once each partition has a leader)."""
    consumer = Consumer(kafka_config(**{"group.id": f"lab05-ends-{uuid.uuid4().hex[:8]}"}))
    try:
        ends = {}
        for topic in topics:
            for p in wait_for_leaders(consumer, topic, WAIT_S):
                ends[(topic, p)] = watermarks(consumer, topic, p, WAIT_S)[1]
        return ends
    finally:
        consumer.close()


def committed(group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The group's committed offset per partition (0 when nothing is committed)."""
    partitions = [TopicPartition(t, p) for (t, p) in end_offsets(topics)]
    consumer = Consumer(kafka_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        found = consumer.committed(partitions, timeout=30)
        return {(tp.topic, tp.partition): max(tp.offset, 0) for tp in found}
    finally:
        consumer.close()


def commit(group: str, offsets: dict[tuple[str, int], int]) -> None:
    """Commit `offsets` for `group` without joining it (simulates a consumer's last commit)."""
    consumer = Consumer(kafka_config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def payload(raw: bytes | None) -> Any:
    """A message key or value without the JsonConverter's schema envelope (None stays None)."""
    if raw is None:
        return None
    doc = json.loads(raw)
    if isinstance(doc, dict) and set(doc) == {"schema", "payload"}:
        return doc["payload"]
    return doc


def to_python(table: str, data: dict[str, Any] | None) -> dict[str, Any] | None:
    """A before/after block with Debezium's encodings turned into Python values."""
    if data is None:
        return None
    row = dict(data)
    if table == "processed_flights":
        row["fetch_time"] = datetime.fromisoformat(row["fetch_time"]).astimezone(UTC)
    else:
        row["stat_date"] = date(1970, 1, 1) + timedelta(days=row["stat_date"])
    return row


def suite_event(mod, msg: Message):
    """A Kafka message as the lab's ChangeEvent, built by the suite (independent of part C)."""
    table = msg.topic().rsplit(".", 1)[-1]
    key = payload(msg.key())
    value = payload(msg.value())
    if value is None:
        return mod.ChangeEvent(msg.topic(), table, None, key, None, None, {})
    row_type = mod.ROW_TYPES[table]
    before, after = (to_python(table, value[side]) for side in ("before", "after"))
    return mod.ChangeEvent(
        msg.topic(),
        table,
        value["op"],
        key,
        row_type(**before) if before else None,
        row_type(**after) if after else None,
        value["source"],
    )


def fold(table: str, messages: list[Message]) -> list[tuple]:
    """The table as the change events say it is: the last event per key wins (deletes remove)."""
    rows: dict[tuple, tuple] = {}
    for msg in messages:
        value = payload(msg.value())
        if value is None:
            continue
        if value["op"] == "d":
            before = to_python(table, value["before"])
            rows.pop(tuple(before[c] for c in PRIMARY_KEYS[table]), None)
        else:
            after = to_python(table, value["after"])
            rows[tuple(after[c] for c in PRIMARY_KEYS[table])] = tuple(
                after[c] for c in COLUMNS[table]
            )
    return sorted(rows.values())


def settle(pg, names: CdcNames) -> dict[str, list[Message]]:
    """Wait until the change events in Kafka add up to the source tables; all messages per table."""
    behind: list[str] = []

    def caught_up() -> dict[str, list[Message]] | None:
        messages = {table: read_all(names.topic(table)) for table in TABLES}
        behind[:] = [
            table
            for table in TABLES
            if fold(table, messages[table]) != source_rows(pg, names.schema, table)
        ]
        return None if behind else messages

    try:
        return wait_until(caught_up, "change events matching PostgreSQL", WAIT_S)
    except WaitTimeout:
        raise AssertionError(
            f"Lab 05 test harness: the change events of {behind} did not catch up with "
            f"PostgreSQL within {WAIT_S:.0f} s (is the connector running?)"
        ) from None


def wait_for_messages(
    topic: str, accept: Callable[[Message], bool], n: int, timeout: float = WAIT_S
) -> list[Message]:
    """Read `topic` from the start until `n` messages satisfy `accept` (bounded); those messages."""
    found: list[Message] = []

    def enough() -> bool:
        found[:] = [m for m in read_all(topic) if accept(m)]
        return len(found) >= n

    wait_quietly(enough, timeout, every=0.5)
    return found


# ------------------------------------------------------------------ ClickHouse helpers
def replica_rows(ch, database: str, table: str) -> list[tuple]:
    """The replica read the way part D specifies: FINAL, deleted rows left out, by primary key."""
    rows = ch.query(
        f"SELECT {', '.join(COLUMNS[table])} FROM `{database}`.{REPLICA_TABLES[table]} FINAL "
        f"WHERE _deleted = 0"
    ).result_rows
    return sorted(
        tuple(
            v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v
            for v in row
        )
        for row in rows
    )
