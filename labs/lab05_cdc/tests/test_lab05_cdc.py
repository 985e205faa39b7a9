"""Graded test suite for Lab 05 — used by `make lab-5` and instructors' grading.

Real PostgreSQL (wal_level=logical), Kafka Connect with Debezium, Kafka and ClickHouse. Parts C-E
share one connector per test session (its own schema, slot, publication and topic prefix);
part B registers its own. Every name is unique and removed afterwards.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from cdc_support import (
    COLUMNS,
    CONFIG_FILE,
    CONNECTOR_CLASS,
    D0,
    PRIMARY_KEYS,
    REPLICA_DDL,
    T0,
    TABLES,
    WAIT_S,
    commit,
    committed,
    connect,
    connector_states,
    create_source_tables,
    file_config,
    fill_placeholders,
    fold,
    insert,
    payload,
    read_all,
    replica_rows,
    settle,
    slot_pid,
    source_rows,
    suite_event,
    wait_for_messages,
    wait_slot_active,
)

from harness.runtime.schema import FLIGHT_STATISTICS_COLUMNS, PROCESSED_FLIGHTS_COLUMNS

pytestmark = pytest.mark.timeout(300)

_days = itertools.count(1)


# ------------------------------------------------------------------ hand-made rows and DML
def flight(icao24: str, when: datetime = T0, **fields: Any) -> dict[str, Any]:
    """One processed_flights row with plain defaults."""
    row = {
        "icao24": icao24,
        "fetch_time": when,
        "callsign": f"CS{icao24[:5].upper()}",
        "origin_country": "Switzerland",
        "longitude": 8.5,
        "latitude": 47.4,
        "baro_altitude": 10000.0,
        "velocity": 230.0,
        "on_ground": False,
    }
    row.update(fields)
    return row


def stats(country: str, day: date, **fields: Any) -> dict[str, Any]:
    """One flight_statistics row with plain defaults."""
    row = {
        "origin_country": country,
        "stat_date": day,
        "flight_count": 10,
        "avg_velocity": 210.5,
        "max_altitude": 11000.0,
    }
    row.update(fields)
    return row


def mix(pg, schema: str) -> None:
    """A scripted mix of INSERTs, UPDATEs and DELETEs on both tables, on keys no other call uses."""
    tag = uuid.uuid4().hex[:4]
    day = D0 + timedelta(days=next(_days))
    fl = [flight(f"{tag}{i:02d}", T0 + timedelta(minutes=i), velocity=200.0 + i) for i in range(9)]
    fl[7]["fetch_time"] = T0 + timedelta(seconds=1, microseconds=123456)
    st = [stats(country, day) for country in ("Switzerland", "Germany", "France")]
    pf, fs = f"{schema}.processed_flights", f"{schema}.flight_statistics"
    with pg.transaction():
        for row in fl[:8]:
            insert(pg, schema, "processed_flights", row)
        for row in st:
            insert(pg, schema, "flight_statistics", row)
    pg.execute(
        f"UPDATE {pf} SET velocity = 250.25, baro_altitude = NULL WHERE icao24 = %s",
        (fl[1]["icao24"],),
    )
    pg.execute(f"UPDATE {pf} SET callsign = NULL WHERE icao24 = %s", (fl[2]["icao24"],))
    pg.execute(
        f"UPDATE {fs} SET flight_count = flight_count + 1, avg_velocity = 199.75 "
        "WHERE origin_country = %s AND stat_date = %s",
        ("Switzerland", day),
    )
    pg.execute(f"DELETE FROM {pf} WHERE icao24 = %s", (fl[3]["icao24"],))
    pg.execute(f"DELETE FROM {fs} WHERE origin_country = %s AND stat_date = %s", ("Germany", day))
    with pg.transaction():  # several changes of one row in one transaction
        pg.execute(f"UPDATE {pf} SET velocity = 1.5 WHERE icao24 = %s", (fl[4]["icao24"],))
        pg.execute(f"UPDATE {pf} SET velocity = 2.5 WHERE icao24 = %s", (fl[4]["icao24"],))
        insert(pg, schema, "processed_flights", fl[8])
        pg.execute(f"DELETE FROM {pf} WHERE icao24 = %s", (fl[8]["icao24"],))
        for count in (20, 21):
            pg.execute(
                f"UPDATE {fs} SET flight_count = %s, max_altitude = NULL "
                "WHERE origin_country = %s AND stat_date = %s",
                (count, "France", day),
            )
    # A primary-key change: Debezium sends a delete of the old key and a create of the new one.
    pg.execute(
        f"UPDATE {pf} SET fetch_time = fetch_time + interval '10 seconds' WHERE icao24 = %s",
        (fl[5]["icao24"],),
    )
    pg.execute(f"DELETE FROM {pf} WHERE icao24 = %s", (fl[6]["icao24"],))
    insert(pg, schema, "processed_flights", {**fl[6], "callsign": "BACK1", "velocity": 99.0})
    pg.execute(
        f"UPDATE {pf} SET on_ground = true WHERE icao24 IN (%s, %s)",
        (fl[0]["icao24"], fl[7]["icao24"]),
    )


def show(rows: list[Any]) -> str:
    return "\n      " + "\n      ".join(repr(r) for r in rows) if rows else " (none)"


def expect_replica(ch, pg, database: str, schema: str, part: str, hint: str) -> None:
    """The replica, read with FINAL and without deleted rows, equals the source tables."""
    for table in TABLES:
        expected = source_rows(pg, schema, table)
        actual = replica_rows(ch, database, table)
        if actual != expected:
            missing = [r for r in expected if r not in actual]
            extra = [r for r in actual if r not in expected]
            pytest.fail(
                f"Lab 05, part {part}: the ClickHouse replica of {table} differs from PostgreSQL "
                f"({len(actual)} rows instead of {len(expected)}).\n"
                f"  in PostgreSQL but not (or not so) in the replica:{show(missing[:8])}\n"
                f"  in the replica but not (or not so) in PostgreSQL:{show(extra[:8])}\n"
                f"  Hint: {hint}"
            )


def all_messages(pg, names) -> list:
    settled = settle(pg, names)
    return [m for table in TABLES for m in settled[table]]


# ================================================================== part A: source tables
def pg_columns(pg, schema: str, table: str) -> list[tuple[str, str, bool]]:
    return pg.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (schema, table),
    ).fetchall()


def pg_primary_key(pg, schema: str, table: str) -> list[str]:
    row = pg.execute(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary",
        (schema, table),
    ).fetchone()
    return list(row[0] or [])


def replica_identity(pg, schema: str, table: str) -> str | None:
    row = pg.execute(
        "SELECT c.relreplident FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    return None if row is None else str(row[0])


# The README's columns (name, type as information_schema names it, NOT NULL): the first nine of
# the platform's processed_flights and the first five of its flight_statistics, the ones this lab
# captures (harness.runtime.schema).
PG_TYPE_NAMES = {"timestamptz": "timestamp with time zone"}


def as_reported(columns: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    return [(name, PG_TYPE_NAMES.get(kind, kind), not_null) for name, kind, not_null in columns]


EXPECTED_COLUMNS = {
    "processed_flights": as_reported(PROCESSED_FLIGHTS_COLUMNS[:9]),
    "flight_statistics": as_reported(FLIGHT_STATISTICS_COLUMNS[:5]),
}
PLATFORM_EXTRA = as_reported(PROCESSED_FLIGHTS_COLUMNS[9:])


@pytest.mark.points(3)
def test_partA_tables_columns_and_primary_keys(mod, pg, pg_schema):
    """Both tables exist in the given schema with the README's columns, types and primary keys."""
    mod.create_source_tables(pg, pg_schema)
    for table in TABLES:
        actual = pg_columns(pg, pg_schema, table)
        if (
            table == "processed_flights"
            and actual[len(EXPECTED_COLUMNS[table]) :] == PLATFORM_EXTRA
        ):
            # The platform's own definition (harness.runtime.schema) adds nullable columns after
            # the nine this lab captures; a table made from it is right too.
            actual = actual[: len(EXPECTED_COLUMNS[table])]
        assert actual, (
            f"Lab 05, part A: table {pg_schema}.{table} does not exist after "
            f"create_source_tables(conn, {pg_schema!r}). Hint: create the schema and the tables "
            f"in the `schema` argument, not in `public`."
        )
        assert actual == EXPECTED_COLUMNS[table], (
            f"Lab 05, part A: columns of {table} (name, type, NOT NULL) differ from the README."
            f"\n  expected:{show(EXPECTED_COLUMNS[table])}\n  got:     {show(actual)}\n"
            f"  Hint: timestamptz for times, double precision for measurements, NOT NULL only "
            f"where the README says so."
        )
        key = pg_primary_key(pg, pg_schema, table)
        assert key == list(PRIMARY_KEYS[table]), (
            f"Lab 05, part A: the primary key of {table} should be {PRIMARY_KEYS[table]}, got "
            f"{key or 'none'}. Hint: Debezium uses the primary key as the Kafka message key, and "
            f"the replica needs it to know which row an event changes."
        )


