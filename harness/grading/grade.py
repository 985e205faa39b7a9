"""Instructor grading: every lab against labs/, or every student copy under a folder.

    python -m harness.grading.grade                         # labs/ -> table + reports/results.json
    python -m harness.grading.grade --submissions subs/     # -> reports/grades.csv
                                                            #    + reports/<student>/results.json

Each subfolder of `--submissions` is one student: a repository root (holding labs/) or a copy of
labs/ itself. Each student runs in their own pytest process, so one student's broken code never
stops the others. Arguments after `--` go to pytest.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from harness.grading.results import (
    LAB_DIR,
    fmt_points,
    lab_totals,
    render_table,
    to_gradescope,
    write_json,
)
from harness.grading.runner import QUIET, Suite, find_suites, run_suites
from harness.runtime.config import ROOT


def student_labs_dir(folder: Path) -> Path:
    """The labs/ copy inside one submission folder (the folder itself when it holds labNN_*)."""
    if (folder / "labs").is_dir():
        return folder / "labs"
    return folder


def students(submissions: Path) -> list[Path]:
    return sorted(
        p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))
    )


def grade_copy(
    suites: list[Suite],
    out: Path,
    labs_dir: Path | None,
    *,
    extra: list[str],
    cwd: Path,
    log: Path | None,
    time_limit: float | None,
) -> tuple[dict[str, tuple[float, float]], str]:
    """Grade one copy; writes out/results.json and returns (lab -> (score, max), table)."""
    tests, info = run_suites(
        suites,
        out / "results.json",
        labs_dir=labs_dir,
        extra=extra,
        cwd=cwd,
        log=log,
        time_limit=time_limit,
    )
    table = render_table(tests, info)
    write_json(out / "results.json", to_gradescope(tests, info, output=table))
    totals = lab_totals(tests)
    return {s.lab: totals.get(s.lab, (0.0, 0.0)) for s in suites}, table


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m harness.grading.grade", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--submissions", type=Path, help="folder with one subfolder per student")
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="default: reports/")
    parser.add_argument("--labs", nargs="*", help="only these labs (numbers or folder names)")
    parser.add_argument("--tests-root", type=Path, default=ROOT / "labs", help=argparse.SUPPRESS)
    parser.add_argument(
        "--time-limit",
        type=float,
        default=3600.0,
        help="seconds one student's whole run may take (default 3600)",
    )
    args = parser.parse_args(argv)
    suites = find_suites(args.tests_root, args.labs)
    if not suites:
        print(f"no graded suites (labNN_*/tests) under {args.tests_root}", file=sys.stderr)
        return 2
    cwd = args.tests_root.resolve().parent
    args.out.mkdir(parents=True, exist_ok=True)

    if args.submissions is None:
        print(f"Grading labs/ ({len(suites)} lab(s)); pytest output in {args.out / 'pytest.log'}")
        log = args.out / "pytest.log"
        log.unlink(missing_ok=True)
        labs_dir = args.tests_root.resolve()  # the tests' own labs/ is the copy graded here
        _, table = grade_copy(
            suites, args.out, labs_dir, extra=QUIET + extra, cwd=cwd, log=log, time_limit=None
        )
        print(table)
        print(f"results.json: {args.out / 'results.json'}")
        return 0

    rows: list[tuple[str, str, str, str]] = []
    folders = students(args.submissions)
    if not folders:
        print(f"no student folders under {args.submissions}", file=sys.stderr)
        return 2
    for index, folder in enumerate(folders, start=1):
        out = args.out / folder.name
        out.mkdir(parents=True, exist_ok=True)
        log = out / "pytest.log"
        log.unlink(missing_ok=True)
        labs_dir = student_labs_dir(folder).resolve()
        print(f"[{index}/{len(folders)}] {folder.name} ({labs_dir})", flush=True)
        totals, _ = grade_copy(
            suites,
            out,
            labs_dir,
            extra=QUIET + extra,
            cwd=cwd,
            log=log,
            time_limit=args.time_limit,
        )
        for lab, (score, possible) in totals.items():
            rows.append((folder.name, lab, fmt_points(score), fmt_points(possible)))
        summary = ", ".join(
            f"{LAB_DIR.match(lab).group(1)}: {fmt_points(s)}/{fmt_points(m)}"
            for lab, (s, m) in totals.items()
        )
        print(f"    {summary}", flush=True)
    csv_path = args.out / "grades.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "lab", "score", "max"])
        writer.writerows(rows)
    print(f"{len(folders)} student(s) graded: {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
