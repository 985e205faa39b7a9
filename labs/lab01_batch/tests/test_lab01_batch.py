"""Graded test suite for Lab 01 — used by `make lab-1` and instructors' grading.

Parts A–D run on small hand-made inputs with known answers; parts E and F write to MinIO,
ClickHouse and PostgreSQL under names made for each test. The last tests run the command line on a
one-minute slice of the shipped real recording (data/DATA.md) with planted bad inputs, twice —
with `spark-submit` and with `python` — and compare the results with an independent computation
in pandas (see conftest.py).
"""

from __future__ import annotations

import gzip
import json
import math
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from chispa.dataframe_comparer import DataFramesNotEqualError
from chispa.schema_comparer import SchemasNotEqualError
from lab01_support import Run, run_main
from psycopg import sql

from harness.grading.suite_helpers import hive_partitions
from harness.runtime import validity
from harness.runtime.schema import (
    FLIGHT_STATISTICS_COLUMNS,
    FLIGHT_STATISTICS_KEY,
    ROW_FIELD_NAMES,
    arrow_row_schema,
    spark_row_schema,
    state_to_row,
)
from harness.runtime.services import minio_client, pg_connect

# 2021-10-07 12:00:00 UTC, the start of the shipped recording.
T0 = 1633608000
DAY = date(2021, 10, 7)
NEXT_DAY = date(2021, 10, 8)
ENRICHED = ["velocity_kmh", "altitude_ft", "flight_phase", "date", "hour"]
FLIGHT_COLUMNS = [*ROW_FIELD_NAMES, *ENRICHED]
ENRICHED_DDL = "velocity_kmh DOUBLE, altitude_ft DOUBLE, flight_phase STRING, date DATE, hour INT"
STATS_DDL = (
    "date DATE, hour INT, origin_country STRING, aircraft BIGINT, state_vectors BIGINT, "
    "avg_velocity DOUBLE, max_altitude DOUBLE, ground_share DOUBLE"
)
STATS_COLUMNS = [part.split()[0] for part in STATS_DDL.split(", ")]
FLOAT_FIELDS = ("longitude", "latitude", "baro_altitude", "velocity", "true_track")


# ------------------------------------------------------------------ hand-made inputs
def state(
    icao24: str | None = "3c6444",
    *,
    callsign: str | None = "DLH4AB  ",
    country: str = "Germany",
    time_position: int | None = T0 - 2,
    last_contact: int | None = T0 - 1,
    lon: Any = 8.5,
    lat: Any = 50.0,
    baro: Any = 10000.0,
    on_ground: Any = False,
    velocity: Any = 230.0,
    vertical_rate: float | None = 0.0,
    sensors: list[int] | None = None,
    geo: float | None = None,
    extended: bool = True,
) -> list[Any]:
    """One state vector as OpenSky sends it (18 entries, or 17 with `extended=False`)."""
    vector = [
        icao24,
        callsign,
        country,
        time_position,
        last_contact,
        lon,
        lat,
        baro,
        on_ground,
        velocity,
        90.0,
        vertical_rate,
        sensors,
        geo,
        "1000",
        False,
        0,
        3,
    ]
    return vector if extended else vector[:17]


def row(fetch_time: int = T0, **fields: Any) -> dict[str, Any]:
    """One flat row (fetch_time + the 18 fields); JSON integers in double fields as floats."""
    flat = state_to_row(fetch_time, state(**fields))
    for name in FLOAT_FIELDS:
        if isinstance(flat[name], int) and not isinstance(flat[name], bool):
            flat[name] = float(flat[name])
    return flat


def write_lines(path: Path, lines: list[str]) -> Path:
    """Write JSON Lines (gzipped when the name ends in .gz)."""
    text = "".join(line + "\n" for line in lines)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def snapshot_line(fetch_time: int, states: list[list[Any]] | None) -> str:
    return json.dumps({"time": fetch_time, "states": states})


def rows_df(spark, rows: list[dict[str, Any]]):
    """A DataFrame of flat rows with harness.runtime.schema.spark_row_schema()."""
    return spark.createDataFrame(
        [tuple(r[name] for name in ROW_FIELD_NAMES) for r in rows], spark_row_schema()
    )


def enriched_df(spark, cases: list[tuple[dict, tuple]]):
    """What enrich() returns, from (row, (velocity_kmh, altitude_ft, flight_phase, date, hour))."""
    schema = spark_row_schema()
    for field in spark.createDataFrame([], ENRICHED_DDL).schema.fields:
        schema = schema.add(field)
    data = [tuple(r[name] for name in ROW_FIELD_NAMES) + extra for r, extra in cases]
    return spark.createDataFrame(data, schema)


def assert_frames_equal(actual, expected, *, part: str, what: str, hint: str) -> None:
    """chispa's comparison (row order and nullability ignored), naming the lab part, with a hint."""
    try:
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    except SchemasNotEqualError as exc:
        raise AssertionError(
            f"Part {part}: {what} has other columns or types than expected (left: yours, "
            f"right: expected). {hint}\n{exc}"
        ) from None
    except DataFramesNotEqualError as exc:
        raise AssertionError(
            f"Part {part}: {what} holds other rows than expected (left: yours, right: "
            f"expected). {hint}\n{exc}"
        ) from None


# ------------------------------------------------------------------ an independent reference
def reference_clean(frame) -> tuple[Any, dict[str, int]]:
    """Part B's rules (harness.runtime.validity) in pandas: the kept rows and the number of
    rejected rows per reason."""
    v = validity
    hex_digits = set(v.ICAO24_ALPHABET)
    icao24 = frame["icao24"].map(
        lambda a: isinstance(a, str) and len(a) == v.ICAO24_LENGTH and set(a) <= hex_digits
    )
    lat, lon = frame["latitude"], frame["longitude"]
    checks = [
        (v.INVALID_ICAO24, ~icao24.astype(bool)),
        (v.NULL_POSITION, lat.isna() | lon.isna() | frame["time_position"].isna()),
        (
            v.OUT_OF_RANGE,
            (lat < v.LATITUDE_MIN)
            | (lat > v.LATITUDE_MAX)
            | (lon < v.LONGITUDE_MIN)
            | (lon > v.LONGITUDE_MAX),
        ),
        (v.NEGATIVE_VELOCITY, frame["velocity"] < v.MIN_VELOCITY),
        (
            v.FUTURE_POSITION,
            frame["time_position"] > frame["fetch_time"] + v.FUTURE_TOLERANCE_S,
        ),
    ]
    rest = frame["fetch_time"].notna()
    counts = {}
    for reason, failed in checks:
        hit = rest & failed.fillna(False).astype(bool)
        counts[reason] = int(hit.sum())
        rest &= ~hit
    valid = frame[rest].sort_values(["fetch_time", "last_contact"], kind="stable")
    duplicate = valid.duplicated(["icao24", "time_position"], keep="first")
    counts[v.DUPLICATE] = int(duplicate.sum())
    return valid[~duplicate], {reason: n for reason, n in counts.items() if n}


def reference_aggregates(kept) -> dict[tuple[str, int, str], tuple]:
    """Part D in pandas: (date, hour, country) -> (aircraft, state_vectors, avg_velocity,
    max_altitude, ground_share)."""
    frame = kept.assign(
        date=(kept["fetch_time"] // 86400).map(
            lambda days: str(date(1970, 1, 1) + timedelta(days=int(days)))
        ),
        hour=(kept["fetch_time"] % 86400) // 3600,
        altitude=kept["baro_altitude"].fillna(kept["geo_altitude"]),
        ground=kept["on_ground"].astype("float64"),
    )
    out = {}
    for (day, hour, country), group in frame.groupby(["date", "hour", "origin_country"]):
        velocity, altitude = group["velocity"].mean(), group["altitude"].max()
        out[(day, int(hour), country)] = (
            int(group["icao24"].nunique()),
            len(group),
            None if math.isnan(velocity) else float(velocity),
            None if math.isnan(altitude) else float(altitude),
            float(group["ground"].mean()),
        )
    return out


