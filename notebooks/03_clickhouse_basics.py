# %% [markdown]
# # 03 — ClickHouse basics: a column store next to PostgreSQL
#
# The platform keeps every flight row twice: in PostgreSQL (`processed_flights`, for the
# application and transactions) and in ClickHouse (`opensky.flights_streaming` and
# `opensky.flights_batch`, for analytics). Why two databases? This notebook loads the same
# rows — the shipped OpenSky recording — into both, asks both the same questions, and
# measures how long the answers take and how much disk the data uses.
#
# - **PostgreSQL is a row store.** A table is a heap of rows; one row's fields sit together.
#   Finding *one* aircraft through an index is fast; an aggregation over many rows reads every
#   column of every row.
# - **ClickHouse is a column store.** Each column is stored (and compressed) on its own, sorted
#   by the table's `ORDER BY` key. A query reads only the columns it names, in large
#   vectorised blocks.
#
# Run the cells from top to bottom with the stack up (`make up`). The notebook's tables are
# named `nb03_…` in both databases and are dropped at the start and at the end.

# %% tags=["nbval-ignore-output"]
import statistics
import time
from datetime import UTC, datetime, timedelta

import _nb_helpers  # noqa: F401 (puts the repository on sys.path, sets the figure style)
import matplotlib.pyplot as plt
import pandas as pd

from harness.runtime.data import load_arrow
from harness.runtime.schema import ROW_FIELDS
from harness.runtime.services import clickhouse_client, pg_connect

TABLE, TABLE_X10 = "nb03_flights", "nb03_flights_x10"  # the same names in both databases
ch = clickhouse_client()  # database "opensky"; address and password from harness.runtime.config
pg = pg_connect()  # database "opensky", autocommit
for name in (TABLE, TABLE_X10):
    ch.command(f"DROP TABLE IF EXISTS {name}")
    pg.execute(f"DROP TABLE IF EXISTS {name}")

# %% [markdown]
# ## 1. The data
#
# `load_arrow()` returns the recording as an Arrow table: one row per state vector, the
# columns of `harness.runtime.schema`. We leave out `sensors` (always null without a sensor filter).

# %%
flights = load_arrow().drop_columns(["sensors"])
print(f"{flights.num_rows} rows, {flights.num_columns} columns")
print(", ".join(flights.column_names))

# %% [markdown]
# ## 2. Load it into ClickHouse
#
# A `MergeTree` table stores its rows sorted by `ORDER BY` — here country, aircraft, time —
# in *parts* of compressed column files, split by `PARTITION BY` (one partition per day).
# `LowCardinality(String)` dictionary-encodes a column with few distinct values (51
# countries); `Nullable(...)` marks columns that may be null. Small parts normally keep all
# columns in one file; `min_bytes_for_wide_part = 0` gives every column its own file, so that
# section 7 can show the bytes per column. The whole Arrow table goes in with one columnar
# insert.

# %%
# The columns of `harness.runtime.schema` except `sensors`, and the name of each kind in ClickHouse
# and in PostgreSQL (section 3). Two columns get a ClickHouse type of their own: the time, and the
# country (few distinct values).
FIELDS = [(name, kind, nullable) for name, kind, nullable in ROW_FIELDS if name != "sensors"]
CH_KINDS = {"str": "String", "int": "Int64", "float": "Float64", "bool": "Bool"}
PG_KINDS = {"str": "text", "int": "bigint", "float": "double precision", "bool": "boolean"}
CH_OWN_TYPES = {"fetch_time": "DateTime('UTC')", "origin_country": "LowCardinality(String)"}


def ch_type(name: str, kind: str, nullable: bool) -> str:
    """The column's own type, or its kind's type, wrapped in Nullable(...) when it may be null."""
    if name in CH_OWN_TYPES:
        return CH_OWN_TYPES[name]
    return f"Nullable({CH_KINDS[kind]})" if nullable else CH_KINDS[kind]


columns_sql = ",\n    ".join(
    f"{name} {ch_type(name, kind, nullable)}" for name, kind, nullable in FIELDS
)
for name in (TABLE, TABLE_X10):
    ch.command(f"""
    CREATE TABLE {name} (
        {columns_sql}
    ) ENGINE = MergeTree
    PARTITION BY toDate(fetch_time)
    ORDER BY (origin_country, icao24, fetch_time)
    SETTINGS min_bytes_for_wide_part = 0  -- a file per column even in small parts""")

