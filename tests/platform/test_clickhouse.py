"""Platform tests for ClickHouse: the clickhouse-connect client surface the labs rely on.

Natively this runs against chDB behind `harness/ops/chdb_server.py`; in the docker stack against
clickhouse-server. Everything goes through `harness.runtime.services.clickhouse_client()`, so the same
tests check both. Every table, view and S3 prefix has a unique name and is dropped afterwards.
"""

from __future__ import annotations

import io
import threading
import uuid
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from harness.grading.testkit import wait_until
from harness.runtime.config import CLICKHOUSE_DB, endpoints, setting
from harness.runtime.services import clickhouse_client, minio_client

FLIGHTS_DDL = """
    CREATE TABLE {name} (
        icao24 String,
        origin_country LowCardinality(String),
        time_position DateTime,
        baro_altitude Nullable(Float64),
        velocity Float64
    )
    ENGINE = MergeTree
    ORDER BY (origin_country, icao24, time_position)
"""
FLIGHT_COLUMNS = ["icao24", "origin_country", "time_position", "baro_altitude", "velocity"]
FLIGHT_ROWS = [
    ("4b1814", "Switzerland", datetime(2024, 5, 1, 12, 0, 0), 10972.8, 230.0),
    ("4b1815", "Switzerland", datetime(2024, 5, 1, 12, 0, 10), None, 0.0),
    ("3c6444", "Germany", datetime(2024, 5, 1, 12, 0, 20), 11582.4, 250.0),
    ("3c6445", "Germany", datetime(2024, 5, 1, 12, 0, 30), 9144.0, 210.0),
    ("3c6446", "Germany", datetime(2024, 5, 1, 12, 0, 40), 7620.0, 190.0),
    ("a0b1c2", "United States", datetime(2024, 5, 1, 12, 0, 50), 12192.0, 260.0),
]


@pytest.fixture(scope="module")
def ch():
    client = clickhouse_client()
    yield client
    client.close()


