# %% [markdown]
# # 04 — Change data capture with Debezium
#
# An application writes to PostgreSQL; analytics wants every change as it happens —
# without polling the table and without the application sending anything extra. **Change
# data capture** (CDC) reads the changes from PostgreSQL's own write-ahead log (WAL):
#
# - PostgreSQL decodes its WAL for a **publication** (which tables) into a **logical
#   replication slot** (which remembers how far the reader got);
# - **Debezium**, a connector running in **Kafka Connect**, reads the slot and writes one
#   **change event** per changed row to a Kafka topic `<prefix>.<schema>.<table>` — on the
#   platform `opensky.public.processed_flights`;
# - each event says what happened: `op` (`r` snapshot read, `c` create, `u` update, `d`
#   delete), the row `before` and `after`, and `source` metadata (table, transaction, log
#   position, commit time).
#
# This notebook keeps a small table of *current aircraft positions*, fed from the shipped
# recording, captures its changes with its own connector, and checks that the events alone
# rebuild the table. Everything it creates — table, publication, slot, connector, topics —
# is named `nb04…`, removed at the start (leftovers of an interrupted run) and at the end.
# Run it with the stack up (`make up`).

# %% tags=["nbval-ignore-output"]
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

# %% [markdown]
# ## 1. The source table
#
# One row per aircraft currently in view: its latest position. Two settings make it ready
# for CDC:
#
# - a **primary key**: it becomes the Kafka message key, so all changes of one row go to the
#   same partition, in order;
# - **`REPLICA IDENTITY FULL`**: the WAL logs the whole old row on UPDATE and DELETE, so the
#   events' `before` carries every column (by default only the primary key).
#
# The publication names the table whose changes are decoded. We fill the table with the
# recording's first snapshot (12:00:00 UTC).

# %%
pg.execute(f"""
    CREATE TABLE {TABLE} (
        icao24          text PRIMARY KEY,
        callsign        text,
        origin_country  text NOT NULL,
        fetch_time      bigint NOT NULL,       -- unix seconds of the snapshot
        longitude       double precision,
        latitude        double precision,
        velocity        double precision
    )""")
pg.execute(f"ALTER TABLE {TABLE} REPLICA IDENTITY FULL")
pg.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE {TABLE}")

snapshots = load_snapshots()
COLUMNS = [
    "icao24",
    "callsign",
    "origin_country",
    "fetch_time",
    "longitude",
    "latitude",
    "velocity",
]


def position(snapshot: dict, state: list) -> tuple:
    """The table's columns from one state vector of a snapshot."""
    return (state[0], state[1], state[2], snapshot["time"], state[5], state[6], state[9])


first = snapshots[0]
with pg.transaction():
    for state in first["states"]:
        pg.execute(
            f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)", position(first, state)
        )
print("rows in the source table:", pg.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])

# %% [markdown]
# ## 2. Register a Debezium connector through the Connect REST API
#
# A connector is a JSON configuration sent to Kafka Connect with one HTTP `PUT`
# (`/connectors/<name>/config`; the same call updates it later). Its settings: where
# PostgreSQL is *as the Connect worker sees it* (in the docker stack, by its service name),
# which slot and publication to use, the topic prefix, the tables, and plain JSON for keys
# and values. `snapshot.mode=initial` first reads the rows already in the table (events with
# `op = "r"`), then streams changes from the slot.

# %%
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
    "plugin.name": "pgoutput",  # PostgreSQL's built-in logical decoding
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
    """The connector's state and its tasks' states; fails loudly on FAILED."""
    status = requests.get(f"{CONNECT_URL}/connectors/{CONNECTOR}/status", timeout=10).json()
    parts = [status.get("connector", {})] + status.get("tasks", [])
    if any(p.get("state") == "FAILED" for p in parts):
        raise RuntimeError(
            "connector failed: " + next(p["trace"] for p in parts if p.get("trace"))[:2000]
        )
    return [p.get("state") for p in parts]


def running() -> list[str] | None:
    states = connector_states()
    return states if len(states) > 1 and set(states) == {"RUNNING"} else None


print("connector and task:", _nb_helpers.wait_until(running, 90, f"connector {CONNECTOR} to run"))

