"""MinIO for the native stack: a real S3 server, built from source with `go install`.

On a user's machine the official MinIO binary works as well: drop it at `.stack/bin/minio`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from harness.ops.stack.base import (
    BIN_DIR,
    Service,
    StackError,
    log,
    restore_from_user_cache,
    save_to_user_cache,
    tail,
)
from harness.runtime.config import BUCKETS, endpoints, setting

MODULE = "github.com/minio/minio"
# A pseudo-version of the MinIO module that builds with the Go toolchain of the lab machines.
MODULE_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def binary_works(path) -> bool:
    """True when `path` is an executable MinIO that answers `--version`."""
    try:
        result = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "minio version" in result.stdout.lower()


# A cold Go build takes minutes: the other services start meanwhile (builds_in_background).
class MinIO(Service, name="minio", title="MinIO (S3)", start_timeout=60, builds_in_background=True):
    def __init__(self) -> None:
        host, _, port = endpoints().minio_endpoint.rpartition(":")
        self.host = host
        self.port = int(port)
        self.console_port = int(setting("MINIO_CONSOLE_PORT", "9001"))

    @property
    def binary(self):
        return BIN_DIR / "minio"

    def installed(self) -> bool:
        return (
            self.binary.exists() and os.access(self.binary, os.X_OK) and binary_works(self.binary)
        )

    def install(self, output: Path | None = None) -> None:
        """`go install` the pinned MinIO module into a temporary folder, check it, then move it in.
        The Go tool's output goes to `output` when given (a build in the background)."""
        if self.installed() and binary_works(self.binary):
            return
        cache_key = f"minio-{MODULE_VERSION}/minio"
        if restore_from_user_cache(cache_key, self.binary, lambda: binary_works(self.binary)):
            return
        if not shutil.which("go"):
            raise StackError(
                "MinIO is built with Go, which is not installed. Install Go (1.24 or newer), or "
                f"download the official MinIO server binary to {self.binary} and make it executable."
            )
        BIN_DIR.mkdir(parents=True, exist_ok=True)
        log(f"      go install {MODULE}@{MODULE_VERSION} (a few minutes on the first run)")
        with tempfile.TemporaryDirectory(prefix=".minio-build-", dir=BIN_DIR) as tmp:
            env = {**os.environ, "GOBIN": tmp, "CGO_ENABLED": "0"}
            argv = ["go", "install", f"{MODULE}@{MODULE_VERSION}"]
            with contextlib.ExitStack() as stack:
                out = stack.enter_context(open(output, "ab")) if output else None
                result = subprocess.run(argv, env=env, stdout=out, stderr=out)
            built = os.path.join(tmp, "minio")
            if result.returncode != 0 or not os.path.exists(built):
                where = (
                    f"the last lines of {output}:\n{tail(output)}" if output else "the output above"
                )
                raise StackError(f"`go install {MODULE}@{MODULE_VERSION}` failed; see {where}")
            if not binary_works(built):
                raise StackError(f"the freshly built MinIO binary does not run: {built}")
            os.replace(built, self.binary)  # atomic: never a half-written binary in place
        log(f"      built {self.binary}")
        save_to_user_cache(cache_key, self.binary)

    def command(self) -> tuple[list[str], dict[str, str]]:
        ep = endpoints()
        argv = [
            str(self.binary),
            "server",
            str(self.data_dir),
            "--address",
            f"{self.host}:{self.port}",
            "--console-address",
            f"{self.host}:{self.console_port}",
            "--quiet",
        ]
        env = {
            "MINIO_ROOT_USER": ep.minio_access_key,
            "MINIO_ROOT_PASSWORD": ep.minio_secret_key,
            "MINIO_UPDATE": "off",
            "MINIO_BROWSER_REDIRECT": "off",
            # Keep a lab-sized footprint: the Go runtime returns memory above this soft limit.
            "GOMEMLIMIT": "512MiB",
        }
        return argv, env

    def healthy(self) -> bool:
        url = f"http://{self.host}:{self.port}/minio/health/live"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def after_start(self) -> None:
        """Create the lab's buckets (idempotent)."""
        from harness.runtime.services import minio_client

        client = minio_client()
        for bucket in BUCKETS:
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
