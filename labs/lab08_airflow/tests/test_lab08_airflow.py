"""Graded test suite for Lab 08 — used by `make lab-8` and instructors' grading.

Part A reads the DAG as Airflow does (DagBag) and checks its structure; the other parts run the DAG
in-process with `dag.test()` for chosen logical dates against the real stack: raw files in MinIO,
Lab 01's job on the Spark standalone cluster, the dbt mart and the tables in ClickHouse. Every run
uses names made for this module. The runs are shared: one hour (12:00-13:00) on the cluster; a dbt
re-run of that hour and a gate-only run on it broken in ClickHouse; back-fills that must stop or do
nothing; and a back-fill of 12:00-14:00 in which hour 12 is re-run over duplicated rows and its
batch task fails twice (once after writing) before succeeding.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from lab08_support import (
    BATCH,
    DAG_ID,
    DBT,
    GATE,
    H12,
    H13,
    H14,
    H15,
    HOUR,
    LAB,
    MART,
    MODULE,
    RECORDED_HOURS,
    TASK_IDS,
    WAIT,
    fresh_dag,
    instrument,
    lab_says,
    mart_rows,
    no_data,
    run_states,
    stores,
)

from harness.grading import target_dir

# Airflow times its tasks out with SIGALRM in this process: pytest-timeout must not use it too.
pytestmark = pytest.mark.timeout(1800, method="thread")

DAY1 = timedelta(days=1)


def sound_hour(part: str, found: dict[str, Any], states: dict, hour: int) -> None:
    """The hour's invariants: rows in = kept + quarantined, ClickHouse = Parquet, no duplicates."""
    raw = states[H12 + timedelta(hours=hour - 12)]
    kept, quarantined = found["parquet"].get(hour, 0), found["quarantined"].get(hour, 0)
    assert kept > 0, lab_says(part, f"no Parquet rows for hour {hour}; hint: did the job run?")
    assert raw == kept + quarantined, lab_says(
        part,
        f"hour {hour}: {raw} state vectors in the raw files, but {kept} kept + {quarantined} "
        f"quarantined; hint: the job must read exactly that hour's files, once",
    )
    assert found["flights"].get(hour) == kept, lab_says(
        part,
        f"hour {hour}: ClickHouse flights_batch has {found['flights'].get(hour)} rows, Parquet "
        f"has {kept}; hint: an hour that is loaded twice or half is not idempotent",
    )
    assert found["distinct"].get(hour) == kept, lab_says(
        part, f"hour {hour}: duplicate (icao24, time_position) rows in ClickHouse"
    )


# ------------------------------------------------------------------ part A: the DAG
@pytest.fixture(scope="module")
def dagbag(airflow_home):
    """The DAG file as Airflow's DAG processor reads it."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(target_dir() / LAB / f"{MODULE}.py"))


@pytest.fixture(scope="module")
def parsed(dagbag):
    if DAG_ID not in dagbag.dags:
        pytest.fail(
            lab_says("A", f"the DAG file defines no DAG {DAG_ID!r}: {dagbag.import_errors}")
        )
    return dagbag.dags[DAG_ID]


@pytest.mark.points(2)
def test_partA_dag_file_imports_without_errors(dagbag) -> None:
    """Airflow parses the DAG file with no import error and finds the DAG `opensky_hourly`."""
    assert not dagbag.import_errors, lab_says(
        "A", f"Airflow could not import the DAG file: {dagbag.import_errors}"
    )
    assert DAG_ID in dagbag.dag_ids, lab_says(
        "A", f"expected a DAG {DAG_ID!r}, found {dagbag.dag_ids}"
    )


@pytest.mark.points(2)
def test_partA_each_run_owns_the_hour_before_it(parsed) -> None:
    """A run at 13:00 owns 12:00-13:00; catch-up makes one run per recorded hour, no more."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable = coerce_to_core_timetable(parsed.timetable)
    manual = timetable.infer_manual_data_interval(run_after=H13)
    assert (manual.start, manual.end) == (H12, H13), lab_says(
        "A",
        f"a run at 13:00 should own the data interval 12:00-13:00, it owns "
        f"{manual.start}-{manual.end}; hint: an hourly schedule whose runs have data intervals",
    )
    assert parsed.catchup is True, lab_says("A", "catchup must be on: missed hours get their runs")
    restriction = TimeRestriction(parsed.start_date, parsed.end_date, parsed.catchup)
    intervals, last = [], None
    for _ in range(6):
        info = timetable.next_dagrun_info(
            last_automated_data_interval=last, restriction=restriction
        )
        if info is None:
            break
        last = info.data_interval
        intervals.append((last.start, last.end))
    expected = [(h, h + HOUR) for h in RECORDED_HOURS]
    assert intervals == expected, lab_says(
        "A",
        f"scheduled runs should own exactly the recording's hours {expected}, got {intervals}; "
        f"hint: start_date, end_date and what a run's data interval is",
    )