ch.insert_arrow(TABLE, flights)
print("ClickHouse rows:", ch.query(f"SELECT count() FROM {TABLE}").result_rows[0][0])

# %% [markdown]
# ## 3. Load it into PostgreSQL
#
# The same columns with PostgreSQL's types (`PG_KINDS`; `fetch_time` is a `timestamptz`). The
# primary key `(icao24, fetch_time)` — one position per aircraft and snapshot — is also a B-tree
# index, as an application would have.
# `COPY ... FROM STDIN` streams the rows in one statement, the fast way to bulk-load.

# %%
PG_TYPES = {
    name: "timestamptz" if name == "fetch_time" else PG_KINDS[kind] for name, kind, _ in FIELDS
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

# %% [markdown]
# ## 4. The same question to both
#
# The platform's dashboard query — flights per country in the last hour, with
# the average speed — needs one change for a recording: "the last hour" is the last hour *of
# the recording* (it ends at 15:00 UTC on 2021-10-07), not `now()`. The time is a **bound
# parameter** in both databases (`{since:DateTime}` in ClickHouse, `%s` in PostgreSQL), never
# pasted into the SQL text.

# %%
since = datetime(2021, 10, 7, 15, 0, tzinfo=UTC) - timedelta(hours=1)

ch_answer = ch.query_df(
    f"""SELECT origin_country, count() AS flights, avg(velocity) AS avg_velocity
    FROM {TABLE} WHERE fetch_time >= {{since:DateTime}}
    GROUP BY origin_country ORDER BY flights DESC, origin_country LIMIT 10""",
    parameters={"since": since},
)
pg_answer = pd.DataFrame(
    pg.execute(
        f"""SELECT origin_country, count(*) AS flights, avg(velocity) AS avg_velocity
        FROM {TABLE} WHERE fetch_time >= %s
        GROUP BY origin_country ORDER BY flights DESC, origin_country LIMIT 10""",
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

# %% [markdown]
# ## 5. How long does each take?
#
# Three typical questions:
#
# - **by country** — the dashboard aggregation above, over all rows;
# - **per hour** — distinct aircraft and highest altitude per hour (an aggregation that
#   needs three columns);
# - **one aircraft** — the track of the busiest aircraft, a point lookup by key.
#
# Each is timed end to end as the application sees it (request, execution, transfer,
# decoding): the median of 7 runs. The numbers depend on your machine and on what else it
# is doing — look at the ratios, not at the milliseconds.

# %%
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
    """Median wall time of `run(sql)` in milliseconds (after one warm-up run)."""
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
        rows.append(
            {
                "query": name,
                "ClickHouse ms": median_ms(ch_rows, ch_sql.format(t=table)),
                "PostgreSQL ms": median_ms(pg_rows, pg_sql.format(t=table)),
            }
        )
    return pd.DataFrame(rows).set_index("query")


ch_track = ch_rows(QUERIES["one aircraft"][0].format(t=TABLE))
pg_track = pg_rows(QUERIES["one aircraft"][1].format(t=TABLE))
# ClickHouse returns naive datetimes (in UTC), PostgreSQL timezone-aware ones.
pg_track = [(moment.replace(tzinfo=None), lat, lon) for moment, lat, lon in pg_track]
print(
    f"busiest aircraft {busiest}: {len(ch_track)} positions; same track in both: {ch_track == pg_track}"
)

# %% tags=["nbval-ignore-output"]
timings = {"3 hours (56,671 rows)": time_queries(TABLE)}
timings["3 hours (56,671 rows)"].round(1)

# %% [markdown]
# ## 6. Ten times the data
#
# Three hours are small for either database. To see how each grows, both make ten copies
# of the recording inside the database, one per day (2021-10-07 to 2021-10-16): the same
# traffic shifted by whole days, 566,710 rows.

# %%
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

# %% tags=["nbval-ignore-output"]
timings["30 hours (566,710 rows)"] = time_queries(TABLE_X10)
table = pd.concat(timings.values(), axis=1, keys=["3 h", "30 h"])
table.columns = [f"{engine.split()[0]}, {size}" for size, engine in table.columns]
table.round(1)

# %% tags=["nbval-ignore-output"]
fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), sharey=False)
for ax, query in zip(axes, QUERIES, strict=True):
    sizes = list(timings)
    x = range(len(sizes))
    ax.bar(
        [i - 0.2 for i in x],
        [timings[s].loc[query, "ClickHouse ms"] for s in sizes],
        0.4,
        label="ClickHouse",
        color="tab:orange",
    )
    ax.bar(
        [i + 0.2 for i in x],
        [timings[s].loc[query, "PostgreSQL ms"] for s in sizes],
        0.4,
        label="PostgreSQL",
        color="tab:blue",
    )
    ax.set(title=query, xticks=list(x), xticklabels=["3 h of data", "30 h"], ylabel="median ms")
axes[0].legend()
fig.suptitle("Query time, ClickHouse vs PostgreSQL, same rows (lower is better)")
fig.tight_layout()
plt.show()

# %% [markdown]
# What to look for:
#
# - **Aggregations** (by country, per hour) are usually several times faster in ClickHouse,
#   and the gap widens with ten times the rows: ClickHouse reads two or three compressed
#   columns; PostgreSQL reads whole rows, one after the other.
# - **The point lookup** is PostgreSQL's game: its B-tree index on `(icao24, fetch_time)`
#   leads straight to the aircraft's rows. ClickHouse's sparse index on its `ORDER BY`
#   finds the right *granules* (blocks of 8,192 rows) and reads them whole — fast too, but
#   rarely faster than PostgreSQL for a few hundred rows.
#
# On the native stack ClickHouse is chDB behind the HTTP interface, with docker it is
# `clickhouse-server`; both run the same engine.
#
# ## 7. Disk space
#
# Columns of one type, sorted by the table key, compress very well. Compare the bytes each
# database uses for the same rows (PostgreSQL: table + index; ClickHouse: compressed parts).
# The ten copies repeat the same values, which flatters ClickHouse's compression somewhat.

# %% tags=["nbval-ignore-output"]
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
            ).result_rows[0][0]
            / 1e6
            for t in (TABLE, TABLE_X10)
        ],
    },
    index=["3 hours", "30 hours"],
)
ax = sizes.plot.bar(rot=0, color=["tab:blue", "tab:orange"])
ax.set(title="Bytes on disk for the same rows", ylabel="MB")
plt.show()
sizes.round(2)

