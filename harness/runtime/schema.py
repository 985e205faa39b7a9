"""The one definition of an OpenSky state vector, used by every lab, test and notebook.

OpenSky's `/api/states/all` answers `{"time": <unix s>, "states": [[...], ...]}`; each inner list
holds the fields below in this order (SI units: metres, m/s). A flat *row* is one state vector plus
`fetch_time`, the snapshot's `time`.
"""

from __future__ import annotations

from typing import Any

# (name, kind, nullable) in the order of OpenSky's state array. Kinds: str, int, float, bool, int[].
STATE_FIELDS: list[tuple[str, str, bool]] = [
    ("icao24", "str", False),
    ("callsign", "str", True),
    ("origin_country", "str", False),
    ("time_position", "int", True),
    ("last_contact", "int", False),
    ("longitude", "float", True),
    ("latitude", "float", True),
    ("baro_altitude", "float", True),
    ("on_ground", "bool", False),
    ("velocity", "float", True),
    ("true_track", "float", True),
    ("vertical_rate", "float", True),
    ("sensors", "int[]", True),
    ("geo_altitude", "float", True),
    ("squawk", "str", True),
    ("spi", "bool", False),
    ("position_source", "int", False),
    ("category", "int", True),  # only present when the API is asked for extended=1
]
STATE_FIELD_NAMES = [name for name, _, _ in STATE_FIELDS]
# A flat row: the snapshot time first, then the state vector's fields.
ROW_FIELDS: list[tuple[str, str, bool]] = [("fetch_time", "int", False), *STATE_FIELDS]
ROW_FIELD_NAMES = [name for name, _, _ in ROW_FIELDS]


def state_to_row(fetch_time: int, state: list[Any]) -> dict[str, Any]:
    """One state array (17 or 18 entries) to a flat row dict; a missing `category` becomes None."""
    if not isinstance(state, list) or len(state) not in (17, 18):
        raise ValueError(f"a state vector has 17 or 18 entries, got {state!r:.120}")
    row = {"fetch_time": fetch_time}
    row.update(zip(STATE_FIELD_NAMES, list(state) + [None] * (18 - len(state)), strict=True))
    return row


# The type of each field kind in Spark (a pyspark.sql.types class), Arrow (a pyarrow factory) and
# ClickHouse; a kind ending in `[]` is an array of the kind before it.
_KIND_TYPES = {
    "str": ("StringType", "string", "String"),
    "int": ("LongType", "int64", "Int64"),
    "float": ("DoubleType", "float64", "Float64"),
    "bool": ("BooleanType", "bool_", "Bool"),
}


def _kind_type(kind: str, column: int, make, array_of):
    """The type of a field kind in one system: `make(name)` builds the type `_KIND_TYPES` names in
    `column`, `array_of(type)` the array of a type."""
    if kind.endswith("[]"):
        return array_of(_kind_type(kind[:-2], column, make, array_of))
    return make(_KIND_TYPES[kind][column])


def spark_type(kind: str):
    """Spark type of a field kind ("str", "int", "float", "bool", "int[]")."""
    from pyspark.sql import types as T

    return _kind_type(kind, 0, lambda name: getattr(T, name)(), T.ArrayType)


def spark_row_schema():
    """Spark schema of a flat row (`fetch_time` + the state vector)."""
    from pyspark.sql import types as T

    return T.StructType([T.StructField(n, spark_type(k), True) for n, k, _ in ROW_FIELDS])


def spark_snapshot_schema():
    """Spark schema of one raw snapshot document: `time` and `states` (arrays of mixed values).

    JSON arrays of mixed types are read as arrays of strings, to be cast field by field.
    """
    from pyspark.sql import types as T

    return T.StructType(
        [
            T.StructField("time", T.LongType(), True),
            T.StructField("states", T.ArrayType(T.ArrayType(T.StringType())), True),
        ]
    )


def arrow_type(kind: str):
    """Arrow type of a field kind."""
    import pyarrow as pa

    return _kind_type(kind, 1, lambda name: getattr(pa, name)(), pa.list_)


def arrow_row_schema():
    """pyarrow schema of a flat row."""
    import pyarrow as pa

    return pa.schema([pa.field(n, arrow_type(k), True) for n, k, _ in ROW_FIELDS])


# ClickHouse: the platform's tables of flat rows (Lab 02's `flights_streaming`, Lab 04's tables,
# Lab 01's `flights_batch`) hold each field in the type of its kind, narrowed for a few fields:
# unix-second times as DateTime('UTC'), the country as a dictionary (about 50 distinct values),
# OpenSky's small codes as UInt8. A nullable field is Nullable(...), except an array: ClickHouse
# has no Nullable arrays.
_CLICKHOUSE_NARROWED = {
    "DateTime('UTC')": ("fetch_time", "time_position", "last_contact"),
    "LowCardinality(String)": ("origin_country",),
    "UInt8": ("position_source", "category"),
}


def clickhouse_type(name: str) -> str:
    """ClickHouse type of the flat row's field `name` (KeyError for a name that is not one)."""
    kind, nullable = {n: (k, null) for n, k, null in ROW_FIELDS}[name]
    narrowed = [t for t, names in _CLICKHOUSE_NARROWED.items() if name in names]
    if kind.endswith("[]"):  # ClickHouse has no Nullable arrays
        return f"Array({_KIND_TYPES[kind[:-2]][2]})"
    base = narrowed[0] if narrowed else _KIND_TYPES[kind][2]
    return f"Nullable({base})" if nullable else base