# ================================================================== part A: read
@pytest.mark.points(3)
@pytest.mark.timeout(180)
def test_partA_reads_one_row_per_state_vector(mod, spark, tmp_path):
    """read_snapshots() reads .json and .json.gz snapshots into one typed row per state vector."""
    raw = tmp_path / "raw"
    raw.mkdir()
    first = [
        state("3c6444", sensors=[1, 2], baro=10000),
        state("4b1806", country="Switzerland", callsign=None, lon=7.5, lat=47.0, extended=False),
    ]
    second = [state("3c6444", time_position=T0 + 8, last_contact=T0 + 9, vertical_rate=-4.23)]
    third = [state("a1b2c3", country="United States", on_ground=True, velocity=3.5, baro=None)]
    write_lines(raw / "part-0.json", [snapshot_line(T0, first), snapshot_line(T0 + 10, second)])
    write_lines(
        raw / "part-1.json.gz",
        [snapshot_line(T0 + 20, None), snapshot_line(T0 + 30, third)],
    )

    result = mod.read_snapshots(spark, str(raw / "*"))

    expected = [
        row(T0, icao24="3c6444", sensors=[1, 2]),
        row(T0, icao24="4b1806", country="Switzerland", callsign=None, lon=7.5, lat=47.0),
        row(T0 + 10, time_position=T0 + 8, last_contact=T0 + 9, vertical_rate=-4.23),
        row(
            T0 + 30,
            icao24="a1b2c3",
            country="United States",
            on_ground=True,
            velocity=3.5,
            baro=None,
        ),
    ]
    expected[1]["category"] = None  # the 17-entry state vector has no category
    assert_frames_equal(
        result.rows,
        rows_df(spark, expected),
        part="A",
        what="read_snapshots(...).rows",
        hint="Read with harness.runtime.schema.spark_snapshot_schema(), explode `states`, take "
        "fetch_time from the snapshot's `time` and cast each entry to spark_row_schema()'s type "
        "(a 17-entry state has no category: null). `states: null` means no aircraft.",
    )
    rejected = result.rejected.count()
    assert rejected == 0, (
        f"Part A: these inputs are all valid, but read_snapshots(...).rejected holds {rejected} "
        f"rows (expected 0). Look at which reason you gave them: {result.rejected.collect()}"
    )


@pytest.mark.points(2)
@pytest.mark.timeout(180)
def test_partA_reports_unreadable_input_with_reasons(mod, spark, tmp_path):
    """Malformed lines, snapshots and state vectors and wrongly typed values are rejected with
    a reason — none vanish, and good state vectors next to them are kept."""
    truncated = '{"time": 1633608010, "states": [["3c6444", "DLH4AB  "'
    lines = [
        snapshot_line(
            T0,
            [
                state("3c6444"),
                ["4b1806", "short"],
                state("4b1807", lon="east"),
                state("4b1808", on_ground="maybe"),
            ],
        ),
        truncated,
        '{"hello": "world"}',
        "",
        "not json at all",
    ]
    path = write_lines(tmp_path / "bad.json", lines)

    result = mod.read_snapshots(spark, str(path))

    got = result.rejected.select("fetch_time", "reason")
    want = spark.createDataFrame(
        [
            (None, "malformed JSON line"),
            (None, "malformed JSON line"),
            (None, "malformed snapshot"),
            (T0, "malformed state vector"),
            (T0, "wrong type"),
            (T0, "wrong type"),
        ],
        "fetch_time BIGINT, reason STRING",
    )
    assert_frames_equal(
        got,
        want,
        part="A",
        what="read_snapshots(...).rejected (fetch_time, reason)",
        hint="Parse with mode PERMISSIVE and a _corrupt_record column; a line without `time` is "
        "a malformed snapshot; a state vector without 17 or 18 entries is malformed; an entry "
        "that does not cast to its type (try_cast gives null for a non-null input) is a wrong "
        "type. A blank line is no input at all.",
    )
    records = {r["record"] for r in result.rejected.collect()}
    assert truncated in records and "not json at all" in records, (
        f"Part A: the `record` of a malformed line must be the line exactly as read, so someone "
        f"can find and fix it. Got records: {sorted(map(str, records))}"
    )
    wrong = [r["record"] or "" for r in result.rejected.where("reason = 'wrong type'").collect()]
    kept_values = sorted(
        ("4b1807" in record and '"east"' in record) or ("4b1808" in record and "maybe" in record)
        for record in wrong
    )
    assert kept_values == [True, True], (
        "Part A: the `record` of a state vector with a wrong type must be that state vector as "
        'read, wrong value included (the longitude "east", the on_ground "maybe"), so '
        f"someone can see what was wrong. Got records: {wrong}. Hint: build it from the raw "
        "state array, not from the cast columns (the cast turned the wrong value into null)."
    )
    kept = [r["icao24"] for r in result.rows.collect()]
    assert kept == ["3c6444"], (
        f"Part A: the one valid state vector (icao24 3c6444) must still become a row next to the "
        f"rejected ones; got rows for {kept}."
    )


# ================================================================== part B: clean
TOLERANCE = validity.FUTURE_TOLERANCE_S


def part_b_rows() -> list[dict]:
    """One row per case of part B; icao24 says which case it is (its last_contact tells the
    two bbb005 rows apart)."""
    return [
        row(T0, icao24="aaa001", lat=None),
        row(T0, icao24="aaa002", lon=None, velocity=-5.0),  # null position wins
        row(T0, icao24="aaa003", time_position=None),
        row(T0, icao24="aaa004", lat=91.0),
        row(T0, icao24="aaa005", lon=-180.5),
        row(T0, icao24="aaa006", velocity=-0.5),
        row(T0, icao24="aaa007", time_position=T0 + TOLERANCE + 1, last_contact=T0 + 6),
        row(T0, icao24="3C6444"),  # upper case
        row(T0, icao24="3c644"),  # 5 characters
        row(T0, icao24="3c64440"),  # 7 characters
        row(T0, icao24="3g6444"),  # not hexadecimal
        row(T0, icao24=None),
        row(T0, icao24="AAA009", lat=None),  # an invalid icao24 wins over a null position
        row(T0, icao24="bbb001"),
        row(T0 + 10, icao24="bbb001", last_contact=T0 + 9),  # same time_position: duplicate
        row(T0 + 20, icao24="bbb001", last_contact=T0 + 19),  # and again
        row(T0, icao24="bbb002", lat=90.0, lon=-180.0, velocity=0.0, time_position=T0),
        row(T0, icao24="bbb003", velocity=None),
        row(T0, icao24="bbb004", time_position=T0 + TOLERANCE, last_contact=T0 + TOLERANCE),
        # Same fetch_time and time_position: the earlier last_contact is kept (it comes second).
        row(T0, icao24="bbb005", last_contact=T0 - 1, velocity=200.0),
        row(T0, icao24="bbb005", last_contact=T0 - 2, velocity=201.0),
        row(T0, icao24="ccc001", callsign="AFR73VJ "),
        row(T0, icao24="ccc002", callsign="        "),
        row(T0, icao24="ccc003", callsign=None),
        row(T0, icao24="ddd001", lat=None),  # rejected for its position ...
        row(T0 + 10, icao24="ddd001", last_contact=T0 + 9),  # ... so this one is no duplicate
    ]


