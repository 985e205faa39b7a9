"""--target labs|solutions and --labs-dir choose the code under test; the tests stay the repo's."""

from __future__ import annotations

import json

from tests.harness.samples import DEMO_HALF_DONE, DEMO_SOLUTION, DEMO_TESTS

SOLVED = """
def add(a, b):
    return a + b


def double(x):
    return 2 * x
"""


def _score(path) -> float:
    return json.loads(path.read_text())["score"]


def test_target_solutions_imports_the_reference(course):
    """--target solutions grades solutions/<lab>/<module>.py; the default target is labs/."""
    course.module("lab01_demo", "demo", DEMO_HALF_DONE)
    course.module("lab01_demo", "demo", DEMO_SOLUTION, where="solutions")
    course.tests("lab01_demo", DEMO_TESTS)
    result = course.pytester.runpytest("labs", "--target", "solutions", "--grade-json", "s.json")
    result.assert_outcomes(passed=4)
    result = course.pytester.runpytest("labs", "--grade-json", "l.json")
    result.assert_outcomes(passed=2, failed=2)
    assert (_score(course.root / "s.json"), _score(course.root / "l.json")) == (10, 2)


def test_labs_dir_grades_another_copy_with_the_repositorys_tests(course, tmp_path):
    """--labs-dir imports PATH/<lab>/<module>.py; the copy's own tests are never collected."""
    course.module("lab01_demo", "demo", DEMO_HALF_DONE)
    course.tests("lab01_demo", DEMO_TESTS)
    student = tmp_path / "student" / "labs"
    (student / "lab01_demo" / "tests").mkdir(parents=True)
    (student / "lab01_demo" / "demo.py").write_text(SOLVED)
    # A student "fixing" the tests in their copy changes nothing: the repository's tests grade.
    (student / "lab01_demo" / "tests" / "test_lab01_demo.py").write_text(
        "import pytest\n\n@pytest.mark.points(100)\ndef test_partA_free():\n    pass\n"
    )
    result = course.pytester.runpytest("labs", "--labs-dir", str(student), "--grade-json", "r.json")
    result.assert_outcomes(passed=4)
    data = json.loads((course.root / "r.json").read_text())
    assert data["score"] == 10
    assert data["extra_data"]["labs_dir"] == str(student.resolve())
    assert all("free" not in t["name"] for t in data["tests"])


def test_import_messages_name_the_students_file(course, tmp_path):
    """In another copy, the import error names the file relative to that copy."""
    course.tests("lab01_demo", DEMO_TESTS)
    student = tmp_path / "alice" / "labs"
    (student / "lab01_demo").mkdir(parents=True)
    (student / "lab01_demo" / "demo.py").write_text("x = 1\nraise RuntimeError('boom')\n")
    result = course.pytester.runpytest("labs", "--labs-dir", str(student))
    result.stdout.fnmatch_lines(
        ["Lab 01: could not import labs/lab01_demo/demo.py: line 2: RuntimeError: boom"]
    )


def test_labs_dir_must_exist_and_only_goes_with_target_labs(course):
    """Bad combinations are usage errors with a clear message."""
    course.tests("lab01_demo", DEMO_TESTS)
    result = course.pytester.runpytest("labs", "--labs-dir", "nowhere")
    result.stderr.fnmatch_lines(["*--labs-dir nowhere: no such folder*"])
    course.pytester.mkdir("copy")
    result = course.pytester.runpytest("labs", "--target", "solutions", "--labs-dir", "copy")
    result.stderr.fnmatch_lines(["*--labs-dir only applies to --target labs*"])


def test_modules_are_cached_per_target_and_lab(course):
    """Two suites of one lab share one import; its module name is unique to the target."""
    course.module("lab01_demo", "demo", "import itertools\nCOUNTER = itertools.count()\n")
    for name in ("test_lab01_one", "test_lab01_two"):
        course.tests(
            "lab01_demo",
            """
            import pytest
            from harness.grading import lab_module


            @pytest.mark.points(1)
            def test_partA_same_module():
                mod = lab_module("lab01_demo", "demo")
                assert next(mod.COUNTER) in (0, 1)
                assert mod.__name__.startswith("_graded_labs_")
                assert mod is lab_module("lab01_demo", "demo")
            """,
            name=name,
        )
    result = course.pytester.runpytest("labs", "--labs-dir", "labs")
    result.assert_outcomes(passed=2)