@pytest.mark.points(3)
def test_partA_replica_identity_full_and_rerunnable(mod, pg, pg_schema):
    """REPLICA IDENTITY FULL on both tables; a second call keeps the tables and their rows."""
    mod.create_source_tables(pg, pg_schema)
    insert(pg, pg_schema, "processed_flights", flight("4b1814"))
    mod.create_source_tables(pg, pg_schema)
    count = pg.execute(f"SELECT count(*) FROM {pg_schema}.processed_flights").fetchone()[0]
    assert count == 1, (
        f"Lab 05, part A: calling create_source_tables a second time must keep existing rows; "
        f"processed_flights has {count} rows instead of 1. Hint: CREATE ... IF NOT EXISTS."
    )
    names = {"d": "DEFAULT (primary key only)", "n": "NOTHING", "i": "USING INDEX", "f": "FULL"}
    for table in TABLES:
        identity = replica_identity(pg, pg_schema, table)
        assert identity == "f", (
            f"Lab 05, part A: {table} has REPLICA IDENTITY {names.get(identity, identity)}, "
            f"expected FULL. Hint: with the default only the primary key of the old row is "
            f"written to the WAL, so Debezium's `before` of an UPDATE is null and that of a "
            f"DELETE has only the key: ALTER TABLE ... REPLICA IDENTITY FULL."
        )


