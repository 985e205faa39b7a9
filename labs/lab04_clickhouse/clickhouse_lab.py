# Generated from solutions/lab04_clickhouse/clickhouse_lab.py by `make skeletons` — this is the file you edit.
"""Lab 04 — ClickHouse: schema design, the country statistics materialized view, fast queries.

Every function takes a clickhouse-connect `client` (get one with
`harness.services.clickhouse_client()`) and the names of the database and tables it works on, so the
graded tests can run each part in a scratch database. The defaults are the platform's names.

Times are stored as `DateTime('UTC')`: OpenSky sends unix seconds, which are UTC. Python datetimes
passed to these functions should be timezone-aware; naive ones are read as UTC.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

import pyarrow as pa

from harness.config import CLICKHOUSE_DB
from harness.schema import ROW_FIELD_NAMES, arrow_row_schema

# Names kept from the platform description.
DATABASE = CLICKHOUSE_DB  # "opensky"
STREAMING_TABLE = "flights_streaming"
BATCH_TABLE = "flights_batch"
STATS_VIEW = "country_statistics_mv"
# The AggregatingMergeTree table the materialized view writes to.
STATS_TABLE = "country_statistics"
CURRENT_STATE_TABLE = "aircraft_current_state"
# Raw streaming rows older than this are deleted by the table's TTL.
RAW_TTL_DAYS = 30

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ------------------------------------------------------------------ given helpers
def qualified(database: str, table: str) -> str:
    """`database`.`table`, quoted, after checking both are plain identifiers.

    Identifiers cannot be bound as values, so they are checked here instead; user *data* always goes
    through bound parameters (`{name:Type}` + `parameters=`), never through string formatting.
    """
    for name in (database, table):
        if not _NAME.match(name):
            raise ValueError(
                f"{name!r} is not a plain ClickHouse identifier ([A-Za-z_][A-Za-z0-9_]*)"
            )
    return f"`{database}`.`{table}`"


def as_row_table(frame: Any) -> pa.Table:
    """A pandas or Arrow frame of flat rows as an Arrow table in `ROW_FIELD_NAMES` order.

    Raises ValueError naming the missing columns; extra columns are an error too, so nothing is
    dropped silently.
    """
    if not isinstance(frame, pa.Table):
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    missing = [name for name in ROW_FIELD_NAMES if name not in frame.column_names]
    extra = [name for name in frame.column_names if name not in ROW_FIELD_NAMES]
    if missing or extra:
        raise ValueError(
            f"a frame of flat rows needs exactly the columns of harness.schema.ROW_FIELD_NAMES; "
            f"missing: {missing}, unexpected: {extra}"
        )
    return frame.select(ROW_FIELD_NAMES).cast(arrow_row_schema())


class CountryFlights(NamedTuple):
    origin_country: str
    flight_count: int
    avg_velocity: float | None


class CountryStatistics(NamedTuple):
    origin_country: str
    flight_count: int
    aircraft: int
    avg_velocity: float | None
    max_altitude: float | None
    airborne: int


class BusyCountry(NamedTuple):
    origin_country: str
    aircraft: int
    positions: int


class LatestPosition(NamedTuple):
    icao24: str
    callsign: str | None
    last_seen: datetime
    latitude: float
    longitude: float
    baro_altitude: float | None


class AltitudeBand(NamedTuple):
    altitude_from: int
    aircraft: int
    positions: int


class AircraftInBox(NamedTuple):
    icao24: str
    positions: int
    last_seen: datetime


class AircraftState(NamedTuple):
    icao24: str
    callsign: str | None
    origin_country: str
    fetch_time: datetime
    latitude: float | None
    longitude: float | None
    baro_altitude: float | None
    velocity: float | None
    on_ground: bool


class ReadStats(NamedTuple):
    """What ClickHouse plans to read for a query, next to what the table holds."""

    table_rows: int
    table_granules: int
    rows_read: int
    granules_read: int


def _rows(client: Any, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple]:
    return client.query(sql, parameters=parameters or {}).result_rows


# ------------------------------------------------------------------ part A: schema
def create_flight_tables(
    client: Any,
    database: str = DATABASE,
    *,
    ttl_days: int = RAW_TTL_DAYS,
    index_granularity: int = 8192,
) -> None:
    """Create `database` with MergeTree tables flights_streaming (TTL) and flights_batch."""
    raise NotImplementedError(
        "Lab 04, part A: create_flight_tables() — see labs/lab04_clickhouse/README.md"
    )


# ------------------------------------------------------------------ part B: materialized view
def create_country_statistics(
    client: Any, database: str = DATABASE, source_table: str = STREAMING_TABLE
) -> None:
    """Create the AggregatingMergeTree `country_statistics` and the view feeding it from inserts."""
    raise NotImplementedError(
        "Lab 04, part B: create_country_statistics() — see labs/lab04_clickhouse/README.md"
    )


def country_statistics(
    client: Any,
    since: datetime | None = None,
    until: datetime | None = None,
    database: str = DATABASE,
) -> list[CountryStatistics]:
    """Per-country statistics from the view's states (hours in [since, until)), by country name."""
    raise NotImplementedError(
        "Lab 04, part B: country_statistics() — see labs/lab04_clickhouse/README.md"
    )


