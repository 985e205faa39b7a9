"""Submissions in (issue 15 §3): folders, git repositories (HEAD or TAG=), zips in three layouts.

An unknown layout is reported for that student with the reason while the others still grade.
"""

from __future__ import annotations

import csv
import os
import subprocess
import textwrap
import zipfile
from pathlib import Path

from harness.grading import grade
from tests.harness.samples import DEMO_HALF_DONE, DEMO_SOLUTION, DEMO_TESTS

SOLVED = textwrap.dedent(DEMO_SOLUTION)
HALF = textwrap.dedent(DEMO_HALF_DONE)
GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "s",
    "GIT_AUTHOR_EMAIL": "s@localhost",
    "GIT_COMMITTER_NAME": "s",
    "GIT_COMMITTER_EMAIL": "s@localhost",
}


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {**GIT_ENV, **({"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date} if date else {})}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _commit(repo: Path, code: str, message: str, date: str) -> None:
    path = repo / "labs" / "lab01_demo" / "demo.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, date=date)


def _zip(path: Path, files: dict[str, str]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)


def test_every_layout_grades_and_unknown_ones_are_reported(course, tmp_path):
    """git HEAD and TAG, a Classroom zip, a Gradescope upload, a bad zip and a stray file."""
    course.module("lab01_demo", "demo", DEMO_SOLUTION, where="solutions")
    course.tests("lab01_demo", DEMO_TESTS)
    course.write("labs/lab01_demo/lab.toml", 'edit = ["demo.py"]\n')
    subs = tmp_path / "subs"
    repo = subs / "git_student"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q")
    _commit(repo, HALF, "half", "2026-01-10T12:00:00")
    _git(repo, "tag", "deadline")
    _commit(repo, SOLVED, "late", "2026-01-20T12:00:00")
    _zip(
        subs / "classroom.zip",
        {"opensky-labs-main/labs/lab01_demo/demo.py": SOLVED, "opensky-labs-main/README.md": "x"},
    )
    _zip(subs / "gradescope.zip", {"demo.py": HALF})
    _zip(subs / "mystery.zip", {"notes.txt": "my answers are in my head"})
    (subs / "stray.txt").write_text("not a submission")
    out = tmp_path / "out"
    args = ["--submissions", str(subs), "--tests-root", str(course.root / "labs"), "--out"]
    base = [*args, str(out), "--sandbox", "off"]

    def rows(path: Path) -> dict[str, dict[str, str]]:
        with (path / "grades.csv").open() as handle:
            return {row["student"]: row for row in csv.DictReader(handle)}

    assert grade.main(base) == 0
    head = rows(out)
    assert head["git_student"]["score"] == "10" and "git" in head["git_student"]["note"]
    assert head["classroom"]["score"] == "10"
    assert head["gradescope"]["score"] == "2" and "edited files" in head["gradescope"]["note"]
    assert (
        head["mystery"]["score"] == "" and "unknown layout (notes.txt)" in head["mystery"]["note"]
    )
    assert "not a folder, a git repository or a .zip" in head["stray.txt"]["note"]

    # Only the git student is regraded at the tag, then at a deadline date.
    for tag in ("deadline", "2026-01-15"):
        only = tmp_path / f"only-{tag}"
        (only / "git_student").parent.mkdir()
        (only / "git_student").symlink_to(repo)
        target = tmp_path / f"out-{tag}"
        args = ["--submissions", str(only), "--tests-root", str(course.root / "labs")]
        assert grade.main([*args, "--out", str(target), "--sandbox", "off", "--tag", tag]) == 0
        assert rows(target)["git_student"]["score"] == "2", tag
