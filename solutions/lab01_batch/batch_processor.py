"""Lab 01 — Batch processing with Spark: raw OpenSky snapshots to Parquet and ClickHouse.

The batch job of the OpenSky platform this course builds, one function per part:

    A  read_snapshots()   raw `/states/all` JSON Lines (optionally .gz) -> one row per state vector
    B  clean()            kept rows, and rejected rows with a `reason`
    C  enrich()           velocity in km/h, altitude in feet, flight phase, `date` and `hour`
    D  aggregate()        per origin_country and hour
    E  write_parquet(), write_quarantine(), create_clickhouse_tables(), load_clickhouse(),
       write_statistics_postgres()
    F  read_postgres()    `processed_flights` for a date range over JDBC
    G  parse_args()       the command line

The command line is the platform's:

    python batch_processor.py s3 's3a://raw-data/flights/*.json'
    python batch_processor.py postgres 2024-01-01 2024-01-31
    spark-submit --master spark://127.0.0.1:7077 $(python -m harness.runtime.spark) \\
        batch_processor.py s3 's3a://raw-data/flights/*.json'

Every function takes the names it writes to (output folder, database, tables) as parameters whose
defaults are the platform's names, so tests can run each part on throw-away names. What a valid
state vector is comes from harness.runtime.validity, shared with the streaming job (Lab 02).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby
from typing import Any, NamedTuple

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from harness.runtime.config import CLICKHOUSE_DB, endpoints
from harness.runtime.data import MALFORMED_LINE, MALFORMED_SNAPSHOT, MALFORMED_STATE, WRONG_TYPE
from harness.runtime.schema import (
    FLIGHT_STATISTICS_COLUMNS,
    FLIGHT_STATISTICS_KEY,
    ROW_FIELD_NAMES,
    STATE_FIELDS,
    flight_statistics_ddl,
    spark_row_schema,
    spark_snapshot_schema,
    spark_type,
)
from harness.runtime.validity import (
    DUPLICATE,
    FUTURE_POSITION,
    FUTURE_TOLERANCE_S,
    ICAO24_ALPHABET,
    ICAO24_LENGTH,
    INVALID_ICAO24,
    LATITUDE_MAX,
    LATITUDE_MIN,
    LONGITUDE_MAX,
    LONGITUDE_MIN,
    MIN_VELOCITY,
    NEGATIVE_VELOCITY,
    NULL_POSITION,
    OUT_OF_RANGE,
    REASONS,
)

# ------------------------------------------------------------------ names (the platform's)
RAW_PATH = "s3a://raw-data/flights/*.json"
OUTPUT = "s3a://processed-data"  # flights/, flight_statistics/ and flights_rejected/ go under it
FLIGHTS_DIR = "flights"
STATS_DIR = "flight_statistics"
REJECTED_DIR = "flights_rejected"
DATABASE = CLICKHOUSE_DB  # "opensky"
FLIGHTS_TABLE = "flights_batch"
STATS_TABLE = "flight_statistics_batch"
PG_TABLE = "processed_flights"
PG_PARTITIONS = 4
PG_STATS_TABLE = "flight_statistics"  # PostgreSQL, captured by the platform's CDC (Lab 05)

# ------------------------------------------------------------------ part A: reading
# The column Spark fills with the raw text of a line it cannot parse (PERMISSIVE mode).
CORRUPT_RECORD = "_corrupt_record"
# Rejected inputs of part A: when (snapshot time, if known), why, and the input as text.
READ_REJECTED_SCHEMA = "fetch_time BIGINT, reason STRING, record STRING"
# A state vector has 17 entries, or 18 when the API was asked for `category` (extended=1).
STATE_LENGTHS = (17, 18)

# ------------------------------------------------------------------ part B: rejection reasons
# The reasons (INVALID_ICAO24 … DUPLICATE, in the order they are checked: REASONS) and their
# thresholds are the platform's one definition of a valid state vector: harness.runtime.validity.

# ------------------------------------------------------------------ part C: derived columns
MS_TO_KMH = 3.6  # 1 m/s = 3.6 km/h
METRES_PER_FOOT = 0.3048  # exact, by definition
# Vertical rate (m/s) beyond which an airborne aircraft climbs or descends: 2.5 m/s ≈ 500 ft/min.
CLIMB_RATE = 2.5
PHASES = ("ground", "climb", "cruise", "descent")
ENRICHED_COLUMNS = ["velocity_kmh", "altitude_ft", "flight_phase", "date", "hour"]
FLIGHT_COLUMNS = [*ROW_FIELD_NAMES, *ENRICHED_COLUMNS]

# ------------------------------------------------------------------ part D: aggregates
STATS_COLUMNS = [
    "date",
    "hour",
    "origin_country",
    "aircraft",
    "state_vectors",
    "avg_velocity",
    "max_altitude",
    "ground_share",
]
# Part D's column -> PostgreSQL flight_statistics' column (harness.runtime.schema), and its type.
STATS_TO_PG = [
    ("origin_country", "origin_country", "string"),
    ("date", "stat_date", "date"),
    ("aircraft", "flight_count", "int"),
    ("avg_velocity", "avg_velocity", "double"),
    ("max_altitude", "max_altitude", "double"),
    ("hour", "stat_hour", "smallint"),
    ("state_vectors", "state_vectors", "bigint"),
    ("ground_share", "ground_share", "double"),
]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE_URL = re.compile(r"^[A-Za-z0-9._/=\-]+$")


# ------------------------------------------------------------------ results
@dataclass
class ReadResult:
    """Part A's result: `rows` (harness.runtime.schema.spark_row_schema()) and `rejected` inputs.

    `rejected` has the columns of READ_REJECTED_SCHEMA: `fetch_time` (null when unknown),
    `reason` (MALFORMED_LINE, MALFORMED_SNAPSHOT, MALFORMED_STATE or WRONG_TYPE) and `record`
    (the line as read, or the state vector as JSON).
    """

    rows: DataFrame
    rejected: DataFrame


@dataclass
class CleanResult:
    """Part B's result: `kept` rows (row schema) and `rejected` rows (row schema + `reason`)."""

    kept: DataFrame
    rejected: DataFrame


