# %% [markdown]
# # 01 — Batch vs streaming
#
# The platform processes the same flight data in two ways:
#
# - **batch** (Lab 01's `batch_processor.py`): take everything collected so far, process
#   it at once, write the results (`flights_batch` in ClickHouse, Parquet in S3);
# - **streaming** (Lab 02's `streaming_processor.py`, Spark Structured Streaming): process
#   the data in small *micro-batches* as it arrives (every 10 seconds on the platform) and
#   keep the results up to date (`flights_streaming`).
#
# This notebook looks at the data first — where the aircraft are — then runs both kinds of
# Spark job over the same Kafka topic and **measures** what the comparison table at the end
# claims: how long a result takes (latency) and how many rows per second each gets through
# (throughput).
#
# Run the cells from top to bottom with the stack up (`make up`). The notebook uses the
# topics `nb01_flights` and `nb01_live`, deleted at the start (leftovers of an interrupted
# run) and at the end. Spark runs inside the notebook (`local[2]`); starting it takes
# 20–30 seconds, the whole notebook about a minute or two.

# %% tags=["nbval-ignore-output"]
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

# %% [markdown]
# ## 1. The data: three hours of real air traffic
#
# The shipped recording (see `data/DATA.md`) holds OpenSky `/api/states/all` snapshots
# every 10 seconds, 2021-10-07 12:00–15:00 UTC, around Paris and over Switzerland. Each
# snapshot lists the *state vector* of every aircraft in view: position, altitude, speed,
# the country its transponder address is registered to (`origin_country`), and more.

# %%
flights = load_pandas()  # one row per state vector, nulls as recorded
print(f"snapshots:         {flights['fetch_time'].nunique()}")
print(f"state vectors:     {len(flights)}")
print(f"aircraft (icao24): {flights['icao24'].nunique()}")
print(f"countries:         {flights['origin_country'].nunique()}")
print(f"without position:  {flights['longitude'].isna().sum()} (not heard for 15-60 s)")
print(
    f"time span:         {pd.to_datetime(flights['fetch_time'].min(), unit='s')} -> "
    f"{pd.to_datetime(flights['fetch_time'].max(), unit='s')} UTC"
)

# %% [markdown]
# Every position of the three hours, coloured by the aircraft's country. Two regions were
# recorded: all altitudes around Paris (note the airports, where tracks converge) and the
# high-altitude traffic crossing Switzerland.

# %% tags=["nbval-ignore-output"]
positions = flights.dropna(subset=["longitude", "latitude"])
top = positions["origin_country"].value_counts().index[:8]
fig, ax = plt.subplots(figsize=(10, 5.5))
rest = positions[~positions["origin_country"].isin(top)]
ax.scatter(rest["longitude"], rest["latitude"], s=1, color="lightgrey", label="other countries")
for country, color in zip(top, plt.cm.tab10.colors, strict=False):
    mine = positions[positions["origin_country"] == country]
    ax.scatter(mine["longitude"], mine["latitude"], s=1, color=color, label=country)
