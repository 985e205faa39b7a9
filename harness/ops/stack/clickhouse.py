"""ClickHouse for the native stack: chDB behind a small ClickHouse-compatible HTTP server.

chDB locks its data directory to one process, so one server process owns it and every client
(pytest, spark-submit'ed jobs, notebooks) talks to it with clickhouse-connect over HTTP, exactly as
it would talk to clickhouse-server in the docker stack. See `harness/ops/chdb_server.py`.
"""

from __future__ import annotations

import importlib.util
import subprocess
import urllib.error
import urllib.request

from harness.ops.stack.base import Service, StackError, python
from harness.runtime.config import ROOT


class ChdbServer(
    Service, name="clickhouse", title="ClickHouse (chDB)", env="CLICKHOUSE", start_timeout=60
):
    def installed(self) -> bool:
        return importlib.util.find_spec("chdb") is not None

    def install(self) -> None:
        result = subprocess.run([python(), "-c", "import chdb"], capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(
                "chDB (the ClickHouse engine as a Python package) is not installed in the venv. "
                "Run `make venv` (or `.venv/bin/pip install chdb`)."
            )

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = [
            python(),
            "-m",
            "harness.ops.chdb_server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--path",
            str(self.data_dir),
        ]
        # The server's time zone is UTC on every machine, as the docker stack's clickhouse-server is:
        # chDB takes the host's zone otherwise, and aware datetimes would shift by its offset.
        return argv, {"PYTHONPATH": str(ROOT), "TZ": "UTC"}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/ping", timeout=2) as r:
                return r.status == 200 and r.read() == b"Ok.\n"
        except (OSError, urllib.error.URLError):
            return False