@pytest.fixture
def names(ch):
    """A factory of unique object names in `opensky`; everything it named is dropped afterwards."""
    created: list[str] = []

    def make(kind: str = "t") -> str:
        name = f"{CLICKHOUSE_DB}.pt_{kind}_{uuid.uuid4().hex[:12]}"
        created.append(name)
        return name

    yield make
    for name in reversed(created):  # views before the tables they read
        ch.command(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def flights(ch, names) -> str:
    """A MergeTree table of flight rows, filled with FLIGHT_ROWS."""
    table = names("flights")
    ch.command(FLIGHTS_DDL.format(name=table))
    ch.insert(table, FLIGHT_ROWS, column_names=FLIGHT_COLUMNS)
    return table


def test_command_creates_mergetree_table(ch, names):
    """`command` runs DDL, and the new table is a MergeTree in the `opensky` database."""
    table = names()
    ch.command(FLIGHTS_DDL.format(name=table))
    short = table.split(".", 1)[1]
    engine, sorting_key = ch.query(
        "SELECT engine, sorting_key FROM system.tables WHERE database = {db:String} "
        "AND name = {name:String}",
        parameters={"db": CLICKHOUSE_DB, "name": short},
    ).result_rows[0]
    assert engine == "MergeTree"
    assert sorting_key == "origin_country, icao24, time_position"
    assert ch.command("SELECT currentDatabase()") == CLICKHOUSE_DB


def test_insert_rows_and_query(ch, names):
    """Rows inserted as tuples come back from `query` as result rows and named results."""
    table = names()
    ch.command(FLIGHTS_DDL.format(name=table))
    summary = ch.insert(table, FLIGHT_ROWS, column_names=FLIGHT_COLUMNS)
    assert summary.written_rows == len(FLIGHT_ROWS)
    result = ch.query(f"SELECT * FROM {table} ORDER BY time_position")
    assert result.column_names == tuple(FLIGHT_COLUMNS)
    assert result.result_rows == FLIGHT_ROWS
    first = next(iter(result.named_results()))
    assert first["icao24"] == "4b1814" and first["origin_country"] == "Switzerland"
    assert ch.command(f"SELECT count() FROM {table}") == len(FLIGHT_ROWS)


def test_insert_df_and_query_df(ch, names):
    """A pandas DataFrame goes in with `insert_df` and comes back equal from `query_df`."""
    table = names()
    ch.command(FLIGHTS_DDL.format(name=table))
    df = pd.DataFrame(FLIGHT_ROWS, columns=FLIGHT_COLUMNS)
    ch.insert_df(table, df)
    back = ch.query_df(f"SELECT * FROM {table} ORDER BY time_position")
    assert list(back.columns) == FLIGHT_COLUMNS
    assert back["icao24"].tolist() == df["icao24"].tolist()
    assert back["time_position"].tolist() == df["time_position"].tolist()
    assert back["baro_altitude"].isna().tolist() == df["baro_altitude"].isna().tolist()
    assert back["velocity"].sum() == pytest.approx(df["velocity"].sum())


def test_insert_arrow(ch, names):
    """An Arrow table goes in with `insert_arrow`."""
    table = names()
    ch.command(f"CREATE TABLE {table} (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    arrow = pa.table({"id": pa.array([3, 1, 2], pa.uint32()), "name": ["c", "a", "b"]})
    assert ch.insert_arrow(table, arrow).written_rows == 3
    assert ch.query(f"SELECT id, name FROM {table} ORDER BY id").result_rows == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]
    back = ch.query_arrow(f"SELECT id, name FROM {table} ORDER BY id")
    assert back.column("name").to_pylist() == ["a", "b", "c"]


def test_aggregate_known_answers(ch, flights):
    """GROUP BY with count/avg/max gives the hand-computed answers (NULLs skipped by avg)."""
    rows = ch.query(
        f"SELECT origin_country, count() AS n, avg(baro_altitude) AS avg_alt, "
        f"max(velocity) AS max_v FROM {flights} GROUP BY origin_country ORDER BY origin_country"
    ).result_rows
    assert [(c, n) for c, n, _, _ in rows] == [
        ("Germany", 3),
        ("Switzerland", 2),
        ("United States", 1),
    ]
    avg_alt = {c: a for c, _, a, _ in rows}
    assert avg_alt["Germany"] == pytest.approx((11582.4 + 9144.0 + 7620.0) / 3)
    assert avg_alt["Switzerland"] == pytest.approx(10972.8)
    assert {c: v for c, _, _, v in rows} == {
        "Germany": 250.0,
        "Switzerland": 230.0,
        "United States": 260.0,
    }


def test_parameter_binding_keeps_injection_as_data(ch, flights):
    """Server-side `{name:Type}` parameters: an injection string is data, never SQL."""
    evil = "Germany' OR 1=1; DROP TABLE flights; --\\"
    echoed = ch.query("SELECT {s:String} AS s", parameters={"s": evil}).result_rows
    assert echoed == [(evil,)]
    matched = ch.command(
        f"SELECT count() FROM {flights} WHERE origin_country = {{c:String}}",
        parameters={"c": evil},
    )
    assert matched == 0
    assert ch.command(f"SELECT count() FROM {flights}") == len(FLIGHT_ROWS)
    germany = ch.query(
        f"SELECT count() FROM {flights} WHERE origin_country = {{c:String}} "
        f"AND time_position >= {{t:DateTime}}",
        parameters={"c": "Germany", "t": datetime(2024, 5, 1, 12, 0, 30)},
    ).result_rows
    assert germany == [(2,)]


def test_types_round_trip(ch, flights):
    """DateTime, LowCardinality(String) and Nullable(Float64) keep their types and values."""
    types = dict(
        ch.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} "
            "AND table = {t:String}",
            parameters={"db": CLICKHOUSE_DB, "t": flights.split(".", 1)[1]},
        ).result_rows
    )
    assert types["origin_country"] == "LowCardinality(String)"
    assert types["time_position"] == "DateTime"
    assert types["baro_altitude"] == "Nullable(Float64)"
    row = ch.query(
        f"SELECT time_position, origin_country, baro_altitude FROM {flights} "
        f"WHERE icao24 = '4b1815'"
    ).result_rows
    assert row == [(datetime(2024, 5, 1, 12, 0, 10), "Switzerland", None)]