ax.set(
    title="Aircraft positions, 2021-10-07 12:00-15:00 UTC, by origin_country",
    xlabel="longitude (°)",
    ylabel="latitude (°)",
)
ax.set_aspect(1 / 0.68)  # a degree of longitude is ~0.68 of a degree of latitude here
ax.annotate("around Paris, all altitudes", (2.4, 47.45), ha="center")
ax.annotate("Switzerland, above 30,000 ft", (8.2, 47.9), ha="center")
ax.legend(markerscale=8, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
plt.show()

# %%
flights.groupby("origin_country").agg(
    state_vectors=("icao24", "size"), aircraft=("icao24", "nunique")
).sort_values("state_vectors", ascending=False).head(8)

# %% [markdown]
# ## 2. Put the recording on Kafka
#
# On the platform the collector publishes each snapshot to Kafka as it polls OpenSky.
# `harness.runtime.replay` does the same from the recording: one message per snapshot, here as
# fast as the broker takes them (`speed=0`). One partition keeps this notebook's
# micro-batches the same on every run.

# %%
report = replay(topic=TOPIC, speed=0, partitions=1)
print(
    f"{report.delivered} of {report.messages} snapshots delivered to {TOPIC}, {report.failed} failed"
)

# %% [markdown]
# ## 3. Start Spark
#
# One Spark session for the notebook, with the Kafka connector on its class path
# (`harness.runtime.spark.get_spark()`, the same factory the labs use: `local[2]`, UTC, small
# shuffles). Spark logs only errors, to `.stack/logs/notebooks-native-stderr.log` (see
# `_nb_helpers.py`) rather than into the cells.

# %% tags=["nbval-ignore-output"]
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from harness.runtime.schema import spark_snapshot_schema
from harness.runtime.spark import get_spark

spark = get_spark("nb01-batch-vs-streaming")
spark.sparkContext.setLogLevel("ERROR")
KAFKA = {"kafka.bootstrap.servers": endpoints().kafka_bootstrap}
print("Spark", spark.version, "on", spark.sparkContext.master)


# %% [markdown]
# Batch and streaming share the transformation: parse the message value as a snapshot,
# one row per state vector, keep the country. (A state vector is a JSON array of mixed
# types, read as strings; field 2 is `origin_country`.)


# %%
def state_vectors(messages: DataFrame) -> DataFrame:
    """Kafka messages (snapshots) -> one row per state vector: origin_country, produced_at."""
    snapshot = F.from_json(F.col("value").cast("string"), spark_snapshot_schema())
    return (
        messages.select(snapshot.alias("snap"), F.col("timestamp").alias("produced_at"))
        .select("produced_at", F.explode("snap.states").alias("state"))
        .select(F.col("state")[2].alias("origin_country"), "produced_at")
    )


# %% [markdown]
# ## 4. Batch: everything at once
#
# `spark.read` (not `readStream`) reads the topic from the first to the last offset *as it
# is now*, processes it and stops. The result is complete — for the data that existed when
# the job started.
#
# The first query in a fresh Spark session is slow (the JVM compiles code, Spark generates
# and compiles its own), so a warm-up run over the first 50 messages comes first; then
# the job over all of them is timed.


# %%
def batch_job(ending_offsets: str = "latest") -> dict[str, int]:
    """State vectors per country in TOPIC, from the first offset up to `ending_offsets`."""
    messages = (
        spark.read.format("kafka")
        .options(**KAFKA)
        .option("subscribe", TOPIC)
        .option("endingOffsets", ending_offsets)
        .load()
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

# %% tags=["nbval-ignore-output"]
print(f"took {batch_seconds:.1f} s: {batch_rows / batch_seconds:,.0f} rows/s")

# %% [markdown]
# ## 5. Streaming, catching up: the same data in micro-batches
#
# `spark.readStream` turns the topic into an unbounded table. With the trigger
# `availableNow` the query processes what is there now — in micro-batches of at most
# `maxOffsetsPerTrigger` messages — and stops; a checkpoint folder remembers which offsets
# are done. `foreachBatch` hands each micro-batch to our function as an ordinary
# DataFrame; it adds the batch's counts to a running total.

# %%
stream_counts: dict[str, int] = {}
micro_batches: list[dict] = []


def add_batch(batch: DataFrame, batch_id: int) -> None:
    rows = batch.groupBy("origin_country").count().collect()
    for row in rows:
        stream_counts[row["origin_country"]] = (
            stream_counts.get(row["origin_country"], 0) + row["count"]
        )
    micro_batches.append(
        {"batch": batch_id, "rows": sum(r["count"] for r in rows), "done": time.time()}
    )


checkpoints = tempfile.TemporaryDirectory(prefix="nb01_checkpoints_")
started = time.perf_counter()
query = (
    state_vectors(
        spark.readStream.format("kafka")
        .options(**KAFKA)
        .option("subscribe", TOPIC)
        .option("startingOffsets", "earliest")
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

# %% tags=["nbval-ignore-output"]
print(f"took {catch_up_seconds:.1f} s: {batch_rows / catch_up_seconds:,.0f} rows/s")
pd.DataFrame(micro_batches).set_index("batch")[["rows"]].T

# %% [markdown]
# Same answer, more work: every micro-batch pays for planning, offset bookkeeping and a
# checkpoint write, so catching up in small steps gets fewer rows per second through than
# one batch job. What streaming buys is shown next.
#
# ## 6. Streaming, live: latency
#
# Now the data arrives while the query runs. A streaming query with a `processingTime`
# trigger of 1 second reads `nb01_live`, while the first 20 minutes of the recording
# (120 snapshots) are replayed to it at 120× speed — a snapshot every 83 ms, for 10
# seconds. For every message we note when it was produced (Kafka's timestamp) and when
# the micro-batch containing it was done: the difference is its **latency**.

# %%
ensure_topic(LIVE_TOPIC, partitions=1)
live_latencies: list[dict] = []


def note_latency(batch: DataFrame, batch_id: int) -> None:
    produced = [
        r["t"] for r in batch.select(F.col("timestamp").cast("double").alias("t")).collect()
    ]
    done = time.time()
    live_latencies.extend({"produced": t, "done": done, "batch": batch_id} for t in produced)


live = (
    spark.readStream.format("kafka")
    .options(**KAFKA)
    .option("subscribe", LIVE_TOPIC)
    .option("startingOffsets", "earliest")
    .load()
    .writeStream.foreachBatch(note_latency)
    .option("checkpointLocation", f"{checkpoints.name}/live")
    .trigger(processingTime="1 second")
    .start()
)
first_20_min = load_snapshots()[:120]
live_report = replay(topic=LIVE_TOPIC, speed=120, snapshots=first_20_min)
replay_done = time.time()
_nb_helpers.wait_until(
    lambda: len(live_latencies) >= live_report.delivered, 60, "the live query to see every message"
)
live.stop()
print(f"replayed {live_report.delivered} snapshots; the live query processed {len(live_latencies)}")

# %% [markdown]
# For comparison, a **batch** job over the same 20 minutes can only start once they are
# complete. Run it now — right after the replay ended — and time it; a message's latency
# is then the wait until the end of the period plus the job's duration.

# %%
started = time.perf_counter()
live_rows = state_vectors(
    spark.read.format("kafka").options(**KAFKA).option("subscribe", LIVE_TOPIC).load()
).count()
small_batch_seconds = time.perf_counter() - started
print(f"batch job over the 20 minutes: {live_rows} state vectors")

# %% tags=["nbval-ignore-output"]
stream = pd.DataFrame(live_latencies)
stream["latency"] = stream["done"] - stream["produced"]
t0 = stream["produced"].min()
stream["x"] = stream["produced"] - t0
batch_latency = (replay_done - stream["produced"]) + small_batch_seconds

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
left.plot(stream["x"], batch_latency, color="tab:blue", label="batch job after the period")
left.scatter(
    stream["x"], stream["latency"], s=6, color="tab:orange", label="streaming, 1 s trigger"
)
left.set(
    title="Latency per message: produced -> in a result",
    xlabel="seconds into the replay (when the message was produced)",
    ylabel="seconds",
)
left.legend()
throughput = pd.Series(
    {
        "batch\n(3 h, one job)": batch_rows / batch_seconds,
        "streaming\ncatching up": batch_rows / catch_up_seconds,
        "streaming\nlive": live_rows / (stream["done"].max() - t0),
    }
)
throughput.plot.bar(ax=right, rot=0, color=["tab:blue", "tab:orange", "tab:orange"])
right.set(title="Throughput", ylabel="state vectors per second")
fig.tight_layout()
plt.show()
print(
    f"streaming latency: median {stream['latency'].median():.2f} s, "
    f"max {stream['latency'].max():.2f} s over {stream['batch'].nunique()} micro-batches"
)
print(f"batch latency:     median {batch_latency.median():.2f} s, max {batch_latency.max():.2f} s")

# %% [markdown]
# What the picture says:
#
# - **Latency.** A streamed message is in a result about a trigger interval (plus the
#   batch's processing time) after it was produced — whatever the length of the period.
#   A batch result waits for the end of the period: here 10 seconds of replay; for the
#   platform's daily job, up to a day.
# - **Throughput.** A big batch job amortises its fixed costs over all rows; streaming
#   pays them every micro-batch. Live, a streaming query only *needs* to keep up with the
#   arrival rate — its throughput there is just the rate the data comes in — and catching
#   up shows how much headroom it has.
#
# The comparison the platform is designed around, with what you measured:
#
# | | Batch | Streaming |
# |---|---|---|
# | Latency | high (hours/days; here: the whole period + the job) | low (seconds: about one trigger interval) |
# | Data per run | large | small micro-batches |
# | Resources | high but periodic | constant |
# | Complexity | simpler | harder (state, checkpoints, late data, restarts) |
# | Use | historical analysis, reports, ML | monitoring, alerts, dashboards |
# | Storage on the platform | ClickHouse `flights_batch`, S3 | ClickHouse `flights_streaming` |
#
# ## 7. Clean up

# %%
spark.stop()
checkpoints.cleanup()
print("deleted topics:", _nb_helpers.delete_topics([TOPIC, LIVE_TOPIC]))

# %% [markdown]
# ## Exercises — then Labs 01 and 02
#
# 1. Change the live trigger to `processingTime="5 seconds"`. How do the latencies change?
#    What is the smallest useful interval on your machine (look at how long one
#    micro-batch takes)?
# 2. Set `maxOffsetsPerTrigger` to 20, then 1000, in the catch-up query. How do the number
#    of micro-batches and the throughput change, and why?
# 3. Run the catch-up query twice with the same checkpoint folder. What does the second
#    run process, and why is that what you want after a crash?
# 4. Count aircraft per country in **1-minute windows of event time** (the snapshot's
#    `time`, not Kafka's timestamp) with `F.window`. Why can a window's count change after
#    it was first reported, and what does a watermark do about it?
#
# **Lab 01** ([`labs/lab01_batch/README.md`](../labs/lab01_batch/README.md), `make lab-1`)
# builds the batch job: raw snapshots to clean rows with rejected rows counted, Parquet in
# S3 and `flights_batch` in ClickHouse. **Lab 02**
# ([`labs/lab02_streaming/README.md`](../labs/lab02_streaming/README.md), `make lab-2`)
# builds the streaming job: Kafka source with a dead-letter sink, event-time windows and
# watermarks, idempotent sinks via `foreachBatch`, checkpoints and restarts.
