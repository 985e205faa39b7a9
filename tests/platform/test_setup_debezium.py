"""Platform tests for `scripts/setup_debezium.sh` (the seed's CDC set-up) on the real stack.

Each test runs the script with a throw-away connector file: its own schema (so the platform's
`public` tables are never touched), connector name, slot, publication and topic prefix, all
removed afterwards. "A fresh stack" is a schema in which neither captured table exists yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness.grading.testkit import read_topic
from harness.ops import cdc_setup
from harness.runtime.config import ROOT, endpoints
from harness.runtime.services import ServiceUnavailable, kafka_admin, pg_connect
from harness.runtime.waits import wait_quietly, wait_until

SCRIPT = ROOT / "scripts" / "setup_debezium.sh"
PLATFORM_CONFIG = ROOT / "infra" / "debezium" / "opensky-postgres.json"


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A throw-away schema and connector file capturing <schema>.processed_flights and
    <schema>.flight_statistics; connector, slot, publication, topics and schema are removed after."""
    url = endpoints().connect_url
    try:
        requests.get(f"{url}/connectors", timeout=5).raise_for_status()
    except requests.RequestException as exc:
        raise ServiceUnavailable("Kafka Connect (Debezium)", url, str(exc)) from exc
    tag = uuid.uuid4().hex[:10]
    names = {
        "schema": f"cdc_setup_{tag}",
        "connector": f"test-setup-{tag}",
        "slot": f"test_setup_{tag}",
        "publication": f"test_setup_{tag}",
        "prefix": f"test_setup_{tag}",
    }
    config = json.loads(PLATFORM_CONFIG.read_text())
    config.update(
        {
            "name": names["connector"],
            "slot.name": names["slot"],
            "publication.name": names["publication"],
            "topic.prefix": names["prefix"],
            "table.include.list": f"{names['schema']}.processed_flights,"
            f"{names['schema']}.flight_statistics",
        }
    )
    path = tmp_path / "connector.json"
    path.write_text(json.dumps(config, indent=2))
    names["config"] = str(path)
    with pg_connect() as conn:
        conn.execute(f"CREATE SCHEMA {names['schema']}")
    yield names
    requests.delete(f"{url}/connectors/{names['connector']}", timeout=10)
    with pg_connect() as conn:

        def released() -> bool:
            query = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
            active = conn.execute(query, (names["slot"],)).fetchone()
            return not active or not active[0]

        wait_quietly(released, timeout=10)  # the slot is released shortly after the task stops
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active",
            (names["slot"],),
        )
        conn.execute(f"DROP PUBLICATION IF EXISTS {names['publication']}")
        conn.execute(f"DROP SCHEMA IF EXISTS {names['schema']} CASCADE")
    admin = kafka_admin()
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(names["prefix"])]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            try:
                future.result(timeout=15)
            except Exception:  # already gone
                pass


def run_script(config: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), config],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_fresh_stack_tables_are_created_and_captured(scratch):
    """On a fresh stack the script creates both tables from their one definition, says so,
    registers the connector, and an insert into flight_statistics becomes a change event."""
    result = run_script(scratch["config"])
    assert result.returncode == 0, result.stdout + result.stderr
    schema = scratch["schema"]
    for table in ("processed_flights", "flight_statistics"):
        assert f"{schema}.{table}: created" in result.stdout, result.stdout
    assert f"connector {scratch['connector']}: RUNNING RUNNING" in result.stdout, result.stdout
    with pg_connect() as conn:
        conn.execute(
            f"INSERT INTO {schema}.flight_statistics (origin_country, stat_date, stat_hour, "
            "flight_count, state_vectors) VALUES ('Switzerland', '2021-10-07', 12, 3, 30)"
        )
    topic = f"{scratch['prefix']}.{schema}.flight_statistics"

    def change_events() -> list[dict]:
        return [json.loads(m.value()) for m in read_topic(topic, missing_ok=True) if m.value()]

    events = wait_until(change_events, f"a change event on {topic}", 60, error=AssertionError)
    assert events[0]["op"] in ("c", "r") and events[0]["after"]["origin_country"] == "Switzerland"

    again = run_script(scratch["config"])
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{schema}.flight_statistics: exists" in again.stdout
    assert "already registered with this configuration" in again.stdout


def test_a_table_without_definition_is_waited_for_then_named(scratch, tmp_path):
    """A captured table that nothing defines is waited for; if it never comes, the error names it."""
    config = json.loads(Path(scratch["config"]).read_text())
    config["table.include.list"] = f"{scratch['schema']}.not_defined_anywhere"
    path = tmp_path / "undefined.json"
    path.write_text(json.dumps(config))
    result = run_script(str(path), SETUP_DEBEZIUM_TABLE_WAIT="2")
    assert result.returncode == 1
    assert f"{scratch['schema']}.not_defined_anywhere" in result.stderr, result.stderr
    assert "do not exist after 2 s" in result.stderr


def test_waiting_ends_when_another_program_creates_the_table(scratch):
    """`ensure_tables` reports `appeared` for a table created while it waits."""
    table = f"{scratch['schema']}.made_later"

    def create_later() -> None:
        time.sleep(1.5)
        with pg_connect() as conn:
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")

    thread = threading.Thread(target=create_later)
    thread.start()
    try:
        done = cdc_setup.ensure_tables([table], wait_s=30)
    finally:
        thread.join()
    assert done == [(table, "appeared")]


def test_connector_file_is_rendered_for_the_connect_worker(monkeypatch):
    """${VAR}s come from the environment, then infra/.env; in docker PostgreSQL is `postgres`."""
    monkeypatch.setenv("POSTGRES_USER", "someone_else")
    config = cdc_setup.render(PLATFORM_CONFIG)
    assert config["database.user"] == "someone_else"
    assert "${" not in json.dumps(config)
    if cdc_setup.stack() == "native":
        assert config["database.hostname"] == endpoints().pg_host
    result = subprocess.run(
        [sys.executable, "-m", "harness.ops.cdc_setup", "render", str(PLATFORM_CONFIG)],
        cwd=ROOT,
        env={**os.environ, "STACK": "docker"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    inside = json.loads(result.stdout)
    assert (inside["database.hostname"], inside["database.port"]) == ("postgres", "5432")


def test_unset_variable_is_named(tmp_path):
    """A placeholder set nowhere is an error naming it, never an empty string."""
    path = tmp_path / "bad.json"
    path.write_text('{"name": "x", "database.user": "${OPENSKY_NOT_SET_ANYWHERE}"}')
    with pytest.raises(cdc_setup.SetupError, match="OPENSKY_NOT_SET_ANYWHERE"):
        cdc_setup.render(path)
