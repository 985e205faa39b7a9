"""Lab 07's test kit: run dbt in-process on a scratch schema, load the recording, and compute the
expected results in plain Python (independently of the dbt project under test).

Also a small command line for working on the lab by hand (see labs/lab07_dbt/README.md):

    .venv/bin/python labs/lab07_dbt/tests/dbt_support.py load            # raw tables into lab07_dev
    .venv/bin/python labs/lab07_dbt/tests/dbt_support.py build            # any dbt command after it
    .venv/bin/python labs/lab07_dbt/tests/dbt_support.py docs generate
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import sys
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.grading.testkit import state_row
from harness.runtime.config import ROOT, STACK_DIR, endpoints
from harness.runtime.data import load_rows, validate_rows
from harness.runtime.icao_countries import ALLOCATIONS
from harness.runtime.schema import (
    FLIGHT_STATISTICS_COLUMNS,
    clickhouse_columns,
    flight_statistics_ddl,
    processed_flights_ddl,
)
from harness.runtime.services import clickhouse_client, pg_connect

LAB = "lab07_dbt"
PROFILE = "opensky"
CLICKHOUSE_PROFILE = "opensky_clickhouse"
CLICKHOUSE_PROJECT = "clickhouse"  # the ClickHouse project's folder inside the lab
GAP = timedelta(minutes=10)  # the project's `flight_gap_minutes`
IMPOSSIBLE_SPEED_MS = 600.0  # the project's `impossible_speed_ms`
EARTH_RADIUS_KM = 6371.0
DEV_SCHEMA = "lab07_dev"
# dbt talks to PostgreSQL in this time zone during the tests, so local-time bugs show up.
SESSION_TIME_ZONE = "Australia/Darwin"  # UTC+9:30: hours and days both shift

# The columns of `processed_flights` the recording fills (the table is harness.runtime.schema's).
RAW_COLUMNS = [
    "fetch_time",
    "icao24",
    "callsign",
    "origin_country",
    "time_position",
    "last_contact",
    "longitude",
    "latitude",
    "baro_altitude",
    "on_ground",
    "velocity",
    "true_track",
    "vertical_rate",
    "sensors",
    "geo_altitude",
    "squawk",
    "spi",
    "position_source",
    "category",
]
TIME_COLUMNS = ("fetch_time", "time_position", "last_contact")
# The columns of ClickHouse's `flights_streaming` (Labs 02 and 04) the ClickHouse mart reads (their
# types: harness.runtime.schema.clickhouse_type).
CLICKHOUSE_COLUMNS = [
    "fetch_time",
    "icao24",
    "callsign",
    "origin_country",
    "baro_altitude",
    "on_ground",
    "velocity",
]


# ------------------------------------------------------------------ the recording
def utc(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def processed_rows() -> list[dict[str, Any]]:
    """The rows the platform keeps in `processed_flights`: the recording's valid state vectors."""
    report = validate_rows(load_rows())
    report.check()
    return report.kept


def raw_record(row: dict[str, Any]) -> tuple:
    """One recording row as a `processed_flights` record (unix seconds become timestamps)."""
    return tuple(utc(row[c]) if c in TIME_COLUMNS else row[c] for c in RAW_COLUMNS)


