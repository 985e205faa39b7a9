# Generated from solutions/lab05_cdc/cdc.py by `make skeletons` — this is the file you edit.
"""Lab 05 — change data capture with Debezium: PostgreSQL → Kafka → a ClickHouse replica.

A: source tables with primary keys and full replica identity · B: the Debezium connector through the
Kafka Connect REST API · C: change events, typed · D: an idempotent ClickHouse replica · E: restarts
without losing or doubling a change.

Every function takes the names it works on (PostgreSQL schema, connector, ClickHouse database, topics,
consumer group), so the graded tests can run on throw-away names; the defaults are the platform's.
Clients come from `harness.services`: `pg_connect()`, `clickhouse_client()`, `kafka_config()`.
Run the whole pipeline with `python -m labs.lab05_cdc.cdc setup` and `... replicate`.
"""

from __future__ import annotations

import json
import re
import time
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import quote

import requests
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from harness.config import CLICKHOUSE_DB, ROOT, endpoints, setting, stack
from harness.services import ServiceUnavailable, kafka_config

# Names kept from the platform description: topics opensky.public.processed_flights and
# opensky.public.flight_statistics are <topic.prefix>.<schema>.<table>.
CONNECTOR_NAME = "opensky-postgres"
CONFIG_FILE = ROOT / "infra" / "debezium" / f"{CONNECTOR_NAME}.json"
CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
TOPIC_PREFIX = "opensky"
SCHEMA = "public"
TABLES = ("processed_flights", "flight_statistics")
PRIMARY_KEYS = {
    "processed_flights": ("icao24", "fetch_time"),
    "flight_statistics": ("origin_country", "stat_date"),
}
REPLICA_DATABASE = CLICKHOUSE_DB  # "opensky"
REPLICA_TABLES = {table: f"{table}_replica" for table in TABLES}
VERSION_COLUMN = "_version"
DELETED_COLUMN = "_deleted"
OPS = {"r": "read (snapshot)", "c": "create", "u": "update", "d": "delete"}

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ------------------------------------------------------------------ given: names and errors
class ConnectorError(RuntimeError):
    """Kafka Connect refused a connector, or its task failed; the message is Connect's own."""


def check_identifier(name: str) -> str:
    """`name` if it is a plain lower-case SQL identifier, else ValueError (names cannot be bound)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case identifier ([a-z_][a-z0-9_]*)")
    return name


def cdc_topic(table: str, schema: str = SCHEMA, prefix: str = TOPIC_PREFIX) -> str:
    """The topic Debezium writes `schema.table`'s changes to: `<prefix>.<schema>.<table>`."""
    return f"{prefix}.{schema}.{table}"


# ------------------------------------------------------------------ given: typed rows and events
@dataclass(frozen=True)
class ProcessedFlight:
    """One row of `processed_flights`: an aircraft's processed position at one fetch time."""

    icao24: str
    fetch_time: datetime  # timezone-aware, UTC
    callsign: str | None
    origin_country: str
    longitude: float | None
    latitude: float | None
    baro_altitude: float | None
    velocity: float | None
    on_ground: bool


@dataclass(frozen=True)
class FlightStatistics:
    """One row of `flight_statistics`: a country's figures for one day."""

    origin_country: str
    stat_date: date
    flight_count: int
    avg_velocity: float | None
    max_altitude: float | None


Row = ProcessedFlight | FlightStatistics
ROW_TYPES: dict[str, type] = {
    "processed_flights": ProcessedFlight,
    "flight_statistics": FlightStatistics,
}


@dataclass(frozen=True)
class ChangeEvent:
    """One Debezium change event (or a tombstone: `op` None, no before/after, empty source)."""

    topic: str
    table: str
    op: str | None  # "r", "c", "u", "d"; None for a tombstone
    key: dict[str, Any] | None  # the message key's fields, as sent (primary-key columns)
    before: Row | None
    after: Row | None
    source: dict[str, Any]  # Debezium's `source` block: table, schema, lsn, txId, ts_ms, ...

    @property
    def is_tombstone(self) -> bool:
        return self.op is None

    @property
    def lsn(self) -> int | None:
        """The change's position in PostgreSQL's write-ahead log (`source.lsn`)."""
        return self.source.get("lsn")


@dataclass
class ApplyStats:
    """What one `apply_events` call wrote to the replica."""

    upserts: int = 0
    deletes: int = 0
    tombstones: int = 0


@dataclass
class ReplicationRun:
    """What one `replicate` call did."""

    messages: int = 0  # Kafka messages consumed (change events and tombstones)
    upserts: int = 0
    deletes: int = 0
    tombstones: int = 0
    commits: int = 0  # offset commits, one per applied batch


