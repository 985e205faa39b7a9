"""Section 3 — Streaming: the reference Lab 02 pipeline, Kafka to ClickHouse.

Every run starts the job (`start_streams`, bench/stream_job.py, its own process) on throw-away
names — topic, dead-letter and processed topics, ClickHouse database, PostgreSQL table, MinIO
prefix, checkpoint folder, all `bench_*` — with the job's defaults otherwise (window, watermark,
`maxOffsetsPerTrigger`), and removes them afterwards.

- **Throughput**: the replay tool (`harness.runtime.replay.replay`, state mode, speed 0 = as fast as the
  broker takes them) publishes the scaled recording while the job runs; ClickHouse's row count is
  read every second. Sustained rate = rows that became visible between the first and the last
  visible row, divided by that time.
- **Latency**: snapshots of the scaled recording are published at a steady pace, one message per
  state vector (the replay tool's encoding); each snapshot has its own `fetch_time`, and
  ClickHouse is polled every `POLL_S` for the snapshots that are complete. Latency of a snapshot
  = the time it was complete in ClickHouse - the time its messages were produced. Measured with
  the default 10-second trigger and with the fastest trigger the job accepts (1 second: a batch
  that takes longer is followed by the next at once).
"""

from __future__ import annotations

import json
import math
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.batch import remove_prefix
from bench.cleanup import delete_topics
from bench.common import Section, log, unique
from bench.scale import (
    copies_for,
    kept_by_the_rules,
    original,
    scaled_snapshots,
    shifted_snapshot,
)
from harness.runtime.config import ROOT
from harness.runtime.services import clickhouse_client, kafka_config, pg_connect
from harness.runtime.waits import wait_quietly, wait_until

TARGET_RATE = 50_000.0
TARGET_P95_S = 12.0
DEFAULT_TRIGGER = "10 seconds"
FASTEST_TRIGGER = "1 second"
POLL_S = 0.25
READY_TIMEOUT_S = 600
WARMUP_COPY = 999  # the warm-up's snapshots: times and addresses no measured run uses
WARMUP_SNAPSHOTS = 3
WARMUP_TIMEOUT_S = 900
STALL_S = 600  # a throughput run fails when ClickHouse gains no row for this long
AGGREGATES_BUCKET = "streaming-aggregations"


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile, q in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Names:
    """One run's throw-away sinks and the job's StreamConfig fields for them."""

    run_id: str = field(default_factory=lambda: unique("stream"))

    def __post_init__(self) -> None:
        self.checkpoint = Path(tempfile.mkdtemp(prefix=f"{self.run_id}_"))

    @property
    def topic(self) -> str:
        return self.run_id

    @property
    def database(self) -> str:
        return self.run_id

    def config(self, trigger: str) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "dlq_topic": f"{self.run_id}.dlq",
            "processed_topic": f"{self.run_id}_processed",
            "clickhouse_database": self.database,
            "clickhouse_table": "flights_streaming",
            "pg_table": self.run_id,
            "aggregates_path": f"s3a://{AGGREGATES_BUCKET}/{self.run_id}/country_windows",
            "staging_path": f"s3a://{AGGREGATES_BUCKET}/{self.run_id}/staging",
            "checkpoint": str(self.checkpoint / "checkpoint"),
            "trigger": trigger,
            "starting_offsets": "earliest",
        }

    @property
    def table(self) -> str:
        return f"`{self.database}`.`flights_streaming`"

    def remove(self) -> None:
        cfg = self.config(DEFAULT_TRIGGER)
        delete_topics([cfg["topic"], cfg["dlq_topic"], cfg["processed_topic"]])
        try:
            clickhouse_client().command(f"DROP DATABASE IF EXISTS `{self.database}`")
        except Exception as exc:
            log(f"could not drop {self.database}: {exc}")
        try:
            with pg_connect() as conn:
                conn.execute(f'DROP TABLE IF EXISTS "{self.run_id}"')
                conn.execute(f'DROP TABLE IF EXISTS "{self.run_id}_staging"')
        except Exception as exc:
            log(f"could not drop the PostgreSQL table {self.run_id}: {exc}")
        try:
            remove_prefix(AGGREGATES_BUCKET, self.run_id)
        except Exception as exc:
            log(f"could not remove {AGGREGATES_BUCKET}/{self.run_id}: {exc}")
        shutil.rmtree(self.checkpoint, ignore_errors=True)


