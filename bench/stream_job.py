"""The reference Lab 02 pipeline in its own process, driven by bench/streaming.py.

    python -m bench.stream_job '<StreamConfig fields as JSON>'

Two optional keys of that JSON are the bench's, not StreamConfig's: `_clickhouse` ("s3", the
reference: Parquet staged in MinIO and one `INSERT ... SELECT ... FROM s3()`; or "partitions":
one `insert_arrow` per Spark partition from the executors, to compare) and `_master` (a Spark
master URL, e.g. the standalone cluster; `_executors` executors of one core each there), and
`_aggregates` (false: the window-aggregates query is stopped as soon as it starts, so the run
measures the rows query alone; the difference to the reference is the cost of the second parse
of the topic and its stateful aggregation).

Starts Spark and the job's queries (`start_streams`), prints `READY {...}`, then obeys lines on
stdin: `status` prints `STATUS {...}` (batches with input so far, per query), `mark` starts the
measured part (earlier batches are warm-up), anything else or EOF stops the queries
(`stop_streams`) and prints `RESULT {...}`: Spark's own progress metrics of both queries since
the mark, and the wall time of each sink write of the rows query.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from harness.runtime.config import ROOT

# Functions of the job whose wall time per micro-batch is recorded (looked up at call time).
TIMED = (
    "process_rows_batch",
    "write_clickhouse",
    "write_postgres",
    "write_kafka",
    "write_aggregates",
    "source_range",
)


def _timed(fn: Callable[..., Any], name: str, spent: dict[str, list[float]]) -> Callable:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name].append(time.perf_counter() - t0)

    return wrapper


def _progress(query: Any) -> list[dict[str, Any]]:
    out = []
    for p in query.recentProgress:
        out.append(p if isinstance(p, dict) else json.loads(p.json))
    return out


def summarise(progress: list[dict[str, Any]]) -> dict[str, Any]:
    """Spark's progress of one query: batches with input, rows, mean durations (ms) by phase."""
    busy = [p for p in progress if p.get("numInputRows", 0) > 0]
    if not busy:
        return {"batches": 0}
    phases: dict[str, float] = defaultdict(float)
    for p in busy:
        for phase, ms in (p.get("durationMs") or {}).items():
            phases[phase] += ms
    rows = sum(p["numInputRows"] for p in busy)
    return {
        "batches": len(busy),
        "rows": rows,
        "rows_per_batch": round(rows / len(busy)),
        "mean_ms": {k: round(v / len(busy)) for k, v in sorted(phases.items())},
        "processed_rows_per_s_median": sorted(p.get("processedRowsPerSecond", 0) for p in busy)[
            len(busy) // 2
        ],
    }


def clickhouse_per_partition(job_module: Any) -> Callable[..., None]:
    """`write_clickhouse` done the other way: each Spark task inserts its partition (Arrow) with
    its own client; the token is the batch's plus the partition number, so a replayed batch (same
    offsets, same partitions) is skipped partition by partition."""

    def write_clickhouse(rows: Any, cfg: Any, token: str) -> None:
        from pyspark.sql import functions as F

        from harness.runtime.config import endpoints

        ep = endpoints()
        client_args = {
            "host": ep.clickhouse_host,
            "port": ep.clickhouse_port,
            "username": ep.clickhouse_user,
            "password": ep.clickhouse_password,
            "database": cfg.clickhouse_database,
        }
        table = cfg.clickhouse_table
        names = list(job_module.ROW_FIELD_NAMES)
        times = set(job_module.TIME_FIELDS)

        def insert(batches: Any) -> Any:
            import clickhouse_connect
            import pyarrow as pa
            from pyspark import TaskContext

            part = TaskContext.get().partitionId()
            tables = [pa.Table.from_batches([b]) for b in batches if b.num_rows]
            count = 0
            if tables:
                data = pa.concat_tables(tables)
                for name in times:
                    i = data.schema.get_field_index(name)
                    data = data.set_column(
                        i, name, data.column(name).cast(pa.timestamp("s", tz="UTC"))
                    )
                client = clickhouse_connect.get_client(**client_args)
                try:
                    client.insert_arrow(
                        table, data, settings={"insert_deduplication_token": f"{token}#{part}"}
                    )
                finally:
                    client.close()
                count = data.num_rows
            yield pa.RecordBatch.from_pydict({"rows": [count]})

        staged = rows.select(
            *[
                F.coalesce(n, F.array().cast("array<bigint>")).alias(n) if n == "sensors" else n
                for n in names
            ]
        )
        staged.mapInArrow(insert, "rows long").agg(F.sum("rows")).collect()

    return write_clickhouse