@pytest.mark.points(3)
@pytest.mark.timeout(180)
def test_partB_rejects_each_reason(mod, spark):
    """clean() rejects invalid icao24s, null positions, out-of-range coordinates, negative
    velocities, positions from the future and duplicates, each with its reason (the first that
    applies), by the rules of harness.runtime.validity."""
    result = mod.clean(rows_df(spark, part_b_rows()))
    v = validity
    want = spark.createDataFrame(
        [
            ("aaa001", T0, T0 - 1, v.NULL_POSITION),
            ("aaa002", T0, T0 - 1, v.NULL_POSITION),
            ("aaa003", T0, T0 - 1, v.NULL_POSITION),
            ("aaa004", T0, T0 - 1, v.OUT_OF_RANGE),
            ("aaa005", T0, T0 - 1, v.OUT_OF_RANGE),
            ("aaa006", T0, T0 - 1, v.NEGATIVE_VELOCITY),
            ("aaa007", T0, T0 + 6, v.FUTURE_POSITION),
            ("3C6444", T0, T0 - 1, v.INVALID_ICAO24),
            ("3c644", T0, T0 - 1, v.INVALID_ICAO24),
            ("3c64440", T0, T0 - 1, v.INVALID_ICAO24),
            ("3g6444", T0, T0 - 1, v.INVALID_ICAO24),
            (None, T0, T0 - 1, v.INVALID_ICAO24),
            ("AAA009", T0, T0 - 1, v.INVALID_ICAO24),
            ("bbb001", T0 + 10, T0 + 9, v.DUPLICATE),
            ("bbb001", T0 + 20, T0 + 19, v.DUPLICATE),
            ("bbb005", T0, T0 - 1, v.DUPLICATE),
            ("ddd001", T0, T0 - 1, v.NULL_POSITION),
        ],
        "icao24 STRING, fetch_time BIGINT, last_contact BIGINT, reason STRING",
    )
    assert_frames_equal(
        result.rejected.select("icao24", "fetch_time", "last_contact", "reason"),
        want,
        part="B",
        what="clean(...).rejected (icao24, fetch_time, last_contact, reason)",
        hint="Check the rules of harness.runtime.validity in its order (ROW_RULES): icao24 "
        "exactly 6 lower-case hex digits (null is invalid), null position, range (the bounds "
        f"are fine), velocity < 0, time_position more than {TOLERANCE} s after fetch_time — "
        "then, among the rows still valid, keep the earliest fetch_time of each "
        "(icao24, time_position), and on a tie the earliest last_contact. Use the reason "
        "constants of harness.runtime.validity.",
    )


@pytest.mark.points(2)
@pytest.mark.timeout(180)
def test_partB_keeps_valid_rows_with_trimmed_callsigns(mod, spark):
    """clean() keeps valid rows unchanged except callsigns: trimmed, blank ones null."""
    result = mod.clean(rows_df(spark, part_b_rows()))
    cases = part_b_rows()
    keep = {"bbb002", "bbb003", "bbb004", "ccc001", "ccc002", "ccc003"}
    expected = [r for r in cases if r["icao24"] in keep]
    expected += [
        next(r for r in cases if r["icao24"] == "bbb001"),  # the earliest fetch_time
        next(r for r in cases if r["icao24"] == "bbb005" and r["last_contact"] == T0 - 2),
        next(r for r in cases if r["icao24"] == "ddd001" and r["latitude"] is not None),
    ]
    for r in expected:
        r["callsign"] = (r["callsign"] or "").strip() or None
    assert_frames_equal(
        result.kept,
        rows_df(spark, expected),
        part="B",
        what="clean(...).kept",
        hint="Kept rows have the row schema's columns in order; trim callsigns (OpenSky pads "
        "them to 8 characters) and turn blank ones into null; of duplicates keep the earliest "
        f"fetch_time, then the earliest last_contact; a time_position up to {TOLERANCE} s after "
        "fetch_time is fine (harness.runtime.validity.FUTURE_TOLERANCE_S).",
    )


@pytest.mark.points(1)
@pytest.mark.timeout(180)
def test_partB_rows_in_equal_kept_plus_rejected(mod, spark):
    """clean() accounts for every row: rows in = kept + rejected, and rejected carry a reason."""
    rows = part_b_rows() * 3  # exact copies too
    result = mod.clean(rows_df(spark, rows))
    kept, rejected = result.kept.count(), result.rejected.count()
    assert kept + rejected == len(rows), (
        f"Part B: {len(rows)} rows went in, but kept ({kept}) + rejected ({rejected}) = "
        f"{kept + rejected}. Every row must land in exactly one of the two."
    )
    no_reason = result.rejected.where("reason IS NULL OR reason = ''").count()
    assert no_reason == 0, f"Part B: {no_reason} rejected rows have no reason."
    assert kept == 9, (
        f"Part B: exact copies of a row are duplicates too: expected 9 kept rows, got {kept}."
    )


# ================================================================== part C: enrich
def part_c_rows() -> list[tuple[dict, tuple]]:
    """(kept row, its expected (velocity_kmh, altitude_ft, flight_phase, date, hour))."""
    return [
        (
            row(T0 + 3599, icao24="c00001", velocity=138.9, baro=2857.5, vertical_rate=-4.23),
            (500.0, 9375.0, "descent", DAY, 12),
        ),
        (
            row(
                1633651199, icao24="c00002", velocity=None, baro=None, geo=1000.0, vertical_rate=2.6
            ),
            (None, 3280.8, "climb", DAY, 23),
        ),
        (
            row(
                1633651200,
                icao24="c00003",
                on_ground=True,
                velocity=5.0,
                baro=None,
                vertical_rate=3.0,
            ),
            (18.0, None, "ground", NEXT_DAY, 0),
        ),
        (
            row(T0, icao24="c00004", velocity=231.5, baro=10000.0, vertical_rate=2.5),
            (833.4, 32808.4, "cruise", DAY, 12),
        ),
        (row(T0, icao24="c00005", vertical_rate=-2.5), (828.0, 32808.4, "cruise", DAY, 12)),
        (row(T0, icao24="c00006", vertical_rate=None), (828.0, 32808.4, "cruise", DAY, 12)),
        (row(T0, icao24="c00007", vertical_rate=-2.6), (828.0, 32808.4, "descent", DAY, 12)),
    ]


@pytest.mark.points(2)
@pytest.mark.timeout(180)
def test_partC_derived_columns(mod, spark):
    """enrich() adds km/h, feet, the flight phase and the UTC date and hour, after the row's
    own columns."""
    cases = part_c_rows()
    got = mod.enrich(rows_df(spark, [r for r, _ in cases]))
    assert got.columns == FLIGHT_COLUMNS, (
        f"Part C: enrich() must return the row's columns, then {ENRICHED}, in this order; got "
        f"{got.columns}."
    )
    assert_frames_equal(
        got,
        enriched_df(spark, cases),
        part="C",
        what="enrich(...)",
        hint="velocity_kmh = round(velocity * 3.6, 1); altitude_ft = round(altitude / 0.3048, "
        "1) with altitude = baro_altitude, else geo_altitude; date (DATE) and hour (INT) of "
        "fetch_time in UTC — 1633651199 is 2021-10-07 23:59:59, 1633651200 the next midnight.",
    )


