"""Platform tests for Kafka Connect with Debezium: PostgreSQL changes arrive in Kafka.

One Debezium PostgreSQL connector with unique names everywhere (connector, table, topic prefix,
replication slot, publication) is registered through the REST API, must reach RUNNING, and must
turn an INSERT into a change event. Afterwards the connector, slot, publication, table and topics
are removed. Services are reached only through `harness.runtime.config` / `harness.runtime.services`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from harness.grading.testkit import read_topic
from harness.runtime.config import endpoints
from harness.runtime.services import (
    ServiceUnavailable,
    kafka_admin,
    pg_connect,
    require,
)
from harness.runtime.waits import WaitTimeout, wait_quietly, wait_until

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
RUNNING_WAIT_S = 60.0
EVENT_WAIT_S = 60.0
CLEANUP_WAIT_S = 30.0


def connect_get(path: str) -> requests.Response:
    url = endpoints().connect_url.rstrip("/")
    try:
        return requests.get(url + path, timeout=10)
    except requests.ConnectionError as exc:
        raise ServiceUnavailable("Kafka Connect (Debezium)", url, str(exc)) from exc


@pytest.fixture(scope="module")
def connect_url() -> str:
    require("Kafka Connect (Debezium)")
    url = endpoints().connect_url.rstrip("/")
    root = connect_get("/")
    assert root.ok, f"GET {url}/ answered {root.status_code}: {root.text[:300]}"
    plugins = {p["class"] for p in connect_get("/connector-plugins").json()}
    assert CONNECTOR_CLASS in plugins, f"Debezium PostgreSQL plugin missing; plugins: {plugins}"
    return url


@dataclass
class CdcNames:
    connector: str
    table: str
    prefix: str
    slot: str
    publication: str

    @property
    def topic(self) -> str:
        return f"{self.prefix}.public.{self.table}"


@pytest.fixture
def names(connect_url: str) -> Iterator[CdcNames]:
    """Unique names for one CDC pipeline; everything created under them is removed afterwards."""
    tag = uuid.uuid4().hex[:10]
    n = CdcNames(
        connector=f"pt-cdc-{tag}",
        table=f"pt_cdc_{tag}",
        prefix=f"ptcdc{tag}",
        slot=f"pt_slot_{tag}",
        publication=f"pt_pub_{tag}",
    )
    with pg_connect() as pg:
        pg.execute(
            f"CREATE TABLE {n.table} (id integer PRIMARY KEY, icao24 text NOT NULL, "
            "callsign text, velocity double precision)"
        )
        pg.execute(f"CREATE PUBLICATION {n.publication} FOR TABLE {n.table}")
    try:
        yield n
    finally:
        _cleanup(connect_url, n)


def _cleanup(connect_url: str, n: CdcNames) -> None:
    url = f"{connect_url}/connectors/{n.connector}"
    requests.delete(url, timeout=30)
    wait_quietly(lambda: requests.get(url, timeout=10).status_code == 404, CLEANUP_WAIT_S, 0.5)
    with pg_connect() as pg:

        def slot_released() -> bool:
            query = "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s"
            row = pg.execute(query, (n.slot,)).fetchone()
            return row is None or row[0] is None

        # The task releases the slot shortly after the connector is deleted; wait for that.
        if not wait_quietly(slot_released, CLEANUP_WAIT_S, 0.5):
            pg.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active_pid IS NOT NULL",
                (n.slot,),
            )
            wait_quietly(slot_released, 10, 0.5)
        pg.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (n.slot,),
        )
        pg.execute(f"DROP PUBLICATION IF EXISTS {n.publication}")
        pg.execute(f"DROP TABLE IF EXISTS {n.table}")
    admin = kafka_admin()
    existing = set(admin.list_topics(timeout=10).topics)
    ours = [t for t in existing if t.startswith(n.prefix + ".") or t == n.prefix]
    for future in (admin.delete_topics(ours, operation_timeout=10) if ours else {}).values():
        try:
            future.result(timeout=15)
        except Exception:  # deleted meanwhile: nothing left to clean
            pass


def connector_config(n: CdcNames) -> dict[str, str]:
    from harness.ops.cdc_setup import connect_side_postgres

    ep = endpoints()
    pg_host, pg_port = connect_side_postgres()  # as the Connect worker sees it (docker: postgres)
    return {
        "connector.class": CONNECTOR_CLASS,
        "tasks.max": "1",
        "database.hostname": pg_host,
        "database.port": str(pg_port),
        "database.user": ep.pg_user,
        "database.password": ep.pg_password,
        "database.dbname": ep.pg_db,
        "topic.prefix": n.prefix,
        "plugin.name": "pgoutput",
        "slot.name": n.slot,
        "publication.name": n.publication,
        "publication.autocreate.mode": "disabled",
        "table.include.list": f"public.{n.table}",
        # Only changes made after the slot exists: the INSERT below must arrive as op "c".
        "snapshot.mode": "no_data",
    }


def wait_running(connect_url: str, name: str) -> dict:
    """Poll the connector's status until it and its task run; fail at once on FAILED."""

    def running() -> dict | None:
        response = requests.get(f"{connect_url}/connectors/{name}/status", timeout=10)
        if not response.ok:
            return None
        status = response.json()
        states = [status["connector"]["state"]] + [t["state"] for t in status["tasks"]]
        if "FAILED" in states:
            traces = [status["connector"].get("trace")] + [t.get("trace") for t in status["tasks"]]
            detail = next((t for t in traces if t), "")
            raise AssertionError(f"connector {name} FAILED: {detail[:2000]}")
        return status if status["tasks"] and all(s == "RUNNING" for s in states) else None

    return wait_until(running, f"connector {name} RUNNING", RUNNING_WAIT_S, 0.5, AssertionError)


