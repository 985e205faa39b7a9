"""Platform tests for the native stack manager (`python -m harness.ops.stack`, behind `make up`,
`make status`): idempotent `up`, the status table, port conflicts, stale pid files, verified jars.

These tests never stop a running service (see test_stack_lifecycle.py for down/up cycles). Port
conflicts are provoked in a throw-away stack folder (`OPENSKY_STACK_DIR`) so the real stack is
not touched.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.ops.stack import manager
from harness.ops.stack.jars import fetch_jars, jars_installed
from harness.ops.stack.spark_cluster import SPARK_JARS_DIR, jars_complete
from harness.runtime.config import ROOT

SERVICES = [cls.name for cls in manager.SERVICE_CLASSES]


def stack_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `python -m harness.ops.stack ARGS` as `make` does; returns the completed process."""
    return subprocess.run(
        [sys.executable, "-m", "harness.ops.stack", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status_rows(output: str) -> dict[str, list[str]]:
    """Parse the status table: service name -> cells (endpoint, state, pid, memory)."""
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in SERVICES + ["total"]:
            rows[cells[0]] = cells[1:]
    return rows


def test_up_twice_starts_nothing_the_second_time() -> None:
    """`up` on a running stack says every service is already running and starts nothing."""
    first = stack_cli("up")
    assert first.returncode == 0, f"`up` failed:\n{first.stdout}\n{first.stderr}"
    second = stack_cli("up")
    assert second.returncode == 0, f"second `up` failed:\n{second.stdout}\n{second.stderr}"
    steps = [ln for ln in second.stdout.splitlines() if re.match(r"\[\d+/\d+\]", ln)]
    assert len(steps) == len(SERVICES), f"expected one step per service:\n{second.stdout}"
    assert all("already running" in s for s in steps), f"something was started:\n{second.stdout}"
    assert f"Nothing to start: all {len(SERVICES)} services" in second.stdout


def test_status_table() -> None:
    """`status` prints one table: every service up with endpoint, pid and memory, plus a total."""
    result = stack_cli("status")
    rows = status_rows(result.stdout)
    assert result.returncode == 0, f"`status` exit {result.returncode}:\n{result.stdout}"
    assert list(rows) == SERVICES + ["total"], f"rows {list(rows)} in:\n{result.stdout}"
    for name in SERVICES:
        endpoint, state, pid, memory = rows[name]
        assert state == "up", f"{name} is {state}"
        assert pid.isdigit() and memory.endswith("MiB"), f"{name}: pid {pid}, memory {memory}"
        assert "127.0.0.1" in endpoint, f"{name} endpoint {endpoint}"
    assert rows["total"][-1].endswith("MiB")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_taken_by_another_program_stops_before_starting_anything(tmp_path: Path) -> None:
    """A port held by a foreign program: a message naming the port, the program and the variable
    to override, exit code 2, and no service started (not even the ones whose ports are free)."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    env = {
        "OPENSKY_STACK_DIR": str(tmp_path / "stack"),
        "POSTGRES_PORT": str(_free_port()),
        "MINIO_PORT": str(taken),
        "MINIO_CONSOLE_PORT": str(_free_port()),
    }
    try:
        result = stack_cli("up", "postgres", "minio", env=env)
    finally:
        squatter.close()
    message = result.stderr
    assert result.returncode == 2, (
        f"expected exit 2, got {result.returncode}:\n{result.stdout}{message}"
    )
    assert f"port {taken}" in message and "MINIO_PORT" in message, message
    assert f"pid {os.getpid()}" in message, f"the holding program is not named:\n{message}"
    assert "nothing was started" in message
    run_dir = tmp_path / "stack" / "run"
    assert not list(run_dir.glob("*.pid")), f"something was started: {list(run_dir.glob('*'))}"


def test_stale_pid_file_is_not_ours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pid file naming a live process we did not start (pid reuse after a crash) is ignored."""
    from harness.ops.stack.spark_cluster import SparkMaster

    pid_file = tmp_path / "spark-master.pid"
    monkeypatch.setattr(SparkMaster, "pid_file", property(lambda self: pid_file))
    service = SparkMaster()
    pid_file.write_text(str(os.getpid()))  # alive, but the pytest process is not a server of ours
    os.utime(pid_file, (0, 0))  # written long before this process started
    assert service.pid() == os.getpid()
    assert manager.owned_pid(service) is None
    pid_file.write_text("999999999")  # no such process
    assert service.pid() is None and manager.owned_pid(service) is None


class _Build(manager.Service):
    """A stand-in service whose install is a slow build (the scheduling is what is tested here)."""

    builds_in_background = True

    def __init__(self, name: str, events: list[str], seconds: float, fail: bool = False) -> None:
        self.name = self.title = name
        self.events, self.seconds, self.fail, self.done = events, seconds, fail, False

    def installed(self) -> bool:
        return self.done

    def install(self, output: Path | None = None) -> None:
        import time

        self.events.append(f"{self.name} build starts")
        time.sleep(self.seconds)
        if self.fail:
            raise manager.StackError(f"{self.name}: the build failed")
        Path(output).write_text("build output\n")
        self.done = True
        self.events.append(f"{self.name} build ends")


class _Quick(_Build):
    builds_in_background = False

    def install(self, output: Path | None = None) -> None:
        self.events.append(f"{self.name} installed")
        self.done = True


def test_slow_build_runs_in_the_background_while_the_others_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: MinIO's Go build must not hold up the downloads of the other services."""
    monkeypatch.setattr(manager, "LOG_DIR", tmp_path)
    events: list[str] = []
    services = [_Build("slow", events, 1.0), _Quick("a", events, 0), _Quick("b", events, 0)]
    builds = manager.start_background_builds(services)
    order = [s.name for s in manager.builds_last(services, builds)]
    assert order == ["a", "b", "slow"], order
    progress = manager.Progress(3)
    for service in manager.builds_last(services, builds):
        manager._install_one(service, progress, builds)
    assert events.index("a installed") < events.index("slow build ends"), events
    assert events.index("b installed") < events.index("slow build ends"), events
    assert (tmp_path / "slow-install.log").read_text() == "build output\n"


def test_failed_background_build_is_a_loud_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(manager, "LOG_DIR", tmp_path)
    broken = _Build("broken", [], 0.1, fail=True)
    builds = manager.start_background_builds([broken])
    with pytest.raises(manager.StackError, match="the build failed"):
        manager._install_one(broken, manager.Progress(1), builds)


SMALL_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>labs.opensky.test</groupId>
  <artifactId>one-jar</artifactId>
  <version>1.0</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.postgresql</groupId>
      <artifactId>postgresql</artifactId>
      <version>42.7.7</version>
    </dependency>
  </dependencies>
</project>
"""


def test_truncated_jar_is_detected_and_fetched_again(tmp_path: Path) -> None:
    """A truncated jar (an interrupted download) fails verification and the next fetch repairs it
    (the same code fetches every service's jars; a one-jar pom keeps the test quick)."""
    assert jars_complete(), f"the Spark jars in {SPARK_JARS_DIR} are not complete: run make setup"
    pom = tmp_path / "pom.xml"
    pom.write_text(SMALL_POM)
    dest = tmp_path / "jars" / "small"
    fetch_jars(pom, dest)
    assert jars_installed(pom, dest)
    victim = next(dest.glob("postgresql-*.jar"))
    size = victim.stat().st_size
    with open(victim, "r+b") as fh:
        fh.truncate(size // 2)
    assert not jars_installed(pom, dest), "a truncated jar was not noticed"
    fetch_jars(pom, dest)
    assert jars_installed(pom, dest) and victim.stat().st_size == size
    assert not list(tmp_path.glob(".*partial*")), "a scratch folder was left behind"


def test_postgres_data_dir_reachable_by_the_postgres_user(tmp_path: Path) -> None:
    """As root, PostgreSQL runs as the `postgres` OS user; a stack folder that user cannot reach
    (under /root, mode 700) gets its data directory under /var/tmp, linked from .stack/data."""
    if os.geteuid() != 0:
        from harness.ops.stack.postgres import Postgres

        assert Postgres().data_dir.parent.name == "data"
        return
    hidden = Path("/root") / f".opensky-test-{os.getpid()}"
    hidden.mkdir(mode=0o700)
    env = {"OPENSKY_STACK_DIR": str(hidden / "stack"), "POSTGRES_PORT": str(_free_port())}
    try:
        up = stack_cli("up", "postgres", env=env, timeout=180)
        assert up.returncode == 0, f"`up postgres` failed:\n{up.stdout}\n{up.stderr}"
        link = hidden / "stack" / "data" / "postgres"
        assert link.is_symlink() and str(link.resolve()).startswith("/var/tmp/opensky-labs-")
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "from harness.runtime.services import pg_connect\n"
                "print(pg_connect().execute('SHOW wal_level').fetchone()[0])",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert probe.stdout.strip() == "logical", probe.stderr
    finally:
        down = stack_cli("down", "postgres", env=env, timeout=120)
        target = (hidden / "stack" / "data" / "postgres").resolve()
        shutil.rmtree(hidden, ignore_errors=True)
        if str(target).startswith("/var/tmp/opensky-labs-"):
            shutil.rmtree(target.parent, ignore_errors=True)
    assert down.returncode == 0, f"`down postgres` failed:\n{down.stdout}\n{down.stderr}"


def test_each_service_listens_where_the_settings_say(monkeypatch) -> None:
    """A service's address comes from infra/.env's `<PREFIX>_HOST`/`_PORT` (the environment wins),
    the same settings `endpoints()` gives lab code."""
    monkeypatch.setenv("KAFKA_PORT", "29092")
    monkeypatch.setenv("POSTGRES_HOST", "127.0.0.2")
    from harness.runtime.config import endpoints

    ep = endpoints()
    found = {s.name: (s.host, s.port) for s in manager.all_services()}
    assert f"{found['kafka'][0]}:{found['kafka'][1]}" == ep.kafka_bootstrap
    assert found["kafka"][1] == 29092
    assert found["postgres"] == ("127.0.0.2", ep.pg_port)
    assert found["clickhouse"] == (ep.clickhouse_host, ep.clickhouse_port)
    assert f"{found['connect'][0]}:{found['connect'][1]}" in ep.connect_url
    assert f"spark://{found['spark-master'][0]}:{found['spark-master'][1]}" == ep.spark_master_url
    assert f"{found['minio'][0]}:{found['minio'][1]}" == ep.minio_endpoint


def test_a_misspelled_service_declaration_is_an_error() -> None:
    """A typo in a service's class line fails at import, not as a silent default."""
    with pytest.raises(TypeError, match="start_timout"):

        class _Typo(manager.Service, name="typo", start_timout=5):  # noqa: F841
            pass