@pytest.mark.points(2)
@pytest.mark.timeout(180)
def test_partC_flight_phase_thresholds(mod, spark):
    """flight_phase is ground, climb (> 2.5 m/s), descent (< -2.5 m/s) or cruise."""
    cases = part_c_rows()
    got = mod.enrich(rows_df(spark, [r for r, _ in cases])).select("icao24", "flight_phase")
    want = spark.createDataFrame(
        [(r["icao24"], extra[2]) for r, extra in cases], "icao24 STRING, flight_phase STRING"
    )
    assert_frames_equal(
        got,
        want,
        part="C",
        what="enrich(...) flight_phase",
        hint="on_ground first (whatever the vertical rate), then vertical_rate > 2.5 climb, "
        "< -2.5 descent, anything else (exactly ±2.5, or unknown) cruise.",
    )


# ================================================================== part D: aggregate
def part_d_rows() -> list[tuple[dict, tuple]]:
    day2 = T0 + 86400
    return [
        (
            row(T0, icao24="3c6444", velocity=200.0, baro=10000.0),
            (720.0, 32808.4, "cruise", DAY, 12),
        ),
        (
            row(T0 + 10, icao24="3c6444", velocity=100.0, baro=11000.0),
            (360.0, 36089.2, "cruise", DAY, 12),
        ),
        (
            row(T0 + 20, icao24="3c6445", velocity=None, baro=None, geo=12000.0, on_ground=True),
            (None, 39370.1, "ground", DAY, 12),
        ),
        (
            row(T0, icao24="392af9", country="France", velocity=50.0, baro=None, on_ground=True),
            (180.0, None, "ground", DAY, 12),
        ),
        (
            row(T0 + 3600, icao24="3c6444", velocity=220.0, baro=9000.0),
            (792.0, 29527.6, "cruise", DAY, 13),
        ),
        (
            row(T0 + 3610, icao24="3c6444", velocity=230.0, baro=8000.0),
            (828.0, 26246.7, "cruise", DAY, 13),
        ),
        (
            row(day2, icao24="3c6444", velocity=240.0, baro=10000.0),
            (864.0, 32808.4, "cruise", NEXT_DAY, 12),
        ),
    ]


@pytest.mark.points(3)
@pytest.mark.timeout(180)
def test_partD_aggregates_per_country_and_hour(mod, spark):
    """aggregate() gives per date, hour and country: distinct aircraft, rows, average velocity,
    maximum altitude and the share of rows on the ground."""
    got = mod.aggregate(enriched_df(spark, part_d_rows()))
    want = spark.createDataFrame(
        [
            (DAY, 12, "Germany", 2, 3, 150.0, 12000.0, 1 / 3),
            (DAY, 12, "France", 1, 1, 50.0, None, 1.0),
            (DAY, 13, "Germany", 1, 2, 225.0, 9000.0, 0.0),
            (NEXT_DAY, 12, "Germany", 1, 1, 240.0, 10000.0, 0.0),
        ],
        STATS_DDL,
    )
    assert_frames_equal(
        got,
        want,
        part="D",
        what="aggregate(...)",
        hint="Group by date, hour and origin_country (hour 12 of two days are two groups); "
        "aircraft = distinct icao24, state_vectors = rows, avg_velocity ignores nulls (m/s), "
        "max_altitude of baro_altitude else geo_altitude (m), ground_share = rows on the "
        "ground / rows. Columns in the order of README part D.",
    )


# ================================================================== part E: write
def part_e_rows(velocity: float = 230.0) -> list[tuple[dict, tuple]]:
    return [
        (row(T0, icao24="e00001", velocity=velocity), (velocity * 3.6, 32808.4, "cruise", DAY, 12)),
        (
            row(T0 + 3600, icao24="e00002", velocity=velocity),
            (velocity * 3.6, 32808.4, "cruise", DAY, 13),
        ),
        (
            row(T0 + 43200, icao24="e00003", velocity=velocity),
            (velocity * 3.6, 32808.4, "cruise", NEXT_DAY, 0),
        ),
    ]


@pytest.mark.points(2)
@pytest.mark.timeout(240)
def test_partE_parquet_partitioned_by_date_and_hour(mod, spark, s3_prefix):
    """write_parquet() writes date=/hour= partitions to MinIO and returns the partitions."""
    df = enriched_df(spark, part_e_rows())
    url = f"s3a://processed-data/{s3_prefix}/flights"
    written = mod.write_parquet(df, url)
    expected = [(DAY, 12), (DAY, 13), (NEXT_DAY, 0)]
    assert [(p[0], p[1]) for p in written] == expected, (
        f"Part E: write_parquet() should return the (date, hour) partitions it wrote, sorted: "
        f"expected {expected}, got {written}."
    )
    layout = hive_partitions(
        minio_client(),
        "processed-data",
        f"{s3_prefix}/flights",
        "Part E",
        "partitionBy('date', 'hour')",
    )
    assert layout == {(d.isoformat(), h) for d, h in expected}, (
        f"Part E: Parquet partitions in MinIO are {sorted(layout)}; expected one folder per "
        f"(date, hour) of the input: {expected}."
    )
    assert_frames_equal(
        spark.read.parquet(url).select(FLIGHT_COLUMNS),
        df,
        part="E",
        what="the Parquet dataset read back",
        hint="Write every column; date and hour become the folder names.",
    )


@pytest.mark.points(2)
@pytest.mark.timeout(240)
def test_partE_parquet_rerun_replaces_only_its_partitions(mod, spark, s3_prefix):
    """Writing hour 13 again replaces hour 13 only (dynamic partition overwrite); twice is the
    same as once."""
    url = f"s3a://processed-data/{s3_prefix}/flights"
    mod.write_parquet(enriched_df(spark, part_e_rows()[:2]), url)
    again = part_e_rows(velocity=100.0)[1:2]  # hour 13 with other values
    mod.write_parquet(enriched_df(spark, again), url)
    mod.write_parquet(enriched_df(spark, again), url)
    assert_frames_equal(
        spark.read.parquet(url).select(FLIGHT_COLUMNS),
        enriched_df(spark, part_e_rows()[:1] + again),
        part="E",
        what="the Parquet dataset after re-writing hour 13 twice",
        hint="mode('overwrite') alone replaces the whole dataset, and append duplicates rows: "
        "set partitionOverwriteMode to dynamic so only the partitions in the data are replaced.",
    )


def clickhouse_columns(ch, database: str, table: str) -> list[str]:
    return [
        r[0]
        for r in ch.query(
            "SELECT name FROM system.columns WHERE database = {d:String} AND table = {t:String} "
            "ORDER BY position",
            parameters={"d": database, "t": table},
        ).result_rows
    ]


@pytest.mark.points(1)
@pytest.mark.timeout(120)
def test_partE_clickhouse_tables_are_created(mod, ch, scratch_db):
    """create_clickhouse_tables() creates the database and both tables, and can run again."""
    for _ in range(2):
        mod.create_clickhouse_tables(ch, scratch_db, "flights_batch", "flight_statistics_batch")
    flights = clickhouse_columns(ch, scratch_db, "flights_batch")
    stats = clickhouse_columns(ch, scratch_db, "flight_statistics_batch")
    stats_columns = [part.split()[0] for part in STATS_DDL.split(", ")]
    assert set(FLIGHT_COLUMNS) <= set(flights), (
        f"Part E: {scratch_db}.flights_batch lacks columns "
        f"{sorted(set(FLIGHT_COLUMNS) - set(flights))}; it has {flights}."
    )
    assert set(stats_columns) <= set(stats), (
        f"Part E: {scratch_db}.flight_statistics_batch lacks columns "
        f"{sorted(set(stats_columns) - set(stats))}; it has {stats}."
    )


