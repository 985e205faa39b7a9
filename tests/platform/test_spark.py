"""Platform tests for Spark: s3a:// on MinIO, JDBC to PostgreSQL, the Kafka source, and a job
submitted to the standalone cluster, where the driver and the executors are separate processes.

Objects, tables and topics have unique names and are removed afterwards. Services are reached
only through `harness.runtime.services` (a missing service raises `ServiceUnavailable`).
"""

from __future__ import annotations

import io
import json
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
from psycopg import sql

from harness.ops.stack.spark_cluster import SparkMaster, SparkWorker
from harness.runtime.config import endpoints
from harness.runtime.services import ServiceUnavailable, minio_client, pg_connect, port_open
from harness.runtime.spark import spark_jars, spark_submit_command, spark_submit_conf
from harness.runtime.waits import wait_until

ROWS = [
    {"icao24": "3c6444", "origin_country": "Germany", "velocity": 231.5},
    {"icao24": "4b1806", "origin_country": "Switzerland", "velocity": 198.0},
    {"icao24": "3c4b26", "origin_country": "Germany", "velocity": 240.25},
]


def _put_json_lines(bucket: str, key: str, rows: list[dict]) -> None:
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    minio_client().put_object(bucket, key, io.BytesIO(body), len(body), "application/json")


def _remove_prefix(bucket: str, prefix: str) -> None:
    client = minio_client()
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        client.remove_object(bucket, obj.object_name)


@pytest.fixture
def s3_prefix():
    """A unique prefix in raw-data and processed-data, emptied afterwards."""
    prefix = f"platform-tests/{uuid.uuid4().hex}"
    yield prefix
    for bucket in ("raw-data", "processed-data"):
        _remove_prefix(bucket, prefix)


def test_read_json_from_s3a(spark, s3_prefix) -> None:
    """A local[2] session reads s3a://raw-data/<prefix>/*.json written to MinIO."""
    _put_json_lines("raw-data", f"{s3_prefix}/part-0.json", ROWS[:2])
    _put_json_lines("raw-data", f"{s3_prefix}/part-1.json", ROWS[2:])
    df = spark.read.json(f"s3a://raw-data/{s3_prefix}/*.json")
    got = {(r["icao24"], r["origin_country"], r["velocity"]) for r in df.collect()}
    want = {(r["icao24"], r["origin_country"], r["velocity"]) for r in ROWS}
    assert got == want, f"read back {got}, expected {want}"


def test_write_parquet_to_s3a(spark, s3_prefix) -> None:
    """Spark writes Parquet to s3a://processed-data and reads the aggregate back."""
    path = f"s3a://processed-data/{s3_prefix}/by_country"
    df = spark.createDataFrame(ROWS)
    df.groupBy("origin_country").count().write.mode("overwrite").parquet(path)
    got = {r["origin_country"]: r["count"] for r in spark.read.parquet(path).collect()}
    assert got == {"Germany": 2, "Switzerland": 1}, f"aggregate read back as {got}"
    names = [
        o.object_name
        for o in minio_client().list_objects("processed-data", prefix=s3_prefix, recursive=True)
    ]
    assert any(n.endswith(".parquet") for n in names), f"no Parquet file in MinIO: {names}"


def test_jdbc_round_trip_with_postgres(spark) -> None:
    """The PostgreSQL JDBC driver is on Spark's class path: write a table, read it back."""
    ep = endpoints()
    table = f"platform_spark_{uuid.uuid4().hex[:10]}"
    props = {"user": ep.pg_user, "password": ep.pg_password, "driver": "org.postgresql.Driver"}
    try:
        spark.createDataFrame(ROWS).write.jdbc(
            ep.pg_jdbc_url, table, mode="overwrite", properties=props
        )
        back = spark.read.jdbc(ep.pg_jdbc_url, table, properties=props)
        assert back.count() == len(ROWS), f"expected {len(ROWS)} rows in {table}"
    finally:
        with pg_connect() as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))


