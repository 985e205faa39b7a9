"""The graded suites' shared test kit: bounded waits for what a test reads, sample rows, a
ClickHouse client for a fixture and the cleanup of scratch names.

A test never reads a Kafka topic before its partitions have leaders, and never sleeps for a
fixed time: it waits, with a bound, for the thing it needs (a leader, a watermark, a condition),
and a bound that runs out is a clear failure naming what was awaited.

    from harness.grading.testkit import read_topic, state_row, wait_for_leaders, wait_until
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from harness.runtime import topics
from harness.runtime import waits as runtime_waits
from harness.runtime.schema import STATE_FIELDS
from harness.runtime.services import clickhouse_client, minio_client

WAIT_S = topics.WAIT_S
T = TypeVar("T")
P = ParamSpec("P")
# (low, high) watermark of one partition, asking again while its leader is not known yet.
watermarks = topics.watermarks


def wait_until(
    condition: Callable[[], T], what: str, timeout: float = WAIT_S, every: float = 0.3
) -> T:
    """Call `condition` until it returns something truthy (returned); AssertionError after
    `timeout` seconds, naming `what` was awaited (the course's one bounded wait, as a test
    set-up failure)."""
    return runtime_waits.wait_until(
        condition, f"test set-up: {what}", timeout, every, error=AssertionError
    )


def _as_set_up(function: Callable[P, T]) -> Callable[P, T]:
    """`function` of `harness.runtime.topics` as a test's set-up step: a bounded wait that runs
    out is an AssertionError "test set-up: …" instead of a WaitTimeout."""

    @functools.wraps(function)
    def step(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except runtime_waits.WaitTimeout as exc:
            raise AssertionError(f"test set-up: {exc}") from None

    return step


# `read_topic(topic, timeout, since=None, missing_ok=False)`: every message now in `topic`, from
# each partition's start (or offset `since[p]`) to the end it had when asked; with a throw-away
# group, committing nothing. `wait_for_leaders(client, topic, timeout)`: {partition: leader id}
# once every partition of `topic` has a leader.
read_topic = _as_set_up(topics.read_topic)
wait_for_leaders = _as_set_up(topics.wait_for_leaders)


_SAMPLE: dict[str, Any] = {
    "icao24": "4b1814",
    "callsign": "SWR100  ",
    "origin_country": "Switzerland",
    "time_position": 1_633_608_000,
    "last_contact": 1_633_608_000,
    "longitude": 8.55,
    "latitude": 47.45,
    "baro_altitude": 1200.0,
    "on_ground": False,
    "velocity": 80.5,
    "true_track": 90.0,
    "vertical_rate": 0.0,
    "sensors": None,
    "geo_altitude": 1250.0,
    "squawk": "1000",
    "spi": False,
    "position_source": 0,
    "category": 0,
}


def state_row(fetch_time: int = 1_633_608_000, **fields: Any) -> dict[str, Any]:
    """A valid flat row (`fetch_time` + every field of `STATE_FIELDS`, in that order) with plain
    values; `fields` override them. An unknown field name is an error (a typo never passes)."""
    names = [name for name, _, _ in STATE_FIELDS]
    unknown = sorted(set(fields) - set(names) - {"fetch_time"})
    if unknown:
        raise TypeError(f"state_row: unknown field(s) {unknown}; the fields are {names}")
    row = {"fetch_time": fetch_time, **{name: _SAMPLE.get(name) for name in names}}
    row.update(fields)
    return row


# ------------------------------------------------------------------ ClickHouse and MinIO scratch
def stream_scratch(
    name: str, folder: Path, bucket: str = "streaming-aggregations"
) -> dict[str, str]:
    """The sinks of Lab 02's `StreamConfig` on throw-away names made from `name`: the topics `name`,
    `name.dlq` and `name.processed`, the ClickHouse database and the PostgreSQL table `name`, the
    S3 prefix `<bucket>/<name>/` and a checkpoint in `folder`."""
    return {
        "topic": name,
        "dlq_topic": f"{name}.dlq",
        "processed_topic": f"{name}.processed",
        "clickhouse_database": name,
        "pg_table": name,
        "aggregates_path": f"s3a://{bucket}/{name}/country_windows",
        "staging_path": f"s3a://{bucket}/{name}/staging",
        "checkpoint": str(folder / "checkpoint"),
    }


def clickhouse_session() -> Iterator[Any]:
    """The body of a suite's `ch` fixture: a clickhouse-connect client for the lab's ClickHouse
    (raises ServiceUnavailable if down), closed afterwards."""
    client = clickhouse_client()
    yield client
    client.close()


def drop_database(
    client: Any, name: str, warn: Callable[[str, Exception], None] | None = None
) -> None:
    """DROP a scratch ClickHouse database; a problem goes to `warn(what, exc)` (by default a
    warning) instead of failing: cleanup must never hide the test's own result."""
    try:
        client.command(f"DROP DATABASE IF EXISTS `{name}`")
    except Exception as exc:
        if warn is None:
            warnings.warn(f"could not drop test database {name}: {exc}", stacklevel=1)
        else:
            warn(f"ClickHouse database {name}", exc)


def remove_prefix(bucket: str, prefix: str) -> None:
    """Delete every object under `prefix` in `bucket`; warn instead of failing."""
    try:
        client = minio_client()
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
            client.remove_object(bucket, obj.object_name)
    except Exception as exc:  # cleanup must never hide the test's own result
        warnings.warn(f"could not empty s3://{bucket}/{prefix}: {exc}", stacklevel=1)