def cluster_session(master: str, executors: int) -> Any:
    """A session on the standalone cluster with `executors` executors of one core each."""
    from pyspark.sql import SparkSession

    from harness.runtime.spark import jar_conf, spark_conf

    conf = {
        **jar_conf(master),
        **spark_conf(master),
        "spark.cores.max": str(executors),
        "spark.executor.cores": "1",
        "spark.executor.memory": "1g",
        "spark.executorEnv.PYTHONPATH": str(ROOT),
    }
    builder = SparkSession.builder.appName("bench-lab02-cluster").master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fields = json.loads(argv[0])
    clickhouse_mode = fields.pop("_clickhouse", "s3")
    master = fields.pop("_master", None)
    executors = int(fields.pop("_executors", 2))
    aggregates = bool(fields.pop("_aggregates", True))
    # Throughput over minutes: the full JIT, whatever infra/.env or the caller give short jobs.
    os.environ["SPARK_JVM_OPTIONS"] = ""
    t0 = time.perf_counter()
    from bench.common import solution_module

    job_module = solution_module("lab02_streaming", "streaming_processor")
    if clickhouse_mode == "partitions":
        job_module.write_clickhouse = clickhouse_per_partition(job_module)
    spent: dict[str, list[float]] = defaultdict(list)
    for name in TIMED:
        setattr(job_module, name, _timed(getattr(job_module, name), name, spent))
    spark = cluster_session(master, executors) if master else job_module.spark_session()
    t1 = time.perf_counter()
    cfg = job_module.StreamConfig(**fields)
    job = job_module.start_streams(spark, cfg)
    live = [("rows", job.rows), ("aggregates", job.aggregates)]
    if not aggregates:
        job.aggregates.stop()
        live = live[:1]
    t2 = time.perf_counter()
    ready = {"spark_start_s": t1 - t0, "start_streams_s": t2 - t1}
    print("READY " + json.dumps(ready), flush=True)
    marks = {"rows": -1, "aggregates": -1}
    sink_mark: dict[str, int] = {}
    for line in sys.stdin:  # commands from bench/streaming.py; EOF or "stop" ends the run
        command = line.strip()
        if command == "status":
            status = {
                name: {
                    "batches_with_input": [
                        p["batchId"] for p in _progress(query) if p.get("numInputRows", 0) > 0
                    ],
                    "active": query.isActive,
                }
                for name, query in live
            }
            print("STATUS " + json.dumps(status), flush=True)
        elif command == "mark":  # from here on the run is measured: forget the warm-up
            for name, query in live:
                progress = _progress(query)
                marks[name] = progress[-1]["batchId"] if progress else -1
            sink_mark = {k: len(v) for k, v in spent.items()}
            print("MARKED", flush=True)
        else:
            break
    failure = None
    for query in job.queries:
        exc = query.exception()
        if exc is not None:
            failure = str(exc)[:2000]
    job_module.stop_streams(job, timeout=60.0)

    def measured(query: Any, name: str) -> list[dict[str, Any]]:
        return [p for p in _progress(query) if p["batchId"] > marks[name]]

    result = {
        "rows_query": summarise(measured(job.rows, "rows")),
        "aggregates_query": summarise(measured(job.aggregates, "aggregates")),
        "sink_seconds": {
            k: [round(x, 3) for x in v[sink_mark.get(k, 0) :]] for k, v in spent.items()
        },
        "batches": len(job.reports),
        "failure": failure,
    }
    print("RESULT " + json.dumps(result), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
