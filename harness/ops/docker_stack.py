"""The docker stack (`infra/docker-compose.yml`): start it, read it, and wire it into pytest-docker.

- `ensure_docker_stack()` brings the stack up (idempotent: `docker compose up` leaves running,
  unchanged containers alone) and waits until every service's healthcheck passes.
- `compose_model()` reads the compose file with `${VAR}` substituted from the environment and
  `infra/.env`, the way `docker compose` does it — the static tests use it, no engine needed.
- `compose_config()` asks Compose itself: `tools/compose-check` (a small Go program on compose-go,
  the library inside `docker compose`) loads, interpolates, validates and normalises the file and
  returns the model `docker compose config` prints. Built on first use into `.stack/bin/`, cached.
- The pytest-docker fixtures (`docker_compose_file`, `docker_setup`, ...) point that plugin at our
  compose file and project; load this module as a plugin to use them when `STACK=docker`.

Command line: `python -m harness.ops.docker_stack up|down|down-volumes|status|config|jupyter-url`
(`config` prints Compose's own model of the file, checked, as JSON).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.runtime.config import ENV_FILE, ROOT, STACK_DIR, docker_engine_answers, setting

COMPOSE_FILE = ROOT / "infra" / "docker-compose.yml"
# Fixed project name: `make up STACK=docker`, pytest-docker and a hand-typed `docker compose`
# all address the same containers and volumes.
PROJECT_NAME = "opensky-labs"
# First start builds the lab image and pulls the others: allow for a slow network.
UP_TIMEOUT_S = int(os.environ.get("OPENSKY_DOCKER_UP_TIMEOUT", "900"))


class DockerStackError(RuntimeError):
    """The docker stack cannot be started or read."""


# ---------------------------------------------------------------- reading the compose file
# ${VAR}, ${VAR:-default} (default when unset or empty), ${VAR-default} (default when unset);
# $$ is a literal $ left for the container's shell.
_VARIABLE = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\})"
)


def substitute(text: str, lookup: dict[str, str] | None = None) -> str:
    """Replace `${VAR}` / `${VAR:-default}` / `${VAR-default}` in `text`; `$$` becomes `$`.

    Values come from `lookup` if given, else from `harness.runtime.config.setting` (the environment, then
    `infra/.env`). An undefined variable without a default is an error, never an empty string.
    """

    def value_of(name: str) -> str | None:
        if lookup is not None:
            return lookup.get(name)
        try:
            return setting(name)
        except KeyError:
            return None

    def replace(match: re.Match[str]) -> str:
        if match.group("dollar"):
            return "$"
        name, op = match.group("name"), match.group("op")
        value = value_of(name)
        if op == ":-" and not value:
            return match.group("default")
        if op == "-" and value is None:
            return match.group("default")
        if value is None:
            raise DockerStackError(f"${{{name}}} is neither in the environment nor in {ENV_FILE}")
        return value

    return _VARIABLE.sub(replace, text)


def variables_used(node: Any) -> set[str]:
    """Names of every `${VAR}` in the string values (and keys) of a parsed YAML document."""
    found: set[str] = set()
    if isinstance(node, str):
        found.update(m.group("name") for m in _VARIABLE.finditer(node) if m.group("name"))
    elif isinstance(node, dict):
        for key, value in node.items():
            found |= variables_used(key) | variables_used(value)
    elif isinstance(node, list):
        for item in node:
            found |= variables_used(item)
    return found


def _substitute_tree(node: Any, lookup: dict[str, str] | None) -> Any:
    # Compose interpolates after parsing the YAML, so comments are never touched.
    if isinstance(node, str):
        return substitute(node, lookup)
    if isinstance(node, dict):
        return {k: _substitute_tree(v, lookup) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute_tree(item, lookup) for item in node]
    return node


def raw_compose_model(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as parsed YAML, `${VAR}` left as written (anchors and merges resolved)."""
    return yaml.safe_load(path.read_text())


def compose_model(
    path: Path = COMPOSE_FILE, lookup: dict[str, str] | None = None
) -> dict[str, Any]:
    """The compose file as parsed YAML with every `${VAR}` substituted."""
    return _substitute_tree(raw_compose_model(path), lookup)