# ================================================================== part B: the connector
@pytest.mark.points(3)
def test_partB_connector_config_from_the_json_file(mod, tmp_path):
    """connector_config reads infra/debezium/opensky-postgres.json, fills placeholders, renames."""
    raw = json.loads(CONFIG_FILE.read_text())
    defaults = json.loads(fill_placeholders(CONFIG_FILE.read_text()))
    actual = mod.connector_config()
    assert actual == defaults, (
        f"Lab 05, part B: connector_config() should be the JSON file with its ${{...}} "
        f"placeholders filled in (and nothing else changed).\n"
        f"  differing keys: {sorted(k for k in set(actual) | set(defaults) if actual.get(k) != defaults.get(k))}\n"
        f"  Hint: fill the placeholders from connect_side_settings(); values stay strings."
    )
    assert "${" in raw["database.password"] and "${" not in json.dumps(actual), (
        "Lab 05, part B: the file keeps a placeholder for the password, and the config sent to "
        "Connect must have none left."
    )
    assert (actual["topic.prefix"], actual["plugin.name"], actual["connector.class"]) == (
        "opensky",
        "pgoutput",
        CONNECTOR_CLASS,
    )
    assert actual["table.include.list"] == "public.processed_flights,public.flight_statistics"

    edited = dict(raw, **{"snapshot.mode": "no_data", "heartbeat.interval.ms": "5000"})
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(edited))
    named = mod.connector_config(
        "lab05-x",
        schema="sx",
        topic_prefix="px",
        slot_name="slot_x",
        publication_name="pub_x",
        path=path,
    )
    expected = json.loads(fill_placeholders(path.read_text()))
    expected.update(
        {
            "name": "lab05-x",
            "topic.prefix": "px",
            "table.include.list": "sx.processed_flights,sx.flight_statistics",
            "slot.name": "slot_x",
            "publication.name": "pub_x",
        }
    )
    assert named == expected, (
        f"Lab 05, part B: connector_config('lab05-x', schema='sx', topic_prefix='px', "
        f"slot_name='slot_x', publication_name='pub_x', path=<edited file>) is wrong.\n"
        f"  expected: {expected}\n  got:      {named}\n"
        f"  Hint: read the file at `path` (not a hard-coded one) and set name, topic.prefix, "
        f"table.include.list (<schema>.<table>, comma-separated), slot.name, publication.name."
    )


@pytest.mark.points(4)
def test_partB_register_is_idempotent_and_captures_changes(mod, pg, connect_ready, cdc_names):
    """register_connector PUTs the config, returns once RUNNING, can run again; INSERTs arrive."""
    names = cdc_names("reg")
    create_source_tables(pg, names.schema)
    config = file_config(names)
    for attempt in ("first", "second"):
        status = mod.register_connector(config, timeout=WAIT_S)
        states, _ = connector_states(names.connector)
        assert states and all(s == "RUNNING" for s in states) and len(states) == 2, (
            f"Lab 05, part B: after the {attempt} register_connector call Kafka Connect reports "
            f"{states or 'no such connector'} for {names.connector}; expected the connector and "
            f"its task RUNNING. Hint: PUT /connectors/<name>/config, then poll "
            f"/connectors/<name>/status until the connector and every task are RUNNING."
        )
        assert isinstance(status, dict) and status.get("connector", {}).get("state") == (
            "RUNNING"
        ), f"Lab 05, part B: register_connector should return the status it waited for: {status}"
    listed = connect("GET", "/connectors").json()
    assert listed.count(names.connector) == 1, f"connectors: {listed}"
    stored = connect("GET", f"/connectors/{names.connector}/config").json()
    assert stored == config, (
        f"Lab 05, part B: Connect stores a different config than the one registered:\n"
        f"  expected: {config}\n  stored:   {stored}"
    )
    assert wait_slot_active(pg, names.slot) is not None, (
        f"Lab 05, part B: the connector runs but replication slot {names.slot} never became active."
    )
    insert(pg, names.schema, "processed_flights", flight("3c6444", callsign="DLH4AB"))
    topic = names.topic("processed_flights")
    found = wait_for_messages(topic, lambda m: m.value() is not None, 1)
    assert found, f"Lab 05, part B: no change event on {topic} within {WAIT_S:.0f} s."
    event = json.loads(found[0].value())
    assert set(event) >= {"before", "after", "op", "source"} and event["op"] == "c", (
        f"Lab 05, part B: with the file's converters (schemas.enable=false) events look like the "
        f"platform's events ({{before, after, op, source}}); got {event}"
    )
    assert event["after"]["callsign"] == "DLH4AB"


