"""Helpers of Lab 08's graded suite: names, quick DAG copies, fault injection, and what the runs
left in the stores, counted independently of the DAG (the fixtures are in conftest.py).
"""

from __future__ import annotations

import gzip
import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from harness.runtime.services import minio_client

LAB = "lab08_airflow"
MODULE = "opensky_hourly"
DAG_ID = "opensky_hourly"
WAIT, BATCH, DBT, GATE = "wait_for_raw_files", "run_batch_job", "dbt_build", "quality_gate"
MART = "country_phase_hourly"  # the dbt project's model (dbt/models/)
TASK_IDS = (WAIT, BATCH, DBT, GATE)
DAY = datetime(2021, 10, 7, tzinfo=UTC)
H12, H13, H14, H15 = (DAY + timedelta(hours=h) for h in (12, 13, 14, 15))
RECORDED_HOURS = (H12, H13, H14)
HOUR = timedelta(hours=1)


def lab_says(part: str, text: str) -> str:
    return f"Lab 08, part {part}: {text}"


def fresh_dag(mod, sensor_timeout: float = 3.0):
    """A new DAG object from build_dag(), made quick to test: the sensor gives up after
    `sensor_timeout` seconds and polls every second, retries wait a second or two."""
    dag = mod.build_dag()
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=1)
        task.max_retry_delay = timedelta(seconds=2)
    sensor = dag.task_dict.get(WAIT)
    if sensor is not None and hasattr(sensor, "poke_interval"):
        sensor.timeout = sensor_timeout
        sensor.poke_interval = 1
    return dag


def accepted_kwargs(function: Callable, context: dict[str, Any]) -> dict[str, Any]:
    """The part of an Airflow context a callable asks for (all of it if it takes **kwargs)."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return context
    return {p.name: context[p.name] for p in parameters if p.name in context}


def instrument(
    task,
    results: list,
    failures: dict[int, str] | None = None,
    only: datetime | None = None,
    tries: list | None = None,
) -> None:
    """Record what `task`'s callable returns (and, in `tries`, each try number) and, on the tries
    named in `failures`, make it fail: "before" the work, or "after" the work is done (a worker
    that dies after writing). With `only`, failures and tries concern that data interval alone."""
    original, failures = task.python_callable, failures or {}

    def wrapper(*args: Any, **context: Any) -> Any:
        attempt = context["ti"].try_number
        ours = only is None or context["data_interval_start"] == only
        if ours and tries is not None:
            tries.append(attempt)
        if ours and failures.get(attempt) == "before":
            raise RuntimeError(f"injected failure before the work (try {attempt})")
        result = original(*args, **accepted_kwargs(original, context))
        results.append(result)
        if ours and failures.get(attempt) == "after":
            raise RuntimeError(f"injected failure after the work was done (try {attempt})")
        return result

    task.python_callable = wrapper


def no_data(world: dict[str, Any]) -> dict[str, Any]:
    """The module's conf, but with a raw prefix where no file will ever be."""
    return {**world["conf"], "raw_prefix": f"{world['scratch']}/no-data/flights"}


def run_states(run) -> dict[str, tuple[str, int]]:
    """{task id: (state, try number)} of a finished dag.test() run."""
    return {ti.task_id: (str(ti.state), ti.try_number) for ti in run.get_task_instances()}


