"""`make release DEST=path`: the repository a student gets (nbgrader's source -> release step).

It holds labs/ (pristine skeletons generated from solutions/, README, lab.toml, graded tests
without wrong answers), notebooks/, data/, infra/, the harness without the instructor's tools,
and the student README, Makefile, .gitignore and GitHub Classroom workflow from
`harness/grading/release_template/`. No solutions/, and no solution body anywhere: the build
checks every file against every block between BEGIN/END SOLUTION markers and fails if one shows.
The result is a git repository with one commit, ready to push as a Classroom template.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.grading import INSTRUCTOR_ONLY, skeleton
from harness.runtime.config import ROOT

TEMPLATE = Path(__file__).parent / "release_template"
COPIED = (
    "labs",
    "notebooks",
    "data",
    "infra",
    "harness",
    "scripts",
    "conftest.py",
    "pyproject.toml",
    "requirements.lock",
)
# The student's copy runs no autograder.
LEFT_OUT = shutil.ignore_patterns(*INSTRUCTOR_ONLY, "autograder.py")


def solution_bodies(solutions: Path) -> list[tuple[str, str]]:
    """(where, text) of every marked block in solutions/ (the lines between the markers)."""
    bodies = []
    suffixes = (".py", *skeleton.PROJECT_COMMENTS)  # Python, and the SQL/YAML of project labs
    for path in sorted(p for p in solutions.rglob("*") if p.suffix in suffixes and p.is_file()):
        source = path.read_text()
        lines = source.splitlines()
        for block in skeleton.find_blocks(source, str(path)):
            text = "\n".join(lines[block.begin : block.end - 1]).strip()
            if text:
                bodies.append((f"{path.relative_to(solutions.parent)}:{block.begin}", text))
    return bodies


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def leaks(tree: Path, bodies: list[tuple[str, str]]) -> list[str]:
    """Every file of `tree` that contains a solution body (whitespace-insensitive)."""
    found = []
    files = [p for p in tree.rglob("*") if p.is_file() and ".git" not in p.parts]
    texts = {p: _squash(p.read_text(errors="replace")) for p in files}
    for where, body in bodies:
        squashed = _squash(body)
        found += [f"{p.relative_to(tree)} holds {where}" for p, t in texts.items() if squashed in t]
    return found


def copy_items(root: Path, names: Iterable[str], dest: Path, ignore: Callable) -> None:
    """Copy the folders and files `names` of `root` into `dest` (a name not there is skipped)."""
    for name in names:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, dest / name)


def build(dest: Path, root: Path = ROOT, commit: bool = True) -> Path:
    if dest.exists() and any(dest.iterdir()):
        raise SystemExit(f"{dest} is not empty: release into a new folder")
    dest.mkdir(parents=True, exist_ok=True)
    copy_items(root, COPIED, dest, LEFT_OUT)
    # The skeletons are generated afresh: the instructor's labs/ may hold a solved copy.
    skeleton.write_tree(root / "solutions", dest / "labs")
    shutil.copytree(TEMPLATE, dest, dirs_exist_ok=True)
    workflow = dest / ".github" / "workflows" / "classroom.yml"
    numbers = sorted(
        int(p.name[3:5]) for p in (dest / "labs").iterdir() if re.match(r"lab\d\d_", p.name)
    )
    workflow.write_text(workflow.read_text().replace("[1, 2, 3, 4, 5, 6]", str(numbers)))
    found = leaks(dest, solution_bodies(root / "solutions"))
    if found:
        raise SystemExit("solution code in the release:\n  " + "\n  ".join(found))
    if commit:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "OpenSky labs",
            "GIT_AUTHOR_EMAIL": "labs@localhost",
            "GIT_COMMITTER_NAME": "OpenSky labs",
            "GIT_COMMITTER_EMAIL": "labs@localhost",
        }
        for argv in (
            ["git", "init", "-q", "-b", "main"],
            ["git", "add", "-A"],
            ["git", "commit", "-q", "-m", "OpenSky Data Engineering Labs: student release"],
        ):
            subprocess.run(argv, cwd=dest, env=env, check=True)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.grading.release", description=__doc__)
    parser.add_argument("dest", type=Path, help="a new folder for the student repository")
    args = parser.parse_args(argv)
    build(args.dest)
    print(f"student release written to {args.dest} (a git repository; no solutions/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