@pytest.mark.points(1)
def test_partA_one_run_at_a_time_with_tags_and_docs(parsed) -> None:
    """max_active_runs is 1, and the DAG has tags and docs."""
    assert parsed.max_active_runs == 1, lab_says(
        "A", f"max_active_runs should be 1 (hours in order), got {parsed.max_active_runs}"
    )
    assert parsed.tags and (parsed.doc_md or "").strip(), lab_says(
        "A", "give the DAG tags and doc_md (what it does, for the UI)"
    )


@pytest.mark.points(2)
def test_partA_tasks_retry_with_backoff_and_timeout(parsed) -> None:
    """Every task has an execution timeout; every task but the sensor retries at least twice with
    exponential back-off, capped by max_retry_delay."""
    for task in parsed.tasks:
        timeout = task.execution_timeout
        assert timeout is not None and timedelta(0) < timeout <= timedelta(hours=3), lab_says(
            "A", f"task {task.task_id}: execution_timeout should be set (≤ 3 h), got {timeout}"
        )
        if task.task_id == WAIT:
            continue
        assert task.retries >= 2, lab_says(
            "A", f"task {task.task_id}: expected at least 2 retries, got {task.retries}"
        )
        assert task.retry_exponential_backoff and task.retry_delay > timedelta(0), lab_says(
            "A", f"task {task.task_id}: retries should back off exponentially from retry_delay"
        )
        assert task.max_retry_delay is not None, lab_says(
            "A", f"task {task.task_id}: cap the back-off with max_retry_delay"
        )


@pytest.mark.points(2)
def test_partA_tasks_run_in_order(parsed) -> None:
    """The tasks are wait_for_raw_files -> run_batch_job -> dbt_build -> quality_gate."""
    assert set(parsed.task_ids) == set(TASK_IDS), lab_says(
        "A", f"expected the tasks {sorted(TASK_IDS)}, got {sorted(parsed.task_ids)}"
    )
    for upstream, downstream in zip(TASK_IDS, TASK_IDS[1:], strict=False):
        ids = parsed.task_dict[upstream].downstream_task_ids
        assert ids == {downstream}, lab_says(
            "A", f"{upstream} should be followed by {downstream} only, got {sorted(ids)}"
        )


# ------------------------------------------------------------------ part B: wait for data
@pytest.mark.points(1)
def test_partB_raw_hour_prefix(mod) -> None:
    """The prefix of an hour's raw files is <prefix>/date=YYYY-MM-DD/hour=H/, in UTC."""
    cases = {
        ("flights", H12): "flights/date=2021-10-07/hour=12/",
        ("a/flights/", H12 - timedelta(hours=7)): "a/flights/date=2021-10-07/hour=5/",
        ("flights", H12 + timedelta(hours=12)): "flights/date=2021-10-08/hour=0/",
    }
    for (prefix, hour), expected in cases.items():
        got = mod.raw_hour_prefix(prefix, hour)
        assert got == expected, lab_says("B", f"raw_hour_prefix({prefix!r}, {hour}): {got!r}")