def flights_in_clickhouse(ch, database: str) -> list[tuple]:
    return ch.query(
        f"SELECT icao24, toUnixTimestamp(fetch_time), velocity_kmh, flight_phase, date, hour "
        f"FROM `{database}`.flights_batch ORDER BY icao24, fetch_time"
    ).result_rows


@pytest.mark.points(3)
@pytest.mark.timeout(300)
def test_partE_clickhouse_load_from_parquet_is_idempotent(mod, spark, ch, scratch_db, s3_prefix):
    """load_clickhouse() pulls the Parquet partitions into ClickHouse; loading again adds no
    duplicates, and re-loading one hour replaces that hour only."""
    flights_url = f"s3a://processed-data/{s3_prefix}/flights"
    stats_url = f"s3a://processed-data/{s3_prefix}/flight_statistics"
    cases = part_e_rows()
    # The test writes the Parquet itself: only part E's ClickHouse side is under test here.
    writer = enriched_df(spark, cases).write.option("partitionOverwriteMode", "dynamic")
    writer.mode("overwrite").partitionBy("date", "hour").parquet(flights_url)
    stats = spark.createDataFrame(
        [
            (DAY, 12, "Germany", 1, 1, 230.0, 10000.0, 0.0),
            (NEXT_DAY, 0, "Germany", 1, 1, 230.0, None, 0.0),
        ],
        STATS_DDL,
    )
    stats.write.mode("overwrite").partitionBy("date", "hour").parquet(stats_url)
    partitions = [
        mod.HourPartition(DAY, 12),
        mod.HourPartition(DAY, 13),
        mod.HourPartition(NEXT_DAY, 0),
    ]
    stats_partitions = [partitions[0], partitions[2]]

    mod.create_clickhouse_tables(ch, scratch_db)
    for _ in range(2):
        n = mod.load_clickhouse(
            ch, flights_url, partitions, "flights_batch", FLIGHT_COLUMNS, scratch_db
        )
        assert n == 3, (
            f"Part E: load_clickhouse() should return the 3 rows of those hours, got {n}."
        )
        mod.load_clickhouse(
            ch,
            stats_url,
            stats_partitions,
            "flight_statistics_batch",
            [c.split()[0] for c in STATS_DDL.split(", ")],
            scratch_db,
        )
    want = [(r["icao24"], r["fetch_time"], e[0], e[2], e[3], e[4]) for r, e in cases]
    got = flights_in_clickhouse(ch, scratch_db)
    assert got == want, (
        f"Part E: after loading the same partitions twice, {scratch_db}.flights_batch should hold "
        f"each row once.\nexpected {want}\ngot      {got}\nHint: delete the partitions' rows "
        f"(date, hour) before INSERT INTO … SELECT … FROM s3(…)."
    )
    got_stats = ch.query(
        f"SELECT date, hour, origin_country, aircraft, state_vectors, avg_velocity, max_altitude, "
        f"ground_share FROM `{scratch_db}`.flight_statistics_batch ORDER BY date, hour"
    ).result_rows
    want_stats = [tuple(r) for r in stats.orderBy("date", "hour").collect()]
    assert got_stats == want_stats, (
        f"Part E: {scratch_db}.flight_statistics_batch holds {got_stats}, expected {want_stats}."
    )

    again = part_e_rows(velocity=100.0)[1:2]  # hour 13 with other values
    writer = enriched_df(spark, again).write.option("partitionOverwriteMode", "dynamic")
    writer.mode("overwrite").partitionBy("date", "hour").parquet(flights_url)
    mod.load_clickhouse(
        ch, flights_url, [partitions[1]], "flights_batch", FLIGHT_COLUMNS, scratch_db
    )
    want = [want[0], (again[0][0]["icao24"], T0 + 3600, 360.0, "cruise", DAY, 13), want[2]]
    got = flights_in_clickhouse(ch, scratch_db)
    assert got == want, (
        f"Part E: after re-loading hour 13 only, the other hours must stay and hour 13 must hold "
        f"the new rows.\nexpected {want}\ngot      {got}"
    )


def quarantine_inputs(spark, variant: str = "first"):
    """Part A's and part B's rejects for write_quarantine(): hours 12 and 13, and no time."""
    read_rejected = spark.createDataFrame(
        [(None, "malformed JSON line", "not json"), (T0 + 5, "wrong type", f'["{variant}"]')],
        "fetch_time BIGINT, reason STRING, record STRING",
    )
    rows = [
        row(T0, icao24="aaa001", lat=None),
        row(T0 + 3600, icao24="aaa002", velocity=-1.0, callsign=f"{variant[:8]}"),
    ]
    schema = spark_row_schema().add("reason", "string")
    clean_rejected = spark.createDataFrame(
        [
            (*[r[n] for n in ROW_FIELD_NAMES], reason)
            for r, reason in zip(rows, ["null position", "negative velocity"], strict=True)
        ],
        schema,
    )
    return read_rejected, clean_rejected, rows


def quarantine_contents(spark, url: str) -> list[tuple]:
    got = spark.read.json(url)
    missing = {"fetch_time", "reason", "record", "date", "hour"} - set(got.columns)
    assert not missing, (
        f"Part E: the quarantine at {url} lacks the columns {sorted(missing)}; it has "
        f"{got.columns}. Hint: fetch_time, reason, record, partitioned by date and hour."
    )
    return sorted(
        (
            (
                r["fetch_time"],
                r["reason"],
                r["record"],
                None if r["date"] is None else str(r["date"]),
                r["hour"],
            )
            for r in got.collect()
        ),
        key=str,
    )


def record_as_row(record: str) -> dict[str, Any]:
    """A quarantined row's `record` parsed back; absent keys are nulls (to_json omits them)."""
    parsed = json.loads(record)
    assert isinstance(parsed, dict), (
        f"Part E: a row part B rejected must be quarantined as a JSON object of its columns, "
        f"got {record!r}."
    )
    return {name: parsed.get(name) for name in ROW_FIELD_NAMES}


