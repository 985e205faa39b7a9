"""`make demo`: the whole OpenSky platform this course builds, running at once on the shipped recording.

    python -m harness.ops.demo                 # 20 minutes of the recording, shifted to end now
    python -m harness.ops.demo --minutes 5     # a smaller slice
    python -m harness.ops.demo --target labs   # your own Lab 01/02/04 code instead of the reference

What runs, in the platform's order and under its own names (no throw-away names here):

1. tables: ClickHouse `opensky.flights_streaming`, `flights_batch`, `country_statistics_mv` (Lab 04),
   PostgreSQL `processed_flights` and `flight_statistics` (their one definition, harness.runtime.schema);
2. Debezium: `scripts/setup_debezium.sh` registers the connector on both PostgreSQL tables;
3. replay: a slice of the recording to `raw_flights`, one message per state vector, its times
   shifted so that it ends now (`python -m harness.runtime.replay --shift-to-now`);
4. the streaming job (Lab 02, `--trigger availableNow`): raw_flights -> ClickHouse, PostgreSQL, Kafka
   `processed_flights`, S3 `streaming-aggregations`, dead letters to `raw_flights.dlq`;
5. the batch job (Lab 01, the seed's `batch_processor.py s3 s3a://raw-data/flights/*.json`) over the
   same slice written as raw files to `raw-data/flights/`: Parquet, ClickHouse and PostgreSQL
   `flight_statistics`;
6. the seed's ClickHouse query, run verbatim, and the count of every topic, table and bucket.

It exits 1 naming what stayed empty. The streaming job keeps its checkpoint in `.stack/demo/`,
so a second run processes only the new slice (delete that folder to start over).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.runtime.config import (
    BUCKETS,
    CDC_TOPIC_PROCESSED,
    CDC_TOPIC_STATISTICS,
    CLICKHOUSE_DB,
    ROOT,
    STACK_DIR,
    TOPIC_PROCESSED,
    TOPIC_RAW,
    TOPIC_RAW_DLQ,
)

# The platform description's ClickHouse query, verbatim ("flights per country in the last hour").
SEED_QUERY = """SELECT
    origin_country,
    count() as flight_count,
    avg(velocity) as avg_velocity
FROM flights_streaming
WHERE fetch_time >= now() - INTERVAL 1 HOUR
GROUP BY origin_country
ORDER BY flight_count DESC"""

SNAPSHOTS_PER_MINUTE = 6  # the recording has one snapshot every 10 s
RAW_OBJECT = "flights/demo_recording.json"  # in bucket raw-data: what the batch job reads
RAW_GLOB = "s3a://raw-data/flights/*.json"
CHECKPOINT = STACK_DIR / "demo" / "checkpoints" / "streaming"
TOPICS = (TOPIC_RAW, TOPIC_RAW_DLQ, TOPIC_PROCESSED, CDC_TOPIC_PROCESSED, CDC_TOPIC_STATISTICS)
CLICKHOUSE_TABLES = ("flights_streaming", "flights_batch", "country_statistics_mv")
PG_TABLES = ("public.processed_flights", "public.flight_statistics")
# May stay empty on a clean recording: nothing to dead-letter.
MAY_BE_EMPTY = {TOPIC_RAW_DLQ}
JOB_TIMEOUT_S = 900
CDC_WAIT_S = 90


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and how to look closer."""


def step(number: int, text: str) -> None:
    print(f"\n[{number}/6] {text}", flush=True)


