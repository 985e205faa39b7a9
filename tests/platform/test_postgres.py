"""Platform tests for PostgreSQL: a row round trip, logical WAL for Debezium, the lab role.

Every table has a unique name and is dropped afterwards. The server is reached only through
`harness.runtime.services.pg_connect` (a missing server raises `ServiceUnavailable`).
"""

from __future__ import annotations

import uuid

from psycopg import sql

from harness.runtime.config import endpoints
from harness.runtime.services import pg_connect
from harness.runtime.waits import wait_quietly


def test_row_round_trip() -> None:
    """A row written through psycopg comes back unchanged, typed."""
    table = f"platform_rt_{uuid.uuid4().hex[:10]}"
    with pg_connect() as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (icao24 text PRIMARY KEY, callsign text, "
                "altitude double precision, seen timestamptz)"
            ).format(sql.Identifier(table))
        )
        try:
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(sql.Identifier(table)),
                ("4b1806", "SWR123  ", 10972.8, "2024-01-01T12:00:00Z"),
            )
            row = conn.execute(
                sql.SQL(
                    "SELECT icao24, callsign, altitude, extract(epoch FROM seen) FROM {}"
                ).format(sql.Identifier(table))
            ).fetchone()
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    assert row is not None, "the inserted row did not come back"
    assert row[:3] == ("4b1806", "SWR123  ", 10972.8), f"row changed on the way: {row}"
    assert float(row[3]) == 1704110400.0, f"timestamp changed on the way: {row[3]}"


def test_wal_level_is_logical() -> None:
    """Debezium needs logical decoding: wal_level=logical and room for replication slots."""
    with pg_connect() as conn:
        wal_level = conn.execute("SHOW wal_level").fetchone()[0]
        slots = int(conn.execute("SHOW max_replication_slots").fetchone()[0])
        senders = int(conn.execute("SHOW max_wal_senders").fetchone()[0])
    assert wal_level == "logical", f"expected wal_level=logical, got {wal_level}"
    assert slots >= 4 and senders >= 4, f"max_replication_slots={slots}, max_wal_senders={senders}"


def test_lab_role_and_database() -> None:
    """The lab user logs in to the `opensky` database and may replicate (for Debezium)."""
    ep = endpoints()
    with pg_connect() as conn:
        user, db = conn.execute("SELECT current_user, current_database()").fetchone()
        can_replicate = conn.execute(
            "SELECT rolreplication FROM pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
    assert (user, db) == (ep.pg_user, ep.pg_db), f"connected as {user} to {db}"
    assert can_replicate, f"role {user} lacks REPLICATION"


def test_logical_slot_decodes_an_insert() -> None:
    """A logical replication slot (the mechanism Debezium uses) sees an INSERT."""
    table = f"platform_cdc_{uuid.uuid4().hex[:10]}"
    slot = f"platform_slot_{uuid.uuid4().hex[:10]}"
    with pg_connect() as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(sql.Identifier(table))
        )
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        try:
            conn.execute(
                sql.SQL("INSERT INTO {} VALUES (1, 'hello')").format(sql.Identifier(table))
            )
            # Decoding sees WAL once it is flushed (asynchronous commit: within a fraction of a s).
            changes: list[str] = []

            def decoded() -> bool:
                query = "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL)"
                changes.extend(r[0] for r in conn.execute(query, (slot,)))
                return any(table in c for c in changes)

            wait_quietly(decoded, timeout=15)  # the assertion below says what is missing
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))
    inserts = [c for c in changes if table in c and "INSERT" in c]
    assert inserts and "'hello'" in inserts[0], f"no decoded INSERT for {table} in {changes}"
