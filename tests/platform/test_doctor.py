"""Platform tests for `make doctor` (python -m harness.ops.doctor) and `make reset` (harness.ops.reset).

The doctor runs as a subprocess, as `make doctor` runs it. The running stack is never stopped:
unhealthy cases move a port (POSTGRES_PORT=…) or the stack folder (OPENSKY_STACK_DIR=…) through the
environment, which `harness.runtime.config` honours.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.runtime.config import ROOT

# The environment is kept (a stack moved to other ports stays moved); only answers to prompts go.
OVERRIDES = ("YES",)
PORT_LINE = re.compile(r"^\s+(OK|WARN|FAIL|--)\s+(\d+)\s+([A-Z_]+_PORT)\s+(.*)$")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def run_module(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=_env(**env),
        capture_output=True,
        text=True,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=300,
    )


def lines_with(output: str, *needles: str) -> list[str]:
    return [line for line in output.splitlines() if all(n in line for n in needles)]


# ------------------------------------------------------------------ doctor
def test_doctor_healthy_exit_zero() -> None:
    """On this machine (stack up or down) the doctor finds nothing blocking and exits 0."""
    result = run_module("harness.ops.doctor")
    out = result.stdout
    assert result.returncode == 0, f"doctor exit {result.returncode}:\n{out}\n{result.stderr}"
    assert not lines_with(out, "FAIL "), out
    port_lines = [PORT_LINE.match(line) for line in out.splitlines()]
    port_lines = [m for m in port_lines if m]
    assert len(port_lines) == 10, out
    for match in port_lines:
        assert match.group(1) == "OK", match.group(0)
        assert match.group(4).startswith(("free", "in use by the lab stack")), match.group(0)
    assert "Ready for the labs" in out or "All good" in out, out


def test_doctor_port_taken_by_another_program(listening: int) -> None:
    """A stack port held by another program: FAIL naming the port, the program and the variable."""
    result = run_module("harness.ops.doctor", POSTGRES_PORT=str(listening))
    out = result.stdout
    assert result.returncode != 0, out
    failing = lines_with(out, "FAIL", str(listening), "POSTGRES_PORT")
    assert failing, f"no FAIL line for port {listening}:\n{out}"
    line = failing[0]
    assert f"pid {os.getpid()}" in line, line
    assert "python" in line or "pytest" in line, line
    fix_index = out.splitlines().index(line) + 1
    fix = out.splitlines()[fix_index]
    assert "fix:" in fix and "POSTGRES_PORT=" in fix, fix


def test_doctor_missing_setup(tmp_path: Path) -> None:
    """An empty stack folder: every jar folder and the MinIO binary FAIL, the fix is `make setup`."""
    result = run_module("harness.ops.doctor", OPENSKY_STACK_DIR=str(tmp_path))
    out = result.stdout
    assert result.returncode != 0, out
    for folder in ("kafka", "connect", "connect-plugins", "spark"):
        failing = lines_with(out, "FAIL", f"jars/{folder}")
        assert failing, f"jars/{folder} not reported missing:\n{out}"
    assert lines_with(out, "FAIL", "MinIO binary"), out
    lines = out.splitlines()
    fix = lines[lines.index(lines_with(out, "FAIL", "jars/kafka")[0]) + 1]
    assert "fix:" in fix and "make setup" in fix, fix


def test_doctor_truncated_jar(tmp_path: Path) -> None:
    """A truncated jar (an interrupted download) is named as broken, with `make setup` as the fix."""
    folder = tmp_path / "jars" / "kafka"
    folder.mkdir(parents=True)
    jar = folder / "kafka-clients-9.9.9.jar"
    with zipfile.ZipFile(jar, "w") as zf:
        for i in range(20):
            zf.writestr(f"org/example/C{i}.class", os.urandom(2000))
    (folder / "whole-1.0.jar").write_bytes(jar.read_bytes())
    jar.write_bytes(jar.read_bytes()[: jar.stat().st_size // 2])
    result = run_module("harness.ops.doctor", OPENSKY_STACK_DIR=str(tmp_path))
    failing = lines_with(result.stdout, "FAIL", "jars/kafka")
    assert failing and "kafka-clients-9.9.9.jar" in failing[0], result.stdout
    assert "whole-1.0.jar" not in failing[0], failing[0]
    assert result.returncode != 0


# ------------------------------------------------------------------ reset
@pytest.fixture
def fake_stack(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A stack folder with data, a pid folder, downloads, and PostgreSQL's data behind a symlink
    into the temporary directory (the root case of harness/ops/stack/postgres.py). Nothing runs."""
    stack = tmp_path / "stack"
    for sub in ("data/kafka", "data/minio/raw-data", "run", "jars/kafka", "bin", "logs"):
        (stack / sub).mkdir(parents=True)
    (stack / "data/kafka/meta.properties").write_text("cluster.id=x\n")
    (stack / "jars/kafka/kafka-clients.jar").write_bytes(b"PK")
    (stack / "bin/minio").write_bytes(b"#!/bin/sh\n")
    (stack / "logs/kafka.log").write_text("log\n")
    outside = Path(tempfile.mkdtemp(prefix="opensky-labs-test-", dir=tempfile.gettempdir()))
    pg = outside / "postgres"
    pg.mkdir()
    (pg / "PG_VERSION").write_text("15\n")
    (stack / "data/postgres").symlink_to(pg)
    yield {"stack": stack, "pg": pg, "outside": outside}
    if outside.exists():
        for path in sorted(outside.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        outside.rmdir()


def test_reset_needs_confirmation(fake_stack: dict[str, Path]) -> None:
    """Without YES=1 and no terminal to ask, reset changes nothing and exits non-zero."""
    stack = fake_stack["stack"]
    result = run_module("harness.ops.reset", STACK="native", OPENSKY_STACK_DIR=str(stack))
    assert result.returncode != 0, result.stdout + result.stderr
    assert "YES=1" in result.stderr, result.stderr
    assert (stack / "data/kafka/meta.properties").exists()
    assert (fake_stack["pg"] / "PG_VERSION").exists()


def test_reset_wipes_data_keeps_downloads(fake_stack: dict[str, Path]) -> None:
    """YES=1: data, pid files and the symlinked PostgreSQL data go; jars, binaries and logs stay."""
    stack = fake_stack["stack"]
    result = run_module("harness.ops.reset", STACK="native", OPENSKY_STACK_DIR=str(stack), YES="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (stack / "data").exists(), result.stdout
    assert not (stack / "run").exists(), result.stdout
    assert not fake_stack["pg"].exists(), "the symlinked PostgreSQL data dir was not deleted"
    assert not fake_stack["outside"].exists(), "its empty opensky-labs-* parent was left"
    for kept in ("jars/kafka/kafka-clients.jar", "bin/minio", "logs/kafka.log"):
        assert (stack / kept).exists(), f"{kept} should be kept"
    assert "make up" in result.stdout, result.stdout