# %% [markdown]
# ## 3. Read the change events
#
# Debezium creates the topic with its first event (one partition, as configured). One
# consumer reads it from offset 0 and keeps every event: the Kafka message key (the primary
# key), the value (the event; `None` for a *tombstone*, see below) and the time Kafka
# received it. It `assign`s the partition itself instead of joining a consumer group: a
# notebook that only looks needs no group and commits nothing. `read_events` polls until a
# condition holds, with a time limit.

# %%
admin = kafka_admin()
_nb_helpers.wait_until(lambda: TOPIC in admin.list_topics(timeout=10).topics, 60, f"topic {TOPIC}")
reader = Consumer(kafka_config(**{"group.id": "nb04_reader", "enable.auto.commit": False}))
reader.assign([TopicPartition(TOPIC, 0, 0)])  # partition 0, from offset 0
events: list[dict] = []


def read_events(done, timeout: float = 60.0) -> None:
    """Append events to `events` until `done(events)` is true; TimeoutError after `timeout` s."""
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
        events.append(
            {
                "key": json.loads(msg.key())["icao24"],
                "event": value,
                "op": value["op"] if value else "tombstone",
                "kafka_ms": msg.timestamp()[1],
            }
        )


rows_now = len(first["states"])
read_events(lambda evs: len(evs) >= rows_now)
print("events so far:", dict(sorted(Counter(e["op"] for e in events).items())))


# %% [markdown]
# The snapshot produced one `r` event per existing row: `before` is null (nothing was there
# before), `after` is the row. Here is the first one, with the `source` fields that do not
# change between runs:


# %%
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

# %% [markdown]
# ## 4. Insert, update, delete — one each, by hand
#
# Two minutes later (12:02:00) new aircraft have appeared, the others have moved, and some
# have left. We write three of those changes ourselves:

# %%
later = snapshots[12]  # 12:02:00: the snapshots are ten seconds apart
assert later["time"] - first["time"] == 120
now_states = {s[0]: s for s in later["states"]}
before_ids = [s[0] for s in first["states"]]
newcomer = next(i for i in now_states if i not in before_ids and now_states[i][9] is not None)
mover = next(i for i in before_ids if i in now_states)
leaver = next(i for i in before_ids if i not in now_states)
print(f"insert {newcomer}, update {mover}, delete {leaver}")

seen = len(events)
pg.execute(
    f"INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)",
    position(later, now_states[newcomer]),
)
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

# %% [markdown]
# The update carries the whole row before and after (thanks to `REPLICA IDENTITY FULL`), so
# a consumer sees *what* changed without asking the database:

# %%
show(next(e["event"] for e in events[seen:] if e["op"] == "u"))


# %% [markdown]
# After the delete comes a **tombstone**: a message with the same key and no value. On a
# *compacted* topic Kafka eventually keeps only the latest message per key; the tombstone
# lets it drop the deleted row's key altogether.
#
# ## 5. A timeline: ten minutes of traffic, change by change
#
# Now the table follows the recording: for every minute from 12:02 to 12:11 (played half a
# second apart) one transaction inserts the newly seen aircraft, updates those
# whose state changed and deletes those no longer in view. After each commit we note the
# time and how many rows the source table has.