@pytest.mark.points(1)
def test_partB_sensor_does_not_hold_a_worker_forever(parsed) -> None:
    """wait_for_raw_files is a sensor that frees its worker between checks (reschedule mode or
    deferrable) and gives up after a timeout."""
    from airflow.sdk import BaseSensorOperator

    sensor = parsed.task_dict.get(WAIT)
    assert isinstance(sensor, BaseSensorOperator), lab_says(
        "B", f"{WAIT} should be a sensor, got {type(sensor).__name__}"
    )
    frees_worker = sensor.mode == "reschedule" or bool(getattr(sensor, "deferrable", False))
    assert frees_worker, lab_says(
        "B", "the sensor waits in poke mode, holding a worker slot; use reschedule or deferral"
    )
    assert 0 < sensor.timeout <= 6 * 3600 and sensor.poke_interval >= 10, lab_says(
        "B",
        f"timeout should be at most 6 h and poke_interval at least 10 s, got "
        f"{sensor.timeout} s and {sensor.poke_interval} s",
    )


@pytest.mark.points(2)
def test_partB_raw_files_ready_sees_only_its_hour(mod, world) -> None:
    """The sensor's check is true for a recorded hour, false for an hour with no raw file (or
    only a non-raw file)."""
    from harness.runtime.services import minio_client

    conf = world["conf"]
    blank = mod.raw_hour_prefix(conf["raw_prefix"], H12 - HOUR)
    minio_client().put_object(conf["raw_bucket"], f"{blank}_SUCCESS", io.BytesIO(), 0)
    for hour, expected in ((H12, True), (H14, True), (H12 - HOUR, False), (H12 + DAY1, False)):
        got = mod.raw_files_ready(data_interval_start=hour, params=dict(conf))
        assert bool(got) is expected, lab_says(
            "B", f"raw_files_ready for the hour from {hour} returned {got}, expected {expected}"
        )


@pytest.mark.points(2)
def test_partB_sensor_times_out_and_fails_the_run(mod, airflow_db, world) -> None:
    """Without the hour's raw files the sensor fails at its timeout and nothing downstream runs."""
    dag = fresh_dag(mod, sensor_timeout=3)
    started = time.monotonic()
    run = dag.test(logical_date=H13, run_conf=no_data(world))
    took = time.monotonic() - started
    tasks = run_states(run)
    assert str(run.state) == "failed" and tasks[WAIT][0] == "failed", lab_says(
        "B", f"with no raw files the run should fail at the sensor; got {run.state}, {tasks}"
    )
    assert tasks[BATCH][0] == "upstream_failed", lab_says(
        "B", f"run_batch_job must not run without data, it is {tasks[BATCH][0]}"
    )
    assert took < 120, lab_says("B", f"the sensor took {took:.0f} s to give up after a 3 s timeout")


# ------------------------------------------------------------------ part C: the batch job
@pytest.mark.points(2)
def test_partC_batch_job_args_cover_exactly_the_hour(mod) -> None:
    """Lab 01's arguments name the hour's raw files, the output and the database; an interval
    that is not one whole hour is refused."""
    params = {
        "raw_bucket": "raw-data",
        "raw_prefix": "x/flights",
        "output": "s3a://processed-data/x",
        "database": "db_x",
        "spark_master": "",
        "dbt": False,
    }
    args = mod.batch_job_args(H12, H13, params)
    assert args[0] == "s3" and len(args) >= 2, lab_says("C", f"expected `s3 PATH …`, got {args}")
    path = args[1]
    assert path.startswith("s3a://raw-data/x/flights/date=2021-10-07/hour=12/"), lab_says(
        "C", f"the job should read the hour's folder only, got {path}"
    )
    options = dict(zip(args[2::2], args[3::2], strict=False))
    assert options.get("--output") == params["output"], lab_says("C", f"--output: {args}")
    assert options.get("--database") == params["database"], lab_says("C", f"--database: {args}")
    for start, end in ((H12, H14), (H12 + timedelta(minutes=30), H13 + timedelta(minutes=30))):
        with pytest.raises(ValueError):
            mod.batch_job_args(start, end, params)
            pytest.fail(lab_says("C", f"an interval {start}-{end} should raise ValueError"))


