"""Grading integrity (issue 24): hostile submissions score 0 with a flag; honest ones keep their score.

Graded with `--sandbox off`: these are the guarantees that hold on every machine (scratch copy,
clean sys.path, audit hook, checksums); tests/harness/test_sandbox.py covers bubblewrap on top.
"""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest

from harness.grading import grade
from harness.runtime.config import ROOT
from tests.harness.samples import DEMO_SOLUTION, DEMO_TESTS

LAB_TOML = 'title = "demo"\nedit = ["demo.py"]\nservices = []\n'

# Each hostile submission's demo.py; {root} is the instructor's course folder (a student who
# knows where the grader keeps it).
HOSTILE = {
    "imports_reference": "from solutions.lab01_demo.demo import *\n",
    "reads_reference": """
        from pathlib import Path

        source = Path("{root}/solutions/lab01_demo/demo.py").read_text()
        exec(source)
    """,
    "writes_tests": """
        import inspect
        from pathlib import Path

        for frame in inspect.stack():
            if "/tests/" in frame.filename and Path(frame.filename).is_file():
                with open(frame.filename, "a") as handle:
                    handle.write("\\n# every later student passes\\n")
        with open("{root}/labs/lab01_demo/tests/test_lab01_demo.py", "a") as handle:
            handle.write("\\n# changed by a submission\\n")
    """,
    "replaces_harness_module": """
        import sys
        import tempfile
        from pathlib import Path

        fake = Path(tempfile.mkdtemp()) / "harness" / "grading"
        fake.mkdir(parents=True)
        (fake.parent / "__init__.py").write_text("")
        (fake / "__init__.py").write_text("")
        (fake / "results.py").write_text("FAKE = True\\n")
        sys.path.insert(0, str(fake.parent.parent))
        del sys.modules["harness.grading.results"]
        import harness.grading.results  # noqa: F401,E402


        def add(a, b):
            return a + b


        def double(x):
            return 2 * x
    """,
    "patches_pytest": """
        import _pytest.reports

        _pytest.reports.TestReport.passed = property(lambda self: True)


        def add(a, b):
            return 0


        def double(x):
            return 0
    """,
    "patches_plugin": """
        import harness.grading.pytest_plugin as plugin

        plugin._failure = lambda report, test, config: ("passed", "")


        def add(a, b):
            return a + b


        def double(x):
            return 0
    """,
}


@pytest.fixture
def demo_course(course):
    course.module("lab01_demo", "demo", DEMO_SOLUTION, where="solutions")
    course.tests("lab01_demo", DEMO_TESTS)
    course.write("labs/lab01_demo/lab.toml", LAB_TOML)
    return course


def _submission(folder: Path, code: str) -> None:
    path = folder / "labs" / "lab01_demo" / "demo.py"
    path.parent.mkdir(parents=True)
    path.write_text(textwrap.dedent(code).lstrip("\n"))


def _grade(course, subs: Path, out: Path, *more: str) -> dict[str, dict[str, str]]:
    args = ["--submissions", str(subs), "--tests-root", str(course.root / "labs")]
    assert grade.main([*args, "--out", str(out), "--sandbox", "off", *more]) == 0
    with (out / "grades.csv").open() as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def test_hostile_submissions_score_zero_and_are_flagged(demo_course, tmp_path):
    """Each trick scores 0 with an integrity flag; the honest student in the same run keeps 10."""
    subs = tmp_path / "subs"
    tests_file = demo_course.root / "labs" / "lab01_demo" / "tests" / "test_lab01_demo.py"
    before = tests_file.read_text()
    _submission(subs / "a_honest", DEMO_SOLUTION)
    for name, code in HOSTILE.items():
        _submission(subs / name, code.replace("{root}", str(demo_course.root)))
    _submission(subs / "z_honest_after", DEMO_SOLUTION)
    rows = _grade(demo_course, subs, tmp_path / "out")

    assert rows["a_honest"]["score"] == "10" and rows["a_honest"]["integrity"] == ""
    assert rows["z_honest_after"]["score"] == "10" and rows["z_honest_after"]["integrity"] == ""
    for name in HOSTILE:
        assert rows[name]["score"] == "0", f"{name} should score 0, got {rows[name]}"
        assert rows[name]["integrity"], f"{name} should carry an integrity flag: {rows[name]}"
        data = json.loads((tmp_path / "out" / name / "results.json").read_text())
        assert data["score"] == 0 and data["extra_data"]["integrity"], name
        assert all(t["output"].startswith("Integrity: ") for t in data["tests"]), name
    assert tests_file.read_text() == before, "the instructor's tests must never change"
    assert "reference solution" in rows["imports_reference"]["integrity"]
    assert "reads the instructor's files" in rows["reads_reference"]["integrity"]
    assert "writes into the instructor's tests" in rows["writes_tests"]["integrity"]
    assert "harness.grading.results" in rows["replaces_harness_module"]["integrity"]
    assert "_pytest.reports" in rows["patches_pytest"]["integrity"]
    assert "pytest_plugin._failure" in rows["patches_plugin"]["integrity"]


def test_only_the_edited_files_are_graded(demo_course, tmp_path):
    """A submission's own harness/, conftest.py or tests are never copied into the graded run."""
    subs = tmp_path / "subs"
    folder = subs / "shadow"
    _submission(folder, DEMO_SOLUTION.replace("return 2 * x", "return x"))
    (folder / "conftest.py").write_text("raise SystemExit('never imported')\n")
    fake = folder / "harness" / "grading"
    fake.mkdir(parents=True)
    (fake / "pytest_plugin.py").write_text("raise SystemExit('never imported')\n")
    rows = _grade(demo_course, subs, tmp_path / "out")
    assert rows["shadow"]["score"] == "2" and rows["shadow"]["integrity"] == ""


@pytest.mark.timeout(900)
def test_lab04_one_line_import_of_the_reference_gets_zero(tmp_path):
    """Issue 24 as reported, on real Lab 04: `from solutions… import *` -> 0, "could not import",
    flagged; the reference handed in as an honest submission in the same run keeps full marks."""
    subs = tmp_path / "subs"
    for student, code in (
        ("honest", (ROOT / "solutions" / "lab04_clickhouse" / "clickhouse_lab.py").read_text()),
        ("mallory", "from solutions.lab04_clickhouse.clickhouse_lab import *\n"),
    ):
        path = subs / student / "labs" / "lab04_clickhouse" / "clickhouse_lab.py"
        path.parent.mkdir(parents=True)
        path.write_text(code)
    out = tmp_path / "out"
    assert grade.main(["--submissions", str(subs), "--labs", "4", "--out", str(out)]) == 0
    with (out / "grades.csv").open() as handle:
        rows = {row["student"]: row for row in csv.DictReader(handle)}
    honest, mallory = rows["honest"], rows["mallory"]
    assert float(honest["max"]) > 0 and honest["score"] == honest["max"], honest
    assert honest["integrity"] == ""
    assert mallory["lab"] == "lab04_clickhouse" and mallory["score"] == "0", mallory
    assert "reference solution" in mallory["integrity"]
    data = json.loads((out / "mallory" / "results.json").read_text())
    assert data["score"] == 0
    assert all(
        "could not import labs/lab04_clickhouse/clickhouse_lab.py" in t["output"]
        for t in data["tests"]
    )