@pytest.mark.points(2)
def test_partB_invalid_config_returns_connects_errors(mod, pg, connect_ready, cdc_names):
    """A config Connect rejects (bad plugin.name, wrong password) raises ConnectorError with
    Connect's own messages, at once."""
    names = cdc_names("bad")
    create_source_tables(pg, names.schema)
    cases = [
        ({"plugin.name": "wal2json"}, ["plugin.name", "pgoutput"]),
        ({"database.password": "not-the-password"}, ["password authentication failed"]),
    ]
    for override, needles in cases:
        config = {**file_config(names), **override}
        with pytest.raises(mod.ConnectorError) as raised:
            mod.register_connector(config, timeout=30)
        message = str(raised.value)
        assert all(needle in message for needle in needles), (
            f"Lab 05, part B: with {override} register_connector should raise ConnectorError "
            f"carrying Kafka Connect's explanation (mentioning {needles}); the message was:\n  "
            f"{message[:800]}\n  Hint: ask Connect to check the config first — PUT "
            f"/connector-plugins/<class>/config/validate lists every error per field — and put "
            f"those errors (or the body of a 4xx/5xx answer) into the exception."
        )


@pytest.mark.points(2)
def test_partB_failed_task_returns_its_trace(mod, pg, connect_ready, cdc_names):
    """A connector whose task fails (its tables do not exist) raises ConnectorError with the
    task's error, not a timeout."""
    names = cdc_names("fail")
    pg.execute(f"CREATE SCHEMA {names.schema}")  # but no tables in it
    started = time.monotonic()
    with pytest.raises(mod.ConnectorError) as raised:
        mod.register_connector(file_config(names), timeout=120)
    waited = time.monotonic() - started
    message = str(raised.value)
    assert waited < 60, (
        f"Lab 05, part B: the task failed within seconds, but register_connector(..., "
        f"timeout=120) took {waited:.0f} s to give up. Hint: stop waiting as soon as the "
        f"connector or a task is FAILED."
    )
    assert "Unable to create filtered publication" in message, (
        f"Lab 05, part B: the task fails because the tables to publish do not exist; "
        f"register_connector should raise ConnectorError with the task's trace (it starts with "
        f"'... Unable to create filtered publication ...'). The message was:\n  {message[:800]}\n"
        f"  Hint: a FAILED connector or task in /connectors/<name>/status carries a `trace`; "
        f"stop waiting as soon as you see FAILED."
    )


# ================================================================== part C: change events
def key_of(message) -> dict[str, Any]:
    return payload(message.key()) or {}


@pytest.mark.points(3)
def test_partC_insert_update_delete_events(mod, pg, pipeline):
    """An INSERT, UPDATE and DELETE arrive as c, u, d (+ tombstone) with typed before/after."""
    names = pipeline.names
    icao24 = f"c{uuid.uuid4().hex[:5]}"
    row = flight(icao24, T0 + timedelta(seconds=30), callsign="SWR7KM", velocity=180.25)
    insert(pg, names.schema, "processed_flights", row)
    pf = f"{names.schema}.processed_flights"
    pg.execute(f"UPDATE {pf} SET velocity = 190.5, callsign = NULL WHERE icao24 = %s", (icao24,))
    pg.execute(f"DELETE FROM {pf} WHERE icao24 = %s", (icao24,))
    topic = names.topic("processed_flights")
    messages = wait_for_messages(topic, lambda m: key_of(m).get("icao24") == icao24, 4)
    assert len(messages) == 4, (
        f"Lab 05, part C (test set-up): expected 4 messages for {icao24} on {topic}, got "
        f"{len(messages)} within {WAIT_S:.0f} s"
    )
    events = [mod.parse_event(m.topic(), m.key(), m.value()) for m in messages]
    ops = [e.op for e in events]
    assert ops == ["c", "u", "d", None], (
        f"Lab 05, part C: ops of INSERT, UPDATE, DELETE (+ the tombstone after a delete) should "
        f"be ['c', 'u', 'd', None], got {ops}. Hint: a message whose value is null is a "
        f"tombstone: op None."
    )
    created, updated, deleted, tombstone = events
    first = mod.ProcessedFlight(**row)
    second = mod.ProcessedFlight(**{**row, "velocity": 190.5, "callsign": None})
    checks = [
        ("c: before", created.before, None),
        ("c: after", created.after, first),
        ("u: before", updated.before, first),
        ("u: after", updated.after, second),
        ("d: before", deleted.before, second),
        ("d: after", deleted.after, None),
        ("tombstone: before/after", (tombstone.before, tombstone.after), (None, None)),
    ]
    for what, actual, expected in checks:
        assert actual == expected, (
            f"Lab 05, part C: {what} should be\n    {expected!r}\n  got {actual!r}\n"
            f"  Hint: fetch_time is a timezone-aware datetime (Debezium sends timestamptz as an "
            f"ISO-8601 string); a delete's `before` is the whole old row (REPLICA IDENTITY FULL)."
        )
    for event in events[:3]:
        assert event.source.get("table") == "processed_flights" and (
            event.source.get("schema") == names.schema
        ), f"Lab 05, part C: `source` should be Debezium's source block, got {event.source}"
        assert event.table == "processed_flights" and event.topic == topic
    lsns = [e.lsn for e in events[:3]]
    assert lsns == sorted(lsns) and len(set(lsns)) == 3, f"LSNs should grow: {lsns}"
    assert tombstone.is_tombstone and tombstone.table == "processed_flights", (
        f"Lab 05, part C: a tombstone still names its table (from the topic): {tombstone}"
    )
    assert tombstone.key and tombstone.key.get("icao24") == icao24, (
        f"Lab 05, part C: a tombstone's key is the deleted row's key; got {tombstone.key}"
    )


