"""Build the self-study notebooks `notebooks/0N_*.ipynb` from the cell sources in this file.

The notebooks are written here as text so they can be reviewed like code; the `.ipynb` files are
generated, then executed once to store their outputs (nbval compares later runs with them).

    .venv/bin/python tools/build_notebooks.py                 # write all five (no outputs yet)
    .venv/bin/python tools/build_notebooks.py --execute       # write and run them (stores outputs)
    .venv/bin/python tools/build_notebooks.py 03 --execute    # only notebook 03
    .venv/bin/python tools/build_notebooks.py --check         # do the .ipynb files match this file?

Cells whose output legitimately changes from run to run (timings, plots, offsets) carry the tag
`nbval-ignore-output`; every other output is compared by `make notebooks`. Code cells are passed
through `ruff format`, so the notebooks pass `make lint` as they are.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
IGNORE_OUTPUT = "nbval-ignore-output"
EXECUTE_TIMEOUT_S = 900
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def md(text: str) -> NotebookNode:
    """A Markdown cell (the text is dedented and stripped)."""
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def ruff_format(source: str) -> str:
    """`source` formatted by ruff with the repository's settings (as `make lint` checks it)."""
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", "notebooks/cell.py", "-"],
        input=source,
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"ruff cannot format this cell:\n{source}\n{result.stderr}")
    return result.stdout.rstrip("\n")


def code(source: str, *, vary: bool = False) -> NotebookNode:
    """A code cell, formatted by ruff; `vary=True` marks output that changes between runs."""
    cell = nbformat.v4.new_code_cell(ruff_format(textwrap.dedent(source).strip()))
    if vary:
        cell.metadata["tags"] = [IGNORE_OUTPUT]
    return cell


# =====================================================================================
# 01 — batch vs streaming
# =====================================================================================
def nb01() -> list[NotebookNode]:
    return [
        md("""
        # 01 — Batch vs streaming

        The platform processes the same flight data in two ways:

        - **batch** (`spark_jobs/batch_processor.py`): take everything collected so far, process
          it at once, write the results (`flights_batch` in ClickHouse, Parquet in S3);
        - **streaming** (`spark_jobs/streaming_processor.py`, Spark Structured Streaming): process
          the data in small *micro-batches* as it arrives (every 10 seconds on the platform) and
          keep the results up to date (`flights_streaming`).

        This notebook looks at the data first — where the aircraft are — then runs both kinds of
        Spark job over the same Kafka topic and **measures** what the comparison table at the end
        claims: how long a result takes (latency) and how many rows per second each gets through
        (throughput).

        Run the cells from top to bottom with the stack up (`make up`). The notebook uses the
        topics `nb01_flights` and `nb01_live`, deleted at the start (leftovers of an interrupted
        run) and at the end. Spark runs inside the notebook (`local[2]`); starting it takes
        20–30 seconds, the whole notebook about a minute or two.
        """),
        code(
            """
            import json
            import tempfile
            import time

            import _nb_helpers  # the repository on sys.path, clean-up helpers, figure style
            import matplotlib.pyplot as plt
            import pandas as pd

            from harness.runtime.config import endpoints
            from harness.runtime.data import load_pandas, load_snapshots
            from harness.runtime.replay import ensure_topic, replay

            TOPIC, LIVE_TOPIC = "nb01_flights", "nb01_live"
            leftovers = _nb_helpers.delete_topics([TOPIC, LIVE_TOPIC])
            """,
            vary=True,
        ),
        md("""
        ## 1. The data: three hours of real air traffic

        The shipped recording (see `data/DATA.md`) holds OpenSky `/api/states/all` snapshots
        every 10 seconds, 2021-10-07 12:00–15:00 UTC, around Paris and over Switzerland. Each
        snapshot lists the *state vector* of every aircraft in view: position, altitude, speed,
        the country its transponder address is registered to (`origin_country`), and more.
        """),
        code("""
        flights = load_pandas()  # one row per state vector, nulls as recorded
        print(f"snapshots:         {flights['fetch_time'].nunique()}")
        print(f"state vectors:     {len(flights)}")
        print(f"aircraft (icao24): {flights['icao24'].nunique()}")
        print(f"countries:         {flights['origin_country'].nunique()}")
        print(f"without position:  {flights['longitude'].isna().sum()} (not heard for 15-60 s)")
        print(f"time span:         {pd.to_datetime(flights['fetch_time'].min(), unit='s')} -> "
              f"{pd.to_datetime(flights['fetch_time'].max(), unit='s')} UTC")
        """),
        md("""
        Every position of the three hours, coloured by the aircraft's country. Two regions were
        recorded: all altitudes around Paris (note the airports, where tracks converge) and the
        high-altitude traffic crossing Switzerland.
        """),
        code(
            """
            positions = flights.dropna(subset=["longitude", "latitude"])
            top = positions["origin_country"].value_counts().index[:8]
            fig, ax = plt.subplots(figsize=(10, 5.5))
            rest = positions[~positions["origin_country"].isin(top)]
            ax.scatter(rest["longitude"], rest["latitude"], s=1, color="lightgrey", label="other countries")
            for country, color in zip(top, plt.cm.tab10.colors, strict=False):
                mine = positions[positions["origin_country"] == country]
                ax.scatter(mine["longitude"], mine["latitude"], s=1, color=color, label=country)
            ax.set(title="Aircraft positions, 2021-10-07 12:00-15:00 UTC, by origin_country",
                   xlabel="longitude (°)", ylabel="latitude (°)")
            ax.set_aspect(1 / 0.68)  # a degree of longitude is ~0.68 of a degree of latitude here
            ax.annotate("around Paris, all altitudes", (2.4, 47.45), ha="center")
            ax.annotate("Switzerland, above 30,000 ft", (8.2, 47.9), ha="center")
            ax.legend(markerscale=8, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
            plt.show()
            """,
            vary=True,
        ),
        code("""
        flights.groupby("origin_country").agg(
            state_vectors=("icao24", "size"), aircraft=("icao24", "nunique")
        ).sort_values("state_vectors", ascending=False).head(8)
        """),
        md("""
        ## 2. Put the recording on Kafka

        On the platform the collector publishes each snapshot to Kafka as it polls OpenSky.
        `harness.runtime.replay` does the same from the recording: one message per snapshot, here as
        fast as the broker takes them (`speed=0`). One partition keeps this notebook's
        micro-batches the same on every run.
        """),
        code("""
        report = replay(topic=TOPIC, speed=0, partitions=1)
        print(f"{report.delivered} of {report.messages} snapshots delivered to {TOPIC}, {report.failed} failed")
        """),
        md("""
        ## 3. Start Spark

        One Spark session for the notebook, with the Kafka connector on its class path
        (`harness.runtime.spark.get_spark()`, the same factory the labs use: `local[2]`, UTC, small
        shuffles). Spark logs only errors, to `.stack/logs/notebooks-native-stderr.log` (see
        `_nb_helpers.py`) rather than into the cells.
        """),
        code(
            """
            from pyspark.sql import DataFrame
            from pyspark.sql import functions as F

            from harness.runtime.schema import spark_snapshot_schema
            from harness.runtime.spark import get_spark

            spark = get_spark("nb01-batch-vs-streaming")
            spark.sparkContext.setLogLevel("ERROR")
            KAFKA = {"kafka.bootstrap.servers": endpoints().kafka_bootstrap}
            print("Spark", spark.version, "on", spark.sparkContext.master)
            """,
            vary=True,
        ),
        md("""
        Batch and streaming share the transformation: parse the message value as a snapshot,
        one row per state vector, keep the country. (A state vector is a JSON array of mixed
        types, read as strings; field 2 is `origin_country`.)
        """),
        code("""
        def state_vectors(messages: DataFrame) -> DataFrame:
            \"\"\"Kafka messages (snapshots) -> one row per state vector: origin_country, produced_at.\"\"\"
            snapshot = F.from_json(F.col("value").cast("string"), spark_snapshot_schema())
            return (
                messages.select(snapshot.alias("snap"), F.col("timestamp").alias("produced_at"))
                .select("produced_at", F.explode("snap.states").alias("state"))
                .select(F.col("state")[2].alias("origin_country"), "produced_at")
            )
        """),
        md("""
        ## 4. Batch: everything at once

        `spark.read` (not `readStream`) reads the topic from the first to the last offset *as it
        is now*, processes it and stops. The result is complete — for the data that existed when
        the job started.

        The first query in a fresh Spark session is slow (the JVM compiles code, Spark generates
        and compiles its own), so a warm-up run over the first 50 messages comes first; then
        the job over all of them is timed.
        """),
        code("""
        def batch_job(ending_offsets: str = "latest") -> dict[str, int]:
            \"\"\"State vectors per country in TOPIC, from the first offset up to `ending_offsets`.\"\"\"
            messages = (
                spark.read.format("kafka").options(**KAFKA)
                .option("subscribe", TOPIC).option("endingOffsets", ending_offsets).load()
            )
            rows = state_vectors(messages).groupBy("origin_country").count().collect()
            return {row["origin_country"]: row["count"] for row in rows}


        batch_job(json.dumps({TOPIC: {"0": 50}}))  # warm-up: partition 0 up to offset 50
        started = time.perf_counter()
        batch_counts = batch_job()
        batch_seconds = time.perf_counter() - started
        batch_rows = sum(batch_counts.values())
        print(f"batch job: {batch_rows} state vectors in {len(batch_counts)} countries")
        print("top 5:", sorted(batch_counts.items(), key=lambda kv: -kv[1])[:5])
        """),
        code(
            """
            print(f"took {batch_seconds:.1f} s: {batch_rows / batch_seconds:,.0f} rows/s")
            """,
            vary=True,
        ),
        md("""
        ## 5. Streaming, catching up: the same data in micro-batches

        `spark.readStream` turns the topic into an unbounded table. With the trigger
        `availableNow` the query processes what is there now — in micro-batches of at most
        `maxOffsetsPerTrigger` messages — and stops; a checkpoint folder remembers which offsets
        are done. `foreachBatch` hands each micro-batch to our function as an ordinary
        DataFrame; it adds the batch's counts to a running total.
        """),
        code("""
        stream_counts: dict[str, int] = {}
        micro_batches: list[dict] = []


        def add_batch(batch: DataFrame, batch_id: int) -> None:
            rows = batch.groupBy("origin_country").count().collect()
            for row in rows:
                stream_counts[row["origin_country"]] = stream_counts.get(row["origin_country"], 0) + row["count"]
            micro_batches.append({"batch": batch_id, "rows": sum(r["count"] for r in rows), "done": time.time()})


        checkpoints = tempfile.TemporaryDirectory(prefix="nb01_checkpoints_")
        started = time.perf_counter()
        query = (
            state_vectors(
                spark.readStream.format("kafka").options(**KAFKA)
                .option("subscribe", TOPIC).option("startingOffsets", "earliest")
                .option("maxOffsetsPerTrigger", 200)  # snapshots per micro-batch
                .load()
            )
            .writeStream.foreachBatch(add_batch)
            .option("checkpointLocation", f"{checkpoints.name}/catch_up")
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        catch_up_seconds = time.perf_counter() - started
        print(f"{len(micro_batches)} micro-batches, {sum(stream_counts.values())} state vectors")
        print("same counts as the batch job:", stream_counts == batch_counts)
        """),
        code(
            """
            print(f"took {catch_up_seconds:.1f} s: {batch_rows / catch_up_seconds:,.0f} rows/s")
            pd.DataFrame(micro_batches).set_index("batch")[["rows"]].T
            """,
            vary=True,
        ),
        md("""
        Same answer, more work: every micro-batch pays for planning, offset bookkeeping and a
        checkpoint write, so catching up in small steps gets fewer rows per second through than
        one batch job. What streaming buys is shown next.

        ## 6. Streaming, live: latency

        Now the data arrives while the query runs. A streaming query with a `processingTime`
        trigger of 1 second reads `nb01_live`, while the first 20 minutes of the recording
        (120 snapshots) are replayed to it at 120× speed — a snapshot every 83 ms, for 10
        seconds. For every message we note when it was produced (Kafka's timestamp) and when
        the micro-batch containing it was done: the difference is its **latency**.
        """),
        code("""
        ensure_topic(LIVE_TOPIC, partitions=1)
        live_latencies: list[dict] = []


        def note_latency(batch: DataFrame, batch_id: int) -> None:
            produced = [r["t"] for r in batch.select(F.col("timestamp").cast("double").alias("t")).collect()]
            done = time.time()
            live_latencies.extend({"produced": t, "done": done, "batch": batch_id} for t in produced)


        live = (
            spark.readStream.format("kafka").options(**KAFKA)
            .option("subscribe", LIVE_TOPIC).option("startingOffsets", "earliest").load()
            .writeStream.foreachBatch(note_latency)
            .option("checkpointLocation", f"{checkpoints.name}/live")
            .trigger(processingTime="1 second")
            .start()
        )
        first_20_min = load_snapshots()[:120]
        live_report = replay(topic=LIVE_TOPIC, speed=120, snapshots=first_20_min)
        replay_done = time.time()
        _nb_helpers.wait_until(lambda: len(live_latencies) >= live_report.delivered, 60,
                               "the live query to see every message")
        live.stop()
        print(f"replayed {live_report.delivered} snapshots; the live query processed {len(live_latencies)}")
        """),
        md("""
        For comparison, a **batch** job over the same 20 minutes can only start once they are
        complete. Run it now — right after the replay ended — and time it; a message's latency
        is then the wait until the end of the period plus the job's duration.
        """),
        code("""
        started = time.perf_counter()
        live_rows = state_vectors(
            spark.read.format("kafka").options(**KAFKA).option("subscribe", LIVE_TOPIC).load()
        ).count()
        small_batch_seconds = time.perf_counter() - started
        print(f"batch job over the 20 minutes: {live_rows} state vectors")
        """),
        code(
            """
            stream = pd.DataFrame(live_latencies)
            stream["latency"] = stream["done"] - stream["produced"]
            t0 = stream["produced"].min()
            stream["x"] = stream["produced"] - t0
            batch_latency = (replay_done - stream["produced"]) + small_batch_seconds

            fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
            left.plot(stream["x"], batch_latency, color="tab:blue", label="batch job after the period")
            left.scatter(stream["x"], stream["latency"], s=6, color="tab:orange",
                         label="streaming, 1 s trigger")
            left.set(title="Latency per message: produced -> in a result",
                     xlabel="seconds into the replay (when the message was produced)", ylabel="seconds")
            left.legend()
            throughput = pd.Series({
                "batch\\n(3 h, one job)": batch_rows / batch_seconds,
                "streaming\\ncatching up": batch_rows / catch_up_seconds,
                "streaming\\nlive": live_rows / (stream["done"].max() - t0),
            })
            throughput.plot.bar(ax=right, rot=0, color=["tab:blue", "tab:orange", "tab:orange"])
            right.set(title="Throughput", ylabel="state vectors per second")
            fig.tight_layout()
            plt.show()
            print(f"streaming latency: median {stream['latency'].median():.2f} s, "
                  f"max {stream['latency'].max():.2f} s over {stream['batch'].nunique()} micro-batches")
            print(f"batch latency:     median {batch_latency.median():.2f} s, max {batch_latency.max():.2f} s")
            """,
            vary=True,
        ),
        md("""
        What the picture says:

        - **Latency.** A streamed message is in a result about a trigger interval (plus the
          batch's processing time) after it was produced — whatever the length of the period.
          A batch result waits for the end of the period: here 10 seconds of replay; for the
          platform's daily job, up to a day.
        - **Throughput.** A big batch job amortises its fixed costs over all rows; streaming
          pays them every micro-batch. Live, a streaming query only *needs* to keep up with the
          arrival rate — its throughput there is just the rate the data comes in — and catching
          up shows how much headroom it has.

        The platform description's comparison, with what you measured:

        | | Batch | Streaming |
        |---|---|---|
        | Latency | high (hours/days; here: the whole period + the job) | low (seconds: about one trigger interval) |
        | Data per run | large | small micro-batches |
        | Resources | high but periodic | constant |
        | Complexity | simpler | harder (state, checkpoints, late data, restarts) |
        | Use | historical analysis, reports, ML | monitoring, alerts, dashboards |
        | Storage on the platform | ClickHouse `flights_batch`, S3 | ClickHouse `flights_streaming` |

        ## 7. Clean up
        """),
        code("""
        spark.stop()
        checkpoints.cleanup()
        print("deleted topics:", _nb_helpers.delete_topics([TOPIC, LIVE_TOPIC]))
        """),
        md("""
        ## Exercises — then Labs 01 and 02

        1. Change the live trigger to `processingTime="5 seconds"`. How do the latencies change?
           What is the smallest useful interval on your machine (look at how long one
           micro-batch takes)?
        2. Set `maxOffsetsPerTrigger` to 20, then 1000, in the catch-up query. How do the number
           of micro-batches and the throughput change, and why?
        3. Run the catch-up query twice with the same checkpoint folder. What does the second
           run process, and why is that what you want after a crash?
        4. Count aircraft per country in **1-minute windows of event time** (the snapshot's
           `time`, not Kafka's timestamp) with `F.window`. Why can a window's count change after
           it was first reported, and what does a watermark do about it?

        **Lab 01** ([`labs/lab01_batch/README.md`](../labs/lab01_batch/README.md), `make lab-1`)
        builds the batch job: raw snapshots to clean rows with rejected rows counted, Parquet in
        S3 and `flights_batch` in ClickHouse. **Lab 02**
        ([`labs/lab02_streaming/README.md`](../labs/lab02_streaming/README.md), `make lab-2`)
        builds the streaming job: Kafka source with a dead-letter sink, event-time windows and
        watermarks, idempotent sinks via `foreachBatch`, checkpoints and restarts.
        """),
    ]


