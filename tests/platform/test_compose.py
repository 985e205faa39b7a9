"""Static checks of the docker stack (`infra/docker-compose.yml`); no Docker engine needed.

The compose file is read the way `docker compose` reads it: YAML first, then `${VAR}` substituted
from the environment and `infra/.env`. The checks hold the file to the platform's rules: every
image pinned, every long-running service with a healthcheck, ports on 127.0.0.1 equal to the native
stack's, versions and credentials only from `infra/.env`, and the seed's names in the init config.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from harness.ops import docker_stack
from harness.ops.docker_stack import (
    COMPOSE_FILE,
    DockerStackError,
    compose_model,
    raw_compose_model,
)
from harness.runtime.config import BUCKETS, CLICKHOUSE_DB, ENV_FILE, endpoints, setting

INFRA = COMPOSE_FILE.parent
# Files the compose file mounts or builds from, held to the same rules.
RELATED_FILES = sorted(
    p for d in ("clickhouse", "docker", "minio") for p in (INFRA / d).rglob("*") if p.is_file()
)


def env_file_values() -> dict[str, str]:
    """KEY=VALUE lines of infra/.env (comments and blank lines skipped)."""
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return compose_model()


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


def one_shot_services(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait on to *complete* (e.g. minio-init); they exit, so no healthcheck."""
    return {
        target
        for svc in services.values()
        for target, spec in _depends_on(svc).items()
        if spec.get("condition") == "service_completed_successfully"
    }


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):  # short syntax: a list of names
        return {name: {"condition": "service_started"} for name in deps}
    return deps