def wait_slot(slot: str) -> None:
    """Wait until Debezium's replication slot exists, so later changes are kept for it."""
    with pg_connect() as pg:

        def active() -> bool:
            query = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
            row = pg.execute(query, (slot,)).fetchone()
            return row is not None and row[0]

        wait_until(active, f"replication slot {slot} active", RUNNING_WAIT_S, 0.5, AssertionError)


def unwrap(value: bytes) -> dict:
    """A Debezium event's payload, with or without the JSON converter's schema envelope."""
    event = json.loads(value)
    if isinstance(event, dict) and "payload" in event and "schema" in event:
        return event["payload"]
    return event


def first_event(topic: str, accept) -> dict:
    """The first event on `topic` (read from the start) for which `accept(payload)` holds."""
    seen: list[dict] = []

    def matching() -> dict | None:
        # The topic appears with the first event; until then it reads as empty.
        seen[:] = [unwrap(m.value()) for m in read_topic(topic, missing_ok=True) if m.value()]
        return next((payload for payload in seen if accept(payload)), None)

    try:
        return wait_until(matching, f"a matching change event on {topic}", EVENT_WAIT_S, 0.5)
    except WaitTimeout:
        raise AssertionError(f"no matching change event on {topic}; saw {seen[:3]}") from None


def test_debezium_insert_becomes_change_event(connect_url: str, names: CdcNames) -> None:
    """A registered Debezium connector runs and turns a PostgreSQL INSERT into an op=c event."""
    response = requests.put(
        f"{connect_url}/connectors/{names.connector}/config",
        json=connector_config(names),
        timeout=60,
    )
    assert response.status_code in (200, 201), (
        f"PUT connector config answered {response.status_code}: {response.text[:1000]}"
    )
    status = wait_running(connect_url, names.connector)
    assert status["type"] == "source"
    wait_slot(names.slot)

    with pg_connect() as pg:
        pg.execute(
            f"INSERT INTO {names.table} (id, icao24, callsign, velocity) VALUES (%s, %s, %s, %s)",
            (7, "4b1814", "SWR100", 231.5),
        )

    event = first_event(names.topic, lambda p: p.get("op") == "c")

    assert event["after"] == {"id": 7, "icao24": "4b1814", "callsign": "SWR100", "velocity": 231.5}
    assert event["before"] is None
    assert event["source"]["table"] == names.table
    assert event["source"]["connector"] == "postgresql"
