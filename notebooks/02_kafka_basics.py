# %% [markdown]
# # 02 — Kafka basics: topics, partitions, keys, consumer groups and lag
#
# On the platform every flight position enters through Kafka (topic `raw_flights`). This
# notebook shows the four ideas you need to work with it, on the real broker of the lab stack
# and the shipped OpenSky recording:
#
# 1. a **topic** is split into **partitions**; each is an append-only log numbered by **offset**;
# 2. the message **key** chooses the partition, so one aircraft's positions stay together and
#    in order;
# 3. a **consumer group** shares the partitions among its consumers and remembers how far it
#    got (its **committed offsets**);
# 4. the **lag** — messages written but not yet processed by a group — tells whether the
#    consumers keep up.
#
# Run the cells from top to bottom with the stack up (`make up`; `make status` checks it).
# Everything this notebook creates is named `nb02_…`; it is removed at the start (left over
# from an interrupted run) and again at the end.

# %% tags=["nbval-ignore-output"]
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

# %% [markdown]
# ## 1. A topic with three partitions
#
# The admin client creates topics. Partitions are the unit of parallelism: within one
# consumer group, each partition is read by exactly one consumer. Replication factor 1 is
# enough for the single broker of the lab stack (production clusters use 3).

# %%
futures = admin.create_topics([NewTopic(TOPIC, num_partitions=PARTITIONS, replication_factor=1)])
futures[TOPIC].result(timeout=30)  # raises if the broker refused

# A new topic's partitions get their leader a moment after creation: wait for all three.
topic_meta = _nb_helpers.wait_for_topic(TOPIC, PARTITIONS)
print(f"{TOPIC}: partitions {sorted(topic_meta.partitions)}")

# %% [markdown]
# ## 2. Produce one message per state vector, keyed by the aircraft
#
# Each row of the recording (one aircraft at one time) becomes one JSON message whose key is
# the aircraft's `icao24` address. The producer hashes the key to pick the partition, so every
# message of one aircraft lands in the same partition — and Kafka keeps order *within* a
# partition only. (librdkafka, behind `confluent-kafka`, hashes keys with CRC32 by default;
# the Java client uses murmur2 — set `partitioner=murmur2_random` when both must agree.)
#
# With `acks=all` the broker confirms a message only once it is safely stored, and
# `enable.idempotence` makes sure a retry never writes a message twice. The delivery
# callback counts the confirmations, so nothing is lost without us knowing.

# %%
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

print(
    f"produced {len(rows)} messages: delivered {sum(delivered.values())}, "
    f"failed {len(failures)}, still queued {still_queued}"
)

# %% tags=["nbval-ignore-output"]
print(f"{len(rows) / produce_seconds:,.0f} messages per second from one Python producer")

# %% [markdown]
# ## 3. Messages per partition
#
# Each partition has a *low* and a *high watermark*: the first offset still stored and the
# offset the next message will get. Their difference is the number of messages in it. The
# split is not even: it follows the keys, and a busy aircraft (many positions) weighs more
# than a quiet one.

# %%
inspector = Consumer(kafka_config(**{"group.id": "nb02_inspector"}))  # never joins: no commits
per_partition = []
for p in range(PARTITIONS):
    low, high = inspector.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
    per_partition.append({"partition": p, "low": low, "high": high, "messages": high - low})
inspector.close()

partitions = pd.DataFrame(per_partition).set_index("partition")
partitions

# %% tags=["nbval-ignore-output"]
ax = partitions["messages"].plot.bar(color="tab:blue", rot=0)
ax.set(title=f"Messages per partition of {TOPIC}", xlabel="partition", ylabel="messages")
for i, n in enumerate(partitions["messages"]):
    ax.annotate(f"{n:,}", (i, n), ha="center", va="bottom")
plt.show()

# %% [markdown]
# ## 4. Read it back: one aircraft, one partition, in order
#
# A consumer can also read without a group: `assign()` names the partitions and offsets
# itself. We read every partition from offset 0 to its high watermark and check the promise
# of keyed messages.

# %%
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

# %% [markdown]
# The first message of partition 0 (offset 0): its key is the aircraft, its value the row.

# %%
key, value = first_message
print("key:", key)
print("value:", json.dumps(value, indent=1))


# %% [markdown]
# ## 5. Consumer groups, committed offsets and lag
#
# A dashboard reads the topic in the consumer group `nb02_dashboard`. It processes 20,000
# messages and then stops — say it crashed. Because it **commits offsets only after
# processing** (at-least-once delivery), the group remembers exactly what was done.
#
# The **lag** of a group on a partition is `high watermark - committed offset`: the messages
# still waiting for it. Growing lag means the consumers fall behind the producers.


