"""Lab 08 — Orchestration with Apache Airflow 3: Lab 01's batch job every hour, with retries and back-fills.

This file is an Airflow DAG file: Airflow imports it to find the DAG `opensky_hourly`. One DAG run
is responsible for one *data interval* — one hour of raw snapshots — and runs four tasks:

    wait_for_raw_files  ->  run_batch_job  ->  dbt_build  ->  quality_gate

    A  default_args(), build_dag()   the schedule, catch-up, one run at a time, retries, timeouts
    B  raw_hour_prefix(), raw_files_ready()   wait until the hour's raw files are in MinIO
    C  batch_job_args(), run_batch_job()      Lab 01's job on the Spark cluster for that hour only
    D  dbt_build_args(), dbt_build()          the dbt mart (dbt/) rebuilt for that hour only
       check_counts(), quality_gate()         rows in = kept + quarantined; ClickHouse = Parquet = dbt
    E  backfill()                             run a range of hours in-process, oldest first

Nothing here touches a service while Airflow parses the file: every connection is made inside a
task, when it runs. The names the tasks read and write (bucket, prefixes, ClickHouse database) are
the DAG's `params`, whose defaults are the platform's names; a run's `conf` can override them
(the graded tests do, to work on throw-away names).

    airflow dags test opensky_hourly 2021-10-07T13:00:00+00:00   # the data interval 12:00-13:00
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.python import PythonOperator
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.sdk import DAG, CronTriggerTimetable
from airflow.sdk.exceptions import AirflowFailException

log = logging.getLogger(__name__)

DAG_ID = "opensky_hourly"
WAIT_TASK = "wait_for_raw_files"
BATCH_TASK = "run_batch_job"
DBT_TASK = "dbt_build"
GATE_TASK = "quality_gate"
TASK_IDS = (WAIT_TASK, BATCH_TASK, DBT_TASK, GATE_TASK)
HOUR = timedelta(hours=1)

# The shipped recording (data/DATA.md) covers 2021-10-07 12:00-15:00 UTC: it stands in for the
# live feed, so the DAG's life is those three hours. A live deployment would set END to None.
START = datetime(2021, 10, 7, 12, tzinfo=UTC)
END = datetime(2021, 10, 7, 15, tzinfo=UTC)

# Lab 01's job is the one next to this lab's folder (a student's copy runs the student's job),
# unless OPENSKY_LAB01_JOB names another file.
LAB_ROOT = Path(__file__).resolve().parents[1]
# The dbt project next to this file: one microbatch model over Lab 01's flights_batch.
DBT_PROJECT = Path(__file__).resolve().parent / "dbt"
DBT_PROFILE = "opensky_hourly"
DBT_MODEL = "country_phase_hourly"

# What a run works on; a run's conf overrides any of them (`dag.test(run_conf=...)`).
PARAMS: dict[str, Any] = {
    "raw_bucket": "raw-data",  # raw snapshots: s3a://raw-data/flights/date=…/hour=…/
    "raw_prefix": "flights",
    "output": "s3a://processed-data",  # Lab 01's flights/, flight_statistics/, flights_rejected/
    "database": "opensky",  # ClickHouse database of flights_batch and flight_statistics_batch
    "spark_master": "",  # empty: the standalone cluster (SPARK_MASTER_URL in infra/.env)
}
# Lab 01's names for what it writes under `output` and into the database.
FLIGHTS_DIR, REJECTED_DIR, FLIGHTS_TABLE = "flights", "flights_rejected", "flights_batch"
RAW_SUFFIXES = (".json", ".json.gz")
JOB_TIMEOUT_S = 30 * 60


def lab01_job() -> Path:
    """The Lab 01 job file the DAG submits."""
    default = LAB_ROOT / "lab01_batch" / "batch_processor.py"
    return Path(os.environ.get("OPENSKY_LAB01_JOB") or default)


# ------------------------------------------------------------------ part A: the DAG
def default_args() -> dict[str, Any]:
    """What every task of the DAG gets: an owner, retries with exponential back-off (capped) and
    an execution timeout."""
    # BEGIN SOLUTION (part A)
    return {
        "owner": "opensky",
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,  # 1, 2, 4 minutes (with jitter) …
        "max_retry_delay": timedelta(minutes=15),  # … never longer than this
        "execution_timeout": timedelta(minutes=45),  # a hung task fails, the hour goes on
    }
    # END SOLUTION


def build_dag() -> DAG:
    """The DAG `opensky_hourly`: a run after every hour, owning the hour before it as its data
    interval, for the hours from START to END (catch-up on), one run at a time, default_args(),
    tags and docs, PARAMS; tasks TASK_IDS in that order (the sensor calls raw_files_ready, then
    run_batch_job, dbt_build and quality_gate run as Python tasks)."""
    # BEGIN SOLUTION (part A)
    with DAG(
        dag_id=DAG_ID,
        description="Lab 01's batch job for each hour of raw OpenSky snapshots",
        # A run fires on the hour and owns the hour before it: the run at 13:00 has the data
        # interval 12:00-13:00 (without `interval` its data interval would be empty).
        schedule=CronTriggerTimetable("0 * * * *", timezone="UTC", interval=HOUR),
        start_date=START + HOUR,  # the first run fires when the first hour is complete
        end_date=END,  # the last one at 15:00, for 14:00-15:00
        catchup=True,  # create a run for every hour since START that has none yet
        max_active_runs=1,  # hours one after another: a back-fill does not flood the cluster
        default_args=default_args(),
        params=dict(PARAMS),
        tags=["opensky", "lab08", "spark"],
        doc_md=__doc__,
    ) as dag:
        wait = PythonSensor(
            task_id=WAIT_TASK,
            python_callable=raw_files_ready,
            mode="reschedule",  # frees the worker slot between pokes
            poke_interval=60,
            timeout=2 * 60 * 60,  # two hours without data: fail, loudly
            retries=0,  # waiting longer is what timeout is for
            doc_md="Waits for the hour's raw files in MinIO.",
        )
        batch = PythonOperator(task_id=BATCH_TASK, python_callable=run_batch_job)
        dbt = PythonOperator(task_id=DBT_TASK, python_callable=dbt_build)
        gate = PythonOperator(task_id=GATE_TASK, python_callable=quality_gate)
        wait >> batch >> dbt >> gate
    return dag
    # END SOLUTION


# ------------------------------------------------------------------ part B: wait for data
def raw_hour_prefix(prefix: str, hour_start: datetime) -> str:
    """The object-name prefix of one hour's raw files: `<prefix>/date=YYYY-MM-DD/hour=H/` (UTC,
    H without a leading zero, like Spark's partition folders)."""
    # BEGIN SOLUTION (part B)
    hour = hour_start.astimezone(UTC)
    return f"{prefix.strip('/')}/date={hour.date().isoformat()}/hour={hour.hour}/"
    # END SOLUTION