# %%
def sync_to(snapshot: dict) -> int:
    """Make the table hold exactly the aircraft of `snapshot`, in one transaction.

    Returns the number of Kafka messages to expect: one per row inserted or updated, two
    per row deleted (the delete event and its tombstone).
    """
    present = [position(snapshot, s) for s in snapshot["states"]]
    messages = 0
    with pg.transaction():
        for row in present:
            messages += pg.execute(
                f"""INSERT INTO {TABLE} VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (icao24) DO UPDATE SET
                    callsign = EXCLUDED.callsign, fetch_time = EXCLUDED.fetch_time,
                    longitude = EXCLUDED.longitude, latitude = EXCLUDED.latitude,
                    velocity = EXCLUDED.velocity
                WHERE ({TABLE}.callsign, {TABLE}.longitude, {TABLE}.latitude, {TABLE}.velocity)
                    IS DISTINCT FROM (EXCLUDED.callsign, EXCLUDED.longitude, EXCLUDED.latitude,
                                      EXCLUDED.velocity)""",
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
print(
    "messages of the timeline:",
    dict(sorted(Counter(e["op"] for e in events[timeline_start:]).items())),
)

# %% [markdown]
# Do the events alone describe the table? Start from nothing and apply every event in order
# — `r`/`c`/`u` put the `after` row under its key, `d` removes the key — exactly what a
# replica (for example a ClickHouse table fed by this topic) does:

# %%
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

# %% tags=["nbval-ignore-output"]
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
top.step(
    [sec(ms) for ms in replica_rows],
    list(replica_rows.values()),
    where="post",
    color="tab:orange",
    ls="--",
    label="replica rebuilt from the events (as they reach Kafka)",
)
top.set(ylabel="rows", title="Source table and its change events, 12:02 to 12:11 UTC")
top.legend(loc="lower right")
# Bottom: the events of each transaction (same commit time), stacked by operation.
per_commit = Counter((e["event"]["source"]["ts_ms"], e["op"]) for e in change_events)
commits = sorted({ms for ms, _ in per_commit})
base = [0] * len(commits)
for op, color, label in (
    ("u", "tab:blue", "update (u)"),
    ("c", "tab:green", "insert (c)"),
    ("d", "tab:red", "delete (d)"),
):
    heights = [per_commit[(ms, op)] for ms in commits]
    bottom.bar(
        [sec(ms) for ms in commits],
        heights,
        width=0.15,
        bottom=base,
        color=color,
        label=f"{label}: {sum(heights)}",
    )
    base = [b + h for b, h in zip(base, heights, strict=True)]
bottom.set(
    xlabel="seconds since the start of the timeline",
    ylabel="events per transaction",
    ylim=(0, max(base) * 1.35),
)
bottom.legend(loc="upper right", ncols=3)
fig.tight_layout()
plt.show()

# %% [markdown]
# All changes of one transaction share its commit time (`source.ts_ms`), and the replica
# follows each step of the source table a moment later: the time Debezium needs to read
# the WAL and write to Kafka. How long was that, from commit to Kafka?

# %% tags=["nbval-ignore-output"]
delays = pd.Series(
    [e["kafka_ms"] - e["event"]["source"]["ts_ms"] for e in change_events], name="ms"
)
print(
    f"commit -> Kafka: median {delays.median():.0f} ms, 95th percentile {delays.quantile(0.95):.0f} ms"
)

# %% [markdown]
# ## 6. Clean up — the slot matters most
#
# A replication slot makes PostgreSQL keep WAL until its reader confirms it. A forgotten
# slot whose connector is gone keeps WAL **forever** and fills the disk. So: remove the
# connector, then drop its slot, the publication, the table and the topic.

# %%
reader.close()
print("connector removed:", _nb_helpers.remove_connector(CONNECT_URL, CONNECTOR))
print("slot dropped:", _nb_helpers.drop_replication_slot(pg, SLOT))
pg.execute(f"DROP PUBLICATION IF EXISTS {PUBLICATION}")
pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
pg.close()
print("topics deleted:", _nb_helpers.delete_topics_with_prefix(PREFIX + "."))

# %% [markdown]
# ## Exercises — then Lab 05
#
# 1. Set `REPLICA IDENTITY DEFAULT` on the table and update a row: what is left of `before`?
#    Which consumers would break?
# 2. Register the connector with `"snapshot.mode": "no_data"` instead of `"initial"`. Which
#    events are missing, and what would a replica built from the topic lack?
# 3. Pause the connector (`PUT /connectors/<name>/pause`), make changes, resume it
#    (`.../resume`). Are any changes lost? Where did PostgreSQL keep them meanwhile? (Look
#    at `pg_replication_slots.confirmed_flush_lsn`.)
# 4. Apply the same event twice to `replica`. Does the result change? Why does that
#    matter when a consumer restarts and reads some events again?
#
# **Lab 05** ([`labs/lab05_cdc/README.md`](../labs/lab05_cdc/README.md)) builds the
# platform's CDC pipeline: `processed_flights` and `flight_statistics` ready for CDC, the
# `opensky-postgres` connector from its JSON file, typed change events, an idempotent
# ClickHouse replica, and restarts that neither lose nor double a change. Run its tests
# with `make lab-5`.
