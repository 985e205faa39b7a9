"""Shared pieces of the benchmarks: figures (median/min/max of runs), sections, machine facts."""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from harness.runtime.config import ROOT, STACK_DIR, setting

BENCH_DIR = ROOT / "bench"
# Generated inputs (scaled recordings) are cached here, outside git.
CACHE_DIR = STACK_DIR / "bench"
PREFIX = "bench_"  # every topic, table, database, bucket prefix the benchmarks create

_OPS = {"<=": lambda v, t: v <= t, ">=": lambda v, t: v >= t}


def unique(what: str = "") -> str:
    """A throw-away name: `bench_<what>_<hex>` (plain identifier characters only)."""
    return f"{PREFIX}{what + '_' if what else ''}{uuid.uuid4().hex[:10]}"


@dataclass
class Figure:
    """One measured quantity: every run's value, summarised as median, min and max."""

    label: str
    unit: str
    runs: list[float] = field(default_factory=list)
    target: tuple[str, float] | None = None  # ("<=", 3072) — reported, never asserted
    note: str = ""

    def add(self, value: float) -> float:
        self.runs.append(float(value))
        return value

    @property
    def median(self) -> float | None:
        return statistics.median(self.runs) if self.runs else None

    @property
    def met(self) -> bool | None:
        if self.target is None or not self.runs:
            return None
        op, value = self.target
        return _OPS[op](self.median, value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "unit": self.unit,
            "n": len(self.runs),
            "median": self.median,
            "min": min(self.runs) if self.runs else None,
            "max": max(self.runs) if self.runs else None,
            "runs": self.runs,
            "target": {"op": self.target[0], "value": self.target[1]} if self.target else None,
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Section:
    """A section's results: figures by key, free-form tables, notes, and an error if it failed."""

    name: str
    title: str
    figures: dict[str, Figure] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def figure(
        self,
        key: str,
        label: str,
        unit: str,
        target: tuple[str, float] | None = None,
        note: str = "",
    ) -> Figure:
        """The figure `key`, created on first use."""
        if key not in self.figures:
            self.figures[key] = Figure(label, unit, target=target, note=note)
        return self.figures[key]

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "figures": {k: f.as_dict() for k, f in self.figures.items()},
            "tables": self.tables,
            "notes": self.notes,
            "error": self.error,
            "seconds": round(self.seconds, 1),
        }


class Timer:
    """`with Timer() as t: ...; t.seconds` — wall time (monotonic clock)."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def solution_module(lab: str, module: str) -> ModuleType:
    """The reference implementation `solutions/<lab>/<module>.py` (the benchmarks measure it)."""
    from harness.grading.loader import lab_module, set_target

    set_target("solutions")
    return lab_module(lab, module)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the machine
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_pressure() -> str:
    """The kernel's CPU pressure: share of the last minute some task waited for a CPU."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "CPU pressure unknown"
    fields = dict(f.split("=") for f in line.split()[1:])
    return f"CPU pressure (time a task waited for a CPU, last minute): {fields['avg60']}%"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    mem = psutil.virtual_memory()
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(mem.total / 2**30, 1),
        "memory_available_gib": round(mem.available / 2**30, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "load_average": load_average(),
    }


def _os_name() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return platform.system()
    match = re.search(r'^PRETTY_NAME="?([^"\n]*)', text, re.MULTILINE)
    return match.group(1) if match else platform.system()


def _package(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (out.stderr or out.stdout).splitlines()
    return first[0].strip() if first else "unknown"


def versions() -> dict[str, Any]:
    """Versions of the pieces the figures depend on (services as configured in infra/.env)."""
    import confluent_kafka

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "java": _java_version(),
        "pyspark": _package("pyspark"),
        "chdb": _package("chdb"),
        "confluent-kafka": _package("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "clickhouse-connect": _package("clickhouse-connect"),
        "pyarrow": _package("pyarrow"),
        "kafka (broker)": setting("KAFKA_VERSION", "?"),
        "debezium": setting("DEBEZIUM_VERSION", "?"),
        "stack": _stack_kind(),
    }
    try:
        from harness.runtime.services import clickhouse_client

        out["clickhouse engine"] = clickhouse_client().command("SELECT version()")
    except Exception as exc:  # the report says what it could not ask
        out["clickhouse engine"] = f"unavailable ({type(exc).__name__})"
    try:
        from harness.runtime.services import pg_connect

        with pg_connect() as conn:
            out["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    except Exception as exc:
        out["postgresql"] = f"unavailable ({type(exc).__name__})"
    try:
        from harness.ops.stack.minio import MODULE_VERSION

        out["minio"] = f"{MODULE_VERSION} (built from source)"
    except ImportError:
        out["minio"] = setting("MINIO_IMAGE_TAG", "?")
    return out


def _stack_kind() -> str:
    from harness.runtime.config import stack

    return stack()
