"""Graded test suite for Lab 07 — used by `make lab-7` and instructors' grading.

dbt runs in this process (`dbtRunner`) against the real PostgreSQL of the lab stack (`make up`),
in a schema made for this test session and dropped afterwards. The recording is loaded into the raw
tables `processed_flights` and `flight_statistics`; every model is checked against results computed
here in plain Python from the same rows. dbt's sessions run in a time zone far from UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dbt_support import (
    CLICKHOUSE_PROJECT,
    EXTRA_ROWS,
    DbtProject,
    LabRun,
    clickhouse_query,
    drop_clickhouse,
    expected_aircraft,
    expected_country_stats,
    expected_flights,
    expected_routes,
    flight_key,
    great_circle_km,
    hourly_statistics,
    impossible_speed_aircraft,
    insert_raw,
    load_clickhouse,
    new_schema,
    query,
    remove_dir,
    scratch_dir,
)

from harness.runtime.icao_countries import ALLOCATIONS

BUILTIN_TESTS = {"unique", "not_null", "accepted_values", "relationships"}
MARTS = ("dim_aircraft", "fct_flights", "country_hourly_stats", "country_daily_stats")
HINT_BUILD = "run `make lab-7` and read dbt's message above the score table"


# ---------------------------------------------------------------- helpers
def built(run: LabRun, name: str, part: str) -> None:
    """Fail with dbt's own message unless the session's `dbt build` built `name`."""
    if run.build.error:
        pytest.fail(f"Lab 07, part {part}: {run.build.summary()}", pytrace=False)
    node = run.build.node(name)
    if node is None:
        pytest.fail(
            f"Lab 07, part {part}: `dbt build` has no node named {name!r} (is the file missing "
            f"or renamed?); it built: {sorted(n.name for n in run.build.nodes)}",
            pytrace=False,
        )
    if node.status != "success":
        pytest.fail(
            f"Lab 07, part {part}: {name} did not build ({node.status}): {node.message[:1500]}",
            pytrace=False,
        )


def table(schema: str, name: str, order: str = "") -> list[dict[str, Any]]:
    return query(f"SELECT * FROM {schema}.{name} {order}")


def columns(schema: str, name: str) -> dict[str, str]:
    """Column name -> PostgreSQL data type of a table or view."""
    rows = query(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (schema, name),
    )
    return {r["column_name"]: r["data_type"] for r in rows}


def naive_utc(value: Any) -> Any:
    """A timestamp as naive UTC (aware ones are converted); other values unchanged."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def close(a: float | None, b: float | None, rel: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-6)


def stored_failures(node: Any) -> list[dict[str, Any]]:
    """The failing rows `--store-failures` kept for a test node."""
    if not node.relation:
        return []
    return query(f"SELECT * FROM {node.relation}")


def named(rows: list[dict[str, Any]]) -> set[str]:
    return {str(r["icao24"]) for r in rows if r.get("icao24") is not None}


def manifest_node(manifest: Any, name: str, kind: str = "model") -> Any:
    for node in manifest.nodes.values():
        if node.name == name and str(node.resource_type) == kind:
            return node
    pytest.fail(f"Lab 07: the project has no {kind} named {name!r}", pytrace=False)


@pytest.fixture(scope="module")
def manifest(lab: LabRun) -> Any:
    return lab.dbt.manifest()


# ================================================================== part A: sources and staging
@pytest.mark.points(5)
def test_partA_staging_models_are_views_over_the_sources(lab: LabRun, manifest) -> None:
    """One staging view per raw table, reading it through source()."""
    for model, source in (
        ("stg_processed_flights", "processed_flights"),
        ("stg_flight_statistics", "flight_statistics"),
    ):
        built(lab, model, "A")
        node = manifest_node(manifest, model)
        assert node.config.materialized == "view", (
            f"Lab 07, part A: {model} is materialized as {node.config.materialized!r}, expected "
            f"a view; hint: staging is cheap to recompute, set it per folder in dbt_project.yml."
        )
        sources = [d for d in node.depends_on.nodes if d.startswith("source.")]
        assert sources and sources[0].endswith(f".{source}"), (
            f"Lab 07, part A: {model} should read source('opensky', '{source}'), it depends on "
            f"{node.depends_on.nodes}; hint: never hard-code a schema-qualified table name."
        )
    views = query(
        "SELECT table_name FROM information_schema.views WHERE table_schema = %s", (lab.schema,)
    )
    assert {"stg_processed_flights", "stg_flight_statistics"} <= named_tables(views), (
        f"Lab 07, part A: expected the staging views in schema {lab.schema}, found "
        f"{sorted(named_tables(views))}."
    )


