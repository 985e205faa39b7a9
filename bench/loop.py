"""Section 2 — the student loop: each graded suite against solutions/, with the stack up.

For every `labs/labNN_*` with tests: `pytest labs/<lab> --target solutions -q` in a new process
(what `make lab-N` runs after `make up`), timed from the outside, with bench/pytest_timing.py
saying where the time went: interpreter start and collection, Spark session start (the `spark`
fixture), other fixture set-up (topics, tables, buckets, services), test bodies, teardown.

Then what the student types, on a warm stack: `make lab-N`'s two steps (the lab's services up,
then harness.grading.student) on the pristine skeleton in labs/, timed to the moment the first
failing test is printed and to the score table, and one part (`-- -k partB`) on the skeleton
and on the reference.
"""

from __future__ import annotations

import json
import math
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
TARGET_QUICK_LABS_S = 10.0  # Labs 03-06: no Spark session or a small one
QUICK_LABS = ("lab03", "lab04", "lab05", "lab06")
TARGET_PART_S = 10.0
TARGET_FIRST_FAILURE_S = 10.0
FIRST_FAILURE_MARK = "FIRST FAILING TEST"
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


def student_run(lab: str, labs_dir: str, pytest_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """`make lab-N [-- pytest_args]` on a warm stack, as its two steps: the lab's services up,
    then the student runner on `labs_dir`; timed to the first failing test printed and to the end."""
    number = str(int(lab[3:5]))
    t0 = time.time()
    subprocess.run(
        [sys.executable, "-m", "harness.ops.stack", "up", "--lab", number],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=SUITE_TIMEOUT_S,
    )
    up = time.time() - t0
    argv = [sys.executable, "-m", "harness.grading.student", "--labs-dir", labs_dir, number]
    first = None
    with subprocess.Popen(
        [*argv, "--", *pytest_args], cwd=ROOT, stdout=subprocess.PIPE, text=True
    ) as proc:
        for line in proc.stdout:
            if first is None and FIRST_FAILURE_MARK in line:
                first = time.time() - t0
    return {
        "up_s": up,
        "wall_s": time.time() - t0,
        "first_failure_s": first,
        "exit": proc.returncode,
    }


def student_loop(section: Section, labs: list[str]) -> None:
    """The student's commands, once each per lab: the whole skeleton, one part on both sides."""
    table: dict[str, dict[str, Any]] = {}
    for lab in labs:
        quick = lab.startswith(QUICK_LABS)
        whole = section.figure(
            f"{lab}_make_lab_skeleton_s",
            f"{lab}: make lab-N on the pristine skeleton (warm stack)",
            "s",
            target=("<=", TARGET_QUICK_LABS_S if quick else TARGET_S),
        )
        first = section.figure(
            f"{lab}_first_failure_s",
            f"{lab}: make lab-N on the skeleton, to the first failing test printed",
            "s",
            target=("<=", TARGET_FIRST_FAILURE_S),
        )
        part_skeleton = section.figure(
            f"{lab}_partB_skeleton_s",
            f"{lab}: make lab-N -- -k partB, skeleton",
            "s",
            target=("<=", TARGET_PART_S),
        )
        part_solution = section.figure(
            f"{lab}_partB_solutions_s",
            f"{lab}: make lab-N -- -k partB, reference solution",
            "s",
            target=("<=", TARGET_PART_S),
        )
        skeleton = student_run(lab, "labs")
        whole.add(skeleton["wall_s"])
        if skeleton["first_failure_s"] is not None:
            first.add(skeleton["first_failure_s"])
        part_s = student_run(lab, "labs", ("-k", "partB"))
        part_skeleton.add(part_s["wall_s"])
        part_r = student_run(lab, "solutions", ("-k", "partB"))
        part_solution.add(part_r["wall_s"])
        table[lab] = {
            "services up (warm) s": round(skeleton["up_s"], 1),
            "skeleton: first failure s": round(skeleton["first_failure_s"] or math.nan, 1),
            "skeleton: score table s": round(skeleton["wall_s"], 1),
            "partB skeleton s": round(part_s["wall_s"], 1),
            "partB reference s (exit)": f"{part_r['wall_s']:.1f} ({part_r['exit']})",
        }
        log(
            f"{lab} make lab-N: skeleton {skeleton['wall_s']:.1f} s (first failure "
            f"{skeleton['first_failure_s']}), partB {part_s['wall_s']:.1f} / {part_r['wall_s']:.1f} s"
        )
    section.tables["make lab-N as the student types it (warm stack, one run each)"] = table
    section.note(
        "make lab-N = `python -m harness.ops.stack up --lab N` (warm: the lab's services already "
        "run) then `python -m harness.grading.student N`, which prints the first failing test as "
        "soon as it is known and the score table at the end; the reference runs with "
        "`--labs-dir solutions`."
    )


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
    student_loop(section, labs)
