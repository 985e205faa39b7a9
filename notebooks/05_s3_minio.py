# %% [markdown]
# # 05 — Object storage with S3/MinIO: the layout of a data lake
#
# The platform keeps its files in S3-compatible object storage — MinIO in the lab stack —
# in three buckets: `raw-data` (snapshots as they came), `processed-data` (cleaned tables)
# and `streaming-aggregations`. Object storage is not a file system: a **bucket** holds
# **objects**, each a key (a string), bytes and a little metadata, written whole and never
# changed in place. "Folders" are only a convention: the `/` in keys, which listings can
# group by.
#
# This notebook stores the shipped OpenSky recording twice — raw (one gzipped JSON object
# per snapshot) and processed (Parquet) — under *Hive-style* keys
# (`date=2021-10-07/hour=12/…`), draws the bucket as a tree, compares the bytes per
# partition, and shows why the key layout decides what a query has to read.
#
# It uses one bucket of its own, `nb05-flights`, with the zones as key prefixes `raw/` and
# `processed/`; the bucket is removed at the start (leftovers of an interrupted run) and at
# the end. Run it with the stack up (`make up`).

# %% tags=["nbval-ignore-output"]
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
s3 = minio_client()  # MinIO's address and keys come from harness.runtime.config
removed = _nb_helpers.remove_bucket(s3, BUCKET)

# %% [markdown]
# ## 1. A bucket and the raw zone
#
# The raw zone keeps every snapshot exactly as received, gzipped, one object per snapshot.
# The key says when it was taken — `raw/flights/date=2021-10-07/hour=12/1633608000.json.gz`
# — so "everything of one hour" is one key prefix. Uploads are independent HTTP `PUT`s, so
# a few threads send them in parallel.

# %%
s3.make_bucket(BUCKET)
snapshots = load_snapshots()


def raw_key(snapshot_time: int) -> str:
    moment = datetime.fromtimestamp(snapshot_time, UTC)
    return f"raw/flights/date={moment:%Y-%m-%d}/hour={moment:%H}/{snapshot_time}.json.gz"


def put_snapshot(snapshot: dict) -> str:
    key = raw_key(snapshot["time"])
    body = gzip.compress(json.dumps(snapshot, separators=(",", ":")).encode(), mtime=0)
    s3.put_object(
        BUCKET,
        key,
        io.BytesIO(body),
        len(body),
        content_type="application/json",
        metadata={"Content-Encoding": "gzip", "snapshot-time": str(snapshot["time"])},
    )
    return key


with ThreadPoolExecutor(max_workers=8) as pool:
    raw_keys = list(pool.map(put_snapshot, snapshots))
print(f"uploaded {len(raw_keys)} objects, first {raw_keys[0]}, last {raw_keys[-1]}")

# %% [markdown]
# ## 2. Listing: prefixes and the delimiter
#
# A listing asks for keys under a **prefix**. With the **delimiter** `/` (`recursive=False`
# in the `minio` client) keys that continue past the next `/` are folded into one *common
# prefix* — this is how consoles show folders. S3 returns at most 1,000 keys per request;
# the client fetches the following pages for you.

# %%
day = "raw/flights/date=2021-10-07/"
for item in s3.list_objects(BUCKET, prefix=day, recursive=False):
    print(item.object_name, "(prefix)" if item.is_dir else f"{item.size} bytes")
all_raw = list(s3.list_objects(BUCKET, prefix="raw/", recursive=True))
print(f"{len(all_raw)} keys under raw/ (2 listing pages of at most 1,000)")

# %% [markdown]
# ## 3. The processed zone: Parquet, partitioned by date and hour
#
# For analysis the rows go to Parquet — columnar, typed, compressed — with pyarrow, which
# writes straight to S3. `partitioning` turns the `date` and `hour` columns into the key
# prefixes `date=…/hour=…/` (and leaves them out of the files: the key carries them).

# %%
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
    partitioning=ds.partitioning(
        pa.schema([("date", pa.string()), ("hour", pa.int32())]), flavor="hive"
    ),
    basename_template="part-{i}.parquet",
    existing_data_behavior="overwrite_or_ignore",
    create_dir=False,  # S3 needs no folders; pyarrow would add empty "marker" objects
)
processed = [o.object_name for o in s3.list_objects(BUCKET, prefix="processed/", recursive=True)]
print("\n".join(processed))


# %% [markdown]
# ## 4. The bucket as a tree
#
# Folding keys at each `/` gives the familiar tree. Each partition folder shows how many
# objects it holds and, for the first and last, their names.


# %%
def tree(bucket: str) -> None:
    """Print the keys of `bucket` as a tree; folders of objects are summarised."""
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


# %% [markdown]
# ## 5. Bytes per partition
#
# The same hours in both zones. JSON spells every value as text and each small object is
# compressed on its own; Parquet stores each column typed and compressed, so a full hour
# is smaller — and 1 object per hour instead of 360 means 360 times fewer requests to read
# it. The last partition holds a single snapshot (15:00:00): there Parquet's fixed
# overhead is larger than the data.


