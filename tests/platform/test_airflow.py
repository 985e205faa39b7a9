"""`make airflow` serves Lab 08's DAG: Airflow standalone starts on 127.0.0.1, answers its health
check with every component healthy, lists the DAG, and stops with the process group we started.

It runs a private copy (a temporary AIRFLOW_HOME, a free port, the DAG paused, nothing uploaded), so
it never disturbs a `make airflow` someone is watching.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from harness.ops.airflow_stack import DAG_ID, HEALTH_PATH
from harness.ops.ports import free_port
from harness.runtime.config import ROOT
from harness.runtime.waits import wait_quietly

START_TIMEOUT_S = 600  # a busy 2-core machine needs minutes; a quiet one about 70 s
COMPONENTS = ("metadatabase", "scheduler", "triggerer", "dag_processor")


def _get(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=5)
    except requests.RequestException:
        return None


@pytest.mark.timeout(START_TIMEOUT_S + 120)
def test_make_airflow_serves_the_dag(tmp_path) -> None:
    """Start `python -m harness.ops.airflow_stack standalone` (what `make airflow` runs), poll its
    health until every component is healthy and the DAG is listed, then stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "airflow.log"
    argv = [sys.executable, "-m", "harness.ops.airflow_stack", "standalone", "--paused"]
    argv += ["--home", str(tmp_path / "home"), "--port", str(port), "--dags", "solutions"]
    with log.open("w") as out:
        # A session of its own: stopping it stops every Airflow process it started, and only those.
        process = subprocess.Popen(
            argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    health, dag = None, None

    def ready_or_exited() -> bool:
        nonlocal health, dag
        if process.poll() is not None:
            return True  # the assertions below say that it exited
        response = _get(base + HEALTH_PATH)
        if response is None or not response.ok:
            return False
        health = response.json()
        if not all(health.get(c, {}).get("status") == "healthy" for c in COMPONENTS):
            return False
        dag = _get(f"{base}/api/v2/dags/{DAG_ID}")
        return dag is not None and dag.ok

    try:
        wait_quietly(ready_or_exited, START_TIMEOUT_S, every=3)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        assert process.poll() is None, f"airflow standalone exited ({process.returncode}):\n{tail}"
        assert health is not None, (
            f"no answer on {base}{HEALTH_PATH} in {START_TIMEOUT_S} s:\n{tail}"
        )
        unhealthy = {
            c: health.get(c) for c in COMPONENTS if health.get(c, {}).get("status") != "healthy"
        }
        assert not unhealthy, f"components not healthy: {unhealthy}\n{tail}"
        assert dag is not None and dag.ok, f"the API does not list {DAG_ID}:\n{tail}"
        assert dag.json().get("is_paused") is True, dag.json()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

        # The children (scheduler, API server…) are in the same group: make sure none is left.
        def group_gone() -> bool:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return True
            return False

        if not wait_quietly(group_gone, 60, every=2):
            os.killpg(process.pid, signal.SIGKILL)