@pytest.mark.points(2)
@pytest.mark.timeout(240)
def test_partE_quarantine_keeps_every_reject_and_reruns_replace_its_hours(mod, spark, s3_prefix):
    """write_quarantine() keeps part A's and part B's rejects with reason and record, by date and
    hour; writing again replaces only the hours written."""
    url = f"s3a://processed-data/{s3_prefix}/flights_rejected"
    read_rejected, clean_rejected, rows = quarantine_inputs(spark)
    mod.write_quarantine(read_rejected, clean_rejected, url)
    got = quarantine_contents(spark, url)
    reasons = sorted(((fetch_time, reason) for fetch_time, reason, *_ in got), key=str)
    want = sorted(
        [(None, "malformed JSON line"), (T0 + 5, "wrong type")]
        + [(T0, "null position"), (T0 + 3600, "negative velocity")],
        key=str,
    )
    assert reasons == want, (
        f"Part E: the quarantine holds (fetch_time, reason) {reasons}, expected {want}: every "
        "reject of part A and of part B, once."
    )
    by_time = {fetch_time: (record, day, hour) for fetch_time, _, record, day, hour in got}
    assert by_time[None][0] == "not json" and by_time[T0 + 5][0] == '["first"]', (
        f"Part E: part A's rejects keep their `record` as it is; got {got}."
    )
    for original in rows:
        record, day, hour = by_time[original["fetch_time"]]
        assert record_as_row(record) == original, (
            f"Part E: the record of a row part B rejected must hold all the row's columns "
            f"(without `reason`), as JSON.\nexpected {original}\ngot      {record}"
        )
        want_hour = (original["fetch_time"] % 86400) // 3600
        assert (day, hour) == (DAY.isoformat(), want_hour), (
            f"Part E: the reject with fetch_time {original['fetch_time']} is in partition "
            f"date={day}/hour={hour}, expected date={DAY}/hour={want_hour} (UTC)."
        )

    # Again, then only hour 13 with new content: hour 12 stays, hour 13 is replaced.
    mod.write_quarantine(read_rejected, clean_rejected, url)
    _, later_rejected, later_rows = quarantine_inputs(spark, "second")
    empty = read_rejected.limit(0)
    mod.write_quarantine(empty, later_rejected.where(f"fetch_time >= {T0 + 3600}"), url)
    got = quarantine_contents(spark, url)
    times = sorted((r[0] for r in got), key=str)
    want_times = sorted([None, T0, T0 + 5, T0 + 3600], key=str)
    assert times == want_times, (
        f"Part E: after writing the same rejects twice and hour 13 once more, the quarantine "
        f"holds rejects with fetch_time {times}, expected each once: {want_times}. Hint: a "
        "re-run must replace the partitions it writes and leave the others alone (dynamic "
        "partition overwrite); append duplicates, a plain overwrite loses the other hours."
    )
    hour_13 = next(record for fetch_time, _, record, *_ in got if fetch_time == T0 + 3600)
    assert record_as_row(hour_13)["callsign"] == later_rows[1]["callsign"], (
        "Part E: hour 13 was written again with new content, but the quarantine still holds "
        f"the old record: {hour_13}."
    )


def stats_frame(spark, rows: list[tuple]):
    """Part D's output (STATS_DDL) from tuples."""
    return spark.createDataFrame(rows, STATS_DDL)


def pg_statistics(table: str) -> dict[tuple, tuple]:
    """(stat_date, stat_hour, origin_country) -> (the other columns..., row version) of a table."""
    columns = [name for name, _, _ in FLIGHT_STATISTICS_COLUMNS]
    values = [c for c in columns if c not in FLIGHT_STATISTICS_KEY]
    with pg_connect() as conn:
        rows = conn.execute(
            sql.SQL("SELECT stat_date, stat_hour, origin_country, {}, xmin::text FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, values)), sql.Identifier(table)
            )
        ).fetchall()
    return {(r[0], int(r[1]), r[2]): tuple(r[3:]) for r in rows}


STATS_12 = [
    (DAY, 12, "Germany", 2, 3, 150.0, 12000.0, 1 / 3),
    (DAY, 12, "France", 1, 1, 50.0, None, 1.0),
]
STATS_13 = [(DAY, 13, "Germany", 1, 2, 225.0, 9000.0, 0.0)]


def as_pg(stats: list[tuple]) -> dict[tuple, tuple]:
    """Part D tuples as flight_statistics rows: key -> (flight_count, avg_velocity,
    max_altitude, state_vectors, ground_share)."""
    return {(d, h, c): (a, v, m, n, g) for d, h, c, a, n, v, m, g in stats}


@pytest.mark.points(3)
@pytest.mark.timeout(240)
def test_partE_statistics_to_postgres_change_only_what_changed(mod, spark, pg_stats_table):
    """write_statistics_postgres() makes flight_statistics hold the run's hours exactly: new rows
    inserted, changed rows updated, vanished rows deleted, unchanged rows not rewritten (each
    rewrite is a change event downstream), other hours untouched."""
    table = pg_stats_table
    hours = [mod.HourPartition(DAY, 12), mod.HourPartition(DAY, 13)]
    n = mod.write_statistics_postgres(stats_frame(spark, STATS_12 + STATS_13), hours, table)
    first = pg_statistics(table)
    got = {key: values[:-1] for key, values in first.items()}
    assert got == as_pg(STATS_12 + STATS_13), (
        f"Part E: after the first write, {table} holds\n{got}\nexpected\n"
        f"{as_pg(STATS_12 + STATS_13)}\n(key (stat_date, stat_hour, origin_country) -> "
        "flight_count = aircraft, avg_velocity, max_altitude, state_vectors, ground_share)."
    )
    assert n == 3, f"Part E: the first write inserted 3 rows, but returned {n}."
    with pg_connect() as conn:
        identity = conn.execute(
            "SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (table,)
        ).fetchone()[0]
    assert identity == "f", (
        f"Part E: {table} must have REPLICA IDENTITY FULL (so CDC events carry the whole old "
        "row); create it with harness.runtime.schema.flight_statistics_ddl()."
    )

    n = mod.write_statistics_postgres(stats_frame(spark, STATS_12 + STATS_13), hours, table)
    again = pg_statistics(table)
    rewritten = sorted(key for key in first if again.get(key, (None,))[-1] != first[key][-1])
    assert n == 0 and not rewritten and again.keys() == first.keys(), (
        f"Part E: writing the same statistics again must change nothing, yet it returned {n} "
        f"and rewrote the rows {rewritten} (their row version xmin changed). Each rewrite is a "
        "change event for CDC. Hint: ON CONFLICT … DO UPDATE … WHERE the values are DISTINCT "
        "FROM the new ones; never delete-then-insert."
    )

    # A row of another hour, written by an earlier run, must survive a run that does not cover it.
    with pg_connect() as conn:
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (origin_country, stat_date, flight_count, avg_velocity, "
                "max_altitude, stat_hour, state_vectors, ground_share) "
                "VALUES ('Spain', %s, 1, 1.0, 1.0, 11, 1, 0.0)"
            ).format(sql.Identifier(table)),
            (DAY,),
        )
    # Hour 12 again: Germany's figures changed, France is gone; hour 13 is not in this run.
    germany = (DAY, 12, "Germany", 2, 4, 160.0, 12500.0, 0.25)
    n = mod.write_statistics_postgres(stats_frame(spark, [germany]), hours[:1], table)
    last = pg_statistics(table)
    got = {key: values[:-1] for key, values in last.items()}
    want = {**as_pg([germany] + STATS_13), (DAY, 11, "Spain"): (1, 1.0, 1.0, 1, 0.0)}
    assert got == want, (
        f"Part E: after re-writing hour 12 (Germany changed, France gone), {table} holds\n{got}"
        f"\nexpected\n{want}\nHint: update changed rows, delete the rows of the run's hours "
        "that the new statistics lack, and leave the other hours alone."
    )
    hour_13 = (DAY, 13, "Germany")
    assert last[hour_13][-1] == first[hour_13][-1] and n == 2, (
        f"Part E: re-writing hour 12 must change 2 rows (Germany updated, France deleted) and "
        f"leave hour 13 as it was; it returned {n}, and hour 13's row was "
        f"{'rewritten' if last[hour_13][-1] != first[hour_13][-1] else 'kept'}."
    )


# ================================================================== part F: PostgreSQL
PG_DDL = """
    CREATE TABLE {} (
        fetch_time timestamptz NOT NULL, icao24 text NOT NULL, callsign text,
        origin_country text NOT NULL, time_position bigint, last_contact bigint,
        longitude double precision, latitude double precision, baro_altitude double precision,
        on_ground boolean, velocity double precision, true_track double precision,
        vertical_rate double precision, sensors bigint[], geo_altitude double precision,
        squawk text, spi boolean, position_source integer, category integer,
        PRIMARY KEY (icao24, fetch_time)
    )
"""
# 2023-12-31 23:59:59, 2024-01-01 00:00:00, 2024-01-15 12:00, 2024-01-31 23:59:59, 2024-02-01.
PG_TIMES = [1704067199, 1704067200, 1705320000, 1706745599, 1706745600]