def named_tables(rows: list[dict[str, Any]]) -> set[str]:
    return {r["table_name"] for r in rows}


DOUBLE, TEXT = "double precision", "text"
STG_FLIGHTS_TYPES = {
    "icao24": TEXT,
    "callsign": TEXT,
    "origin_country": TEXT,
    "seen_at": "timestamp with time zone",
    "latitude": DOUBLE,
    "longitude": DOUBLE,
    "altitude_m": DOUBLE,
    "on_ground": "boolean",
    "velocity_ms": DOUBLE,
    "position_source": "integer",
}
STG_STATISTICS_TYPES = {
    "origin_country": TEXT,
    "hour_utc": "timestamp without time zone",
    "aircraft": "bigint",
    "state_vectors": "bigint",
    "avg_velocity_ms": DOUBLE,
    "max_altitude_m": DOUBLE,
}


def assert_types(schema: str, name: str, wanted: dict[str, str]) -> None:
    types = columns(schema, name)
    wrong = {c: types.get(c, "missing") for c, t in wanted.items() if types.get(c) != t}
    assert not wrong, (
        f"Lab 07, part A: {name} columns {wrong} should be "
        f"{ {c: wanted[c] for c in wrong} }; hint: see the README's column table."
    )


@pytest.mark.points(6)
def test_partA_staging_types_renames_and_trims(lab: LabRun) -> None:
    """stg_processed_flights: every row, typed, renamed with units, callsigns without padding."""
    built(lab, "stg_processed_flights", "A")
    assert_types(lab.schema, "stg_processed_flights", STG_FLIGHTS_TYPES)
    rows = query(
        f"SELECT icao24, seen_at, callsign, altitude_m, velocity_ms "
        f"FROM {lab.schema}.stg_processed_flights"
    )
    assert len(rows) == len(lab.rows), (
        f"Lab 07, part A: stg_processed_flights has {len(rows)} rows, processed_flights has "
        f"{len(lab.rows)}; staging renames and types, it does not filter."
    )
    expected = {
        (r["icao24"], r["fetch_time"]): ((r["callsign"] or "").strip() or None, r["baro_altitude"])
        for r in lab.rows
    }
    bad = [
        (r["icao24"], r["seen_at"], r["callsign"])
        for r in rows
        if expected.get((r["icao24"], int(r["seen_at"].timestamp())))
        != (r["callsign"], r["altitude_m"])
    ]
    assert not bad, (
        f"Lab 07, part A: {len(bad)} rows differ from processed_flights (callsign trimmed, "
        f"empty -> null; altitude_m = baro_altitude), e.g. {bad[:3]}"
    )
    assert_types(lab.schema, "stg_flight_statistics", STG_STATISTICS_TYPES)
    hours = {
        (naive_utc(r["hour_utc"]), r["origin_country"]): r["aircraft"]
        for r in table(lab.schema, "stg_flight_statistics")
    }
    want = {(h, c): n for h, c, n in expected_platform_hours(lab.rows)}
    assert hours == want, (
        f"Lab 07, part A: stg_flight_statistics has {len(hours)} (hour, country) rows, expected "
        f"{len(want)}; e.g. got {sorted(hours.items(), key=str)[:2]}, expected "
        f"{sorted(want.items(), key=str)[:2]}; hint: hour_utc is stat_date plus stat_hour hours."
    )