# ------------------------------------------------------------------ given: Kafka Connect access
def connect_request(method: str, path: str, **kwargs: Any) -> requests.Response:
    """One request to the Kafka Connect REST API (`path` like "/connectors"); no status check."""
    url = endpoints().connect_url.rstrip("/")
    kwargs.setdefault("timeout", 60)
    try:
        return requests.request(method, url + path, **kwargs)
    except requests.ConnectionError as exc:
        raise ServiceUnavailable("Kafka Connect (Debezium)", url, str(exc)) from exc


def connect_message(response: requests.Response) -> str:
    """Connect's error message from a response body (`{"error_code": .., "message": ..}`)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:2000]
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return json.dumps(body)[:2000]


def trace_summary(trace: str | None) -> str:
    """The informative lines of a Java stack trace: the first line and every `Caused by:`."""
    if not trace:
        return "(no trace)"
    lines = trace.strip().splitlines()
    causes = [line.strip() for line in lines[1:] if line.strip().startswith("Caused by:")]
    return "\n".join([lines[0].strip(), *causes])


def wait_for_status_change(name: str, grace: float = 10.0) -> None:
    """After a config update or a restart, wait (at most `grace` s) until the connector's status
    leaves RUNNING: for a moment Connect still reports the state from before."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        response = connect_request("GET", f"/connectors/{quote(name, safe='')}/status")
        if response.status_code == 200:
            body = response.json()
            states = [body["connector"]["state"]] + [t["state"] for t in body.get("tasks", [])]
            if any(state != "RUNNING" for state in states):
                return
        time.sleep(0.1)


def connect_side_settings() -> dict[str, str]:
    """PostgreSQL's address and credentials as the Kafka Connect worker sees them.

    These fill the `${POSTGRES_*}` placeholders of the connector's JSON file. The worker resolves
    `database.hostname` itself: natively that is 127.0.0.1, inside docker compose the service name.
    """
    ep = endpoints()
    host, port = ep.pg_host, str(ep.pg_port)
    if stack() == "docker":
        from harness.docker_stack import in_network_endpoints

        inside = in_network_endpoints()
        host, port = inside["pg_host"], inside["pg_port"]
    return {
        "POSTGRES_HOST": setting("DEBEZIUM_DATABASE_HOST", host),
        "POSTGRES_PORT": setting("DEBEZIUM_DATABASE_PORT", port),
        "POSTGRES_DB": ep.pg_db,
        "POSTGRES_USER": ep.pg_user,
        "POSTGRES_PASSWORD": ep.pg_password,
    }


# ------------------------------------------------------------------ given: Kafka position
def caught_up(consumer: Consumer) -> bool:
    """True once the consumer has partitions and its position in each is at the partition's end."""
    assignment = consumer.assignment()
    if not assignment:
        return False
    committed = {
        (tp.topic, tp.partition): tp.offset for tp in consumer.committed(assignment, timeout=10)
    }
    for tp in consumer.position(assignment):
        low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        position = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), -1)
        if position < 0:  # nothing read and nothing committed: auto.offset.reset=earliest
            position = low
        if position < high:
            return False
    return True


# ================================================================== part A: source tables
def create_source_tables(conn: Any, schema: str = SCHEMA) -> None:
    """Create `schema` and its tables processed_flights and flight_statistics (primary keys,
    REPLICA IDENTITY FULL); safe to run again."""
    raise NotImplementedError("Lab 05, part A: create_source_tables() — see labs/lab05_cdc/README.md")


# ================================================================== part B: the connector
def connector_config(
    name: str = CONNECTOR_NAME,
    *,
    schema: str = SCHEMA,
    topic_prefix: str = TOPIC_PREFIX,
    slot_name: str | None = None,
    publication_name: str | None = None,
    path: Path = CONFIG_FILE,
) -> dict[str, str]:
    """The connector's configuration: the JSON file with its `${VAR}` placeholders filled from
    `connect_side_settings()`, then the given names; every value a string."""
    raise NotImplementedError("Lab 05, part B: connector_config() — see labs/lab05_cdc/README.md")


def wait_until_running(name: str, *, timeout: float = 90.0) -> dict[str, Any]:
    """Poll the connector's status until the connector and every task are RUNNING and return it;
    a FAILED connector or task raises ConnectorError with its trace, at once."""
    raise NotImplementedError("Lab 05, part B: wait_until_running() — see labs/lab05_cdc/README.md")