# %% [markdown]
# Which columns take the space in ClickHouse? `system.columns` knows, per column:

# %% tags=["nbval-ignore-output"]
ch.query_df(
    "SELECT name, data_compressed_bytes AS compressed, data_uncompressed_bytes AS raw, "
    "round(raw / compressed, 1) AS ratio FROM system.columns "
    "WHERE database = currentDatabase() AND table = {t:String} ORDER BY compressed DESC",
    parameters={"t": TABLE},
).head(8)

# %% [markdown]
# ## 8. Clean up

# %%
for name in (TABLE, TABLE_X10):
    ch.command(f"DROP TABLE IF EXISTS {name}")
    pg.execute(f"DROP TABLE IF EXISTS {name}")
pg.close()
print("dropped", TABLE, "and", TABLE_X10, "in ClickHouse and PostgreSQL")

# %% [markdown]
# ## Exercises — then Lab 04
#
# 1. Run `EXPLAIN indexes = 1 SELECT ... WHERE icao24 = '…'` on `nb03_flights` (before the
#    clean-up cell). How many granules does ClickHouse read? Now filter on
#    `origin_country = 'France'` instead — why does the first column of `ORDER BY` matter?
# 2. Change `ORDER BY` to `(icao24, fetch_time)` and time the three queries again. Which one
#    gains, which one loses?
# 3. Remove `LowCardinality` from `origin_country`; compare the column's compressed bytes.
# 4. The dashboard asks "flights per country" every few seconds. Sketch a materialized view
#    that keeps the counts up to date as rows arrive, so the query reads 51 rows instead of
#    all of them.
#
# **Lab 04** ([`labs/lab04_clickhouse/README.md`](../labs/lab04_clickhouse/README.md)) makes
# this graded: the platform's `flights_streaming` and `flights_batch` schemas, the
# `country_statistics_mv` materialized view, bound-parameter queries, deduplication with a
# ReplacingMergeTree and key usage checked with `EXPLAIN indexes = 1`. Run its tests with
# `make lab-4`.