def expected_platform_hours(rows: list[dict[str, Any]]) -> list[tuple]:
    """(hour, country, distinct aircraft) of flight_statistics as loaded."""
    return [
        (datetime.combine(r[1], datetime.min.time()) + timedelta(hours=r[5]), r[0], r[2])
        for r in hourly_statistics(rows)
    ]


@pytest.mark.points(4)
def test_partA_sources_declare_freshness(lab: LabRun, manifest) -> None:
    """processed_flights has a loaded_at_field and warn/error thresholds; the 2021 data is stale."""
    sources = {s.name: s for s in manifest.sources.values()}
    assert "processed_flights" in sources and "flight_statistics" in sources, (
        f"Lab 07, part A: _sources.yml should declare processed_flights and flight_statistics, "
        f"found {sorted(sources)}"
    )
    source = sources["processed_flights"]
    freshness = source.freshness
    assert source.loaded_at_field and freshness and freshness.warn_after.count, (
        "Lab 07, part A: processed_flights needs a loaded_at_field and a freshness block with "
        "warn_after and error_after."
    )
    assert freshness.error_after.count, "Lab 07, part A: give processed_flights an error_after."
    result = lab.dbt.invoke("source", "freshness", "--select", "source:opensky.processed_flights")
    node = result.node("processed_flights")
    assert node is not None and node.status == "error", (
        f"Lab 07, part A: `dbt source freshness` on the 2021 recording should report "
        f"processed_flights as an error (stale), got "
        f"{node.status if node else result.summary()}"
    )


# ================================================================== part B: seeds and reference data
def test_seed_is_the_harness_table(project_dir) -> None:
    """The shipped seed lists the harness's ICAO blocks (not graded: the file is given)."""
    import csv

    with (project_dir / "seeds" / "icao_address_blocks.csv").open() as f:
        rows = [
            (int(r["first_address"], 16), int(r["last_address"], 16), r["country"])
            for r in csv.DictReader(f)
        ]
    assert rows == ALLOCATIONS


def aircraft_rows(lab: LabRun) -> tuple[dict[str, dict], dict[str, dict]]:
    """dim_aircraft by icao24, and what it should hold; fails unless one row per aircraft."""
    built(lab, "dim_aircraft", "B")
    expected = expected_aircraft(lab.rows)
    rows = {r["icao24"]: r for r in table(lab.schema, "dim_aircraft")}
    assert set(rows) == set(expected), (
        f"Lab 07, part B: dim_aircraft has {len(rows)} aircraft, expected {len(expected)} "
        f"(one row per icao24); missing e.g. {sorted(set(expected) - set(rows))[:3]}, "
        f"extra e.g. {sorted(set(rows) - set(expected))[:3]}"
    )
    return rows, expected


def differing(rows: dict, expected: dict, fields: tuple[str, ...]) -> list[tuple]:
    return [
        (icao24, {f: rows[icao24].get(f) for f in fields}, {f: want[f] for f in fields})
        for icao24, want in sorted(expected.items())
        if any(rows[icao24].get(f) != want[f] for f in fields)
    ]


@pytest.mark.points(5)
def test_partB_dim_aircraft_latest_report(lab: LabRun) -> None:
    """dim_aircraft: one row per aircraft with its latest callsign and reported country."""
    rows, expected = aircraft_rows(lab)
    wrong = differing(rows, expected, ("callsign", "origin_country", "first_seen", "last_seen"))
    assert not wrong, (
        f"Lab 07, part B: {len(wrong)} aircraft differ (got, expected), e.g. {wrong[:2]}; "
        f"hint: the latest non-empty callsign and the latest reported origin_country."
    )


