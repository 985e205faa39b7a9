"""Where every service of the lab stack is: the one place tests, labs and notebooks ask.

Values come from `infra/.env` (local-development defaults, shared with docker compose) and can be
overridden by environment variables of the same name.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "infra" / ".env"
# Everything the native stack downloads, builds, writes and logs lives under this ignored folder.
STACK_DIR = Path(os.environ.get("OPENSKY_STACK_DIR", ROOT / ".stack"))
DATA_DIR = ROOT / "data"

STACKS = ("native", "docker", "external")


def _read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an env file (python-dotenv's reading: comments, quotes, `export`)."""
    return {k: v for k, v in dotenv_values(path).items() if v is not None} if path.exists() else {}


@lru_cache(maxsize=1)
def _file_defaults() -> dict[str, str]:
    return _read_env_file(ENV_FILE)


def setting(name: str, default: str | None = None) -> str:
    """One setting: the environment wins over `infra/.env`, which wins over `default`."""
    if name in os.environ:
        return os.environ[name]
    if name in _file_defaults():
        return _file_defaults()[name]
    if default is None:
        raise KeyError(f"setting {name} is not in the environment nor in {ENV_FILE}")
    return default


def docker_engine_answers() -> bool:
    """True when a Docker engine (not just the client) responds."""
    if not shutil.which("docker"):
        return False
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@lru_cache(maxsize=1)
def stack() -> str:
    """The stack in use: `STACK=native|docker|external`, or `auto` (docker when an engine answers)."""
    chosen = setting("STACK", "auto").lower()
    if chosen == "auto":
        return "docker" if docker_engine_answers() else "native"
    if chosen not in STACKS:
        raise ValueError(f"STACK={chosen!r} is not one of auto, {', '.join(STACKS)}")
    return chosen


@dataclass(frozen=True)
class Endpoints:
    """Host-side addresses and local-development credentials of every service."""

    kafka_bootstrap: str
    connect_url: str
    pg_host: str
    pg_port: int
    pg_db: str
    pg_user: str
    pg_password: str
    minio_endpoint: str
    minio_access_key: str
    minio_secret_key: str
    clickhouse_host: str
    clickhouse_port: int
    clickhouse_user: str
    clickhouse_password: str
    clickhouse_db: str
    # MinIO as ClickHouse sees it in `s3()` table functions (inside docker: the service name).
    clickhouse_s3_endpoint: str
    spark_master_url: str
    spark_test_master: str

    @property
    def pg_dsn(self) -> str:
        return (
            f"host={self.pg_host} port={self.pg_port} dbname={self.pg_db} "
            f"user={self.pg_user} password={self.pg_password}"
        )

    @property
    def pg_jdbc_url(self) -> str:
        return f"jdbc:postgresql://{self.pg_host}:{self.pg_port}/{self.pg_db}"

    @property
    def minio_url(self) -> str:
        return f"http://{self.minio_endpoint}"


def endpoints() -> Endpoints:
    """Endpoints for the current stack (all stacks publish on the host; see infra/.env)."""
    s = setting
    return Endpoints(
        kafka_bootstrap=s("KAFKA_BOOTSTRAP", f"{s('KAFKA_HOST')}:{s('KAFKA_PORT')}"),
        connect_url=s("CONNECT_URL", f"http://{s('CONNECT_HOST')}:{s('CONNECT_PORT')}"),
        pg_host=s("POSTGRES_HOST"),
        pg_port=int(s("POSTGRES_PORT")),
        pg_db=s("POSTGRES_DB"),
        pg_user=s("POSTGRES_USER"),
        pg_password=s("POSTGRES_PASSWORD"),
        minio_endpoint=s("MINIO_ENDPOINT", f"{s('MINIO_HOST')}:{s('MINIO_PORT')}"),
        minio_access_key=s("MINIO_ROOT_USER"),
        minio_secret_key=s("MINIO_ROOT_PASSWORD"),
        clickhouse_host=s("CLICKHOUSE_HOST"),
        clickhouse_port=int(s("CLICKHOUSE_PORT")),
        clickhouse_user=s("CLICKHOUSE_USER"),
        clickhouse_password=s("CLICKHOUSE_PASSWORD"),
        clickhouse_db=s("CLICKHOUSE_DB"),
        clickhouse_s3_endpoint=s(
            "CLICKHOUSE_S3_ENDPOINT",
            "http://minio:9000"
            if stack() == "docker"
            else f"http://{s('MINIO_HOST')}:{s('MINIO_PORT')}",
        ),
        spark_master_url=s(
            "SPARK_MASTER_URL", f"spark://{s('SPARK_MASTER_HOST')}:{s('SPARK_MASTER_PORT')}"
        ),
        spark_test_master=s("SPARK_TEST_MASTER", "local[2]"),
    )


# The platform's names (topics, tables, buckets), kept exactly.
TOPIC_RAW = "raw_flights"
TOPIC_PROCESSED = "processed_flights"
TOPIC_RAW_DLQ = "raw_flights.dlq"
CDC_TOPIC_PROCESSED = "opensky.public.processed_flights"
CDC_TOPIC_STATISTICS = "opensky.public.flight_statistics"
BUCKETS = ("raw-data", "processed-data", "streaming-aggregations")
CLICKHOUSE_DB = "opensky"
