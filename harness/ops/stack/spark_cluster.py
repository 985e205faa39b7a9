"""A Spark standalone cluster for the native stack: one master and one worker, started with PySpark's
own `bin/spark-class`, so `spark-submit --master spark://127.0.0.1:7077 ...` runs the driver and the
executors in separate processes, as on a real cluster.

Installing the master also fetches the extra jars Spark jobs need (Kafka source, s3a, JDBC driver,
see infra/native/spark/pom.xml) into `.stack/jars/spark`; `harness.runtime.spark` hands them to drivers,
which ship them to executors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from harness.ops.stack.base import (
    JARS_DIR,
    Service,
    StackError,
    log,
    restore_from_user_cache,
    save_to_user_cache,
)
from harness.runtime.config import ROOT, STACK_DIR, setting
from harness.runtime.services import port_open

SPARK_POM = ROOT / "infra" / "native" / "spark" / "pom.xml"
SPARK_JARS_DIR = JARS_DIR / "spark"
MANIFEST = ".manifest.json"


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
def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def jar_ok(path: Path, thorough: bool = False) -> bool:
    """The jar ends with a zip directory (cheap); `thorough` also checks every entry's CRC."""
    try:
        if not thorough:
            return zipfile.is_zipfile(path)  # finds the end-of-directory record
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (OSError, zipfile.BadZipFile):
        return False


def jars_complete(dest: Path = SPARK_JARS_DIR, pom: Path = SPARK_POM) -> bool:
    """True when `dest` holds exactly what the last verified fetch of `pom` left there."""
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("pom") != _pom_digest(pom):
        return False
    for name, size in manifest.get("jars", {}).items():
        path = dest / name
        if not path.is_file() or path.stat().st_size != size or not jar_ok(path):
            return False
    return bool(manifest.get("jars"))


def fetch_jars(dest: Path = SPARK_JARS_DIR, pom: Path = SPARK_POM) -> list[Path]:
    """Resolve `pom`'s runtime jars with Maven into `dest`, verified; resumable and idempotent.

    Maven writes into a scratch folder next to `dest`; only a fully verified set replaces `dest`,
    so an interrupted fetch never leaves a truncated jar where Spark looks. A jar that is broken in
    Maven's local repository is deleted there and fetched again.
    """
    if jars_complete(dest, pom):
        return sorted(dest.glob("*.jar"))
    cache_key = f"jars/spark-{_pom_digest(pom)[:16]}"
    if restore_from_user_cache(cache_key, dest, lambda: jars_complete(dest, pom)):
        return sorted(dest.glob("*.jar"))
    log(f"      mvn dependency:copy-dependencies -f {pom}")
    mvn = shutil.which("mvn")
    if not mvn:
        raise StackError(
            "Maven (`mvn`) is needed to fetch Spark's jars; install it (apt-get install maven)."
        )
    scratch = dest.with_name(dest.name + ".partial")
    for _attempt in (1, 2):
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        argv = [
            mvn,
            "-q",
            "-B",
            "-C",  # fail on a checksum mismatch instead of warning
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={scratch}",
            "-DincludeScope=runtime",
        ]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(
                f"Maven could not fetch Spark's jars ({' '.join(argv)}):\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        duplicates = pyspark_jar_names()
        for jar in scratch.glob("*.jar"):
            if _artifact(jar.name) in duplicates:
                log(f"      {jar.name} is already in PySpark's jars: not added twice")
                jar.unlink()
        broken = [j for j in scratch.glob("*.jar") if not jar_ok(j, thorough=True)]
        if not broken:
            break
        for jar in broken:
            log(f"      {jar.name} is corrupt in Maven's local repository: fetching it again")
            _forget_in_maven_repo(jar.name)
    else:
        raise StackError(f"jars still corrupt after a second fetch: {[j.name for j in broken]}")
    manifest = {
        "pom": _pom_digest(pom),
        "jars": {j.name: j.stat().st_size for j in sorted(scratch.glob("*.jar"))},
    }
    (scratch / MANIFEST).write_text(json.dumps(manifest, indent=1))
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    scratch.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    save_to_user_cache(cache_key, dest)
    return sorted(dest.glob("*.jar"))


def _forget_in_maven_repo(jar_name: str) -> None:
    repo = Path(os.environ.get("MAVEN_REPO", Path.home() / ".m2" / "repository"))
    for path in repo.rglob(jar_name):
        shutil.rmtree(path.parent, ignore_errors=True)


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


def _get_json(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


class SparkMaster(Service):
    name = "spark-master"
    title = "Spark master"
    start_timeout = 90.0

    def __init__(self) -> None:
        self.host = setting("SPARK_MASTER_HOST", "127.0.0.1")
        self.port = int(setting("SPARK_MASTER_PORT", "7077"))
        self.webui_port = int(setting("SPARK_MASTER_WEBUI_PORT", "8081"))
        self.port_variable = "SPARK_MASTER_PORT"
        self.extra_ports = {self.webui_port: "SPARK_MASTER_WEBUI_PORT"}

    @property
    def endpoint(self) -> str:
        return f"spark://{self.host}:{self.port}"

    @property
    def status_url(self) -> str:
        return f"http://{self.host}:{self.webui_port}/json/"

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
        jars = fetch_jars()
        log(f"      {len(jars)} jars in {SPARK_JARS_DIR} verified")

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = [
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.master.Master",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--webui-port",
            str(self.webui_port),
        ]
        return argv, _spark_env(self.data_dir)

    def healthy(self) -> bool:
        if not port_open(self.host, self.port):
            return False
        state = _get_json(self.status_url)
        return bool(state) and state.get("status") == "ALIVE"


class SparkWorker(Service):
    name = "spark-worker"
    title = "Spark worker"
    start_timeout = 90.0

    def __init__(self) -> None:
        self.master = SparkMaster()
        self.host = self.master.host
        self.port = int(setting("SPARK_WORKER_WEBUI_PORT", "8082"))
        self.port_variable = "SPARK_WORKER_WEBUI_PORT"
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
        argv = [
            str(spark_home() / "bin" / "spark-class"),
            "org.apache.spark.deploy.worker.Worker",
            "--host",
            self.host,
            "--webui-port",
            str(self.port),
            "--cores",
            str(self.cores),
            "--memory",
            self.memory,
            "--work-dir",
            str(work_dir),
            self.master.endpoint,
        ]
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