@pytest.mark.points(10)
def test_partB_registration_country_from_the_seed(lab: LabRun) -> None:
    """registration_country comes from the aircraft's ICAO block (the seed); mismatches flagged."""
    built(lab, "icao_address_blocks", "B")
    seed_types = columns(lab.schema, "icao_address_blocks")
    assert seed_types.get("first_address") == "text", (
        f"Lab 07, part B: the seed's first_address is loaded as {seed_types.get('first_address')}; "
        f"hint: hex addresses such as 004000 must stay text (set the seed's column types)."
    )
    rows, expected = aircraft_rows(lab)
    wrong = differing(rows, expected, ("registration_country", "country_mismatch"))
    assert not wrong, (
        f"Lab 07, part B: {len(wrong)} aircraft differ (got, expected), e.g. {wrong[:2]}; "
        f"hint: the block whose bounds hold the address, compared as numbers; 'Unknown' outside "
        f"every block."
    )
    mismatched = {icao24 for icao24, r in rows.items() if r["country_mismatch"]}
    assert mismatched == {EXTRA_ROWS[0]["icao24"]}, (
        f"Lab 07, part B: expected exactly {EXTRA_ROWS[0]['icao24']} (Germany's block, reported "
        f"as France) flagged, got {sorted(mismatched)[:5]}"
    )


# ================================================================== part C: flights
def flights_table(schema: str) -> dict[tuple, dict[str, Any]]:
    return {flight_key(r): r for r in table(schema, "fct_flights")}


def compare_flights(
    got: dict[tuple, dict[str, Any]], rows: list[dict[str, Any]], what: str
) -> None:
    expected = {flight_key(f): f for f in expected_flights(rows)}
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert not missing and not extra, (
        f"Lab 07, part C: {what} has {len(got)} flights, expected {len(expected)}; "
        f"missing (icao24, first_seen) e.g. {sorted(missing)[:2]}, unexpected e.g. "
        f"{sorted(extra)[:2]}; hint: a gap of more than 10 minutes or an on-ground -> airborne "
        f"step starts a new flight."
    )
    exact = ("last_seen", "duration_s", "positions", "airborne_positions")
    approx = (
        "max_altitude_m",
        "distance_km",
        "first_latitude",
        "first_longitude",
        "last_latitude",
        "last_longitude",
    )
    for key, want in sorted(expected.items()):
        row = got[key]
        diff = {
            f: (row.get(f), want[f]) for f in exact if naive_utc(row.get(f)) != naive_utc(want[f])
        }
        diff |= {f: (row.get(f), want[f]) for f in approx if not close(row.get(f), want[f])}
        assert not diff, (
            f"Lab 07, part C: {what}, flight {key[0]} from {key[1]:%H:%M:%S}: (got, expected) "
            f"{diff}; hint: distance is the great-circle sum between consecutive positions."
        )
    ids = [r["flight_id"] for r in got.values()]
    assert None not in ids and len(set(ids)) == len(ids), (
        f"Lab 07, part C: flight_id must be unique and not null ({len(ids) - len(set(ids))} "
        f"duplicates)."
    )


@pytest.mark.points(3)
def test_partC_great_circle_macro(lab: LabRun) -> None:
    """great_circle_km() agrees with a haversine computed here (km, Earth radius 6371)."""
    pairs = [(48.8566, 2.3522, 51.4700, -0.4543), (0.0, 179.5, 0.0, -179.5), (47.0, 8.0, 47.0, 8.0)]
    selects = " union all ".join(
        f"select {i} as n, {{{{ great_circle_km({a}, {b}, {c}, {d}) }}}} as km"
        for i, (a, b, c, d) in enumerate(pairs)
    )
    rows = query(f"select * from ({lab.dbt.compile_inline(selects)}) as q order by n")
    for (a, b, c, d), row in zip(pairs, rows, strict=True):
        want = great_circle_km(a, b, c, d)
        assert close(row["km"], want), (
            f"Lab 07, part C: great_circle_km({a}, {b}, {c}, {d}) = {row['km']}, expected "
            f"{want:.4f} km (haversine, radius 6371 km, degrees in)."
        )


@pytest.mark.points(12)
def test_partC_flights_match_an_independent_cut(lab: LabRun) -> None:
    """fct_flights equals the flights cut here from the same rows (times, counts, distance)."""
    built(lab, "fct_flights", "C")
    compare_flights(flights_table(lab.schema), lab.rows, "fct_flights")