@pytest.mark.points(2)
def test_partC_snapshot_and_flight_statistics_events(mod, pg, pipeline):
    """Rows that existed before the connector arrive as op r; flight_statistics rows are typed."""
    names = pipeline.names
    seed = pipeline.seeded["flight_statistics"][0]
    fs = f"{names.schema}.flight_statistics"
    pg.execute(
        f"UPDATE {fs} SET flight_count = 13 WHERE origin_country = %s AND stat_date = %s",
        (seed["origin_country"], seed["stat_date"]),
    )
    topic = names.topic("flight_statistics")
    wanted = D0 - date(1970, 1, 1)
    messages = wait_for_messages(
        topic, lambda m: key_of(m).get("stat_date") == wanted.days and m.value() is not None, 2
    )
    assert len(messages) >= 2, f"Lab 05, part C (test set-up): events on {topic}: {messages}"
    events = [mod.parse_event(m.topic(), m.key(), m.value()) for m in messages[:2]]
    snapshot, update = events
    expected = mod.FlightStatistics(**seed)
    assert (snapshot.op, snapshot.before, snapshot.after) == ("r", None, expected), (
        f"Lab 05, part C: the row inserted before the connector started should come as a "
        f"snapshot read (op 'r', no before, after = the row):\n    expected ('r', None, "
        f"{expected!r})\n  got ({snapshot.op!r}, {snapshot.before!r}, {snapshot.after!r})\n"
        f"  Hint: stat_date is a datetime.date; Debezium sends a date as days since 1970-01-01."
    )
    assert (update.op, update.before, update.after) == (
        "u",
        expected,
        mod.FlightStatistics(**{**seed, "flight_count": 13}),
    ), f"Lab 05, part C: wrong update event: {update}"
    seeded_flight = pipeline.seeded["processed_flights"][0]
    snap = [
        m
        for m in read_all(names.topic("processed_flights"))
        if key_of(m).get("icao24") == seeded_flight["icao24"] and m.value() is not None
    ]
    first = mod.parse_event(snap[0].topic(), snap[0].key(), snap[0].value())
    assert (first.op, first.after) == ("r", mod.ProcessedFlight(**seeded_flight)), (
        f"Lab 05, part C: the processed_flights row that existed before the connector started "
        f"should arrive as a snapshot read (op 'r'); got {first}"
    )


@pytest.mark.points(2)
def test_partC_with_and_without_schema_envelope(mod, pg, pipeline):
    """The same event parses the same with JsonConverter schemas.enable=true and =false."""
    messages = all_messages(pg, pipeline.names)
    enveloped = [m for m in messages if m.value() is not None and b'"schema"' in m.value()[:20]]
    assert enveloped, "Lab 05, part C (test set-up): expected events with a schema envelope"

    def strip(raw: bytes | None) -> bytes | None:
        return None if raw is None else json.dumps(payload(raw)).encode()

    for m in messages:
        with_schema = mod.parse_event(m.topic(), m.key(), m.value())
        without = mod.parse_event(m.topic(), strip(m.key()), strip(m.value()))
        assert with_schema == without, (
            f"Lab 05, part C: one event, parsed with and without the schema envelope, gives two "
            f"results:\n  with:    {with_schema}\n  without: {without}\n  Hint: with "
            f'schemas.enable=true key and value are {{"schema": ..., "payload": ...}}; the '
            f"event is the payload."
        )
        expected_op = None if m.value() is None else payload(m.value())["op"]
        assert with_schema.op == expected_op


