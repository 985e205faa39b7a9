"""Fixtures for Lab 05: the module under test, the services, throw-away names, and one CDC pipeline
per test session (its own schema, tables, connector, replication slot, publication and topic prefix),
all removed afterwards.

The suite registers its pipeline, reads Kafka and reads ClickHouse with its own code
(`cdc_support.py`), never with the code under test, so each part is graded on its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cdc_support import (
    CONNECTOR_CLASS,
    D0,
    REPLICA_DDL,
    T0,
    CdcNames,
    Pipeline,
    connect,
    connect_url,
    create_source_tables,
    insert,
    new_names,
    remove_pipeline,
    suite_config,
    wait_running,
    wait_slot_active,
    warn_cleanup,
)
from confluent_kafka import KafkaException

from harness.grading import lab_module
from harness.grading.suite_helpers import HandOut, fresh_name
from harness.grading.testkit import clickhouse_session, drop_database
from harness.runtime.config import endpoints
from harness.runtime.services import ServiceUnavailable, kafka_admin, pg_connect


# ------------------------------------------------------------------ module under test, clients
@pytest.fixture(scope="module")
def mod():
    """The lab's `cdc` module (labs/ or solutions/, from `--target`)."""
    return lab_module("lab05_cdc", "cdc")


@pytest.fixture(scope="session")
def connect_ready() -> str:
    """Kafka Connect answers and offers the Debezium PostgreSQL plugin."""
    plugins = connect("GET", "/connector-plugins")
    if not plugins.ok or CONNECTOR_CLASS not in {p.get("class") for p in plugins.json()}:
        raise ServiceUnavailable(
            "Kafka Connect (Debezium)",
            connect_url(),
            f"the Debezium PostgreSQL plugin is not loaded: {plugins.text[:300]}",
        )
    return connect_url()


@pytest.fixture(scope="session")
def pg():
    """An autocommit psycopg connection to the lab's PostgreSQL."""
    conn = pg_connect()
    level = conn.execute("SHOW wal_level").fetchone()[0]
    if level != "logical":
        raise ServiceUnavailable(
            "PostgreSQL", endpoints().pg_host, f"wal_level is {level}, Debezium needs logical"
        )
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def ch():
    """A clickhouse-connect client for the lab's ClickHouse."""
    yield from clickhouse_session()


@pytest.fixture(scope="session")
def admin():
    """A Kafka admin client (raises ServiceUnavailable when the broker does not answer)."""
    client = kafka_admin()
    try:
        client.list_topics(timeout=10)
    except KafkaException as exc:
        raise ServiceUnavailable("Kafka broker", endpoints().kafka_bootstrap, str(exc)) from exc
    return client


@pytest.fixture
def cdc_names(pg, admin) -> Iterator[HandOut[CdcNames]]:
    """Hands out unique pipeline names; everything made under them is removed after the test."""
    made = HandOut(new_names)
    yield made
    for names in made.handed_out:
        remove_pipeline(pg, admin, names)


@pytest.fixture
def pg_schema(pg) -> Iterator[str]:
    """A fresh PostgreSQL schema name (not created), dropped with everything in it afterwards."""
    name = fresh_name("lab05_test_")
    yield name
    try:
        pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    except Exception as exc:
        warn_cleanup(f"drop schema {name}", exc)


@pytest.fixture
def scratch_db(ch) -> Iterator[str]:
    """An empty ClickHouse database for this test only, dropped afterwards."""
    name = fresh_name("lab05_test_")
    ch.command(f"CREATE DATABASE `{name}`")
    yield name
    drop_database(ch, name)


@pytest.fixture
def replica_db(ch, scratch_db) -> str:
    """A scratch ClickHouse database holding part D's replica tables (the suite's own DDL)."""
    for statement in REPLICA_DDL:
        ch.command(statement.format(db=scratch_db))
    return scratch_db


@pytest.fixture
def groups(admin) -> Iterator[HandOut[str]]:
    """Hands out unique consumer-group ids; the groups are deleted afterwards."""
    made = HandOut(lambda: fresh_name("lab05-test-"))
    yield made
    if made.handed_out:
        for future in admin.delete_consumer_groups(made.handed_out, request_timeout=15).values():
            try:
                future.result(timeout=30)
            except Exception:
                pass  # never used: nothing to delete


@pytest.fixture(scope="session")
def pipeline(connect_ready, pg, admin) -> Iterator[Pipeline]:
    """One Debezium connector for the whole run, on a fresh schema with both tables; rows
    inserted before it starts arrive as snapshot (op r) events. It is the suite's own (no lab
    code), and every test changes keys of its own, so one pipeline serves them all — also when the
    wrong-answer gate grades many copies of the lab in one session."""
    names = new_names("pipe")
    try:
        create_source_tables(pg, names.schema)
        seeded = {
            "processed_flights": [
                {
                    "icao24": "5snap1",
                    "fetch_time": T0,
                    "callsign": "SNAP1",
                    "origin_country": "Switzerland",
                    "longitude": 8.55,
                    "latitude": 47.45,
                    "baro_altitude": 1200.0,
                    "velocity": 80.5,
                    "on_ground": False,
                }
            ],
            "flight_statistics": [
                {
                    "origin_country": "Switzerland",
                    "stat_date": D0,
                    "flight_count": 12,
                    "avg_velocity": 201.5,
                    "max_altitude": 11277.6,
                }
            ],
        }
        for table, rows in seeded.items():
            for row in rows:
                insert(pg, names.schema, table, row)
        response = connect("PUT", f"/connectors/{names.connector}/config", json=suite_config(names))
        assert response.status_code in (200, 201), (
            f"Lab 05 test set-up: Kafka Connect refused the suite's connector "
            f"({response.status_code}): {response.text[:1000]}"
        )
        wait_running(names.connector)
        assert wait_slot_active(pg, names.slot) is not None, (
            f"Lab 05 test set-up: replication slot {names.slot} never became active"
        )
        yield Pipeline(names, seeded)
    finally:
        remove_pipeline(pg, admin, names)