class HourPartition(NamedTuple):
    """One `date=YYYY-MM-DD/hour=H` partition of a dataset."""

    date: date
    hour: int


@dataclass
class Job:
    """What the command line asks for (part G)."""

    source: str  # "s3" or "postgres"
    path: str | None = None  # s3: the raw snapshot files (a glob)
    start: date | None = None  # postgres: first day, inclusive
    end: date | None = None  # postgres: last day, inclusive
    output: str = OUTPUT
    database: str = DATABASE
    stats_table: str = PG_STATS_TABLE  # PostgreSQL table for the hourly statistics
    table: str = PG_TABLE  # postgres: the table to read
    partitions: int = PG_PARTITIONS  # postgres: parallel JDBC queries


# ------------------------------------------------------------------ given helpers
def qualified(database: str, table: str) -> str:
    """`database`.`table` for ClickHouse SQL, after checking both are plain identifiers."""
    for name in (database, table):
        if not _IDENTIFIER.match(name):
            raise ValueError(f"{name!r} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return f"`{database}`.`{table}`"


def clickhouse_s3_source(dataset_url: str, day: date, hours: Iterable[int]) -> str:
    """An `s3(...)` table function reading the Parquet files of `hours` of `day` in `dataset_url`.

    `dataset_url` is where Spark wrote the dataset (`s3a://bucket/prefix`); ClickHouse reaches the
    same objects over HTTP at `endpoints().clickhouse_s3_endpoint`. The partition columns `date`
    and `hour` are not inside the files: ClickHouse reads them from the paths (Hive partitioning).
    """
    scheme, _, location = dataset_url.partition("://")
    location = location.strip("/")
    if scheme not in ("s3a", "s3") or not location or not _SAFE_URL.match(location):
        raise ValueError(f"expected s3a://bucket/prefix with plain characters, got {dataset_url!r}")
    ep = endpoints()
    wanted = [str(int(h)) for h in sorted(set(hours))]
    if not wanted:
        raise ValueError("no hours to read")
    # `{12,13}` is a glob of alternatives; a single alternative (`{0}`) would not match.
    hour_glob = wanted[0] if len(wanted) == 1 else "{" + ",".join(wanted) + "}"
    url = (
        f"{ep.clickhouse_s3_endpoint}/{location}/date={day.isoformat()}/hour={hour_glob}/*.parquet"
    )
    return f"s3('{url}', '{ep.minio_access_key}', '{ep.minio_secret_key}', 'Parquet')"


def conform_rows(df: DataFrame) -> DataFrame:
    """Cast a table of processed rows to the row schema (harness.runtime.schema.spark_row_schema()).

    Timestamp columns become unix seconds, other columns are cast to the row type, and optional
    columns the table lacks become nulls. `fetch_time`, `icao24` and `origin_country` must exist.
    """
    required = {"fetch_time", "icao24", "origin_country"}
    missing = sorted(required - set(df.columns))
    if missing:
        raise ValueError(f"the table has no column {', '.join(missing)}; it has {df.columns}")
    columns = []
    for field in spark_row_schema().fields:
        if field.name not in df.columns:
            columns.append(F.lit(None).cast(field.dataType).alias(field.name))
            continue
        column = F.col(field.name)
        if isinstance(df.schema[field.name].dataType, T.TimestampType | T.TimestampNTZType):
            column = F.unix_seconds(column.cast("timestamp"))
        columns.append(column.cast(field.dataType).alias(field.name))
    return df.select(columns)


def empty_read_rejected(spark: SparkSession) -> DataFrame:
    """An empty DataFrame with the columns of part A's rejected inputs."""
    return spark.createDataFrame([], READ_REJECTED_SCHEMA)


# ------------------------------------------------------------------ part A: read
def read_snapshots(spark: SparkSession, path: str) -> ReadResult:
    """Read raw snapshots (JSON Lines, .gz too) into one row per state vector, with an explicit
    schema; `fetch_time` is the snapshot's `time`. Nothing that cannot be read is lost: it goes to
    `rejected` with a reason (malformed line, malformed snapshot, malformed state vector, wrong
    type)."""
    # BEGIN SOLUTION (part A)
    schema = spark_snapshot_schema().add(CORRUPT_RECORD, T.StringType())
    # Read lines as text and parse them with from_json: the raw line stays at hand for every
    # rejection (the JSON source keeps it only for lines it cannot parse at all).
    lines = spark.read.text(path).where(F.trim("value") != "")
    parsed = lines.select(
        F.col("value").alias("record"),
        F.from_json(
            "value",
            schema,
            {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_RECORD},
        ).alias("doc"),
    ).select("record", "doc.*")

    bad_lines = parsed.where(F.col(CORRUPT_RECORD).isNotNull()).select(
        F.col("time").alias("fetch_time"), F.lit(MALFORMED_LINE).alias("reason"), "record"
    )
    snapshots = parsed.where(F.col(CORRUPT_RECORD).isNull())
    bad_snapshots = snapshots.where(F.col("time").isNull()).select(
        F.lit(None).cast("bigint").alias("fetch_time"),
        F.lit(MALFORMED_SNAPSHOT).alias("reason"),
        "record",
    )
    # `states: null` is how the API says "no aircraft": explode() gives no rows for it.
    states = snapshots.where(F.col("time").isNotNull()).select(
        F.col("time").alias("fetch_time"), F.explode("states").alias("state")
    )

    typed, wrong = [], []
    for index, (name, kind, _nullable) in enumerate(STATE_FIELDS):
        raw = F.get(F.col("state"), index)  # null past the end (17-entry states lack category)
        if kind == "str":
            value = raw
        elif kind == "int[]":
            value = F.from_json(raw, T.ArrayType(T.LongType()))
        else:
            value = raw.try_cast(spark_type(kind))
        typed.append(value.alias(name))
        if kind != "str":
            wrong.append(raw.isNotNull() & value.isNull())
    any_wrong = F.lit(False)
    for condition in wrong:
        any_wrong = any_wrong | condition

    well_formed = F.coalesce(F.size("state").isin(*STATE_LENGTHS), F.lit(False))
    judged = states.select(
        "fetch_time",
        F.to_json("state").alias("record"),
        F.when(~well_formed, MALFORMED_STATE).when(any_wrong, WRONG_TYPE).alias("reason"),
        *typed,
    )
    rows = judged.where(F.col("reason").isNull()).select(ROW_FIELD_NAMES)
    bad_states = judged.where(F.col("reason").isNotNull()).select("fetch_time", "reason", "record")
    rejected = bad_lines.unionByName(bad_snapshots).unionByName(bad_states)
    return ReadResult(rows=rows, rejected=rejected)
    # END SOLUTION


# ------------------------------------------------------------------ part B: clean
def clean(rows: DataFrame) -> CleanResult:
    """Trim callsigns (blank -> null) and split rows into kept and rejected (with a `reason`) by
    the rules of harness.runtime.validity, in its order: invalid icao24, null position,
    latitude/longitude out of range, negative velocity, time_position after fetch_time (beyond
    the tolerance), and — among the rows left — duplicate (icao24, time_position), of which the
    earliest fetch_time (then last_contact) is kept. The first reason that applies counts.
    rows in = kept + rejected."""
    # BEGIN SOLUTION (part B)
    callsign = F.trim(F.col("callsign"))
    trimmed = rows.withColumn("callsign", F.when(callsign != "", callsign))
    lat, lon = F.col("latitude"), F.col("longitude")
    # Case-sensitive on purpose; rlike gives null for a null icao24, which is invalid too.
    icao24_ok = F.col("icao24").rlike(f"^[{ICAO24_ALPHABET}]{{{ICAO24_LENGTH}}}$")
    reason = (
        F.when(~F.coalesce(icao24_ok, F.lit(False)), INVALID_ICAO24)
        .when(lat.isNull() | lon.isNull() | F.col("time_position").isNull(), NULL_POSITION)
        .when(
            ~lat.between(LATITUDE_MIN, LATITUDE_MAX) | ~lon.between(LONGITUDE_MIN, LONGITUDE_MAX),
            OUT_OF_RANGE,
        )
        .when(F.col("velocity") < MIN_VELOCITY, NEGATIVE_VELOCITY)
        .when(F.col("time_position") > F.col("fetch_time") + FUTURE_TOLERANCE_S, FUTURE_POSITION)
    )
    judged = trimmed.withColumn("reason", reason)
    # Number the rows of each (icao24, time_position) among the rows still valid, oldest first.
    valid = F.col("reason").isNull()
    first_seen = Window.partitionBy("icao24", "time_position", valid).orderBy(
        "fetch_time", "last_contact"
    )
    judged = judged.withColumn(
        "reason",
        F.when(valid & (F.row_number().over(first_seen) > 1), DUPLICATE).otherwise(F.col("reason")),
    )
    kept = judged.where(F.col("reason").isNull()).select(ROW_FIELD_NAMES)
    rejected = judged.where(F.col("reason").isNotNull()).select(*ROW_FIELD_NAMES, "reason")
    return CleanResult(kept=kept, rejected=rejected)
    # END SOLUTION


# ------------------------------------------------------------------ part C: enrich
def enrich(kept: DataFrame) -> DataFrame:
    """Add velocity_kmh (velocity × 3.6), altitude_ft (baro_altitude, else geo_altitude, / 0.3048),
    both rounded to 1 decimal; flight_phase: "ground" when on_ground, else "climb" when
    vertical_rate > 2.5 m/s, "descent" when < -2.5 m/s, else "cruise"; and the UTC `date` (date)
    and `hour` (int) of fetch_time."""
    # BEGIN SOLUTION (part C)
    altitude = F.coalesce(F.col("baro_altitude"), F.col("geo_altitude"))
    vertical_rate = F.col("vertical_rate")
    phase = (
        F.when(F.col("on_ground"), "ground")
        .when(vertical_rate > CLIMB_RATE, "climb")
        .when(vertical_rate < -CLIMB_RATE, "descent")
        .otherwise("cruise")
    )
    # Calendar from plain arithmetic on unix seconds: UTC whatever the session's time zone.
    seconds = F.col("fetch_time")
    return kept.select(
        *ROW_FIELD_NAMES,
        F.round(F.col("velocity") * MS_TO_KMH, 1).alias("velocity_kmh"),
        F.round(altitude / METRES_PER_FOOT, 1).alias("altitude_ft"),
        phase.alias("flight_phase"),
        F.date_from_unix_date(F.floor(seconds / 86400).cast("int")).alias("date"),
        F.floor((seconds % 86400) / 3600).cast("int").alias("hour"),
    )
    # END SOLUTION


# ------------------------------------------------------------------ part D: aggregate
def aggregate(enriched: DataFrame) -> DataFrame:
    """Per date, hour and origin_country: aircraft (distinct icao24), state_vectors (rows),
    avg_velocity (m/s), max_altitude (m, baro_altitude else geo_altitude) and ground_share
    (share of rows on the ground, 0..1). Columns in the order of STATS_COLUMNS."""
    # BEGIN SOLUTION (part D)
    altitude = F.coalesce(F.col("baro_altitude"), F.col("geo_altitude"))
    return enriched.groupBy("date", "hour", "origin_country").agg(
        F.countDistinct("icao24").alias("aircraft"),
        F.count(F.lit(1)).alias("state_vectors"),
        F.avg("velocity").alias("avg_velocity"),
        F.max(altitude).alias("max_altitude"),
        F.avg(F.col("on_ground").cast("double")).alias("ground_share"),
    )
    # END SOLUTION


# ------------------------------------------------------------------ part E: write
def write_parquet(df: DataFrame, url: str) -> list[HourPartition]:
    """Write `df` as Parquet under `url`, partitioned by date and hour; a re-run replaces only
    the partitions present in `df` (dynamic partition overwrite). Returns those partitions, sorted
    (a handful of (date, hour) pairs — the rows themselves never go to the driver)."""
    # BEGIN SOLUTION (part E)
    (
        df.write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("date", "hour")
        .parquet(url)
    )
    keys = df.select("date", "hour").distinct().collect()
    return sorted(HourPartition(row["date"], int(row["hour"])) for row in keys)
    # END SOLUTION


def write_quarantine(read_rejected: DataFrame, clean_rejected: DataFrame, url: str) -> None:
    """Keep every rejected input as JSON Lines under `url` with the columns `fetch_time`,
    `reason` and `record`, partitioned by the UTC date and hour of fetch_time. `record` is part
    A's record as it is, and for a row part B rejected the row (without `reason`) as a JSON
    object. A re-run replaces only the hours it covers; inputs without a time go to the
    partition Spark names `__HIVE_DEFAULT_PARTITION__`."""
    # BEGIN SOLUTION (part E)
    row_columns = [c for c in clean_rejected.columns if c != "reason"]
    from_clean = clean_rejected.select(
        "fetch_time", "reason", F.to_json(F.struct(*row_columns)).alias("record")
    )
    everything = read_rejected.select("fetch_time", "reason", "record").unionByName(from_clean)
    seconds = F.col("fetch_time")
    (
        everything.withColumn("date", F.date_from_unix_date(F.floor(seconds / 86400).cast("int")))
        .withColumn("hour", F.floor((seconds % 86400) / 3600).cast("int"))
        .write.mode("overwrite")
        .option("partitionOverwriteMode", "dynamic")
        .partitionBy("date", "hour")
        .json(url)
    )
    # END SOLUTION


def create_clickhouse_tables(
    client: Any,
    database: str = DATABASE,
    flights_table: str = FLIGHTS_TABLE,
    stats_table: str = STATS_TABLE,
) -> None:
    """Create the database and, if missing, the MergeTree tables for enriched rows (the state
    vector's columns, times as DateTime('UTC'), then ENRICHED_COLUMNS) and for the aggregates
    (STATS_COLUMNS)."""
    # BEGIN SOLUTION (part E)
    from harness.runtime.schema import clickhouse_columns

    flights, stats = qualified(database, flights_table), qualified(database, stats_table)
    # ENRICHED_COLUMNS' types; Lab 04 may have created flights_batch without them.
    enriched = [
        ("velocity_kmh", "Nullable(Float64)"),
        ("altitude_ft", "Nullable(Float64)"),
        ("flight_phase", "LowCardinality(String)"),
        ("date", "Date DEFAULT toDate(fetch_time)"),
        ("hour", "UInt8 DEFAULT toHour(fetch_time)"),
    ]
    columns = ",\n".join([clickhouse_columns(), *(f"{name} {kind}" for name, kind in enriched)])
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(
        f"""
        CREATE TABLE IF NOT EXISTS {flights} (
            {columns}
        )
        ENGINE = MergeTree
        PARTITION BY toYYYYMM(fetch_time)
        ORDER BY (origin_country, icao24, fetch_time)
        """
    )
    for name, kind in enriched:
        client.command(f"ALTER TABLE {flights} ADD COLUMN IF NOT EXISTS {name} {kind}")
    client.command(
        f"""
        CREATE TABLE IF NOT EXISTS {stats} (
            date            Date,
            hour            UInt8,
            origin_country  LowCardinality(String),
            aircraft        UInt64,
            state_vectors   UInt64,
            avg_velocity    Nullable(Float64),
            max_altitude    Nullable(Float64),
            ground_share    Nullable(Float64)
        )
        ENGINE = MergeTree
        PARTITION BY toYYYYMM(date)
        ORDER BY (date, hour, origin_country)
        """
    )
    # END SOLUTION


def load_clickhouse(
    client: Any,
    dataset_url: str,
    partitions: Sequence[HourPartition],
    table: str,
    columns: Sequence[str],
    database: str = DATABASE,
) -> int:
    """Replace `partitions` of `database.table` with the Parquet files Spark wrote under
    `dataset_url`: delete those hours, then let ClickHouse pull the files itself with
    `INSERT … SELECT … FROM s3(…)` (see clickhouse_s3_source). Returns the rows those hours hold."""
    # BEGIN SOLUTION (part E)
    target = qualified(database, table)
    names = ", ".join(f"`{c}`" for c in columns)
    for day, group in groupby(sorted(partitions), key=lambda p: p.date):
        hours = sorted({p.hour for p in group})
        where = "date = {day:Date} AND hour IN {hours:Array(UInt8)}"
        params = {"day": day, "hours": hours}
        # Delete then insert: the same hours as Spark's dynamic partition overwrite replaced.
        # mutations_sync = 2 waits until the delete is done before the insert starts.
        client.command(
            f"ALTER TABLE {target} DELETE WHERE {where} SETTINGS mutations_sync = 2",
            parameters=params,
        )
        client.command(
            f"INSERT INTO {target} ({names}) SELECT {names} "
            f"FROM {clickhouse_s3_source(dataset_url, day, hours)} "
            f"SETTINGS use_hive_partitioning = 1"
        )
    if not partitions:
        return 0
    keys = ", ".join(f"('{p.date.isoformat()}', {int(p.hour)})" for p in partitions)
    counts = client.query(
        f"SELECT date, hour, count() FROM {target} WHERE (date, hour) IN ({keys}) "
        f"GROUP BY date, hour"
    ).result_rows
    empty = sorted(set(partitions) - {HourPartition(d, int(h)) for d, h, _ in counts})
    if empty:  # s3() matched no file: say so rather than load nothing
        raise RuntimeError(f"ClickHouse found no rows in {dataset_url} for partitions {empty}")
    return sum(int(n) for _, _, n in counts)
    # END SOLUTION


def write_statistics_postgres(
    stats: DataFrame, partitions: Sequence[HourPartition], table: str = PG_STATS_TABLE
) -> int:
    """Make PostgreSQL `table` (created if missing: harness.runtime.schema.flight_statistics_ddl)
    hold exactly `stats` (part D's columns) for the hours in `partitions`, mapped to
    STATS_TO_PG; other hours stay as they are. The rows travel from the executors to a staging
    table; then one transaction inserts new rows, updates only rows whose values changed and
    deletes rows of those hours that `stats` no longer has. Returns the number of rows inserted,
    updated or deleted (0 when the run changed nothing: no change events for CDC)."""
    # BEGIN SOLUTION (part E)
    import uuid

    from psycopg import sql

    from harness.runtime.services import pg_connect

    target = sql.Identifier(*table.split("."))
    stage_name = f"{table.rsplit('.', 1)[-1]}_stage_{uuid.uuid4().hex[:12]}"
    stage = sql.Identifier(stage_name)  # in the session's search_path schema, like `table`
    columns = [name for name, _, _ in FLIGHT_STATISTICS_COLUMNS]
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    key = sql.SQL(", ").join(map(sql.Identifier, FLIGHT_STATISTICS_KEY))
    values = [c for c in columns if c not in FLIGHT_STATISTICS_KEY]
    with pg_connect() as conn:
        conn.execute(flight_statistics_ddl(sql.SQL("{}").format(target).as_string(conn)))
        conn.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(stage, target)
        )
    try:
        ep = endpoints()
        (
            stats.select([F.col(part_d).cast(kind).alias(pg) for part_d, pg, kind in STATS_TO_PG])
            .write.format("jdbc")
            .option("url", ep.pg_jdbc_url)
            .option("dbtable", stage_name)
            .option("user", ep.pg_user)
            .option("password", ep.pg_password)
            .option("driver", "org.postgresql.Driver")
            .mode("append")
            .save()
        )
        changed = sql.SQL(" OR ").join(
            sql.SQL("{t}.{c} IS DISTINCT FROM EXCLUDED.{c}").format(t=target, c=sql.Identifier(c))
            for c in values
        )
        upsert = sql.SQL(
            "INSERT INTO {t} ({names}) SELECT {names} FROM {s} ON CONFLICT ({key}) DO UPDATE "
            "SET {sets} WHERE {changed}"
        ).format(
            t=target,
            s=stage,
            names=names,
            key=key,
            sets=sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in values
            ),
            changed=changed,
        )
        # Rows of this run's hours that the new statistics no longer have (a country gone).
        vanished = sql.SQL(
            "DELETE FROM {t} AS old WHERE (old.stat_date, old.stat_hour) IN "
            "(SELECT * FROM unnest(%s::date[], %s::smallint[])) "
            "AND NOT EXISTS (SELECT 1 FROM {s} AS new WHERE {same})"
        ).format(
            t=target,
            s=stage,
            same=sql.SQL(" AND ").join(
                sql.SQL("new.{c} = old.{c}").format(c=sql.Identifier(c))
                for c in FLIGHT_STATISTICS_KEY
            ),
        )
        days = [p.date for p in partitions]
        hours = [int(p.hour) for p in partitions]
        with pg_connect() as conn, conn.transaction():
            inserted_or_updated = conn.execute(upsert).rowcount
            deleted = conn.execute(vanished, (days, hours)).rowcount
        return inserted_or_updated + deleted
    finally:
        with pg_connect() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
    # END SOLUTION


