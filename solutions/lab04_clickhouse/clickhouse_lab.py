"""Lab 04 — ClickHouse: schema design, the country statistics materialized view, fast queries.

Every function takes a clickhouse-connect `client` (get one with
`harness.runtime.services.clickhouse_client()`) and the names of the database and tables it works on, so the
graded tests can run each part in a scratch database. The defaults are the platform's names.

Times are stored as `DateTime('UTC')`: OpenSky sends unix seconds, which are UTC. Python datetimes
passed to these functions should be timezone-aware; naive ones are read as UTC.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple

import pyarrow as pa

from harness.runtime.config import CLICKHOUSE_DB
from harness.runtime.schema import ROW_FIELD_NAMES, arrow_row_schema

# The platform's names, kept exactly.
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
            f"a frame of flat rows needs exactly the columns of harness.runtime.schema.ROW_FIELD_NAMES; "
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
    # BEGIN SOLUTION (part A)
    from harness.runtime.schema import clickhouse_columns

    if not isinstance(ttl_days, int) or ttl_days <= 0:
        raise ValueError(f"ttl_days must be a positive integer, got {ttl_days!r}")
    columns = clickhouse_columns()  # every field of a flat row, in the README's types
    # Queries filter by country, then follow one aircraft through time: that is the sort order.
    order_by = "ORDER BY (origin_country, icao24, fetch_time)"
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    # Streaming rows: daily partitions, so the TTL drops whole old parts instead of rewriting them.
    client.command(
        f"CREATE TABLE IF NOT EXISTS {qualified(database, STREAMING_TABLE)} ({columns}) "
        f"ENGINE = MergeTree PARTITION BY toYYYYMMDD(fetch_time) {order_by} "
        f"TTL fetch_time + INTERVAL {ttl_days} DAY "
        f"SETTINGS index_granularity = {int(index_granularity)}, ttl_only_drop_parts = 1"
    )
    # Batch rows are the historical archive: monthly partitions, kept.
    client.command(
        f"CREATE TABLE IF NOT EXISTS {qualified(database, BATCH_TABLE)} ({columns}) "
        f"ENGINE = MergeTree PARTITION BY toYYYYMM(fetch_time) {order_by} "
        f"SETTINGS index_granularity = {int(index_granularity)}"
    )
    # END SOLUTION


# ------------------------------------------------------------------ part B: materialized view
def create_country_statistics(
    client: Any, database: str = DATABASE, source_table: str = STREAMING_TABLE
) -> None:
    """Create the AggregatingMergeTree `country_statistics` and the view feeding it from inserts."""
    # BEGIN SOLUTION (part B)
    client.command(
        f"""
        CREATE TABLE IF NOT EXISTS {qualified(database, STATS_TABLE)} (
            origin_country LowCardinality(String),
            hour           DateTime('UTC'),
            flight_count   AggregateFunction(count),
            aircraft       AggregateFunction(uniqExact, String),
            avg_velocity   AggregateFunction(avg, Nullable(Float64)),
            max_altitude   AggregateFunction(max, Nullable(Float64)),
            airborne       AggregateFunction(countIf, Bool)
        )
        ENGINE = AggregatingMergeTree
        PARTITION BY toYYYYMM(hour)
        ORDER BY (origin_country, hour)
        """
    )
    client.command(
        f"""
        CREATE MATERIALIZED VIEW IF NOT EXISTS {qualified(database, STATS_VIEW)}
        TO {qualified(database, STATS_TABLE)} AS
        SELECT
            origin_country,
            toStartOfHour(fetch_time) AS hour,
            countState() AS flight_count,
            uniqExactState(icao24) AS aircraft,
            avgState(velocity) AS avg_velocity,
            maxState(baro_altitude) AS max_altitude,
            countIfState(NOT on_ground) AS airborne
        FROM {qualified(database, source_table)}
        GROUP BY origin_country, hour
        """
    )
    # END SOLUTION


def country_statistics(
    client: Any,
    since: datetime | None = None,
    until: datetime | None = None,
    database: str = DATABASE,
) -> list[CountryStatistics]:
    """Per-country statistics from the view's states (hours in [since, until)), by country name."""
    # BEGIN SOLUTION (part B)
    where, params = [], {}
    if since is not None:
        where.append("hour >= toStartOfHour({since:DateTime('UTC')})")
        params["since"] = since
    if until is not None:
        where.append("hour < {until:DateTime('UTC')}")
        params["until"] = until
    sql = f"""
        SELECT
            origin_country,
            countMerge(flight_count) AS flight_count,
            uniqExactMerge(aircraft) AS aircraft,
            avgMerge(avg_velocity) AS avg_velocity,
            maxMerge(max_altitude) AS max_altitude,
            countIfMerge(airborne) AS airborne
        FROM {qualified(database, STATS_TABLE)}
        {"WHERE " + " AND ".join(where) if where else ""}
        GROUP BY origin_country
        ORDER BY origin_country
    """
    return [CountryStatistics(*row) for row in _rows(client, sql, params)]
    # END SOLUTION