def _published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host_ip, host_port, container_port) of each published port in the short syntax."""
    out = []
    for port in service.get("ports", []):
        assert isinstance(port, str), f"use the short port syntax 'IP:HOST:CONTAINER', got {port!r}"
        parts = port.split("/")[0].split(":")
        assert len(parts) == 3, f"port {port!r} must name the host IP: '127.0.0.1:HOST:CONTAINER'"
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def expected_host_ports() -> dict[str, set[int]]:
    """The native stack's ports, which the docker stack must publish.

    Read with `harness.runtime.config.setting` (environment, then infra/.env), as the native services do;
    not from `endpoints()`, whose addresses a client may override (KAFKA_BOOTSTRAP=kafka:29092
    inside the jupyter container).
    """

    def port(name: str) -> int:
        return int(setting(name))

    return {
        "kafka": {port("KAFKA_PORT")},
        "connect": {port("CONNECT_PORT")},
        "postgres": {port("POSTGRES_PORT")},
        "clickhouse": {port("CLICKHOUSE_PORT")},
        "minio": {port("MINIO_PORT"), port("MINIO_CONSOLE_PORT")},
        "spark-master": {port("SPARK_MASTER_PORT"), port("SPARK_MASTER_WEBUI_PORT")},
        "spark-worker": {port("SPARK_WORKER_WEBUI_PORT")},
        "jupyter": {port("JUPYTER_PORT")},
    }


# ---------------------------------------------------------------- services and health
def test_the_stack_has_every_service_of_the_design(services):
    """Kafka, Connect, PostgreSQL, ClickHouse, MinIO + bucket init, Spark master/worker, Jupyter."""
    expected = set(expected_host_ports()) | {"minio-init"}
    assert set(services) == expected, (
        f"services differ from the design: missing {sorted(expected - set(services))}, "
        f"unexpected {sorted(set(services) - expected)}"
    )


def test_every_long_running_service_has_a_healthcheck(services):
    """`depends_on: service_healthy` and `up --wait` need a healthcheck on each server."""
    one_shot = one_shot_services(services)
    missing = [
        name
        for name, svc in services.items()
        if name not in one_shot
        and (not svc.get("healthcheck") or svc["healthcheck"].get("disable"))
    ]
    assert not missing, f"services without a healthcheck: {missing}"
    for name in services:
        if name not in one_shot:
            test = services[name]["healthcheck"]["test"]
            assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), (
                f"{name}: healthcheck test should start with CMD or CMD-SHELL, got {test}"
            )


def test_one_shot_services_do_not_restart_and_are_awaited(services):
    """A one-shot must not restart, and a long-running service must wait for it to complete.

    Without that second part `docker compose up --wait` reports the clean exit as a failure.
    """
    one_shot = one_shot_services(services)
    assert "minio-init" in one_shot, (
        "jupyter should wait for minio-init: service_completed_successfully"
    )
    for name in one_shot:
        assert services[name].get("restart") == "no", f'{name} is one-shot: set restart: "no"'
        adopters = [
            other
            for other, svc in services.items()
            if other not in one_shot and name in _depends_on(svc)
        ]
        assert adopters, f"no long-running service waits for one-shot {name}"


def test_depends_on_targets_exist_and_healthy_means_a_healthcheck(services):
    """Every dependency names a service; `service_healthy` only on services with a healthcheck."""
    valid = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        for target, spec in _depends_on(svc).items():
            assert target in services, f"{name} depends on unknown service {target!r}"
            assert spec.get("condition") in valid, f"{name} -> {target}: bad condition {spec}"
            if spec.get("condition") == "service_healthy":
                assert services[target].get("healthcheck"), (
                    f"{name} waits for {target} to be healthy, but {target} has no healthcheck"
                )


# ---------------------------------------------------------------- images and versions
def _tag_of(image: str) -> str | None:
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def test_every_image_is_pinned_to_a_version(services):
    """No untagged image and no `latest`: a stack that works today works next year."""
    for name, svc in services.items():
        image = svc.get("image")
        assert image, f"{name}: name the image (built services too, with a version tag)"
        tag = _tag_of(image)
        assert tag, f"{name}: image {image!r} has no tag"
        assert tag.lower() not in ("latest", "stable", "edge", "main"), (
            f"{name}: image {image!r} floats; pin a version in infra/.env"
        )


def test_built_images_start_from_pinned_base_images(services):
    """`FROM` lines of every Dockerfile we build resolve to a pinned tag."""
    built = {
        svc["build"]["dockerfile"]: svc["build"] for svc in services.values() if "build" in svc
    }
    assert built, "the lab image (Spark + Jupyter) should be built from infra/docker/Dockerfile"
    for dockerfile, build in built.items():
        path = (INFRA / build["context"] / dockerfile).resolve()
        assert path.exists(), f"build of {dockerfile}: {path} does not exist"
        args = {k: str(v) for k, v in (build.get("args") or {}).items()}
        froms = re.findall(r"^FROM\s+(\S+)", path.read_text(), flags=re.MULTILINE)
        assert froms, f"{path} has no FROM line"
        for base in froms:
            resolved = docker_stack.substitute(base, args)
            tag = _tag_of(resolved)
            assert tag and tag != "latest", f"{path}: FROM {base} resolves to unpinned {resolved!r}"


def test_versions_come_from_the_env_file():
    """Image references take their versions from infra/.env (`${VAR}`), never typed-in versions."""
    raw = raw_compose_model()
    for name, svc in raw["services"].items():
        assert "${" in svc["image"], (
            f"{name}: image {svc['image']!r} should take its version from infra/.env (${{...}})"
        )


def test_every_variable_used_is_defined_in_the_env_file():
    """Each `${VAR}` in the compose file is a key of infra/.env (one place for configuration)."""
    used = docker_stack.variables_used(raw_compose_model())
    missing = sorted(used - set(env_file_values()))
    assert not missing, f"add these to {ENV_FILE}: {missing}"


def test_no_literal_secrets_in_the_docker_files():
    """Passwords and tokens from infra/.env appear only as `${VAR}` in the docker stack's files."""
    secrets = {
        key: value
        for key, value in env_file_values().items()
        if re.search(r"PASSWORD|SECRET|TOKEN", key) and value
    }
    assert secrets, "expected the local-development passwords in infra/.env"
    for path in [COMPOSE_FILE, *RELATED_FILES]:
        text = path.read_text(errors="replace")
        for key, value in secrets.items():
            assert value not in text, f"{path} contains the value of {key}; use ${{{key}}}"


# ---------------------------------------------------------------- ports
def test_every_port_is_published_on_localhost_only(services):
    """Services bind 127.0.0.1: nothing of the lab is reachable from the network."""
    for name, svc in services.items():
        for host_ip, _, _ in _published(svc):
            assert host_ip == "127.0.0.1", f"{name}: port published on {host_ip}, not 127.0.0.1"


def test_host_ports_equal_the_native_stack(services):
    """The docker stack publishes each service on the native stack's port (harness.runtime.config)."""
    for name, expected in expected_host_ports().items():
        published = {host for _, host, _ in _published(services[name])}
        assert published == expected, (
            f"{name}: publishes host ports {sorted(published)}, the native stack uses "
            f"{sorted(expected)} (infra/.env)"
        )


def test_no_host_port_is_published_twice(services):
    """Two services on one host port would make `docker compose up` fail."""
    seen: dict[int, str] = {}
    for name, svc in services.items():
        for _, host, _ in _published(svc):
            assert host not in seen, f"host port {host} is published by {seen[host]} and {name}"
            seen[host] = name