def in_network_endpoints() -> dict[str, str]:
    """Service addresses as the *containers* see them (service names, container ports).

    A server that connects to another server needs these, not the host's 127.0.0.1 ports: a
    Debezium connector's `database.hostname` is resolved inside the Connect container, and a
    ClickHouse `s3('http://…')` URL inside the ClickHouse container (where 127.0.0.1:9000 is
    ClickHouse's own native port). Read from the jupyter service's environment, the one place
    the compose file spells them out.
    """
    env = compose_model()["services"]["jupyter"]["environment"]
    return {
        "kafka_bootstrap": str(env["KAFKA_BOOTSTRAP"]),
        "connect_url": str(env["CONNECT_URL"]),
        "pg_host": str(env["POSTGRES_HOST"]),
        "pg_port": str(env["POSTGRES_PORT"]),
        "minio_url": f"http://{env['MINIO_ENDPOINT']}",
        "clickhouse_host": str(env["CLICKHOUSE_HOST"]),
        "clickhouse_port": str(env["CLICKHOUSE_PORT"]),
        "spark_master_url": str(env["SPARK_MASTER_URL"]),
    }


# ---------------------------------------------------------------- Compose's own model (compose-go)
COMPOSE_CHECK_SRC = ROOT / "tools" / "compose-check"
COMPOSE_CHECK_FILES = ("go.mod", "go.sum", "main.go")


def compose_checker() -> Path:
    """The `compose-check` binary, built with `go build` when its sources changed (else cached).

    The binary's name carries a digest of its sources, so an edit rebuilds it and an old build is
    never used by mistake. Needs Go (a prerequisite of the native stack too).
    """
    digest = hashlib.sha256()
    for name in COMPOSE_CHECK_FILES:
        digest.update((COMPOSE_CHECK_SRC / name).read_bytes())
    binary = STACK_DIR / "bin" / f"compose-check-{digest.hexdigest()[:12]}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if not go:
        raise DockerStackError(
            "Go is needed to build tools/compose-check (Compose's own loader, compose-go): "
            "install Go 1.24 or newer (https://go.dev/doc/install), then run this again."
        )
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(binary.name + ".partial")
    result = subprocess.run(
        [go, "build", "-trimpath", "-o", str(partial), "."],
        cwd=COMPOSE_CHECK_SRC,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        raise DockerStackError(f"building tools/compose-check failed:\n{result.stderr[-4000:]}")
    for old in binary.parent.glob("compose-check-*"):
        if old != partial:
            old.unlink(missing_ok=True)
    partial.rename(binary)
    return binary


def compose_config(path: Path = COMPOSE_FILE, strict: bool = True) -> dict[str, Any]:
    """`docker compose config` without Docker: the file as Compose loads it, or DockerStackError.

    Compose's loader checks the file against the compose-spec schema and its own consistency
    rules (services, volumes and networks that are named must exist, ports and durations must
    parse) and substitutes `${VAR}` from the environment, then `infra/.env`; `strict` makes a
    variable set nowhere an error (Compose itself only warns and substitutes "").
    """
    argv = [str(compose_checker()), "--env-file", str(ENV_FILE), "-f", str(path)]
    argv += ["-p", PROJECT_NAME] + (["--strict"] if strict else [])
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT)
    if result.returncode != 0:
        raise DockerStackError(f"Compose rejects {path}:\n{result.stderr.strip()}")
    return json.loads(result.stdout)


# ---------------------------------------------------------------- running docker compose
def compose_args() -> list[str]:
    """`docker compose` with our env file, compose file and project name."""
    return [
        "docker",
        "compose",
        "--env-file",
        str(ENV_FILE),
        "-f",
        str(COMPOSE_FILE),
        "-p",
        PROJECT_NAME,
    ]


