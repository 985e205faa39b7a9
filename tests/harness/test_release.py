"""The student release (issue 15 §2, §3): no solution anywhere, the student's commands work.

One release is built for the module; `make lab-4` and `make submit` run in it as a student would
(on the running stack, with this repository's virtualenv), and the submission it writes is graded.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from harness.grading import grade, release
from harness.runtime.config import ROOT, STACK_DIR

INSTRUCTOR_TARGETS = ("check-tests", "grade", "skeletons", "check-skeletons", "bench", "release")


@pytest.fixture(scope="module")
def student_repo(tmp_path_factory) -> Path:
    return release.build(tmp_path_factory.mktemp("release") / "opensky-labs")


def _make(repo: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`make` in the release with this repository's venv and stack (never a second install)."""
    venv = Path(sys.prefix)
    # STAMP names an existing file: the release's own set-up step sees nothing to install.
    stamp = Path(sys.executable)
    env = {**os.environ, "OPENSKY_STACK_DIR": str(STACK_DIR)}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        ["make", "--no-print-directory", *args, f"VENV={venv}", f"STAMP={stamp}"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_release_holds_no_solution(student_repo):
    """No solutions/, no body of any BEGIN/END SOLUTION block in any file, no wrong answers."""
    assert not (student_repo / "solutions").exists()
    bodies = release.solution_bodies(ROOT / "solutions")
    assert len(bodies) > 20
    assert release.leaks(student_repo, bodies) == []
    assert not list(student_repo.rglob("wrong_answers"))
    assert not (student_repo / "harness" / "grading" / "skeleton.py").exists()
    assert not (student_repo / "tests").exists()


def test_release_is_a_classroom_template(student_repo):
    """A git repository with one commit, a clean tree and a workflow running every lab."""
    log = subprocess.run(
        ["git", "log", "--oneline"], cwd=student_repo, capture_output=True, text=True, check=True
    )
    assert len(log.stdout.splitlines()) == 1
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=student_repo, capture_output=True, text=True
    )
    assert status.stdout == ""
    workflow = yaml.safe_load((student_repo / ".github/workflows/classroom.yml").read_text())
    job = workflow["jobs"]["lab"]
    labs = sorted(int(p.name[3:5]) for p in student_repo.glob("labs/lab[0-9][0-9]_*"))
    assert job["strategy"]["matrix"]["lab"] == labs
    assert any(step.get("run") == "make lab-${{ matrix.lab }}" for step in job["steps"])
    # actionlint, as `make lint` builds it for this repository's own workflows.
    version = re.search(r"^ACTIONLINT_VERSION := (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert version, "the Makefile no longer pins ACTIONLINT_VERSION"
    actionlint = f".stack/bin/actionlint-{version.group(1)}"
    built = subprocess.run(["make", "-s", "-C", str(ROOT), actionlint], capture_output=True)
    assert built.returncode == 0, built.stderr
    lint = subprocess.run(
        [str(ROOT / actionlint), ".github/workflows/classroom.yml"],
        cwd=student_repo,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_student_makefile_has_the_student_commands_only(student_repo):
    """`make help` lists lab-N, up, down, status, doctor, jupyter, submit, test; no instructor's."""
    result = _make(student_repo, "help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("  make ")}
    assert {"lab-N", "up", "down", "status", "doctor", "jupyter", "submit", "test"} <= listed
    assert not listed & set(INSTRUCTOR_TARGETS)
    dry = _make(student_repo, "-n", "lab-4")
    assert "harness.grading.student 4" in dry.stdout


def test_make_lab_4_in_the_release_scores_zero(student_repo):
    """The README's first command in the student's repository: exit 1, 0 points, first failure."""
    result = _make(student_repo, "lab-4")
    out = result.stdout
    assert result.returncode != 0, out
    assert "FIRST FAILING TEST (fix this one first): test_part" in out, out[-3000:]
    assert "Lab 04: 0/" in out and "NotImplementedError" in out, out[-3000:]


def test_make_submit_then_grade_the_zip(student_repo, tmp_path):
    """`make submit` packs the edited files + manifest; `make grade` reads that zip."""
    result = _make(student_repo, "submit")
    assert result.returncode == 0, result.stderr
    archive = student_repo / "submission.zip"
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        manifest = json.loads(zipped.read("manifest.json"))
    expected = {f"labs/{e['lab']}/{e['file']}" for e in manifest["files"]}
    assert names == expected | {"manifest.json"}
    assert "labs/lab04_clickhouse/clickhouse_lab.py" in names
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "student1.zip").write_bytes(archive.read_bytes())
    out = tmp_path / "out"
    assert grade.main(["--submissions", str(subs), "--labs", "4", "--out", str(out)]) == 0
    with (out / "grades.csv").open() as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["student"] == "student1" and row["score"] == "0" and "manifest" in row["note"]