@pytest.mark.points(10)
def test_partC_incremental_runs_equal_a_full_refresh(schemas, recording, manifest) -> None:
    """Three incremental runs over growing data give the flights of one full computation,
    without rewriting flights that had ended."""
    node = manifest_node(manifest, "fct_flights")
    assert node.config.materialized == "incremental", (
        f"Lab 07, part C: fct_flights is materialized as {node.config.materialized!r}; it must be "
        f"incremental (only new state vectors are processed on later runs)."
    )
    cuts = [1633611600, 1633615200]  # 13:00 and 14:00 UTC
    first = [r for r in recording if r["fetch_time"] < cuts[0]]
    dbt = schemas(first, "lab07_inc")
    run = dbt.invoke("run", "--select", "+fct_flights")
    assert run.success, f"Lab 07, part C: the first run of fct_flights failed: {run.summary()}"
    compare_flights(flights_table(dbt.schema), first, "fct_flights after the first run")
    for low, high in zip(cuts, [*cuts[1:], 2**40], strict=True):
        # Flights followed by a later flight of the same aircraft are over for good.
        before = {
            r["flight_id"]: r["xmin"]
            for r in query(
                f"SELECT flight_id, xmin::text AS xmin FROM {dbt.schema}.fct_flights AS f "
                f"WHERE EXISTS (SELECT 1 FROM {dbt.schema}.fct_flights AS g "
                f"WHERE g.icao24 = f.icao24 AND g.first_seen > f.last_seen)"
            )
        }
        insert_raw(dbt.schema, [r for r in recording if low <= r["fetch_time"] < high])
        run = dbt.invoke("run", "--select", "fct_flights")
        assert run.success, f"Lab 07, part C: an incremental run failed: {run.summary()}"
        after = {
            r["flight_id"]: r["xmin"]
            for r in query(f"SELECT flight_id, xmin::text AS xmin FROM {dbt.schema}.fct_flights")
        }
        rewritten = [f for f, xmin in before.items() if after.get(f) != xmin]
        assert before and not rewritten, (
            f"Lab 07, part C: an incremental run rewrote {len(rewritten)} of {len(before)} "
            f"flights that were over (a later flight of the same aircraft follows); hint: on "
            f"incremental runs select only what can change (is_incremental(), {{{{ this }}}})."
        )
    compare_flights(flights_table(dbt.schema), recording, "fct_flights after three runs")


# ================================================================== part D: marts
def compare_stats(got: list[dict[str, Any]], key: tuple[str, str], want: dict, what: str) -> None:
    rows = {(naive_utc(r[key[0]]), r[key[1]]): r for r in got}
    missing, extra = set(want) - set(rows), set(rows) - set(want)
    assert not missing and not extra, (
        f"Lab 07, part D: {what} has {len(rows)} rows, expected {len(want)}; missing e.g. "
        f"{sorted(missing, key=str)[:2]}, unexpected e.g. {sorted(extra, key=str)[:2]}; hint: "
        f"truncate times in UTC, whatever the session's time zone."
    )
    for k, w in sorted(want.items(), key=str):
        r = rows[k]
        diff = {f: (r.get(f), v) for f, v in w.items() if not close(r.get(f), v)}
        assert not diff, f"Lab 07, part D: {what} at {k}: (got, expected) {diff}"


def check_country_mart(lab: LabRun, name: str, period_column: str, per: str) -> None:
    built(lab, name, "D")
    want = expected_country_stats(lab.rows, per)
    compare_stats(table(lab.schema, name), (period_column, "origin_country"), want, name)


@pytest.mark.points(5)
def test_partD_hourly_country_statistics(lab: LabRun) -> None:
    """country_hourly_stats: per UTC hour and country, rows, aircraft, mean speed, top altitude."""
    check_country_mart(lab, "country_hourly_stats", "hour_utc", "hour")


@pytest.mark.points(4)
def test_partD_daily_country_statistics(lab: LabRun) -> None:
    """country_daily_stats: per UTC day and country, the same figures."""
    check_country_mart(lab, "country_daily_stats", "stat_date", "day")