def register_connector(config: dict[str, str], *, timeout: float = 90.0) -> dict[str, Any]:
    """Create or update connector `config["name"]` with one PUT of its config, wait until it and
    its task run, return the status; Connect's own error message on a bad config or a failed task."""
    raise NotImplementedError("Lab 05, part B: register_connector() — see labs/lab05_cdc/README.md")


# ================================================================== part C: change events
def decode_row(table: str, data: dict[str, Any] | None) -> Row | None:
    """A `before`/`after` block as the table's dataclass, with Debezium's encodings decoded
    (timestamptz: ISO-8601 string, date: days since 1970-01-01); None stays None."""
    raise NotImplementedError("Lab 05, part C: decode_row() — see labs/lab05_cdc/README.md")


def parse_event(topic: str, key: bytes | str | None, value: bytes | str | None) -> ChangeEvent:
    """One Kafka message of a CDC topic as a ChangeEvent: with or without the JsonConverter's
    schema envelope; op r/c/u/d; a null value is a tombstone. Malformed input: ValueError."""

    raise NotImplementedError("Lab 05, part C: parse_event() — see labs/lab05_cdc/README.md")


# ================================================================== part D: the replica
def create_replica_tables(client: Any, database: str = REPLICA_DATABASE) -> None:
    """Create `database` and the ReplacingMergeTree(_version, _deleted) replica of each source
    table, sorted by its primary key; safe to run again."""
    raise NotImplementedError("Lab 05, part D: create_replica_tables() — see labs/lab05_cdc/README.md")


def apply_events(client: Any, database: str, events: Iterable[ChangeEvent]) -> ApplyStats:
    """Write change events to the replica: a new version of the row per event (version = the
    event's LSN; deletes carry `_deleted = 1`); tombstones are counted and skipped."""
    raise NotImplementedError("Lab 05, part D: apply_events() — see labs/lab05_cdc/README.md")


def read_replica(client: Any, database: str, table: str) -> list[Row]:
    """The replica of source table `table` as it stands: latest version per key, deleted rows
    left out, sorted by primary key."""
    raise NotImplementedError("Lab 05, part D: read_replica() — see labs/lab05_cdc/README.md")


# ================================================================== part E: restarts
def replicate(
    client: Any,
    database: str,
    topics: Sequence[str],
    group_id: str,
    *,
    max_messages: int | None = None,
    timeout: float = 60.0,
    batch_size: int = 500,
) -> ReplicationRun:
    """Consume `topics` as `group_id` from its committed offsets (earliest for a new group), apply
    each batch, then commit it; stop after `max_messages` messages or once caught up."""
    raise NotImplementedError("Lab 05, part E: replicate() — see labs/lab05_cdc/README.md")


def restart_connector(name: str, *, timeout: float = 90.0) -> dict[str, Any]:
    """Restart the connector and its tasks (POST .../restart?includeTasks=true) and wait until
    they run again; return the status."""
    raise NotImplementedError("Lab 05, part E: restart_connector() — see labs/lab05_cdc/README.md")


# ------------------------------------------------------------------ given: the whole pipeline
def setup_pipeline(conn: Any, client: Any) -> dict[str, Any]:
    """The platform's pipeline: source tables in `public`, the connector from the JSON file, the
    replica tables in ClickHouse `opensky`. Returns the connector's status."""
    create_source_tables(conn, SCHEMA)
    create_replica_tables(client, REPLICA_DATABASE)
    return register_connector(connector_config())


def main(argv: list[str] | None = None) -> int:
    """`python -m labs.lab05_cdc.cdc setup|replicate|status` on the running stack."""
    import argparse

    from harness.services import clickhouse_client, pg_connect

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["setup", "replicate", "status", "restart"])
    parser.add_argument("--group", default="opensky-cdc-replica", help="consumer group id")
    args = parser.parse_args(argv)
    try:
        if args.command == "setup":
            with pg_connect() as conn:
                status = setup_pipeline(conn, clickhouse_client())
            print(f"connector {status['name']}: {status['connector']['state']}")
        elif args.command == "replicate":
            topics = [cdc_topic(table) for table in TABLES]
            run = replicate(clickhouse_client(), REPLICA_DATABASE, topics, args.group)
            print(f"{topics}: {run}")
        elif args.command == "restart":
            print(restart_connector(CONNECTOR_NAME))
        else:
            response = connect_request("GET", f"/connectors/{CONNECTOR_NAME}/status")
            if response.status_code == 404:
                print(f"connector {CONNECTOR_NAME} is not registered: run the `setup` command")
                return 1
            print(json.dumps(response.json(), indent=2))
    except ConnectorError as exc:
        print(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
