"""`make demo`: the whole OpenSky platform this course builds, running at once on the shipped recording.

    python -m harness.ops.demo                 # 20 minutes of the recording, shifted to end now
    python -m harness.ops.demo --minutes 5     # a smaller slice
    python -m harness.ops.demo --target labs   # your own Lab 01/02/04/09 code instead of the reference
    python -m harness.ops.demo --no-dashboard  # stop after the checks (CI)

What runs, in the platform's order and under its own names (no throw-away names here):

1. tables: ClickHouse `opensky.flights_streaming`, `flights_batch`, `country_statistics_mv` (Lab 04),
   PostgreSQL `processed_flights` and `flight_statistics` (their one definition, harness.runtime.schema);
2. Debezium: `scripts/setup_debezium.sh` registers the connector on both PostgreSQL tables;
3. replay: a slice of the recording to `raw_flights`, one message per state vector, its times
   shifted so that it ends now (`python -m harness.runtime.replay --shift-to-now`), with an
   emergency planted in the copy that is replayed (the recording file is never changed): one
   aircraft squawks 7700 from the middle of the slice to its end, another descends faster than
   the rapid-descent rule allows for a few state vectors and then levels off;
4. the streaming and the batch job side by side, each its own Spark application, as they run on
   the platform:
   - the streaming job (Lab 02, `--trigger availableNow`): raw_flights -> ClickHouse, PostgreSQL,
     Kafka `processed_flights`, S3 `streaming-aggregations`, dead letters to `raw_flights.dlq`;
   - the batch job (Lab 01, the platform's `batch_processor.py s3 s3a://raw-data/flights/*.json`)
     over the same slice written as raw files to `raw-data/flights/`: Parquet, ClickHouse and
     PostgreSQL `flight_statistics`;
5. the alerts job (Lab 09, `--trigger availableNow`) over this run's messages of raw_flights:
   alert episodes to the Kafka topic `flight_alerts` and the ClickHouse table `opensky.flight_alerts`;
6. the platform's ClickHouse query, run verbatim, the count of every topic, table and bucket, the
   planted episodes checked (each exactly once in `flight_alerts` and in `opensky.flight_alerts`,
   open or closed as planted), and the open alerts;
7. the live dashboard (Lab 09, as `make dashboard` serves it) on http://127.0.0.1:$DASHBOARD_PORT,
   left running in the background: `make demo-stop` (or `make down`) stops it.

It exits 1 naming what stayed empty or which planted episode went wrong. The streaming job keeps its
checkpoint in `.stack/demo/`, so a second run processes only the new slice (delete that folder to
start over). The alerts job starts afresh on every run, at this run's first message: episodes that
an earlier run left open could never close, so the demo empties `opensky.flight_alerts` first.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
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
from harness.runtime.schema import STATE_FIELD_NAMES
from harness.runtime.waits import wait_quietly

# The platform's ClickHouse query, verbatim ("flights per country in the last hour").
PLATFORM_QUERY = """SELECT
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
ALERTS_CHECKPOINT = STACK_DIR / "demo" / "checkpoints" / "alerts"
ALERTS_TOPIC = "flight_alerts"  # Lab 09's names: the Kafka topic and the ClickHouse table
ALERTS_TABLE = f"{CLICKHOUSE_DB}.flight_alerts"
TOPICS = (
    TOPIC_RAW,
    TOPIC_RAW_DLQ,
    TOPIC_PROCESSED,
    CDC_TOPIC_PROCESSED,
    CDC_TOPIC_STATISTICS,
    ALERTS_TOPIC,
)
CLICKHOUSE_TABLES = ("flights_streaming", "flights_batch", "country_statistics_mv", "flight_alerts")
PG_TABLES = ("public.processed_flights", "public.flight_statistics")
# May stay empty on a clean recording: nothing to dead-letter.
MAY_BE_EMPTY = {TOPIC_RAW_DLQ}
JOB_TIMEOUT_S = 900
CDC_WAIT_S = 90
KAFKA_READ_S = 60
STEPS = 7