# ---------------------------------------------------------------- service configuration
def test_kafka_is_kraft_combined_with_internal_and_host_listeners(services):
    """One KRaft node; containers use kafka:29092 (the seed's name), the host the published port."""
    env = services["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert "INTERNAL://kafka:29092" in advertised
    host_address = f"{setting('KAFKA_HOST')}:{setting('KAFKA_PORT')}"
    assert f"HOST://{host_address}" in advertised, (
        f"the host listener must advertise the address host clients use: {host_address}"
    )
    host_listener = next(x for x in env["KAFKA_LISTENERS"].split(",") if x.startswith("HOST://"))
    container_port = _port(host_listener)
    assert any(c == container_port for _, _, c in _published(services["kafka"])), (
        f"the HOST listener's container port {container_port} is not the published one"
    )
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] in (1, "1")


def test_containers_reach_kafka_by_service_name(services):
    """Connect and Jupyter bootstrap from kafka:29092, never the host's address."""
    assert services["connect"]["environment"]["BOOTSTRAP_SERVERS"] == "kafka:29092"
    assert services["jupyter"]["environment"]["KAFKA_BOOTSTRAP"] == "kafka:29092"


def test_postgres_runs_with_logical_wal(services):
    """Debezium needs wal_level=logical; credentials and database come from infra/.env."""
    command = services["postgres"]["command"]
    command = " ".join(command) if isinstance(command, list) else command
    assert "wal_level=logical" in command
    env = services["postgres"]["environment"]
    ep = endpoints()
    assert (env["POSTGRES_USER"], env["POSTGRES_DB"]) == (ep.pg_user, ep.pg_db)
    assert env["POSTGRES_PASSWORD"] == ep.pg_password
    assert ep.pg_db == "opensky"


def test_clickhouse_init_creates_the_opensky_database(services):
    """The init SQL mounted in /docker-entrypoint-initdb.d creates database `opensky`."""
    svc = services["clickhouse"]
    mounts = [
        v for v in svc["volumes"] if isinstance(v, str) and "/docker-entrypoint-initdb.d" in v
    ]
    assert mounts, "mount infra/clickhouse/initdb at /docker-entrypoint-initdb.d"
    source = (INFRA / mounts[0].split(":", 1)[0]).resolve()
    sql = " ".join(p.read_text() for p in sorted(source.glob("*.sql")))
    assert re.search(rf"CREATE DATABASE IF NOT EXISTS {CLICKHOUSE_DB}\b", sql), (
        f"no `CREATE DATABASE IF NOT EXISTS {CLICKHOUSE_DB}` in {source}/*.sql"
    )
    ep = endpoints()
    env = svc["environment"]
    assert (env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"]) == (
        ep.clickhouse_user,
        ep.clickhouse_password,
    ), "clickhouse-server's user must be the one the harness logs in with"


def test_minio_init_creates_the_seed_buckets(services):
    """minio-init creates raw-data, processed-data and streaming-aggregations."""
    script = " ".join(services["minio-init"]["command"])
    for bucket in BUCKETS:
        assert re.search(rf"(?<![\w-]){re.escape(bucket)}(?![\w-])", script), (
            f"minio-init does not create bucket {bucket!r}"
        )
    assert "mc mb --ignore-existing" in script, "bucket creation must be idempotent"
    assert "http://minio:9000" in script


def test_spark_cluster_runs_the_pinned_spark_version(services):
    """Master and worker use the lab image built with pyspark==SPARK_VERSION."""
    version = setting("SPARK_VERSION")
    for name in ("spark-master", "spark-worker"):
        svc = services[name]
        assert svc["build"]["args"]["SPARK_VERSION"] == version
        assert svc["image"].endswith(f":{version}")
    worker = services["spark-worker"]["command"]
    assert "spark://spark-master:7077" in worker


def test_jupyter_reaches_every_service_by_name(services):
    """Jupyter's environment names services of this file, and mounts the repository."""
    env = services["jupyter"]["environment"]
    hosts = {
        "KAFKA_BOOTSTRAP": env["KAFKA_BOOTSTRAP"].split(":")[0],
        "CONNECT_URL": urlsplit(env["CONNECT_URL"]).hostname,
        "POSTGRES_HOST": env["POSTGRES_HOST"],
        "MINIO_ENDPOINT": env["MINIO_ENDPOINT"].split(":")[0],
        "CLICKHOUSE_HOST": env["CLICKHOUSE_HOST"],
        "SPARK_MASTER_URL": urlsplit(
            env["SPARK_MASTER_URL"].replace("spark://", "http://")
        ).hostname,
    }
    for key, host in hosts.items():
        assert host in services, f"jupyter: {key} points at {host!r}, not a service of the stack"
    assert any(str(v).endswith(":/workspace") for v in services["jupyter"]["volumes"])