@pytest.mark.points(2)
def test_partC_tombstones_and_malformed_events(mod):
    """A null value is a tombstone; malformed events raise ValueError instead of vanishing."""
    topic = "opensky.public.flight_statistics"
    key = json.dumps({"origin_country": "France", "stat_date": 19783}).encode()
    tombstone = mod.parse_event(topic, key, None)
    assert (tombstone.op, tombstone.is_tombstone, tombstone.table, tombstone.key) == (
        None,
        True,
        "flight_statistics",
        {"origin_country": "France", "stat_date": 19783},
    ), f"Lab 05, part C: parse_event(topic, key, None) should be a tombstone; got {tombstone}"
    good_after = {
        "origin_country": "France",
        "stat_date": 19783,
        "flight_count": 3,
        "avg_velocity": None,
        "max_altitude": 9000.0,
    }
    source = {"table": "flight_statistics", "schema": "public", "lsn": 42}
    ok = mod.parse_event(
        topic, key, json.dumps({"op": "c", "before": None, "after": good_after, "source": source})
    )
    assert ok.after == mod.FlightStatistics("France", date(2024, 3, 1), 3, None, 9000.0)
    bad_after = {k: v for k, v in good_after.items() if k != "flight_count"}
    malformed = {
        "not JSON": b"{not json",
        "no op": json.dumps({"before": None, "after": good_after}),
        "unknown op 'x'": json.dumps(
            {"op": "x", "before": None, "after": good_after, "source": source}
        ),
        "after without flight_count": json.dumps(
            {"op": "c", "before": None, "after": bad_after, "source": source}
        ),
        "a create without after": json.dumps(
            {"op": "c", "before": None, "after": None, "source": source}
        ),
        "a snapshot read without after": json.dumps(
            {"op": "r", "before": None, "after": None, "source": source}
        ),
        "a delete without before": json.dumps(
            {"op": "d", "before": None, "after": None, "source": source}
        ),
    }
    for what, value in malformed.items():
        try:
            result = mod.parse_event(topic, key, value)
        except ValueError:
            continue
        pytest.fail(
            f"Lab 05, part C: an event with {what} should raise ValueError, got {result!r}. "
            f"Hint: nothing is dropped silently — a broken event stops the pipeline with a reason."
        )


# ================================================================== part D: the replica
REPLICA_TABLE_NAMES = ("processed_flights_replica", "flight_statistics_replica")
REPLICA_COLUMNS = {
    "processed_flights_replica": [
        ("icao24", "String"),
        ("fetch_time", "DateTime64(6, 'UTC')"),
        ("callsign", "Nullable(String)"),
        ("origin_country", "LowCardinality(String)"),
        ("longitude", "Nullable(Float64)"),
        ("latitude", "Nullable(Float64)"),
        ("baro_altitude", "Nullable(Float64)"),
        ("velocity", "Nullable(Float64)"),
        ("on_ground", "Bool"),
        ("_version", "UInt64"),
        ("_deleted", "UInt8"),
    ],
    "flight_statistics_replica": [
        ("origin_country", "String"),
        ("stat_date", "Date"),
        ("flight_count", "Int32"),
        ("avg_velocity", "Nullable(Float64)"),
        ("max_altitude", "Nullable(Float64)"),
        ("_version", "UInt64"),
        ("_deleted", "UInt8"),
    ],
}


@pytest.mark.points(2)
def test_partD_replica_tables(mod, ch, scratch_db):
    """ReplacingMergeTree(_version, _deleted) sorted by the source's primary key, README columns."""
    mod.create_replica_tables(ch, scratch_db)
    mod.create_replica_tables(ch, scratch_db)  # a second run must not fail
    for source, replica in (
        ("processed_flights", "processed_flights_replica"),
        ("flight_statistics", "flight_statistics_replica"),
    ):
        found = ch.query(
            "SELECT engine_full, sorting_key FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": scratch_db, "t": replica},
        ).result_rows
        assert found, f"Lab 05, part D: table {scratch_db}.{replica} does not exist."
        engine_full, sorting_key = found[0]
        assert engine_full.startswith("ReplacingMergeTree(_version, _deleted)"), (
            f"Lab 05, part D: {replica} should use ENGINE = ReplacingMergeTree(_version, "
            f"_deleted); its definition is {engine_full}. Hint: the highest _version of a key "
            f"wins, and a winner with _deleted = 1 means the row is gone."
        )
        assert sorting_key == ", ".join(PRIMARY_KEYS[source]), (
            f"Lab 05, part D: {replica} should be ORDER BY ({', '.join(PRIMARY_KEYS[source])}) "
            f"— the source's primary key, which is what ReplacingMergeTree deduplicates by; got "
            f"({sorting_key})."
        )
        columns = ch.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String} ORDER BY position",
            parameters={"db": scratch_db, "t": replica},
        ).result_rows
        assert [tuple(c) for c in columns] == REPLICA_COLUMNS[replica], (
            f"Lab 05, part D: columns of {replica} differ from the README:\n  expected:"
            f"{show(REPLICA_COLUMNS[replica])}\n  got:     {show([tuple(c) for c in columns])}"
        )


