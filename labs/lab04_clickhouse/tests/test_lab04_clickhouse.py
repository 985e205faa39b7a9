"""Graded test suite for Lab 04 — used by `make lab-4` and instructors' grading.

Every test runs in its own throw-away database (`opensky_test_<uuid>`). Parts B–E run on tables
this suite creates with the schema that part A specifies, so each part is graded on its own.
"""

from __future__ import annotations

import math
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from harness.grading.suite_helpers import state_at
from harness.runtime.schema import arrow_row_schema

# ------------------------------------------------------------------ the schema part A asks for
COLUMNS: list[tuple[str, str]] = [
    ("fetch_time", "DateTime('UTC')"),
    ("icao24", "String"),
    ("callsign", "Nullable(String)"),
    ("origin_country", "LowCardinality(String)"),
    ("time_position", "Nullable(DateTime('UTC'))"),
    ("last_contact", "DateTime('UTC')"),
    ("longitude", "Nullable(Float64)"),
    ("latitude", "Nullable(Float64)"),
    ("baro_altitude", "Nullable(Float64)"),
    ("on_ground", "Bool"),
    ("velocity", "Nullable(Float64)"),
    ("true_track", "Nullable(Float64)"),
    ("vertical_rate", "Nullable(Float64)"),
    ("sensors", "Array(Int64)"),
    ("geo_altitude", "Nullable(Float64)"),
    ("squawk", "Nullable(String)"),
    ("spi", "Bool"),
    ("position_source", "UInt8"),
    ("category", "Nullable(UInt8)"),
]
SORTING_KEY = "origin_country, icao24, fetch_time"
TIME_COLUMNS = ("fetch_time", "time_position", "last_contact")
INJECTION = "x' OR 1=1 --"

# All hand-made data lives around this (naive = UTC) instant.
T0 = datetime(2024, 3, 1, 12, 0, 0)


def at(minutes: float) -> datetime:
    """T0 shifted by `minutes`."""
    return T0 + timedelta(minutes=minutes)


