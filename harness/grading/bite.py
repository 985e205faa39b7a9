"""`make check-tests`: prove the graded tests bite — none may pass on the pristine skeletons.

Generates the skeletons from solutions/ into a scratch folder (never the possibly edited labs/),
runs every graded suite against them with `--labs-dir`, and fails listing each points-marked test
that passed there: a test that passes on an empty answer grades nothing.

    python -m harness.grading.bite [--solutions solutions] [--labs 1 2] [-- pytest args]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness.grading import skeleton
from harness.grading.results import PASSED
from harness.grading.runner import QUIET, command_line, find_suites, run_suites
from harness.runtime.config import ROOT


def main(argv: list[str] | None = None) -> int:
    parser, argv, extra = command_line("harness.grading.bite", __doc__, argv)
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions")
    parser.add_argument("--labs", nargs="*", help="only these labs (numbers or folder names)")
    parser.add_argument("--tests-root", type=Path, default=ROOT / "labs", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    suites = find_suites(args.tests_root, args.labs)
    if not suites:
        print(f"no graded suites (labNN_*/tests) under {args.tests_root}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pristine-skeletons-") as scratch:
        labs_dir = Path(scratch) / "labs"
        try:
            written = skeleton.write_tree(args.solutions, labs_dir)
        except skeleton.MarkerError as exc:
            print(f"marker error:\n{exc}", file=sys.stderr)
            return 2
        print(
            f"Running {len(suites)} graded suite(s) against {len(written)} pristine skeleton(s) "
            f"generated from {args.solutions}"
        )
        tests, info = run_suites(
            suites,
            Path(scratch) / "results.json",
            labs_dir=labs_dir,
            extra=QUIET + extra,
            cwd=args.tests_root.resolve().parent,
        )
    for error in info.collection_errors:
        print(f"collection error in {error['where']}:\n{error['message']}", file=sys.stderr)
    if not tests:
        print(f"FAIL: no graded (points-marked) tests ran. {info.note}", file=sys.stderr)
        return 1
    vacuous = [t for t in tests if t.status == PASSED]
    if vacuous:
        print(f"FAIL: {len(vacuous)} graded test(s) PASS on the empty skeletons:")
        for test in vacuous:
            print(f"  {test.nodeid}  ({test.location})")
        print("A test that passes without the student's answer grades nothing: make it call the")
        print("lab's code and check the result.")
        return 1
    if info.collection_errors:
        return 1
    labs = len({t.lab for t in tests})
    print(f"OK: all {len(tests)} graded tests in {labs} lab(s) fail on the skeletons.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