# ------------------------------------------------------------------ part C: queries
def flights_per_country_last_hour(
    client: Any, now: datetime, database: str = DATABASE, table: str = STREAMING_TABLE
) -> list[CountryFlights]:
    """The platform's query: rows per country with fetch_time >= now - 1 hour, busiest first."""
    # BEGIN SOLUTION (part C)
    sql = f"""
        SELECT
            origin_country,
            count() AS flight_count,
            avg(velocity) AS avg_velocity
        FROM {qualified(database, table)}
        WHERE fetch_time >= {{now:DateTime('UTC')}} - INTERVAL 1 HOUR
        GROUP BY origin_country
        ORDER BY flight_count DESC
    """
    return [CountryFlights(*row) for row in _rows(client, sql, {"now": now})]
    # END SOLUTION


def busiest_countries(
    client: Any,
    since: datetime,
    until: datetime,
    limit: int = 10,
    database: str = DATABASE,
    table: str = STREAMING_TABLE,
) -> list[BusyCountry]:
    """Countries by distinct aircraft in [since, until): most first, ties by name, `limit` rows."""
    # BEGIN SOLUTION (part C)
    sql = f"""
        SELECT origin_country, uniqExact(icao24) AS aircraft, count() AS positions
        FROM {qualified(database, table)}
        WHERE fetch_time >= {{since:DateTime('UTC')}} AND fetch_time < {{until:DateTime('UTC')}}
        GROUP BY origin_country
        ORDER BY aircraft DESC, origin_country ASC
        LIMIT {{limit:UInt32}}
    """
    params = {"since": since, "until": until, "limit": limit}
    return [BusyCountry(*row) for row in _rows(client, sql, params)]
    # END SOLUTION


def latest_positions(
    client: Any,
    country: str | None = None,
    database: str = DATABASE,
    table: str = STREAMING_TABLE,
) -> list[LatestPosition]:
    """Each aircraft's newest row that has a position (optionally of one country), by icao24."""
    # BEGIN SOLUTION (part C)
    country_filter = "AND origin_country = {country:String}" if country is not None else ""
    # argMax of one tuple takes every value from the same (newest) row; argMax of each Nullable
    # column on its own would skip that column's NULLs and could mix values from different rows.
    sql = f"""
        SELECT icao24, newest.1, last_seen, newest.2, newest.3, newest.4
        FROM (
            SELECT
                icao24,
                max(fetch_time) AS last_seen,
                argMax((callsign, latitude, longitude, baro_altitude), fetch_time) AS newest
            FROM {qualified(database, table)}
            WHERE latitude IS NOT NULL AND longitude IS NOT NULL {country_filter}
            GROUP BY icao24
        )
        ORDER BY icao24
    """
    params = {"country": country} if country is not None else {}
    return [LatestPosition(*row) for row in _rows(client, sql, params)]
    # END SOLUTION


def altitude_histogram(
    client: Any,
    band_m: int = 1000,
    database: str = DATABASE,
    table: str = STREAMING_TABLE,
) -> list[AltitudeBand]:
    """Airborne rows with a barometric altitude, in bands of `band_m` metres (lowest band first)."""
    # BEGIN SOLUTION (part C)
    if band_m <= 0:
        raise ValueError(f"band_m must be positive, got {band_m}")
    sql = f"""
        SELECT
            toInt64(floor(baro_altitude / {{band:UInt32}}) * {{band:UInt32}}) AS altitude_from,
            uniqExact(icao24) AS aircraft,
            count() AS positions
        FROM {qualified(database, table)}
        WHERE NOT on_ground AND baro_altitude IS NOT NULL
        GROUP BY altitude_from
        ORDER BY altitude_from
    """
    return [AltitudeBand(*row) for row in _rows(client, sql, {"band": band_m})]
    # END SOLUTION


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
    # BEGIN SOLUTION (part C)
    if south > north or west > east:
        raise ValueError(
            f"the box needs south <= north and west <= east, got south={south}, north={north}, "
            f"west={west}, east={east} (boxes across the antimeridian are not supported)"
        )
    sql = f"""
        SELECT icao24, count() AS positions, max(fetch_time) AS last_seen
        FROM {qualified(database, table)}
        WHERE latitude BETWEEN {{south:Float64}} AND {{north:Float64}}
          AND longitude BETWEEN {{west:Float64}} AND {{east:Float64}}
        GROUP BY icao24
        ORDER BY icao24
    """
    params = {"south": south, "north": north, "west": west, "east": east}
    return [AircraftInBox(*row) for row in _rows(client, sql, params)]
    # END SOLUTION