def stores(ch, conf: dict[str, Any]) -> dict[str, Any]:
    """What the runs left, counted independently of the DAG: ClickHouse rows and distinct
    (icao24, time_position) per hour, aggregate rows per hour, Parquet and quarantine rows per hour,
    the dbt mart's rows per hour and what they should be (from flights_batch)."""
    db = conf["database"]
    exists = ch.query(f"EXISTS TABLE `{db}`.flights_batch").result_rows[0][0]
    flights, distinct, stats = {}, {}, {}
    if exists:
        for hour, n, unique in ch.query(
            f"SELECT hour, count(), uniqExact(icao24, time_position) FROM `{db}`.flights_batch "
            "WHERE date = '2021-10-07' GROUP BY hour"
        ).result_rows:
            flights[int(hour)], distinct[int(hour)] = int(n), int(unique)
        for row in ch.query(
            f"SELECT hour, origin_country, aircraft, state_vectors, avg_velocity "
            f"FROM `{db}`.flight_statistics_batch ORDER BY hour, origin_country"
        ).result_rows:
            stats.setdefault(int(row[0]), []).append(tuple(row[1:]))
    bucket, _, prefix = conf["output"].split("://", 1)[1].partition("/")
    return {
        "mart": mart_rows(ch, db),
        "mart_expected": phase_counts(ch, db) if exists else {},
        "flights": flights,
        "distinct": distinct,
        "stats": stats,
        "parquet": parquet_rows(bucket, f"{prefix}/flights"),
        "quarantined": quarantined_rows(bucket, f"{prefix}/flights_rejected"),
    }


def _hour_of(object_name: str) -> int | None:
    for part in object_name.split("/"):
        if part.startswith("hour=") and part[5:].isdigit():
            return int(part[5:])
    return None


def parquet_rows(bucket: str, prefix: str) -> dict[int, int]:
    """Rows of the Parquet files under `prefix`, per `hour=` folder (read with pyarrow)."""
    import pyarrow.parquet as pq

    from harness.runtime.services import s3_filesystem

    fs, counts = s3_filesystem(), {}
    for obj in minio_client().list_objects(bucket, prefix=f"{prefix}/", recursive=True):
        hour = _hour_of(obj.object_name)
        if hour is not None and obj.object_name.endswith(".parquet"):
            rows = pq.ParquetFile(fs.open_input_file(f"{bucket}/{obj.object_name}")).metadata
            counts[hour] = counts.get(hour, 0) + rows.num_rows
    return counts


def quarantined_rows(bucket: str, prefix: str) -> dict[int, int]:
    """Lines of the quarantine's JSON files under `prefix`, per `hour=` folder."""
    client, counts = minio_client(), {}
    for obj in client.list_objects(bucket, prefix=f"{prefix}/", recursive=True):
        hour = _hour_of(obj.object_name)
        if hour is None or "/_" in obj.object_name or obj.object_name.endswith("/"):
            continue
        response = client.get_object(bucket, obj.object_name)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        if obj.object_name.endswith(".gz"):
            data = gzip.decompress(data)
        counts[hour] = counts.get(hour, 0) + sum(1 for line in data.splitlines() if line.strip())
    return counts


def _per_hour(rows) -> dict[int, dict[tuple[str, str], tuple[int, int]]]:
    found: dict[int, dict[tuple[str, str], tuple[int, int]]] = {}
    for hour, country, phase, state_vectors, aircraft in rows:
        found.setdefault(int(hour), {})[(country, phase)] = (int(state_vectors), int(aircraft))
    return found


def mart_rows(ch, db: str) -> dict[int, dict[tuple[str, str], tuple[int, int]]]:
    """The dbt mart per hour: {hour: {(origin_country, flight_phase): (state_vectors, aircraft)}}
    ({} while dbt has not built it)."""
    if not ch.query(f"EXISTS TABLE `{db}`.`{MART}`").result_rows[0][0]:
        return {}
    return _per_hour(
        ch.query(
            f"SELECT toHour(hour_utc), origin_country, flight_phase, sum(state_vectors), "
            f"sum(aircraft) FROM `{db}`.`{MART}` GROUP BY 1, 2, 3"
        ).result_rows
    )


def phase_counts(ch, db: str) -> dict[int, dict[tuple[str, str], tuple[int, int]]]:
    """What the mart should hold, counted from flights_batch itself, in the same shape."""
    return _per_hour(
        ch.query(
            f"SELECT hour, origin_country, flight_phase, count(), uniqExact(icao24) "
            f"FROM `{db}`.flights_batch WHERE date = '2021-10-07' GROUP BY 1, 2, 3"
        ).result_rows
    )