def test_kafka_source_reads_a_topic(spark) -> None:
    """The Kafka connector (spark-sql-kafka) reads messages produced to a fresh topic."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    from harness.runtime.services import kafka_admin, kafka_config

    topic = f"platform_spark_{uuid.uuid4().hex[:10]}"
    admin = kafka_admin()
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(15)
    try:
        producer = Producer(kafka_config())
        for row in ROWS:
            producer.produce(topic, key=row["icao24"], value=json.dumps(row))
        assert producer.flush(15) == 0, "messages were not delivered to the broker"
        df = (
            spark.read.format("kafka")
            .option("kafka.bootstrap.servers", endpoints().kafka_bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .load()
        )
        keys = sorted(r["key"].decode() for r in df.select("key").collect())
        assert keys == sorted(r["icao24"] for r in ROWS), f"read keys {keys}"
    finally:
        admin.delete_topics([topic])[topic].result(15)


def test_spark_jars_missing_is_a_loud_error(monkeypatch, tmp_path) -> None:
    """Without the fetched jars the factory names the command that fetches them."""
    import harness.runtime.spark as spark_module

    monkeypatch.setattr(spark_module, "SPARK_JARS_DIR", tmp_path)
    monkeypatch.setattr(spark_module, "jars_complete", lambda: False)
    with pytest.raises(RuntimeError, match="make setup"):
        spark_module.spark_jars()


def test_submit_options_cover_jars_and_s3a() -> None:
    """`spark_submit_conf()` carries the jars and the s3a settings `get_spark()` uses."""
    local = spark_submit_conf("local[2]")
    assert local[0] == "--jars" and all(str(j) in local[1] for j in spark_jars())
    cluster = " ".join(spark_submit_conf("spark://127.0.0.1:7077"))
    for needle in (
        "spark.executor.extraClassPath=",
        "hadoop-aws-",
        f"spark.hadoop.fs.s3a.endpoint={endpoints().minio_url}",
        "spark.hadoop.fs.s3a.path.style.access=true",
    ):
        assert needle in cluster, f"{needle!r} missing from the cluster submit options"


CLUSTER_JOB = textwrap.dedent(
    '''
    """Runs on the standalone cluster: reads JSON from s3a, writes a count to s3a, reports pids."""
    import json
    import os
    import sys

    from pyspark.sql import SparkSession


    def ancestry(_):
        import psutil

        me = psutil.Process()
        yield [me.pid] + [parent.pid for parent in me.parents() if parent.pid > 1]


    source, target = sys.argv[1], sys.argv[2]
    spark = SparkSession.builder.appName("platform-cluster-test").getOrCreate()
    df = spark.read.json(source)
    counts = df.groupBy("origin_country").count()
    counts.coalesce(1).write.mode("overwrite").json(target)
    executor_chain = spark.sparkContext.parallelize([0], 1).mapPartitions(ancestry).collect()[0]
    print("RESULT " + json.dumps({
        "master": spark.sparkContext.master,
        "driver_pid": os.getpid(),
        "executor_chain": executor_chain,
        "rows": df.count(),
    }))
    spark.stop()
    '''
)


def test_job_on_standalone_cluster(tmp_path: Path, s3_prefix: str) -> None:
    """`spark-submit --master spark://127.0.0.1:7077` runs a job whose executors are processes
    of the cluster's worker (not of the driver), reading and writing s3a://."""
    master, worker = SparkMaster(), SparkWorker()
    if not master.healthy():
        raise ServiceUnavailable("Spark master", master.endpoint)
    if not worker.healthy():
        raise ServiceUnavailable("Spark worker", f"{worker.host}:{worker.port}")
    _put_json_lines("raw-data", f"{s3_prefix}/states.json", ROWS)
    script = tmp_path / "cluster_job.py"
    script.write_text(CLUSTER_JOB)
    target = f"s3a://processed-data/{s3_prefix}/counts"
    argv, env = spark_submit_command(
        script, [f"s3a://raw-data/{s3_prefix}/states.json", target], master=master.endpoint
    )
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=420)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
    assert result.returncode == 0 and lines, (
        f"spark-submit failed (exit {result.returncode}):\n{result.stderr[-3000:]}"
    )
    report = json.loads(lines[-1].removeprefix("RESULT "))
    assert report["master"] == master.endpoint
    assert report["rows"] == len(ROWS)
    chain = report["executor_chain"]
    assert report["driver_pid"] not in chain, "the task ran inside the driver process"
    assert worker.pid() in chain, (
        f"the task's process chain {chain} does not descend from the worker (pid {worker.pid()})"
    )
    written = "".join(
        minio_client().get_object("processed-data", o.object_name).read().decode()
        for o in minio_client().list_objects(
            "processed-data", prefix=f"{s3_prefix}/counts/", recursive=True
        )
        if o.object_name.endswith(".json")
    )
    counts = {
        json.loads(ln)["origin_country"]: json.loads(ln)["count"] for ln in written.splitlines()
    }
    assert counts == {"Germany": 2, "Switzerland": 1}, f"the job wrote {counts}"


def test_cluster_web_ui_lists_the_worker() -> None:
    """The master's status page lists one ALIVE worker with the configured cores."""
    master = SparkMaster()
    if not port_open(master.host, master.webui_port):
        raise ServiceUnavailable("Spark master", master.endpoint)
    import urllib.request

    def alive_workers() -> list[dict]:
        with urllib.request.urlopen(master.status_url, timeout=5) as response:
            return [w for w in json.load(response)["workers"] if w["state"] == "ALIVE"]

    alive = wait_until(alive_workers, "an ALIVE worker on the Spark master's status page", 10)
    assert alive[0]["cores"] == int(SparkWorker().cores)