@pytest.mark.points(4)
def test_partD_busiest_routes_of_the_hour(lab: LabRun) -> None:
    """busiest_routes_hourly: each hour's five busiest cell-to-cell routes, ties included."""
    built(lab, "busiest_routes_hourly", "D")
    got = {
        (
            naive_utc(r["hour_utc"]),
            r["from_lat_cell"],
            r["from_lon_cell"],
            r["to_lat_cell"],
            r["to_lon_cell"],
            r["flights"],
            r["route_rank"],
        )
        for r in table(lab.schema, "busiest_routes_hourly")
    }
    want = expected_routes(expected_flights(lab.rows))
    assert got == want, (
        f"Lab 07, part D: busiest_routes_hourly differs: missing e.g. "
        f"{sorted(want - got, key=str)[:3]}, unexpected e.g. {sorted(got - want, key=str)[:3]}; "
        f"hint: airborne flights only, hour of first_seen in UTC, rank ties share a rank."
    )


@pytest.mark.points(3)
def test_partD_marts_read_refs_and_document_columns(lab: LabRun, manifest) -> None:
    """Marts read models (ref), never raw tables; the hourly and routes marts document columns."""
    for name in (*MARTS, "busiest_routes_hourly"):
        node = manifest_node(manifest, name)
        direct = [d for d in node.depends_on.nodes if d.startswith("source.")]
        assert not direct, (
            f"Lab 07, part D: {name} reads {direct} directly; marts build on staging models "
            f"with ref(), so the lineage goes source -> staging -> marts."
        )
    for name in ("country_hourly_stats", "busiest_routes_hourly"):
        built(lab, name, "D")
        node = manifest_node(manifest, name)
        documented = {c for c, col in node.columns.items() if (col.description or "").strip()}
        undocumented = sorted(set(columns(lab.schema, name)) - documented)
        assert not undocumented, (
            f"Lab 07, part D: {name} has undocumented columns {undocumented}; describe each "
            f"column in the model's YAML (they show up in `dbt docs`)."
        )


@pytest.mark.points(4)
def test_partD_hourly_mart_on_clickhouse(project_dir, recording) -> None:
    """The ClickHouse project (dbt-clickhouse) builds country_hourly_stats on ClickHouse's
    flights_streaming with the same figures as the PostgreSQL mart."""
    database = new_schema("lab07_ch")
    dbt = DbtProject(
        project_dir / CLICKHOUSE_PROJECT, database, scratch_dir(f"{database}-"), "clickhouse"
    )
    try:
        load_clickhouse(database, recording)
        build = dbt.invoke("build")
        assert build.success, (
            f"Lab 07, part D: `dbt build` of the ClickHouse project failed: {build.summary()}"
        )
        got = clickhouse_query(f"SELECT * FROM {database}.country_hourly_stats")
        want = expected_country_stats(recording, "hour")
        compare_stats(got, ("hour_utc", "origin_country"), want, "ClickHouse country_hourly_stats")
    finally:
        try:
            drop_clickhouse(database)
        finally:
            remove_dir(dbt.scratch)


# ================================================================== part E: tests and contracts
def data_test_nodes(manifest) -> list[Any]:
    return [n for n in manifest.nodes.values() if str(n.resource_type) == "test"]


