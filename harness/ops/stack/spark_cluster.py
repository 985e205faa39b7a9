"""A Spark standalone cluster for the native stack: one master and one worker, started with PySpark's
own `bin/spark-class`, so `spark-submit --master spark://127.0.0.1:7077 ...` runs the driver and the
executors in separate processes, as on a real cluster.

Installing the master also fetches the extra jars Spark jobs need (Kafka source, s3a, JDBC driver,
see infra/native/spark/pom.xml) into `.stack/jars/spark`; `harness.runtime.spark` hands them to drivers,
which ship them to executors.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from harness.ops.stack.base import JARS_DIR, Service, StackError, log
from harness.ops.stack.jars import fetch_jars, jars_installed
from harness.runtime.config import ROOT, STACK_DIR, setting
from harness.runtime.services import port_open

SPARK_POM = ROOT / "infra" / "native" / "spark" / "pom.xml"
SPARK_JARS_DIR = JARS_DIR / "spark"


# ------------------------------------------------------------------ PySpark's installation
def spark_home() -> Path:
    """PySpark's folder in the venv: it carries bin/spark-class, bin/spark-submit and jars/."""
    try:
        import pyspark
    except ImportError as exc:
        raise StackError("PySpark is not installed in this venv; run `make setup`.") from exc
    return Path(pyspark.__file__).resolve().parent


def pyspark_jar_names() -> set[str]:
    """Artifact names (version stripped) of the jars PySpark already ships."""
    return {_artifact(p.name) for p in (spark_home() / "jars").glob("*.jar")}


def _artifact(jar_name: str) -> str:
    """`kafka-clients-3.9.1.jar` -> `kafka-clients`."""
    stem = jar_name.removesuffix(".jar")
    parts = stem.split("-")
    for i, part in enumerate(parts):
        if i and part[:1].isdigit():
            return "-".join(parts[:i])
    return stem


# ------------------------------------------------------------------ the extra jars
def jars_complete() -> bool:
    """True when `SPARK_JARS_DIR` holds what the last verified fetch of the Spark pom left there."""
    return jars_installed(SPARK_POM, SPARK_JARS_DIR)


def fetch_spark_jars() -> list[Path]:
    """The pom's jars into `SPARK_JARS_DIR`, without those PySpark already ships (never twice)."""
    shipped = pyspark_jar_names()
    return fetch_jars(SPARK_POM, SPARK_JARS_DIR, skip=lambda name: _artifact(name) in shipped)


# ------------------------------------------------------------------ the cluster
def _spark_env(local_dir: Path) -> dict[str, str]:
    conf_dir = STACK_DIR / "conf" / "spark"
    conf_dir.mkdir(parents=True, exist_ok=True)
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_CONF_DIR": str(conf_dir),  # ours, empty: nothing from a user's other Spark leaks in
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(local_dir),
        "SPARK_DAEMON_MEMORY": setting("SPARK_DAEMON_MEMORY", "256m"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def _spark_class(main: str, *arguments: object, **options: object) -> list[str]:
    """The argv that runs Spark's class `main` through PySpark's bin/spark-class: each option
    `webui_port=8081` as `--webui-port 8081` (underscores as dashes), then `arguments`."""
    argv = [str(spark_home() / "bin" / "spark-class"), main]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv + [str(argument) for argument in arguments]


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


class SparkMaster(
    Service, name="spark-master", title="Spark master", env="SPARK_MASTER", start_timeout=90
):
    def __init__(self) -> None:
        super().__init__()
        self.webui_port = int(setting("SPARK_MASTER_WEBUI_PORT", "8081"))
        self.endpoint = f"spark://{self.host}:{self.port}"
        self.status_url = f"http://{self.host}:{self.webui_port}/json/"  # the master's state

    def installed(self) -> bool:
        try:
            home = spark_home()
        except StackError:
            return False
        return (home / "bin" / "spark-class").exists() and jars_complete()

    def install(self) -> None:
        home = spark_home()
        for script in ("spark-class", "spark-submit", "load-spark-env.sh", "find-spark-home"):
            path = home / "bin" / script
            if path.exists() and not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
        jars = fetch_spark_jars()
        log(f"      {len(jars)} jars in {SPARK_JARS_DIR} verified")

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = _spark_class(
            "org.apache.spark.deploy.master.Master",
            host=self.host,
            port=self.port,
            webui_port=self.webui_port,
        )
        return argv, _spark_env(self.data_dir)

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        state = _get_json(self.status_url)
        return bool(state) and state.get("status") == "ALIVE"


class SparkWorker(Service, name="spark-worker", title="Spark worker", start_timeout=90):
    def __init__(self) -> None:
        self.master = SparkMaster()
        self.host = self.master.host
        self.port = int(setting("SPARK_WORKER_WEBUI_PORT", "8082"))
        self.cores = setting("SPARK_WORKER_CORES", "2")
        self.memory = setting("SPARK_WORKER_MEMORY", "1g")

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port} ({self.cores} cores, {self.memory})"

    def installed(self) -> bool:
        try:
            return (spark_home() / "bin" / "spark-class").exists()
        except StackError:
            return False

    def install(self) -> None:
        spark_home()

    def prepare(self) -> None:
        if not self.master.healthy():
            raise StackError(
                f"{self.title} needs the Spark master at {self.master.endpoint}; start it first "
                "(python -m harness.ops.stack up spark-master)."
            )

    def command(self) -> tuple[list[str], dict[str, str]]:
        work_dir = self.data_dir / "work"
        work_dir.mkdir(parents=True, exist_ok=True)
        argv = _spark_class(
            "org.apache.spark.deploy.worker.Worker",
            self.master.endpoint,
            host=self.host,
            webui_port=self.port,
            cores=self.cores,
            memory=self.memory,
            work_dir=work_dir,
        )
        env = _spark_env(self.data_dir)
        # Finished applications' folders (logs, fetched jars) are removed after a day.
        env["SPARK_WORKER_OPTS"] = (
            "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.appDataTtl=86400"
        )
        return argv, env

    def healthy(self) -> bool:
        """The worker's UI answers and the master lists it as ALIVE."""
        if not port_open(self.host, self.port):
            return False
        state = _get_json(self.master.status_url)
        if not state:
            return False
        for worker in state.get("workers", []):
            if worker.get("state") == "ALIVE" and worker.get("webuiaddress", "").endswith(
                f":{self.port}"
            ):
                return True
        return False
