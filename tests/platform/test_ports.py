"""Platform tests for `harness.ops.ports`: finding the program that holds a port, and free ports."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from harness.ops import ports


def test_port_owner_finds_this_process(listening: int) -> None:
    """The owner of a socket opened here is this process, named as a Python program."""
    owner = ports.port_owner(listening)
    assert owner is not None, f"port {listening} listens, but port_owner() found nobody"
    pid, program = owner
    assert pid == os.getpid(), f"expected pid {os.getpid()}, got {pid} ({program})"
    assert "python" in program or "pytest" in program, program


def test_listeners_include_the_socket(listening: int) -> None:
    """`listeners()` maps the listening port to this process."""
    found = ports.listeners()
    assert found.get(listening, (None, ""))[0] == os.getpid(), found.get(listening)


def test_free_port_is_bindable_and_unowned() -> None:
    """`free_port()` returns a port nothing holds, which we can then bind and listen on."""
    port = ports.free_port()
    assert 1024 <= port <= 65535
    assert ports.port_owner(port) is None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert ports.port_owner(port) is not None


def test_free_port_avoids_given_ports(listening: int) -> None:
    """Ports passed in `avoid` are never returned."""
    avoid = {ports.free_port() for _ in range(3)}
    assert ports.free_port(avoid=avoid) not in avoid


def test_port_variables_cover_every_stack_port() -> None:
    """Every stack port has a variable, and the variables resolve through harness.runtime.config."""
    resolved = ports.stack_ports()
    expected = {
        "KAFKA_PORT",
        "KAFKA_CONTROLLER_PORT",
        "CONNECT_PORT",
        "POSTGRES_PORT",
        "MINIO_PORT",
        "MINIO_CONSOLE_PORT",
        "CLICKHOUSE_PORT",
        "SPARK_MASTER_PORT",
        "SPARK_MASTER_WEBUI_PORT",
        "SPARK_WORKER_WEBUI_PORT",
    }
    assert set(resolved) == expected
    service, port = resolved["POSTGRES_PORT"]
    assert service == "postgres" and ports.variable_for_port(port) == "POSTGRES_PORT"


def test_env_override_moves_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment variable overrides infra/.env for the port tables."""
    monkeypatch.setenv("CONNECT_PORT", "18383")
    assert ports.stack_ports()["CONNECT_PORT"] == ("connect", 18383)
    assert ports.variable_for_port(18383) == "CONNECT_PORT"


def test_conflict_message_names_port_program_and_variable(
    listening: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manager's message names the port, the pid and program, and the override variable."""
    monkeypatch.setenv("POSTGRES_PORT", str(listening))
    message = ports.conflict_message(listening, "PostgreSQL")
    assert message is not None
    assert str(listening) in message and f"pid {os.getpid()}" in message, message
    assert "POSTGRES_PORT=" in message and "infra/.env" in message, message
    assert ports.conflict_message(ports.free_port(), "PostgreSQL") is None


def test_stack_service_of_reads_pid_files(tmp_path: Path) -> None:
    """A process is the stack's when a pid file names it or the leader of its session."""
    (tmp_path / "kafka.pid").write_text(f"{os.getpid()}\n")
    assert ports.stack_service_of(os.getpid(), tmp_path) == "kafka"
    (tmp_path / "kafka.pid").write_text(f"{os.getsid(0)}\n")
    assert ports.stack_service_of(os.getpid(), tmp_path) == "kafka"
    (tmp_path / "kafka.pid").write_text("1\n")
    if os.getsid(0) != 1:
        assert ports.stack_service_of(os.getpid(), tmp_path) is None
    assert ports.stack_service_of(None, tmp_path) is None


def test_describe_cmdline_names_java_main_class() -> None:
    """A JVM is named by its main class, not by its classpath."""
    argv = ["/usr/bin/java", "-Xmx512m", "-cp", "/a/*:/b/*", "kafka.Kafka", "server.properties"]
    assert ports.describe_cmdline(argv) == "java … kafka.Kafka"
    assert ports.describe_cmdline(["/usr/bin/python3", "-m", "http.server"]).startswith("python3")


def test_ports_of_a_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ports_of()` lists a service's ports with their variables, main port first."""
    monkeypatch.setenv("MINIO_CONSOLE_PORT", "19001")
    variables = [v for v, _p in ports.ports_of("minio")]
    assert variables == ["MINIO_PORT", "MINIO_CONSOLE_PORT"]
    assert ("MINIO_CONSOLE_PORT", 19001) in ports.ports_of("minio")
    assert ports.ports_of("no-such-service") == []