def clickhouse_columns(names: list[str] | None = None) -> str:
    """The column list of a ClickHouse `CREATE TABLE` (`name Type`, comma-separated) for the flat
    row's fields `names`, in that order; all of them (`ROW_FIELD_NAMES`) by default."""
    chosen = ROW_FIELD_NAMES if names is None else names
    return ",\n    ".join(f"{name} {clickhouse_type(name)}" for name in chosen)


# PostgreSQL: each field kind's type, narrowed for the times (timestamptz) and OpenSky's small
# codes (smallint); a kind ending in `[]` is an array.
_POSTGRES_KIND_TYPES = {
    "str": "text",
    "int": "bigint",
    "float": "double precision",
    "bool": "boolean",
}
_POSTGRES_NARROWED = {
    "timestamptz": ("fetch_time", "time_position", "last_contact", "event_time"),
    "smallint": ("position_source", "category"),
}


def postgres_type(name: str) -> str:
    """PostgreSQL type of the flat row's field `name`, or of the streaming job's `event_time` and
    `late` (KeyError for another name)."""
    kinds = {n: k for n, k, _ in ROW_FIELDS} | {"event_time": "int", "late": "bool"}
    kind = kinds[name]
    narrowed = [t for t, names in _POSTGRES_NARROWED.items() if name in names]
    base = narrowed[0] if narrowed else _POSTGRES_KIND_TYPES[kind.removesuffix("[]")]
    return f"{base}[]" if kind.endswith("[]") else base


# PostgreSQL `processed_flights`: the streaming job (Lab 02) upserts it, Debezium (Lab 05) captures
# it, Lab 07's dbt models read it. (name, PostgreSQL type, NOT NULL), primary key (icao24,
# fetch_time). The first nine columns are the ones Lab 05 replicates; the others are the rest of a
# state vector plus the streaming job's `event_time` and `late`, nullable so a writer that knows
# only the first nine (Lab 05's tests) can still insert.
_PROCESSED_FLIGHTS_NAMES = (
    "icao24 fetch_time callsign origin_country longitude latitude baro_altitude velocity on_ground "
    "time_position last_contact true_track vertical_rate sensors geo_altitude squawk spi "
    "position_source category event_time late"
).split()
_PROCESSED_FLIGHTS_NOT_NULL = ("icao24", "fetch_time", "origin_country", "on_ground")
PROCESSED_FLIGHTS_COLUMNS: list[tuple[str, str, bool]] = [
    (name, postgres_type(name), name in _PROCESSED_FLIGHTS_NOT_NULL)
    for name in _PROCESSED_FLIGHTS_NAMES
]
PROCESSED_FLIGHTS_KEY = ("icao24", "fetch_time")


def processed_flights_ddl(table: str = "public.processed_flights") -> str:
    """`CREATE TABLE IF NOT EXISTS <table> (...)` for `processed_flights`; `table` is inserted as
    given (quote or check it first: identifiers cannot be bound as parameters)."""
    columns = [
        f"{name} {pg_type}{' NOT NULL' if not_null else ''}"
        for name, pg_type, not_null in PROCESSED_FLIGHTS_COLUMNS
    ]
    columns.append(f"PRIMARY KEY ({', '.join(PROCESSED_FLIGHTS_KEY)})")
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(columns) + "\n)"


# PostgreSQL `flight_statistics`: the batch job (Lab 01) keeps its hourly figures per origin country
# here, Debezium (Lab 05) captures it (topic opensky.public.flight_statistics). (name, PostgreSQL
# type, NOT NULL), one row per (origin_country, stat_date, stat_hour). The first five columns are
# the ones Lab 05 replicates; flight_count is the number of distinct aircraft (icao24) in the hour.
_FLIGHT_STATISTICS_TYPES = {
    "origin_country": "text",
    "stat_date": "date",
    "flight_count": "integer",
    "avg_velocity": "double precision",
    "max_altitude": "double precision",
    "stat_hour": "smallint",
    "state_vectors": "bigint",
    "ground_share": "double precision",
}
_FLIGHT_STATISTICS_NULLABLE = ("avg_velocity", "max_altitude", "ground_share")
FLIGHT_STATISTICS_COLUMNS: list[tuple[str, str, bool]] = [
    (name, pg_type, name not in _FLIGHT_STATISTICS_NULLABLE)
    for name, pg_type in _FLIGHT_STATISTICS_TYPES.items()
]
FLIGHT_STATISTICS_KEY = ("origin_country", "stat_date", "stat_hour")


def flight_statistics_ddl(table: str = "public.flight_statistics") -> str:
    """`CREATE TABLE IF NOT EXISTS <table> (...)` for `flight_statistics`, then `REPLICA IDENTITY
    FULL` (Debezium's `before` then holds the whole old row): two statements, run them without
    parameters. `table` is inserted as given (quote or check it first)."""
    columns = [
        f"{name} {pg_type}{' NOT NULL' if not_null else ''}"
        for name, pg_type, not_null in FLIGHT_STATISTICS_COLUMNS
    ]
    columns.append("CHECK (stat_hour BETWEEN 0 AND 23)")
    columns.append(f"PRIMARY KEY ({', '.join(FLIGHT_STATISTICS_KEY)})")
    create = f"CREATE TABLE IF NOT EXISTS {table} (\n    " + ",\n    ".join(columns) + "\n)"
    return f"{create};\nALTER TABLE {table} REPLICA IDENTITY FULL"
