"""`make check-stable`: a correct answer never loses points — every suite N times on solutions/.

Runs each lab's graded suite `--runs` times in a row against the reference, optionally while
another suite keeps the machine busy (`--alongside LAB`), and fails on any failure, naming the
test and the run. Not part of `make test` (it takes N times a full run); its figures go to the
bench report (`--json`).

    python -m harness.grading.stable [LAB ...] [--runs 5] [--alongside 2] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.grading.results import PASSED
from harness.grading.runner import QUIET, find_suites, pytest_command, run_suites
from harness.runtime.config import ROOT


def _background(lab: str, tests_root: Path, scratch: Path) -> subprocess.Popen:
    """Run `lab`'s suite on solutions/ over and over, as load, until stopped."""
    suite = find_suites(tests_root, [lab])[0]
    command = pytest_command([suite], scratch / "load.json", "solutions", None, QUIET)
    loop = f"while true; do {' '.join(map(_quote, command))} >/dev/null 2>&1; done"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.Popen(
        ["bash", "-c", loop], cwd=tests_root.parent, env=env, start_new_session=True
    )


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.grading.stable", description=__doc__.split("\n")[0]
    )
    parser.add_argument("labs", nargs="*", help="only these labs (numbers or folder names)")
    parser.add_argument("--runs", type=int, default=5, help="runs per suite (default 5)")
    parser.add_argument("--alongside", default=None, metavar="LAB", help="keep LAB running as load")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--tests-root", type=Path, default=ROOT / "labs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    suites = find_suites(args.tests_root, args.labs)
    report: dict[str, dict] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="check-stable-") as tmp:
        scratch = Path(tmp)
        load = _background(args.alongside, args.tests_root, scratch) if args.alongside else None
        try:
            for suite in suites:
                durations, failed_runs = [], []
                for run in range(1, args.runs + 1):
                    started = time.monotonic()
                    tests, info = run_suites(
                        [suite],
                        scratch / f"{suite.lab}-{run}.json",
                        target="solutions",
                        extra=QUIET,
                        cwd=args.tests_root.resolve().parent,
                    )
                    durations.append(round(time.monotonic() - started, 1))
                    bad = [t for t in tests if t.status != PASSED]
                    if bad or not tests or info.collection_errors:
                        failed_runs.append(run)
                        for test in bad or []:
                            failures.append(
                                f"{suite.lab} run {run}: {test.name}: {test.status}: "
                                f"{test.message.splitlines()[0] if test.message else ''}"
                            )
                        if not tests:
                            failures.append(f"{suite.lab} run {run}: no graded test ran")
                    print(
                        f"{suite.lab} run {run}/{args.runs}: "
                        f"{sum(t.status == PASSED for t in tests)}/{len(tests)} passed "
                        f"({durations[-1]} s)",
                        flush=True,
                    )
                report[suite.lab] = {
                    "runs": args.runs,
                    "green_runs": args.runs - len(failed_runs),
                    "failed_runs": failed_runs,
                    "median_seconds": statistics.median(durations),
                    "alongside": args.alongside or "",
                }
        finally:
            if load is not None:
                os.killpg(load.pid, 15)
                load.wait()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"labs": report, "failures": failures}, indent=1) + "\n")
    for lab, figures in report.items():
        print(
            f"{lab}: {figures['green_runs']}/{figures['runs']} runs green, median "
            f"{figures['median_seconds']} s"
        )
    if failures:
        print("FAIL: a correct answer lost points:")
        for line in failures:
            print(f"  {line}")
        return 1
    print("OK: every run of every suite passed on solutions/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
