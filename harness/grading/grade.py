"""Instructor grading: every lab against labs/, or every student copy under a folder.

    python -m harness.grading.grade                         # labs/ -> table + reports/results.json
    python -m harness.grading.grade --submissions subs/     # -> reports/grades.csv
                                                            #    + reports/<student>/results.json

Each entry of `--submissions` is one student: a folder, a git repository (`--tag`) or a zip, in
any layout `harness.grading.sources` reads. Each lab of each student is graded in its own process
from a scratch folder (`harness.grading.isolation`): a read-only copy of the instructor's tests,
the student's edited files only, the bubblewrap sandbox when available, time/memory/process
limits. A submission caught importing or reading the reference, writing into the tests or
patching pytest or the harness scores 0 for that lab and is flagged in the `integrity` column.
Arguments after `--` go to pytest.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from harness.grading import isolation, sandbox, sources
from harness.grading.results import (
    LAB_DIR,
    GradedTest,
    RunInfo,
    fmt_points,
    lab_totals,
    render_table,
    to_gradescope,
    write_json,
)
from harness.grading.runner import QUIET, Suite, command_line, find_suites, run_suites
from harness.runtime.config import ROOT

CSV_FIELDS = ["student", "lab", "score", "max", "integrity", "note"]


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
    parser, argv, extra = command_line("harness.grading.grade", __doc__, argv)
    parser.add_argument("--submissions", type=Path, help="folder with one subfolder per student")
    parser.add_argument("--out", type=Path, default=ROOT / "reports", help="default: reports/")
    parser.add_argument("--labs", nargs="*", help="only these labs (numbers or folder names)")
    parser.add_argument("--tests-root", type=Path, default=ROOT / "labs", help=argparse.SUPPRESS)
    parser.add_argument("--tag", help="git submissions: grade this tag, commit or deadline date")
    parser.add_argument(
        "--time-limit", type=float, default=1800.0, help="seconds per lab (default 1800)"
    )
    parser.add_argument("--memory-mb", type=float, default=6144.0, help="MB per lab (default 6144)")
    parser.add_argument(
        "--max-processes", type=int, default=1024, help="processes+threads per lab (sandbox)"
    )
    parser.add_argument(
        "--sandbox",
        choices=("auto", "on", "off"),
        default="auto",
        help="bubblewrap: auto (when available; the report says when not), on (required), off",
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

    return grade_submissions(args, suites, extra)


def grade_student(
    labs_dir: Path,
    suites: list[Suite],
    args: argparse.Namespace,
    extra: list[str],
    log: Path,
) -> tuple[list[GradedTest], RunInfo]:
    """Every lab of one submission, each in its own isolated process; the merged results."""
    course_root = args.tests_root.resolve().parent
    limits = isolation.Limits(args.time_limit, args.memory_mb, args.max_processes)
    use = {"auto": None, "on": True, "off": False}[args.sandbox]
    merged: list[GradedTest] = []
    info = RunInfo(labs_dir=str(labs_dir))
    info.complete = True
    for suite in suites:
        tests, one = isolation.grade_lab(
            suite.lab,
            labs_dir,
            course_root=course_root,
            protect=[args.submissions],
            limits=limits,
            use_sandbox=use,
            extra=QUIET + extra,
            log=log,
        )
        merged += tests
        info.complete &= one.complete
        info.execution_time += one.execution_time
        info.collection_errors += one.collection_errors
        info.integrity += [f"{suite.lab}: {finding}" for finding in one.integrity]
        info.skipped_files += one.skipped_files
        info.sandbox = one.sandbox
        if one.note:
            info.note = "; ".join(filter(None, [info.note, f"{suite.lab}: {one.note}"]))
    return merged, info


def grade_submissions(args: argparse.Namespace, suites: list[Suite], extra: list[str]) -> int:
    edit = {s.lab: isolation.edit_files(args.tests_root, s.lab) for s in suites}
    found = sandbox.availability()
    if args.sandbox == "on" and not found.ok:
        print(f"the sandbox is required (--sandbox on) but not available: {found.reason}")
        return 2
    if args.sandbox == "off" or not found.ok:
        why = "turned off (--sandbox off)" if args.sandbox == "off" else found.reason
        print(
            f"SANDBOX NOT AVAILABLE: {why}. Submissions run unsandboxed, with the integrity "
            "guard only (scratch copy, import and file checks)."
        )
    else:
        print(f"sandbox: {found.reason}")
    rows: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="submissions-") as scratch:
        entries = sources.collect(args.submissions, Path(scratch), edit, args.tag)
        if not entries:
            print(f"no submissions under {args.submissions}", file=sys.stderr)
            return 2
        for index, entry in enumerate(entries, start=1):
            if entry.labs is None:
                print(f"[{index}/{len(entries)}] {entry.student}: NOT GRADED: {entry.problem}")
                rows.append(
                    dict(
                        student=entry.student,
                        lab="",
                        score="",
                        max="",
                        integrity="",
                        note=entry.problem,
                    )
                )
                continue
            out = args.out / entry.student
            out.mkdir(parents=True, exist_ok=True)
            log = out / "pytest.log"
            log.unlink(missing_ok=True)
            print(f"[{index}/{len(entries)}] {entry.student} ({entry.kind})", flush=True)
            tests, info = grade_student(entry.labs, suites, args, extra, log)
            table = render_table(tests, info)
            write_json(out / "results.json", to_gradescope(tests, info, output=table))
            totals = lab_totals(tests)
            for suite in suites:
                score, possible = totals.get(suite.lab, (0.0, 0.0))
                flags = [f.split(": ", 1)[1] for f in info.integrity if f.startswith(suite.lab)]
                rows.append(
                    dict(
                        student=entry.student,
                        lab=suite.lab,
                        score=fmt_points(score),
                        max=fmt_points(possible),
                        integrity="; ".join(flags),
                        note=entry.kind,
                    )
                )
            summary = ", ".join(
                f"{LAB_DIR.match(lab).group(1)}: {fmt_points(s)}/{fmt_points(m)}"
                for lab, (s, m) in totals.items()
            )
            flagged = " INTEGRITY FLAG" if info.integrity else ""
            print(f"    {summary}{flagged}", flush=True)
    csv_path = args.out / "grades.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(entries)} submission(s): {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
