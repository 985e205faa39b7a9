"""Fixtures of Lab 01's graded suite: the module under test, scratch names, and the end-to-end
runs of the command line on a slice of the real recording (helpers in lab01_support.py).

Everything a test writes goes to names made for it (a MinIO prefix, a ClickHouse database, a
PostgreSQL table) and is removed afterwards. Services come from `harness.runtime.services` only.

The end-to-end tests run the job twice on the same input: with `spark-submit` (a separate JVM,
started in the background as soon as the session begins, so it overlaps the other tests), then
`main()` in this process (the `python batch_processor.py …` path). Idempotence means the second
run leaves every store exactly as the first one did.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from lab01_support import (
    Run,
    SliceRuns,
    build_slice,
    drop_pg_table,
    run_main,
    stores,
    unique,
)

from harness.grading import lab_module, target_dir
from harness.grading.testkit import clickhouse_session, drop_database, remove_prefix
from harness.runtime.services import clickhouse_client, minio_client
from harness.runtime.spark import spark_submit_command

LAB = "lab01_batch"
MODULE = "batch_processor"
SUBMIT_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def mod():
    """The lab's `batch_processor` module (labs/ or solutions/, from `--target`)."""
    return lab_module(LAB, MODULE)


@pytest.fixture(scope="session")
def ch():
    """A clickhouse-connect client for the lab's ClickHouse (raises ServiceUnavailable if down)."""
    yield from clickhouse_session()


@pytest.fixture
def scratch_db(ch) -> Iterator[str]:
    """A fresh ClickHouse database name (not created: part E creates it), dropped afterwards."""
    name = unique("lab01_test")
    yield name
    drop_database(ch, name)


@pytest.fixture
def s3_prefix() -> Iterator[str]:
    """A unique prefix, emptied afterwards in raw-data and processed-data."""
    prefix = f"lab01-tests/{uuid.uuid4().hex[:12]}"
    yield prefix
    for bucket in ("raw-data", "processed-data"):
        remove_prefix(bucket, prefix)


@pytest.fixture
def pg_stats_table() -> Iterator[str]:
    """A fresh PostgreSQL table name for flight statistics (not created), dropped afterwards."""
    name = unique("lab01_test_stats")
    yield name
    drop_pg_table(name)


def _wants_slice_runs(items: list[pytest.Item]) -> bool:
    return any("slice_runs" in getattr(item, "fixturenames", ()) for item in items)


# Module scope, not session: the wrong-answer gate re-targets the suite at another copy of the code
# between runs of this module, and each copy must get its own runs.
@pytest.fixture(scope="module")
def _slice_names(tmp_path_factory) -> Iterator[SliceRuns]:
    """Names for the end-to-end runs, the slice uploaded to MinIO; everything removed after."""
    folder = tmp_path_factory.mktemp("lab01-slice")
    names = SliceRuns(
        data=build_slice(folder),
        prefix=f"lab01-tests/{uuid.uuid4().hex[:12]}",
        database=unique("lab01_test"),
        stats_table=unique("lab01_test_stats"),
        script=target_dir() / LAB / f"{MODULE}.py",
    )
    try:
        minio_client().fput_object(
            "raw-data", f"{names.prefix}/{names.data.path.name}", str(names.data.path)
        )
        yield names
    finally:
        if names.submit is not None and names.submit.poll() is None:
            names.submit.kill()
            names.submit.wait()
        client = clickhouse_client()
        drop_database(client, names.database)
        client.close()
        drop_pg_table(names.stats_table)
        for bucket in ("raw-data", "processed-data"):
            remove_prefix(bucket, names.prefix)


@pytest.fixture(scope="module", autouse=True)
def _start_spark_submit_early(request: pytest.FixtureRequest) -> None:
    """When end-to-end tests are selected, start their `spark-submit` run before the module's
    first test, in the background: its JVM starts and works while the other tests run."""
    if not _wants_slice_runs(request.session.items):
        return
    names: SliceRuns = request.getfixturevalue("_slice_names")
    argv, env = spark_submit_command(names.script, names.args(), master="local[1]")
    names.submit = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


@pytest.fixture(scope="module")
def slice_runs(spark, ch, mod, _slice_names: SliceRuns) -> SliceRuns:
    """Both runs on the slice: `spark-submit --master local[1]` (started early), then `main()` in
    this process; each with what it left in the stores. A run that fails is recorded, not raised."""
    names = _slice_names
    if names.runs:
        return names
    submit = Run("spark-submit")
    try:
        submit.stdout, submit.stderr = names.submit.communicate(timeout=SUBMIT_TIMEOUT_S)
        submit.returncode = names.submit.returncode
    except subprocess.TimeoutExpired:
        names.submit.kill()
        submit.stdout, submit.stderr = names.submit.communicate()
        submit.returncode = -1
        submit.stderr += f"\n(killed after {SUBMIT_TIMEOUT_S} s)"
    names.runs["spark_submit"] = submit
    if submit.returncode == 0:
        submit.stores = stores(spark, ch, names)
    names.runs["python"] = run_main(mod, names.args())
    if names.runs["python"].returncode == 0:
        names.runs["python"].stores = stores(spark, ch, names)
    return names