# The planted emergency. Squawk 7700 (general emergency) from the middle of the slice to its end, at
# most this long: an episode still open when the replay ends. A descent this fast (m/s, about
# 4,900 ft/min) for one state vector more than the rule needs, then level: an episode that closes.
EMERGENCY_SQUAWK = "7700"
EMERGENCY_MAX_SNAPSHOTS = 3 * SNAPSHOTS_PER_MINUTE
DESCENT_RATE = -25.0
FIELD = {name: i for i, name in enumerate(STATE_FIELD_NAMES)}


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and how to look closer."""


def step(number: int, text: str) -> None:
    print(f"\n[{number}/{STEPS}] {text}", flush=True)


def _module(target: Path, lab: str, name: str):
    """Import `<target>/<lab>/<name>.py` (the reference or your labs/ copy) by its path."""
    import importlib.util

    path = target / lab / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"demo_{lab}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it is executed
    spec.loader.exec_module(module)
    return module


def _job_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


@dataclass
class Job:
    """A job started as its own process (its own Spark session), its output kept until it ends."""

    what: str
    argv: list[str]
    timeout: float = JOB_TIMEOUT_S
    ended: float | None = None  # when run_side_by_side saw it end (else: when finish() reaps it)

    def start(self) -> Job:
        self.t0 = time.monotonic()
        self.out = tempfile.TemporaryFile("w+")
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=_job_env(), stdout=self.out, stderr=self.err, text=True
        )
        return self

    def finish(self) -> str:
        """Wait for the job; print the end of its output indented; DemoError if it failed."""
        try:
            self.proc.wait(timeout=max(1.0, self.timeout - (time.monotonic() - self.t0)))
        except subprocess.TimeoutExpired as exc:
            self.proc.kill()
            self.proc.wait()
            raise DemoError(f"{self.what} did not finish within {self.timeout:.0f} s") from exc
        ended = self.ended or time.monotonic()
        self.out.seek(0)
        self.err.seek(0)
        stdout, stderr = self.out.read(), self.err.read()
        print(f"    {self.what}:")
        for line in [ln for ln in stdout.splitlines() if ln.strip()][-8:]:
            print(f"      {line}")
        if self.proc.returncode != 0:
            raise DemoError(
                f"{self.what} failed (exit {self.proc.returncode}):\n{_cause(stderr)}\n"
                f"command: {' '.join(self.argv)}"
            )
        print(f"      ({self.what}: {ended - self.t0:.0f} s)")
        return stdout


def _cause(stderr: str, most: int = 3000) -> str:
    """What to show of a failed job's stderr: its first error lines (a Spark query's exception is
    followed by pages of plan), then its end."""
    errors = [ln for ln in stderr.splitlines() if "Error" in ln or "Exception" in ln][:12]
    head = "\n".join(errors)[: most // 2]
    return (head + "\n...\n" if head else "") + stderr[-(most - len(head)) :]


def run_side_by_side(jobs: list[Job]) -> None:
    """Start the jobs at once (they are independent of each other: the streaming job reads
    raw_flights with its own checkpoint, the batch job the raw files), wait until every one has
    ended, then show each in turn; the first failure is raised once all have ended."""
    for job in jobs:
        job.start()
    running = list(jobs)

    def all_ended() -> bool:
        for job in list(running):
            if job.proc.poll() is not None or time.monotonic() - job.t0 > job.timeout:
                job.ended = time.monotonic()
                running.remove(job)
        return not running

    # Each job's own timeout ends it; the wait's bound only has to be later than all of them.
    wait_quietly(all_ended, max(job.timeout for job in jobs) + 60, every=0.5)
    failures: list[DemoError] = []
    for job in jobs:
        try:
            job.finish()
        except DemoError as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%H:%M:%S UTC")


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
    print(f"    ClickHouse {CLICKHOUSE_DB}: {', '.join(CLICKHOUSE_TABLES[:3])} (Lab 04)")
    for table, what in ensure_tables(list(PG_TABLES), wait_s=0):
        print(f"    PostgreSQL {table}: {what}")


def register_debezium() -> None:
    argv = ["bash", str(ROOT / "scripts" / "setup_debezium.sh")]
    Job("setup_debezium.sh", argv, timeout=300).start().finish()


def slice_of_recording(minutes: int) -> tuple[list[dict[str, Any]], int]:
    """The first `minutes` of the recording with its times shifted to end now (within the last
    minute: at half past the minute), and the shift.

    The streaming job's one-minute windows close once its watermark, two minutes behind the newest
    event, passes their end. Ending the slice at a random second left no window closed when its
    first snapshot fell in the last seconds of a minute (the bucket streaming-aggregations then
    stayed empty); ending it at :30 gives the first window at least 20 s of data, closed."""
    from harness.runtime.data import load_snapshots
    from harness.runtime.replay import offset_to_now, shift_times

    snapshots = load_snapshots()[: max(1, minutes * SNAPSHOTS_PER_MINUTE)]
    now = time.time()
    offset = offset_to_now(snapshots, now - (now - 30) % 60)
    return [shift_times(s, offset) for s in snapshots], offset


# ------------------------------------------------------------------ the planted emergency
@dataclass(frozen=True)
class Planted:
    """An alert episode planted in the replayed slice: whose, which rule, when (unix s)."""

    icao24: str
    callsign: str
    origin_country: str
    rule: str
    first: int  # last_contact of the first planted state vector
    last: int  # last_contact of the last planted state vector
    closes: bool  # the episode ends inside the slice (else it is still open at its end)

    def describe(self) -> str:
        what = {
            "rapid_descent": f"a descent at {DESCENT_RATE:g} m/s",
            f"squawk_{EMERGENCY_SQUAWK}": f"squawk {EMERGENCY_SQUAWK} (general emergency)",
        }[self.rule]
        until = f"to {_utc(self.last)}, then level" if self.closes else "to the end of the slice"
        who = f"{self.icao24} ({self.callsign.strip() or 'no callsign'}, {self.origin_country})"
        return f"{what} on {who} from {_utc(self.first)} {until}"


def _tracks(snapshots: list[dict[str, Any]]) -> dict[str, dict[int, list[Any]]]:
    """{icao24: {snapshot index: its state vector}} of a slice."""
    tracks: dict[str, dict[int, list[Any]]] = defaultdict(dict)
    for index, snapshot in enumerate(snapshots):
        for state in snapshot["states"]:
            tracks[state[FIELD["icao24"]]][index] = state
    return tracks


def steady_aircraft(
    snapshots: list[dict[str, Any]], first: int, last: int, descent_rate: float
) -> list[str]:
    """Aircraft (sorted icao24s) that are in every snapshot from index `first` to `last`, airborne,
    heard of anew in each (last_contact rises), and with no emergency of their own in the slice."""
    lc, rate, squawk = FIELD["last_contact"], FIELD["vertical_rate"], FIELD["squawk"]

    def steady(track: dict[int, list[Any]]) -> bool:
        span = [track.get(i) for i in range(first, last + 1)]
        if any(s is None or s[FIELD["on_ground"]] is not False for s in span):
            return False
        if any(b[lc] <= a[lc] for a, b in zip(span, span[1:], strict=False)):
            return False
        return not any(
            s[squawk] == EMERGENCY_SQUAWK or (s[rate] is not None and s[rate] < descent_rate)
            for s in track.values()
        )

    return sorted(icao24 for icao24, track in _tracks(snapshots).items() if steady(track))


def plant_emergencies(
    snapshots: list[dict[str, Any]], descent_rate: float, descent_count: int
) -> tuple[list[dict[str, Any]], list[Planted]]:
    """A copy of `snapshots` with two planted episodes (squawk 7700 until the end; a rapid descent
    of `descent_count` + 1 state vectors below `descent_rate`, then level), and what was planted."""
    n = len(snapshots)
    squawk_from = n - min(n // 2, EMERGENCY_MAX_SNAPSHOTS)
    descent_from = n // 4
    descent_to = descent_from + descent_count  # inclusive: descent_count + 1 vectors below the rate
    if descent_to + 1 >= n or squawk_from >= n:
        raise DemoError(f"a slice of {n} snapshots is too short to plant an emergency")
    squawkers = steady_aircraft(snapshots, squawk_from, n - 1, descent_rate)
    descenders = [
        a
        for a in steady_aircraft(snapshots, descent_from, descent_to + 1, descent_rate)
        if a not in squawkers[:1]
    ]
    if not squawkers or not descenders:
        raise DemoError("no aircraft of the slice flies steadily enough to plant an emergency in")
    planted_squawk, planted_descent = squawkers[0], descenders[0]
    tracks = _tracks(snapshots)
    copy = [{**s, "states": [list(state) for state in s["states"]]} for s in snapshots]

    def state_at(icao24: str, index: int) -> list[Any]:
        return next(s for s in copy[index]["states"] if s[FIELD["icao24"]] == icao24)

    for index in range(squawk_from, n):
        state_at(planted_squawk, index)[FIELD["squawk"]] = EMERGENCY_SQUAWK
    for index in range(descent_from, descent_to + 1):
        state_at(planted_descent, index)[FIELD["vertical_rate"]] = DESCENT_RATE
    level = state_at(planted_descent, descent_to + 1)
    if level[FIELD["vertical_rate"]] is None or level[FIELD["vertical_rate"]] < descent_rate:
        level[FIELD["vertical_rate"]] = 0.0

    def planted(icao24: str, rule: str, first: int, last: int, closes: bool) -> Planted:
        track = tracks[icao24]
        return Planted(
            icao24=icao24,
            callsign=track[last][FIELD["callsign"]] or "",
            origin_country=track[last][FIELD["origin_country"]],
            rule=rule,
            first=track[first][FIELD["last_contact"]],
            last=track[last][FIELD["last_contact"]],
            closes=closes,
        )

    return copy, [
        planted(planted_squawk, f"squawk_{EMERGENCY_SQUAWK}", squawk_from, n - 1, False),
        planted(planted_descent, "rapid_descent", descent_from, descent_to, True),
    ]


# ------------------------------------------------------------------ replay and jobs
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


def streaming_job(target: Path) -> Job:
    script = target / "lab02_streaming" / "streaming_processor.py"
    argv = [sys.executable, str(script), "--trigger", "availableNow"]
    return Job("streaming job (Lab 02)", argv + ["--checkpoint", str(CHECKPOINT)])


def alerts_job(target: Path, since: dict[int, int]) -> Job:
    """Lab 09's job over the messages of raw_flights from offsets `since` on, from a fresh
    checkpoint and a table emptied of the episodes an earlier run left open."""
    from harness.runtime.services import clickhouse_client

    shutil.rmtree(ALERTS_CHECKPOINT, ignore_errors=True)
    client = clickhouse_client()
    try:
        client.command(f"TRUNCATE TABLE IF EXISTS {ALERTS_TABLE}")
    finally:
        client.close()
    start = json.dumps({TOPIC_RAW: {str(p): o for p, o in since.items()}}) if since else "earliest"
    script = target / "lab09_alerts" / "alerts.py"
    argv = [sys.executable, str(script), "--topic", TOPIC_RAW, "--trigger", "availableNow"]
    argv += ["--checkpoint", str(ALERTS_CHECKPOINT), "--starting-offsets", start]
    return Job("alerts job (Lab 09)", argv)


def batch_job(target: Path) -> Job:
    script = target / "lab01_batch" / "batch_processor.py"
    return Job("batch job (Lab 01)", [sys.executable, str(script), "s3", RAW_GLOB])


# ------------------------------------------------------------------ what the platform holds
def _consumer():
    from confluent_kafka import Consumer

    from harness.runtime.services import kafka_config

    return Consumer(
        kafka_config(**{"group.id": f"demo-{os.getpid()}", "enable.auto.commit": False})
    )


def watermarks(topic: str) -> dict[int, tuple[int, int]]:
    """{partition: (low, high)} of `topic` ({} when it does not exist)."""
    from confluent_kafka import TopicPartition

    consumer = _consumer()
    try:
        meta = consumer.list_topics(timeout=15).topics.get(topic)
        partitions = sorted(meta.partitions) if meta is not None else []
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in partitions
        }
    finally:
        consumer.close()


def end_offsets(topic: str) -> dict[int, int]:
    """{partition: the offset the next message will get} ({} when the topic does not exist)."""
    return {p: high for p, (_, high) in watermarks(topic).items()}


def topic_counts() -> dict[str, int]:
    """Messages in each platform topic (high minus low watermark, over its partitions)."""
    return {t: sum(high - low for low, high in watermarks(t).values()) for t in TOPICS}


def wait_for_cdc(timeout: float = CDC_WAIT_S) -> None:
    """Debezium's topics fill shortly after the jobs wrote PostgreSQL: wait, bounded (the step
    that reads the topics then says what is missing)."""

    def both_filled() -> bool:
        counts = topic_counts()
        return bool(counts[CDC_TOPIC_PROCESSED] and counts[CDC_TOPIC_STATISTICS])

    wait_quietly(both_filled, timeout, every=2)


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


def platform_query() -> list[tuple]:
    from harness.runtime.services import clickhouse_client

    client = clickhouse_client(database=CLICKHOUSE_DB)
    try:
        return [tuple(row) for row in client.query(PLATFORM_QUERY).result_rows]
    finally:
        client.close()


def print_report(rows: list[tuple], topics: dict[str, int], tables: dict[str, int]) -> list[str]:
    """Print the platform query's answer and every count; return the names that stayed empty."""
    print("\nThe platform's ClickHouse query, verbatim:\n")
    print("    " + PLATFORM_QUERY.replace("\n", "\n    "))
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
        empty.append("the platform query's answer")
    return empty