def unix(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


def flight(icao24: str, country: str, when: datetime, **fields: Any) -> dict[str, Any]:
    """One flat row (unix-second times, as harness.runtime.schema defines them) with plain defaults."""
    plain = {
        "callsign": f"CS{icao24[:4].upper()}",
        "origin_country": country,
        "longitude": 10.0,
        "latitude": 50.0,
        "baro_altitude": 10000.0,
        "velocity": 230.0,
        "geo_altitude": 10100.0,
        "category": None,
    }
    return state_at(unix(when), icao24, **{**plain, **fields})


def create_reference_table(
    ch,
    database: str,
    table: str,
    *,
    order_by: str = SORTING_KEY,
    partition_by: str = "toYYYYMM(fetch_time)",
    index_granularity: int = 8192,
) -> None:
    """A table with part A's columns (no TTL: the hand-made data is older than any retention)."""
    columns = ", ".join(f"`{name}` {kind}" for name, kind in COLUMNS)
    ch.command(
        f"CREATE TABLE `{database}`.`{table}` ({columns}) ENGINE = MergeTree "
        f"PARTITION BY {partition_by} ORDER BY ({order_by}) "
        f"SETTINGS index_granularity = {index_granularity}"
    )


def insert_rows(ch, database: str, table: str, rows: list[dict[str, Any]]) -> None:
    """One insert of flat rows (the suite's own loader, independent of part D)."""
    data = pa.Table.from_pylist(rows, schema=arrow_row_schema())
    for name in TIME_COLUMNS:
        i = data.schema.get_field_index(name)
        data = data.set_column(i, name, data.column(name).cast(pa.timestamp("s", tz="UTC")))
    ch.insert_arrow(table, data, database=database)


def table_info(ch, database: str, table: str) -> dict[str, Any]:
    rows = ch.query(
        "SELECT engine, sorting_key, partition_key, engine_full FROM system.tables "
        "WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database, "t": table},
    ).named_results()
    found = list(rows)
    assert found, (
        f"Lab 04: table {database}.{table} does not exist. Hint: check the name and that the "
        f"CREATE statement ran on the `database` argument, not a hard-coded one."
    )
    return found[0]


def column_types(ch, database: str, table: str) -> dict[str, str]:
    rows = ch.query(
        "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
        "ORDER BY position",
        parameters={"db": database, "t": table},
    ).result_rows
    return dict(rows)


def normalise(value: Any) -> Any:
    """Rows as plain tuples; aware datetimes as naive UTC, so either client setting compares."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, (tuple, list)):
        return tuple(normalise(v) for v in value)
    return value


def same(actual: Any, expected: Any) -> bool:
    """Equal, with floats compared to 1e-9 (relative) and datetimes normalised."""
    actual, expected = normalise(actual), normalise(expected)
    if isinstance(expected, float) and isinstance(actual, (int, float)):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, tuple):
        return (
            isinstance(actual, tuple)
            and len(actual) == len(expected)
            and all(same(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return actual == expected


def show(rows: Any) -> str:
    rows = normalise(rows)
    if isinstance(rows, tuple) and rows and isinstance(rows[0], tuple):
        return "\n      " + "\n      ".join(repr(r) for r in rows)
    return repr(rows)


def expect_rows(actual: Any, expected: list[tuple], what: str, hint: str) -> None:
    if not same(list(actual), expected):
        pytest.fail(
            f"{what}\n  expected:{show(expected)}\n  got:     {show(list(actual))}\n  Hint: {hint}"
        )


# ================================================================== part A: schema
@pytest.mark.points(3)
def test_partA_streaming_table_engine_keys_and_ttl(mod, ch, db_names):
    """flights_streaming: MergeTree sorted by (country, aircraft, time), daily partitions, a TTL."""
    db = db_names()
    mod.create_flight_tables(ch, db)
    info = table_info(ch, db, "flights_streaming")
    assert info["engine"] == "MergeTree", (
        f"Lab 04, part A: flights_streaming should use the MergeTree engine, got "
        f"{info['engine']!r}."
    )
    assert info["sorting_key"] == SORTING_KEY, (
        f"Lab 04, part A: flights_streaming's ORDER BY should be ({SORTING_KEY}), got "
        f"({info['sorting_key']}). Hint: the most selective filter of our queries (country) first, "
        f"then one aircraft's rows next to each other in time."
    )
    assert info["partition_key"] == "toYYYYMMDD(fetch_time)", (
        f"Lab 04, part A: flights_streaming should be partitioned by day, "
        f"PARTITION BY toYYYYMMDD(fetch_time); got {info['partition_key']!r}."
    )
    ttl = re.search(r"\bTTL fetch_time \+ toIntervalDay\((\d+)\)", info["engine_full"])
    assert ttl and int(ttl.group(1)) == 30, (
        f"Lab 04, part A: flights_streaming needs `TTL fetch_time + INTERVAL 30 DAY` (ttl_days "
        f"defaults to 30). The table's definition is: {info['engine_full']}"
    )
    assert "ttl_only_drop_parts = 1" in info["engine_full"], (
        f"Lab 04, part A: flights_streaming should drop whole expired parts "
        f"(SETTINGS ... ttl_only_drop_parts = 1) instead of rewriting them row by row; the "
        f"table's definition is: {info['engine_full']}"
    )
    other = db_names()
    mod.create_flight_tables(ch, other, ttl_days=7)
    full = table_info(ch, other, "flights_streaming")["engine_full"]
    assert "toIntervalDay(7)" in full, (
        f"Lab 04, part A: create_flight_tables(..., ttl_days=7) should give a 7-day TTL; the "
        f"table's definition is: {full}. Hint: use the ttl_days argument, not a constant."
    )


@pytest.mark.points(2)
def test_partA_batch_table_engine_and_keys(mod, ch, db_names):
    """flights_batch: MergeTree, same sort order, monthly partitions; honours index_granularity."""
    db = db_names()
    mod.create_flight_tables(ch, db, index_granularity=256)
    mod.create_flight_tables(ch, db, index_granularity=256)  # a second run must not fail
    info = table_info(ch, db, "flights_batch")
    assert (info["engine"], info["sorting_key"], info["partition_key"]) == (
        "MergeTree",
        SORTING_KEY,
        "toYYYYMM(fetch_time)",
    ), (
        f"Lab 04, part A: flights_batch should be MergeTree ORDER BY ({SORTING_KEY}) PARTITION BY "
        f"toYYYYMM(fetch_time); got engine={info['engine']!r}, ORDER BY ({info['sorting_key']}), "
        f"PARTITION BY {info['partition_key']!r}. Hint: the archive is read by month, not by day."
    )
    assert " TTL " not in f" {info['engine_full']} ", (
        f"Lab 04, part A: flights_batch is the archive and keeps every row: it must have no TTL; "
        f"its definition is: {info['engine_full']}"
    )
    for table in ("flights_streaming", "flights_batch"):
        full = table_info(ch, db, table)["engine_full"]
        assert "index_granularity = 256" in full, (
            f"Lab 04, part A: create_flight_tables(..., index_granularity=256) should set "
            f"SETTINGS index_granularity = 256 on {table}; its definition is: {full}. Hint: "
            f"calling it twice must work too (CREATE ... IF NOT EXISTS)."
        )


@pytest.mark.points(3)
def test_partA_column_types(mod, ch, db_names):
    """Both tables have every flat-row column with the types the README's table lists."""
    db = db_names()
    mod.create_flight_tables(ch, db)
    for table in ("flights_streaming", "flights_batch"):
        actual = column_types(ch, db, table)
        wrong = [
            f"{name}: expected {kind}, got {actual.get(name, '(missing)')}"
            for name, kind in COLUMNS
            if actual.get(name) != kind
        ]
        extra = sorted(set(actual) - {name for name, _ in COLUMNS})
        assert not wrong and not extra, (
            f"Lab 04, part A: columns of {table} differ from the README's table:\n  "
            + "\n  ".join(wrong + [f"unexpected column {name}" for name in extra])
            + "\n  Hint: times are DateTime('UTC'); a column can be NULL only when the OpenSky "
            "field can be null; origin_country has few distinct values (LowCardinality)."
        )


# ================================================================== part B: materialized view
def stats_base(ch, db: str) -> None:
    create_reference_table(ch, db, "flights_streaming", partition_by="toYYYYMMDD(fetch_time)")


@pytest.mark.points(2)
def test_partB_view_writes_to_aggregating_table(mod, ch, scratch_db):
    """country_statistics_mv is a materialized view writing to an AggregatingMergeTree."""
    stats_base(ch, scratch_db)
    mod.create_country_statistics(ch, scratch_db)
    view = table_info(ch, scratch_db, "country_statistics_mv")
    assert view["engine"] == "MaterializedView", (
        f"Lab 04, part B: country_statistics_mv should be a MATERIALIZED VIEW, got engine "
        f"{view['engine']!r}."
    )
    target = table_info(ch, scratch_db, "country_statistics")
    assert target["engine"] == "AggregatingMergeTree", (
        f"Lab 04, part B: the view should write TO country_statistics, an AggregatingMergeTree; "
        f"got engine {target['engine']!r}."
    )
    states = [t for t in column_types(ch, scratch_db, "country_statistics").values()]
    assert any(t.startswith("AggregateFunction(") for t in states), (
        f"Lab 04, part B: country_statistics should store aggregate *states* "
        f"(AggregateFunction(...) columns); its column types are {states}. Hint: countState(), "
        f"avgState(), ... in the view; countMerge(), avgMerge(), ... when reading."
    )


def stats_rows() -> list[list[dict[str, Any]]]:
    """Three separate inserts of hand-made rows (hours 11:00 and 12:00)."""
    return [
        [
            flight("g1", "Germany", at(-50), velocity=100.0, baro_altitude=1000.0),
            flight("g2", "Germany", at(-40), velocity=None, baro_altitude=None),
            flight("f1", "France", at(-45), velocity=50.0, baro_altitude=500.0, on_ground=True),
        ],
        [
            flight("g1", "Germany", at(-20), velocity=200.0, baro_altitude=3000.0),
            flight("f1", "France", at(5), velocity=150.0, baro_altitude=200.0),
        ],
        [flight("g3", "Germany", at(30), velocity=300.0, baro_altitude=9000.0, on_ground=True)],
    ]


@pytest.mark.points(3)
def test_partB_known_statistics_after_separate_inserts(mod, ch, scratch_db):
    """After three inserts, the view gives the known statistics, over all hours and hour ranges."""
    stats_base(ch, scratch_db)
    mod.create_country_statistics(ch, scratch_db)
    for batch in stats_rows():
        insert_rows(ch, scratch_db, "flights_streaming", batch)
    hint = (
        "one -State per statistic in the view, the matching -Merge in the query, GROUP BY "
        "origin_country only (the table keeps one row per country and hour)."
    )
    # (country, rows, distinct aircraft, avg velocity, max altitude, airborne rows)
    expect_rows(
        mod.country_statistics(ch, database=scratch_db),
        [("France", 2, 1, 100.0, 500.0, 1), ("Germany", 4, 3, 200.0, 9000.0, 3)],
        "Lab 04, part B: country_statistics() over all hours is wrong.",
        hint,
    )
    expect_rows(
        mod.country_statistics(ch, since=at(0), database=scratch_db),
        [("France", 1, 1, 150.0, 200.0, 1), ("Germany", 1, 1, 300.0, 9000.0, 0)],
        "Lab 04, part B: country_statistics(since=12:00) should only count hours >= 12:00.",
        hint,
    )
    expect_rows(
        mod.country_statistics(ch, until=at(0), database=scratch_db),
        [("France", 1, 1, 50.0, 500.0, 0), ("Germany", 3, 2, 150.0, 3000.0, 3)],
        "Lab 04, part B: country_statistics(until=12:00) should only count hours < 12:00.",
        hint,
    )
    everything = [("France", 2, 1, 100.0, 500.0, 1), ("Germany", 4, 3, 200.0, 9000.0, 3)]
    expect_rows(
        mod.country_statistics(ch, since=at(-30), database=scratch_db),
        everything,
        "Lab 04, part B: country_statistics(since=11:30) should include the hour 11:00, the "
        "hour that `since` falls in.",
        "compare hour >= toStartOfHour(since): `since` need not be on the hour.",
    )
    expect_rows(
        mod.country_statistics(ch, until=at(30), database=scratch_db),
        everything,
        "Lab 04, part B: country_statistics(until=12:30) should include the hour 12:00 "
        "(12:00 < 12:30).",
        "compare hour < until as it is.",
    )


def generated_batches(seed: int, batches: int, size: int) -> list[list[dict[str, Any]]]:
    """Deterministic pseudo-random rows over six hours, 12 countries, 80 aircraft."""
    rnd = random.Random(seed)
    countries = [f"Country{i:02d}" for i in range(12)]
    out = []
    for _ in range(batches):
        batch = []
        for _ in range(size):
            aircraft = rnd.randrange(80)
            batch.append(
                flight(
                    f"{aircraft:06x}",
                    countries[aircraft % 12],
                    at(rnd.randrange(-300, 60)),
                    velocity=None if rnd.random() < 0.1 else round(rnd.uniform(0, 300), 2),
                    baro_altitude=None
                    if rnd.random() < 0.1
                    else round(rnd.uniform(-200, 12000), 1),
                    on_ground=rnd.random() < 0.2,
                )
            )
        out.append(batch)
    return out


@pytest.mark.points(3)
def test_partB_view_equals_direct_aggregation(mod, ch, scratch_db):
    """On 1,500 rows in five inserts, the view equals aggregating flights_streaming directly."""
    stats_base(ch, scratch_db)
    mod.create_country_statistics(ch, scratch_db)
    for batch in generated_batches(seed=4, batches=5, size=300):
        insert_rows(ch, scratch_db, "flights_streaming", batch)
    direct = ch.query(
        f"SELECT origin_country, count(), uniqExact(icao24), avg(velocity), max(baro_altitude), "
        f"countIf(NOT on_ground) FROM `{scratch_db}`.flights_streaming "
        f"GROUP BY origin_country ORDER BY origin_country"
    ).result_rows
    expect_rows(
        mod.country_statistics(ch, database=scratch_db),
        direct,
        "Lab 04, part B: the view's statistics differ from aggregating flights_streaming directly.",
        "uniqExact (not uniq, which estimates), avg over the non-NULL velocities, and -Merge over "
        "all the rows of a country (several inserts leave several partial states).",
    )


def insert_many_aircraft(ch, database: str, count: int) -> None:
    """One row for each of `count` distinct aircraft, all of one country, in the hour before T0
    (built column by column: a hundred thousand dicts would only cost time)."""
    template = flight("000000", "Manyland", at(-30))
    columns = {name: [value] * count for name, value in template.items()}
    columns["icao24"] = [f"{i:06x}" for i in range(count)]
    columns["fetch_time"] = [unix(at(-59 + (i % 58))) for i in range(count)]
    data = pa.Table.from_pydict(columns, schema=arrow_row_schema())
    for name in TIME_COLUMNS:
        i = data.schema.get_field_index(name)
        data = data.set_column(i, name, data.column(name).cast(pa.timestamp("s", tz="UTC")))
    ch.insert_arrow("flights_streaming", data, database=database)


# More distinct values than uniq() keeps exactly (it samples beyond 65,536 hashes).
MANY = 100_000


@pytest.mark.points(2)
def test_partB_distinct_aircraft_are_exact_at_scale(mod, ch, scratch_db):
    """With 100,000 distinct aircraft the view's aircraft count is exact, not an estimate."""
    stats_base(ch, scratch_db)
    mod.create_country_statistics(ch, scratch_db)
    insert_many_aircraft(ch, scratch_db, MANY)
    got = [(s[0], s[1], s[2]) for s in mod.country_statistics(ch, database=scratch_db)]
    assert got == [("Manyland", MANY, MANY)], (
        f"Lab 04, part B: after inserting {MANY} rows of {MANY} distinct aircraft, "
        f"country_statistics() should give (country, rows, aircraft) = "
        f"('Manyland', {MANY}, {MANY}); got {got}. Hint: uniq() estimates once there are many "
        f"distinct values; the README asks for the exact count."
    )


# ================================================================== part C: queries
@pytest.fixture
def streaming(ch, scratch_db) -> str:
    """A scratch database holding an empty flights_streaming with part A's columns."""
    create_reference_table(ch, scratch_db, "flights_streaming")
    return scratch_db


@pytest.mark.points(3)
def test_partC_seed_query_flights_per_country_last_hour(mod, ch, streaming):
    """The platform's query on known rows: count() and avg(velocity) per country since now - 1 h."""
    insert_rows(
        ch,
        streaming,
        "flights_streaming",
        [
            flight("aa0001", "Germany", at(-50), velocity=100.0),
            flight("aa0002", "Germany", at(-30), velocity=200.0),
            flight("aa0003", "Germany", at(-15), velocity=300.0),
            flight("aa0001", "Germany", at(-1), velocity=None),
            flight("bb0001", "France", at(-60), velocity=50.0),  # exactly now - 1 hour
            flight("bb0002", "France", at(-30), velocity=70.0),
            flight("bb0001", "France", at(10), velocity=90.0),  # after `now`: no upper bound
            flight("cc0001", "Spain", at(-60 - 1 / 60), velocity=999.0),  # one second too old
            flight("cc0001", "Spain", at(-40), velocity=10.0),
            flight("cc0002", "Spain", at(-20), velocity=30.0),
            flight("dd0001", "Poland", at(-15), velocity=None),
            flight("ee0001", "Italy", at(-120), velocity=500.0),
        ],
    )
    expect_rows(
        mod.flights_per_country_last_hour(ch, now=T0, database=streaming),
        [
            ("Germany", 4, 200.0),
            ("France", 3, 70.0),
            ("Spain", 2, 20.0),
            ("Poland", 1, None),
        ],
        "Lab 04, part C: flights_per_country_last_hour(now=2024-03-01 12:00) is wrong.",
        "keep the platform's query exactly: WHERE fetch_time >= now - INTERVAL 1 HOUR (the "
        "boundary is included, and there is no upper bound), count() and avg(velocity) per "
        "origin_country, ORDER BY flight_count DESC; `now` is a bound {now:DateTime('UTC')}.",
    )


@pytest.mark.points(2)
def test_partC_busiest_countries(mod, ch, streaming):
    """Distinct aircraft per country in [since, until), most first, ties by name, LIMIT bound."""
    insert_rows(
        ch,
        streaming,
        "flights_streaming",
        [
            flight("a1", "A", at(-50)),
            flight("a1", "A", at(-40)),
            flight("a2", "A", at(-30)),
            flight("a3", "A", at(-20)),
            flight("c1", "C", at(-50)),
            flight("c2", "C", at(-40)),
            flight("c2", "C", at(-30)),
            flight("b1", "B", at(-60)),  # since is included
            flight("b2", "B", at(-10)),
            flight("b3", "B", at(0)),  # until is excluded
            flight("d1", "D", at(-61)),  # before since
            flight("d2", "D", at(-5)),
        ],
    )
    hint = (
        "uniqExact(icao24) per country, WHERE fetch_time >= since AND fetch_time < until, "
        "ORDER BY aircraft DESC, origin_country, LIMIT {limit:UInt32}."
    )
    expect_rows(
        mod.busiest_countries(ch, since=at(-60), until=at(0), limit=3, database=streaming),
        [("A", 3, 4), ("B", 2, 2), ("C", 2, 3)],
        "Lab 04, part C: busiest_countries(11:00, 12:00, limit=3) is wrong.",
        hint,
    )
    expect_rows(
        mod.busiest_countries(ch, since=at(-60), until=at(0), limit=10, database=streaming),
        [("A", 3, 4), ("B", 2, 2), ("C", 2, 3), ("D", 1, 1)],
        "Lab 04, part C: busiest_countries(11:00, 12:00, limit=10) is wrong.",
        hint,
    )


@pytest.mark.points(1)
def test_partC_busiest_countries_are_exact_at_scale(mod, ch, streaming):
    """With 100,000 distinct aircraft, busiest_countries counts every one of them."""
    insert_many_aircraft(ch, streaming, MANY)
    got = mod.busiest_countries(ch, since=at(-60), until=at(0), limit=5, database=streaming)
    assert normalise(got) == (("Manyland", MANY, MANY),), (
        f"Lab 04, part C: busiest_countries() over {MANY} distinct aircraft should return "
        f"[('Manyland', {MANY}, {MANY})]; got {normalise(got)}. Hint: uniq() is an estimate "
        f"beyond a few tens of thousands of values."
    )


LATEST_ROWS = [
    flight(
        "abc123",
        "Germany",
        at(-60),
        callsign="DLH1",
        latitude=50.0,
        longitude=8.0,
        baro_altitude=1000.0,
    ),
    flight(
        "abc123",
        "Germany",
        at(-50),
        callsign=None,
        latitude=51.0,
        longitude=9.0,
        baro_altitude=None,
    ),
    flight("abc123", "Germany", at(-40), latitude=None, longitude=None),  # no position
    flight(
        "def456",
        "France",
        at(-55),
        callsign="AFR9",
        latitude=48.0,
        longitude=2.0,
        baro_altitude=3000.0,
    ),
    flight("fff000", "Germany", at(-30), latitude=None, longitude=None),
]


@pytest.mark.points(3)
def test_partC_latest_position_per_aircraft(mod, ch, streaming):
    """argMax: each aircraft's newest row with a position, all values from that same row."""
    insert_rows(ch, streaming, "flights_streaming", LATEST_ROWS)
    hint = (
        "take every value from the newest row that has latitude and longitude, e.g. "
        "argMax((callsign, latitude, longitude, baro_altitude), fetch_time): argMax on a single "
        "Nullable column skips its NULLs and would mix rows."
    )
    expect_rows(
        mod.latest_positions(ch, database=streaming),
        [
            ("abc123", None, at(-50), 51.0, 9.0, None),
            ("def456", "AFR9", at(-55), 48.0, 2.0, 3000.0),
        ],
        "Lab 04, part C: latest_positions() is wrong.",
        hint,
    )
    expect_rows(
        mod.latest_positions(ch, country="Germany", database=streaming),
        [("abc123", None, at(-50), 51.0, 9.0, None)],
        "Lab 04, part C: latest_positions(country='Germany') is wrong.",
        "filter with a bound parameter: AND origin_country = {country:String}.",
    )


@pytest.mark.points(3)
def test_partC_injection_string_is_data(mod, ch, streaming):
    """A country like "x' OR 1=1 --" is a value: no rows for it, its own row when it exists."""
    insert_rows(ch, streaming, "flights_streaming", LATEST_ROWS)
    hint = (
        "never put the country into the SQL text; write {country:String} in the query and pass "
        "parameters={'country': country} to client.query()."
    )
    for attempt in (INJECTION, "Germany' OR '1'='1", "x'; DROP TABLE flights_streaming; --"):
        try:
            got = mod.latest_positions(ch, country=attempt, database=streaming)
        except NotImplementedError:
            raise
        except Exception as exc:
            pytest.fail(
                f"Lab 04, part C: latest_positions(country={attempt!r}) raised {exc!r}. "
                f"Hint: {hint}"
            )
        assert got == [], (
            f"Lab 04, part C: latest_positions(country={attempt!r}) should find no aircraft "
            f"(no country has that name); got {normalise(got)}. Hint: {hint}"
        )
    count = ch.query(f"SELECT count() FROM `{streaming}`.flights_streaming").result_rows[0][0]
    assert count == len(LATEST_ROWS), (
        f"Lab 04, part C: flights_streaming should still hold {len(LATEST_ROWS)} rows, "
        f"it holds {count}. Hint: {hint}"
    )
    insert_rows(
        ch,
        streaming,
        "flights_streaming",
        [
            flight(
                "0bad01",
                INJECTION,
                at(-5),
                callsign="EVIL",
                latitude=1.0,
                longitude=2.0,
                baro_altitude=3.0,
            ),
            flight(
                "c1c1c1",
                "Cote d'Ivoire",
                at(-4),
                callsign="VRE1",
                latitude=5.3,
                longitude=-4.0,
                baro_altitude=500.0,
            ),
        ],
    )
    expect_rows(
        mod.latest_positions(ch, country=INJECTION, database=streaming),
        [("0bad01", "EVIL", at(-5), 1.0, 2.0, 3.0)],
        f"Lab 04, part C: a country literally named {INJECTION!r} must come back as data.",
        hint,
    )
    expect_rows(
        mod.latest_positions(ch, country="Cote d'Ivoire", database=streaming),
        [("c1c1c1", "VRE1", at(-4), 5.3, -4.0, 500.0)],
        "Lab 04, part C: a real country name with a quote (Cote d'Ivoire) must work.",
        hint,
    )


@pytest.mark.points(2)
def test_partC_altitude_histogram(mod, ch, streaming):
    """Airborne rows with an altitude, in floor(altitude / band) * band bands, lowest first."""
    insert_rows(
        ch,
        streaming,
        "flights_streaming",
        [
            flight("a", "X", at(-9), baro_altitude=500.0),
            flight("a", "X", at(-8), baro_altitude=700.0),
            flight("a", "X", at(-7), baro_altitude=1500.0),
            flight("b", "X", at(-9), baro_altitude=1999.9),
            flight("c", "X", at(-9), baro_altitude=2000.0),
            flight("d", "X", at(-9), baro_altitude=-50.0),  # below sea level
            flight("e", "X", at(-9), baro_altitude=3000.0, on_ground=True),
            flight("f", "X", at(-9), baro_altitude=None),
        ],
    )
    hint = (
        "WHERE NOT on_ground AND baro_altitude IS NOT NULL; band start = floor(altitude / band) "
        "* band (floor, so -50 m falls in the band below 0); uniqExact(icao24) and count()."
    )
    # (band start in m, distinct aircraft, rows)
    expect_rows(
        mod.altitude_histogram(ch, band_m=1000, database=streaming),
        [(-1000, 1, 1), (0, 1, 2), (1000, 2, 2), (2000, 1, 1)],
        "Lab 04, part C: altitude_histogram(band_m=1000) is wrong.",
        hint,
    )
    expect_rows(
        mod.altitude_histogram(ch, band_m=2500, database=streaming),
        [(-2500, 1, 1), (0, 3, 5)],
        "Lab 04, part C: altitude_histogram(band_m=2500) is wrong.",
        hint + " The band width is a bound parameter too.",
    )


@pytest.mark.points(2)
def test_partC_aircraft_in_bounding_box(mod, ch, streaming):
    """Aircraft with a position inside [south, north] x [west, east] (edges in), by icao24."""
    insert_rows(
        ch,
        streaming,
        "flights_streaming",
        [
            flight("p1", "X", at(-9), latitude=45.0, longitude=0.0),  # south-west corner
            flight("p1", "X", at(-5), latitude=50.0, longitude=10.0),  # north-east corner
            flight("p2", "X", at(-8), latitude=47.0, longitude=5.0),
            flight("p2", "X", at(-2), latitude=51.0, longitude=5.0),  # north of the box
            flight("p3", "X", at(-7), latitude=44.999, longitude=5.0),
            flight("p4", "X", at(-6), latitude=None, longitude=None),
            flight("p5", "X", at(-6), latitude=47.0, longitude=10.0001),
        ],
    )
    expect_rows(
        mod.aircraft_in_box(ch, south=45.0, west=0.0, north=50.0, east=10.0, database=streaming),
        [("p1", 2, at(-5)), ("p2", 1, at(-8))],
        "Lab 04, part C: aircraft_in_box(45, 0, 50, 10) is wrong.",
        "latitude BETWEEN {south:Float64} AND {north:Float64} AND longitude BETWEEN ... "
        "(BETWEEN includes both ends); count() and max(fetch_time) of the rows inside.",
    )
    with pytest.raises(ValueError):
        mod.aircraft_in_box(ch, south=50.0, west=0.0, north=45.0, east=10.0, database=streaming)


# ================================================================== part D: loading
def roundtrip_rows() -> list[dict[str, Any]]:
    return [
        flight("a1b2c3", "Germany", at(-10), sensors=[1, 2], category=3, squawk="7700"),
        flight("a1b2c3", "Germany", at(-5), time_position=None, callsign=None, velocity=None),
        flight("d4e5f6", "France", at(-5), on_ground=True, spi=True, position_source=2),
    ]


def stored(ch, db: str, table: str) -> list[tuple]:
    return ch.query(
        f"SELECT icao24, fetch_time, time_position, callsign, sensors, category, squawk, "
        f"velocity, on_ground, spi, position_source FROM `{db}`.`{table}` "
        f"ORDER BY icao24, fetch_time"
    ).result_rows


ROUNDTRIP_EXPECTED = [
    ("a1b2c3", at(-10), at(-10), "CSA1B2", (1, 2), 3, "7700", 230.0, False, False, 0),
    ("a1b2c3", at(-5), None, None, (), None, "1000", None, False, False, 0),
    ("d4e5f6", at(-5), at(-5), "CSD4E5", (), None, "1000", 230.0, True, True, 2),
]


@pytest.mark.points(2)
def test_partD_load_frame_from_pandas_and_arrow(mod, ch, scratch_db):
    """load_frame() inserts an Arrow table and a pandas frame with every value intact."""
    hint = (
        "cast the unix-second columns (fetch_time, time_position, last_contact) to timestamps "
        "and send the whole frame with client.insert_arrow(table, data, database=database)."
    )
    for kind in ("arrow", "pandas"):
        table = f"flights_batch_{kind}"
        create_reference_table(ch, scratch_db, table)
        rows = roundtrip_rows()
        frame = pa.Table.from_pylist(rows, schema=arrow_row_schema())
        if kind == "pandas":
            frame = frame.to_pandas()
        sent = mod.load_frame(ch, frame, table=table, database=scratch_db)
        assert sent == len(rows), (
            f"Lab 04, part D: load_frame() with a {kind} frame should return {len(rows)} (the "
            f"rows sent), got {sent!r}."
        )
        actual = stored(ch, scratch_db, table)
        expect_rows(
            actual,
            ROUNDTRIP_EXPECTED,
            f"Lab 04, part D: the rows stored from a {kind} frame differ from the frame.",
            hint,
        )
    broken = pd.DataFrame(roundtrip_rows()).drop(columns=["origin_country"])
    with pytest.raises(ValueError, match="origin_country"):
        mod.load_frame(ch, broken, table="flights_batch_arrow", database=scratch_db)


@pytest.mark.points(3)
def test_partD_current_state_final_keeps_newest_version(mod, ch, scratch_db):
    """ReplacingMergeTree(fetch_time): FINAL keeps the newest row per aircraft, in any order."""
    mod.create_current_state(ch, scratch_db)
    info = table_info(ch, scratch_db, "aircraft_current_state")
    assert info["engine"] == "ReplacingMergeTree" and info["sorting_key"] == "icao24", (
        f"Lab 04, part D: aircraft_current_state should be ReplacingMergeTree(fetch_time) ORDER "
        f"BY icao24; got {info['engine_full']}"
    )
    assert "ReplacingMergeTree(fetch_time)" in info["engine_full"], (
        f"Lab 04, part D: the version column of the ReplacingMergeTree should be fetch_time, so "
        f"the newest snapshot wins even when it arrives first; got {info['engine_full']}"
    )
    # Keep the parts apart, so what FINAL does at query time is visible.
    ch.command(f"SYSTEM STOP MERGES `{scratch_db}`.aircraft_current_state")
    newer = [
        flight("a1", "X", at(0), callsign="NEW1", latitude=10.0),
        flight("a2", "Y", at(0), callsign="NEW2", latitude=20.0),
    ]
    older = [  # a late snapshot from an hour before
        flight("a1", "X", at(-60), callsign="OLD1", latitude=1.0),
        flight("a2", "Y", at(-60), callsign="OLD2", latitude=2.0),
        flight("a3", "Z", at(-60), callsign="OLD3", latitude=3.0),
    ]
    for snapshot in (newer, older):
        frame = pa.Table.from_pylist(snapshot, schema=arrow_row_schema())
        sent = mod.load_current_state(ch, frame, database=scratch_db)
        assert sent == len(snapshot), (
            f"Lab 04, part D: load_current_state() should return {len(snapshot)}, got {sent!r}."
        )
    final = mod.current_state(ch, final=True, database=scratch_db)
    assert [(s.icao24, s.callsign, s.latitude) for s in final] == [
        ("a1", "NEW1", 10.0),
        ("a2", "NEW2", 20.0),
        ("a3", "OLD3", 3.0),
    ], (
        f"Lab 04, part D: current_state(final=True) should return the newest row per aircraft "
        f"(a1 NEW1, a2 NEW2, a3 OLD3); got {normalise(final)}. Hint: SELECT ... FINAL."
    )
    raw = mod.current_state(ch, final=False, database=scratch_db)
    assert len(raw) == 5, (
        f"Lab 04, part D: without FINAL, and with merges stopped, all 5 inserted rows are still "
        f"there; current_state(final=False) returned {len(raw)} rows. Hint: only add FINAL when "
        f"final is True — the trade-off is exactly this difference."
    )
    ch.command(f"SYSTEM START MERGES `{scratch_db}`.aircraft_current_state")
    ch.command(f"OPTIMIZE TABLE `{scratch_db}`.aircraft_current_state FINAL")
    merged = mod.current_state(ch, final=False, database=scratch_db)
    assert normalise(merged) == normalise(final), (
        f"Lab 04, part D: after OPTIMIZE ... FINAL merged the parts, current_state(final=False) "
        f"should equal the FINAL result; got {normalise(merged)}."
    )


@pytest.mark.points(3)
def test_partD_load_shipped_recording(mod, ch, scratch_db):
    """The shipped recording loads in one insert: rows per country and time span as in its file."""
    from harness.runtime.data import load_arrow

    recording = load_arrow()
    create_reference_table(ch, scratch_db, "flights_batch")
    # Keep every insert's part apart, so the number of inserts shows.
    ch.command(f"SYSTEM STOP MERGES `{scratch_db}`.flights_batch")
    sent = mod.load_frame(ch, recording, database=scratch_db)
    assert sent == recording.num_rows, (
        f"Lab 04, part D: load_frame() should return {recording.num_rows} for the shipped "
        f"recording, got {sent!r}."
    )
    expected = sorted(
        (row["origin_country"], row["origin_country_count"])
        for row in recording.group_by("origin_country")
        .aggregate([("origin_country", "count")])
        .to_pylist()
    )
    actual = ch.query(
        f"SELECT origin_country, count() FROM `{scratch_db}`.flights_batch "
        f"GROUP BY origin_country ORDER BY origin_country"
    ).result_rows
    assert sum(c for _, c in actual) == recording.num_rows and actual == expected, (
        f"Lab 04, part D: flights_batch holds {sum(c for _, c in actual)} rows after loading the "
        f"recording's {recording.num_rows}; rows per country differ for "
        f"{sorted(set(actual) ^ set(expected))[:6]}. Hint: one insert_arrow of the whole frame."
    )
    parts = ch.query(
        "SELECT count() FROM system.parts WHERE database = {db:String} "
        "AND table = 'flights_batch' AND active",
        parameters={"db": scratch_db},
    ).result_rows[0][0]
    assert parts == 1, (
        f"Lab 04, part D: the recording (one month) should arrive in one insert, i.e. one part; "
        f"flights_batch has {parts} parts. Hint: many small inserts make many parts for the "
        f"merges to clean up; send the whole frame in a single insert_arrow()."
    )
    span = ch.query(
        f"SELECT min(fetch_time), max(fetch_time) FROM `{scratch_db}`.flights_batch"
    ).result_rows[0]
    times = recording.column("fetch_time")
    first = datetime.fromtimestamp(pc.min(times).as_py(), UTC)
    last = datetime.fromtimestamp(pc.max(times).as_py(), UTC)
    assert normalise(span) == normalise((first, last)), (
        f"Lab 04, part D: fetch_time should span {normalise((first, last))} (the recording's "
        f"unix seconds as UTC), got {normalise(span)}. Hint: cast to pa.timestamp('s', tz='UTC')."
    )


# ================================================================== part E: using the key
def key_test_rows() -> list[dict[str, Any]]:
    """12,000 rows: 20 countries, 200 aircraft, three months."""
    rows = []
    for i in range(12_000):
        month = i % 3
        rows.append(
            flight(
                f"{i % 200:06x}",
                f"C{i % 20:02d}",
                T0 + timedelta(days=31 * month, seconds=i),
            )
        )
    return rows


@pytest.mark.points(4)
def test_partE_sorting_key_filter_reads_fewer_granules(mod, ch, scratch_db):
    """A country filter on a table sorted by country reads a fraction of its granules and rows."""
    create_reference_table(ch, scratch_db, "flights_batch", index_granularity=32)
    insert_rows(ch, scratch_db, "flights_batch", key_test_rows())
    stats = mod.key_read_stats(ch, "C07", table="flights_batch", database=scratch_db)
    hint = (
        "run EXPLAIN indexes = 1 on the query and read the 'Granules: selected/total' lines "
        "(the first total is the table, the last selected is what is read), and EXPLAIN ESTIMATE "
        "for the rows; count() for the table's rows."
    )
    assert stats.table_rows == 12_000, (
        f"Lab 04, part E: table_rows should be 12000 (count() of the table), got "
        f"{stats.table_rows}. Hint: {hint}"
    )
    assert stats.table_granules >= 12_000 // 32, (
        f"Lab 04, part E: with index_granularity = 32, 12000 rows make at least 375 granules; "
        f"table_granules is {stats.table_granules}. Hint: {hint}"
    )
    assert 0 < stats.granules_read < stats.table_granules // 4, (
        f"Lab 04, part E: a filter on the first sorting-key column should read a small part of "
        f"the granules (about 1/20 here); granules_read={stats.granules_read} of "
        f"{stats.table_granules}. Hint: {hint}"
    )
    assert 600 <= stats.rows_read < stats.table_rows // 4, (
        f"Lab 04, part E: the 600 rows of country C07 lie in a few granules, so rows_read should "
        f"be at least 600 and far below 12000; got {stats.rows_read}. Hint: {hint}"
    )