# =====================================================================================
# 02 — Kafka basics
# =====================================================================================
def nb02() -> list[NotebookNode]:
    return [
        md("""
        # 02 — Kafka basics: topics, partitions, keys, consumer groups and lag

        On the platform every flight position enters through Kafka (topic `raw_flights`). This
        notebook shows the four ideas you need to work with it, on the real broker of the lab stack
        and the shipped OpenSky recording:

        1. a **topic** is split into **partitions**; each is an append-only log numbered by **offset**;
        2. the message **key** chooses the partition, so one aircraft's positions stay together and
           in order;
        3. a **consumer group** shares the partitions among its consumers and remembers how far it
           got (its **committed offsets**);
        4. the **lag** — messages written but not yet processed by a group — tells whether the
           consumers keep up.

        Run the cells from top to bottom with the stack up (`make up`; `make status` checks it).
        Everything this notebook creates is named `nb02_…`; it is removed at the start (left over
        from an interrupted run) and again at the end.
        """),
        code(
            """
            import json
            import time
            from collections import Counter, defaultdict

            import _nb_helpers  # the repository on sys.path, clean-up helpers, figure style
            import matplotlib.pyplot as plt
            import pandas as pd
            from confluent_kafka import Consumer, Producer, TopicPartition
            from confluent_kafka.admin import NewTopic

            from harness.runtime.data import load_rows
            from harness.runtime.services import kafka_admin, kafka_config

            TOPIC = "nb02_flights"
            GROUP = "nb02_dashboard"
            PARTITIONS = 3
            admin = kafka_admin()  # the broker address comes from harness.runtime.config, never a literal
            leftovers = _nb_helpers.delete_consumer_groups([GROUP]) + _nb_helpers.delete_topics([TOPIC])
            """,
            vary=True,
        ),
        md("""
        ## 1. A topic with three partitions

        The admin client creates topics. Partitions are the unit of parallelism: within one
        consumer group, each partition is read by exactly one consumer. Replication factor 1 is
        enough for the single broker of the lab stack (production clusters use 3).
        """),
        code("""
        futures = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
        futures[TOPIC].result(timeout=30)  # raises if the broker refused

        # A new topic's partitions get their leader a moment after creation: wait for all three.
        topic_meta = _nb_helpers.wait_for_topic(TOPIC, PARTITIONS)
        print(f"{TOPIC}: partitions {sorted(topic_meta.partitions)}")
        """),
        md("""
        ## 2. Produce one message per state vector, keyed by the aircraft

        Each row of the recording (one aircraft at one time) becomes one JSON message whose key is
        the aircraft's `icao24` address. The producer hashes the key to pick the partition, so every
        message of one aircraft lands in the same partition — and Kafka keeps order *within* a
        partition only. (librdkafka, behind `confluent-kafka`, hashes keys with CRC32 by default;
        the Java client uses murmur2 — set `partitioner=murmur2_random` when both must agree.)

        With `acks=all` the broker confirms a message only once it is safely stored, and
        `enable.idempotence` makes sure a retry never writes a message twice. The delivery
        callback counts the confirmations, so nothing is lost without us knowing.
        """),
        code("""
        rows = load_rows()  # the shipped recording: 56,671 state vectors
        delivered: Counter[int] = Counter()  # confirmed messages per partition
        failures: list[str] = []


        def on_delivery(err, msg) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                delivered[msg.partition()] += 1


        producer = Producer(kafka_config(**{"acks": "all", "enable.idempotence": True, "linger.ms": 20}))
        started = time.perf_counter()
        for row in rows:
            value = json.dumps(row, separators=(",", ":"))
            while True:
                try:
                    producer.produce(TOPIC, key=row["icao24"], value=value, on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full: let the producer send some first
                    producer.poll(0.5)
            producer.poll(0)  # serve delivery callbacks
        still_queued = producer.flush(60)
        produce_seconds = time.perf_counter() - started

        print(f"produced {len(rows)} messages: delivered {sum(delivered.values())}, "
              f"failed {len(failures)}, still queued {still_queued}")
        """),
        code(
            """
            print(f"{len(rows) / produce_seconds:,.0f} messages per second from one Python producer")
            """,
            vary=True,
        ),
        md("""
        ## 3. Messages per partition

        Each partition has a *low* and a *high watermark*: the first offset still stored and the
        offset the next message will get. Their difference is the number of messages in it. The
        split is not even: it follows the keys, and a busy aircraft (many positions) weighs more
        than a quiet one.
        """),
        code("""
        inspector = Consumer(kafka_config(**{"group.id": "nb02_inspector"}))  # never joins: no commits
        per_partition = []
        for p in range(PARTITIONS):
            low, high = inspector.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
            per_partition.append({"partition": p, "low": low, "high": high, "messages": high - low})
        inspector.close()

        partitions = pd.DataFrame(per_partition).set_index("partition")
        partitions
        """),
        code(
            """
            ax = partitions["messages"].plot.bar(color="tab:blue", rot=0)
            ax.set(title=f"Messages per partition of {TOPIC}", xlabel="partition", ylabel="messages")
            for i, n in enumerate(partitions["messages"]):
                ax.annotate(f"{n:,}", (i, n), ha="center", va="bottom")
            plt.show()
            """,
            vary=True,
        ),
        md("""
        ## 4. Read it back: one aircraft, one partition, in order

        A consumer can also read without a group: `assign()` names the partitions and offsets
        itself. We read every partition from offset 0 to its high watermark and check the promise
        of keyed messages.
        """),
        code("""
        reader = Consumer(kafka_config(**{"group.id": "nb02_reader", "enable.auto.commit": False}))
        reader.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
        ends = dict(zip(partitions.index, partitions["high"], strict=True))
        partitions_of: dict[str, set[int]] = defaultdict(set)
        last_time: dict[str, int] = {}
        in_order = True
        first_message = None
        read = 0
        deadline = time.monotonic() + 60
        while read < len(rows) and time.monotonic() < deadline:
            for msg in reader.consume(num_messages=5000, timeout=1.0):
                if msg.error():
                    raise RuntimeError(msg.error())
                row = json.loads(msg.value())
                aircraft = msg.key().decode()
                partitions_of[aircraft].add(msg.partition())
                in_order &= row["fetch_time"] >= last_time.get(aircraft, 0)
                last_time[aircraft] = row["fetch_time"]
                if msg.partition() == 0 and msg.offset() == 0:
                    first_message = (msg.key().decode(), row)
                read += 1
        reader.close()

        print(f"read {read} messages of {len(partitions_of)} aircraft")
        print("every aircraft in exactly one partition:", all(len(p) == 1 for p in partitions_of.values()))
        print("every aircraft's positions in time order:", in_order)
        """),
        md("""
        The first message of partition 0 (offset 0): its key is the aircraft, its value the row.
        """),
        code("""
        key, value = first_message
        print("key:", key)
        print("value:", json.dumps(value, indent=1))
        """),
        md("""
        ## 5. Consumer groups, committed offsets and lag

        A dashboard reads the topic in the consumer group `nb02_dashboard`. It processes 20,000
        messages and then stops — say it crashed. Because it **commits offsets only after
        processing** (at-least-once delivery), the group remembers exactly what was done.

        The **lag** of a group on a partition is `high watermark - committed offset`: the messages
        still waiting for it. Growing lag means the consumers fall behind the producers.
        """),
        code("""
        def consume_in_group(limit: int, timeout: float = 60.0) -> Counter[str]:
            \"\"\"Process up to `limit` messages in GROUP (count flights per country), then commit.\"\"\"
            consumer = Consumer(kafka_config(**{
                "group.id": GROUP,
                "auto.offset.reset": "earliest",  # a new group starts at the beginning
                "enable.auto.commit": False,       # we commit after processing, ourselves
            }))
            consumer.subscribe([TOPIC])
            per_country: Counter[str] = Counter()
            next_offsets: dict[int, int] = {}
            done = 0
            deadline = time.monotonic() + timeout
            while done < limit and time.monotonic() < deadline:
                for msg in consumer.consume(num_messages=min(1000, limit - done), timeout=1.0):
                    if msg.error():
                        raise RuntimeError(msg.error())
                    per_country[json.loads(msg.value())["origin_country"]] += 1  # "processing"
                    next_offsets[msg.partition()] = msg.offset() + 1
                    done += 1
            # The committed offset is the NEXT message to read, hence offset + 1.
            consumer.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in next_offsets.items()],
                            asynchronous=False)
            consumer.close()
            return per_country


        def group_lag() -> pd.DataFrame:
            \"\"\"Committed offset and lag of GROUP per partition, as the broker reports them.\"\"\"
            from confluent_kafka import ConsumerGroupTopicPartitions

            request = ConsumerGroupTopicPartitions(GROUP, [TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
            answer = admin.list_consumer_group_offsets([request])[GROUP].result(timeout=15)
            committed = {tp.partition: max(tp.offset, 0) for tp in answer.topic_partitions}
            table = partitions[["high"]].copy()
            table["committed"] = [committed[p] for p in table.index]
            table["lag"] = table["high"] - table["committed"]
            return table


        processed = consume_in_group(20_000)
        lag_after_crash = group_lag()
        print(f"processed {sum(processed.values())} messages; total lag now {lag_after_crash['lag'].sum()}")
        """),
        md("""
        Which partitions the 20,000 messages came from depends on how the consumer happened to
        fetch them, so the split below changes from run to run; the total does not.
        """),
        code(
            """
            lag_after_crash
            """,
            vary=True,
        ),
        md("""
        A consumer that starts again **in the same group** continues at the committed offsets: it
        neither skips nor repeats what the first one committed. It processes the rest, and the lag
        drops to zero.
        """),
        code("""
        processed_rest = consume_in_group(len(rows) - 20_000)
        lag_caught_up = group_lag()
        print(f"processed {sum(processed_rest.values())} more; "
              f"in total {sum((processed + processed_rest).values())} of {len(rows)} messages")
        print("lag per partition now:", {p: int(n) for p, n in lag_caught_up["lag"].items()})
        """),
        code(
            """
            fig, ax = plt.subplots()
            width = 0.38
            x = lag_after_crash.index.to_numpy()
            ax.bar(x - width / 2, lag_after_crash["committed"], width, label="committed (processed)")
            ax.bar(x - width / 2, lag_after_crash["lag"], width, bottom=lag_after_crash["committed"],
                   label="lag after the crash", color="tab:red")
            ax.bar(x + width / 2, lag_caught_up["committed"], width, label="committed after catching up",
                   color="tab:green")
            ax.set(title=f"Consumer group {GROUP}: committed offsets and lag per partition",
                   xlabel="partition", ylabel="messages", xticks=x,
                   ylim=(0, lag_after_crash["high"].max() * 1.3))
            ax.legend(loc="upper center", ncols=3, fontsize=8)
            plt.show()
            """,
            vary=True,
        ),
        md("""
        The country counts of the two runs together are exactly those of the recording — the
        crash lost nothing and doubled nothing:
        """),
        code("""
        expected = Counter(row["origin_country"] for row in rows)
        together = processed + processed_rest
        print("same counts as the recording:", together == expected)
        pd.Series(together, name="messages").sort_values(ascending=False).head(8).to_frame()
        """),
        md("""
        ## 6. Clean up

        Delete the group (it has no members left) and the topic.
        """),
        code("""
        print("deleted groups:", _nb_helpers.delete_consumer_groups([GROUP]))
        print("deleted topics:", _nb_helpers.delete_topics([TOPIC]))
        """),
        md("""
        ## Exercises — then Lab 03

        1. Produce the rows again **without a key** (`key=None`). Is every aircraft still in one
           partition? Is the time-order check still true? Why does that matter to a consumer
           that computes each aircraft's speed changes?
        2. Create the topic with 6 partitions instead of 3 and produce with keys again. Which
           aircraft change partition? What does that mean for a topic that already holds data
           when you add partitions?
        3. In `consume_in_group`, commit *before* processing (move the commit into the loop,
           before `per_country[...] += 1`) and "crash" half-way through a batch. Which delivery
           guarantee do you get now?
        4. Start two consumers in the same group at once (two `Consumer` objects, polled in turns)
           and print `consumer.assignment()` for each: how are the 3 partitions shared? What happens
           with 4 consumers?

        **Lab 03** ([`labs/lab03_kafka/README.md`](../labs/lab03_kafka/README.md)) turns this into
        graded code: topics with retention and compaction, an idempotent keyed producer, an
        at-least-once consumer, reading a group's lag, the OpenSky collector and a dead-letter
        topic. Run its tests with `make lab-3`.
        """),
    ]