@pytest.mark.points(3)
def test_partC_one_run_loads_exactly_its_hour(one_hour, world) -> None:
    """A run at 13:00 succeeds and loads 12:00-13:00 — and only that hour — into Parquet and
    ClickHouse, every raw state vector kept or quarantined."""
    assert one_hour["state"] == "success", lab_says(
        "C", f"the run for 12:00-13:00 failed: {one_hour['tasks']}"
    )
    found = one_hour["stores"]
    assert set(found["flights"]) == {12} and set(found["parquet"]) == {12}, lab_says(
        "C",
        f"only hour 12 should be loaded, ClickHouse has hours {sorted(found['flights'])}, Parquet "
        f"{sorted(found['parquet'])}; hint: data_interval_start, not the logical date",
    )
    sound_hour("C", found, world["states"], 12)


@pytest.mark.points(1)
def test_partC_job_ran_on_the_spark_cluster(one_hour) -> None:
    """run_batch_job spark-submits Lab 01's job to the standalone cluster and returns its report."""
    reports = one_hour["batch_results"]
    assert reports and "master spark://" in str(reports[-1]), lab_says(
        "C",
        f"run_batch_job should return the job's report, which names a spark:// master; got "
        f"{str(reports[-1])[:300] if reports else None!r}",
    )