@pytest.fixture
def pg_table():
    """A processed_flights-like table with one row just outside, inside and at each bound."""
    name = f"lab01_test_{uuid.uuid4().hex[:12]}"
    rows = [
        row(t, icao24=f"f0000{i}", sensors=[1, 2] if i == 2 else None)
        for i, t in enumerate(PG_TIMES)
    ]
    with pg_connect() as conn:
        conn.execute(sql.SQL(PG_DDL).format(sql.Identifier(name)))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {} VALUES ({})").format(
                    sql.Identifier(name),
                    sql.SQL(", ").join([sql.Placeholder()] * len(ROW_FIELD_NAMES)),
                ),
                [
                    (
                        datetime.fromtimestamp(r["fetch_time"], UTC),
                        *[r[n] for n in ROW_FIELD_NAMES[1:]],
                    )
                    for r in rows
                ],
            )
    yield name, rows
    with pg_connect() as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.mark.points(2)
@pytest.mark.timeout(240)
def test_partF_reads_the_date_range(mod, spark, pg_table):
    """read_postgres() returns the rows of the given days (both inclusive) in the row schema."""
    table, rows = pg_table
    got = mod.read_postgres(spark, date(2024, 1, 1), date(2024, 1, 31), table, 3)
    assert_frames_equal(
        got,
        rows_df(spark, rows[1:4]),
        part="F",
        what=f"read_postgres(spark, 2024-01-01, 2024-01-31, {table!r}, 3)",
        hint="From 2024-01-01 00:00:00 UTC inclusive to 2024-02-01 00:00:00 exclusive; "
        "fetch_time back to unix seconds (conform_rows() does that for you).",
    )


@pytest.mark.points(2)
@pytest.mark.timeout(240)
def test_partF_pushes_the_range_down_and_reads_in_partitions(mod, spark, pg_table):
    """The date range reaches PostgreSQL (pushed filters or a subquery), and the read runs as
    `num_partitions` parallel queries."""
    table, _ = pg_table
    # Spark shortens a scan's metadata (PushedFilters) to 100 characters when it plans the query.
    previous = spark.conf.get("spark.sql.maxMetadataStringLength")
    spark.conf.set("spark.sql.maxMetadataStringLength", "100000")
    try:
        got = mod.read_postgres(spark, date(2024, 1, 1), date(2024, 1, 31), table, 3)
        partitions = got.rdd.getNumPartitions()
        plan = got._jdf.queryExecution().executedPlan().toString()
    finally:
        spark.conf.set("spark.sql.maxMetadataStringLength", previous)
    assert partitions == 3, (
        f"Part F: read_postgres(..., num_partitions=3) read in {partitions} partition(s). Give "
        "the JDBC source partitionColumn, lowerBound, upperBound and numPartitions."
    )
    # Both ends of the range must reach PostgreSQL. Spark pushes IsNotNull(fetch_time) on its
    # own for any filter, even one it cannot push: that one does not count.
    filters = " ".join(re.findall(r"PushedFilters: \[([^\]]*)\]", plan))
    pushed = re.search(r"GreaterThan\w*\(fetch_time", filters) and re.search(
        r"LessThan\w*\(fetch_time", filters
    )
    relation = " ".join(re.findall(r"JDBCRelation\((.*?)\) \[numPartitions", plan, re.S))
    subquery = re.search(r"fetch_time\W*>", relation) and re.search(r"fetch_time\W*<", relation)
    assert pushed or subquery, (
        "Part F: the date range is not pushed down to PostgreSQL: the JDBC scan has no lower and "
        "upper bound on fetch_time among its PushedFilters (IsNotNull does not bound anything), "
        "so PostgreSQL sends the whole table and Spark filters it. Filter the JDBC DataFrame on "
        "the raw fetch_time column before anything else — a filter on a converted column "
        f"cannot be pushed — or read a subquery.\nPushed: [{filters}]\nPlan:\n{plan}"
    )


# ================================================================== part G: command line
@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_partG_parses_the_seed_commands(mod):
    """parse_args() understands the platform's two commands, with the platform's defaults."""
    s3 = mod.parse_args(["s3", "s3a://raw-data/flights/*.json"])
    got = (s3.source, s3.path, s3.output, s3.database)
    want = ("s3", "s3a://raw-data/flights/*.json", "s3a://processed-data", "opensky")
    assert got == want, f"Part G: `s3 s3a://raw-data/flights/*.json` gave {got}, expected {want}."
    pg = mod.parse_args(["postgres", "2024-01-01", "2024-01-31"])
    got = (pg.source, pg.start, pg.end, pg.table)
    want = ("postgres", date(2024, 1, 1), date(2024, 1, 31), "processed_flights")
    assert got == want, f"Part G: `postgres 2024-01-01 2024-01-31` gave {got}, expected {want}."
    assert (s3.stats_table, pg.partitions) == ("flight_statistics", 4), (
        f"Part G: defaults --stats-table flight_statistics and --partitions 4 expected, got "
        f"{s3.stats_table!r} and {pg.partitions!r}."
    )
    custom = mod.parse_args(
        ["s3", "x", "--output", "s3a://b/p", "--database", "d", "--stats-table", "st"]
    )
    got = (custom.output, custom.database, custom.stats_table)
    assert got == ("s3a://b/p", "d", "st"), (
        f"Part G: --output/--database/--stats-table were not taken: {custom}"
    )
    pg = mod.parse_args(
        ["postgres", "2024-01-01", "2024-01-01", "--table", "t2", "--partitions", "8"]
    )
    got = (pg.start, pg.end, pg.table, pg.partitions)
    want = (date(2024, 1, 1), date(2024, 1, 1), "t2", 8)
    assert got == want, (
        f"Part G: `postgres 2024-01-01 2024-01-01 --table t2 --partitions 8` gave {got}, "
        f"expected {want} (a one-day range is fine; --partitions is an int)."
    )


BAD_ARGUMENTS = [
    [],
    ["s3"],
    ["ftp", "s3a://raw-data/flights/*.json"],
    ["postgres", "2024-01-01"],
    ["postgres", "2024-13-01", "2024-01-31"],
    ["postgres", "2024-01-31", "2024-01-01"],
    ["s3", "s3a://raw-data/flights/*.json", "extra"],
    ["postgres", "2024-01-01", "2024-01-31", "--partitions", "0"],
    ["postgres", "2024-01-01", "2024-01-31", "--partitions", "many"],
    ["postgres", "2024-01-01", "2024-01-31", "--table"],
]