# ------------------------------------------------------------------ part C: queries
def flights_per_country_last_hour(
    client: Any, now: datetime, database: str = DATABASE, table: str = STREAMING_TABLE
) -> list[CountryFlights]:
    """The platform's query: rows per country with fetch_time >= now - 1 hour, busiest first."""
    raise NotImplementedError(
        "Lab 04, part C: flights_per_country_last_hour() — see labs/lab04_clickhouse/README.md"
    )


def busiest_countries(
    client: Any,
    since: datetime,
    until: datetime,
    limit: int = 10,
    database: str = DATABASE,
    table: str = STREAMING_TABLE,
) -> list[BusyCountry]:
    """Countries by distinct aircraft in [since, until): most first, ties by name, `limit` rows."""
    raise NotImplementedError(
        "Lab 04, part C: busiest_countries() — see labs/lab04_clickhouse/README.md"
    )


def latest_positions(
    client: Any,
    country: str | None = None,
    database: str = DATABASE,
    table: str = STREAMING_TABLE,
) -> list[LatestPosition]:
    """Each aircraft's newest row that has a position (optionally of one country), by icao24."""
    raise NotImplementedError(
        "Lab 04, part C: latest_positions() — see labs/lab04_clickhouse/README.md"
    )


def altitude_histogram(
    client: Any,
    band_m: int = 1000,
    database: str = DATABASE,
    table: str = STREAMING_TABLE,
) -> list[AltitudeBand]:
    """Airborne rows with a barometric altitude, in bands of `band_m` metres (lowest band first)."""
    raise NotImplementedError(
        "Lab 04, part C: altitude_histogram() — see labs/lab04_clickhouse/README.md"
    )


def aircraft_in_box(
    client: Any,
    south: float,
    west: float,
    north: float,
    east: float,
    database: str = DATABASE,
    table: str = STREAMING_TABLE,
) -> list[AircraftInBox]:
    """Aircraft with a position inside the box (edges included), by icao24."""
    raise NotImplementedError(
        "Lab 04, part C: aircraft_in_box() — see labs/lab04_clickhouse/README.md"
    )


# ------------------------------------------------------------------ part D: loading
def load_frame(client: Any, frame: Any, table: str = BATCH_TABLE, database: str = DATABASE) -> int:
    """Insert a pandas/Arrow frame of flat rows in one columnar insert; return the rows sent."""
    raise NotImplementedError("Lab 04, part D: load_frame() — see labs/lab04_clickhouse/README.md")


def create_current_state(
    client: Any, database: str = DATABASE, table: str = CURRENT_STATE_TABLE
) -> None:
    """Create a ReplacingMergeTree keyed by icao24 whose newest `fetch_time` version wins."""
    raise NotImplementedError(
        "Lab 04, part D: create_current_state() — see labs/lab04_clickhouse/README.md"
    )


def load_current_state(
    client: Any, frame: Any, database: str = DATABASE, table: str = CURRENT_STATE_TABLE
) -> int:
    """Insert the state columns of a frame of flat rows into the current-state table."""
    raise NotImplementedError(
        "Lab 04, part D: load_current_state() — see labs/lab04_clickhouse/README.md"
    )


def current_state(
    client: Any, final: bool = True, database: str = DATABASE, table: str = CURRENT_STATE_TABLE
) -> list[AircraftState]:
    """Rows of the current-state table, deduplicated at query time when `final`; by icao24."""
    raise NotImplementedError(
        "Lab 04, part D: current_state() — see labs/lab04_clickhouse/README.md"
    )


# ------------------------------------------------------------------ part E: using the key
def key_read_stats(
    client: Any, country: str, table: str = BATCH_TABLE, database: str = DATABASE
) -> ReadStats:
    """What a country-filtered query reads, by ClickHouse's own EXPLAIN, and the table's size."""
    raise NotImplementedError(
        "Lab 04, part E: key_read_stats() — see labs/lab04_clickhouse/README.md"
    )