# ------------------------------------------------------------------ part D: the dbt mart
def utc_text(text: str) -> datetime:
    """A time dbt was given on its command line, read as dbt reads it (no offset: UTC)."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@pytest.mark.points(2)
def test_partD_dbt_build_args_cover_exactly_the_hour(mod) -> None:
    """dbt builds the run's hour: --event-time-start/--event-time-end are the data interval in UTC;
    an interval that is not one whole hour is refused."""
    paris = timezone(timedelta(hours=2))
    for start, end in ((H12, H13), (H12.astimezone(paris), H13.astimezone(paris))):
        args = mod.dbt_build_args(start, end)
        assert args and args[0] == "build", lab_says("D", f"expected `build …`, got {args}")
        options = dict(zip(args[1::2], args[2::2], strict=False))
        window = (options.get("--event-time-start"), options.get("--event-time-end"))
        assert None not in window, lab_says(
            "D", f"dbt needs --event-time-start and --event-time-end, got {args}"
        )
        assert "+" not in "".join(window) and not any(w.endswith("Z") for w in window), lab_says(
            "D", f"dbt reads these times without an offset (in UTC), got {window}"
        )
        got = tuple(utc_text(w) for w in window)
        assert got == (H12, H13), lab_says(
            "D", f"the window for {start}-{end} should be 12:00-13:00 UTC, got {window}"
        )
    for start, end in ((H12, H14), (H12 + timedelta(minutes=30), H13 + timedelta(minutes=30))):
        with pytest.raises(ValueError):
            mod.dbt_build_args(start, end)
            pytest.fail(lab_says("D", f"an interval {start}-{end} should raise ValueError"))


@pytest.mark.points(2)
def test_partD_dbt_mart_holds_the_runs_hour(one_hour) -> None:
    """After the run for 12:00-13:00, dbt_build succeeded and the mart holds that hour only, with
    the figures of flights_batch."""
    assert one_hour["tasks"].get(DBT, ("?",))[0] == "success", lab_says(
        "D", f"dbt_build should succeed, got {one_hour['tasks']}"
    )
    found = one_hour["stores"]
    assert set(found["mart"]) == {12}, lab_says(
        "D",
        f"the mart {MART} should hold hour 12 only, it holds hours {sorted(found['mart'])}; "
        f"hint: the dbt window is the run's data interval",
    )
    assert found["mart"][12] == found["mart_expected"].get(12), lab_says(
        "D", f"{MART} for hour 12 differs from flights_batch: {found['mart'][12]}"
    )


@pytest.fixture(scope="module")
def dbt_rerun(mod, one_hour, world, ch) -> dict[str, Any]:
    """dbt_build for 12:00-13:00 again, after the mart got a stray row in hour 12 and a row in
    hour 11, and flights_batch got rows in hour 13 (which a build of 12:00-13:00 must not read)."""
    db, conf = world["conf"]["database"], dict(world["conf"])
    mart, flights = f"`{db}`.`{MART}`", f"`{db}`.flights_batch"
    columns = "hour_utc, origin_country, flight_phase, state_vectors, aircraft"
    ch.command(
        f"INSERT INTO {mart} ({columns}) VALUES "
        "('2021-10-07 12:00:00', 'Stray', 'cruise', 5, 1), "
        "('2021-10-07 11:00:00', 'Earlier', 'cruise', 3, 1)"
    )
    ch.command(
        f"INSERT INTO {flights} SELECT * REPLACE (fetch_time + INTERVAL 1 HOUR AS fetch_time, "
        f"13 AS hour) FROM {flights} WHERE date = '2021-10-07' AND hour = 12 LIMIT 50"
    )
    try:
        error, result = None, None
        try:
            result = mod.dbt_build(data_interval_start=H12, data_interval_end=H13, params=conf)
        except Exception as exc:  # the test reports it
            error = f"{type(exc).__name__}: {str(exc)[-1500:]}"
        after = mart_rows(ch, db)
    finally:
        for sql in (
            f"ALTER TABLE {flights} DELETE WHERE date = '2021-10-07' AND hour = 13",
            f"ALTER TABLE {mart} DELETE WHERE hour_utc != '2021-10-07 12:00:00'",
        ):
            ch.command(f"{sql} SETTINGS mutations_sync = 2")
    return {"error": error, "result": result, "mart": after}


@pytest.mark.points(2)
def test_partD_dbt_rerun_replaces_only_its_hour(dbt_rerun, one_hour) -> None:
    """Building 12:00-13:00 again replaces hour 12 of the mart (a stray row goes) and touches no
    other hour (hour 11 stays, hour 13 of flights_batch is not read)."""
    assert dbt_rerun["error"] is None, lab_says("D", f"dbt_build failed: {dbt_rerun['error']}")
    mart = dbt_rerun["mart"]
    assert mart.get(12) == one_hour["stores"]["mart"].get(12), lab_says(
        "D", f"after a re-run hour 12 of {MART} should be as before, got {mart.get(12)}"
    )
    assert 11 in mart and 13 not in mart, lab_says(
        "D",
        f"a re-run of 12:00-13:00 must leave other hours alone; the mart has hours {sorted(mart)} "
        f"(expected 11, 12); hint: --event-time-start/--event-time-end",
    )


@pytest.mark.points(1)
def test_partD_dbt_failure_fails_the_task(mod, world, ch) -> None:
    """dbt_build raises, with the end of dbt's output, when dbt fails (here: a database without
    flights_batch)."""
    conf = {**world["conf"], "database": f"{world['conf']['database']}_empty"}
    try:
        with pytest.raises(Exception) as failure:
            mod.dbt_build(data_interval_start=H12, data_interval_end=H13, params=conf)
            pytest.fail(lab_says("D", "dbt failed, yet dbt_build returned as if it succeeded"))
        assert "flights_batch" in str(failure.value), lab_says(
            "D", f"say why dbt failed (the end of its output), got {str(failure.value)[:300]!r}"
        )
    finally:
        ch.command(f"DROP DATABASE IF EXISTS `{conf['database']}`")
        shutil.rmtree(Path(tempfile.gettempdir()) / "opensky-lab08-dbt" / conf["database"], True)


# ------------------------------------------------------------------ part D: the gate
@pytest.mark.points(2)
def test_partD_check_counts_names_each_problem(mod) -> None:
    """check_counts() is empty for a sound hour and names lost rows, a ClickHouse mismatch, a dbt
    mart that disagrees with ClickHouse and an empty hour."""
    sound = {"rows_in": 100, "kept": 90, "quarantined": 10, "clickhouse": 90, "dbt": 90}
    assert mod.check_counts(dict(sound)) == [], lab_says("D", "a sound hour has no problems")
    for change in (
        {"kept": 89},
        {"quarantined": 11},
        {"clickhouse": 180, "dbt": 180},
        {"clickhouse": 89, "dbt": 89},
        {"dbt": 0},
        {"dbt": 97},
        {"rows_in": 0, "kept": 0, "quarantined": 0, "clickhouse": 0, "dbt": 0},
    ):
        problems = mod.check_counts({**sound, **change})
        assert problems and all(isinstance(p, str) and p for p in problems), lab_says(
            "D", f"counts { ({**sound, **change}) } should give a problem, got {problems!r}"
        )


@pytest.mark.points(1)
def test_partD_gate_passes_a_sound_hour(one_hour) -> None:
    """After a good run the gate succeeded on its first try."""
    assert one_hour["tasks"].get(GATE) == ("success", 1), lab_says(
        "D", f"quality_gate should pass the hour on its first try, got {one_hour['tasks']}"
    )


@pytest.mark.points(2)
def test_partD_gate_names_a_dbt_mart_that_disagrees(mod, one_hour, world, ch) -> None:
    """With the dbt mart counting more state vectors than ClickHouse holds for the hour, the gate
    fails, naming both numbers."""
    db, conf = world["conf"]["database"], dict(world["conf"])
    clickhouse = one_hour["stores"]["flights"].get(12)
    ch.command(
        f"INSERT INTO `{db}`.`{MART}` (hour_utc, origin_country, flight_phase, state_vectors, "
        "aircraft) VALUES ('2021-10-07 12:00:00', 'Stray', 'cruise', 7, 1)"
    )
    try:
        with pytest.raises(Exception) as failure:
            mod.quality_gate(data_interval_start=H12, params=conf)
            pytest.fail(lab_says("D", "the gate passed an hour whose dbt mart disagrees"))
    finally:
        ch.command(
            f"ALTER TABLE `{db}`.`{MART}` DELETE WHERE origin_country = 'Stray' "
            "SETTINGS mutations_sync = 2"
        )
    message = str(failure.value)
    assert str(clickhouse) in message and str(clickhouse + 7) in message, lab_says(
        "D",
        f"the gate's message should name the mart's count ({clickhouse + 7}) and ClickHouse's "
        f"({clickhouse}), got {message[:300]!r}",
    )


@pytest.mark.points(2)
def test_partD_gate_fails_a_broken_hour_without_retrying(mod, one_hour, world, ch) -> None:
    """With rows of the hour lost from ClickHouse the gate fails the run at once (no retries:
    retrying cannot fix data)."""
    db = world["conf"]["database"]
    ch.command(
        f"ALTER TABLE `{db}`.flights_batch DELETE WHERE date = '2021-10-07' AND hour = 12 "
        "AND cityHash64(icao24) % 7 = 0 SETTINGS mutations_sync = 2"
    )
    dag = fresh_dag(mod)
    run = dag.test(
        logical_date=H13, run_conf=world["conf"], mark_success_pattern=f"{WAIT}|{BATCH}|{DBT}"
    )
    tasks = run_states(run)
    assert str(run.state) == "failed" and tasks[GATE][0] == "failed", lab_says(
        "D", f"the gate should fail an hour whose ClickHouse rows != Parquet rows; got {tasks}"
    )
    assert tasks[GATE][1] == 1, lab_says(
        "D", f"the gate failed on try {tasks[GATE][1]}: a data problem should fail without retries"
    )


# ------------------------------------------------------------------ part E: back-fills, re-runs, retries
@pytest.mark.points(1)
def test_partE_backfill_stops_at_the_first_failed_hour(mod, airflow_db, world) -> None:
    """A back-fill over hours whose data never came stops after the first failed run."""
    dag = fresh_dag(mod, sensor_timeout=2)
    states = mod.backfill(dag, H12, H15, no_data(world))
    assert list(states.items()) == [(H12, "failed")], lab_says(
        "E", f"expected one failed run for 12:00-13:00 and no more, got {states}"
    )


@pytest.mark.points(1)
def test_partE_backfill_runs_nothing_for_an_empty_range(mod, airflow_db, world) -> None:
    """A range shorter than an hour holds no whole data interval: no run."""
    dag = fresh_dag(mod)
    states = mod.backfill(dag, H12, H12 + timedelta(minutes=59), dict(world["conf"]))
    assert states == {}, lab_says("E", f"no hour fits in 12:00-12:59, yet runs were made: {states}")


BACKFILLED = (H12, H13)


@pytest.fixture(scope="module")
def day(mod, airflow_db, world, ch, one_hour) -> dict[str, Any]:
    """backfill() of 12:00-14:00 — two hours are enough for order, re-run and retries — after
    hour 12 was broken in ClickHouse (duplicated rows); hour 12's batch task fails twice — once
    after the job has written everything, once before it starts — and succeeds on its third try.
    The jobs run in Spark's local mode (the conf's `spark_master`): the cluster's path is proven
    by the hourly run, and local mode saves an executor start per job."""
    db = world["conf"]["database"]
    ch.command(
        f"INSERT INTO `{db}`.flights_batch SELECT * FROM `{db}`.flights_batch "
        "WHERE date = '2021-10-07' AND hour = 12 LIMIT 100"
    )
    dag = fresh_dag(mod)
    tries: list = []
    instrument(dag.task_dict[BATCH], [], failures={1: "after", 2: "before"}, only=H12, tries=tries)
    conf = {**world["conf"], "spark_master": "local[2]"}
    states = mod.backfill(dag, H12, H14, conf)
    return {"states": states, "tries": tries, "stores": stores(ch, world["conf"])}


@pytest.mark.points(3)
def test_partE_backfill_of_the_day_matches_the_hourly_run(day, one_hour, world) -> None:
    """backfill() of 12:00-14:00 runs 12:00 and 13:00 in order; every hour is sound, the dbt mart
    holds both, and hour 12 has what the single hourly run produced."""
    assert list(day["states"].items()) == [(h, "success") for h in BACKFILLED], lab_says(
        "E", f"expected the hours {BACKFILLED} to succeed, in order; got {day['states']}"
    )
    for hour in (12, 13):
        sound_hour("E", day["stores"], world["states"], hour)
    found = day["stores"]
    assert found["mart"] == found["mart_expected"], lab_says(
        "E",
        f"after the back-fill the dbt mart holds hours {sorted(found['mart'])}, expected "
        f"{sorted(found['mart_expected'])} with the figures of flights_batch",
    )
    assert day["stores"]["stats"].get(12) == one_hour["stores"]["stats"].get(12), lab_says(
        "E", "the back-fill gave hour 12 other aggregates than the hourly run"
    )


@pytest.mark.points(2)
def test_partE_rerun_replaces_a_broken_hour(day, one_hour, world) -> None:
    """Re-running an hour whose rows were duplicated replaces it with the same rows as before."""
    before, after = one_hour["stores"], day["stores"]
    assert day["states"].get(H12) == "success", lab_says(
        "E", f"the re-run of 12:00-13:00 did not succeed: {day['states']}"
    )
    sound_hour("E", after, world["states"], 12)
    assert after["flights"].get(12) == before["flights"].get(12), lab_says(
        "E", f"hour 12 had {before['flights'].get(12)} rows, after the re-run {after['flights']}"
    )


@pytest.mark.points(2)
def test_partE_failed_tries_are_retried_not_duplicated(day, world) -> None:
    """A batch task that fails twice (once after writing) is retried to success, and the hour is
    loaded exactly once."""
    assert day["tries"][:3] == [1, 2, 3], lab_says(
        "E", f"run_batch_job for 12:00-13:00 should run on tries 1, 2, 3; it ran {day['tries']}"
    )
    assert day["states"].get(H12) == "success", lab_says(
        "E", f"the run for 12:00-13:00 failed despite retries: {day['states']}"
    )
    sound_hour("E", day["stores"], world["states"], 12)
