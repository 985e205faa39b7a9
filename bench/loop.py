"""Section 2 — the student loop: each graded suite against solutions/, with the stack up.

For every `labs/labNN_*` with tests: `pytest labs/<lab> --target solutions -q` in a new process
(what `make lab-N` runs after `make up`), timed from the outside, with bench/pytest_timing.py
saying where the time went: interpreter start and collection, Spark session start (the `spark`
fixture), other fixture set-up (topics, tables, buckets, services), test bodies, teardown.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Section, log
from harness.runtime.config import ROOT

TARGET_S = 20.0
SUITE_TIMEOUT_S = 1800
QUICK_LAB = "lab04_clickhouse"
LONG_SUITE_S = 120.0


def graded_labs() -> list[str]:
    labs = []
    for folder in sorted((ROOT / "labs").glob("lab[0-9][0-9]_*")):
        if any((folder / "tests").glob("test_*.py")):
            labs.append(folder.name)
    return labs


def run_suite(lab: str) -> dict[str, Any]:
    """One timed run of a lab's graded suite; the breakdown of its time."""
    with tempfile.TemporaryDirectory(prefix="bench_loop_") as tmp:
        out = Path(tmp) / "timing.json"
        env = {**os.environ, "BENCH_PYTEST_JSON": str(out)}
        argv = [
            sys.executable,
            "-m",
            "pytest",
            f"labs/{lab}",
            "--target",
            "solutions",
            "-q",
            "-p",
            "bench.pytest_timing",
            "--durations=5",
        ]
        t0 = time.time()
        proc = subprocess.run(
            argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT_S
        )
        wall = time.time() - t0
        if not out.exists():
            raise RuntimeError(
                f"pytest on labs/{lab} wrote no timing (exit {proc.returncode}):\n"
                + proc.stdout[-2000:]
                + proc.stderr[-2000:]
            )
        doc = json.loads(out.read_text())
    stamps, phases, fixtures = doc["stamps"], doc["phases"], doc["fixtures"]
    spark = sum(s for name, s in fixtures.items() if "spark" in name.lower())
    setup = phases.get("setup", 0.0)
    return {
        "wall_s": wall,
        "exit": proc.returncode,
        "tests": stamps.get("tests", 0),
        "outcomes": doc["outcomes"],
        "breakdown": {
            "python start, imports, plugins": stamps["configure"] - t0,
            "collection (imports the lab)": stamps["collected"] - stamps["configure"],
            "Spark session start": spark,
            "other fixture set-up (services, data)": max(setup - spark, 0.0),
            "test bodies": phases.get("call", 0.0),
            "teardown (clean-up)": phases.get("teardown", 0.0),
            "reporting and exit": wall - (stamps["finished"] - t0),
        },
        "fixtures": fixtures,
        "slowest_calls": doc["slowest_calls"],
        "tail": proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else [],
    }


def run(section: Section, options: Any) -> None:
    labs = graded_labs()
    if options.quick:
        labs = [lab for lab in labs if lab == QUICK_LAB] or labs[:1]
    repeats = options.repeats_or(3, quick=1)
    if not labs:
        section.note("no labs/labNN_* folder has graded tests yet")
        return
    section.tables["suites"] = {}
    breakdown_table: dict[str, dict[str, Any]] = {}
    for lab in labs:
        runs = []
        figure = section.figure(
            f"{lab}_wall_s", f"{lab}: pytest --target solutions", "s", target=("<=", TARGET_S)
        )
        wanted = repeats
        for i in range(repeats):
            if i >= wanted:
                break
            result = run_suite(lab)
            if i == 0 and result["wall_s"] > LONG_SUITE_S and repeats > 2:
                wanted = 2  # a suite of minutes: two runs give a median and a spread
                section.note(
                    f"{lab}: first run over {LONG_SUITE_S:.0f} s, so 2 runs instead of {repeats}"
                )
            runs.append(result)
            figure.add(result["wall_s"])
            log(
                f"{lab} run {i + 1}/{wanted}: {result['wall_s']:.1f} s, "
                f"{result['outcomes']} ({result['tail'][0] if result['tail'] else ''})"
            )
        last = runs[-1]
        section.tables["suites"][lab] = {
            "tests": last["tests"],
            "outcomes (last run)": last["outcomes"],
            "exit codes": [r["exit"] for r in runs],
            "slowest test (s)": (
                f"{last['slowest_calls'][0][1].rsplit('::', 1)[-1]} "
                f"({last['slowest_calls'][0][0]:.1f})"
                if last["slowest_calls"]
                else "-"
            ),
        }
        breakdown_table[lab] = {
            part: round(statistics.median(r["breakdown"][part] for r in runs), 1)
            for part in last["breakdown"]
        }
        top = list(last["fixtures"].items())[:3]
        breakdown_table[lab]["slowest fixtures"] = ", ".join(f"{n} {s:.1f}s" for n, s in top)
        median_wall = figure.median or 0.0
        if median_wall > TARGET_S:
            parts = {k: v for k, v in breakdown_table[lab].items() if k != "slowest fixtures"}
            worst = max(parts, key=parts.get)
            section.note(
                f"{lab}: {median_wall:.0f} s > {TARGET_S:.0f} s. Largest share: {worst} "
                f"({parts[worst]:.0f} s); slowest fixtures: {breakdown_table[lab]['slowest fixtures']}; "
                f"slowest test: {section.tables['suites'][lab]['slowest test (s)']}."
            )
        if any(r["exit"] != 0 for r in runs):
            section.note(f"{lab}: some tests did not pass on solutions/ (exit codes above)")
    section.tables["where_the_time_goes_s (median of runs)"] = breakdown_table
    section.note(
        f"{repeats} run(s) per lab unless said otherwise, each `python -m pytest labs/<lab> --target solutions -q` in a "
        "new process with the stack already up; `make lab-N` adds a warm `make up` (section 1) "
        "on top. Spark session start is the set-up of the `spark` fixture (its first use)."
    )