# =====================================================================================
# 03 — ClickHouse basics
# =====================================================================================
def nb03() -> list[NotebookNode]:
    return [
        md("""
        # 03 — ClickHouse basics: a column store next to PostgreSQL

        The platform keeps every flight row twice: in PostgreSQL (`processed_flights`, for the
        application and transactions) and in ClickHouse (`opensky.flights_streaming` and
        `opensky.flights_batch`, for analytics). Why two databases? This notebook loads the same
        rows — the shipped OpenSky recording — into both, asks both the same questions, and
        measures how long the answers take and how much disk the data uses.

        - **PostgreSQL is a row store.** A table is a heap of rows; one row's fields sit together.
          Finding *one* aircraft through an index is fast; an aggregation over many rows reads every
          column of every row.
        - **ClickHouse is a column store.** Each column is stored (and compressed) on its own, sorted
          by the table's `ORDER BY` key. A query reads only the columns it names, in large
          vectorised blocks.

        Run the cells from top to bottom with the stack up (`make up`). The notebook's tables are
        named `nb03_…` in both databases and are dropped at the start and at the end.
        """),
        code(
            """
            import statistics
            import time
            from datetime import UTC, datetime, timedelta

            import _nb_helpers  # noqa: F401 (puts the repository on sys.path, sets the figure style)
            import matplotlib.pyplot as plt
            import pandas as pd

            from harness.runtime.data import load_arrow
            from harness.runtime.services import clickhouse_client, pg_connect

            TABLE, TABLE_X10 = "nb03_flights", "nb03_flights_x10"  # the same names in both databases
            ch = clickhouse_client()  # database "opensky"; address and password from harness.runtime.config
            pg = pg_connect()         # database "opensky", autocommit
            for name in (TABLE, TABLE_X10):
                ch.command(f"DROP TABLE IF EXISTS {name}")
                pg.execute(f"DROP TABLE IF EXISTS {name}")
            """,
            vary=True,
        ),
        md("""
        ## 1. The data

        `load_arrow()` returns the recording as an Arrow table: one row per state vector, the
        columns of `harness.runtime.schema`. We leave out `sensors` (always null without a sensor filter).
        """),
        code("""
        flights = load_arrow().drop_columns(["sensors"])
        print(f"{flights.num_rows} rows, {flights.num_columns} columns")
        print(", ".join(flights.column_names))
        """),
        md("""
        ## 2. Load it into ClickHouse

        A `MergeTree` table stores its rows sorted by `ORDER BY` — here country, aircraft, time —
        in *parts* of compressed column files, split by `PARTITION BY` (one partition per day).
        `LowCardinality(String)` dictionary-encodes a column with few distinct values (51
        countries); `Nullable(...)` marks columns that may be null. Small parts normally keep all
        columns in one file; `min_bytes_for_wide_part = 0` gives every column its own file, so that
        section 7 can show the bytes per column. The whole Arrow table goes in with one columnar
        insert.
        """),
        code("""
        CH_TYPES = {
            "fetch_time": "DateTime('UTC')", "icao24": "String", "callsign": "Nullable(String)",
            "origin_country": "LowCardinality(String)", "time_position": "Nullable(Int64)",
            "last_contact": "Int64", "longitude": "Nullable(Float64)", "latitude": "Nullable(Float64)",
            "baro_altitude": "Nullable(Float64)", "on_ground": "Bool", "velocity": "Nullable(Float64)",
            "true_track": "Nullable(Float64)", "vertical_rate": "Nullable(Float64)",
            "geo_altitude": "Nullable(Float64)", "squawk": "Nullable(String)", "spi": "Bool",
            "position_source": "Int64", "category": "Nullable(Int64)",
        }
        columns_sql = ",\\n    ".join(f"{name} {kind}" for name, kind in CH_TYPES.items())
        for name in (TABLE, TABLE_X10):
            ch.command(f\"\"\"
            CREATE TABLE {name} (
                {columns_sql}
            ) ENGINE = MergeTree
            PARTITION BY toDate(fetch_time)
            ORDER BY (origin_country, icao24, fetch_time)
            SETTINGS min_bytes_for_wide_part = 0  -- a file per column even in small parts\"\"\")

        ch.insert_arrow(TABLE, flights)
        print("ClickHouse rows:", ch.query(f"SELECT count() FROM {TABLE}").result_rows[0][0])
        """),
        md("""
        ## 3. Load it into PostgreSQL

        The same columns with PostgreSQL's types. The primary key `(icao24, fetch_time)` — one
        position per aircraft and snapshot — is also a B-tree index, as an application would have.
        `COPY ... FROM STDIN` streams the rows in one statement, the fast way to bulk-load.
        """),
        code("""
        PG_TYPES = {
            "fetch_time": "timestamptz", "icao24": "text", "callsign": "text", "origin_country": "text",
            "time_position": "bigint", "last_contact": "bigint", "longitude": "double precision",
            "latitude": "double precision", "baro_altitude": "double precision", "on_ground": "boolean",
            "velocity": "double precision", "true_track": "double precision",
            "vertical_rate": "double precision", "geo_altitude": "double precision", "squawk": "text",
            "spi": "boolean", "position_source": "bigint", "category": "bigint",
        }
        columns_sql = ", ".join(f"{name} {kind}" for name, kind in PG_TYPES.items())
        for name in (TABLE, TABLE_X10):
            pg.execute(f"CREATE TABLE {name} ({columns_sql}, PRIMARY KEY (icao24, fetch_time))")

        names = list(PG_TYPES)
        with pg.cursor() as cur, cur.copy(f"COPY {TABLE} ({', '.join(names)}) FROM STDIN") as copy:
            for row in flights.to_pylist():
                row["fetch_time"] = datetime.fromtimestamp(row["fetch_time"], UTC)
                copy.write_row([row[name] for name in names])
        pg.execute(f"VACUUM ANALYZE {TABLE}")  # fresh statistics for the query planner
        print("PostgreSQL rows:", pg.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
        """),
        md("""
        ## 4. The same question to both

        The platform description's dashboard query — flights per country in the last hour, with
        the average speed — needs one change for a recording: "the last hour" is the last hour *of
        the recording* (it ends at 15:00 UTC on 2021-10-07), not `now()`. The time is a **bound
        parameter** in both databases (`{since:DateTime}` in ClickHouse, `%s` in PostgreSQL), never
        pasted into the SQL text.
        """),
        code("""
        since = datetime(2021, 10, 7, 15, 0, tzinfo=UTC) - timedelta(hours=1)

        ch_answer = ch.query_df(
            f\"\"\"SELECT origin_country, count() AS flights, avg(velocity) AS avg_velocity
            FROM {TABLE} WHERE fetch_time >= {{since:DateTime}}
            GROUP BY origin_country ORDER BY flights DESC, origin_country LIMIT 10\"\"\",
            parameters={"since": since},
        )
        pg_answer = pd.DataFrame(
            pg.execute(
                f\"\"\"SELECT origin_country, count(*) AS flights, avg(velocity) AS avg_velocity
                FROM {TABLE} WHERE fetch_time >= %s
                GROUP BY origin_country ORDER BY flights DESC, origin_country LIMIT 10\"\"\",
                (since,),
            ).fetchall(),
            columns=["origin_country", "flights", "avg_velocity"],
        )
        both = ch_answer.merge(pg_answer, on="origin_country", suffixes=(" CH", " PG"))
        same = (
            len(both) == 10
            and (both["flights CH"] == both["flights PG"]).all()
            and ((both["avg_velocity CH"] - both["avg_velocity PG"]).abs() < 1e-9).all()
        )
        print("same countries, counts and average speeds (m/s) in both:", same)
        both.round(2)
        """),
        md("""
        ## 5. How long does each take?

        Three typical questions:

        - **by country** — the dashboard aggregation above, over all rows;
        - **per hour** — distinct aircraft and highest altitude per hour (an aggregation that
          needs three columns);
        - **one aircraft** — the track of the busiest aircraft, a point lookup by key.

        Each is timed end to end as the application sees it (request, execution, transfer,
        decoding): the median of 7 runs. The numbers depend on your machine and on what else it
        is doing — look at the ratios, not at the milliseconds.
        """),
        code("""
        busiest = ch.query(
            f"SELECT icao24 FROM {TABLE} GROUP BY icao24 ORDER BY count() DESC, icao24 LIMIT 1"
        ).result_rows[0][0]
        QUERIES = {  # name -> (ClickHouse SQL, PostgreSQL SQL); {t} is the table
            "by country": (
                "SELECT origin_country, count() AS n, avg(velocity) FROM {t} "
                "GROUP BY origin_country ORDER BY n DESC",
                "SELECT origin_country, count(*) AS n, avg(velocity) FROM {t} "
                "GROUP BY origin_country ORDER BY n DESC",
            ),
            "per hour": (
                "SELECT toStartOfHour(fetch_time) AS h, uniqExact(icao24), max(baro_altitude) "
                "FROM {t} GROUP BY h ORDER BY h",
                "SELECT date_trunc('hour', fetch_time) AS h, count(DISTINCT icao24), max(baro_altitude) "
                "FROM {t} GROUP BY h ORDER BY h",
            ),
            "one aircraft": (
                f"SELECT fetch_time, latitude, longitude FROM {{t}} WHERE icao24 = '{busiest}' ORDER BY fetch_time",
                f"SELECT fetch_time, latitude, longitude FROM {{t}} WHERE icao24 = '{busiest}' ORDER BY fetch_time",
            ),
        }


        def ch_rows(sql: str) -> list:
            return ch.query(sql).result_rows


        def pg_rows(sql: str) -> list:
            return pg.execute(sql).fetchall()


        def median_ms(run, sql: str, repeat: int = 7) -> float:
            \"\"\"Median wall time of `run(sql)` in milliseconds (after one warm-up run).\"\"\"
            run(sql)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                run(sql)
                times.append((time.perf_counter() - started) * 1000)
            return statistics.median(times)


        def time_queries(table: str) -> pd.DataFrame:
            rows = []
            for name, (ch_sql, pg_sql) in QUERIES.items():
                rows.append({
                    "query": name,
                    "ClickHouse ms": median_ms(ch_rows, ch_sql.format(t=table)),
                    "PostgreSQL ms": median_ms(pg_rows, pg_sql.format(t=table)),
                })
            return pd.DataFrame(rows).set_index("query")


        ch_track = ch_rows(QUERIES["one aircraft"][0].format(t=TABLE))
        pg_track = pg_rows(QUERIES["one aircraft"][1].format(t=TABLE))
        # ClickHouse returns naive datetimes (in UTC), PostgreSQL timezone-aware ones.
        pg_track = [(moment.replace(tzinfo=None), lat, lon) for moment, lat, lon in pg_track]
        print(f"busiest aircraft {busiest}: {len(ch_track)} positions; same track in both: {ch_track == pg_track}")
        """),
        code(
            """
            timings = {"3 hours (56,671 rows)": time_queries(TABLE)}
            timings["3 hours (56,671 rows)"].round(1)
            """,
            vary=True,
        ),
        md("""
        ## 6. Ten times the data

        Three hours are small for either database. To see how each grows, both make ten copies
        of the recording inside the database, one per day (2021-10-07 to 2021-10-16): the same
        traffic shifted by whole days, 566,710 rows.
        """),
        code("""
        ch.command(
            f"INSERT INTO {TABLE_X10} SELECT t.* REPLACE (t.fetch_time + toIntervalDay(d.number) AS fetch_time) "
            f"FROM {TABLE} AS t CROSS JOIN numbers(10) AS d"
        )
        pg.execute(
            f"INSERT INTO {TABLE_X10} SELECT fetch_time + d * interval '1 day', {', '.join(names[1:])} "
            f"FROM {TABLE}, generate_series(0, 9) AS d"
        )
        pg.execute(f"VACUUM ANALYZE {TABLE_X10}")
        print("ClickHouse rows:", ch.query(f"SELECT count() FROM {TABLE_X10}").result_rows[0][0])
        print("PostgreSQL rows:", pg.execute(f"SELECT count(*) FROM {TABLE_X10}").fetchone()[0])
        """),
        code(
            """
            timings["30 hours (566,710 rows)"] = time_queries(TABLE_X10)
            table = pd.concat(timings.values(), axis=1, keys=["3 h", "30 h"])
            table.columns = [f"{engine.split()[0]}, {size}" for size, engine in table.columns]
            table.round(1)
            """,
            vary=True,
        ),
        code(
            """
            fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), sharey=False)
            for ax, query in zip(axes, QUERIES, strict=True):
                sizes = list(timings)
                x = range(len(sizes))
                ax.bar([i - 0.2 for i in x], [timings[s].loc[query, "ClickHouse ms"] for s in sizes],
                       0.4, label="ClickHouse", color="tab:orange")
                ax.bar([i + 0.2 for i in x], [timings[s].loc[query, "PostgreSQL ms"] for s in sizes],
                       0.4, label="PostgreSQL", color="tab:blue")
                ax.set(title=query, xticks=list(x), xticklabels=["3 h of data", "30 h"], ylabel="median ms")
            axes[0].legend()
            fig.suptitle("Query time, ClickHouse vs PostgreSQL, same rows (lower is better)")
            fig.tight_layout()
            plt.show()
            """,
            vary=True,
        ),
        md("""
        What to look for:

        - **Aggregations** (by country, per hour) are usually several times faster in ClickHouse,
          and the gap widens with ten times the rows: ClickHouse reads two or three compressed
          columns; PostgreSQL reads whole rows, one after the other.
        - **The point lookup** is PostgreSQL's game: its B-tree index on `(icao24, fetch_time)`
          leads straight to the aircraft's rows. ClickHouse's sparse index on its `ORDER BY`
          finds the right *granules* (blocks of 8,192 rows) and reads them whole — fast too, but
          rarely faster than PostgreSQL for a few hundred rows.

        On the native stack ClickHouse is chDB behind the HTTP interface, with docker it is
        `clickhouse-server`; both run the same engine.

        ## 7. Disk space

        Columns of one type, sorted by the table key, compress very well. Compare the bytes each
        database uses for the same rows (PostgreSQL: table + index; ClickHouse: compressed parts).
        The ten copies repeat the same values, which flatters ClickHouse's compression somewhat.
        """),
        code(
            """
            sizes = pd.DataFrame(
                {
                    "PostgreSQL MB": [
                        pg.execute("SELECT pg_total_relation_size(%s)", (t,)).fetchone()[0] / 1e6
                        for t in (TABLE, TABLE_X10)
                    ],
                    "ClickHouse MB": [
                        ch.query(
                            "SELECT sum(data_compressed_bytes) FROM system.parts "
                            "WHERE database = currentDatabase() AND table = {t:String} AND active",
                            parameters={"t": t},
                        ).result_rows[0][0] / 1e6
                        for t in (TABLE, TABLE_X10)
                    ],
                },
                index=["3 hours", "30 hours"],
            )
            ax = sizes.plot.bar(rot=0, color=["tab:blue", "tab:orange"])
            ax.set(title="Bytes on disk for the same rows", ylabel="MB")
            plt.show()
            sizes.round(2)
            """,
            vary=True,
        ),
        md("""
        Which columns take the space in ClickHouse? `system.columns` knows, per column:
        """),
        code(
            """
            ch.query_df(
                "SELECT name, data_compressed_bytes AS compressed, data_uncompressed_bytes AS raw, "
                "round(raw / compressed, 1) AS ratio FROM system.columns "
                "WHERE database = currentDatabase() AND table = {t:String} ORDER BY compressed DESC",
                parameters={"t": TABLE},
            ).head(8)
            """,
            vary=True,
        ),
        md("""
        ## 8. Clean up
        """),
        code("""
        for name in (TABLE, TABLE_X10):
            ch.command(f"DROP TABLE IF EXISTS {name}")
            pg.execute(f"DROP TABLE IF EXISTS {name}")
        pg.close()
        print("dropped", TABLE, "and", TABLE_X10, "in ClickHouse and PostgreSQL")
        """),
        md("""
        ## Exercises — then Lab 04

        1. Run `EXPLAIN indexes = 1 SELECT ... WHERE icao24 = '…'` on `nb03_flights` (before the
           clean-up cell). How many granules does ClickHouse read? Now filter on
           `origin_country = 'France'` instead — why does the first column of `ORDER BY` matter?
        2. Change `ORDER BY` to `(icao24, fetch_time)` and time the three queries again. Which one
           gains, which one loses?
        3. Remove `LowCardinality` from `origin_country`; compare the column's compressed bytes.
        4. The dashboard asks "flights per country" every few seconds. Sketch a materialized view
           that keeps the counts up to date as rows arrive, so the query reads 51 rows instead of
           all of them.

        **Lab 04** ([`labs/lab04_clickhouse/README.md`](../labs/lab04_clickhouse/README.md)) makes
        this graded: the platform's `flights_streaming` and `flights_batch` schemas, the
        `country_statistics_mv` materialized view, bound-parameter queries, deduplication with a
        ReplacingMergeTree and key usage checked with `EXPLAIN indexes = 1`. Run its tests with
        `make lab-4`.
        """),
    ]