# ------------------------------------------------------------------ part D: loading
def load_frame(client: Any, frame: Any, table: str = BATCH_TABLE, database: str = DATABASE) -> int:
    """Insert a pandas/Arrow frame of flat rows in one columnar insert; return the rows sent."""
    # BEGIN SOLUTION (part D)
    rows = as_row_table(frame)
    utc_seconds = pa.timestamp("s", tz="UTC")
    for name in ("fetch_time", "time_position", "last_contact"):
        index = rows.schema.get_field_index(name)
        rows = rows.set_column(index, name, rows.column(name).cast(utc_seconds))
    client.insert_arrow(table, rows, database=database)
    return rows.num_rows
    # END SOLUTION


def create_current_state(
    client: Any, database: str = DATABASE, table: str = CURRENT_STATE_TABLE
) -> None:
    """Create a ReplacingMergeTree keyed by icao24 whose newest `fetch_time` version wins."""
    # BEGIN SOLUTION (part D)
    from harness.runtime.schema import clickhouse_columns

    columns = clickhouse_columns(list(AircraftState._fields))
    client.command(
        f"""
        CREATE TABLE IF NOT EXISTS {qualified(database, table)} (
            {columns}
        )
        ENGINE = ReplacingMergeTree(fetch_time)
        ORDER BY icao24
        """
    )
    # END SOLUTION


def load_current_state(
    client: Any, frame: Any, database: str = DATABASE, table: str = CURRENT_STATE_TABLE
) -> int:
    """Insert the state columns of a frame of flat rows into the current-state table."""
    # BEGIN SOLUTION (part D)
    rows = as_row_table(frame).select(list(AircraftState._fields))
    index = rows.schema.get_field_index("fetch_time")
    rows = rows.set_column(
        index, "fetch_time", rows.column("fetch_time").cast(pa.timestamp("s", tz="UTC"))
    )
    client.insert_arrow(table, rows, database=database)
    return rows.num_rows
    # END SOLUTION


def current_state(
    client: Any, final: bool = True, database: str = DATABASE, table: str = CURRENT_STATE_TABLE
) -> list[AircraftState]:
    """Rows of the current-state table, deduplicated at query time when `final`; by icao24."""
    # BEGIN SOLUTION (part D)
    columns = ", ".join(AircraftState._fields)
    sql = (
        f"SELECT {columns} FROM {qualified(database, table)} {'FINAL' if final else ''} "
        f"ORDER BY icao24, fetch_time"
    )
    return [AircraftState(*row) for row in _rows(client, sql)]
    # END SOLUTION


# ------------------------------------------------------------------ part E: using the key
def key_read_stats(
    client: Any, country: str, table: str = BATCH_TABLE, database: str = DATABASE
) -> ReadStats:
    """What a country-filtered query reads, by ClickHouse's own EXPLAIN, and the table's size."""
    # BEGIN SOLUTION (part E)
    sql = (
        f"SELECT icao24, fetch_time, latitude, longitude FROM {qualified(database, table)} "
        f"WHERE origin_country = {{country:String}}"
    )
    params = {"country": country}
    # EXPLAIN indexes = 1 prints, per index applied, a line "Granules: selected/total";
    # the first total is the whole table, the last selected is what is left to read.
    plan = "\n".join(str(row[0]) for row in _rows(client, f"EXPLAIN indexes = 1 {sql}", params))
    granules = [(int(a), int(b)) for a, b in re.findall(r"Granules:\s*(\d+)/(\d+)", plan)]
    if not granules:
        raise RuntimeError(f"no 'Granules: a/b' lines in the EXPLAIN output:\n{plan}")
    # EXPLAIN ESTIMATE gives the rows of the selected granules (one line per table read).
    estimate = client.query(f"EXPLAIN ESTIMATE {sql}", parameters=params)
    rows_read = sum(row["rows"] for row in estimate.named_results())
    table_rows = _rows(client, f"SELECT count() FROM {qualified(database, table)}")[0][0]
    return ReadStats(
        table_rows=int(table_rows),
        table_granules=granules[0][1],
        rows_read=int(rows_read),
        granules_read=granules[-1][0],
    )
    # END SOLUTION
