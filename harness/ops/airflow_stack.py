"""Apache Airflow 3 for Lab 08: its settings, a DAGs folder, the raw hours in MinIO, `make airflow`.

Airflow reads its configuration from `AIRFLOW__SECTION__KEY` environment variables when it is
imported, so `airflow_env()` is applied before `import airflow` (the graded suite does it in its
conftest; `make airflow` before it starts `airflow standalone`). The metadata database is SQLite
in an ignored folder (`.stack/airflow`, or a temporary one per test session), the example DAGs are
off, everything binds 127.0.0.1 and nothing reports usage anywhere.

    python -m harness.ops.airflow_stack standalone [--dags labs|solutions] [--port N] [--home DIR]
    python -m harness.ops.airflow_stack upload [--prefix flights]   # the recording's hours to MinIO
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from harness.runtime.config import ROOT, STACK_DIR, setting
from harness.runtime.data import RECORDING, load_snapshots

LAB = "lab08_airflow"
DAG_FILE = "opensky_hourly.py"
DAG_ID = "opensky_hourly"
AIRFLOW_HOME = STACK_DIR / "airflow"
RAW_BUCKET = "raw-data"
RAW_PREFIX = "flights"
HEALTH_PATH = "/api/v2/monitor/health"


def airflow_port() -> int:
    """The port of Airflow's UI and API (`AIRFLOW_PORT` in infra/.env)."""
    return int(setting("AIRFLOW_PORT", "8080"))


def airflow_env(
    home: Path, dags_folder: Path, port: int | None = None, paused: bool = True
) -> dict[str, str]:
    """The environment variables that configure Airflow for the labs (apply before importing it)."""
    port = port or airflow_port()
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(paused),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # One local user, the admin: no login page on a UI bound to 127.0.0.1.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__USAGE_DATA_COLLECTION__ENABLED": "False",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # PySpark's spark-submit finds Python through PATH: make it this venv's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }


def dags_folder(home: Path, dag_file: Path) -> Path:
    """A DAGs folder under `home` holding only a link to `dag_file` (so Airflow parses that file
    alone, not a lab's tests); the DAG still finds Lab 01's job next to its real location."""
    folder = home / "dags"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / dag_file.name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(dag_file.resolve())
    return folder


def hour_files(path: Path = RECORDING) -> dict[datetime, list[dict]]:
    """The recording's snapshots grouped by the UTC hour of their `time`."""
    hours: dict[datetime, list[dict]] = defaultdict(list)
    for snapshot in load_snapshots(path):
        moment = datetime.fromtimestamp(snapshot["time"], UTC)
        hours[moment.replace(minute=0, second=0, microsecond=0)].append(snapshot)
    return dict(sorted(hours.items()))


def upload_hours(
    bucket: str = RAW_BUCKET,
    prefix: str = RAW_PREFIX,
    hours: list[datetime] | None = None,
    path: Path = RECORDING,
) -> dict[datetime, int]:
    """Put the recording's snapshots into MinIO as one gzipped JSON Lines file per hour, under
    `<prefix>/date=YYYY-MM-DD/hour=H/`; returns the state vectors of each hour written."""
    from io import BytesIO

    from harness.runtime.services import minio_client

    client = minio_client()
    written = {}
    for hour, snapshots in hour_files(path).items():
        if hours is not None and hour not in hours:
            continue
        body = gzip.compress(
            "".join(json.dumps(s, separators=(",", ":")) + "\n" for s in snapshots).encode()
        )
        name = (
            f"{prefix.strip('/')}/date={hour.date().isoformat()}/hour={hour.hour}/"
            f"states_{hour:%Y%m%d_%H}.json.gz"
        )
        client.put_object(bucket, name, BytesIO(body), len(body))
        written[hour] = sum(len(s["states"] or []) for s in snapshots)
    return written


def init_db() -> None:
    """Create or upgrade the metadata database of the Airflow configured in this process."""
    from airflow.utils import db

    db.upgradedb()


def standalone(
    target: str = "labs", port: int | None = None, home: Path = AIRFLOW_HOME, paused: bool = False
) -> int:
    """Upload the recording's hours, then replace this process with `airflow standalone` serving
    the DAG of `target` (labs/ or solutions/) on 127.0.0.1:`port`."""
    dag_file = ROOT / target / LAB / DAG_FILE
    if not dag_file.is_file():
        print(f"no DAG file at {dag_file}", file=sys.stderr)
        return 2
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **airflow_env(home, dags_folder(home, dag_file), port, paused)}
    if not paused:
        hours = upload_hours()
        print(f"[airflow] raw hours in s3://{RAW_BUCKET}/{RAW_PREFIX}/: {len(hours)}")
    print(
        f"[airflow] DAG {dag_file.relative_to(ROOT)}; UI http://127.0.0.1:{env['AIRFLOW__API__PORT']}"
        f" (home {home}); Ctrl-C stops it",
        flush=True,
    )
    airflow = Path(sys.executable).with_name("airflow")
    os.execve(str(airflow), [str(airflow), "standalone"], env)
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.ops.airflow_stack", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("standalone", help="airflow standalone with Lab 08's DAG")
    run.add_argument("--dags", choices=["labs", "solutions"], default="labs")
    run.add_argument("--port", type=int, default=None, help="default: AIRFLOW_PORT")
    run.add_argument("--home", type=Path, default=AIRFLOW_HOME)
    run.add_argument("--paused", action="store_true", help="keep the DAG paused and upload nothing")
    upload = commands.add_parser("upload", help="the recording's hours to MinIO")
    upload.add_argument("--bucket", default=RAW_BUCKET)
    upload.add_argument("--prefix", default=RAW_PREFIX)
    args = parser.parse_args(argv)
    if args.command == "standalone":
        return standalone(args.dags, args.port, args.home.resolve(), args.paused)
    for hour, states in upload_hours(args.bucket, args.prefix).items():
        print(f"s3://{args.bucket}/{args.prefix}/date={hour.date()}/hour={hour.hour}/: {states}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