# ------------------------------------------------------------------ part F: PostgreSQL source
def read_postgres(
    spark: SparkSession,
    start: date,
    end: date,
    table: str = PG_TABLE,
    num_partitions: int = PG_PARTITIONS,
) -> DataFrame:
    """Rows of PostgreSQL `table` whose fetch_time falls on the days `start`..`end` (UTC, both
    inclusive), read over JDBC in `num_partitions` parallel range queries on fetch_time, with the
    date range pushed down to PostgreSQL; returned in the row schema (see conform_rows)."""
    # BEGIN SOLUTION (part F)
    if end < start:
        raise ValueError(f"the end date {end} is before the start date {start}")
    ep = endpoints()
    options = {
        "url": ep.pg_jdbc_url,
        "dbtable": table,
        "user": ep.pg_user,
        "password": ep.pg_password,
        "driver": "org.postgresql.Driver",
    }
    first = datetime(start.year, start.month, start.day)
    after = first + timedelta(days=(end - start).days + 1)  # the day after `end`, 00:00
    # fetch_time may be a timestamp (timestamptz) or unix seconds (bigint): ask the table.
    probe = spark.read.format("jdbc").options(**options).load()
    if isinstance(probe.schema["fetch_time"].dataType, T.TimestampType | T.TimestampNTZType):
        lower, upper = first.isoformat(sep=" "), after.isoformat(sep=" ")
        low, high = F.lit(lower).cast("timestamp"), F.lit(upper).cast("timestamp")
    else:
        epoch = datetime(1970, 1, 1)
        lower = str(int((first - epoch).total_seconds()))
        upper = str(int((after - epoch).total_seconds()))
        low, high = F.lit(int(lower)), F.lit(int(upper))
    df = (
        spark.read.format("jdbc")
        .options(**options)
        .option("partitionColumn", "fetch_time")
        .option("lowerBound", lower)
        .option("upperBound", upper)
        .option("numPartitions", str(num_partitions))
        .load()
    )
    # A filter on the JDBC source becomes a WHERE in each partition's query (PushedFilters).
    in_range = df.where((F.col("fetch_time") >= low) & (F.col("fetch_time") < high))
    return conform_rows(in_range)
    # END SOLUTION


