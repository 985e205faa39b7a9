"""The one SparkSession factory of the labs, and the matching `spark-submit` options.

Every session gets the extra jars (Kafka source, s3a, PostgreSQL JDBC; fetched by `make setup` into
`.stack/jars/spark`), `s3a://` pointed at the lab's MinIO, UTC and small shuffles. The same settings
go to `spark-submit` through `spark_submit_conf()`, so a job behaves the same in `local[2]` and on the
standalone cluster (`spark://127.0.0.1:7077`), where executors are separate processes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.ops.stack.spark_cluster import SPARK_JARS_DIR, jars_complete
from harness.runtime.config import ROOT, endpoints, setting

# File-name prefixes of the jars a session cannot work without.
REQUIRED_JARS = ("spark-sql-kafka-0-10_", "hadoop-aws-", "bundle-", "postgresql-")


def spark_jars() -> list[Path]:
    """The extra jars every Spark driver and executor gets; a loud error when they are missing."""
    jars = sorted(SPARK_JARS_DIR.glob("*.jar"))
    missing = [r.rstrip("-_") for r in REQUIRED_JARS if not any(j.name.startswith(r) for j in jars)]
    if missing or not jars_complete():
        raise RuntimeError(
            f"Spark's extra jars are missing or incomplete in {SPARK_JARS_DIR} "
            f"(missing: {', '.join(missing) or 'a verified set'}). Fetch them with: make setup "
            "(or: python -m harness.ops.stack install spark-master)."
        )
    return jars


def _on_cluster(master: str | None) -> bool:
    return (master or "").startswith("spark://")


def jar_conf(master: str | None = None) -> dict[str, str]:
    """How the extra jars reach the driver and the executors.

    Locally (`local[N]`) they are `spark.jars`. On the native standalone cluster the worker runs on
    this machine, so driver and executors put the jar folder on their class path instead: with
    `spark.jars` every application would copy the ~550 MB AWS SDK bundle into its work directory.
    PySpark's slf4j-api goes first because the AWS bundle carries an old copy of the slf4j API.
    """
    jars = spark_jars()
    if not _on_cluster(master):
        return {"spark.jars": ",".join(str(j) for j in jars)}
    from harness.ops.stack.spark_cluster import spark_home

    slf4j = sorted((spark_home() / "jars").glob("slf4j-api-*.jar"))
    classpath = ":".join(str(p) for p in [*slf4j, *jars])
    return {"spark.driver.extraClassPath": classpath, "spark.executor.extraClassPath": classpath}


def spark_conf(master: str | None = None) -> dict[str, str]:
    """Spark settings shared by `get_spark()` and `spark_submit_conf()` (jars not included)."""
    ep = endpoints()
    conf = {
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.memory": "1g",
        # Executors call the driver back at this address: 127.0.0.1 on the host; a container's
        # name inside the docker stack (SPARK_DRIVER_HOST=jupyter in infra/docker-compose.yml).
        "spark.driver.host": setting("SPARK_DRIVER_HOST", "127.0.0.1"),
        "spark.driver.bindAddress": setting(
            "SPARK_DRIVER_BIND_ADDRESS", setting("SPARK_DRIVER_HOST", "127.0.0.1")
        ),
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # s3a:// is the lab's MinIO: path-style buckets, plain HTTP, local credentials.
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.endpoint": ep.minio_url,
        "spark.hadoop.fs.s3a.endpoint.region": "us-east-1",
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.access.key": ep.minio_access_key,
        "spark.hadoop.fs.s3a.secret.key": ep.minio_secret_key,
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"
        ),
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
    }
    # Extra JVM flags of the driver and executors (infra/.env), e.g. a lighter JIT for short jobs.
    jvm = setting("SPARK_JVM_OPTIONS", "")
    if jvm:
        conf["spark.driver.extraJavaOptions"] = jvm
        conf["spark.executor.extraJavaOptions"] = jvm
    if _on_cluster(master):
        # Leave room on the lab's one worker for a second application (a notebook, a test).
        conf["spark.executor.memory"] = "512m"
        conf["spark.cores.max"] = "1"
    return conf


def get_spark(app_name: str = "opensky-labs", master: str | None = None):
    """A SparkSession for the labs; `master` defaults to `SPARK_TEST_MASTER` (local[2]).

    Under `spark-submit` the master and jars come from spark-submit's own arguments: a session
    started there keeps them (`--master spark://127.0.0.1:7077` stays the cluster).
    """
    from pyspark.sql import SparkSession

    if "PYSPARK_GATEWAY_PORT" in os.environ and master is None:
        # Launched by spark-submit: the JVM is already configured; only name the application.
        return SparkSession.builder.appName(app_name).getOrCreate()
    master = master or endpoints().spark_test_master
    # Python workers (local or on the cluster's executors) use this venv's interpreter.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in {**jar_conf(master), **spark_conf(master)}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def spark_submit_conf(master: str | None = None) -> list[str]:
    """`spark-submit` options (`--jars ...`/`--conf k=v ...`) equal to what `get_spark()` sets.

    `master` defaults to the standalone cluster (`SPARK_MASTER_URL`). In a shell:
        spark-submit --master spark://127.0.0.1:7077 $(python -m harness.runtime.spark) job.py args
    """
    master = master or endpoints().spark_master_url
    args: list[str] = []
    for key, value in {**jar_conf(master), **spark_conf(master)}.items():
        if key == "spark.jars":
            args += ["--jars", value]
            continue
        args += ["--conf", f"{key}={value}"]
    return args


def spark_submit_command(
    script: str | Path, args: list[str] | tuple[str, ...] = (), master: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """argv and environment to `spark-submit` `script` (default: to the standalone cluster).

    The environment points `SPARK_HOME` at PySpark in this venv (so it works without an activated
    venv) and makes the driver bind 127.0.0.1, as the cluster does.
    """
    from harness.ops.stack.spark_cluster import spark_home

    master = master or endpoints().spark_master_url
    home = spark_home()
    argv = [str(home / "bin" / "spark-submit"), "--master", master, *spark_submit_conf(master)]
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        # Jobs may import the repository's packages (harness, solutions, labs).
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    return [*argv, str(script), *map(str, args)], env


if __name__ == "__main__":
    # For a shell: spark-submit --master spark://... $(python -m harness.runtime.spark [MASTER]) job.py
    print(" ".join(spark_submit_conf(sys.argv[1] if len(sys.argv) > 1 else None)))


@contextmanager
def session_conf(spark, conf: dict[str, str]) -> Iterator[None]:
    """Set Spark SQL settings for the block (e.g. around a query's `.start()`), then restore them."""
    before = {key: spark.conf.get(key, None) for key in conf}
    for key, value in conf.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)