@pytest.mark.points(4)
def test_partE_clean_build_passes_its_tests(lab: LabRun, manifest) -> None:
    """The project tests with unique, not_null, accepted_values, relationships, a custom generic
    test and singular tests; on the recording every test passes, the speed check only warns."""
    tests = data_test_nodes(manifest)
    generic = {n.test_metadata.name for n in tests if getattr(n, "test_metadata", None)}
    missing = BUILTIN_TESTS - generic
    assert not missing, f"Lab 07, part E: the project uses no {sorted(missing)} test yet."
    custom = generic - BUILTIN_TESTS
    assert custom, "Lab 07, part E: write a custom generic test (coordinates_in_range)."
    singular = [n for n in tests if not getattr(n, "test_metadata", None)]
    assert singular, "Lab 07, part E: write a singular test that finds impossible speeds."
    results = [n for n in lab.build.nodes if "test" in n.resource_type]
    bad = [(n.name, n.status, n.message[:200]) for n in results if n.status not in ("pass", "warn")]
    assert results and not bad, (
        f"Lab 07, part E: on the clean recording every test should pass (the speed check may "
        f"warn); these did not: {bad[:5]} {lab.build.error or ''}"
    )
    recon = lab.build.node("assert_hourly_stats_match_platform")
    assert recon is not None and recon.status == "pass", (
        f"Lab 07, part E: the reconciliation test assert_hourly_stats_match_platform should run "
        f"and pass on the recording, got {recon.status if recon else 'no such test'}: "
        f"{recon.message[:300] if recon else ''}"
    )
    speed = lab.build.node("assert_no_impossible_speeds")
    found = named(stored_failures(speed)) if speed else set()
    want = impossible_speed_aircraft(lab.rows)
    assert speed is not None and speed.status == "warn" and found == want, (
        f"Lab 07, part E: the impossible-speed test should warn and name {sorted(want)} (two "
        f"recordings share these addresses), got {speed.status if speed else 'no result'} "
        f"naming {sorted(found)[:5]}; hint: compare consecutive positions of one aircraft."
    )


BAD_ROWS = {
    "bad001": {"latitude": 123.0},
    "bad002": {"longitude": -200.0},
    "bad003": {"position_source": 7},
}


def planted_rows() -> list[dict[str, Any]]:
    """Rows that break the data tests, one way each, plus a 100 km jump in 10 s (bad005)."""
    base = dict(EXTRA_ROWS[0], callsign="PLANTED ", origin_country="Unknown")
    rows = [dict(base, icao24=icao24, **change) for icao24, change in BAD_ROWS.items()]
    rows.append(dict(base, icao24="bad005", fetch_time=1633615200, longitude=2.0))
    rows.append(dict(base, icao24="bad005", fetch_time=1633615210, longitude=3.36))
    return rows


@pytest.fixture(scope="module")
def planted(schemas, recording) -> tuple[DbtProject, Any]:
    """A schema holding the recording plus the planted rows, and its `dbt build`."""
    dbt = schemas(recording + planted_rows(), "lab07_bad")
    return dbt, dbt.invoke("build", "--store-failures")


@pytest.mark.points(7)
def test_partE_build_fails_on_planted_rows_and_names_them(planted) -> None:
    """`dbt build` fails, and the failing tests' stored rows name each planted aircraft."""
    dbt, build = planted
    assert not build.success, (
        "Lab 07, part E: `dbt build` succeeded although processed_flights holds a latitude of "
        "123, a longitude of -200 and a position_source of 7."
    )
    tests = [n for n in build.nodes if "test" in n.resource_type]
    stored = {n.name: stored_failures(n) for n in tests if n.status in ("fail", "warn")}
    for icao24, change in BAD_ROWS.items():
        (bad_value,) = change.values()
        # A failing test names the row by its aircraft, or (accepted_values) by the bad value.
        naming = [
            name
            for name, rows in stored.items()
            if any(icao24 in map(str, r.values()) or bad_value in r.values() for r in rows)
        ]
        assert naming, (
            f"Lab 07, part E: no failing test names the planted row {icao24} ({change}); "
            f"failing tests: {sorted(stored)}; hint: test stg_processed_flights' columns "
            f"(coordinate ranges, accepted values) and run with --store-failures to see the rows."
        )
    caught = {name for name, rows in stored.items() if "bad005" in named(rows)}
    assert caught, (
        "Lab 07, part E: the impossible-speed test does not name bad005 (100 km in 10 s)."
    )