def raw_files_ready(data_interval_start: datetime, params: dict[str, Any]) -> bool:
    """The sensor's check: True when at least one raw file (.json or .json.gz) of the run's hour is
    in MinIO under `params["raw_bucket"]`/raw_hour_prefix(...). Logs where it looked."""
    # BEGIN SOLUTION (part B)
    from harness.runtime.services import minio_client

    prefix = raw_hour_prefix(params["raw_prefix"], data_interval_start)
    objects = minio_client().list_objects(params["raw_bucket"], prefix=prefix, recursive=True)
    found = [o.object_name for o in objects if o.object_name.endswith(RAW_SUFFIXES)]
    log.info("s3://%s/%s: %d raw file(s)", params["raw_bucket"], prefix, len(found))
    return bool(found)
    # END SOLUTION


# ------------------------------------------------------------------ part C: the batch job
def batch_job_args(
    data_interval_start: datetime, data_interval_end: datetime, params: dict[str, Any]
) -> list[str]:
    """Lab 01's command-line arguments for exactly the run's hour: `s3 <the hour's raw files>
    --output … --database …`. A data interval that is not one whole hour is a ValueError."""
    # BEGIN SOLUTION (part C)
    start = data_interval_start.astimezone(UTC)
    if data_interval_end - data_interval_start != HOUR or start.minute or start.second:
        raise ValueError(
            f"a run must cover one whole hour, got {data_interval_start} - {data_interval_end}"
        )
    prefix = raw_hour_prefix(params["raw_prefix"], start)
    return [
        "s3",
        f"s3a://{params['raw_bucket']}/{prefix}*",
        "--output",
        params["output"],
        "--database",
        params["database"],
    ]
    # END SOLUTION


def run_batch_job(
    data_interval_start: datetime, data_interval_end: datetime, params: dict[str, Any]
) -> str:
    """spark-submit Lab 01's job (lab01_job()) for the run's hour to the Spark cluster
    (`params["spark_master"]`, empty: the standalone cluster); returns the report the job
    printed. A job that fails raises with the end of its output."""
    # BEGIN SOLUTION (part C)
    from harness.runtime.spark import spark_submit_command

    job = lab01_job()
    if not job.is_file():
        raise FileNotFoundError(f"Lab 01's job is missing: {job}")
    args = batch_job_args(data_interval_start, data_interval_end, params)
    argv, env = spark_submit_command(job, args, master=params.get("spark_master") or None)
    log.info("running %s", " ".join(argv[:3] + ["…", str(job), *args]))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-30:])
        raise RuntimeError(f"Lab 01's job failed (exit {done.returncode}):\n{tail}")
    log.info("%s", done.stdout)
    return done.stdout.strip()
    # END SOLUTION