# ------------------------------------------------------------------ part G: command line
def parse_args(argv: Sequence[str]) -> Job:
    """Parse the platform's command line — `s3 PATH` or `postgres START END` (YYYY-MM-DD, START <=
    END) — plus the options --output, --database, --stats-table, and for postgres --table and
    --partitions (a positive integer). Bad arguments print a usage message and exit with status 2
    (what argparse does)."""

    # BEGIN SOLUTION (part G)
    def day(text: str) -> date:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None

    def positive(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
        return int(text)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--output", default=OUTPUT, help=f"s3a:// folder for the results (default {OUTPUT})"
    )
    common.add_argument(
        "--database", default=DATABASE, help=f"ClickHouse database (default {DATABASE})"
    )
    common.add_argument(
        "--stats-table",
        default=PG_STATS_TABLE,
        help=f"PostgreSQL table for the hourly statistics (default {PG_STATS_TABLE})",
    )
    parser = argparse.ArgumentParser(
        prog="batch_processor.py",
        description="Lab 01 batch job: raw OpenSky snapshots to Parquet and ClickHouse.",
    )
    sources = parser.add_subparsers(dest="source", required=True, metavar="{s3,postgres}")
    s3 = sources.add_parser(
        "s3", parents=[common], help="raw JSON Lines snapshots (.json or .json.gz) from S3"
    )
    s3.add_argument("path", help=f"files to read, a glob (e.g. {RAW_PATH})")
    pg = sources.add_parser(
        "postgres", parents=[common], help=f"rows of PostgreSQL {PG_TABLE} for a date range"
    )
    pg.add_argument("start", type=day, help="first day, YYYY-MM-DD (UTC)")
    pg.add_argument("end", type=day, help="last day, YYYY-MM-DD (UTC), inclusive")
    pg.add_argument("--table", default=PG_TABLE, help=f"table to read (default {PG_TABLE})")
    pg.add_argument(
        "--partitions",
        type=positive,
        default=PG_PARTITIONS,
        help=f"parallel JDBC queries (default {PG_PARTITIONS})",
    )
    args = parser.parse_args(list(argv))
    if args.source == "postgres" and args.end < args.start:
        pg.error(f"the end date {args.end} is before the start date {args.start}")
    return Job(
        source=args.source,
        path=getattr(args, "path", None),
        start=getattr(args, "start", None),
        end=getattr(args, "end", None),
        output=args.output.rstrip("/"),
        database=args.database,
        stats_table=args.stats_table,
        table=getattr(args, "table", PG_TABLE),
        partitions=getattr(args, "partitions", PG_PARTITIONS),
    )
    # END SOLUTION


