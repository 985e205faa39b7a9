"""Helpers that two or more labs' graded suites share (hand-made rows, throw-away names, cleanup,
layout checks); the course-wide test kit stays in `testkit.py`."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from harness.grading.testkit import drop_database, state_row
from harness.runtime.services import clickhouse_client, kafka_admin

T = TypeVar("T")


# ------------------------------------------------------------------ hand-made rows
def state_at(t: int, icao24: str, **fields: Any) -> dict[str, Any]:
    """A valid flat row (`testkit.state_row`) of `icao24` heard at unix time `t`: its fetch_time,
    time_position and last_contact; `fields` override any value."""
    plain = {"fetch_time": t, "icao24": icao24, "time_position": t, "last_contact": t}
    return state_row(**{**plain, **fields})


# ------------------------------------------------------------------ throw-away names
def fresh_name(prefix: str) -> str:
    """`prefix` and 12 random hex digits: a name no other test (or student) uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class HandOut(Generic[T]):
    """A fixture's factory of throw-away things: each call makes one with `make(*args)` and keeps
    it in `handed_out`, so the fixture can remove them all after the test."""

    def __init__(self, make: Callable[..., T]) -> None:
        self.make = make
        self.handed_out: list[T] = []

    def __call__(self, *args: Any) -> T:
        self.handed_out.append(self.make(*args))
        return self.handed_out[-1]


# ------------------------------------------------------------------ cleanup
def drop_topics(topics: list[str], warn: Callable[[str, Exception], None]) -> None:
    """Delete those of `topics` that exist; a problem goes to `warn(what, exc)` instead of failing
    (cleanup must never hide the test's own result)."""
    try:
        admin = kafka_admin()
        existing = set(admin.list_topics(timeout=10).topics)
        doomed = [t for t in topics if t in existing]
        for topic, future in (admin.delete_topics(doomed) if doomed else {}).items():
            try:
                future.result(15)
            except Exception as exc:
                warn(f"topic {topic}", exc)
    except Exception as exc:
        warn("Kafka topics", exc)


def drop_clickhouse_database(name: str, warn: Callable[[str, Exception], None]) -> None:
    """DROP a scratch ClickHouse database with a client of its own; a problem goes to `warn`."""
    try:
        client = clickhouse_client()
    except Exception as exc:
        warn(f"ClickHouse database {name}", exc)
        return
    drop_database(client, name, warn)
    client.close()


# ------------------------------------------------------------------ layout checks
def hive_partitions(client: Any, bucket: str, prefix: str, part: str, how: str) -> set[tuple]:
    """(date, hour) of every Parquet object under `prefix` in `bucket` (a MinIO client), read from
    the keys themselves; a Parquet key not laid out as `prefix/date=YYYY-MM-DD/hour=H/<file>` fails
    the test with `part` ("Part E") and `how` (what makes that layout) in the message."""
    pattern = re.compile(
        rf"^{re.escape(prefix)}/date=(\d{{4}}-\d{{2}}-\d{{2}})/hour=(\d{{1,2}})/[^/]+\.parquet$"
    )
    found = set()
    for obj in client.list_objects(bucket, prefix=f"{prefix}/", recursive=True):
        if obj.object_name.endswith(".parquet"):
            match = pattern.match(obj.object_name)
            assert match, (
                f"{part}: Parquet file {obj.object_name!r} is not laid out as "
                f"{prefix}/date=YYYY-MM-DD/hour=H/<file>.parquet ({how})."
            )
            found.add((match.group(1), int(match.group(2))))
    return found