@pytest.mark.points(2)
def test_partE_time_sorted_table_reads_everything(mod, ch, scratch_db):
    """The same filter on a table sorted by time alone skips nothing — measured, not assumed."""
    create_reference_table(
        ch, scratch_db, "flights_by_time", order_by="fetch_time", index_granularity=32
    )
    insert_rows(ch, scratch_db, "flights_by_time", key_test_rows())
    stats = mod.key_read_stats(ch, "C07", table="flights_by_time", database=scratch_db)
    assert stats.table_rows == 12_000 and stats.table_granules >= 375, (
        f"Lab 04, part E: the table holds 12000 rows in at least 375 granules; got "
        f"table_rows={stats.table_rows}, table_granules={stats.table_granules}."
    )
    assert (stats.granules_read, stats.rows_read) == (stats.table_granules, stats.table_rows), (
        f"Lab 04, part E: sorted by fetch_time only, a country filter must read every granule "
        f"and row; got granules_read={stats.granules_read}/{stats.table_granules}, "
        f"rows_read={stats.rows_read}/{stats.table_rows}. Hint: take the numbers from "
        f"ClickHouse's EXPLAIN for the table you are given, do not compute them."
    )


@pytest.mark.points(2)
def test_partE_country_is_a_bound_parameter(mod, ch, scratch_db):
    """key_read_stats() binds the country: odd names are data, quotes work, nothing more is read."""
    create_reference_table(ch, scratch_db, "flights_batch", index_granularity=32)
    insert_rows(ch, scratch_db, "flights_batch", key_test_rows())
    hint = (
        "pass the same parameters={'country': country} to the EXPLAIN queries; never put the "
        "country into the SQL text."
    )
    for country in (INJECTION, "Cote d'Ivoire"):
        try:
            stats = mod.key_read_stats(ch, country, table="flights_batch", database=scratch_db)
        except NotImplementedError:
            raise
        except Exception as exc:
            pytest.fail(f"Lab 04, part E: key_read_stats({country!r}) raised {exc!r}. Hint: {hint}")
        assert stats.granules_read < stats.table_granules // 4, (
            f"Lab 04, part E: no row has the country {country!r}, so the key should rule out "
            f"almost every granule; key_read_stats() reports {stats.granules_read} of "
            f"{stats.table_granules} granules read. Hint: {hint}"
        )