# =====================================================================================
# 04 — Debezium CDC
# =====================================================================================
def nb04() -> list[NotebookNode]:
    return [
        md("""
        # 04 — Change data capture with Debezium

        An application writes to PostgreSQL; analytics wants every change as it happens —
        without polling the table and without the application sending anything extra. **Change
        data capture** (CDC) reads the changes from PostgreSQL's own write-ahead log (WAL):

        - PostgreSQL decodes its WAL for a **publication** (which tables) into a **logical
          replication slot** (which remembers how far the reader got);
        - **Debezium**, a connector running in **Kafka Connect**, reads the slot and writes one
          **change event** per changed row to a Kafka topic `<prefix>.<schema>.<table>` — on the
          platform `opensky.public.processed_flights`;
        - each event says what happened: `op` (`r` snapshot read, `c` create, `u` update, `d`
          delete), the row `before` and `after`, and `source` metadata (table, transaction, log
          position, commit time).

        This notebook keeps a small table of *current aircraft positions*, fed from the shipped
        recording, captures its changes with its own connector, and checks that the events alone
        rebuild the table. Everything it creates — table, publication, slot, connector, topics —
        is named `nb04…`, removed at the start (leftovers of an interrupted run) and at the end.
        Run it with the stack up (`make up`).
        """),
        code(
            """
            import json
            import time
            from collections import Counter

            import _nb_helpers  # the repository on sys.path, clean-up helpers, figure style
            import matplotlib.pyplot as plt
            import pandas as pd
            import requests
            from confluent_kafka import Consumer, TopicPartition

            from harness.runtime.config import endpoints, stack
            from harness.runtime.data import load_snapshots
            from harness.runtime.services import kafka_admin, kafka_config, pg_connect

            TABLE = "nb04_positions"
            PUBLICATION, SLOT = "nb04_publication", "nb04_slot"
            CONNECTOR, PREFIX = "nb04-positions-cdc", "nb04"
            TOPIC = f"{PREFIX}.public.{TABLE}"  # Debezium's <topic.prefix>.<schema>.<table>
            CONNECT_URL = endpoints().connect_url.rstrip("/")  # Kafka Connect's REST API

            pg = pg_connect()  # autocommit: every statement is its own transaction
            # Leftovers of an interrupted run: the connector first (it holds the slot), then the rest.
            _nb_helpers.remove_connector(CONNECT_URL, CONNECTOR)
            _nb_helpers.drop_replication_slot(pg, SLOT)
            pg.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
            pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
            leftovers = _nb_helpers.delete_topics_with_prefix(PREFIX + ".")
            """,
            vary=True,
        ),
        md("""
        ## 1. The source table

        One row per aircraft currently in view: its latest position. Two settings make it ready
        for CDC:

        - a **primary key**: it becomes the Kafka message key, so all changes of one row go to the
          same partition, in order;
        - **`REPLICA IDENTITY FULL`**: the WAL logs the whole old row on UPDATE and DELETE, so the
          events' `before` carries every column (by default only the primary key).

        The publication names the table whose changes are decoded. We fill the table with the
        recording's first snapshot (12:00:00 UTC).
        """),
        code("""
        pg.execute(f\"\"\"
            CREATE TABLE {TABLE} (
                icao24          text PRIMARY KEY,
                callsign        text,
                origin_country  text NOT NULL,
                fetch_time      bigint NOT NULL,       -- unix seconds of the snapshot
                longitude       double precision,
                latitude        double precision,
                velocity        double precision
            )\"\"\")
        pg.execute(f"ALTER TABLE {TABLE} REPLICA IDENTITY FULL")
        pg.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}")

        snapshots = load_snapshots()
        COLUMNS = ["icao24", "callsign", "origin_country", "fetch_time", "longitude", "latitude", "velocity"]


        def position(snapshot: dict, state: list) -> tuple:
            \"\"\"The table's columns from one state vector of a snapshot.\"\"\"
            return (state[0], state[1], state[2], snapshot["time"], state[5], state[6], state[9])


        first = snapshots[0]
        with pg.transaction():
            for state in first["states"]:
                pg.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)", position(first, state))
        print("rows in the source table:", pg.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
        """),
        md("""
        ## 2. Register a Debezium connector through the Connect REST API

        A connector is a JSON configuration sent to Kafka Connect with one HTTP `PUT`
        (`/connectors/<name>/config`; the same call updates it later). Its settings: where
        PostgreSQL is *as the Connect worker sees it* (in the docker stack, by its service name),
        which slot and publication to use, the topic prefix, the tables, and plain JSON for keys
        and values. `snapshot.mode=initial` first reads the rows already in the table (events with
        `op = "r"`), then streams changes from the slot.
        """),
        code("""
        ep = endpoints()
        pg_host, pg_port = ep.pg_host, str(ep.pg_port)
        if stack() == "docker":  # the Connect container reaches PostgreSQL by service name
            from harness.ops.docker_stack import in_network_endpoints

            inside = in_network_endpoints()
            pg_host, pg_port = inside["pg_host"], inside["pg_port"]

        config = {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "tasks.max": "1",
            "database.hostname": pg_host,
            "database.port": pg_port,
            "database.user": ep.pg_user,
            "database.password": ep.pg_password,
            "database.dbname": ep.pg_db,
            "plugin.name": "pgoutput",                 # PostgreSQL's built-in logical decoding
            "slot.name": SLOT,
            "publication.name": PUBLICATION,
            "publication.autocreate.mode": "disabled",  # we created it ourselves
            "topic.prefix": PREFIX,
            "table.include.list": f"public.{TABLE}",
            "snapshot.mode": "initial",
            "topic.creation.default.partitions": "1",
            "topic.creation.default.replication.factor": "1",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
        }
        response = requests.put(f"{CONNECT_URL}/connectors/{CONNECTOR}/config", json=config, timeout=60)
        print("PUT config:", response.status_code, "(201 created, 200 updated)")


        def connector_states() -> list[str]:
            \"\"\"The connector's state and its tasks' states; fails loudly on FAILED.\"\"\"
            status = requests.get(f"{CONNECT_URL}/connectors/{CONNECTOR}/status", timeout=10).json()
            parts = [status.get("connector", {})] + status.get("tasks", [])
            if any(p.get("state") == "FAILED" for p in parts):
                raise RuntimeError("connector failed: " + next(p["trace"] for p in parts if p.get("trace"))[:2000])
            return [p.get("state") for p in parts]


        def running() -> list[str] | None:
            states = connector_states()
            return states if len(states) > 1 and set(states) == {"RUNNING"} else None


        print("connector and task:", _nb_helpers.wait_until(running, 90, f"connector {CONNECTOR} to run"))
        """),
        md("""
        ## 3. Read the change events

        Debezium creates the topic with its first event (one partition, as configured). One
        consumer reads it from offset 0 and keeps every event: the Kafka message key (the primary
        key), the value (the event; `None` for a *tombstone*, see below) and the time Kafka
        received it. It `assign`s the partition itself instead of joining a consumer group: a
        notebook that only looks needs no group and commits nothing. `read_events` polls until a
        condition holds, with a time limit.
        """),
        code("""
        admin = kafka_admin()
        _nb_helpers.wait_until(lambda: TOPIC in admin.list_topics(timeout=10).topics, 60, f"topic {TOPIC}")
        reader = Consumer(kafka_config(**{"group.id": "nb04_reader", "enable.auto.commit": False}))
        reader.assign([TopicPartition(TOPIC, 0, 0)])  # partition 0, from offset 0
        events: list[dict] = []


        def read_events(done, timeout: float = 60.0) -> None:
            \"\"\"Append events to `events` until `done(events)` is true; TimeoutError after `timeout` s.\"\"\"
            deadline = time.monotonic() + timeout
            while not done(events):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {len(events)} events after {timeout:.0f} s")
                msg = reader.poll(0.5)
                if msg is None:
                    continue
                if msg.error():
                    raise RuntimeError(msg.error())
                value = json.loads(msg.value()) if msg.value() is not None else None
                events.append({
                    "key": json.loads(msg.key())["icao24"],
                    "event": value,
                    "op": value["op"] if value else "tombstone",
                    "kafka_ms": msg.timestamp()[1],
                })


        rows_now = len(first["states"])
        read_events(lambda evs: len(evs) >= rows_now)
        print("events so far:", dict(sorted(Counter(e["op"] for e in events).items())))
        """),
        md("""
        The snapshot produced one `r` event per existing row: `before` is null (nothing was there
        before), `after` is the row. Here is the first one, with the `source` fields that do not
        change between runs:
        """),
        code("""
        def show(event: dict) -> None:
            source_keys = ("connector", "name", "db", "schema", "table")
            trimmed = {
                "op": event["op"],
                "before": event["before"],
                "after": event["after"],
                "source": {k: event["source"][k] for k in source_keys},
            }
            print(json.dumps(trimmed, indent=1))


        show(events[0]["event"])
        """),
        md("""
        ## 4. Insert, update, delete — one each, by hand

        Two minutes later (12:02:00) new aircraft have appeared, the others have moved, and some
        have left. We write three of those changes ourselves:
        """),
        code("""
        later = snapshots[12]  # 12:02:00: the snapshots are ten seconds apart
        assert later["time"] - first["time"] == 120
        now_states = {s[0]: s for s in later["states"]}
        before_ids = [s[0] for s in first["states"]]
        newcomer = next(i for i in now_states if i not in before_ids and now_states[i][9] is not None)
        mover = next(i for i in before_ids if i in now_states)
        leaver = next(i for i in before_ids if i not in now_states)
        print(f"insert {newcomer}, update {mover}, delete {leaver}")

        seen = len(events)
        pg.execute(f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)", position(later, now_states[newcomer]))
        _, callsign, _, fetch_time, lon, lat, velocity = position(later, now_states[mover])
        pg.execute(
            f"UPDATE {TABLE} SET fetch_time = %s, longitude = %s, latitude = %s, velocity = %s WHERE icao24 = %s",
            (fetch_time, lon, lat, velocity, mover),
        )
        pg.execute(f"DELETE FROM {TABLE} WHERE icao24 = %s", (leaver,))

        read_events(lambda evs: len(evs) >= seen + 4)  # c, u, d and the tombstone after the delete


        def velocity(event: dict | None, side: str) -> float | None:
            row = event[side] if event else None  # a tombstone has no event at all
            return row["velocity"] if row else None


        pd.DataFrame(
            {
                "op": e["op"],
                "key": e["key"],
                "velocity before": velocity(e["event"], "before"),
                "velocity after": velocity(e["event"], "after"),
            }
            for e in events[seen:]
        )
        """),
        md("""
        The update carries the whole row before and after (thanks to `REPLICA IDENTITY FULL`), so
        a consumer sees *what* changed without asking the database:
        """),
        code("""
        show(next(e["event"] for e in events[seen:] if e["op"] == "u"))
        """),
        md("""
        After the delete comes a **tombstone**: a message with the same key and no value. On a
        *compacted* topic Kafka eventually keeps only the latest message per key; the tombstone
        lets it drop the deleted row's key altogether.

        ## 5. A timeline: ten minutes of traffic, change by change

        Now the table follows the recording: for every minute from 12:02 to 12:11 (played half a
        second apart) one transaction inserts the newly seen aircraft, updates those
        whose state changed and deletes those no longer in view. After each commit we note the
        time and how many rows the source table has.
        """),
        code("""
        def sync_to(snapshot: dict) -> int:
            \"\"\"Make the table hold exactly the aircraft of `snapshot`, in one transaction.

            Returns the number of Kafka messages to expect: one per row inserted or updated, two
            per row deleted (the delete event and its tombstone).
            \"\"\"
            present = [position(snapshot, s) for s in snapshot["states"]]
            messages = 0
            with pg.transaction():
                for row in present:
                    messages += pg.execute(
                        f\"\"\"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)
                        ON CONFLICT (icao24) DO UPDATE SET
                            callsign = EXCLUDED.callsign, fetch_time = EXCLUDED.fetch_time,
                            longitude = EXCLUDED.longitude, latitude = EXCLUDED.latitude,
                            velocity = EXCLUDED.velocity
                        WHERE ({TABLE}.callsign, {TABLE}.longitude, {TABLE}.latitude, {TABLE}.velocity)
                            IS DISTINCT FROM (EXCLUDED.callsign, EXCLUDED.longitude, EXCLUDED.latitude,
                                              EXCLUDED.velocity)\"\"\",
                        row,
                    ).rowcount  # 0 when the row exists unchanged
                deleted = pg.execute(
                    f"DELETE FROM {TABLE} WHERE icao24 <> ALL(%s)", ([r[0] for r in present],)
                ).rowcount
            return messages + 2 * deleted


        timeline_start = len(events)
        rows_before_timeline = pg.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        timeline_t0 = time.time() * 1000
        expected = 0
        source_counts = []  # (wall time in ms, rows in the source table)
        for minute in range(2, 12):
            expected += sync_to(snapshots[6 * minute])
            count = pg.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
            source_counts.append((time.time() * 1000, count))
            time.sleep(0.5)

        final_rows = pg.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE}").fetchall()
        read_events(lambda evs: len(evs) >= timeline_start + expected)
        print("rows in the source table at 12:11:", len(final_rows))
        print("messages of the timeline:", dict(sorted(Counter(e["op"] for e in events[timeline_start:]).items())))
        """),
        md("""
        Do the events alone describe the table? Start from nothing and apply every event in order
        — `r`/`c`/`u` put the `after` row under its key, `d` removes the key — exactly what a
        replica (for example a ClickHouse table fed by this topic) does:
        """),
        code("""
        replica: dict[str, tuple] = {}
        for e in events:
            if e["event"] is None:
                continue  # tombstone: nothing to apply
            if e["op"] == "d":
                replica.pop(e["key"], None)
            else:
                after = e["event"]["after"]
                replica[e["key"]] = tuple(after[c] for c in COLUMNS)

        print("replica rows:", len(replica))
        print("replica equals the source table:", sorted(replica.values()) == sorted(final_rows))
        """),
        code(
            """
            change_events = [e for e in events[timeline_start:] if e["event"] is not None]
            t0 = timeline_t0


            def sec(ms: float) -> float:
                return (ms - t0) / 1000


            fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
            # Top: the source table after each commit, and a replica rebuilt from the events as
            # they arrive in Kafka.
            xs = [0.0] + [sec(t) for t, _ in source_counts]
            ys = [rows_before_timeline] + [n for _, n in source_counts]
            top.step(xs, ys, where="post", color="black", lw=2, label="source table (after each commit)")
            replica_rows = {timeline_t0: rows_before_timeline}  # Kafka time -> rows after its events
            n = rows_before_timeline
            for e in change_events:
                n += {"c": 1, "d": -1}.get(e["op"], 0)
                replica_rows[e["kafka_ms"]] = n
            top.step([sec(ms) for ms in replica_rows], list(replica_rows.values()), where="post", color="tab:orange", ls="--",
                     label="replica rebuilt from the events (as they reach Kafka)")
            top.set(ylabel="rows", title="Source table and its change events, 12:02 to 12:11 UTC")
            top.legend(loc="lower right")
            # Bottom: the events of each transaction (same commit time), stacked by operation.
            per_commit = Counter((e["event"]["source"]["ts_ms"], e["op"]) for e in change_events)
            commits = sorted({ms for ms, _ in per_commit})
            base = [0] * len(commits)
            for op, color, label in (("u", "tab:blue", "update (u)"), ("c", "tab:green", "insert (c)"),
                                     ("d", "tab:red", "delete (d)")):
                heights = [per_commit[(ms, op)] for ms in commits]
                bottom.bar([sec(ms) for ms in commits], heights, width=0.15, bottom=base, color=color,
                           label=f"{label}: {sum(heights)}")
                base = [b + h for b, h in zip(base, heights, strict=True)]
            bottom.set(xlabel="seconds since the start of the timeline",
                       ylabel="events per transaction", ylim=(0, max(base) * 1.35))
            bottom.legend(loc="upper right", ncols=3)
            fig.tight_layout()
            plt.show()
            """,
            vary=True,
        ),
        md("""
        All changes of one transaction share its commit time (`source.ts_ms`), and the replica
        follows each step of the source table a moment later: the time Debezium needs to read
        the WAL and write to Kafka. How long was that, from commit to Kafka?
        """),
        code(
            """
            delays = pd.Series(
                [e["kafka_ms"] - e["event"]["source"]["ts_ms"] for e in change_events], name="ms"
            )
            print(f"commit -> Kafka: median {delays.median():.0f} ms, 95th percentile {delays.quantile(0.95):.0f} ms")
            """,
            vary=True,
        ),
        md("""
        ## 6. Clean up — the slot matters most

        A replication slot makes PostgreSQL keep WAL until its reader confirms it. A forgotten
        slot whose connector is gone keeps WAL **forever** and fills the disk. So: remove the
        connector, then drop its slot, the publication, the table and the topic.
        """),
        code("""
        reader.close()
        print("connector removed:", _nb_helpers.remove_connector(CONNECT_URL, CONNECTOR))
        print("slot dropped:", _nb_helpers.drop_replication_slot(pg, SLOT))
        pg.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
        pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
        pg.close()
        print("topics deleted:", _nb_helpers.delete_topics_with_prefix(PREFIX + "."))
        """),
        md("""
        ## Exercises — then Lab 05

        1. Set `REPLICA IDENTITY DEFAULT` on the table and update a row: what is left of `before`?
           Which consumers would break?
        2. Register the connector with `"snapshot.mode": "no_data"` instead of `"initial"`. Which
           events are missing, and what would a replica built from the topic lack?
        3. Pause the connector (`PUT /connectors/<name>/pause`), make changes, resume it
           (`.../resume`). Are any changes lost? Where did PostgreSQL keep them meanwhile? (Look
           at `pg_replication_slots.confirmed_flush_lsn`.)
        4. Apply the same event twice to `replica`. Does the result change? Why does that
           matter when a consumer restarts and reads some events again?

        **Lab 05** ([`labs/lab05_cdc/README.md`](../labs/lab05_cdc/README.md)) builds the
        platform's CDC pipeline: `processed_flights` and `flight_statistics` ready for CDC, the
        `opensky-postgres` connector from its JSON file, typed change events, an idempotent
        ClickHouse replica, and restarts that neither lose nor double a change. Run its tests
        with `make lab-5`.
        """),
    ]