# ------------------------------------------------------------------ alerts
def episode_rows(planted: list[Planted]) -> list[tuple]:
    """(icao24, rule, alert_id, status, opened_at) of the planted aircraft's episodes of the
    planted rules, as `opensky.flight_alerts` keeps them (read with FINAL: each episode once)."""
    from harness.runtime.services import clickhouse_client

    client = clickhouse_client()
    try:
        result = client.query(
            f"SELECT icao24, rule, alert_id, status, toUnixTimestamp(opened_at) "
            f"FROM {ALERTS_TABLE} FINAL WHERE (icao24, rule) IN {{pairs:Array(Tuple(String, String))}} "
            "ORDER BY alert_id",
            parameters={"pairs": [(p.icao24, p.rule) for p in planted]},
        )
        return [tuple(row) for row in result.result_rows]
    finally:
        client.close()


def check_planted(planted: list[Planted], alert_messages: list[Any]) -> list[str]:
    """Print how each planted episode came out of the alerts job; return what went wrong.

    Expected for each: exactly one episode in `opensky.flight_alerts` (FINAL), opened within the
    planted stretch, closed or still open as planted; in `flight_alerts`, exactly one `opened`
    event of it and, when it closed, exactly one `closed` event, both with that episode's id.
    """
    events = [json.loads(m.value()) for m in alert_messages]
    rows = episode_rows(planted)
    problems = []
    print("\nThe planted emergency, as the alerts job reported it:")
    for p in planted:
        mine = [r for r in rows if (r[0], r[1]) == (p.icao24, p.rule)]
        print(f"    planted: {p.describe()}")
        if len(mine) != 1:
            problems.append(
                f"{p.rule} of {p.icao24}: expected exactly one episode in {ALERTS_TABLE}, "
                f"found {len(mine)}: {[r[2] for r in mine]}"
            )
            continue
        _, _, alert_id, status, opened_at = mine[0]
        wanted_status = "closed" if p.closes else "opened"
        kinds = sorted(e["event"] for e in events if e["alert_id"] == alert_id)
        wanted_kinds = ["closed", "opened"] if p.closes else ["opened"]
        print(
            f"    {ALERTS_TABLE}: 1 episode, {alert_id}, {status}; "
            f"Kafka {ALERTS_TOPIC}: {', '.join(kinds) or 'no event'}"
        )
        if status != wanted_status or not p.first <= opened_at <= p.last:
            problems.append(
                f"{p.rule} of {p.icao24}: expected an episode opened between {_utc(p.first)} and "
                f"{_utc(p.last)}, {wanted_status}; {ALERTS_TABLE} has {alert_id}, {status}"
            )
        if kinds != wanted_kinds:
            problems.append(
                f"{p.rule} of {p.icao24}: expected the events {wanted_kinds} of {alert_id} in "
                f"Kafka {ALERTS_TOPIC}, once each; found {kinds}"
            )
    return problems