@pytest.mark.points(2)
def test_partD_read_replica_latest_live_versions(mod, ch, replica_db):
    """read_replica returns, per key, the highest version — unless it is a delete."""
    t1, t2 = T0, T0 + timedelta(minutes=1)
    base = flight("aaa001", t1)
    columns = list(COLUMNS["processed_flights"]) + ["_version", "_deleted"]
    rows = [
        [*flight("aaa001", t1, velocity=1.0).values(), 10, 0],
        [*flight("aaa001", t1, velocity=2.0).values(), 30, 0],
        [*flight("aaa001", t1, velocity=3.0).values(), 20, 0],
        [*flight("bbb002", t1).values(), 10, 0],
        [*flight("bbb002", t1).values(), 40, 1],
        [*flight("ccc003", t2, callsign=None).values(), 5, 0],
    ]
    # One part per version, never merged: only FINAL can pick the winners.
    for table in ("processed_flights_replica", "flight_statistics_replica"):
        ch.command(f"SYSTEM STOP MERGES `{replica_db}`.{table}")
    for row in rows:
        ch.insert("processed_flights_replica", [row], database=replica_db, column_names=columns)
    actual = mod.read_replica(ch, replica_db, "processed_flights")
    expected = [
        mod.ProcessedFlight(**{**base, "velocity": 2.0}),
        mod.ProcessedFlight(**flight("ccc003", t2, callsign=None)),
    ]
    assert actual == expected, (
        f"Lab 05, part D: read_replica should give the latest live version of each key, sorted "
        f"by primary key:\n  expected:{show(expected)}\n  got:     {show(actual)}\n"
        f"  Hint: SELECT ... FINAL WHERE _deleted = 0; DateTime64(6, 'UTC') comes back as a "
        f"naive datetime — make it timezone-aware UTC."
    )
    stat_columns = list(COLUMNS["flight_statistics"]) + ["_version", "_deleted"]
    for row in (
        [*stats("Austria", D0, flight_count=11).values(), 8, 0],
        [*stats("Austria", D0).values(), 7, 0],
    ):
        ch.insert(
            "flight_statistics_replica", [row], database=replica_db, column_names=stat_columns
        )
    assert mod.read_replica(ch, replica_db, "flight_statistics") == [
        mod.FlightStatistics(**stats("Austria", D0, flight_count=11))
    ]


@pytest.mark.points(3)
def test_partD_replica_equals_source_after_a_mix(mod, ch, pg, pipeline, replica_db):
    """After INSERTs, UPDATEs, DELETEs (also in one transaction, and of a primary key) the
    replica read with FINAL equals PostgreSQL."""
    mix(pg, pipeline.names.schema)
    messages = all_messages(pg, pipeline.names)
    events = [suite_event(mod, m) for m in messages]
    # Keep each insert's part apart, so the number of inserts shows.
    for table in REPLICA_TABLE_NAMES:
        ch.command(f"SYSTEM STOP MERGES `{replica_db}`.{table}")
    result = mod.apply_events(ch, replica_db, events)
    expect_replica(
        ch,
        pg,
        replica_db,
        pipeline.names.schema,
        "D",
        "insert one row per event: `after` for r/c/u with _deleted = 0, `before` for d with "
        "_deleted = 1, _version = source.lsn; skip tombstones.",
    )
    kinds = {
        "upserts": sum(1 for e in events if e.op in ("r", "c", "u")),
        "deletes": sum(1 for e in events if e.op == "d"),
        "tombstones": sum(1 for e in events if e.op is None),
    }
    got = {k: getattr(result, k) for k in kinds}
    assert got == kinds, f"Lab 05, part D: apply_events should count {kinds}, counted {got}"
    parts = dict(
        ch.query(
            "SELECT table, count() FROM system.parts WHERE database = {db:String} AND active "
            "GROUP BY table",
            parameters={"db": replica_db},
        ).result_rows
    )
    assert parts == dict.fromkeys(REPLICA_TABLE_NAMES, 1), (
        f"Lab 05, part D: one apply_events call with {len(events)} events should make one insert "
        f"per table; the replica tables now have these parts (one per insert): {parts}. Hint: "
        f"collect the rows per table and send each table's rows in a single client.insert(): "
        f"row-by-row inserts make a part each, which ClickHouse must merge again."
    )