def test_materialized_view_with_aggregate_states(ch, names, flights):
    """A materialized view into an AggregatingMergeTree, read with -Merge, equals direct SQL."""
    target, view = names("stats"), names("mv")
    ch.command(
        f"""CREATE TABLE {target} (
                origin_country LowCardinality(String),
                flights AggregateFunction(count),
                avg_velocity AggregateFunction(avg, Float64),
                max_altitude AggregateFunction(max, Nullable(Float64))
            ) ENGINE = AggregatingMergeTree ORDER BY origin_country"""
    )
    source = names("src")
    ch.command(FLIGHTS_DDL.format(name=source))
    ch.command(
        f"""CREATE MATERIALIZED VIEW {view} TO {target} AS
            SELECT origin_country, countState() AS flights,
                   avgState(velocity) AS avg_velocity, maxState(baro_altitude) AS max_altitude
            FROM {source} GROUP BY origin_country"""
    )
    ch.insert(source, FLIGHT_ROWS[:3], column_names=FLIGHT_COLUMNS)  # two inserts: two
    ch.insert(source, FLIGHT_ROWS[3:], column_names=FLIGHT_COLUMNS)  # partial states to merge
    merged = ch.query(
        f"SELECT origin_country, countMerge(flights), avgMerge(avg_velocity), "
        f"maxMerge(max_altitude) FROM {target} GROUP BY origin_country ORDER BY origin_country"
    ).result_rows
    direct = ch.query(
        f"SELECT origin_country, count(), avg(velocity), max(baro_altitude) "
        f"FROM {flights} GROUP BY origin_country ORDER BY origin_country"
    ).result_rows
    assert merged == direct


def test_sorting_key_prunes_granules(ch, names):
    """`EXPLAIN indexes = 1` and the read_rows statistic show the primary key skipping data."""
    table = names()
    ch.command(
        f"CREATE TABLE {table} (id UInt32, v Float64) ENGINE = MergeTree ORDER BY id "
        f"SETTINGS index_granularity = 100"
    )
    ch.command(f"INSERT INTO {table} SELECT number, number / 10 FROM numbers(10000)")
    plan = "\n".join(
        row[0]
        for row in ch.query(
            f"EXPLAIN indexes = 1 SELECT sum(v) FROM {table} WHERE id BETWEEN 500 AND 599"
        ).result_rows
    )
    assert "PrimaryKey" in plan
    selected, total = next(
        line.split(":", 1)[1].strip().split("/")
        for line in plan.splitlines()
        if line.strip().startswith("Granules:")
    )
    assert int(selected) < int(total) == 100
    result = ch.query(f"SELECT sum(v) FROM {table} WHERE id BETWEEN 500 AND 599")
    assert result.result_rows[0][0] == pytest.approx(sum(range(500, 600)) / 10)
    assert 0 < int(result.summary["read_rows"]) < 10000


def test_system_tables_and_columns(ch, flights):
    """`system.tables` and `system.columns` describe the table (for schema checks in labs)."""
    short = flights.split(".", 1)[1]
    tables = ch.query(
        "SELECT name, engine, primary_key FROM system.tables WHERE database = {db:String}",
        parameters={"db": CLICKHOUSE_DB},
    ).result_rows
    assert (short, "MergeTree", "origin_country, icao24, time_position") in tables
    columns = ch.query(
        "SELECT name, is_in_sorting_key FROM system.columns "
        "WHERE database = {db:String} AND table = {t:String} ORDER BY position",
        parameters={"db": CLICKHOUSE_DB, "t": short},
    ).result_rows
    assert [name for name, _ in columns] == FLIGHT_COLUMNS
    assert {name for name, in_key in columns if in_key} == {
        "origin_country",
        "icao24",
        "time_position",
    }


def test_bad_query_raises_clickhouse_error(ch):
    """A failing query raises DatabaseError carrying ClickHouse's code and message."""
    missing = f"{CLICKHOUSE_DB}.no_such_table_{uuid.uuid4().hex[:8]}"
    with pytest.raises(DatabaseError) as unknown:
        ch.query(f"SELECT * FROM {missing}")
    assert "UNKNOWN_TABLE" in str(unknown.value)
    assert "Code: 60" in str(unknown.value)
    with pytest.raises(DatabaseError) as syntax:
        ch.command("SELEKT 1")
    assert "Syntax error" in str(syntax.value)
    with pytest.raises(DatabaseError) as multi:  # one statement per request, as on the server
        ch.command("SELECT 1; SELECT 2")
    assert "Multi-statements are not allowed" in str(multi.value)