def compose_plugin_available() -> bool:
    """True when the `docker compose` (v2+) command exists; it needs no engine for `config`."""
    if not shutil.which("docker"):
        return False
    try:
        result = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _compose(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    command = compose_args() + list(args)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise DockerStackError(
            f"`{shlex.join(command)}` did not finish in {timeout:.0f} s"
        ) from exc
    if check and result.returncode != 0:
        raise DockerStackError(
            f"`{shlex.join(command)}` failed (exit {result.returncode}):\n"
            f"{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return result


def _require_engine() -> None:
    if not shutil.which("docker"):
        raise DockerStackError(
            "STACK=docker needs Docker (the `docker` command is not installed). "
            "Install Docker, or use the native stack: make up STACK=native"
        )
    if not compose_plugin_available():
        raise DockerStackError(
            "STACK=docker needs Docker Compose v2 (`docker compose version` failed). "
            "Install the compose plugin, or use the native stack: make up STACK=native"
        )
    if not docker_engine_answers():
        raise DockerStackError(
            "STACK=docker but no Docker engine answers (`docker info` failed). Start Docker "
            "(Docker Desktop, or `sudo systemctl start docker`), or use: make up STACK=native"
        )


def ensure_docker_stack(timeout: float = UP_TIMEOUT_S) -> None:
    """Start the docker stack if needed and wait until every healthcheck passes (idempotent)."""
    _require_engine()
    try:
        # --wait: return when every service is healthy (one-shot minio-init: completed), or fail.
        _compose(
            "up",
            "--detach",
            "--build",
            "--wait",
            "--wait-timeout",
            str(int(timeout)),
            timeout=timeout + 60,
        )
    except DockerStackError as exc:
        status = _compose("ps", "--all", check=False, timeout=60)
        raise DockerStackError(
            f"{exc}\n\nContainers:\n{status.stdout}\n"
            f"Logs of one service: docker compose -p {PROJECT_NAME} logs SERVICE"
        ) from exc


def stop_docker_stack(remove_volumes: bool = False) -> None:
    """Stop and remove the containers; with `remove_volumes`, also the data volumes."""
    _require_engine()
    _compose(*(["down", "--volumes"] if remove_volumes else ["down"]), timeout=300)


def docker_stack_status() -> str:
    """`docker compose ps` for the stack: service, state, health, ports."""
    _require_engine()
    return _compose("ps", "--all", check=False, timeout=60).stdout


# ---------------------------------------------------------------- pytest-docker wiring
# pytest-docker's `docker_services` fixture runs `docker_setup` through `docker_compose_command`
# with `-f <docker_compose_file> -p <docker_compose_project_name>`; these overrides point it at
# our stack. Registered after pytest-docker's own plugin, they take precedence.


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    """`docker compose` reading infra/.env explicitly (older Compose versions look in the cwd)."""
    return f"docker compose --env-file {shlex.quote(str(ENV_FILE))}"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    """The lab stack's compose file."""
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    """The fixed project name, so tests reuse a stack started by `make up STACK=docker`."""
    return PROJECT_NAME


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    """Start (or reuse) the stack and wait for every healthcheck."""
    return [f"up --detach --build --wait --wait-timeout {UP_TIMEOUT_S}"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    """Leave the stack running after the tests, like the native stack; opt in to tear it down.

    OPENSKY_DOCKER_CLEANUP=down stops it; =down-volumes also deletes its data.
    """
    choice = os.environ.get("OPENSKY_DOCKER_CLEANUP", "")
    return {"down": ["down"], "down-volumes": ["down --volumes"]}.get(choice, [])


# ---------------------------------------------------------------- command line
def jupyter_url() -> str:
    """Where the jupyter container's JupyterLab answers on the host, with its token."""
    return f"http://127.0.0.1:{setting('JUPYTER_PORT')}/lab?token={setting('JUPYTER_TOKEN')}"


def main(argv: list[str]) -> int:
    commands = {"up", "down", "down-volumes", "status", "config", "jupyter-url"}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m harness.ops.docker_stack {{{'|'.join(sorted(commands))}}}")
        return 2
    try:
        if argv[0] == "up":
            ensure_docker_stack()
            print(docker_stack_status())
        elif argv[0] == "down":
            stop_docker_stack()
        elif argv[0] == "down-volumes":
            stop_docker_stack(remove_volumes=True)
        elif argv[0] == "status":
            print(docker_stack_status())
        elif argv[0] == "jupyter-url":
            print(f"JupyterLab runs in the docker stack's jupyter container: {jupyter_url()}")
        else:
            print(json.dumps(compose_config(), indent=2))
    except DockerStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