def print_open_alerts(target: Path, planted: list[Planted], most: int = 12) -> list[str]:
    """Print the open alerts the dashboard shows (its own `open_alerts`), the planted ones first;
    return their ids."""
    from harness.runtime.services import clickhouse_client

    dashboard = _module(target, "lab09_alerts", "dashboard")
    client = clickhouse_client(CLICKHOUSE_DB)
    try:
        alerts = dashboard.open_alerts(client, dashboard.DashboardConfig())
    finally:
        client.close()
    ours = {(p.icao24, p.rule) for p in planted}
    rows = alerts.to_dict("records")
    rows.sort(key=lambda row: (row["icao24"], row["rule"]) not in ours)  # stable: newest first
    print(f"\nOpen alerts ({len(rows)}), as the dashboard shows them:")
    for row in rows[:most]:
        mark = "   <- planted" if (row["icao24"], row["rule"]) in ours else ""
        callsign = row["callsign"].strip() if isinstance(row["callsign"], str) else ""
        opened = f"{row['opened_at']} UTC"
        print(f"    {row['rule']:<14}{row['icao24']:<8}{callsign:<10}since {opened}{mark}")
    if len(rows) > most:
        print(f"    … {len(rows) - most} more")
    return [row["alert_id"] for row in rows]


def default_target() -> Path:
    """The reference when this is the instructor's repository, else the student's labs/."""
    solutions = ROOT / "solutions"
    return solutions if solutions.is_dir() else ROOT / "labs"