# %% tags=["nbval-ignore-output"]
def bytes_per_hour(prefix: str) -> pd.Series:
    sizes = {}
    for o in s3.list_objects(BUCKET, prefix=prefix, recursive=True):
        hour = next(p for p in o.object_name.split("/") if p.startswith("hour="))
        sizes[hour] = sizes.get(hour, 0) + o.size
    return pd.Series(sizes)


per_hour = pd.DataFrame(
    {
        "raw JSON.gz (KB)": bytes_per_hour("raw/") / 1000,
        "Parquet (KB)": bytes_per_hour("processed/flights/") / 1000,
    }
)
ax = per_hour.plot.bar(rot=0, color=["tab:gray", "tab:green"])
ax.set(title="Bytes per hour partition", xlabel="partition (date=2021-10-07/…)", ylabel="KB")
plt.show()
per_hour.round(1)

# %% [markdown]
# ## 6. The layout decides what a query reads
#
# A reader that wants 13:00–14:00 lists only the prefix `…/hour=13/`: the other partitions
# are never opened (*partition pruning*). pyarrow does it from a filter on the partition
# column:

# %%
dataset = ds.dataset(
    f"{BUCKET}/processed/flights", filesystem=fs, format="parquet", partitioning="hive"
)
one_hour = ds.field("hour") == 13
files_read = [f.path for f in dataset.get_fragments(filter=one_hour)]
table = dataset.to_table(filter=one_hour, columns=["icao24", "origin_country"])
print("files read:", files_read)
print(f"rows of 13:00-14:00: {table.num_rows}, aircraft: {len(pc.unique(table['icao24']))}")

# %% [markdown]
# Any engine that speaks S3 reads the same files. ClickHouse's `s3()` table function, with a
# glob over the partition folders (the address is MinIO *as the ClickHouse server sees it*,
# which differs in the docker stack):

# %%
ep = endpoints()
url = f"{ep.clickhouse_s3_endpoint}/{BUCKET}/processed/flights/*/*/*.parquet"
ch = clickhouse_client()
total, aircraft = ch.query(
    "SELECT count(), uniqExact(icao24) FROM s3({url:String}, {key:String}, {secret:String}, 'Parquet')",
    parameters={"url": url, "key": ep.minio_access_key, "secret": ep.minio_secret_key},
).result_rows[0]
print(f"ClickHouse reads {total} rows of {aircraft} aircraft from the Parquet files")

# %% [markdown]
# ## 7. Too many partitions
#
# Partitioning by a column with many values — or very uneven ones — makes many small
# objects. Partition the same rows by `origin_country`:

# %%
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
country_objects = list(
    s3.list_objects(BUCKET, prefix="processed/flights_by_country/", recursive=True)
)
print(f"{len(country_objects)} objects, for example:")
for o in country_objects[:2] + [o for o in country_objects if "United" in o.object_name]:
    print(" ", o.object_name)


# %% tags=["nbval-ignore-output"]
def country_of(key: str) -> str:
    """The partition value in a key, URL-decoded: ...=United%20Kingdom/... -> United Kingdom."""
    return unquote(key.split("/")[2].split("=", 1)[1])


sizes = pd.Series({country_of(o.object_name): o.size / 1000 for o in country_objects})
sizes = sizes.sort_values(ascending=False)
ax = sizes.plot.bar(figsize=(11, 4), color="tab:purple", logy=True)
ax.set(title="Bytes per origin_country partition (log scale)", ylabel="KB", xlabel="")
ax.tick_params(axis="x", labelsize=7)
plt.show()
print(
    f"largest {sizes.index[0]} {sizes.iloc[0]:.0f} KB, median {sizes.median():.1f} KB, "
    f"smallest {sizes.iloc[-1]:.1f} KB"
)

# %% [markdown]
# One partition holds a third of the data; most of the others are a few kilobytes — largely
# Parquet's fixed overhead (schema, footer, column statistics), as in the one-snapshot
# `hour=15` partition above. Every reader pays a request and a footer for a handful of
# rows. Values also end up in keys, URL-encoded (`United%20Kingdom`). Good partition
# columns are ones queries filter on, with a moderate number of values of similar size —
# like the hour.
#
# ## 8. Clean up
#
# A bucket must be empty before it can be deleted.

# %%
print("objects removed:", _nb_helpers.remove_bucket(s3, BUCKET))
print("bucket still there:", s3.bucket_exists(BUCKET))

# %% [markdown]
# ## Exercises — then Lab 06
#
# 1. List `raw/flights/` page by page yourself: `start_after` the last key of the previous
#    page, pages of 100 keys. Do you get every key exactly once?
# 2. Partition the Parquet files by `date` only. How many objects, how many bytes? Which
#    queries get slower?
# 3. Upload the same key twice with different content, then turn on versioning
#    (`s3.set_bucket_versioning`) and try again: what does `list_objects(...,
#    include_version=True)` show?
# 4. Make a presigned GET link for one raw object (`s3.presigned_get_object`, 10 minutes)
#    and download it with `requests` — no credentials needed.
#
# **Lab 06** ([`labs/lab06_s3/README.md`](../labs/lab06_s3/README.md)) builds the
# platform's lake in its three buckets: bucket policies, the raw layout with paged
# listings, partitioned Parquet from pyarrow and Spark (`s3a://`), presigned links,
# versioning, lifecycle rules and multipart uploads. Run its tests with `make lab-6`.