def test_large_result_streams_and_a_stream_left_early_frees_the_server(ch):
    """A result of millions of rows arrives whole; a stream the client leaves early, or one that
    fails half-way (an error after the first blocks, in the body), does not block the next query."""
    n = 2_000_000
    numbers = ch.query_np(f"SELECT number FROM numbers({n})")
    assert len(numbers) == n and int(numbers[:, 0].sum()) == n * (n - 1) // 2
    with ch.query_row_block_stream("SELECT number FROM numbers(100000000)") as stream:
        first = next(iter(stream))
    assert first[0] == (0,)
    assert ch.command("SELECT 42") == 42
    with pytest.raises(DatabaseError) as failed:
        ch.query(f"SELECT throwIf(number = {n - 10}) FROM numbers({n})").result_rows  # noqa: B018
    assert "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO" in str(failed.value)
    assert ch.command("SELECT 43") == 43


def test_concurrent_clients_share_one_database(ch, names):
    """Several clients in parallel threads write to and read from the same database."""
    table = names()
    ch.command(f"CREATE TABLE {table} (worker UInt8, n UInt32) ENGINE = MergeTree ORDER BY n")
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            client = clickhouse_client()
            client.insert(table, [(worker, i) for i in range(100)], column_names=["worker", "n"])
            client.close()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert ch.query(
        f"SELECT worker, count() FROM {table} GROUP BY worker ORDER BY worker"
    ).result_rows == [(w, 100) for w in range(4)]


def test_s3_table_function_reads_parquet_from_minio(ch, names):
    """`s3()` reads a Parquet object from MinIO's `processed-data` bucket into a table."""
    ep = endpoints()
    bucket, prefix = "processed-data", f"platform-tests/ch-{uuid.uuid4().hex[:12]}"
    buf = io.BytesIO()
    pq.write_table(
        pa.table({"icao24": ["abc123", "def456", "abc123"], "velocity": [200.0, 150.0, 220.0]}),
        buf,
    )
    s3 = minio_client()
    s3.put_object(bucket, f"{prefix}/part-0.parquet", io.BytesIO(buf.getvalue()), buf.tell())
    table = names()
    try:
        ch.command(
            f"CREATE TABLE {table} (icao24 String, velocity Float64) ENGINE = MergeTree "
            f"ORDER BY icao24"
        )
        # MinIO as ClickHouse sees it: the same address natively, `http://minio:9000` from the
        # clickhouse-server container in the docker stack.
        s3_endpoint = setting("CLICKHOUSE_S3_ENDPOINT", ep.minio_url)
        url = f"{s3_endpoint}/{bucket}/{prefix}/*.parquet"
        ch.command(
            f"INSERT INTO {table} SELECT icao24, velocity "
            f"FROM s3({{url:String}}, {{key:String}}, {{secret:String}}, 'Parquet')",
            parameters={"url": url, "key": ep.minio_access_key, "secret": ep.minio_secret_key},
        )
        rows = ch.query(
            f"SELECT icao24, count(), max(velocity) FROM {table} GROUP BY icao24 ORDER BY icao24"
        ).result_rows
        assert rows == [("abc123", 2, 220.0), ("def456", 1, 150.0)]
    finally:
        for obj in s3.list_objects(bucket, prefix=f"{prefix}/", recursive=True):
            s3.remove_object(bucket, obj.object_name)


def test_server_time_zone_is_utc_on_a_machine_in_another_zone(tmp_path):
    """A chDB server started where the host's zone is not UTC still reports and stores UTC, so an
    aware datetime keeps its instant (natively; the docker clickhouse-server runs in UTC too)."""
    import os
    import socket
    import subprocess
    import sys

    import clickhouse_connect

    if setting("STACK", "auto") not in ("auto", "native"):
        pytest.skip("starts a native chDB server; the docker stack's server is covered above")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "TZ": "Asia/Kolkata"}
    argv = [sys.executable, "-m", "harness.ops.chdb_server", "--port", str(port)]
    server = subprocess.Popen([*argv, "--path", str(tmp_path / "ch")], env=env)
    try:
        ep = endpoints()

        def connected():
            assert server.poll() is None, "the chDB server exited at start"
            try:
                return clickhouse_connect.get_client(
                    host="127.0.0.1",
                    port=port,
                    username=ep.clickhouse_user,
                    password=ep.clickhouse_password,
                )
            except Exception:
                return None

        client = wait_until(connected, "the second chDB server answering")
        assert client.command("SELECT timezone()") == "UTC"
        client.command("CREATE TABLE t (at DateTime) ENGINE = MergeTree ORDER BY at")
        instant = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        client.insert("t", [[instant]], column_names=["at"])
        assert client.command("SELECT toString(at) FROM t") == "2024-05-01 12:00:00"
    finally:
        server.terminate()
        server.wait(timeout=30)