@pytest.mark.points(4)
def test_partE_mart_contract(lab: LabRun, manifest) -> None:
    """country_daily_stats has an enforced contract: names, types and not-null keys in the table."""
    node = manifest_node(manifest, "country_daily_stats")
    assert node.contract.enforced, (
        "Lab 07, part E: country_daily_stats needs an enforced contract (config: contract: "
        "enforced: true) with a data_type for every column."
    )
    built(lab, "country_daily_stats", "E")
    declared = {c: (col.data_type or "").lower() for c, col in node.columns.items()}
    actual = columns(lab.schema, "country_daily_stats")
    assert set(declared) == set(actual), (
        f"Lab 07, part E: the contract lists {sorted(declared)}, the table has {sorted(actual)}"
    )
    assert actual.get("stat_date") == "date" and actual.get("aircraft") == "bigint", (
        f"Lab 07, part E: country_daily_stats types {actual}; stat_date must be a date and the "
        f"counts bigint."
    )
    nullable = {
        r["column_name"]: r["is_nullable"]
        for r in query(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'country_daily_stats'",
            (lab.schema,),
        )
    }
    assert nullable.get("stat_date") == "NO" and nullable.get("origin_country") == "NO", (
        f"Lab 07, part E: stat_date and origin_country must be NOT NULL in the table (a "
        f"not_null constraint in the contract), got {nullable}"
    )


# ================================================================== part F: snapshots
@pytest.mark.points(10)
def test_partF_snapshot_keeps_callsign_history(schemas, recording) -> None:
    """After a callsign change the snapshot holds the old callsign (closed) and the new (current);
    an aircraft that is only seen again keeps a single row."""
    aircraft = sorted({r["icao24"] for r in recording})[:30]
    rows = [r for r in recording if r["icao24"] in aircraft]
    dbt = schemas(rows, "lab07_snap")
    first = dbt.invoke(
        "build", "--select", "+aircraft_callsigns", "--indirect-selection", "cautious"
    )
    assert first.success, f"Lab 07, part F: building the snapshot failed: {first.summary()}"
    snap = f"{dbt.schema}.aircraft_callsigns"
    start = query(f"SELECT icao24, callsign, dbt_valid_to FROM {snap}")
    assert len(start) == len(aircraft) and all(r["dbt_valid_to"] is None for r in start), (
        f"Lab 07, part F: the first snapshot should hold one current row per aircraft "
        f"({len(aircraft)}), got {len(start)} rows."
    )
    changed, seen_again = aircraft[0], aircraft[1]
    last = max(r["fetch_time"] for r in rows)
    old = next(r for r in reversed(rows) if r["icao24"] == seen_again)
    insert_raw(
        dbt.schema,
        [
            dict(
                EXTRA_ROWS[0],
                icao24=changed,
                callsign="NEWCS07 ",
                fetch_time=last + 10,
                origin_country=next(r for r in rows if r["icao24"] == changed)["origin_country"],
            ),
            dict(old, fetch_time=last + 10),
        ],
    )
    second = dbt.invoke(
        "build", "--select", "+aircraft_callsigns", "--indirect-selection", "cautious"
    )
    assert second.success, f"Lab 07, part F: the second snapshot failed: {second.summary()}"
    history = query(
        f"SELECT icao24, callsign, dbt_valid_from, dbt_valid_to FROM {snap} ORDER BY dbt_valid_from"
    )
    versions = [r for r in history if r["icao24"] == changed]
    assert len(versions) == 2, (
        f"Lab 07, part F: after {changed}'s callsign changed to NEWCS07 the snapshot should hold "
        f"2 rows for it, got {[(r['callsign'], r['dbt_valid_to']) for r in versions]}"
    )
    closed = [r for r in versions if r["dbt_valid_to"] is not None]
    current = [r for r in versions if r["dbt_valid_to"] is None]
    assert len(closed) == 1 and len(current) == 1 and current[0]["callsign"] == "NEWCS07", (
        f"Lab 07, part F: expected the old callsign closed (dbt_valid_to set) and NEWCS07 "
        f"current, got {[(r['callsign'], r['dbt_valid_to']) for r in versions]}"
    )
    again = [r for r in history if r["icao24"] == seen_again]
    assert len(again) == 1, (
        f"Lab 07, part F: {seen_again} was only seen again with the same callsign, yet has "
        f"{len(again)} rows; hint: the snapshot tracks the callsign only (check strategy)."
    )
    assert len(history) == len(aircraft) + 1, (
        f"Lab 07, part F: {len(history)} rows in the snapshot, expected {len(aircraft) + 1}."
    )
