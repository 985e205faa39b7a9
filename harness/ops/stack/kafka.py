"""Apache Kafka broker in KRaft mode: one JVM that is both broker and controller.

The jars come from Maven Central through `infra/native/kafka/pom.xml` (no tarball). Config, storage
and the cluster id live in `.stack/data/kafka`; the storage is formatted once.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import uuid
import zipfile
from pathlib import Path

from harness.ops.stack.base import (
    JARS_DIR,
    Service,
    StackError,
    java,
    log,
    restore_from_user_cache,
    save_to_user_cache,
)
from harness.runtime.config import ROOT, setting
from harness.runtime.services import port_open

KAFKA_POM = ROOT / "infra" / "native" / "kafka" / "pom.xml"
INSTALLED_MARKER = ".installed"
MAVEN_ATTEMPTS = 3


# ---------------------------------------------------------------- jars from Maven Central
def _fingerprint(pom: Path, properties: dict[str, str]) -> str:
    """Identifies one resolution: the pom's content plus the `-D` properties given to Maven."""
    digest = hashlib.sha256(pom.read_bytes())
    for key, value in sorted(properties.items()):
        digest.update(f"\n{key}={value}".encode())
    return digest.hexdigest()


def jars_installed(pom: Path, dest: Path, properties: dict[str, str] | None = None) -> bool:
    """True when `dest` holds a verified copy of `pom`'s dependencies for these properties."""
    marker = dest / INSTALLED_MARKER
    try:
        return marker.read_text().strip() == _fingerprint(pom, properties or {})
    except OSError:
        return False


def broken_jars(directory: Path) -> list[Path]:
    """Jars in `directory` that are not complete zip files (truncated or corrupt downloads)."""
    bad = []
    for jar in sorted(directory.glob("*.jar")):
        try:
            with zipfile.ZipFile(jar) as zf:
                if zf.testzip() is not None:
                    bad.append(jar)
        except (zipfile.BadZipFile, OSError, EOFError):
            bad.append(jar)
    return bad


def _local_repository() -> Path:
    return Path.home() / ".m2" / "repository"


def _forget_cached(jar_name: str) -> None:
    """Delete a jar (and its checksums) from the local Maven repository so it is fetched again."""
    repo = _local_repository()
    if not repo.exists():
        return
    for cached in repo.rglob(jar_name):
        for sibling in cached.parent.glob(cached.name + "*"):
            sibling.unlink(missing_ok=True)
        # Maven's record of where the file came from; without the file it is stale anyway.
        (cached.parent / "_remote.repositories").unlink(missing_ok=True)


def fetch_jars(
    pom: Path,
    dest: Path,
    properties: dict[str, str] | None = None,
    required: tuple[str, ...] = (),
) -> None:
    """Copy every dependency of `pom` into `dest` (replacing it), verifying each jar.

    `properties` override the pom's `<properties>` (versions come from infra/.env). Maven runs
    with strict checksums; a jar that still fails a zip test (truncated download) is removed from
    the local repository and fetched again, up to `MAVEN_ATTEMPTS` times.
    """
    properties = properties or {}
    cache_key = f"jars/{dest.name}-{_fingerprint(pom, properties)[:16]}"
    if restore_from_user_cache(
        cache_key, dest, lambda: jars_installed(pom, dest, properties) and not broken_jars(dest)
    ):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (`mvn`, 3.8 or newer) is needed to fetch the Kafka jars; install it."
        )
    # Staged outside `dest`'s folder: a half-filled directory must never sit in a plugin path.
    partial = JARS_DIR / ".partial" / dest.name
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _fetch_into(mvn, pom, partial, properties, required)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    save_to_user_cache(cache_key, dest)


def _fetch_into(
    mvn: str, pom: Path, partial: Path, properties: dict[str, str], required: tuple[str, ...]
) -> None:
    argv = [
        mvn,
        "-q",
        "-B",
        "--strict-checksums",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={partial}",
        *(f"-D{key}={value}" for key, value in sorted(properties.items())),
    ]
    bad: list[Path] = []
    for attempt in range(1, MAVEN_ATTEMPTS + 1):
        log(f"fetching jars for {pom.relative_to(ROOT)} (attempt {attempt}) ...")
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip().splitlines()
            raise StackError(
                f"Maven could not resolve {pom}: is Maven Central reachable?\n"
                + "\n".join(output[-25:])
            )
        bad = broken_jars(partial)
        if not bad:
            break
        log(f"  {len(bad)} broken jar(s), fetching again: {', '.join(p.name for p in bad)}")
        for jar in bad:
            jar.unlink(missing_ok=True)
            _forget_cached(jar.name)
    if bad:
        raise StackError(
            f"jars still broken after {MAVEN_ATTEMPTS} downloads: {', '.join(p.name for p in bad)}"
        )
    missing = [name for name in required if not (partial / name).exists()]
    if missing:
        raise StackError(f"{pom} did not bring {', '.join(missing)}; check the pom's versions.")
    (partial / INSTALLED_MARKER).write_text(_fingerprint(pom, properties) + "\n")