def _module(target: Path, lab: str, name: str):
    """Import `<target>/<lab>/<name>.py` (the reference or your labs/ copy) by its path."""
    import importlib.util

    path = target / lab / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"demo_{lab}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(argv: list[str], what: str, timeout: float = JOB_TIMEOUT_S) -> str:
    """Run a job as its own process (its own Spark session); its output is shown indented."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    t0 = time.monotonic()
    try:
        result = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"{what} did not finish within {timeout:.0f} s") from exc
    lines = [ln for ln in result.stdout.splitlines() if ln.strip()]
    for line in lines[-8:]:
        print(f"    {line}")
    if result.returncode != 0:
        raise DemoError(
            f"{what} failed (exit {result.returncode}):\n{result.stderr[-3000:]}\n"
            f"command: {' '.join(argv)}"
        )
    print(f"    ({what}: {time.monotonic() - t0:.0f} s)")
    return result.stdout


# ------------------------------------------------------------------ the steps
def create_tables(target: Path) -> None:
    """ClickHouse tables and view of Lab 04; PostgreSQL tables from their one definition."""
    from harness.ops.cdc_setup import ensure_tables
    from harness.runtime.services import clickhouse_client

    lab04 = _module(target, "lab04_clickhouse", "clickhouse_lab")
    client = clickhouse_client()
    try:
        lab04.create_flight_tables(client, CLICKHOUSE_DB)
        lab04.create_country_statistics(client, CLICKHOUSE_DB)
    finally:
        client.close()
    print(f"    ClickHouse {CLICKHOUSE_DB}: {', '.join(CLICKHOUSE_TABLES)} (Lab 04)")
    for table, what in ensure_tables(list(PG_TABLES), wait_s=0):
        print(f"    PostgreSQL {table}: {what}")


def register_debezium() -> None:
    _run(["bash", str(ROOT / "scripts" / "setup_debezium.sh")], "setup_debezium.sh", timeout=300)


def slice_of_recording(minutes: int) -> tuple[list[dict[str, Any]], int]:
    """The first `minutes` of the recording with its times shifted to end now, and the shift."""
    from harness.runtime.data import load_snapshots
    from harness.runtime.replay import offset_to_now, shift_times

    snapshots = load_snapshots()[: max(1, minutes * SNAPSHOTS_PER_MINUTE)]
    offset = offset_to_now(snapshots)
    return [shift_times(s, offset) for s in snapshots], offset


def replay_slice(snapshots: list[dict[str, Any]]) -> int:
    """Publish the (already shifted) slice to raw_flights, one message per state vector."""
    from harness.runtime.replay import replay

    report = replay(topic=TOPIC_RAW, speed=0, mode="state", snapshots=snapshots)
    print(f"    {report.summary()}")
    if not report.ok:
        raise DemoError(f"the replay lost messages: {report.summary()}")
    return report.messages


def write_raw_files(snapshots: list[dict[str, Any]]) -> None:
    """The slice as the raw files the batch job reads: JSON Lines in raw-data/flights/."""
    from harness.runtime.services import minio_client

    body = "".join(json.dumps(s, separators=(",", ":")) + "\n" for s in snapshots).encode()
    client = minio_client()
    if not client.bucket_exists("raw-data"):
        client.make_bucket("raw-data")
    client.put_object(
        "raw-data", RAW_OBJECT, io.BytesIO(body), len(body), content_type="application/json"
    )
    print(f"    s3://raw-data/{RAW_OBJECT}: {len(snapshots)} snapshots, {len(body):,} bytes")


def run_streaming(target: Path) -> None:
    script = target / "lab02_streaming" / "streaming_processor.py"
    argv = [sys.executable, str(script), "--trigger", "availableNow"]
    _run(argv + ["--checkpoint", str(CHECKPOINT)], "streaming job (Lab 02)")


def run_batch(target: Path) -> None:
    script = target / "lab01_batch" / "batch_processor.py"
    _run([sys.executable, str(script), "s3", RAW_GLOB], "batch job (Lab 01)")


# ------------------------------------------------------------------ what the platform holds
def topic_counts() -> dict[str, int]:
    """Messages in each platform topic (high minus low watermark, over its partitions)."""
    from confluent_kafka import Consumer, TopicPartition

    from harness.runtime.services import kafka_admin, kafka_config

    existing = kafka_admin().list_topics(timeout=15).topics
    consumer = Consumer(kafka_config(**{"group.id": f"demo-count-{os.getpid()}"}))
    counts = {}
    try:
        for topic in TOPICS:
            if topic not in existing:
                counts[topic] = 0
                continue
            total = 0
            for partition in existing[topic].partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                total += high - low
            counts[topic] = total
    finally:
        consumer.close()
    return counts


def wait_for_cdc(timeout: float = CDC_WAIT_S) -> None:
    """Debezium's topics fill shortly after the jobs wrote PostgreSQL: wait, bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = topic_counts()
        if counts[CDC_TOPIC_PROCESSED] and counts[CDC_TOPIC_STATISTICS]:
            return
        time.sleep(2)