def start_dashboard(target: Path) -> None:
    from harness.ops import dashboard

    app = target / "lab09_alerts" / "dashboard.py"
    pid, url = dashboard.start(app)
    print(f"    Dashboard: {url}  ({app.relative_to(ROOT)}, pid {pid}, log {dashboard.LOG_FILE})")
    print(
        "    It keeps running after this command; stop it with `make demo-stop` (or `make down`)."
    )


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
        help="whose Lab 01/02/04/09 code runs (default: solutions/ when present, else labs/)",
    )
    parser.add_argument(
        "--no-dashboard",
        action="store_true",
        help="do not start the live dashboard at the end (CI)",
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
        rules = _module(target, "lab09_alerts", "alerts").AlertConfig()
        step(1, "tables")
        create_tables(target)
        step(2, "Debezium on PostgreSQL")
        register_debezium()
        step(3, f"replay to {TOPIC_RAW}, recorded times shifted to end now, an emergency planted")
        snapshots, offset = slice_of_recording(args.minutes)
        snapshots, planted = plant_emergencies(snapshots, rules.descent_rate, rules.descent_count)
        for p in planted:
            print(f"    planted: {p.describe()}")
        replay_from = end_offsets(TOPIC_RAW)
        replay_slice(snapshots)
        write_raw_files(snapshots)
        step(4, "the streaming and the batch job side by side, each its own Spark application")
        print(f"    streaming: {TOPIC_RAW} -> ClickHouse, PostgreSQL, Kafka, S3")
        print(f"    batch:     the raw files {RAW_GLOB} -> Parquet, ClickHouse, PostgreSQL")
        run_side_by_side([streaming_job(target), batch_job(target)])
        step(5, f"alerts job: this run's {TOPIC_RAW} -> Kafka {ALERTS_TOPIC}, {ALERTS_TABLE}")
        alerts_from = end_offsets(ALERTS_TOPIC)
        alerts_job(target, replay_from).start().finish()
        step(6, "change events, the platform's query, counts, the planted emergency, open alerts")
        wait_for_cdc()
        empty = print_report(platform_query(), topic_counts(), table_counts())
        from harness.runtime.topics import read_topic

        alerts = read_topic(ALERTS_TOPIC, KAFKA_READ_S, since=alerts_from, missing_ok=True)
        problems = check_planted(planted, alerts)
        print_open_alerts(target, planted)
        if empty or problems:
            print(f"\nDemo done in {time.monotonic() - t0:.0f} s, with problems.")
            for what in [f"still empty: {', '.join(empty)}"] * bool(empty) + problems:
                print(f"make demo: {what}", file=sys.stderr)
            return 1
        step(7, "the live dashboard (Lab 09)")
        if args.no_dashboard:
            print("    not started (--no-dashboard); `make dashboard` serves it")
        else:
            start_dashboard(target)
    except (DemoError, RuntimeError, OSError) as exc:  # ServiceUnavailable names `make up`
        print(f"\nmake demo: {exc}", file=sys.stderr)
        return 1
    print(f"\nDemo done in {time.monotonic() - t0:.0f} s (recording shifted by +{offset} s).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