# =====================================================================================
# 05 — S3 / MinIO
# =====================================================================================
def nb05() -> list[NotebookNode]:
    return [
        md("""
        # 05 — Object storage with S3/MinIO: the layout of a data lake

        The platform keeps its files in S3-compatible object storage — MinIO in the lab stack —
        in three buckets: `raw-data` (snapshots as they came), `processed-data` (cleaned tables)
        and `streaming-aggregations`. Object storage is not a file system: a **bucket** holds
        **objects**, each a key (a string), bytes and a little metadata, written whole and never
        changed in place. "Folders" are only a convention: the `/` in keys, which listings can
        group by.

        This notebook stores the shipped OpenSky recording twice — raw (one gzipped JSON object
        per snapshot) and processed (Parquet) — under *Hive-style* keys
        (`date=2021-10-07/hour=12/…`), draws the bucket as a tree, compares the bytes per
        partition, and shows why the key layout decides what a query has to read.

        It uses one bucket of its own, `nb05-flights`, with the zones as key prefixes `raw/` and
        `processed/`; the bucket is removed at the start (leftovers of an interrupted run) and at
        the end. Run it with the stack up (`make up`).
        """),
        code(
            """
            import gzip
            import io
            import json
            from concurrent.futures import ThreadPoolExecutor
            from datetime import UTC, datetime
            from urllib.parse import unquote

            import _nb_helpers  # the repository on sys.path, clean-up helpers, figure style
            import matplotlib.pyplot as plt
            import pandas as pd
            import pyarrow as pa
            import pyarrow.compute as pc
            import pyarrow.dataset as ds

            from harness.runtime.config import endpoints
            from harness.runtime.data import load_arrow, load_snapshots
            from harness.runtime.services import clickhouse_client, minio_client, s3_filesystem

            BUCKET = "nb05-flights"  # bucket names: lower case, digits, dots and hyphens
            s3 = minio_client()      # MinIO's address and keys come from harness.runtime.config
            removed = _nb_helpers.remove_bucket(s3, BUCKET)
            """,
            vary=True,
        ),
        md("""
        ## 1. A bucket and the raw zone

        The raw zone keeps every snapshot exactly as received, gzipped, one object per snapshot.
        The key says when it was taken — `raw/flights/date=2021-10-07/hour=12/1633608000.json.gz`
        — so "everything of one hour" is one key prefix. Uploads are independent HTTP `PUT`s, so
        a few threads send them in parallel.
        """),
        code("""
        s3.make_bucket(BUCKET)
        snapshots = load_snapshots()


        def raw_key(snapshot_time: int) -> str:
            moment = datetime.fromtimestamp(snapshot_time, UTC)
            return f"raw/flights/date={moment:%Y-%m-%d}/hour={moment:%H}/{snapshot_time}.json.gz"


        def put_snapshot(snapshot: dict) -> str:
            key = raw_key(snapshot["time"])
            body = gzip.compress(json.dumps(snapshot, separators=(",", ":")).encode(), mtime=0)
            s3.put_object(BUCKET, key, io.BytesIO(body), len(body), content_type="application/json",
                          metadata={"Content-Encoding": "gzip", "snapshot-time": str(snapshot["time"])})
            return key


        with ThreadPoolExecutor(max_workers=8) as pool:
            raw_keys = list(pool.map(put_snapshot, snapshots))
        print(f"uploaded {len(raw_keys)} objects, first {raw_keys[0]}, last {raw_keys[-1]}")
        """),
        md("""
        ## 2. Listing: prefixes and the delimiter

        A listing asks for keys under a **prefix**. With the **delimiter** `/` (`recursive=False`
        in the `minio` client) keys that continue past the next `/` are folded into one *common
        prefix* — this is how consoles show folders. S3 returns at most 1,000 keys per request;
        the client fetches the following pages for you.
        """),
        code("""
        day = "raw/flights/date=2021-10-07/"
        for item in s3.list_objects(BUCKET, prefix=day, recursive=False):
            print(item.object_name, "(prefix)" if item.is_dir else f"{item.size} bytes")
        all_raw = list(s3.list_objects(BUCKET, prefix="raw/", recursive=True))
        print(f"{len(all_raw)} keys under raw/ (2 listing pages of at most 1,000)")
        """),
        md("""
        ## 3. The processed zone: Parquet, partitioned by date and hour

        For analysis the rows go to Parquet — columnar, typed, compressed — with pyarrow, which
        writes straight to S3. `partitioning` turns the `date` and `hour` columns into the key
        prefixes `date=…/hour=…/` (and leaves them out of the files: the key carries them).
        """),
        code("""
        fs = s3_filesystem()  # pyarrow's S3 file system on MinIO; paths are "<bucket>/<key>"
        rows = load_arrow()
        moment = pc.cast(rows["fetch_time"], pa.timestamp("s", tz="UTC"))
        rows = rows.append_column("date", pc.strftime(moment, format="%Y-%m-%d")).append_column(
            "hour", pc.cast(pc.hour(moment), pa.int32())
        )
        ds.write_dataset(
            rows,
            f"{BUCKET}/processed/flights",
            filesystem=fs,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("date", pa.string()), ("hour", pa.int32())]), flavor="hive"),
            basename_template="part-{i}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            create_dir=False,  # S3 needs no folders; pyarrow would add empty "marker" objects
        )
        processed = [o.object_name for o in s3.list_objects(BUCKET, prefix="processed/", recursive=True)]
        print("\\n".join(processed))
        """),
        md("""
        ## 4. The bucket as a tree

        Folding keys at each `/` gives the familiar tree. Each partition folder shows how many
        objects it holds and, for the first and last, their names.
        """),
        code("""
        def tree(bucket: str) -> None:
            \"\"\"Print the keys of `bucket` as a tree; folders of objects are summarised.\"\"\"
            keys = sorted(o.object_name for o in s3.list_objects(bucket, recursive=True))
            root: dict = {}
            for key in keys:
                *folders, name = key.split("/")
                node = root
                for folder in folders:
                    node = node.setdefault(folder + "/", {})
                node.setdefault("", []).append(name)  # "" holds the objects of a folder

            def show(node: dict, indent: str) -> None:
                folders = sorted(k for k in node if k)
                for i, folder in enumerate(folders):
                    last = i == len(folders) - 1
                    child = node[folder]
                    files = child.get("", [])
                    note = ""
                    if files and len(files) > 2:
                        note = f"  ({len(files)} objects: {files[0]} … {files[-1]})"
                    elif files:
                        note = f"  ({', '.join(files)})"
                    print(f"{indent}{'└── ' if last else '├── '}{folder}{note}")
                    show(child, indent + ("    " if last else "│   "))

            print(f"{bucket}/")
            show(root, "")


        tree(BUCKET)
        """),
        md("""
        ## 5. Bytes per partition

        The same hours in both zones. JSON spells every value as text and each small object is
        compressed on its own; Parquet stores each column typed and compressed, so a full hour
        is smaller — and 1 object per hour instead of 360 means 360 times fewer requests to read
        it. The last partition holds a single snapshot (15:00:00): there Parquet's fixed
        overhead is larger than the data.
        """),
        code(
            """
            def bytes_per_hour(prefix: str) -> pd.Series:
                sizes = {}
                for o in s3.list_objects(BUCKET, prefix=prefix, recursive=True):
                    hour = next(p for p in o.object_name.split("/") if p.startswith("hour="))
                    sizes[hour] = sizes.get(hour, 0) + o.size
                return pd.Series(sizes)


            per_hour = pd.DataFrame({
                "raw JSON.gz (KB)": bytes_per_hour("raw/") / 1000,
                "Parquet (KB)": bytes_per_hour("processed/flights/") / 1000,
            })
            ax = per_hour.plot.bar(rot=0, color=["tab:gray", "tab:green"])
            ax.set(title="Bytes per hour partition", xlabel="partition (date=2021-10-07/…)", ylabel="KB")
            plt.show()
            per_hour.round(1)
            """,
            vary=True,
        ),
        md("""
        ## 6. The layout decides what a query reads

        A reader that wants 13:00–14:00 lists only the prefix `…/hour=13/`: the other partitions
        are never opened (*partition pruning*). pyarrow does it from a filter on the partition
        column:
        """),
        code("""
        dataset = ds.dataset(f"{BUCKET}/processed/flights", filesystem=fs, format="parquet", partitioning="hive")
        one_hour = ds.field("hour") == 13
        files_read = [f.path for f in dataset.get_fragments(filter=one_hour)]
        table = dataset.to_table(filter=one_hour, columns=["icao24", "origin_country"])
        print("files read:", files_read)
        print(f"rows of 13:00-14:00: {table.num_rows}, aircraft: {len(pc.unique(table['icao24']))}")
        """),
        md("""
        Any engine that speaks S3 reads the same files. ClickHouse's `s3()` table function, with a
        glob over the partition folders (the address is MinIO *as the ClickHouse server sees it*,
        which differs in the docker stack):
        """),
        code("""
        ep = endpoints()
        url = f"{ep.clickhouse_s3_endpoint}/{BUCKET}/processed/flights/*/*/*.parquet"
        ch = clickhouse_client()
        total, aircraft = ch.query(
            "SELECT count(), uniqExact(icao24) FROM s3({url:String}, {key:String}, {secret:String}, 'Parquet')",
            parameters={"url": url, "key": ep.minio_access_key, "secret": ep.minio_secret_key},
        ).result_rows[0]
        print(f"ClickHouse reads {total} rows of {aircraft} aircraft from the Parquet files")
        """),
        md("""
        ## 7. Too many partitions

        Partitioning by a column with many values — or very uneven ones — makes many small
        objects. Partition the same rows by `origin_country`:
        """),
        code("""
        by_country = rows.drop_columns(["date", "hour"])
        ds.write_dataset(
            by_country,
            f"{BUCKET}/processed/flights_by_country",
            filesystem=fs,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("origin_country", pa.string())]), flavor="hive"),
            basename_template="part-{i}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            create_dir=False,  # S3 needs no folders; pyarrow would add empty "marker" objects
        )
        country_objects = list(s3.list_objects(BUCKET, prefix="processed/flights_by_country/", recursive=True))
        print(f"{len(country_objects)} objects, for example:")
        for o in country_objects[:2] + [o for o in country_objects if "United" in o.object_name]:
            print(" ", o.object_name)
        """),
        code(
            """
            def country_of(key: str) -> str:
                \"\"\"The partition value in a key, URL-decoded: ...=United%20Kingdom/... -> United Kingdom.\"\"\"
                return unquote(key.split("/")[2].split("=", 1)[1])


            sizes = pd.Series({country_of(o.object_name): o.size / 1000 for o in country_objects})
            sizes = sizes.sort_values(ascending=False)
            ax = sizes.plot.bar(figsize=(11, 4), color="tab:purple", logy=True)
            ax.set(title="Bytes per origin_country partition (log scale)", ylabel="KB", xlabel="")
            ax.tick_params(axis="x", labelsize=7)
            plt.show()
            print(f"largest {sizes.index[0]} {sizes.iloc[0]:.0f} KB, median {sizes.median():.1f} KB, "
                  f"smallest {sizes.iloc[-1]:.1f} KB")
            """,
            vary=True,
        ),
        md("""
        One partition holds a third of the data; most of the others are a few kilobytes — largely
        Parquet's fixed overhead (schema, footer, column statistics), as in the one-snapshot
        `hour=15` partition above. Every reader pays a request and a footer for a handful of
        rows. Values also end up in keys, URL-encoded (`United%20Kingdom`). Good partition
        columns are ones queries filter on, with a moderate number of values of similar size —
        like the hour.

        ## 8. Clean up

        A bucket must be empty before it can be deleted.
        """),
        code("""
        print("objects removed:", _nb_helpers.remove_bucket(s3, BUCKET))
        print("bucket still there:", s3.bucket_exists(BUCKET))
        """),
        md("""
        ## Exercises — then Lab 06

        1. List `raw/flights/` page by page yourself: `start_after` the last key of the previous
           page, pages of 100 keys. Do you get every key exactly once?
        2. Partition the Parquet files by `date` only. How many objects, how many bytes? Which
           queries get slower?
        3. Upload the same key twice with different content, then turn on versioning
           (`s3.set_bucket_versioning`) and try again: what does `list_objects(...,
           include_version=True)` show?
        4. Make a presigned GET link for one raw object (`s3.presigned_get_object`, 10 minutes)
           and download it with `requests` — no credentials needed.

        **Lab 06** ([`labs/lab06_s3/README.md`](../labs/lab06_s3/README.md)) builds the
        platform's lake in its three buckets: bucket policies, the raw layout with paged
        listings, partitioned Parquet from pyarrow and Spark (`s3a://`), presigned links,
        versioning, lifecycle rules and multipart uploads. Run its tests with `make lab-6`.
        """),
    ]


