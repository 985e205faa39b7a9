"""`make autograder LAB=N`: autograder-labNN.zip for Gradescope, and what runs inside it.

The zip holds Gradescope's two scripts (from `harness/grading/autograder_template/`) and `source/`:
the harness, infra/, data/, the student Makefile (its `make setup` is the project's own set-up)
and the one lab with its graded tests and its pristine skeleton; no solutions/, and the build
fails if any solution body shows up in it.

    python -m harness.grading.autograder build --lab 4 [--out autograder-lab04.zip]
    python -m harness.grading.autograder run --lab 4 --submission DIR --results results.json
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from harness.grading import INSTRUCTOR_ONLY, isolation, sources
from harness.grading.results import RunInfo, render_table, to_gradescope, write_json
from harness.grading.runner import find_suites
from harness.runtime.config import ROOT

TEMPLATE = Path(__file__).parent / "autograder_template"
SCRIPTS = ("setup.sh", "run_autograder")
COURSE_ITEMS = ("infra", "data", "scripts", "conftest.py", "pyproject.toml", "requirements.lock")
LEFT_OUT = shutil.ignore_patterns(*INSTRUCTOR_ONLY, "autograder_template")


def lab_name(key: str | int, root: Path = ROOT) -> str:
    """`4` or `lab04_clickhouse` -> `lab04_clickhouse`."""
    return find_suites(root / "labs", [str(key)])[0].lab


def build(key: str | int, out: Path | None = None, root: Path = ROOT) -> Path:
    """Write the bundle; returns its path."""
    # Instructor-side tools: not in the bundle, so imported only here.
    from harness.grading import release, skeleton

    lab = lab_name(key, root)
    out = out or root / f"autograder-{lab[:5]}.zip"
    with tempfile.TemporaryDirectory(prefix="autograder-") as temp:
        source = Path(temp) / "source"
        release.copy_items(root, ("harness", *COURSE_ITEMS), source, LEFT_OUT)
        shutil.copytree(root / "labs" / lab, source / "labs" / lab, ignore=LEFT_OUT)
        skeletons = Path(temp) / "skeletons"
        skeleton.write_tree(root / "solutions", skeletons)
        for module in (skeletons / lab).glob("*.py"):
            shutil.copyfile(module, source / "labs" / lab / module.name)
        shutil.copy2(release.TEMPLATE / "Makefile", source / "Makefile")
        (source / "LAB").write_text(f"{int(lab[3:5])}\n")
        found = release.leaks(source, release.solution_bodies(root / "solutions"))
        if found:
            raise SystemExit("solution code in the autograder bundle:\n  " + "\n  ".join(found))
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in SCRIPTS:
                _add(archive, TEMPLATE / name, name, executable=True)
            for path in sorted(source.rglob("*")):
                if path.is_file():
                    _add(
                        archive,
                        path,
                        str(path.relative_to(source.parent)),
                        path.stat().st_mode & 0o111,
                    )
    return out


def _add(archive: zipfile.ZipFile, path: Path, name: str, executable: bool | int = False) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    archive.writestr(info, path.read_bytes())


def run(key: str | int, submission: Path, results: Path, root: Path = ROOT) -> int:
    """Grade the uploaded submission with the lab's suite; write Gradescope's results.json."""
    lab = lab_name(key, root)
    edit = {lab: isolation.edit_files(root / "labs", lab)}
    results.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="upload-") as temp:
        entry = sources.read_folder(submission, Path(temp) / "upload", edit)
        if entry.labs is None:
            info = RunInfo(note=f"the submission could not be read: {entry.problem}", complete=True)
            write_json(results, to_gradescope([], info))
            print(info.note)
            return 0
        tests, info = isolation.grade_lab(
            lab, entry.labs, course_root=root, log=results.parent / "pytest.log"
        )
    table = render_table(tests, info)
    write_json(results, to_gradescope(tests, info, output=table))
    print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.grading.autograder", description=__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="write autograder-labNN.zip")
    make.add_argument("--lab", required=True)
    make.add_argument("--out", type=Path)
    grade = commands.add_parser("run", help="grade one submission (inside Gradescope)")
    grade.add_argument("--lab", required=True)
    grade.add_argument("--submission", type=Path, required=True)
    grade.add_argument("--results", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "build":
        out = build(args.lab, args.out)
        print(f"{out}: upload it as the Gradescope autograder of {lab_name(args.lab)}")
        return 0
    return run(args.lab, args.submission, args.results)


if __name__ == "__main__":
    sys.exit(main())