# ------------------------------------------------------------------ part D: the dbt mart
def dbt_command(args: list[str], database: str) -> tuple[list[str], dict[str, str]]:
    """Given: the command line `dbt <args>` for this lab's dbt project (DBT_PROJECT) on ClickHouse
    database `database`, and its environment. The profile is made from harness.runtime.config in
    a work folder kept per database, so that dbt re-parses only what changed since the last run."""
    from harness.runtime.config import endpoints

    ep = endpoints()
    work = Path(tempfile.gettempdir()) / "opensky-lab08-dbt" / database
    work.mkdir(parents=True, exist_ok=True)
    (work / "profiles.yml").write_text(
        f"{DBT_PROFILE}:\n  target: hourly\n  outputs:\n    hourly:\n      type: clickhouse\n"
        f"      driver: http\n      host: {ep.clickhouse_host}\n      port: {ep.clickhouse_port}\n"
        f"      user: {ep.clickhouse_user}\n"
        "      password: \"{{ env_var('DBT_CLICKHOUSE_PASSWORD') }}\"\n"
        f"      schema: {database}\n      threads: 1\n"
    )
    dbt = Path(sys.executable).with_name("dbt")
    argv = [str(dbt), "--no-use-colors", *args, "--project-dir", str(DBT_PROJECT)]
    argv += ["--profiles-dir", str(work), "--target-path", str(work / "target")]
    argv += ["--log-path", str(work / "logs")]
    env = {
        **os.environ,
        "DBT_CLICKHOUSE_PASSWORD": ep.clickhouse_password,
        "DO_NOT_TRACK": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_VERSION_CHECK": "false",
    }
    return argv, env


def dbt_build_args(data_interval_start: datetime, data_interval_end: datetime) -> list[str]:
    """`dbt build`'s arguments for exactly the run's hour: the microbatch model's window is
    `--event-time-start` / `--event-time-end`, each as `YYYY-MM-DDTHH:MM:SS` in UTC (dbt reads the
    text without an offset). A data interval that is not one whole hour is a ValueError."""
    # BEGIN SOLUTION (part D)
    start, end = data_interval_start.astimezone(UTC), data_interval_end.astimezone(UTC)
    if end - start != HOUR or start.minute or start.second or start.microsecond:
        raise ValueError(
            f"a run must cover one whole hour, got {data_interval_start} - {data_interval_end}"
        )
    return [
        "build",
        "--event-time-start",
        f"{start:%Y-%m-%dT%H:%M:%S}",
        "--event-time-end",
        f"{end:%Y-%m-%dT%H:%M:%S}",
    ]
    # END SOLUTION


def dbt_build(
    data_interval_start: datetime, data_interval_end: datetime, params: dict[str, Any]
) -> str:
    """Build the dbt project for the run's hour (dbt_build_args) in ClickHouse database
    `params["database"]`, with dbt_command(); returns dbt's last line of output. A build that
    fails raises with the end of dbt's output."""
    # BEGIN SOLUTION (part D)
    args = dbt_build_args(data_interval_start, data_interval_end)
    argv, env = dbt_command(args, params["database"])
    log.info("running dbt %s", " ".join(args))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    if done.returncode != 0:
        tail = "\n".join((done.stdout or done.stderr).splitlines()[-30:])
        raise RuntimeError(f"dbt build failed (exit {done.returncode}):\n{tail}")
    log.info("%s", done.stdout)
    return done.stdout.strip().splitlines()[-1]
    # END SOLUTION


# ------------------------------------------------------------------ part D: the quality gate
def check_counts(counts: dict[str, int]) -> list[str]:
    """The problems with one hour's counts — `rows_in` (state vectors in the raw files), `kept`
    (Parquet rows), `quarantined` (rejected rows), `clickhouse` (rows in flights_batch) and `dbt`
    (state vectors the dbt mart counts) — each as a sentence naming the numbers; an empty list
    when the hour is sound (rows_in = kept + quarantined, clickhouse = kept, dbt = clickhouse,
    and some rows in)."""
    # BEGIN SOLUTION (part D)
    problems = []
    rows_in, kept, quarantined = counts["rows_in"], counts["kept"], counts["quarantined"]
    if rows_in == 0:
        problems.append("the raw files hold no state vectors")
    if rows_in != kept + quarantined:
        problems.append(
            f"rows in ({rows_in}) != kept ({kept}) + quarantined ({quarantined}): "
            f"{rows_in - kept - quarantined} row(s) unaccounted for"
        )
    if counts["clickhouse"] != kept:
        problems.append(
            f"ClickHouse has {counts['clickhouse']} row(s) for the hour, Parquet has {kept}"
        )
    if counts["dbt"] != counts["clickhouse"]:
        problems.append(
            f"dbt's {DBT_MODEL} counts {counts['dbt']} state vector(s) for the hour, "
            f"ClickHouse has {counts['clickhouse']}"
        )
    return problems
    # END SOLUTION