def table_counts() -> dict[str, int]:
    from harness.runtime.services import clickhouse_client, minio_client, pg_connect

    counts: dict[str, int] = {}
    client = clickhouse_client()
    try:
        for table in CLICKHOUSE_TABLES:
            name = f"{CLICKHOUSE_DB}.{table}"
            counts[f"ClickHouse {name}"] = int(client.command(f"SELECT count() FROM {name}"))
    finally:
        client.close()
    with pg_connect() as conn:
        for table in PG_TABLES:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts[f"PostgreSQL {table}"] = int(row[0])
    minio = minio_client()
    for bucket in BUCKETS:
        objects = minio.list_objects(bucket, recursive=True) if minio.bucket_exists(bucket) else []
        counts[f"MinIO s3://{bucket}"] = sum(1 for _ in objects)
    return counts


def seed_query() -> list[tuple]:
    from harness.runtime.services import clickhouse_client

    client = clickhouse_client(database=CLICKHOUSE_DB)
    try:
        return [tuple(row) for row in client.query(SEED_QUERY).result_rows]
    finally:
        client.close()


def print_report(rows: list[tuple], topics: dict[str, int], tables: dict[str, int]) -> list[str]:
    """Print the seed query's answer and every count; return the names that stayed empty."""
    print("\nThe platform description's ClickHouse query, verbatim:\n")
    print("    " + SEED_QUERY.replace("\n", "\n    "))
    print(f"\n    {'origin_country':<28}{'flight_count':>14}{'avg_velocity':>14}")
    for country, count, velocity in rows[:15]:
        shown = f"{velocity:.1f}" if velocity is not None else "-"
        print(f"    {country:<28}{count:>14,}{shown:>14}")
    if len(rows) > 15:
        print(f"    … {len(rows) - 15} more countries")
    print(f"    ({len(rows)} countries)")
    print("\nKafka topics (messages):")
    for topic, count in topics.items():
        print(f"    {topic:<40}{count:>10,}")
    print("Tables and buckets (rows / objects):")
    for name, count in tables.items():
        print(f"    {name:<40}{count:>10,}")
    empty = [t for t, c in topics.items() if not c and t not in MAY_BE_EMPTY]
    empty += [n for n, c in tables.items() if not c]
    if not rows:
        empty.append("the seed query's answer")
    return empty


def default_target() -> Path:
    """The reference when this is the instructor's repository, else the student's labs/."""
    solutions = ROOT / "solutions"
    return solutions if solutions.is_dir() else ROOT / "labs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ops.demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--minutes", type=int, default=20, help="minutes of the recording (default %(default)s)"
    )
    parser.add_argument(
        "--target",
        choices=["solutions", "labs"],
        default=None,
        help="whose Lab 01/02/04 code runs (default: solutions/ when present, else labs/)",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.minutes > 180:
        parser.error("--minutes must be between 1 and 180 (the recording is 3 hours)")
    target = ROOT / args.target if args.target else default_target()
    t0 = time.monotonic()
    print(
        f"OpenSky platform demo: {args.minutes} minutes of the recording, code from {target.name}/"
    )
    try:
        step(1, "tables")
        create_tables(target)
        step(2, "Debezium on PostgreSQL")
        register_debezium()
        step(3, f"replay to {TOPIC_RAW}, recorded times shifted to end now")
        snapshots, offset = slice_of_recording(args.minutes)
        replay_slice(snapshots)
        step(4, "streaming job: raw_flights -> ClickHouse, PostgreSQL, Kafka, S3")
        run_streaming(target)
        step(5, f"batch job over the raw files: {RAW_GLOB}")
        write_raw_files(snapshots)
        run_batch(target)
        step(6, "change events, the seed's query, counts")
        wait_for_cdc()
        empty = print_report(seed_query(), topic_counts(), table_counts())
    except (DemoError, RuntimeError, OSError) as exc:  # ServiceUnavailable names `make up`
        print(f"\nmake demo: {exc}", file=sys.stderr)
        return 1
    print(f"\nDemo done in {time.monotonic() - t0:.0f} s (recording shifted by +{offset} s).")
    if empty:
        print(f"make demo: still empty: {', '.join(empty)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
