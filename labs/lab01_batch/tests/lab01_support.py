"""Helpers of Lab 01's graded suite: scratch names and their cleanup, a slice of the real
recording with planted bad inputs, and running the job on it (the fixtures are in conftest.py).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import subprocess
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from harness.runtime.data import RECORDING, load_snapshots
from harness.runtime.schema import STATE_FIELD_NAMES, state_to_row
from harness.runtime.services import pg_connect

# The slice of the recording the end-to-end tests use: 12:59:30-13:00:30 UTC on 2021-10-07, two
# hour partitions, ~320 real state vectors from 20 countries with null positions and repeated
# positions (duplicates), plus the planted bad inputs below.
SLICE_START, SLICE_END = 1633611570, 1633611630
PLANT_TIME = 1633611620  # the snapshot that gets the planted states


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_pg_table(name: str) -> None:
    try:
        with pg_connect() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    except Exception as exc:  # cleanup must never hide the test's own result
        warnings.warn(f"could not drop PostgreSQL table {name}: {exc}", stacklevel=1)


# ------------------------------------------------------------------ a slice of the recording
# Planted into the slice: the bad rows a real feed sends now and then (one per rule).
def planted_states(fetch_time: int) -> list[tuple[list[Any], str | None]]:
    """(state vector, the reason part A gives it, or None when it reaches part B)."""

    def state(icao24: str, **changes: Any) -> list[Any]:
        vector = [icao24, "TEST1   ", "Germany", fetch_time - 1, fetch_time - 1, 8.5, 50.0]
        vector += [10000.0, False, 230.0, 90.0, 0.0, None, None, "1000", False, 0, 0]
        for name, value in changes.items():
            vector[STATE_FIELD_NAMES.index(name)] = value
        return vector

    return [
        (state("3c0001", velocity=-50.0), None),
        (state("3c0002", latitude=95.0), None),
        (state("3c0003", longitude=200.5), None),
        (state("3c0004", time_position=fetch_time + 3600), None),  # from the future
        (state("3c0005", longitude=None, latitude=None), None),
        (state("3C0006"), None),  # icao24 in upper case
        (state("3c0007", longitude="east"), "wrong type"),
        (["3c0008", "SHORT   "], "malformed state vector"),
    ]


EXTRA_LINES = [
    ("not json at all", "malformed JSON line"),
    ('{"hello": "world"}', "malformed snapshot"),
]


@dataclass
class RecordingSlice:
    """The slice as uploaded (`path`), the rows that reach part B, and part A's rejects."""

    path: Path
    rows: list[dict[str, Any]]
    read_rejects: dict[str, int]


def build_slice(folder: Path) -> RecordingSlice:
    """Write the slice as gzipped JSON Lines; return what each part should see of it."""
    lines, rows, rejects = [], [], {}
    for snapshot in load_snapshots(RECORDING):
        if not SLICE_START <= snapshot["time"] < SLICE_END:
            continue
        states = [(vector, None) for vector in snapshot["states"] or []]
        if snapshot["time"] == PLANT_TIME:
            states += planted_states(PLANT_TIME)
        for vector, reason in states:
            if reason:
                rejects[reason] = rejects.get(reason, 0) + 1
                continue
            row = state_to_row(snapshot["time"], vector)
            for name in ("longitude", "latitude", "baro_altitude", "velocity", "true_track"):
                if isinstance(row[name], int) and not isinstance(row[name], bool):
                    row[name] = float(row[name])  # JSON has no float type: 8 means 8.0
            rows.append(row)
        states = [vector for vector, _ in states]
        lines.append(json.dumps({"time": snapshot["time"], "states": states}))
    for line, reason in EXTRA_LINES:
        lines.insert(2, line)
        rejects[reason] = rejects.get(reason, 0) + 1
    path = folder / "slice.json.gz"
    path.write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    return RecordingSlice(path=path, rows=rows, read_rejects=rejects)


@dataclass
class Run:
    """One run of the job: how it ended, what it printed, and what it left in the stores."""

    how: str
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    stores: dict[str, Any] | None = None


@dataclass
class SliceRuns:
    """Names of one end-to-end run pair and the slice they read."""

    data: RecordingSlice
    prefix: str
    database: str
    stats_table: str
    script: Path
    submit: subprocess.Popen | None = None
    runs: dict[str, Run] = field(default_factory=dict)

    @property
    def output(self) -> str:
        return f"s3a://processed-data/{self.prefix}"

    def args(self) -> list[str]:
        return [
            "s3",
            f"s3a://raw-data/{self.prefix}/*.json.gz",
            "--output",
            self.output,
            "--database",
            self.database,
            "--stats-table",
            self.stats_table,
        ]


def stores(spark, ch, names: SliceRuns) -> dict[str, Any]:
    """What a run left behind: ClickHouse rows per hour and aggregates, Parquet rows, the
    quarantine (reason counts and records), and PostgreSQL statistics with their row versions."""
    database = names.database
    flights = ch.query(
        f"SELECT hour, count() FROM `{database}`.flights_batch GROUP BY hour ORDER BY hour"
    ).result_rows
    stats = ch.query(
        f"SELECT toString(date), hour, origin_country, aircraft, state_vectors, avg_velocity, "
        f"max_altitude, ground_share FROM `{database}`.flight_statistics_batch"
    ).result_rows
    quarantine = spark.read.json(f"{names.output}/flights_rejected").select("reason", "record")
    reasons: dict[str, int] = {}
    records = []
    for r in quarantine.collect():  # a few hundred rows, for the comparison
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        records.append((r["reason"], r["record"]))
    with pg_connect() as conn:
        pg = conn.execute(
            sql.SQL(
                "SELECT stat_date::text, stat_hour, origin_country, flight_count, state_vectors, "
                "avg_velocity, max_altitude, ground_share, xmin::text FROM {}"
            ).format(sql.Identifier(names.stats_table))
        ).fetchall()
    return {
        "flights_by_hour": {int(hour): int(n) for hour, n in flights},
        "stats": {(r[0], int(r[1]), r[2]): tuple(r[3:]) for r in stats},
        "parquet_rows": spark.read.parquet(f"{names.output}/flights").count(),
        "quarantined": reasons,
        "quarantine_records": sorted(records, key=str),
        "pg_stats": {(r[0], int(r[1]), r[2]): tuple(r[3:8]) for r in pg},
        "pg_versions": {(r[0], int(r[1]), r[2]): r[8] for r in pg},
    }


def run_main(mod, argv: list[str]) -> Run:
    """`batch_processor.py ARGS` in this process (`main(argv)`), with its output captured."""
    run = Run("python batch_processor.py")
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run.returncode = mod.main(argv)
    except SystemExit as exc:
        run.returncode = exc.code if isinstance(exc.code, int) else 1
    except Exception:
        run.returncode = 1
        err.write(traceback.format_exc())
    run.stdout, run.stderr = out.getvalue(), err.getvalue()
    return run