def classpath(directory: Path) -> str:
    return str(directory / "*")


def jvm_options(heap_max: str, heap_min: str, log4j_config: Path) -> list[str]:
    """JVM flags shared by the broker and the Connect worker."""
    return [
        f"-Xmx{heap_max}",
        f"-Xms{heap_min}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
    ]


def write_log4j2(path: Path, quiet: tuple[str, ...] = ()) -> None:
    """A log4j2 properties file: INFO to stdout (the service log), `quiet` loggers at WARN."""
    lines = [
        "status = warn",
        "appender.out.type = Console",
        "appender.out.name = STDOUT",
        "appender.out.layout.type = PatternLayout",
        "appender.out.layout.pattern = [%d] %p %m (%c{1})%n",
        "rootLogger.level = INFO",
        "rootLogger.appenderRef.out.ref = STDOUT",
    ]
    for i, name in enumerate(quiet):
        lines += [f"logger.q{i}.name = {name}", f"logger.q{i}.level = WARN"]
    path.write_text("\n".join(lines) + "\n")


def write_properties(path: Path, values: dict[str, object]) -> None:
    body = "".join(f"{key}={value}\n" for key, value in values.items())
    path.write_text("# Generated by harness/ops/stack; edits are overwritten at start.\n" + body)


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding, not starting with '-'."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


# ---------------------------------------------------------------- the broker
class KafkaBroker(Service):
    """Single-node KRaft Kafka (broker + controller) on 127.0.0.1."""

    name = "kafka"
    title = "Kafka broker"
    start_timeout = 120.0

    def __init__(self) -> None:
        self.host = setting("KAFKA_HOST", "127.0.0.1")
        self.port = int(setting("KAFKA_PORT", "9092"))
        self.controller_port = int(setting("KAFKA_CONTROLLER_PORT", "9093"))
        self.version = setting("KAFKA_VERSION", "4.1.1")

    # ---- paths
    @property
    def jars_dir(self) -> Path:
        return JARS_DIR / "kafka"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j2.properties"

    @property
    def log_dirs(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def cluster_id_file(self) -> Path:
        return self.data_dir / "cluster.id"

    # ---- install
    def maven_properties(self) -> dict[str, str]:
        return {"kafka.version": self.version}

    def installed(self) -> bool:
        return jars_installed(KAFKA_POM, self.jars_dir, self.maven_properties())

    def install(self) -> None:
        fetch_jars(
            KAFKA_POM,
            self.jars_dir,
            self.maven_properties(),
            required=(f"kafka_2.13-{self.version}.jar",),
        )

    # ---- configuration
    def properties(self) -> dict[str, object]:
        return {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@{self.host}:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": self.log_dirs,
            "num.partitions": 1,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            "group.initial.rebalance.delay.ms": 0,
            "num.network.threads": 2,
            "num.io.threads": 4,
            # A lab machine keeps a day of data in at most 1 GiB per partition.
            "log.retention.hours": 24,
            "log.retention.bytes": 1073741824,
            "log.segment.bytes": 104857600,
        }

    def cluster_id(self) -> str:
        """The stable cluster id of this installation (created once, kept in the data dir)."""
        meta = self.log_dirs / "meta.properties"
        if meta.exists():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
        if self.cluster_id_file.exists():
            return self.cluster_id_file.read_text().strip()
        cid = new_cluster_id()
        self.cluster_id_file.write_text(cid + "\n")
        return cid

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_properties(self.config_file, self.properties())
        write_log4j2(
            self.log4j_file,
            quiet=("org.apache.kafka.clients", "state.change.logger", "kafka.log.LogCleaner"),
        )
        cid = self.cluster_id()
        self.cluster_id_file.write_text(cid + "\n")
        if (self.log_dirs / "meta.properties").exists():
            return
        argv = [
            java(),
            *jvm_options("256m", "64m", self.log4j_file),
            "-cp",
            classpath(self.jars_dir),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cid,
            "-c",
            str(self.config_file),
            "--ignore-formatted",
        ]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(
                "formatting the Kafka storage failed:\n" + (result.stdout + result.stderr)[-3000:]
            )

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = [
            java(),
            "-server",
            *jvm_options("512m", "256m", self.log4j_file),
            "-cp",
            classpath(self.jars_dir),
            "kafka.Kafka",
            str(self.config_file),
        ]
        return argv, {}

    # ---- health
    def healthy(self) -> bool:
        """The broker answers a metadata request (not just an open port)."""
        if not port_open(self.host, self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(
            {
                "bootstrap.servers": f"{self.host}:{self.port}",
                "socket.timeout.ms": 2000,
                "log_level": 0,
                "logger": _silent_logger(),
            }
        )
        try:
            metadata = admin.list_topics(timeout=3)
        except Exception:  # KafkaException: no answer within the timeout
            return False
        return bool(metadata.brokers)


def _silent_logger():
    import logging

    logger = logging.getLogger("opensky.stack.kafka.health")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False
    return logger