class Pipeline:
    """bench/stream_job.py in a child process: `ready()` after the queries start, `stop()`."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.stderr = tempfile.NamedTemporaryFile(prefix="bench_stream_", suffix=".log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.stream_job", json.dumps(config)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.ready_info: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self._ready = threading.Event()
        self._done = threading.Event()
        self._answers: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("READY "):
                self.ready_info = json.loads(line.split(" ", 1)[1])
                self._ready.set()
            elif line.startswith("RESULT "):
                self.result = json.loads(line.split(" ", 1)[1])
                self._done.set()
            elif line.startswith(("STATUS", "MARKED")):
                self._answers.put(line)
        self._ready.set()
        self._done.set()
        self._answers.put("")

    def _ask(self, command: str, timeout: float = 120) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            answer = ""
        if not answer:
            raise RuntimeError(f"the Lab 02 job did not answer {command!r}:\n" + self._log_tail())
        return answer

    def status(self) -> dict[str, Any]:
        return json.loads(self._ask("status").split(" ", 1)[1])

    def mark(self) -> None:
        self._ask("mark")

    def _log_tail(self) -> str:
        try:
            return Path(self.stderr.name).read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def ready(self) -> dict[str, Any]:
        self._ready.wait(READY_TIMEOUT_S)
        if self.ready_info is None:
            self.kill()
            raise RuntimeError("the Lab 02 job did not start:\n" + self._log_tail())
        return self.ready_info

    def stop(self, timeout: float = 300) -> dict[str, Any]:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self._done.wait(timeout)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.result is None:
            raise RuntimeError("the Lab 02 job did not report:\n" + self._log_tail())
        self.stderr.close()
        return self.result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@contextmanager
def running(names: Names, config: dict[str, Any]) -> Iterator[Pipeline]:
    """The job started with `config` on `names`' sinks; killed when the block fails, and the sinks
    removed afterwards either way."""
    pipeline = Pipeline(config)
    try:
        yield pipeline
    except BaseException:
        pipeline.kill()
        raise
    finally:
        names.remove()


def _snapshots_for(rows: int) -> list[dict[str, Any]]:
    """Snapshots of the scaled recording holding at least `rows` state vectors."""
    out, total = [], 0
    for snapshot in scaled_snapshots(copies_for(rows)):
        out.append(snapshot)
        total += len(snapshot["states"] or [])
        if total >= rows:
            break
    return kept_by_the_rules(out)


def _later_snapshots(count: int) -> list[dict[str, Any]]:
    """`count` snapshots from copy 1 of the scaled recording on (copy 0 is the original)."""
    snaps = original()
    return kept_by_the_rules(
        [shifted_snapshot(snaps[i % len(snaps)], 1 + i // len(snaps)) for i in range(count)]
    )


# ------------------------------------------------------------------ warm-up
def warm_up(pipeline: Pipeline, names: Names) -> int:
    """Publish a few snapshots and wait until both queries have processed them and ClickHouse
    shows them: the first micro-batches (JIT, Python workers, table creation) are not measured."""
    from harness.runtime.replay import replay

    snaps = kept_by_the_rules(
        [shifted_snapshot(s, WARMUP_COPY) for s in original()[:WARMUP_SNAPSHOTS]]
    )
    rows = sum(len(s["states"] or []) for s in snaps)
    replay(topic=names.topic, speed=0, mode="state", snapshots=snaps)
    client = clickhouse_client()

    def warmed_up() -> bool:
        status = pipeline.status()
        if all(q["batches_with_input"] for q in status.values()):
            if int(client.command(f"SELECT count() FROM {names.table}")) >= rows:
                return True
        if not all(q["active"] for q in status.values()):
            raise RuntimeError(f"a query of the Lab 02 job stopped during the warm-up: {status}")
        return False

    wait_until(
        warmed_up, "the Lab 02 job processing the warm-up", WARMUP_TIMEOUT_S, 2, RuntimeError
    )
    pipeline.mark()
    return rows


# ------------------------------------------------------------------ throughput
def throughput_run(rows: int, trigger: str, **variant: Any) -> dict[str, Any]:
    """The job's capacity: the backlog is in Kafka before the job starts (so the producer cannot
    be the limit), the job works it off in batches of `max_offsets_per_trigger`; ClickHouse's
    row count is read every 0.5 s. `variant`: more StreamConfig fields, or the bench's own keys
    (`_clickhouse`, `_master`, `_executors`; see bench/stream_job.py)."""
    from harness.runtime.replay import replay

    names = Names()
    snapshots = _snapshots_for(rows)
    total = sum(len(s["states"] or []) for s in snapshots)
    report = replay(topic=names.topic, speed=0, mode="state", snapshots=snapshots)
    with running(names, {**names.config(trigger), **variant}) as pipeline:
        info = pipeline.ready()
        t0 = time.time()
        client = clickhouse_client()
        samples: list[tuple[float, int]] = []
        last = {"change": time.time(), "count": -1}

        def all_landed() -> bool:
            try:
                count = int(client.command(f"SELECT count() FROM {names.table}"))
            except Exception:  # the table appears with the first batch
                count = 0
            now = time.time()
            samples.append((now, count))
            if count != last["count"]:
                last.update(change=now, count=count)
            if count < total and now - last["change"] > STALL_S:
                raise RuntimeError(
                    f"no progress for {STALL_S} s: {count} of {total} rows in ClickHouse"
                )
            return count >= total

        # No bound on the whole run (a slow variant may take long): a stall ends it instead.
        wait_until(all_landed, f"{total} rows in ClickHouse", math.inf, every=0.5)
        spark = pipeline.stop()
    first = next((t, c) for t, c in samples if c > 0)
    done = samples[-1][0]
    # Rows that became visible after the first batch landed (that one carries Spark's warm-up),
    # over the time they took; with one batch only there is no such span.
    sustained = (total - first[1]) / (done - first[0]) if first[1] < total else math.nan
    return {
        "rows": total,
        "sustained_rows_per_s": sustained,
        "end_to_end_rows_per_s": total / (done - t0),
        "produce_rows_per_s": report.messages / report.seconds if report.seconds else math.nan,
        "first_rows_after_s": first[0] - t0,
        "spark": spark,
        "ready": info,
    }


# ------------------------------------------------------------------ latency
def latency_run(trigger: str, seconds: float, snapshots_per_s: float) -> dict[str, Any]:
    from confluent_kafka import Producer

    from harness.runtime.replay import messages_for

    names = Names()
    count = int(seconds * snapshots_per_s)
    snapshots = _later_snapshots(count)
    expected = {s["time"]: len(s["states"] or []) for s in snapshots if s["states"]}
    produced_at: dict[int, float] = {}
    visible_at: dict[int, float] = {}
    with running(names, names.config(trigger)) as pipeline:
        info = pipeline.ready()
        warm_up(pipeline, names)
        client = clickhouse_client()
        producer = Producer(kafka_config(**{"linger.ms": 10, "acks": "all"}))
        stop_polling = threading.Event()
        errors: list[str] = []

        lock = threading.Lock()

        def poll() -> None:
            while not stop_polling.is_set():
                try:
                    with lock:
                        pending = [t for t in produced_at if t not in visible_at]
                    if pending:
                        rows = client.query(
                            f"SELECT toUnixTimestamp(fetch_time), count() FROM {names.table} "
                            f"WHERE fetch_time >= toDateTime({min(pending)}, 'UTC') GROUP BY 1"
                        ).result_rows
                        now = time.time()
                        for t, n in rows:
                            if t in produced_at and t not in visible_at and n >= expected[t]:
                                visible_at[t] = now
                except Exception as exc:  # keep polling; report the first errors
                    if len(errors) < 3:
                        errors.append(str(exc))
                stop_polling.wait(POLL_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        start = time.time()
        for i, snapshot in enumerate(snapshots):
            due = start + i / snapshots_per_s
            while (wait := due - time.time()) > 0:
                producer.poll(min(wait, 0.05))
            if not snapshot["states"]:
                continue
            for key, value in messages_for(snapshot, "state"):
                producer.produce(names.topic, value=value, key=key)
            with lock:
                produced_at[snapshot["time"]] = time.time()
            producer.poll(0)
        producer.flush(60)
        wait_quietly(
            lambda: len(visible_at) >= len(produced_at), interval_s(trigger) + 120, every=0.5
        )
        stop_polling.set()
        poller.join(timeout=10)
        spark = pipeline.stop()
    latencies = [visible_at[t] - produced_at[t] for t in produced_at if t in visible_at]
    missing = len(produced_at) - len(latencies)
    if not latencies:
        raise RuntimeError(f"no snapshot became visible in ClickHouse ({errors[:1]})")
    return {
        "snapshots": len(produced_at),
        "rows": sum(expected[t] for t in produced_at),
        "not_visible": missing,
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies),
        "spark": spark,
        "ready": info,
        "poll_errors": errors,
    }


def interval_s(trigger: str) -> float:
    number, unit = trigger.split()
    return float(number) * (60 if unit.startswith("minute") else 1)


# ------------------------------------------------------------------ the section
def _spark_table(result: dict[str, Any]) -> dict[str, Any]:
    spark = result["spark"]
    rows_q, agg_q = spark["rows_query"], spark["aggregates_query"]
    sinks = {k: round(sum(v) / len(v), 3) for k, v in spark["sink_seconds"].items() if v}
    return {
        "rows query batches": rows_q.get("batches"),
        "state vectors per batch": round(result["rows"] / rows_q["batches"])
        if rows_q.get("batches")
        else None,
        "Spark numInputRows per batch": rows_q.get("rows_per_batch"),
        "rows query mean ms": rows_q.get("mean_ms"),
        "aggregates query mean ms": agg_q.get("mean_ms"),
        "mean s per call (foreachBatch)": sinks,
    }


def limits(result: dict[str, Any], sustained: float | None, p95: float | None) -> list[str]:
    """What the measured micro-batches say about a missed target (from the last throughput run)."""
    if not result:
        return []
    spark = result["spark"]
    rows_q, agg_q = spark["rows_query"], spark["aggregates_query"]
    sinks = {k: sum(v) / len(v) for k, v in spark["sink_seconds"].items() if v}
    notes = []
    if sustained is not None and sustained < TARGET_RATE and rows_q.get("batches"):
        batch_s = sinks.get("process_rows_batch", 0.0)
        writes = {
            k: sinks.get(k, 0.0) for k in ("write_clickhouse", "write_postgres", "write_kafka")
        }
        per_batch = result["rows"] / rows_q["batches"]
        notes.append(
            f"Throughput target missed ({sustained:,.0f} < {TARGET_RATE:,.0f} rows/s). In the last "
            f"throughput run a micro-batch of the rows query carried {per_batch:,.0f} state "
            f"vectors and took {rows_q['mean_ms'].get('triggerExecution', 0) / 1000:.1f} s; its "
            f"foreachBatch function took {batch_s:.1f} s: ClickHouse "
            f"{writes['write_clickhouse']:.2f} s (Parquet to MinIO + INSERT ... FROM s3()), "
            f"PostgreSQL {writes['write_postgres']:.2f} s (COPY per partition + upsert), Kafka "
            f"{writes['write_kafka']:.2f} s per call (dead letters and processed, from the "
            f"persisted batch); the other {batch_s - sum(writes.values()) - writes['write_kafka']:.1f} s "
            "are the parse (once, into the cache), the counts and the duplicate check. The "
            "aggregates query reads and parses the same messages again: "
            f"{agg_q.get('mean_ms', {}).get('triggerExecution', 0) / 1000:.1f} s per batch "
            f"(write_aggregates {sinks.get('write_aggregates', 0):.1f} s), on the same 2 cores."
        )
    if p95 is not None and p95 > TARGET_P95_S:
        notes.append(
            f"Latency target missed (p95 {p95:.1f} s > {TARGET_P95_S:g} s with the 10 s trigger): "
            "a state vector waits for the next trigger (up to 10 s), then for its micro-batch to "
            "finish; when a batch takes longer than the trigger interval, the next one starts "
            "late and waits add up (see the per-batch times of the latency runs above)."
        )
    return notes


# The throughput variants: the reference on local[2]; ClickHouse by per-partition inserts instead
# of Parquet + s3(); the reference on the standalone cluster with two one-core executors.
VARIANTS = {
    "local[2], ClickHouse via Parquet + s3() (reference)": {},
    "local[2], ClickHouse by per-partition inserts": {"_clickhouse": "partitions"},
    "local[2], rows query only (no second parse, no window aggregates)": {"_aggregates": False},
    "standalone cluster, 2 executors x 1 core": {"_master": "cluster", "_executors": 2},
}
BATCH_MESSAGES = 100_000  # maxOffsetsPerTrigger of the throughput runs: several full batches


def run(section: Section, options: Any) -> None:
    from harness.runtime.config import endpoints

    quick = options.quick
    rows = 60_000 if quick else 400_000
    t_repeats = options.repeats_or(1, quick=1)
    l_repeats = options.repeats_or(2, quick=1)
    seconds = {DEFAULT_TRIGGER: 15 if quick else 60, FASTEST_TRIGGER: 10 if quick else 40}
    pace = 5.0  # snapshots per second in the latency runs (about 260 state vectors/s)
    batch = 20_000 if quick else BATCH_MESSAGES

    produce = section.figure("replay_rows_per_s", "replay tool publishing rate (speed 0)", "rows/s")
    start = section.figure("spark_start_s", "job start: Spark session", "s")
    streams = section.figure("start_streams_s", "job start: start_streams()", "s")
    throughput: dict[str, Any] = {}
    reference_rate = None
    for v, (label, variant) in enumerate(VARIANTS.items()):
        if variant.get("_master") == "cluster":
            variant = {**variant, "_master": endpoints().spark_master_url}
        sustained = section.figure(
            "sustained_rows_per_s" if v == 0 else f"sustained_rows_per_s_variant_{v}",
            f"sustained state vectors/s Kafka -> ClickHouse + PostgreSQL + Kafka, {label}",
            "rows/s",
            target=(">=", TARGET_RATE) if v == 0 else None,
        )
        for i in range(t_repeats):
            try:
                result = throughput_run(
                    rows, FASTEST_TRIGGER, max_offsets_per_trigger=batch, **variant
                )
            except Exception as exc:  # one variant failing must not hide the others
                section.note(f"{label}: the throughput run failed: {str(exc)[:500]}")
                log(f"streaming throughput {label}: failed: {exc}")
                break
            if math.isnan(result["sustained_rows_per_s"]):
                section.note(f"{label}: the run fit in one micro-batch: sustained = whole backlog")
                result["sustained_rows_per_s"] = result["end_to_end_rows_per_s"]
            sustained.add(result["sustained_rows_per_s"])
            produce.add(result["produce_rows_per_s"])
            start.add(result["ready"]["spark_start_s"])
            streams.add(result["ready"]["start_streams_s"])
            section.tables[f"throughput run: {label} (last run)"] = _spark_table(result)
            if v == 0:
                throughput = result
            log(
                f"streaming throughput {label} {i + 1}/{t_repeats}: {result['rows']:,} rows, "
                f"sustained {result['sustained_rows_per_s']:,.0f} rows/s"
            )
        if v == 0:
            reference_rate = sustained.median
    p95_default: float | None = None
    for trigger in (DEFAULT_TRIGGER, FASTEST_TRIGGER):
        tag = trigger.split()[0] + "s"
        p50 = section.figure(f"latency_p50_s_trigger_{tag}", f"latency p50, trigger {trigger}", "s")
        p95 = section.figure(
            f"latency_p95_s_trigger_{tag}",
            f"latency p95, trigger {trigger}",
            "s",
            target=("<=", TARGET_P95_S) if trigger == DEFAULT_TRIGGER else None,
        )
        for i in range(l_repeats):
            result = latency_run(trigger, seconds[trigger], pace)
            p50.add(result["p50_s"])
            p95.add(result["p95_s"])
            start.add(result["ready"]["spark_start_s"])
            streams.add(result["ready"]["start_streams_s"])
            section.tables[f"latency_run_trigger_{tag} (last run)"] = {
                "snapshots": result["snapshots"],
                "state vectors": result["rows"],
                "not visible in time": result["not_visible"],
                "max latency s": round(result["max_s"], 2),
                **_spark_table(result),
            }
            if trigger == DEFAULT_TRIGGER:
                p95_default = p95.median
            log(
                f"latency run {trigger} {i + 1}/{l_repeats}: p50 {result['p50_s']:.2f} s, "
                f"p95 {result['p95_s']:.2f} s ({result['not_visible']} not visible)"
            )
    section.notes += limits(throughput, reference_rate, p95_default)
    if reference_rate:
        section.note(
            f"Headroom: OpenSky's whole network is about 1,000 state vectors/s (10,000 aircraft "
            f"every 10 s); the reference job on local[2] sustains {reference_rate:,.0f}/s, "
            f"{reference_rate / 1000:,.1f} x that."
        )
    section.tables["workload"] = {
        "throughput rows per run": rows,
        "throughput maxOffsetsPerTrigger": batch,
        "throughput runs per variant": t_repeats,
        "latency runs per trigger": l_repeats,
        "latency pace": f"{pace:g} snapshots/s, one message per state vector",
        "latency seconds per run": seconds,
        "poll interval s": POLL_S,
    }
    section.note(
        "The job runs with its defaults (maxOffsetsPerTrigger, window, watermark) and all its "
        "sinks: ClickHouse, PostgreSQL upsert, Kafka processed and dead-letter topics, and the "
        "window aggregates query writing Parquet to MinIO, so the figures are those of the "
        "reference pipeline, not of a Kafka -> ClickHouse copy alone. Latencies carry up to "
        f"{POLL_S} s of polling granularity."
    )
