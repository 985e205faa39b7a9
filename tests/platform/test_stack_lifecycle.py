"""Platform tests that cycle the native stack: a killed server is restarted by `up`, and `down`
leaves no process of ours. They stop services other tests use, so this module runs last in
tests/platform (file order) and always ends with the whole stack up again.

`STACK_LIFECYCLE_SERVICES` (space-separated names) restricts the down/up cycle, for working on
one part of the stack while others use the rest; by default it cycles everything.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from harness.ops.stack import manager
from harness.runtime.config import ROOT
from harness.runtime.services import port_open
from harness.runtime.waits import wait_quietly

CYCLED = os.environ.get("STACK_LIFECYCLE_SERVICES", "").split() or [
    cls.name for cls in manager.SERVICE_CLASSES
]


def stack_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m harness.ops.stack ARGS` as `make` does."""
    return subprocess.run(
        [sys.executable, "-m", "harness.ops.stack", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def status_rows(output: str) -> dict[str, list[str]]:
    """Parse the status table: service name -> cells (endpoint, state, pid, memory)."""
    names = {cls.name for cls in manager.SERVICE_CLASSES}
    rows = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in names:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(autouse=True)
def stack_up_again_afterwards():
    yield
    result = stack_cli("up")
    assert result.returncode == 0, (
        f"could not bring the stack back up:\n{result.stdout}{result.stderr}"
    )


def _service(name: str):
    return next(s for s in manager.all_services() if s.name == name)


def test_killed_service_is_noticed_and_restarted() -> None:
    """SIGKILL the Spark worker: `status` shows it down (exit 1), `up` restarts only it."""
    worker = _service("spark-worker")
    pid = manager.owned_pid(worker)
    assert pid is not None, "the Spark worker is not running: start the stack with `make up`"
    os.kill(pid, signal.SIGKILL)
    wait_quietly(lambda: worker.pid() is None, timeout=10)  # `status` below checks it is down
    status = stack_cli("status")
    assert status.returncode == 1, f"status should fail while a service is down:\n{status.stdout}"
    assert status_rows(status.stdout)["spark-worker"][1] == "down"
    up = stack_cli("up")
    assert up.returncode == 0, f"`up` failed:\n{up.stdout}\n{up.stderr}"
    restarted = [ln for ln in up.stdout.splitlines() if "restarting" in ln]
    assert len(restarted) == 1 and "Spark worker" in restarted[0], up.stdout
    assert "Started 1 of" in up.stdout
    assert manager.owned_pid(worker) not in (None, pid)


def test_down_leaves_no_process_of_ours() -> None:
    """`down` stops every server and all its children; their ports close; `up` restores them."""
    services = [_service(n) for n in CYCLED]
    sessions = {s.name: manager.owned_pid(s) for s in services}
    assert all(sessions.values()), f"not everything is running before the test: {sessions}"
    down = stack_cli("down", *CYCLED)
    assert down.returncode == 0, f"`down` failed:\n{down.stdout}\n{down.stderr}"
    left = {n: manager.session_members(sid) for n, sid in sessions.items()}
    assert not any(left.values()), f"processes left after down: {left}"
    for service in services:
        assert not port_open(service.host, service.port), f"{service.name} port still open"
        assert not service.pid_file.exists(), f"{service.pid_file} left behind"
    status = stack_cli("status", *CYCLED)
    assert status.returncode == 1
    assert all(
        cells[1] == "down" for n, cells in status_rows(status.stdout).items() if n != "total"
    )
    up = stack_cli("up")
    assert up.returncode == 0, f"`up` failed:\n{up.stdout}\n{up.stderr}"
    assert f"Started {len(CYCLED)} of" in up.stdout, up.stdout
