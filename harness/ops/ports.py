"""Who listens on a TCP port: the lab stack's ports, their variables, and the program holding one.

psutil lists the listening sockets with their processes (Linux reads /proc, macOS asks the kernel);
where it may not look (macOS without root), `lsof` is asked. When neither can see the owner (another
user's process and we are not root) a port that answers is held by "an unknown program".

Used by `make doctor` and by the stack manager's "port taken by a program that is not ours" message.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import psutil

from harness.runtime.config import setting

# Every TCP port of the native stack, by service (names as in `python -m harness.ops.stack`): the
# variable of infra/.env (or the environment) that sets it. The first one is the service's main port.
PORT_VARIABLES: dict[str, tuple[str, ...]] = {
    "postgres": ("POSTGRES_PORT",),
    "minio": ("MINIO_PORT", "MINIO_CONSOLE_PORT"),
    "clickhouse": ("CLICKHOUSE_PORT",),
    "kafka": ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT"),
    "connect": ("CONNECT_PORT",),
    "spark-master": ("SPARK_MASTER_PORT", "SPARK_MASTER_WEBUI_PORT"),
    "spark-worker": ("SPARK_WORKER_WEBUI_PORT",),
}

_UNKNOWN = "an unknown program (see `ss -ltnp` or `lsof -iTCP:{port} -sTCP:LISTEN`, as root)"


def stack_ports() -> dict[str, tuple[str, int]]:
    """Variable -> (service, port) for every stack port, with environment overrides applied."""
    out: dict[str, tuple[str, int]] = {}
    for service, variables in PORT_VARIABLES.items():
        for variable in variables:
            out[variable] = (service, int(setting(variable)))
    return out


def ports_of(service: str) -> list[tuple[str, int]]:
    """(variable, port) for each TCP port of one stack service (`postgres`, `kafka`, ...)."""
    return [(variable, int(setting(variable))) for variable in PORT_VARIABLES.get(service, ())]


def variable_for_port(port: int) -> str | None:
    """The variable that puts a stack service on `port` (None when no service uses it)."""
    for variable, (_service, value) in stack_ports().items():
        if value == port:
            return variable
    return None


# ------------------------------------------------------------------ process lookups
def describe_cmdline(argv: list[str]) -> str:
    """A short, readable name for a command line: `java … kafka.Kafka`, `python -m pytest …`."""
    if not argv:
        return "?"
    program = os.path.basename(argv[0])
    if program == "java" or program.startswith("java"):
        # The main class: the first argument that is not an option nor an option's value.
        skip_next = False
        for arg in argv[1:]:
            if skip_next:
                skip_next = False
                continue
            if arg in ("-cp", "-classpath", "--class-path", "--module-path", "-p"):
                skip_next = True
                continue
            if arg.startswith("-"):
                continue
            return f"java … {arg}"
        return "java"
    text = " ".join([program, *argv[1:]])
    return text if len(text) <= 100 else text[:97] + "..."


def _cmdline(pid: int) -> str:
    try:
        process = psutil.Process(pid)
        return describe_cmdline(process.cmdline()) if process.cmdline() else process.name()
    except psutil.Error:
        return "?"


def listeners() -> dict[int, tuple[int | None, str]]:
    """Port -> (pid, program) for every listening TCP socket on this machine.

    pid is None (and the program "an unknown program …") when the socket's owner cannot be seen:
    another user's process when we are not root, or a socket held inside a container.
    """
    try:
        sockets = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS without root: lsof answers per port instead
        return {}
    found: dict[int, tuple[int | None, str]] = {}
    for conn in sockets:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr:
            continue
        port = conn.laddr.port
        if conn.pid is not None:
            if found.get(port, (None,))[0] is None:
                found[port] = (conn.pid, _cmdline(conn.pid))
        elif port not in found:
            found[port] = (None, _UNKNOWN.format(port=port))
    return found


def _answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_owner(port: int) -> tuple[int | None, str] | None:
    """(pid or None, program) of whatever listens on TCP `port`; None when the port is free."""
    owner = listeners().get(port)
    if owner is not None:
        return owner
    if _answers(port):  # psutil could not list it, but something answers there
        return _lsof_owner(port) or (None, _UNKNOWN.format(port=port))
    return None


def _lsof_owner(port: int) -> tuple[int, str] | None:
    """Where psutil may not list sockets (macOS without root): ask `lsof`."""
    if not shutil.which("lsof"):
        return None
    try:
        result = subprocess.run(
            ["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fp"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    pids = [int(line[1:]) for line in result.stdout.splitlines() if line[1:].isdigit()]
    if not pids:
        return None
    try:
        ps = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pids[0])], capture_output=True, text=True, timeout=10
        )
        command = ps.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        command = ""
    return pids[0], describe_cmdline(command.split()) if command else "?"


def free_port(avoid: set[int] | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (and not one of `avoid`)."""
    avoid = avoid or set()
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in avoid:
            return port
    raise RuntimeError("no free TCP port found on 127.0.0.1")


# ------------------------------------------------------------------ ours or not
def session_id(pid: int) -> int | None:
    """The session id of `pid` (every server of the stack leads its own session)."""
    try:
        return os.getsid(pid)
    except OSError:
        return None


def stack_service_of(pid: int | None, run_dir: Path) -> str | None:
    """The stack service (pid file name in `run_dir`) whose process session holds `pid`, if any."""
    if pid is None:
        return None
    sid = session_id(pid)
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            recorded = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if recorded in (pid, sid):
            return pid_file.stem
    return None


def conflict_message(
    port: int,
    title: str,
    variable: str | None = None,
    owner: tuple[int | None, str] | None = None,
) -> str | None:
    """The message for a stack port held by another program, or None when the port is free.

    Names the port, the program holding it (pid and command) and the variable that moves the lab's
    service elsewhere, with a free port to use. The caller decides whether the holder is ours;
    `owner` is what `port_owner(port)` returned, when the caller already asked.
    """
    owner = owner or port_owner(port)
    if owner is None:
        return None
    pid, program = owner
    who = f"pid {pid} ({program})" if pid is not None else program
    variable = variable or variable_for_port(port) or "the matching *_PORT variable"
    suggestion = free_port(avoid={p for _s, p in stack_ports().values()})
    return (
        f"port {port} ({title}) is taken by {who}. Stop that program, or move the lab's "
        f"{title} to a free port: set {variable}={suggestion} in infra/.env "
        f"(or `export {variable}={suggestion}`) — every client, test and notebook follows it."
    )
