"""Section 4 — Batch: the reference Lab 01 job on the scaled recording vs ClickHouse.

The scaled recording (bench/scale.py, ≥ 5 million state vectors by default) is uploaded to MinIO
as one gzipped JSON Lines file per copy, under `raw-data/bench_<id>/`. Then:

- **Spark, end to end**: `python -m bench.batch_job full` — the job's `run()`: read, clean, enrich,
  aggregate, Parquet to MinIO, load ClickHouse (a throw-away `bench_<id>` database);
- **Spark, aggregation only**: read -> clean -> enrich -> aggregate, collected (one action);
- **ClickHouse**: one SQL query doing the same read from MinIO (`s3()`), the same cleaning rules and
  the same per (date, hour, origin_country) aggregate;
- **ClickHouse, loaded table**: the aggregate over the `flights_batch` rows the job loaded.

Rows per second are input state vectors divided by wall time. Each Spark run is a new process,
so its figure excludes the Spark start, which is reported on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.common import Section, Timer, log, unique
from bench.scale import copies_for, recording_rows, scaled_files
from harness.runtime.config import ROOT, endpoints
from harness.runtime.services import clickhouse_client, minio_client

RAW_BUCKET = "raw-data"
OUTPUT_BUCKET = "processed-data"
JOB_TIMEOUT_S = 3600

# The job's cleaning rules and aggregate (solutions/lab01_batch parts A-D) in ClickHouse SQL.
# A state vector is an array: 1 icao24, 3 origin_country, 4 time_position, 5 last_contact,
# 6 longitude, 7 latitude, 8 baro_altitude, 9 on_ground, 10 velocity, 14 geo_altitude.
AGGREGATE_SQL = """
WITH
states AS (
    SELECT time AS fetch_time, arrayJoin(states) AS s FROM {source}
),
typed AS (
    SELECT
        fetch_time,
        s[1] AS icao24,
        s[3] AS origin_country,
        toInt64OrNull(s[4]) AS time_position,
        toInt64OrNull(s[5]) AS last_contact,
        toFloat64OrNull(s[6]) AS longitude,
        toFloat64OrNull(s[7]) AS latitude,
        toFloat64OrNull(s[8]) AS baro_altitude,
        s[9] = 'true' AS on_ground,
        toFloat64OrNull(s[10]) AS velocity,
        toFloat64OrNull(s[14]) AS geo_altitude
    FROM states
),
kept AS (
    SELECT * FROM typed
    WHERE latitude IS NOT NULL AND longitude IS NOT NULL AND time_position IS NOT NULL
      AND latitude BETWEEN -90 AND 90 AND longitude BETWEEN -180 AND 180
      AND NOT ifNull(velocity < 0, 0)
      AND time_position <= fetch_time
    ORDER BY fetch_time, last_contact
    LIMIT 1 BY icao24, time_position
)
SELECT
    toDate(toDateTime(fetch_time, 'UTC')) AS date,
    toHour(toDateTime(fetch_time, 'UTC')) AS hour,
    origin_country,
    uniqExact(icao24) AS aircraft,
    count() AS state_vectors,
    avg(velocity) AS avg_velocity,
    max(coalesce(baro_altitude, geo_altitude)) AS max_altitude,
    avg(on_ground) AS ground_share
FROM kept
GROUP BY date, hour, origin_country
"""

LOADED_SQL = """
SELECT date, hour, origin_country, uniqExact(icao24), count(), avg(velocity),
       max(coalesce(baro_altitude, geo_altitude)), avg(on_ground)