def hour_counts(client: Any, data_interval_start: datetime, params: dict[str, Any]) -> dict:
    """Given: the counts check_counts() judges, for one hour, all counted by ClickHouse (raw JSON,
    Parquet and quarantine files are read where they lie, with the `s3()` table function; the dbt
    mart counts 0 while it does not exist)."""
    from harness.runtime.config import endpoints

    ep = endpoints()
    hour = data_interval_start.astimezone(UTC)
    partition = f"date={hour.date().isoformat()}/hour={hour.hour}"
    output = params["output"].split("://", 1)[-1].strip("/")
    raw = f"{params['raw_bucket']}/{raw_hour_prefix(params['raw_prefix'], hour)}*"

    def s3(path: str, fmt: str) -> str:
        url = f"{ep.clickhouse_s3_endpoint}/{path}"
        return f"s3('{url}', '{ep.minio_access_key}', '{ep.minio_secret_key}', '{fmt}')"

    def one(sql: str) -> int:
        return int(client.query(sql).result_rows[0][0] or 0)

    database = params["database"]
    mart = f"`{database}`.`{DBT_MODEL}`"
    has_mart = one(f"EXISTS TABLE {mart}")

    return {
        "rows_in": one(f"SELECT sum(JSONLength(line, 'states')) FROM {s3(raw, 'LineAsString')}"),
        "kept": one(
            f"SELECT count() FROM {s3(f'{output}/{FLIGHTS_DIR}/{partition}/*', 'Parquet')}"
        ),
        "quarantined": one(
            f"SELECT count() FROM {s3(f'{output}/{REJECTED_DIR}/{partition}/*', 'LineAsString')}"
        ),
        "clickhouse": one(
            f"SELECT count() FROM `{database}`.`{FLIGHTS_TABLE}` "
            f"WHERE date = '{hour.date().isoformat()}' AND hour = {hour.hour}"
        ),
        "dbt": one(
            f"SELECT sum(state_vectors) FROM {mart} "
            f"WHERE hour_utc = toDateTime('{hour:%Y-%m-%d %H:%M:%S}', 'UTC')"
        )
        if has_mart
        else 0,
    }


def quality_gate(data_interval_start: datetime, params: dict[str, Any]) -> dict[str, int]:
    """Count the run's hour (hour_counts) and fail the run — without retrying: a retry cannot
    fix data — when check_counts() finds a problem, naming each one. Returns the counts."""
    # BEGIN SOLUTION (part D)
    from harness.runtime.services import clickhouse_client

    client = clickhouse_client()
    try:
        counts = hour_counts(client, data_interval_start, params)
    finally:
        client.close()
    log.info("hour %s: %s", data_interval_start, counts)
    problems = check_counts(counts)
    if problems:
        raise AirflowFailException(
            f"quality gate for the hour from {data_interval_start}: " + "; ".join(problems)
        )
    return counts
    # END SOLUTION


# ------------------------------------------------------------------ part E: back-fills
def backfill(
    dag: DAG, start: datetime, end: datetime, conf: dict[str, Any] | None = None
) -> dict[datetime, str]:
    """Run `dag` in-process (`dag.test`) once for every hour whose data interval lies in
    [start, end), oldest first and one at a time, stopping after the first run that does not
    succeed. Returns {data interval start: run state} for the runs made."""
    # BEGIN SOLUTION (part E)
    states: dict[datetime, str] = {}
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if hour < start:
        hour += HOUR
    while hour + HOUR <= end:
        # A run's logical date is *after* its hour: a manual run at 13:00 owns 12:00-13:00.
        run = dag.test(logical_date=hour + HOUR, run_conf=conf)
        if run.data_interval_start != hour:
            raise RuntimeError(
                f"the run at {hour + HOUR} owns {run.data_interval_start}, not {hour}"
            )
        states[hour] = str(run.state)
        if states[hour] != "success":
            break
        hour += HOUR
    return states
    # END SOLUTION


dag = build_dag()
