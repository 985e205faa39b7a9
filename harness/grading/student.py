"""`make lab-N`: run one lab's graded suite against labs/ and show the first problem to fix.

python -m harness.grading.student 1              # lab 1
python -m harness.grading.student 1 -- -k partB  # arguments after -- go to pytest
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from pathlib import Path

from harness.grading.results import (
    NOT_RUN,
    PASSED,
    RUNNING,
    GradedTest,
    fmt_points,
    read_results,
    render_table,
    trim,
)
from harness.grading.runner import QUIET, find_suites, run_suites
from harness.runtime.config import ROOT

RULE = "=" * 78


def first_failure_text(test: GradedTest, lab_number: str) -> str:
    """The one failure a learner should look at now: which test, what it checks, what went wrong."""
    lines = [
        RULE,
        f"FIRST FAILING TEST (fix this one first): {test.name}",
        f"  part {test.part} · {test.location}" if test.part != "-" else f"  {test.location}",
    ]
    if test.doc:
        lines.append(f"  checks: {test.doc}")
    lines.append("")
    message = trim(test.message or f"({test.status})", max_lines=25, max_chars=2500)
    lines.extend(f"  {line}" for line in message.splitlines())
    lines.append("")
    lines.append(
        f"  Full details: .venv/bin/pytest {test.nodeid.split('::', 1)[0]} -k {test.name.split('[')[0]}"
    )
    lines.append(RULE)
    return "\n".join(lines)


class EarlyFailure:
    """Watches the live results.json of a run and prints the first failing test as soon as it is
    known, so a student reads what to fix while the rest of the suite still runs."""

    def __init__(self, json_path: Path, lab_number: str) -> None:
        self.json_path = json_path
        self.lab_number = lab_number
        self.shown: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> EarlyFailure:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            result = read_results(self.json_path)
            if result is None:
                continue
            done = [t for t in result[0] if t.status not in (PASSED, RUNNING, NOT_RUN)]
            if done:
                self.shown = done[0].nodeid
                print("\n" + first_failure_text(done[0], self.lab_number), flush=True)
                print("(the other tests are still running…)", flush=True)
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.grading.student", description=__doc__.split("\n")[0]
    )
    parser.add_argument("lab", help="lab number (1) or folder name (lab01_batch)")
    parser.add_argument("pytest_args", nargs="*", help="after --: arguments for pytest (-k partB)")
    parser.add_argument("--tests-root", type=Path, default=ROOT / "labs", help=argparse.SUPPRESS)
    parser.add_argument("--labs-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    suites = find_suites(args.tests_root, [args.lab])
    lab = suites[0].lab
    number = lab[3:5]
    print(
        f"Lab {number}: running the graded tests in {suites[0].tests.relative_to(args.tests_root.parent)}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="lab-results-") as scratch:
        json_path = Path(scratch) / "results.json"
        with EarlyFailure(json_path, number) as early:
            tests, info = run_suites(
                suites,
                json_path,
                labs_dir=(args.labs_dir or args.tests_root).resolve(),
                extra=QUIET + args.pytest_args,
                cwd=args.tests_root.resolve().parent,
            )
    if not tests:
        print(f"No graded tests ran for Lab {number}. {info.note}")
        for error in info.collection_errors:
            print(f"collection error in {error['where']}:\n{error['message']}")
        return 1
    failing = [t for t in tests if t.status != PASSED]
    print()
    if failing and early.shown != failing[0].nodeid:
        print(first_failure_text(failing[0], number))
        print()
    print(render_table(tests, info))
    earned = fmt_points(sum(t.earned for t in tests))
    possible = fmt_points(sum(t.points for t in tests))
    print()
    if failing:
        more = len(failing) - 1
        later = f" ({more} more after it)" if more else ""
        print(
            f"Lab {number}: {earned}/{possible} points. Next: fix {failing[0].name}{later}, "
            f"then run `make lab-{int(number)}` again."
        )
        return 1
    print(f"Lab {number}: {earned}/{possible} points. Every graded test passes. Well done!")
    return 0


if __name__ == "__main__":
    sys.exit(main())
