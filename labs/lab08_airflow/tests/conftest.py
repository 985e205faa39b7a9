"""Fixtures of Lab 08's graded suite: Airflow configured for this test session, the DAG under test,
the recording's hours in MinIO under scratch names, and the runs the tests share.

Airflow reads its settings when it is first imported, so `airflow_home` sets them (a temporary
AIRFLOW_HOME with a SQLite database, no example DAGs) before anything imports it. Every run writes
to names made for this module (a raw-data prefix, a processed-data prefix, a ClickHouse database),
removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lab08_support import (
    BATCH,
    H13,
    LAB,
    MODULE,
    fresh_dag,
    instrument,
    run_states,
    stores,
)

from harness.grading import lab_module, target_dir
from harness.grading.testkit import clickhouse_session, drop_database, remove_prefix
from harness.ops.airflow_stack import airflow_env, dags_folder, init_db, upload_hours
from harness.runtime.config import ROOT


# ------------------------------------------------------------------ Airflow for this session
@pytest.fixture(scope="session")
def airflow_home() -> Iterator[Path]:
    """A throw-away AIRFLOW_HOME whose DAGs folder holds only the DAG file under test."""
    home = Path(tempfile.mkdtemp(prefix="lab08-airflow-"))
    os.environ.update(airflow_env(home, home / "dags"))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def airflow_db(airflow_home: Path) -> Path:
    """The session's metadata database, created (dag.test() records its runs there)."""
    init_db()
    return airflow_home


@pytest.fixture(scope="module")
def mod(airflow_home: Path):
    """The lab's DAG module (labs/ or solutions/, from `--target`); importing it builds the DAG.

    The DAG runs the Lab 01 job next to it (a student's copy runs the student's job); a copy of
    this lab alone (a wrong answer's scratch folder) runs the reference job.
    """
    dag_file = target_dir() / LAB / f"{MODULE}.py"
    dags_folder(airflow_home, dag_file)
    lab01 = target_dir() / "lab01_batch" / "batch_processor.py"
    if not lab01.is_file():
        lab01 = ROOT / "solutions" / "lab01_batch" / "batch_processor.py"
    os.environ["OPENSKY_LAB01_JOB"] = str(lab01)
    return lab_module(LAB, MODULE)


@pytest.fixture(scope="session")
def ch():
    """A clickhouse-connect client for the lab's ClickHouse (raises ServiceUnavailable if down)."""
    yield from clickhouse_session()


@pytest.fixture(scope="module")
def world(ch) -> Iterator[dict[str, Any]]:
    """Throw-away names for one module's runs, and the recording's three hours uploaded as raw
    files under its raw prefix. `states[hour]` counts the state vectors of each hour."""
    scratch = f"lab08-tests/{uuid.uuid4().hex[:12]}"
    conf = {
        "raw_bucket": "raw-data",
        "raw_prefix": f"{scratch}/flights",
        "output": f"s3a://processed-data/{scratch}",
        "database": f"lab08_test_{uuid.uuid4().hex[:12]}",
        "spark_master": "",
    }
    try:
        states = upload_hours(conf["raw_bucket"], conf["raw_prefix"])
        yield {"conf": conf, "scratch": scratch, "states": states}
    finally:
        drop_database(ch, conf["database"])
        for bucket in ("raw-data", "processed-data"):
            remove_prefix(bucket, scratch)
        # The DAG's dbt work folder (profile, target, logs) for this database.
        shutil.rmtree(Path(tempfile.gettempdir()) / "opensky-lab08-dbt" / conf["database"], True)


# ------------------------------------------------------------------ the runs (shared by tests)
@pytest.fixture(scope="module")
def one_hour(mod, airflow_db, world, ch) -> dict[str, Any]:
    """One manual run at 13:00, which owns the data interval 12:00-13:00."""
    dag = fresh_dag(mod)
    batch_results: list = []
    instrument(dag.task_dict[BATCH], batch_results)
    run = dag.test(logical_date=H13, run_conf=world["conf"])
    return {
        "run": run,
        "state": str(run.state),
        "tasks": run_states(run),
        "batch_results": batch_results,
        "stores": stores(ch, world["conf"]),
    }
