"""One timed run of the reference Lab 01 job, in its own process (a fresh Spark driver each time).

    python -m bench.batch_job full      --input URL --output s3a://... --database bench_x
    python -m bench.batch_job aggregate --input URL

`full` is the job's `run()` (read, clean, enrich, aggregate, Parquet to MinIO, load ClickHouse);
`aggregate` is read -> clean -> enrich -> aggregate, collected to the driver — the work the
ClickHouse query of the batch section does. Prints one JSON line with the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

DESCRIPTION = "spark.job.description"
STEPS = (
    "write_parquet",
    "write_quarantine",
    "create_clickhouse_tables",
    "load_clickhouse",
)


def _timed(
    fn: Callable[..., Any], name: str, spent: dict[str, float], sc: Any
) -> Callable[..., Any]:
    """`fn`, timed into `spent[name]`; its Spark jobs carry `name` as their description."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = sc.getLocalProperty(DESCRIPTION)
        sc.setLocalProperty(DESCRIPTION, name)
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - t0
            sc.setLocalProperty(DESCRIPTION, before)

    return wrapper


def start_spark(event_dir: Path) -> Any:
    """The harness's session (harness.runtime.spark settings), plus an event log for Spark's metrics."""
    from pyspark.sql import SparkSession

    from harness.runtime.config import endpoints
    from harness.runtime.spark import jar_conf, spark_conf

    master = endpoints().spark_test_master
    builder = SparkSession.builder.appName("bench-lab01").master(master)
    settings = {
        **jar_conf(master),
        **spark_conf(master),
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": event_dir.as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_metrics(event_dir: Path) -> dict[str, dict[str, float]]:
    """Per job description: jobs, wall seconds, task seconds, GC seconds, spilled MiB, input MiB."""
    stage_job: dict[int, str] = {}
    started: dict[int, tuple[str, float]] = {}
    out: dict[str, dict[str, float]] = {}

    def row(name: str) -> dict[str, float]:
        return out.setdefault(
            name,
            {
                "jobs": 0,
                "wall_s": 0.0,
                "task_s": 0.0,
                "gc_s": 0.0,
                "spill_mib": 0.0,
                "input_mib": 0.0,
            },
        )

    for path in sorted(p for p in event_dir.rglob("*") if p.is_file()):
        with path.open() as fh:
            for line in fh:
                event = json.loads(line)
                kind = event.get("Event")
                if kind == "SparkListenerJobStart":
                    name = (event.get("Properties") or {}).get(DESCRIPTION) or "run(): other"
                    if name.startswith("Listing leaf files"):  # Spark's own description
                        name = "listing the input files"
                    name = name.splitlines()[0][:80]
                    started[event["Job ID"]] = (name, event["Submission Time"])
                    for stage in event.get("Stage IDs", []):
                        stage_job[stage] = name
                elif kind == "SparkListenerJobEnd" and event["Job ID"] in started:
                    name, t0 = started[event["Job ID"]]
                    r = row(name)
                    r["jobs"] += 1
                    r["wall_s"] += (event["Completion Time"] - t0) / 1000
                elif kind == "SparkListenerTaskEnd":
                    metrics = event.get("Task Metrics") or {}
                    r = row(stage_job.get(event.get("Stage ID"), "run(): other"))
                    r["task_s"] += metrics.get("Executor Run Time", 0) / 1000
                    r["gc_s"] += metrics.get("JVM GC Time", 0) / 1000
                    r["spill_mib"] += metrics.get("Disk Bytes Spilled", 0) / 2**20
                    read = metrics.get("Input Metrics") or {}
                    r["input_mib"] += read.get("Bytes Read", 0) / 2**20
    return {k: {m: round(v, 2) for m, v in r.items()} for k, r in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_job")
    parser.add_argument("mode", choices=("full", "aggregate"))
    parser.add_argument("--input", required=True)
    parser.add_argument("--output")
    parser.add_argument("--database")
    args = parser.parse_args(argv)

    # Throughput over minutes: the full JIT, whatever infra/.env or the caller give short jobs.
    os.environ["SPARK_JVM_OPTIONS"] = ""
    t0 = time.perf_counter()
    from bench.common import solution_module

    job = solution_module("lab01_batch", "batch_processor")
    imported = time.perf_counter()
    event_dir = Path(tempfile.mkdtemp(prefix="bench_spark_events_"))
    spark = start_spark(event_dir)
    job.spark_session("bench-lab01")  # the job's own factory: returns the session above
    started = time.perf_counter()
    sc = spark.sparkContext
    spent: dict[str, float] = defaultdict(float)
    out: dict[str, Any] = {
        "import_s": imported - t0,
        "spark_start_s": started - imported,
        "master": spark.sparkContext.master,
    }
    try:
        if args.mode == "full":
            for name in STEPS:  # run() looks these up in the module at call time
                setattr(job, name, _timed(getattr(job, name), name, spent, sc))
            sc.setLocalProperty(DESCRIPTION, "run(): read, cache, counts")
            read = job.read_snapshots(spark, args.input)
            summary = job.run(spark, read, args.output, args.database)
            out["rows_in"] = summary["rows_in"]
            out["kept"] = summary["kept"]
            out["clickhouse_rows"] = summary["clickhouse_rows"]
            out["partitions"] = len(summary["partitions"])
        else:
            sc.setLocalProperty(DESCRIPTION, "read, clean, enrich, aggregate, collect")
            read = job.read_snapshots(spark, args.input)
            # One action, one pass over the input: what the single ClickHouse query does.
            stats = job.aggregate(job.enrich(job.clean(read.rows).kept)).collect()
            out["groups"] = len(stats)
            out["state_vectors"] = sum(int(r["state_vectors"]) for r in stats)
        out["job_s"] = time.perf_counter() - started
        out["steps_s"] = dict(spent)
    finally:
        spark.stop()
        try:
            out["spark_metrics"] = spark_metrics(event_dir)
        finally:
            shutil.rmtree(event_dir, ignore_errors=True)
    print("BENCH_RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
