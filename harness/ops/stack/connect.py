"""Kafka Connect distributed worker with the Debezium PostgreSQL connector plugin.

The worker's jars (`infra/native/connect/pom.xml`) go on its classpath; the Debezium plugin
(`infra/native/connect/debezium-postgres/pom.xml`) gets its own directory under the plugin path,
without Kafka's jars, so Connect loads it in an isolated class loader as it would a plugin tarball.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from harness.ops.stack.base import JARS_DIR, Service, StackError
from harness.ops.stack.jars import fetch_jars, jars_installed
from harness.ops.stack.kafka import (
    KafkaBroker,
    java_command,
    write_log4j2,
    write_properties,
)
from harness.runtime.config import ROOT, endpoints, setting
from harness.runtime.services import port_open

CONNECT_POM = ROOT / "infra" / "native" / "connect" / "pom.xml"
DEBEZIUM_POM = ROOT / "infra" / "native" / "connect" / "debezium-postgres" / "pom.xml"
PLUGINS_DIR = JARS_DIR / "connect-plugins"
DEBEZIUM_PLUGIN_DIR = PLUGINS_DIR / "debezium-connector-postgres"
POSTGRES_CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
GROUP_ID = "opensky-connect"
# Jars that must come from the worker's classpath, never from inside a plugin directory.
WORKER_ONLY_PREFIXES = (
    "kafka-clients-",
    "connect-api-",
    "connect-runtime-",
    "connect-json-",
    "jackson-core-",
    "jackson-databind-",
    "jackson-annotations-",
)


class KafkaConnect(
    Service, name="connect", title="Kafka Connect (Debezium)", env="CONNECT", start_timeout=180
):
    """A single Kafka Connect worker in distributed mode, REST API on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.kafka_version = setting("KAFKA_VERSION", "4.1.1")
        self.debezium_version = setting("DEBEZIUM_VERSION", "3.6.0.Final")
        self.jars_dir = JARS_DIR / "connect"
        self.config_file = self.data_dir / "connect-distributed.properties"
        self.log4j_file = self.data_dir / "log4j2.properties"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- install
    def worker_properties(self) -> dict[str, str]:
        return {"kafka.version": self.kafka_version}

    def plugin_properties(self) -> dict[str, str]:
        return {"debezium.version": self.debezium_version}

    def installed(self) -> bool:
        return jars_installed(CONNECT_POM, self.jars_dir, self.worker_properties()) and (
            jars_installed(DEBEZIUM_POM, DEBEZIUM_PLUGIN_DIR, self.plugin_properties())
        )

    def install(self) -> None:
        if not jars_installed(CONNECT_POM, self.jars_dir, self.worker_properties()):
            fetch_jars(
                CONNECT_POM,
                self.jars_dir,
                self.worker_properties(),
                required=(f"connect-runtime-{self.kafka_version}.jar",),
            )
        if not jars_installed(DEBEZIUM_POM, DEBEZIUM_PLUGIN_DIR, self.plugin_properties()):
            fetch_jars(
                DEBEZIUM_POM,
                DEBEZIUM_PLUGIN_DIR,
                self.plugin_properties(),
                required=(f"debezium-connector-postgres-{self.debezium_version}.jar",),
            )
        leaked = [
            p.name
            for p in DEBEZIUM_PLUGIN_DIR.glob("*.jar")
            if p.name.startswith(WORKER_ONLY_PREFIXES)
        ]
        if leaked:
            raise StackError(
                f"{DEBEZIUM_POM} put Kafka jars into the plugin directory ({', '.join(leaked)}); "
                "exclude them in the pom: the worker's classpath provides them."
            )

    # ---- configuration
    def properties(self) -> dict[str, object]:
        return {
            "bootstrap.servers": endpoints().kafka_bootstrap,
            "group.id": GROUP_ID,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "true",
            "value.converter.schemas.enable": "true",
            "config.storage.topic": f"{GROUP_ID}-configs",
            "offset.storage.topic": f"{GROUP_ID}-offsets",
            "status.storage.topic": f"{GROUP_ID}-status",
            "config.storage.replication.factor": 1,
            "offset.storage.replication.factor": 1,
            "status.storage.replication.factor": 1,
            "offset.storage.partitions": 5,
            "status.storage.partitions": 1,
            "offset.flush.interval.ms": 1000,
            # One worker: reassign a restarted worker's tasks at once instead of after 5 minutes.
            "scheduled.rebalance.max.delay.ms": 0,
            "listeners": f"http://{self.host}:{self.port}",
            "rest.advertised.host.name": self.host,
            "rest.advertised.port": self.port,
            # The folder that holds one sub-folder per plugin (each with its jars).
            "plugin.path": PLUGINS_DIR,
            "topic.creation.enable": "true",
            # Every plugin here ships ServiceLoader manifests: skip the slow reflective scan.
            "plugin.discovery": "service_load",
        }

    def prepare(self) -> None:
        broker = KafkaBroker()
        if not broker.healthy():
            raise StackError(
                f"{self.title} needs the Kafka broker at {broker.host}:{broker.port}; start it first "
                "(make up starts both in order)."
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_properties(self.config_file, self.properties())
        write_log4j2(
            self.log4j_file,
            quiet=(
                "org.apache.kafka.clients",
                "org.apache.kafka.common.config.AbstractConfig",
                "org.reflections",
                "org.eclipse.jetty",
            ),
        )

    def command(self) -> tuple[list[str], dict[str, str]]:
        main = "org.apache.kafka.connect.cli.ConnectDistributed"
        return java_command(self, ("512m", "128m"), main, str(self.config_file)), {}

    # ---- health
    def _get(self, path: str, timeout: float = 3.0):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return json.loads(response.read().decode())

    def healthy(self) -> bool:
        """The REST API answers and lists the Debezium PostgreSQL connector plugin."""
        if not port_open(self.host, self.port):
            return False
        try:
            root = self._get("/")
            plugins = self._get("/connector-plugins")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        if "version" not in root:
            return False
        return any(p.get("class") == POSTGRES_CONNECTOR_CLASS for p in plugins)
