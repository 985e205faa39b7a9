"""The instructor and student commands: check-tests (bite), grade, grade SUBMISSIONS=, lab-N."""

from __future__ import annotations

import csv
import json
import textwrap

from harness.grading import bite, grade, student
from tests.harness.samples import DEMO_HALF_DONE, DEMO_SOLUTION, DEMO_TESTS

VACUOUS_TEST = '''

    @pytest.mark.points(1)
    def test_partB_vacuous(demo):
        """Passes whatever the student wrote: grades nothing."""
        assert demo is not None
'''


def _course_with_solution(course, tests: str = DEMO_TESTS) -> None:
    course.module("lab01_demo", "demo", DEMO_SOLUTION, where="solutions")
    course.tests("lab01_demo", tests)
    course.write("labs/lab01_demo/lab.toml", 'edit = ["demo.py"]\n')


def _bite_args(course) -> list[str]:
    return [
        "--solutions",
        str(course.root / "solutions"),
        "--tests-root",
        str(course.root / "labs"),
    ]


def test_check_tests_catches_a_vacuous_test(course, capsys):
    """A graded test that passes on the pristine skeleton fails the check, by name."""
    _course_with_solution(course, DEMO_TESTS + VACUOUS_TEST)
    # The committed labs/ copy is solved: the check must ignore it and use fresh skeletons.
    course.module(
        "lab01_demo", "demo", DEMO_SOLUTION.replace("# BEGIN", "# was").replace("# END", "# was")
    )
    assert bite.main(_bite_args(course)) == 1
    out = capsys.readouterr().out
    assert "FAIL: 1 graded test(s) PASS on the empty skeletons" in out
    assert "test_lab01_demo.py::test_partB_vacuous" in out
    assert "test_partA_adds" not in out.split("FAIL:")[1]


def test_check_tests_passes_when_every_test_bites(course, capsys):
    """With no vacuous test the check passes and says how many tests it ran."""
    _course_with_solution(course)
    assert bite.main(_bite_args(course)) == 0
    assert "OK: all 3 graded tests in 1 lab(s) fail on the skeletons." in capsys.readouterr().out


def test_grade_untouched_labs_scores_zero_without_traceback(course, tmp_path, capsys):
    """`make grade` on skeletons prints every lab at 0 and writes results.json."""
    _course_with_solution(course)
    from harness.grading import skeleton

    skeleton.write_tree(course.root / "solutions", course.root / "labs")
    out = tmp_path / "reports"
    assert grade.main(["--tests-root", str(course.root / "labs"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Traceback" not in text
    assert "Lab 01  lab01_demo" in text and "0 / 10" in text
    data = json.loads((out / "results.json").read_text())
    assert data["score"] == 0 and len(data["tests"]) == 3
    assert "NotImplementedError: Lab 01, part A: add()" in data["tests"][0]["output"]


def test_grade_submissions_writes_one_csv_and_each_students_json(course, tmp_path):
    """Every student is graded in their own process; broken code stops nobody else."""
    _course_with_solution(course)
    subs = tmp_path / "subs"
    # alice: a whole repository; bob: just a labs/ copy; carol: nothing usable; dave: crashes.
    for name, layout, code in [
        ("alice", "labs/", textwrap.dedent(DEMO_SOLUTION)),
        ("bob", "", textwrap.dedent(DEMO_HALF_DONE)),
        ("carol", "labs/", None),
        ("dave", "", "import os\nos._exit(9)\n"),
    ]:
        folder = subs / name / layout / "lab01_demo"
        folder.mkdir(parents=True)
        if code is not None:
            (folder / "demo.py").write_text(code)
    out = tmp_path / "out"
    args = [
        "--submissions",
        str(subs),
        "--tests-root",
        str(course.root / "labs"),
        "--out",
        str(out),
    ]
    assert grade.main(args) == 0
    with (out / "grades.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [
        {k: row[k] for k in ("student", "lab", "score", "max", "integrity")} for row in rows
    ] == [
        {"student": "alice", "lab": "lab01_demo", "score": "10", "max": "10", "integrity": ""},
        {"student": "bob", "lab": "lab01_demo", "score": "2", "max": "10", "integrity": ""},
        {"student": "carol", "lab": "lab01_demo", "score": "0", "max": "10", "integrity": ""},
        {"student": "dave", "lab": "lab01_demo", "score": "0", "max": "10", "integrity": ""},
    ]
    for name in ("alice", "bob", "carol", "dave"):
        assert json.loads((out / name / "results.json").read_text())["tests"]
    carol = json.loads((out / "carol" / "results.json").read_text())
    assert "the file does not exist" in carol["tests"][0]["output"]
    dave = json.loads((out / "dave" / "results.json").read_text())
    assert [t["extra_data"]["status"] for t in dave["tests"]] == ["crashed"] * 3


def test_student_command_shows_the_first_failure(course, capsys):
    """`make lab-N` prints the first failing test with its message, and the lab's table."""
    course.module("lab01_demo", "demo", DEMO_HALF_DONE)
    course.tests("lab01_demo", DEMO_TESTS)
    assert student.main(["1", "--tests-root", str(course.root / "labs")]) == 1
    out = capsys.readouterr().out
    first = out.index("FIRST FAILING TEST (fix this one first): test_partB_doubles\n")
    assert "Lab 01 part B: double(4) should be 8, got 6" in out[first:]
    assert "checks: double() doubles a number." in out[first:]
    # Only one failure is spelled out; the other is just counted.
    assert "test_partB_doubles_negative" not in out[first : out.index("lab / part")]
    assert "Total" in out
    assert out.rstrip().endswith(
        "Lab 01: 2/10 points. Next: fix test_partB_doubles (1 more after it), "
        "then run `make lab-1` again."
    )


def test_student_command_when_everything_passes(course, capsys):
    """All green: exit 0 and say so."""
    course.module("lab01_demo", "demo", DEMO_SOLUTION)
    course.tests("lab01_demo", DEMO_TESTS)
    assert student.main(["lab01_demo", "--tests-root", str(course.root / "labs")]) == 0
    out = capsys.readouterr().out
    assert "FIRST FAILING TEST" not in out
    assert "Lab 01: 10/10 points. Every graded test passes." in out
