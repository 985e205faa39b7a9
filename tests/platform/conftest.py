"""Platform tests that only mean something on the native stack are left out on the others.

The native stack's manager (`harness.ops.stack`: pid files, ports, restarts) and a job whose executors
must be processes of the *native* Spark worker test local processes that a docker or external stack
does not have. With `STACK=docker` (e.g. CI's docker job) they are deselected, not skipped, and the
run says so; every other platform test runs against whichever stack is up. Fixtures more than one
platform test uses live here too.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from harness.runtime.config import stack

NATIVE_ONLY = {
    "test_stack.py": "the native stack manager's processes, pid files and ports",
    "test_stack_lifecycle.py": "kills and restarts the native stack's processes",
    "test_spark.py::test_job_on_standalone_cluster": "executors must be the native worker's processes",
}
_left_out: list[str] = []


@pytest.fixture
def listening() -> Iterator[int]:
    """A plain TCP socket listening on 127.0.0.1 in this test process; yields its port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _native_only(item: pytest.Item) -> str | None:
    name = item.path.name
    return NATIVE_ONLY.get(name) or NATIVE_ONLY.get(f"{name}::{item.originalname}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if stack() == "native":
        return
    kept, dropped = [], []
    for item in items:
        (dropped if _native_only(item) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
        _left_out.extend(sorted({f"{i.path.name} ({_native_only(i)})" for i in dropped}))


def pytest_terminal_summary(terminalreporter) -> None:
    if _left_out:
        terminalreporter.write_line(
            f"STACK={stack()}: native-stack-only tests left out: " + "; ".join(_left_out)
        )