# %%
def consume_in_group(limit: int, timeout: float = 60.0) -> Counter[str]:
    """Process up to `limit` messages in GROUP (count flights per country), then commit."""
    consumer = Consumer(
        kafka_config(
            **{
                "group.id": GROUP,
                "auto.offset.reset": "earliest",  # a new group starts at the beginning
                "enable.auto.commit": False,  # we commit after processing, ourselves
            }
        )
    )
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
    consumer.commit(
        offsets=[TopicPartition(TOPIC, p, o) for p, o in next_offsets.items()], asynchronous=False
    )
    consumer.close()
    return per_country


def group_lag() -> pd.DataFrame:
    """Committed offset and lag of GROUP per partition, as the broker reports them."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    request = ConsumerGroupTopicPartitions(
        GROUP, [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    )
    answer = admin.list_consumer_group_offsets([request])[GROUP].result(timeout=15)
    committed = {tp.partition: max(tp.offset, 0) for tp in answer.topic_partitions}
    table = partitions[["high"]].copy()
    table["committed"] = [committed[p] for p in table.index]
    table["lag"] = table["high"] - table["committed"]
    return table


processed = consume_in_group(20_000)
lag_after_crash = group_lag()
print(f"processed {sum(processed.values())} messages; total lag now {lag_after_crash['lag'].sum()}")

# %% [markdown]
# Which partitions the 20,000 messages came from depends on how the consumer happened to
# fetch them, so the split below changes from run to run; the total does not.

# %% tags=["nbval-ignore-output"]
lag_after_crash

# %% [markdown]
# A consumer that starts again **in the same group** continues at the committed offsets: it
# neither skips nor repeats what the first one committed. It processes the rest, and the lag
# drops to zero.

# %%
processed_rest = consume_in_group(len(rows) - 20_000)
lag_caught_up = group_lag()
print(
    f"processed {sum(processed_rest.values())} more; "
    f"in total {sum((processed + processed_rest).values())} of {len(rows)} messages"
)
print("lag per partition now:", {p: int(n) for p, n in lag_caught_up["lag"].items()})

# %% tags=["nbval-ignore-output"]
fig, ax = plt.subplots()
width = 0.38
x = lag_after_crash.index.to_numpy()
ax.bar(x - width / 2, lag_after_crash["committed"], width, label="committed (processed)")
ax.bar(
    x - width / 2,
    lag_after_crash["lag"],
    width,
    bottom=lag_after_crash["committed"],
    label="lag after the crash",
    color="tab:red",
)
ax.bar(
    x + width / 2,
    lag_caught_up["committed"],
    width,
    label="committed after catching up",
    color="tab:green",
)
ax.set(
    title=f"Consumer group {GROUP}: committed offsets and lag per partition",
    xlabel="partition",
    ylabel="messages",
    xticks=x,
    ylim=(0, lag_after_crash["high"].max() * 1.3),
)
ax.legend(loc="upper center", ncols=3, fontsize=8)
plt.show()

# %% [markdown]
# The country counts of the two runs together are exactly those of the recording — the
# crash lost nothing and doubled nothing:

# %%
expected = Counter(row["origin_country"] for row in rows)
together = processed + processed_rest
print("same counts as the recording:", together == expected)
pd.Series(together, name="messages").sort_values(ascending=False).head(8).to_frame()

# %% [markdown]
# ## 6. Clean up
#
# Delete the group (it has no members left) and the topic.

# %%
print("deleted groups:", _nb_helpers.delete_consumer_groups([GROUP]))
print("deleted topics:", _nb_helpers.delete_topics([TOPIC]))

# %% [markdown]
# ## Exercises — then Lab 03
#
# 1. Produce the rows again **without a key** (`key=None`). Is every aircraft still in one
#    partition? Is the time-order check still true? Why does that matter to a consumer
#    that computes each aircraft's speed changes?
# 2. Create the topic with 6 partitions instead of 3 and produce with keys again. Which
#    aircraft change partition? What does that mean for a topic that already holds data
#    when you add partitions?
# 3. In `consume_in_group`, commit *before* processing (move the commit into the loop,
#    before `per_country[...] += 1`) and "crash" half-way through a batch. Which delivery
#    guarantee do you get now?
# 4. Start two consumers in the same group at once (two `Consumer` objects, polled in turns)
#    and print `consumer.assignment()` for each: how are the 3 partitions shared? What happens
#    with 4 consumers?
#
# **Lab 03** ([`labs/lab03_kafka/README.md`](../labs/lab03_kafka/README.md)) turns this into
# graded code: topics with retention and compaction, an idempotent keyed producer, an
# at-least-once consumer, reading a group's lag, the OpenSky collector and a dead-letter
# topic. Run its tests with `make lab-3`.