def test_in_network_endpoints_use_container_ports(services):
    """Server-to-server addresses (Connect -> PostgreSQL, ClickHouse -> MinIO) are container-side."""
    inside = docker_stack.in_network_endpoints()
    assert inside["pg_host"] == "postgres" and inside["pg_port"] == "5432"
    assert inside["minio_url"] == "http://minio:9000"
    assert inside["kafka_bootstrap"] == "kafka:29092"
    # Each named container port is one the service actually listens on (its published target).
    targets = {name: {c for _, _, c in _published(svc)} for name, svc in services.items()}
    assert 5432 in targets["postgres"] and 9000 in targets["minio"]
    assert int(inside["clickhouse_port"]) in targets["clickhouse"]
    assert urlsplit(inside["connect_url"]).port in targets["connect"]


def test_stateful_services_keep_data_in_named_volumes(compose, services):
    """Data survives `docker compose down`/`up`; every named volume is declared."""
    declared = set(compose.get("volumes") or {})
    for name in ("kafka", "postgres", "clickhouse", "minio"):
        named = [
            v.split(":", 1)[0]
            for v in services[name].get("volumes", [])
            if isinstance(v, str) and not v.startswith((".", "/"))
        ]
        assert named, f"{name} should keep its data in a named volume"
    for name, svc in services.items():
        for v in svc.get("volumes", []):
            source = v.split(":", 1)[0] if isinstance(v, str) else v.get("source", "")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name}: volume {source!r} is not declared at top level"


# ---------------------------------------------------------------- the reader itself
def test_substitution_follows_compose_rules():
    """${VAR}, ${VAR:-default}, ${VAR-default} and $$ behave as in docker compose."""
    values = {"SET": "x", "EMPTY": ""}
    sub = docker_stack.substitute
    assert sub("${SET}/${EMPTY:-d}/${EMPTY-d}/${UNSET:-d}/$$HOME", values) == "x/d//d/$HOME"
    with pytest.raises(DockerStackError, match="UNSET"):
        sub("${UNSET}", values)


# ---------------------------------------------------------------- Compose's own model
# `docker compose config` without Docker: tools/compose-check runs compose-go, the loader inside
# `docker compose` (schema validation, interpolation, consistency checks, normalisation).


@pytest.fixture(scope="module")
def real_model() -> dict[str, Any]:
    """The compose file as Compose itself loads it (a variable set nowhere is an error)."""
    return docker_stack.compose_config(strict=True)


def test_compose_accepts_the_file(real_model):
    """Compose's loader accepts infra/docker-compose.yml with infra/.env, every variable set."""
    assert real_model["name"] == docker_stack.PROJECT_NAME
    assert set(real_model["services"]) == set(expected_host_ports()) | {"minio-init"}


def test_compose_check_catches_what_compose_refuses(tmp_path):
    """The checker bites: a port out of range, a schema error and an unset variable each fail."""
    broken = {
        "port": 'services:\n  a:\n    image: "busybox:1.37.0"\n    ports: ["127.0.0.1:99999:1"]\n',
        "schema": 'services:\n  a:\n    image: "busybox:1.37.0"\n    healthcheck: {test: 3}\n',
        "variable": 'services:\n  a:\n    image: "busybox:${OPENSKY_SURELY_UNSET_TAG}"\n',
    }
    for kind, text in broken.items():
        path = tmp_path / f"{kind}.yml"
        path.write_text(text)
        with pytest.raises(DockerStackError, match="Compose rejects"):
            docker_stack.compose_config(path)


def test_python_reader_agrees_with_compose(real_model, services):
    """harness.ops.docker_stack reads the file as Compose does: images, ports, environments."""
    for name, svc in real_model["services"].items():
        mine = services[name]
        assert svc["image"] == mine["image"], f"{name}: image differs from Compose's reading"
        theirs = sorted(
            f"{p['host_ip']}:{p['published']}:{p['target']}" for p in svc.get("ports", [])
        )
        assert theirs == sorted(mine.get("ports", [])), f"{name}: ports differ"
        env = {k: str(v) for k, v in (mine.get("environment") or {}).items()}
        assert (svc.get("environment") or {}) == env, f"{name}: environment differs"