NOTEBOOKS: dict[str, tuple[str, Callable[[], list[NotebookNode]]]] = {
    "01": ("01_batch_vs_streaming.ipynb", nb01),
    "02": ("02_kafka_basics.ipynb", nb02),
    "03": ("03_clickhouse_basics.ipynb", nb03),
    "04": ("04_debezium_cdc.ipynb", nb04),
    "05": ("05_s3_minio.ipynb", nb05),
}


def build(number: str) -> NotebookNode:
    """The notebook `number` ("01".."05") as generated from this file, without outputs."""
    filename, cells = NOTEBOOKS[number]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = cells()
    stem = filename.split("_")[0]
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"nb{stem}-{index:02d}"  # stable ids: rebuilding changes no line
    return nb


def differences(number: str, path: Path | None = None) -> list[str]:
    """How the stored notebook differs from this file (cell kinds, sources, tags); [] when equal."""
    filename, _ = NOTEBOOKS[number]
    path = path or NOTEBOOK_DIR / filename
    if not path.exists():
        return [f"{path.name} does not exist"]
    stored = nbformat.read(path, as_version=4)
    wanted = build(number)
    found = []
    if len(stored.cells) != len(wanted.cells):
        found.append(f"{path.name}: {len(stored.cells)} cells, this file makes {len(wanted.cells)}")
    for i, (old, new) in enumerate(zip(stored.cells, wanted.cells, strict=False)):
        for what in ("cell_type", "source"):
            if old.get(what) != new.get(what):
                found.append(f"{path.name} cell {i}: {what} differs")
        if old.get("metadata", {}).get("tags", []) != new.get("metadata", {}).get("tags", []):
            found.append(f"{path.name} cell {i}: tags differ")
    return found


def write(number: str) -> Path:
    filename, _ = NOTEBOOKS[number]
    path = NOTEBOOK_DIR / filename
    nbformat.write(build(number), path)
    return path


def execute(path: Path) -> None:
    """Run a notebook in place with the venv's kernel, storing its outputs."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            f"--ExecutePreprocessor.timeout={EXECUTE_TIMEOUT_S}",
            "--ExecutePreprocessor.kernel_name=python3",
            "--ExecutePreprocessor.record_timing=False",
            str(path),
        ],
        check=True,
        cwd=ROOT,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("numbers", nargs="*", help="notebooks to build (01..05; default all)")
    parser.add_argument("--execute", action="store_true", help="run them to store outputs")
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    numbers = args.numbers or list(NOTEBOOKS)
    unknown = [n for n in numbers if n not in NOTEBOOKS]
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; choose from {list(NOTEBOOKS)}")
    if args.check:
        found = [d for n in numbers for d in differences(n)]
        print("\n".join(found) or "notebooks match tools/build_notebooks.py")
        return 1 if found else 0
    for number in numbers:
        path = write(number)
        print(f"wrote {path.relative_to(ROOT)}")
        if args.execute:
            execute(path)
            print(f"executed {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