# ------------------------------------------------------------------ the job (given)
def spark_session(app_name: str = "lab01-batch-processor") -> SparkSession:
    """`harness.runtime.spark.get_spark()`, except under `spark-submit`, whose master and conf are kept."""
    if os.environ.get("PYSPARK_GATEWAY_PORT"):  # set when spark-submit's JVM started this Python
        return SparkSession.builder.appName(app_name).getOrCreate()
    from harness.runtime.spark import get_spark

    return get_spark(app_name)


def _count_by_reason(df: DataFrame) -> dict[str, int]:
    return {row["reason"]: int(row["count"]) for row in df.groupBy("reason").count().collect()}


def run(
    spark: SparkSession,
    read: ReadResult,
    output: str = OUTPUT,
    database: str = DATABASE,
    client: Any = None,
    stats_table: str = PG_STATS_TABLE,
) -> dict[str, Any]:
    """Clean, enrich, aggregate and write one batch; returns the counts it printed."""
    from harness.runtime.services import clickhouse_client

    # Each of these is used more than once below: keep it instead of recomputing its lineage.
    rows, unreadable_rows = read.rows.cache(), read.rejected.cache()
    cleaned = clean(rows)
    enriched, rejected_rows = enrich(cleaned.kept).cache(), cleaned.rejected.cache()
    rows_in, kept = rows.count(), enriched.count()
    rejected = _count_by_reason(rejected_rows)
    unreadable = _count_by_reason(unreadable_rows)
    if rows_in != kept + sum(rejected.values()):
        raise RuntimeError(
            f"clean() lost rows: {rows_in} in, {kept} kept + {sum(rejected.values())} rejected"
        )
    unknown = sorted(set(rejected) - set(REASONS))
    if unknown:  # the streaming job (Lab 02) must be able to give the same reasons
        raise RuntimeError(
            f"clean() gave reasons harness.runtime.validity does not define: {unknown}"
        )
    flights_url, stats_url = f"{output}/{FLIGHTS_DIR}", f"{output}/{STATS_DIR}"
    partitions = write_parquet(enriched, flights_url)
    stats = aggregate(enriched).cache()
    write_parquet(stats, stats_url)
    write_quarantine(unreadable_rows, rejected_rows, f"{output}/{REJECTED_DIR}")
    client = client or clickhouse_client()
    create_clickhouse_tables(client, database)
    in_flights = load_clickhouse(
        client, flights_url, partitions, FLIGHTS_TABLE, FLIGHT_COLUMNS, database
    )
    in_stats = load_clickhouse(client, stats_url, partitions, STATS_TABLE, STATS_COLUMNS, database)
    pg_changes = write_statistics_postgres(stats, partitions, stats_table)
    for cached in (rows, unreadable_rows, enriched, rejected_rows, stats):
        cached.unpersist()
    return {
        "master": spark.sparkContext.master,
        "rows_in": rows_in,
        "kept": kept,
        "rejected": rejected,
        "unreadable": unreadable,
        "partitions": [(p.date.isoformat(), p.hour) for p in partitions],
        "clickhouse_rows": in_flights,
        "clickhouse_stats": in_stats,
        "postgres_changes": pg_changes,
    }


