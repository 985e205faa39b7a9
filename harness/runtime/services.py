"""Clients for every service, built from `harness.runtime.config` — never from literals.

A service that does not answer raises `ServiceUnavailable`, whose message names the service and
the command that starts it. Tests turn that into a loud error, never a skip.
"""

from __future__ import annotations

import socket
from typing import Any

from harness.runtime.config import Endpoints, endpoints, stack

START_COMMANDS = {
    "native": "make up",
    "docker": "make up STACK=docker  (docker compose -f infra/docker-compose.yml up -d)",
    "external": "ask your course admin: STACK=external reads the endpoints from the environment",
}


class ServiceUnavailable(RuntimeError):
    """A service of the lab stack does not answer."""

    def __init__(self, service: str, address: str, detail: str = "") -> None:
        how = START_COMMANDS.get(stack(), "make up")
        message = (
            f"{service} is not reachable at {address} (STACK={stack()}). "
            f"Start the lab stack with: {how}. Check it with: make status."
        )
        if detail:
            message += f" ({detail})"
        super().__init__(message)
        self.service = service
        self.address = address


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hostport(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def service_addresses() -> dict[str, tuple[str, int]]:
    ep = endpoints()
    connect = ep.connect_url.split("//", 1)[-1].rstrip("/")
    return {
        "Kafka broker": _hostport(ep.kafka_bootstrap.split(",")[0]),
        "Kafka Connect (Debezium)": _hostport(connect),
        "PostgreSQL": (ep.pg_host, ep.pg_port),
        "MinIO (S3)": _hostport(ep.minio_endpoint),
        "ClickHouse": (ep.clickhouse_host, ep.clickhouse_port),
    }


def require(service: str) -> None:
    """Raise `ServiceUnavailable` unless `service` (a key of `service_addresses()`) answers."""
    host, port = service_addresses()[service]
    if not port_open(host, port):
        raise ServiceUnavailable(service, f"{host}:{port}")


def _answering(service: str) -> Endpoints:
    """The endpoints, once `service` answers (`require`): what a client of it is built from."""
    require(service)
    return endpoints()


# ---------------------------------------------------------------- Kafka
def kafka_config(**overrides: Any) -> dict[str, Any]:
    """confluent-kafka configuration for the lab broker; `overrides` use Kafka's dotted names."""
    conf: dict[str, Any] = {"bootstrap.servers": _answering("Kafka broker").kafka_bootstrap}
    conf.update({k.replace("_", "."): v for k, v in overrides.items()})
    return conf


def kafka_admin():
    from confluent_kafka.admin import AdminClient

    return AdminClient(kafka_config())


# ---------------------------------------------------------------- PostgreSQL
def pg_connect(autocommit: bool = True, **kwargs: Any):
    """A psycopg 3 connection to the `opensky` database."""
    import psycopg

    ep = _answering("PostgreSQL")
    try:
        return psycopg.connect(ep.pg_dsn, autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise ServiceUnavailable("PostgreSQL", f"{ep.pg_host}:{ep.pg_port}", str(exc)) from exc


# ---------------------------------------------------------------- MinIO / S3
def minio_client():
    from minio import Minio

    ep = _answering("MinIO (S3)")
    return Minio(
        ep.minio_endpoint,
        access_key=ep.minio_access_key,
        secret_key=ep.minio_secret_key,
        secure=False,
    )


def s3_filesystem():
    """A pyarrow S3FileSystem pointed at MinIO."""
    from pyarrow import fs

    ep = _answering("MinIO (S3)")
    return fs.S3FileSystem(
        endpoint_override=ep.minio_url,
        access_key=ep.minio_access_key,
        secret_key=ep.minio_secret_key,
        scheme="http",
        allow_bucket_creation=False,
    )


# ---------------------------------------------------------------- ClickHouse
def clickhouse_client(database: str | None = None, **kwargs: Any):
    """A clickhouse-connect client for the lab's ClickHouse (chDB natively, server in docker)."""
    import clickhouse_connect

    ep = _answering("ClickHouse")
    return clickhouse_connect.get_client(
        host=ep.clickhouse_host,
        port=ep.clickhouse_port,
        username=ep.clickhouse_user,
        password=ep.clickhouse_password,
        database=database or ep.clickhouse_db,
        **kwargs,
    )