def test_clickhouse_image_is_the_native_engine_version():
    """Docker's clickhouse-server runs the engine release chDB embeds (same year.month.patch)."""
    import chdb

    engine = chdb.engine_version.split(".")[:3]
    image = setting("CLICKHOUSE_VERSION").split(".")
    assert len(image) == 4 and all(p.isdigit() for p in image), (
        f"CLICKHOUSE_VERSION={setting('CLICKHOUSE_VERSION')} is not an exact release (YY.M.P.B)"
    )
    assert image[:3] == engine, (
        f"clickhouse-server {'.'.join(image)} but chDB runs ClickHouse {chdb.engine_version}: "
        "Lab 04/05 SQL (EXPLAIN text, engine_full) would be checked on two engines"
    )


def test_image_tags_are_exact_releases():
    """No branch tag that moves (`15`, `25.8`, `3.11-slim`): every version names one release."""
    exact = {
        "POSTGRES_VERSION": r"\d+\.\d+(-[a-z]+)?",
        "CLICKHOUSE_VERSION": r"\d+\.\d+\.\d+\.\d+",
        "KAFKA_VERSION": r"\d+\.\d+\.\d+",
        "DEBEZIUM_VERSION": r"\d+\.\d+\.\d+\.Final",
        "SPARK_VERSION": r"\d+\.\d+\.\d+",
        "PYTHON_IMAGE_TAG": r"\d+\.\d+\.\d+-slim-[a-z]+",
        "MINIO_IMAGE_TAG": r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
        "MINIO_MC_IMAGE_TAG": r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ",
    }
    for key, pattern in exact.items():
        assert re.fullmatch(pattern, setting(key)), f"{key}={setting(key)} is not an exact release"
    # The lab image's Python is the one this repository runs on (same minor version).
    import sys

    minor = ".".join(setting("PYTHON_IMAGE_TAG").split(".")[:2])
    assert minor == f"{sys.version_info.major}.{sys.version_info.minor}", (
        f"PYTHON_IMAGE_TAG={setting('PYTHON_IMAGE_TAG')}, the venv runs Python "
        f"{sys.version_info.major}.{sys.version_info.minor}"
    )


def test_spark_executors_find_the_jars_where_the_driver_puts_them(real_model):
    """On the docker cluster the driver (jupyter) gives executors a class path under /workspace:
    the worker mounts the same repository there, so those jars and the harness exist for them."""
    services = real_model["services"]

    def repo_mount(name: str) -> str | None:
        for volume in services[name].get("volumes", []):
            if volume["type"] == "bind" and Path(volume["source"]) == docker_stack.ROOT:
                return volume["target"]
        return None

    driver_root = repo_mount("jupyter")
    assert driver_root == "/workspace"
    assert repo_mount("spark-worker") == driver_root, (
        "spark-worker must mount the repository at the driver's path: executors get "
        f"spark.executor.extraClassPath={driver_root}/.stack/jars/spark/*.jar"
    )
    assert services["spark-worker"]["environment"].get("PYTHONPATH") == driver_root
    env = services["jupyter"]["environment"]
    assert env["SPARK_DRIVER_HOST"] == "jupyter", "executors call the driver back by this name"
    assert env["CLICKHOUSE_S3_ENDPOINT"] == "http://minio:9000", (
        "ClickHouse resolves s3() URLs in its own container: MinIO is `minio` there"
    )


def test_driver_address_comes_from_the_environment(monkeypatch):
    """harness.runtime.spark uses SPARK_DRIVER_HOST (127.0.0.1 on the host, `jupyter` inside)."""
    from harness.runtime.spark import spark_conf

    assert spark_conf()["spark.driver.host"] == "127.0.0.1"
    monkeypatch.setenv("SPARK_DRIVER_HOST", "jupyter")
    conf = spark_conf()
    assert (conf["spark.driver.host"], conf["spark.driver.bindAddress"]) == ("jupyter", "jupyter")


def test_docker_stack_install_fetches_the_hosts_spark_jars():
    """`make setup STACK=docker` still installs what the host runs: PySpark's connector jars."""
    result = subprocess.run(
        [sys.executable, "-m", "harness.ops.stack", "install"],
        cwd=docker_stack.ROOT,
        env={**os.environ, "STACK": "docker"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Spark master" in result.stdout, f"Spark's jars were not installed:\n{result.stdout}"
    from harness.ops.stack.spark_cluster import jars_complete

    assert jars_complete()