def _report(job: Job, summary: dict[str, Any]) -> str:
    def reasons(counts: dict[str, int]) -> str:
        return "; ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "none"

    hours = summary["partitions"]
    span = (
        f"{hours[0][0]} {hours[0][1]:02d}h … {hours[-1][0]} {hours[-1][1]:02d}h" if hours else "-"
    )
    rejected = sum(summary["rejected"].values())
    return "\n".join(
        [
            f"Spark       master {summary['master']}",
            f"read        {summary['rows_in']:,} state vectors; unreadable inputs: "
            f"{reasons(summary['unreadable'])}",
            f"kept        {summary['kept']:,}; rejected {rejected:,} ({reasons(summary['rejected'])})",
            f"Parquet     {len(hours)} hour partition(s) ({span}) in {job.output}/{FLIGHTS_DIR} "
            f"and {job.output}/{STATS_DIR}; rejects in {job.output}/{REJECTED_DIR}",
            f"ClickHouse  {job.database}.{FLIGHTS_TABLE}: {summary['clickhouse_rows']:,} rows, "
            f"{job.database}.{STATS_TABLE}: {summary['clickhouse_stats']:,} rows in those hours",
            f"PostgreSQL  {job.stats_table}: {summary['postgres_changes']:,} rows inserted, "
            f"updated or deleted",
        ]
    )