@pytest.mark.points(1)
@pytest.mark.timeout(60)
def test_partG_bad_arguments_exit_2_with_usage(mod, capsys):
    """Bad arguments print a usage message and exit with status 2."""
    for argv in BAD_ARGUMENTS:
        with pytest.raises(SystemExit) as exit_info:
            mod.parse_args(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and "usage:" in err, (
            f"Part G: parse_args({argv}) should print a usage message to stderr and exit with "
            f"status 2; it exited with {exit_info.value.code!r} and printed {err!r}."
        )


# ================================================================== the command line, end to end
def failed_run(what: str, run: Run) -> str:
    errors = [ln for ln in run.stderr.splitlines() if "Error" in ln or "Exception" in ln]
    return f"{what} exited with status {run.returncode}. Last error lines:\n" + "\n".join(
        errors[-5:] or run.stderr.splitlines()[-15:]
    )


def rows_frame(rows: list[dict[str, Any]]):
    """Rows as pandas with nullable dtypes, like harness.runtime.data.load_pandas()."""
    import pandas as pd
    import pyarrow as pa

    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    table = pa.Table.from_pylist(rows, schema=arrow_row_schema())
    return table.to_pandas(types_mapper=mapping.get)


@pytest.fixture(scope="module")
def expected(slice_runs):
    """What the job should make of the slice, computed in pandas by the same rules."""
    kept, rejected = reference_clean(rows_frame(slice_runs.data.rows))
    return kept, rejected, reference_aggregates(kept)


def python_run(slice_runs, part: str) -> dict[str, Any]:
    run = slice_runs.runs["python"]
    assert run.returncode == 0, f"Part {part}: " + failed_run(
        "python batch_processor.py s3 … (main() in this process)", run
    )
    return run.stores


@pytest.mark.points(2)
@pytest.mark.timeout(600)
def test_partG_cli_processes_a_slice_of_the_recording(slice_runs, expected):
    """`python batch_processor.py s3 …` loads a minute of real traffic into Parquet and
    ClickHouse; every bad input (planted or real) is in the quarantine with its reason."""
    after = python_run(slice_runs, "G")
    kept, rejected, _ = expected
    by_hour = kept.assign(hour=(kept["fetch_time"] % 86400) // 3600).groupby("hour").size()
    want = {int(h): int(n) for h, n in by_hour.items()}
    assert after["flights_by_hour"] == want, (
        f"Part G: rows per hour in ClickHouse flights_batch: {after['flights_by_hour']}, "
        f"expected {want} (the slice cleaned by the rules of part B)."
    )
    assert after["parquet_rows"] == len(kept), (
        f"Part G: the Parquet dataset holds {after['parquet_rows']} rows, expected {len(kept)}."
    )
    want_reasons = {**rejected, **slice_runs.data.read_rejects}
    assert after["quarantined"] == want_reasons, (
        f"Part G: the quarantine (flights_rejected) holds {after['quarantined']} rejects by "
        f"reason, expected {want_reasons}."
    )
    records = dict(after["quarantine_records"])
    planted = {"invalid icao24": "3C0006", "wrong type": "east", "malformed JSON line": "not json"}
    for reason, needle in planted.items():
        assert needle in (records.get(reason) or ""), (
            f"Part G: the quarantined {reason!r} input should show what was read (it contains "
            f"{needle!r}); its record is {records.get(reason)!r}."
        )


@pytest.mark.points(2)
@pytest.mark.timeout(600)
def test_partD_slice_aggregates_match_an_independent_computation(slice_runs, expected):
    """The aggregates the command line loads into ClickHouse equal a pandas computation."""
    after = python_run(slice_runs, "D")
    _, _, want = expected
    assert_same_statistics(after["stats"], want, "ClickHouse flight_statistics_batch", "D")


def assert_same_statistics(got: dict, want: dict, where: str, part: str) -> None:
    assert set(got) == set(want), (
        f"Part {part}: {where} has {len(got)} (date, hour, country) groups, expected "
        f"{len(want)}; missing {sorted(set(want) - set(got))[:5]}, extra "
        f"{sorted(set(got) - set(want))[:5]}."
    )
    for key, values in want.items():
        actual = got[key]
        same = all(
            (a is None and (e is None or (isinstance(e, float) and math.isnan(e))))
            or (a is not None and e is not None and math.isclose(a, e, rel_tol=1e-9))
            for a, e in zip(actual, values, strict=True)
        )
        assert same, (
            f"Part {part}: {where}, group {key}: (aircraft, state_vectors, avg_velocity, "
            f"max_altitude, ground_share) = {actual}, expected {values}."
        )


@pytest.mark.points(2)
@pytest.mark.timeout(600)
def test_partE_command_line_keeps_flight_statistics_in_postgres(slice_runs, expected):
    """The command line writes its hourly statistics to PostgreSQL flight_statistics (the table
    the platform's CDC captures), one row per date, hour and country."""
    after = python_run(slice_runs, "E")
    _, _, want = expected
    got = after["pg_stats"]  # flight_count, state_vectors, avg_velocity, ... as part D orders them
    table = f"PostgreSQL {slice_runs.stats_table} (the job's --stats-table)"
    assert_same_statistics(got, want, table, "E")


@pytest.mark.points(2)
@pytest.mark.timeout(600)
def test_partE_rerun_changes_nothing(slice_runs):
    """Running the same job twice — with spark-submit, whose --master the job keeps, then with
    python — leaves Parquet, the quarantine, ClickHouse and PostgreSQL exactly as after one run."""
    first = slice_runs.runs["spark_submit"]
    assert first.returncode == 0, "Part E: " + failed_run(
        "spark-submit --master local[1] batch_processor.py s3 …", first
    )
    assert "master local[1]" in first.stdout, (
        "Part E: under spark-submit --master local[1] the job must use the master spark-submit "
        f"gives (spark_session() does); its report says:\n{first.stdout}"
    )
    after = python_run(slice_runs, "E")
    before = first.stores
    for key in ("flights_by_hour", "parquet_rows", "quarantined", "stats", "pg_stats"):
        assert after[key] == before[key], (
            f"Part E: after re-running the same input, {key} changed from {str(before[key])[:300]} "
            f"to {str(after[key])[:300]}. A re-run must replace its partitions, not add to them."
        )
    rewritten = sorted(k for k, v in after["pg_versions"].items() if before["pg_versions"][k] != v)
    assert not rewritten, (
        f"Part E: the re-run rewrote {len(rewritten)} unchanged rows of flight_statistics (e.g. "
        f"{rewritten[:3]}): each is a change event for the platform's CDC. Update a row only when "
        "its values differ."
    )


@pytest.mark.points(2)
@pytest.mark.timeout(300)
def test_partG_postgres_command_reads_the_given_table(
    mod, spark, ch, pg_table, scratch_db, s3_prefix, pg_stats_table
):
    """`batch_processor.py postgres START END --table T --partitions N` processes the rows of T
    in that range into ClickHouse and flight_statistics."""
    table, rows = pg_table
    argv = ["postgres", "2024-01-01", "2024-01-31", "--table", table, "--partitions", "2"]
    argv += ["--output", f"s3a://processed-data/{s3_prefix}", "--database", scratch_db]
    argv += ["--stats-table", pg_stats_table]
    run = run_main(mod, argv)
    assert run.returncode == 0, "Part G: " + failed_run(f"batch_processor.py {' '.join(argv)}", run)
    got = ch.query(
        f"SELECT icao24, toUnixTimestamp(fetch_time) FROM `{scratch_db}`.flights_batch "
        "ORDER BY icao24"
    ).result_rows
    want = [(r["icao24"], r["fetch_time"]) for r in rows[1:4]]
    assert [tuple(r) for r in got] == want, (
        f"Part G: `{' '.join(argv[:6])} …` loaded {got} into ClickHouse, expected the rows of "
        f"{table} from 2024-01-01 to 2024-01-31: {want}. Is --table passed on to read_postgres?"
    )
    hours = sorted(pg_statistics(pg_stats_table))
    want_hours = sorted(
        (date(1970, 1, 1) + timedelta(days=t // 86400), (t % 86400) // 3600, "Germany")
        for t in (r["fetch_time"] for r in rows[1:4])
    )
    assert hours == want_hours, (
        f"Part G: {pg_stats_table} holds statistics for {hours}, expected {want_hours}."
    )