@pytest.mark.points(2)
def test_partD_apply_is_idempotent_and_order_safe(mod, ch, pg, pipeline, replica_db):
    """Applying the events backwards, again, and a stale half once more still gives the source."""
    mix(pg, pipeline.names.schema)
    events = [suite_event(mod, m) for m in all_messages(pg, pipeline.names)]
    hint = (
        "the version must come from the event (source.lsn), not from the time you apply it, so "
        "that an older event applied later never wins over a newer one."
    )
    mod.apply_events(ch, replica_db, list(reversed(events)))
    expect_replica(ch, pg, replica_db, pipeline.names.schema, "D", hint)
    mod.apply_events(ch, replica_db, events)
    mod.apply_events(ch, replica_db, events[: len(events) // 2])
    expect_replica(ch, pg, replica_db, pipeline.names.schema, "D", hint)


# ================================================================== part E: restarts
@pytest.mark.points(3)
def test_partE_stop_and_resume_from_committed_offsets(mod, ch, pg, pipeline, replica_db, groups):
    """Stopped after k messages, the consumer has applied and committed exactly those; restarted,
    it reads only the rest, and the replica equals the source."""
    names = pipeline.names
    mix(pg, names.schema)
    first = all_messages(pg, names)
    group = groups()
    k = max(1, len(first) // 2)
    run = mod.replicate(ch, replica_db, names.topics, group, max_messages=k, timeout=WAIT_S)
    assert run.messages == k, (
        f"Lab 05, part E: replicate(max_messages={k}) should consume exactly {k} messages, "
        f"consumed {run.messages}."
    )
    offsets = committed(group, names.topics)
    assert sum(offsets.values()) == k, (
        f"Lab 05, part E: after replicate(max_messages={k}) the group should have committed "
        f"offsets covering exactly the {k} messages it applied; committed: {offsets}. Hint: "
        f"enable.auto.commit=false, and commit (synchronously) each batch after applying it."
    )
    applied = [m for m in first if m.offset() < offsets.get((m.topic(), m.partition()), 0)]
    for table in TABLES:
        expected = fold(table, [m for m in applied if m.topic().endswith("." + table)])
        assert replica_rows(ch, replica_db, table) == expected, (
            f"Lab 05, part E: after stopping, the replica of {table} should hold exactly the "
            f"changes whose offsets were committed. Hint: apply a batch, then commit it."
        )
    mix(pg, names.schema)  # the source keeps changing while the consumer is down
    total = len(all_messages(pg, names))
    rest = mod.replicate(ch, replica_db, names.topics, group, timeout=WAIT_S)
    assert rest.messages == total - k, (
        f"Lab 05, part E: restarted with the same group, replicate should continue at the "
        f"committed offsets and read the other {total - k} messages; it read {rest.messages}. "
        f"Hint: auto.offset.reset=earliest only applies to a group without committed offsets."
    )
    expect_replica(
        ch, pg, replica_db, names.schema, "E", "stop when every partition is read to its end."
    )


@pytest.mark.points(3)
def test_partE_redelivery_after_a_crash_is_harmless(mod, ch, pg, pipeline, scratch_db, groups):
    """A batch that fails to apply is not committed; events applied but not committed are
    delivered again; either way the replica ends up equal to the source."""
    names = pipeline.names
    group = groups()
    total = len(all_messages(pg, names))
    # The replica tables are missing: applying the first batch fails, as in a crash.
    with pytest.raises(Exception) as crashed:  # noqa: B017 - whatever the failure, it must surface
        mod.replicate(ch, scratch_db, names.topics, group, timeout=WAIT_S)
    assert not isinstance(crashed.value, NotImplementedError), crashed.value
    offsets = committed(group, names.topics)
    assert sum(offsets.values()) == 0, (
        f"Lab 05, part E: applying the first batch failed ({type(crashed.value).__name__}), yet "
        f"the group committed offsets {offsets}: those events would never be applied. Hint: "
        f"commit a batch only after apply_events returned."
    )
    for statement in REPLICA_DDL:
        ch.command(statement.format(db=scratch_db))
    first = mod.replicate(ch, scratch_db, names.topics, group, timeout=WAIT_S)
    assert first.messages == total, (
        f"Lab 05, part E: after the failed run the group should read all {total} messages, "
        f"read {first.messages}."
    )
    ends = committed(group, names.topics)
    rewound = {tp: offset // 2 for tp, offset in ends.items()}
    commit(group, rewound)  # as if the consumer died after applying, before committing
    again = mod.replicate(ch, scratch_db, names.topics, group, timeout=WAIT_S)
    expected = sum(ends.values()) - sum(rewound.values())
    assert again.messages == expected, (
        f"Lab 05, part E: after the rewind the group should re-read {expected} messages, "
        f"read {again.messages}."
    )
    expect_replica(
        ch,
        pg,
        scratch_db,
        names.schema,
        "E",
        "applying an event twice must not change the result (same _version, same row).",
    )


@pytest.mark.points(3)
def test_partE_connector_restart_loses_nothing(mod, ch, pg, pipeline, replica_db, groups):
    """restart_connector restarts connector and task; changes made around it all arrive once in
    effect, and the replica equals the source."""
    names = pipeline.names
    before = slot_pid(pg, names.slot)
    mix(pg, names.schema)  # changes in flight while the connector restarts
    status = mod.restart_connector(names.connector, timeout=WAIT_S)
    assert isinstance(status, dict) and status.get("connector", {}).get("state") == "RUNNING", (
        f"Lab 05, part E: restart_connector should return the RUNNING status, got {status}"
    )
    after = wait_slot_active(pg, names.slot, not_pid=before)
    assert after is not None, (
        f"Lab 05, part E: the connector's task was not restarted: replication slot {names.slot} "
        f"is still held by the same PostgreSQL backend ({before}). Hint: POST "
        f"/connectors/<name>/restart?includeTasks=true (without includeTasks only the connector "
        f"object restarts, not the task that streams)."
    )
    mix(pg, names.schema)
    states, _ = connector_states(names.connector)
    assert states == ["RUNNING", "RUNNING"], f"Lab 05, part E: connector states {states}"
    all_messages(pg, names)  # every change made around the restart reached Kafka
    mod.replicate(ch, replica_db, names.topics, groups(), timeout=WAIT_S)
    expect_replica(
        ch,
        pg,
        replica_db,
        names.schema,
        "E",
        "events re-sent after a restart carry their original LSN, so they replace nothing new.",
    )