def _pg_table_exists(table: str) -> bool:
    from harness.runtime.services import pg_connect

    with pg_connect() as conn:
        return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def _stats_table_problem(table: str) -> str | None:
    """Why an existing `table` cannot take the hourly statistics, or None (fine, or missing)."""
    from harness.runtime.services import pg_connect

    with pg_connect() as conn:
        if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]:
            return None
        have = {
            name
            for (name,) in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
        }
    missing = [name for name, _, _ in FLIGHT_STATISTICS_COLUMNS if name not in have]
    if not missing:
        return None
    return (
        f"PostgreSQL table {table!r} exists without the column(s) {', '.join(missing)} of "
        "harness.runtime.schema.flight_statistics_ddl(); another program created it with an older "
        "shape. Drop or migrate it, or pass --stats-table"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The platform's command line; see the module docstring."""
    job = parse_args(sys.argv[1:] if argv is None else argv)
    problem = _stats_table_problem(job.stats_table)
    if problem:
        print(f"batch_processor.py: {problem}", file=sys.stderr)
        return 1
    if job.source == "postgres" and not _pg_table_exists(job.table):
        print(
            f"batch_processor.py: PostgreSQL has no table {job.table!r} "
            f"(the streaming job of Lab 02 fills {PG_TABLE}; or pass --table)",
            file=sys.stderr,
        )
        return 1
    running = SparkSession.getActiveSession()  # a caller's session (a notebook, a test) stays up
    spark = spark_session()
    try:
        if job.source == "s3":
            read = read_snapshots(spark, job.path)
        else:
            rows = read_postgres(spark, job.start, job.end, job.table, job.partitions)
            read = ReadResult(rows=rows, rejected=empty_read_rejected(spark))
        summary = run(spark, read, job.output, job.database, stats_table=job.stats_table)
    finally:
        if running is None:
            spark.stop()
    print(_report(job, summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