def hourly_statistics(rows: Iterable[dict[str, Any]]) -> list[tuple]:
    """`flight_statistics` as the platform's batch job (Lab 01) writes it: per country and UTC hour,
    in the column order of harness.runtime.schema.FLIGHT_STATISTICS_COLUMNS."""
    groups: dict[tuple[str, datetime], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        hour = utc(row["fetch_time"]).replace(minute=0, second=0)
        groups[(row["origin_country"], hour)].append(row)
    out = []
    for (country, hour), members in sorted(groups.items()):
        speeds = [r["velocity"] for r in members if r["velocity"] is not None]
        altitudes = [
            r["baro_altitude"] if r["baro_altitude"] is not None else r["geo_altitude"]
            for r in members
        ]
        altitudes = [a for a in altitudes if a is not None]
        out.append(
            (
                country,
                hour.date(),
                len({r["icao24"] for r in members}),
                sum(speeds) / len(speeds) if speeds else None,
                max(altitudes) if altitudes else None,
                hour.hour,
                len(members),
                sum(1 for r in members if r["on_ground"]) / len(members),
            )
        )
    return out


def load_raw(schema: str, rows: list[dict[str, Any]]) -> None:
    """Create `schema` with the platform's two tables and COPY `rows` (and their hourly statistics)
    in."""
    stats_columns = ", ".join(name for name, _, _ in FLIGHT_STATISTICS_COLUMNS)
    with pg_connect() as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(processed_flights_ddl(f"{schema}.processed_flights"))
        conn.execute(flight_statistics_ddl(f"{schema}.flight_statistics"))
        with conn.cursor() as cur:
            with cur.copy(
                f"COPY {schema}.processed_flights ({', '.join(RAW_COLUMNS)}) FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(raw_record(row))
            with cur.copy(f"COPY {schema}.flight_statistics ({stats_columns}) FROM STDIN") as copy:
                for record in hourly_statistics(rows):
                    copy.write_row(record)


def load_clickhouse(database: str, rows: list[dict[str, Any]]) -> None:
    """Create `database` with a `flights_streaming` table (the columns the mart reads) and the rows."""
    client = clickhouse_client()
    try:
        client.command(f"CREATE DATABASE {database}")
        client.command(
            f"CREATE TABLE {database}.flights_streaming ({clickhouse_columns(CLICKHOUSE_COLUMNS)}) "
            "ENGINE = MergeTree ORDER BY (origin_country, icao24, fetch_time)"
        )
        data = [
            [utc(r[n]) if n == "fetch_time" else r[n] for n in CLICKHOUSE_COLUMNS] for r in rows
        ]
        client.insert(f"{database}.flights_streaming", data, column_names=CLICKHOUSE_COLUMNS)
    finally:
        client.close()


def drop_clickhouse(database: str) -> None:
    client = clickhouse_client()
    try:
        client.command(f"DROP DATABASE IF EXISTS {database}")
    finally:
        client.close()


def clickhouse_query(sql: str) -> list[dict[str, Any]]:
    client = clickhouse_client()
    try:
        result = client.query(sql)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    finally:
        client.close()


def insert_raw(schema: str, rows: list[dict[str, Any]]) -> None:
    """Append rows (recording-shaped dicts; missing fields are null) to `processed_flights`."""
    full = [{c: row.get(c) for c in RAW_COLUMNS} for row in rows]
    with pg_connect() as conn:
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {schema}.processed_flights ({', '.join(RAW_COLUMNS)}) "
                f"VALUES ({', '.join(['%s'] * len(RAW_COLUMNS))})",
                [raw_record(row) for row in full],
            )


def query(sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Rows of a query as dicts (timestamps come back time-zone aware)."""
    from psycopg.rows import dict_row

    with pg_connect() as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall())


def drop_schemas(*schemas: str) -> None:
    with pg_connect() as conn:
        for schema in schemas:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# ------------------------------------------------------------------ what the suite loads
# Two valid state vectors added to the recording: an aircraft whose reported country disagrees
# with its address block, and one whose address is in no block.
EXTRA_ROWS = [
    state_row(
        1633615200,  # 2021-10-07 14:00:00 UTC
        icao24="3c0001",  # in Germany's block
        callsign="LAB07A  ",
        origin_country="France",
        time_position=1633615199,
        last_contact=1633615200,
        longitude=2.5,
        latitude=48.9,
        baro_altitude=3000.0,
        geo_altitude=None,
    ),
    state_row(
        1633615210,
        icao24="001234",  # no State holds this block
        callsign="LAB07B",
        origin_country="Unknown",
        time_position=1633615210,
        last_contact=1633615210,
        longitude=2.6,
        latitude=48.8,
        baro_altitude=None,
        geo_altitude=None,
        on_ground=True,
        velocity=5.0,
        position_source=2,
    ),
]


@dataclass
class LabRun:
    """The project built once for the session: its schema, the rows loaded and dbt's answer."""

    dbt: DbtProject
    rows: list[dict[str, Any]]
    build: Invocation

    @property
    def schema(self) -> str:
        return self.dbt.schema


# ------------------------------------------------------------------ running dbt
@dataclass
class NodeResult:
    """What dbt reported for one node of an invocation."""

    name: str
    resource_type: str
    status: str
    message: str
    failures: int | None
    relation: str | None  # where `--store-failures` kept a failing test's rows
    test_name: str | None  # generic test name (`unique`, `coordinates_in_range`), None otherwise
    attached_to: str | None  # the model or source a test is attached to
    column: str | None


@dataclass
class Invocation:
    """One dbt command: did it succeed, what every node did, and why the command itself failed."""

    args: list[str]
    success: bool
    error: str | None
    nodes: list[NodeResult] = field(default_factory=list)

    def node(self, name: str) -> NodeResult | None:
        return next((n for n in self.nodes if n.name == name), None)

    def summary(self, limit: int = 12) -> str:
        if self.error:
            return f"dbt {' '.join(self.args[:2])} stopped: {self.error}"
        bad = [n for n in self.nodes if n.status not in ("success", "pass")]
        lines = [f"{n.resource_type} {n.name}: {n.status} {n.message[:300]}" for n in bad[:limit]]
        return "\n".join(lines) or "every node succeeded"


class DbtProject:
    """The project under test bound to one schema, with scratch profiles, target and log folders."""

    def __init__(
        self, project_dir: Path, schema: str, scratch: Path, adapter: str = "postgres"
    ) -> None:
        self.project_dir = project_dir
        self.schema = schema
        self.adapter = adapter
        self.scratch = scratch
        self.profiles_dir = scratch / "profiles"
        self.target_path = scratch / "target"
        self.log_path = scratch / "logs"
        self.profiles_dir.mkdir(parents=True, exist_ok=True)
        self.write_profile()

    def write_profile(self) -> None:
        """profiles.yml from harness.runtime.config: the endpoints live in one place only."""
        import yaml

        ep = endpoints()
        if self.adapter == "clickhouse":  # a database is what dbt-clickhouse calls a schema
            name, output = (
                CLICKHOUSE_PROFILE,
                {
                    "type": "clickhouse",
                    "driver": "http",
                    "host": ep.clickhouse_host,
                    "port": ep.clickhouse_port,
                    "user": ep.clickhouse_user,
                    "password": ep.clickhouse_password,
                    "schema": self.schema,
                    "threads": 1,
                },
            )
        else:
            name, output = (
                PROFILE,
                {
                    "type": "postgres",
                    "host": ep.pg_host,
                    "port": ep.pg_port,
                    "user": ep.pg_user,
                    "password": ep.pg_password,
                    "dbname": ep.pg_db,
                    "schema": self.schema,
                    "threads": 4,
                },
            )
        profile = {name: {"target": "lab", "outputs": {"lab": output}}}
        (self.profiles_dir / "profiles.yml").write_text(yaml.safe_dump(profile))

    @property
    def audit_schema(self) -> str:
        """Where `--store-failures` keeps failing rows."""
        return f"{self.schema}_dbt_test__audit"

    def invoke(self, *args: str) -> Invocation:
        """Run one dbt command in this process against this project and schema."""
        from dbt.cli.main import dbtRunner

        with _dbt_environment():
            outcome = dbtRunner().invoke(["--quiet", "--no-use-colors", *args, *self._paths()])
        nodes = [_node_result(r) for r in getattr(outcome.result, "results", None) or []]
        error = None
        if outcome.exception is not None:
            error = f"{type(outcome.exception).__name__}: {outcome.exception}"
        return Invocation(list(args), bool(outcome.success), error, nodes)

    def compile_inline(self, sql: str) -> str:
        """The SQL dbt compiles from an inline Jinja query (macros expanded)."""
        from dbt.cli.main import dbtRunner

        with _dbt_environment():
            outcome = dbtRunner().invoke(["--quiet", "compile", "--inline", sql, *self._paths()])
        if not outcome.success:
            raise AssertionError(f"Lab 07: dbt cannot compile {sql[:200]!r}: {outcome.exception}")
        return outcome.result.results[0].node.compiled_code

    def _paths(self) -> list[str]:
        return [
            "--project-dir",
            str(self.project_dir),
            "--profiles-dir",
            str(self.profiles_dir),
            "--target-path",
            str(self.target_path),
            "--log-path",
            str(self.log_path),
        ]

    def manifest(self) -> Any:
        """The parsed project (`dbt parse`), or AssertionError with dbt's message."""
        from dbt.cli.main import dbtRunner

        with _dbt_environment():
            outcome = dbtRunner().invoke(["--quiet", "--no-use-colors", "parse", *self._paths()])
        if not outcome.success:
            raise AssertionError(
                f"Lab 07: dbt cannot parse the project in {self.project_dir}: {outcome.exception}"
            )
        return outcome.result


def _node_result(result: Any) -> NodeResult:
    node = result.node
    metadata = getattr(node, "test_metadata", None)
    attached = getattr(node, "attached_node", None)
    return NodeResult(
        name=node.name,
        resource_type=str(node.resource_type),
        status=str(result.status),
        message=str(result.message or ""),
        failures=result.failures,
        relation=getattr(node, "relation_name", None),
        test_name=metadata.name if metadata is not None else None,
        attached_to=attached.split(".")[-1] if attached else None,
        column=getattr(node, "column_name", None),
    )


@contextmanager
def _dbt_environment() -> Iterator[None]:
    """No tracking or version checks; PostgreSQL sessions in a time zone far from UTC."""
    values = {
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
        "PGTZ": SESSION_TIME_ZONE,
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def new_schema(prefix: str = "lab07") -> str:
    """A throw-away schema name no other test run uses."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def scratch_dir(prefix: str) -> Path:
    """A scratch folder under the stack's folder (never inside the project under test)."""
    base = STACK_DIR / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ expected results (plain Python)
def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance on a sphere of radius 6371 km."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def tracks(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each aircraft's rows in time order."""
    by_aircraft: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_aircraft[row["icao24"]].append(row)
    for track in by_aircraft.values():
        track.sort(key=lambda r: r["fetch_time"])
    return by_aircraft


def expected_flights(rows: Iterable[dict[str, Any]], gap: timedelta = GAP) -> list[dict[str, Any]]:
    """Flights cut from the rows: a gap longer than `gap` or a take-off starts a new one."""
    flights = []
    for icao24, track in sorted(tracks(rows).items()):
        current: list[dict[str, Any]] = []
        for row in track:
            if current:
                previous = current[-1]
                long_gap = row["fetch_time"] - previous["fetch_time"] > gap.total_seconds()
                take_off = previous["on_ground"] and not row["on_ground"]
                if long_gap or take_off:
                    flights.append(_flight(icao24, current))
                    current = []
            current.append(row)
        if current:
            flights.append(_flight(icao24, current))
    return flights


def _flight(icao24: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    altitudes = [p["baro_altitude"] for p in points if p["baro_altitude"] is not None]
    distance = sum(
        great_circle_km(a["latitude"], a["longitude"], b["latitude"], b["longitude"])
        for a, b in zip(points, points[1:], strict=False)
    )
    return {
        "icao24": icao24,
        "first_seen": utc(points[0]["fetch_time"]),
        "last_seen": utc(points[-1]["fetch_time"]),
        "duration_s": points[-1]["fetch_time"] - points[0]["fetch_time"],
        "positions": len(points),
        "airborne_positions": sum(1 for p in points if not p["on_ground"]),
        "max_altitude_m": max(altitudes) if altitudes else None,
        "distance_km": distance,
        "first_latitude": points[0]["latitude"],
        "first_longitude": points[0]["longitude"],
        "last_latitude": points[-1]["latitude"],
        "last_longitude": points[-1]["longitude"],
    }


def expected_country_stats(rows: Iterable[dict[str, Any]], per: str) -> dict[tuple, dict]:
    """Per (UTC hour or day, country): state_vectors, aircraft, avg_velocity_ms, max_altitude_m."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        moment = utc(row["fetch_time"])
        key = moment.replace(minute=0, second=0, tzinfo=None) if per == "hour" else moment.date()
        groups[(key, row["origin_country"])].append(row)
    out = {}
    for key, members in groups.items():
        speeds = [r["velocity"] for r in members if r["velocity"] is not None]
        altitudes = [r["baro_altitude"] for r in members if r["baro_altitude"] is not None]
        out[key] = {
            "state_vectors": len(members),
            "aircraft": len({r["icao24"] for r in members}),
            "avg_velocity_ms": sum(speeds) / len(speeds) if speeds else None,
            "max_altitude_m": max(altitudes) if altitudes else None,
        }
    return out


def expected_routes(flights: Iterable[dict[str, Any]], top: int = 5) -> set[tuple]:
    """(hour, from cell, to cell, flights, rank) of each hour's busiest routes, ties included."""
    counts: dict[tuple, int] = defaultdict(int)
    for f in flights:
        if f["airborne_positions"] == 0:
            continue
        hour = f["first_seen"].replace(minute=0, second=0, tzinfo=None)
        route = (
            math.floor(f["first_latitude"]),
            math.floor(f["first_longitude"]),
            math.floor(f["last_latitude"]),
            math.floor(f["last_longitude"]),
        )
        counts[(hour, *route)] += 1
    out = set()
    for hour in {key[0] for key in counts}:
        in_hour = {k: n for k, n in counts.items() if k[0] == hour}
        for key, n in in_hour.items():
            rank = 1 + sum(1 for m in in_hour.values() if m > n)
            if rank <= top:
                out.add((*key, n, rank))
    return out


def registration_country(icao24: str) -> str:
    """The State whose ICAO block holds the address (the harness's table), or 'Unknown'."""
    address = int(icao24, 16)
    for first, last, country in ALLOCATIONS:
        if first <= address <= last:
            return country
    return "Unknown"


def expected_aircraft(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per aircraft: latest callsign (trimmed), latest origin_country, registration country."""
    out = {}
    for icao24, track in tracks(rows).items():
        callsigns = [r["callsign"].strip() for r in track if (r["callsign"] or "").strip()]
        reported = track[-1]["origin_country"]
        registered = registration_country(icao24)
        out[icao24] = {
            "callsign": callsigns[-1] if callsigns else None,
            "origin_country": reported,
            "registration_country": registered,
            "country_mismatch": reported != registered,
            "first_seen": utc(track[0]["fetch_time"]),
            "last_seen": utc(track[-1]["fetch_time"]),
        }
    return out


def impossible_speed_aircraft(rows: Iterable[dict[str, Any]]) -> set[str]:
    """Aircraft with two consecutive positions that imply more than IMPOSSIBLE_SPEED_MS."""
    found = set()
    for icao24, track in tracks(rows).items():
        for a, b in zip(track, track[1:], strict=False):
            seconds = b["fetch_time"] - a["fetch_time"]
            metres = 1000 * great_circle_km(
                a["latitude"], a["longitude"], b["latitude"], b["longitude"]
            )
            if seconds > 0 and metres / seconds > IMPOSSIBLE_SPEED_MS:
                found.add(icao24)
    return found


def flight_key(row: dict[str, Any]) -> tuple[str, datetime]:
    return (row["icao24"], row["first_seen"].astimezone(UTC))


def digest(values: Iterable[Any]) -> str:
    return hashlib.sha1(repr(list(values)).encode()).hexdigest()[:12]


# ------------------------------------------------------------------ command line
def main(argv: list[str]) -> int:
    """`load` puts the recording into the schema lab07_dev; anything else is a dbt command."""
    from harness.grading import loader

    project = ROOT / "labs" / LAB
    if os.environ.get("LAB07_TARGET") == "solutions":
        loader.set_target("solutions")
        project = loader.target_dir() / LAB
    scratch = STACK_DIR / "lab07_dev"
    dbt = DbtProject(project, DEV_SCHEMA, scratch)
    if argv[:1] == ["load"]:
        drop_schemas(DEV_SCHEMA)
        load_raw(DEV_SCHEMA, processed_rows())
        print(f"Loaded the recording into {DEV_SCHEMA}.processed_flights and flight_statistics.")
        return 0
    if not argv:
        print(__doc__)
        return 2
    from dbt.cli.main import dbtRunner

    args = [
        *argv,
        "--project-dir",
        str(project),
        "--profiles-dir",
        str(dbt.profiles_dir),
        "--target-path",
        str(scratch / "target"),
        "--log-path",
        str(scratch / "logs"),
    ]
    if argv[:2] == ["docs", "serve"]:
        args += ["--host", "127.0.0.1"]
    print(f"dbt {' '.join(argv)}  (schema {DEV_SCHEMA}, artifacts in {scratch / 'target'})")
    outcome = dbtRunner().invoke(args)
    return 0 if outcome.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