FROM {table}
GROUP BY date, hour, origin_country
"""


class Input:
    """The scaled recording in MinIO under `raw-data/<prefix>/`; `remove()` deletes it."""

    def __init__(self, rows_wanted: int) -> None:
        self.copies = copies_for(rows_wanted)
        self.rows = self.copies * recording_rows()
        self.prefix = unique("batch")
        files = scaled_files(self.copies)
        client = minio_client()
        with Timer() as t:
            for path in files:
                client.fput_object(RAW_BUCKET, f"{self.prefix}/{path.name}", str(path))
        self.upload_s = t.seconds
        self.bytes = sum(p.stat().st_size for p in files)
        log(f"uploaded {len(files)} files ({self.bytes / 2**20:.0f} MiB) in {t.seconds:.1f} s")

    @property
    def s3a_url(self) -> str:
        return f"s3a://{RAW_BUCKET}/{self.prefix}/*.json.gz"

    def clickhouse_source(self) -> str:
        ep = endpoints()
        url = f"{ep.clickhouse_s3_endpoint}/{RAW_BUCKET}/{self.prefix}/*.json.gz"
        return (
            f"s3('{url}', '{ep.minio_access_key}', '{ep.minio_secret_key}', 'JSONEachRow', "
            "'time Int64, states Array(Array(Nullable(String)))')"
        )

    def remove(self) -> None:
        remove_prefix(RAW_BUCKET, self.prefix)


def remove_prefix(bucket: str, prefix: str) -> None:
    from minio.deleteobjects import DeleteObject

    client = minio_client()
    objects = [
        DeleteObject(o.object_name)
        for o in client.list_objects(bucket, prefix=f"{prefix}/", recursive=True)
    ]
    for error in client.remove_objects(bucket, objects):
        log(f"could not delete {bucket}/{error.name}: {error.message}")


def spark_job(mode: str, data: Input, output: str = "", database: str = "") -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.batch_job", mode, "--input", data.s3a_url]
    if mode == "full":
        argv += ["--output", output, "--database", database]
    with Timer() as t:
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"the Lab 01 job ({mode}) failed with exit code {proc.returncode}:\n"
            + (proc.stderr or proc.stdout)[-3000:]
        )
    result = json.loads(lines[-1].split(" ", 1)[1])
    result["process_s"] = t.seconds
    return result


def clickhouse_aggregate(data: Input) -> tuple[float, list[tuple]]:
    client = clickhouse_client()
    with Timer() as t:
        rows = client.query(AGGREGATE_SQL.format(source=data.clickhouse_source())).result_rows
    return t.seconds, rows


def _clickhouse_runs(section: Section, data: Input, repeats: int) -> list[tuple]:
    figure = section.figure(
        "clickhouse_rows_per_s", "ClickHouse: same read, cleaning and aggregate in SQL", "rows/s"
    )
    seconds = section.figure("clickhouse_s", "ClickHouse query wall time", "s")
    result: list[tuple] = []
    for i in range(repeats):
        s, result = clickhouse_aggregate(data)
        seconds.add(s)
        figure.add(data.rows / s)
        log(f"clickhouse run {i + 1}/{repeats}: {s:.1f} s, {data.rows / s:,.0f} rows/s")
    section.tables["clickhouse_result"] = {
        "groups": len(result),
        "state_vectors kept": sum(int(r[4]) for r in result),
    }
    return result


def _workload(section: Section, data: Input, repeats: dict[str, int]) -> None:
    section.tables["workload"] = {
        "state_vectors": data.rows,
        "copies_of_recording": data.copies,
        "files": data.copies,
        "gzip_MiB": round(data.bytes / 2**20, 1),
        "upload_to_minio_s": round(data.upload_s, 1),
        **{f"repeats_{k}": v for k, v in repeats.items()},
    }


def run_clickhouse_only(section: Section, options: Any) -> None:
    """The ClickHouse half of the batch section, alone (cheap: the smoke test runs it)."""
    repeats = options.repeats_or(5)
    data = Input(options.batch_rows)
    try:
        _workload(section, data, {"clickhouse": repeats})
        _clickhouse_runs(section, data, repeats)
    finally:
        data.remove()


def run(section: Section, options: Any) -> None:
    heavy = options.repeats_or(2)  # each Spark run of 5 million rows takes minutes
    light = options.repeats_or(3)
    data = Input(options.batch_rows)
    database = unique("db")
    outputs: list[str] = []
    try:
        _workload(section, data, {"spark": heavy, "clickhouse": light})
        e2e = section.figure("spark_job_rows_per_s", "Lab 01 job end to end (run())", "rows/s")
        e2e_s = section.figure("spark_job_s", "Lab 01 job wall time (Spark started)", "s")
        agg = section.figure(
            "spark_aggregate_rows_per_s", "Spark: read, clean, enrich, aggregate only", "rows/s"
        )
        start = section.figure("spark_start_s", "Spark session start (local[2])", "s")
        steps: dict[str, list[float]] = {}
        spark_groups: dict[str, Any] = {}
        for i in range(heavy):
            output = f"s3a://{OUTPUT_BUCKET}/{unique('out')}"
            outputs.append(output)
            full = spark_job("full", data, output, database)
            start.add(full["spark_start_s"])
            e2e_s.add(full["job_s"])
            e2e.add(full["rows_in"] / full["job_s"])
            for name, s in full["steps_s"].items():
                steps.setdefault(name, []).append(s)
            other = full["job_s"] - sum(full["steps_s"].values())
            steps.setdefault("counts, cache and rest of run()", []).append(other)
            log(
                f"spark full run {i + 1}/{heavy}: {full['job_s']:.1f} s, "
                f"{full['rows_in'] / full['job_s']:,.0f} rows/s (start {full['spark_start_s']:.1f} s)"
            )
            part = spark_job("aggregate", data)
            start.add(part["spark_start_s"])
            agg.add(data.rows / part["job_s"])
            spark_groups = {"groups": part["groups"], "state_vectors kept": part["state_vectors"]}
            section.tables["spark_metrics_job (last run, from the event log)"] = full[
                "spark_metrics"
            ]
            section.tables["spark_metrics_aggregation_only (last run)"] = part["spark_metrics"]
            log(f"spark aggregate run {i + 1}/{heavy}: {part['job_s']:.1f} s")
        section.tables["spark_job_steps_s (wall, from the driver)"] = {
            name: {"median": sorted(v)[len(v) // 2], "min": min(v), "max": max(v)}
            for name, v in steps.items()
        }
        section.tables["spark_result"] = spark_groups

        ch_result = _clickhouse_runs(section, data, light)
        loaded = section.figure(
            "clickhouse_loaded_rows_per_s",
            "ClickHouse: aggregate of the rows the job loaded (flights_batch)",
            "rows/s",
        )
        client = clickhouse_client()
        table = f"`{database}`.`flights_batch`"
        loaded_rows = int(client.command(f"SELECT count() FROM {table}"))
        for _ in range(light):
            with Timer() as t:
                client.query(LOADED_SQL.format(table=table))
            loaded.add(loaded_rows / t.seconds)

        ratio = section.figure(
            "ratio_clickhouse_vs_spark_aggregate",
            "ratio ClickHouse / Spark, same aggregation from the raw files",
            "x",
        )
        ratio.add(section.figures["clickhouse_rows_per_s"].median / agg.median)
        ratio_e2e = section.figure(
            "ratio_clickhouse_vs_spark_job",
            "ratio ClickHouse aggregation / Spark job end to end",
            "x",
        )
        ratio_e2e.add(section.figures["clickhouse_rows_per_s"].median / e2e.median)
        metrics = section.tables["spark_metrics_job (last run, from the event log)"]
        read_mib = sum(m["input_mib"] for m in metrics.values())
        spill_mib = sum(m["spill_mib"] for m in metrics.values())
        task_s = sum(m["task_s"] for m in metrics.values())
        gc_s = sum(m["gc_s"] for m in metrics.values())
        files_mib = data.bytes / 2**20
        section.note(
            f"Where the Spark job's time goes (last run, Spark's event log): {task_s:,.0f} task "
            f"seconds on 2 cores, {gc_s:,.0f} s of them in garbage collection; it read "
            f"{read_mib:,.0f} MiB from the input files, {read_mib / files_mib:.1f} times their "
            f"{files_mib:,.0f} MiB (run() derives several results from the raw read, and only "
            f"the parsed rows are cached), and spilled {spill_mib:,.0f} MiB to disk in sorts and "
            "shuffles (the 1 GiB driver). The aggregation-only run reads the files once."
        )
        same = spark_groups.get("state_vectors kept") == sum(int(r[4]) for r in ch_result)
        section.note(
            "Spark and ClickHouse agree on the result"
            if same
            else f"Spark and ClickHouse results differ: Spark {spark_groups}, "
            f"ClickHouse {section.tables['clickhouse_result']}"
        )
        section.note(
            "Ratios are of medians (one value). Spark runs in local[2] with the harness settings "
            "(driver 1 GiB, 2 shuffle partitions), each run a new process; its wall time starts "
            "once the session is up. ClickHouse is the stack's engine (chDB behind the lab's HTTP "
            "server), reading the same gzipped files from MinIO with s3()."
        )
    finally:
        data.remove()
        for output in outputs:
            remove_prefix(OUTPUT_BUCKET, output.split("/", 3)[3])
        try:
            clickhouse_client().command(f"DROP DATABASE IF EXISTS `{database}`")
        except Exception as exc:
            log(f"could not drop {database}: {exc}")
        time.sleep(0)
