"""Platform tests for MinIO: the lab's buckets exist, an object round-trips, pyarrow reads it.

Objects live under a unique prefix and are removed afterwards. The server is reached only through
`harness.runtime.services` (a missing server raises `ServiceUnavailable`).
"""

from __future__ import annotations

import io
import uuid

from harness.runtime.config import BUCKETS
from harness.runtime.services import minio_client, s3_filesystem


def test_lab_buckets_exist() -> None:
    """raw-data, processed-data and streaming-aggregations are created when MinIO starts."""
    names = {b.name for b in minio_client().list_buckets()}
    missing = set(BUCKETS) - names
    assert not missing, f"buckets missing: {sorted(missing)} (have {sorted(names)})"


def test_put_get_round_trip() -> None:
    """An object put into raw-data comes back byte for byte, and is listed under its prefix."""
    client = minio_client()
    prefix = f"platform-tests/{uuid.uuid4().hex}"
    key = f"{prefix}/states.json"
    payload = b'{"icao24": "3c6444", "velocity": 231.5}\n' * 100
    client.put_object("raw-data", key, io.BytesIO(payload), len(payload), "application/json")
    try:
        response = client.get_object("raw-data", key)
        try:
            body = response.read()
        finally:
            response.close()
            response.release_conn()
        listed = [o.object_name for o in client.list_objects("raw-data", prefix=prefix + "/")]
    finally:
        client.remove_object("raw-data", key)
    assert body == payload, f"got {len(body)} bytes back, expected {len(payload)}"
    assert listed == [key], f"listing under {prefix}/ gave {listed}"


def test_pyarrow_filesystem_reads_the_object() -> None:
    """pyarrow's S3 filesystem (used by notebooks) reads what the MinIO client wrote."""
    client = minio_client()
    key = f"platform-tests/{uuid.uuid4().hex}/hello.txt"
    client.put_object("processed-data", key, io.BytesIO(b"hello"), 5)
    try:
        with s3_filesystem().open_input_stream(f"processed-data/{key}") as fh:
            assert fh.read() == b"hello"
    finally:
        client.remove_object("processed-data", key)
