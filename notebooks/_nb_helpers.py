"""Shared helpers of the self-study notebooks: the repository on `sys.path`, clean-up, waiting.

Every notebook starts with `import _nb_helpers`. Importing it makes `harness` importable (the
notebooks live in `notebooks/`, one level below the repository root), sets the figure style, and
sends the log output of native libraries (Spark's JVM, librdkafka) to
`.stack/logs/notebooks-native-stderr.log` instead of random cells.
The clean-up functions remove what a notebook created — also what an interrupted earlier run left —
so a notebook can be run again from the top at any time.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

from harness.runtime.config import STACK_DIR  # noqa: E402

# Small, readable inline PNGs (they are stored in the notebooks).
matplotlib.rcParams.update({"figure.dpi": 80, "figure.figsize": (9, 4.5), "axes.grid": True})


def _native_stderr_to_log() -> Path | None:
    """Send what native code writes to file descriptor 2 to a log file; return its path.

    The JVM behind Spark and librdkafka behind confluent-kafka log straight to the process's
    stderr. In a notebook those lines would land in whichever cell happens to be running, at
    random times. Python's own warnings and tracebacks are not affected: they go through
    `sys.stderr`, which the kernel sends to the cell. Only done inside a Jupyter kernel.
    """
    if "ipykernel" not in sys.modules:
        return None
    log = STACK_DIR / "logs" / "notebooks-native-stderr.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return None
    os.dup2(fd, 2)
    os.close(fd)
    return log


NATIVE_LOG = _native_stderr_to_log()

CLEANUP_WAIT_S = 30.0


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    """Call `check()` until it returns something truthy (returned); TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


# ------------------------------------------------------------------ Kafka
def delete_topics(topics: Iterable[str]) -> list[str]:
    """Delete the topics that exist among `topics` and wait until the broker forgot them."""
    from harness.runtime.services import kafka_admin

    admin = kafka_admin()
    wanted = set(topics)
    existing = sorted(wanted & set(admin.list_topics(timeout=10).topics))
    if existing:
        for future in admin.delete_topics(existing, operation_timeout=15).values():
            try:
                future.result(timeout=30)
            except Exception as exc:  # already being deleted: waiting below is enough
                if "UNKNOWN_TOPIC" not in str(exc):
                    raise
        wait_until(
            lambda: not wanted & set(admin.list_topics(timeout=10).topics),
            CLEANUP_WAIT_S,
            f"the deletion of {', '.join(existing)}",
        )
    return existing


def wait_for_topic(topic: str, partitions: int, timeout: float = 30.0) -> Any:
    """The metadata of `topic` once all its `partitions` have a leader (new topics need a moment)."""
    from harness.runtime.services import kafka_admin

    admin = kafka_admin()

    def ready() -> Any:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None or len(meta.partitions) != partitions:
            return None
        if any(p.leader < 0 or p.error is not None for p in meta.partitions.values()):
            return None
        return meta

    return wait_until(ready, timeout, f"topic {topic} with {partitions} partitions")


def delete_topics_with_prefix(prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix`."""
    from harness.runtime.services import kafka_admin

    names = [t for t in kafka_admin().list_topics(timeout=10).topics if t.startswith(prefix)]
    return delete_topics(names)


def delete_consumer_groups(groups: Iterable[str], timeout: float = 90.0) -> list[str]:
    """Delete the consumer groups that exist among `groups`.

    A group can only be deleted once it has no members. A consumer of an interrupted run that was
    never closed stays a member until its session times out (45 s by default), so this waits.
    """
    from confluent_kafka import KafkaError, KafkaException

    from harness.runtime.services import kafka_admin

    admin = kafka_admin()
    known = {g.group_id for g in admin.list_consumer_groups().result(timeout=15).valid}
    existing = sorted(set(groups) & known)
    deadline = time.monotonic() + timeout
    for group in existing:
        while True:
            try:
                admin.delete_consumer_groups([group], request_timeout=15)[group].result(timeout=30)
                break
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == KafkaError.GROUP_ID_NOT_FOUND:
                    break
                if code != KafkaError.NON_EMPTY_GROUP or time.monotonic() > deadline:
                    raise
                time.sleep(2)
    return existing


# ------------------------------------------------------------------ S3 / MinIO
def remove_bucket(client: Any, bucket: str) -> int:
    """Remove every object (and object version) of `bucket`, then the bucket; returns objects removed."""
    from minio.deleteobjects import DeleteObject

    if not client.bucket_exists(bucket):
        return 0
    doomed = [
        DeleteObject(o.object_name, o.version_id)
        for o in client.list_objects(bucket, recursive=True, include_version=True)
    ]
    errors = list(client.remove_objects(bucket, doomed))
    if errors:
        raise RuntimeError(f"could not remove {len(errors)} objects of {bucket}: {errors[:3]}")
    client.remove_bucket(bucket)
    return len(doomed)


# ------------------------------------------------------------------ Debezium / PostgreSQL
def remove_connector(connect_url: str, name: str) -> bool:
    """Stop a Kafka Connect connector, reset its stored source offsets, delete it.

    Connect keeps a source connector's offsets (for Debezium: the WAL position) under its name,
    even after the connector is deleted. A new connector of the same name would resume from
    there — from a replication slot that no longer exists. Resetting the offsets (Kafka 3.6+:
    `DELETE /connectors/<name>/offsets`, allowed on a stopped connector) prevents that.
    """
    import requests

    url = f"{connect_url.rstrip('/')}/connectors/{name}"
    if requests.get(url, timeout=10).status_code == 404:
        return False
    requests.put(f"{url}/stop", timeout=30).raise_for_status()
    wait_until(
        lambda: requests.get(f"{url}/status", timeout=10).json()["connector"]["state"] == "STOPPED",
        CLEANUP_WAIT_S,
        f"connector {name} to stop",
    )
    requests.delete(f"{url}/offsets", timeout=30).raise_for_status()
    requests.delete(url, timeout=30).raise_for_status()
    wait_until(
        lambda: requests.get(url, timeout=10).status_code == 404,
        CLEANUP_WAIT_S,
        f"connector {name} to be removed",
    )
    return True


def drop_replication_slot(pg: Any, slot: str) -> bool:
    """Drop a logical replication slot once no connector holds it (waits for the holder to go)."""

    def released() -> bool:
        row = pg.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
        return row is None or row[0] is None

    try:
        wait_until(released, CLEANUP_WAIT_S, f"replication slot {slot} to be released")
    except TimeoutError:
        pg.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name = %s AND active_pid IS NOT NULL",
            (slot,),
        )
        wait_until(released, CLEANUP_WAIT_S, f"replication slot {slot} to be released")
    dropped = pg.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchall()
    return bool(dropped)
