"""Student code that hangs, does not import, or crashes costs only its own lab."""

from __future__ import annotations

import json
import time

import pytest

from harness.grading import grade
from tests.harness.samples import DEMO_TESTS, graded_suite

SECOND_LAB_TESTS = graded_suite(
    "lab02_more",
    "more",
    '''

    @pytest.mark.points(4)
    def test_partA_value(more):
        """VALUE is 42."""
        assert more.VALUE == 42


    @pytest.mark.points(1)
    def test_partB_name(more):
        """NAME is set."""
        assert more.NAME == "more"
''',
)
SECOND_LAB_GOOD = 'VALUE = 42\nNAME = "more"\n'


def _with_a_good_second_lab(course) -> None:
    """Lab 01's graded suite (its module is the test's) beside a correct Lab 02, which must score
    in full whatever Lab 01's module does."""
    course.tests("lab01_demo", DEMO_TESTS)
    course.module("lab02_more", "more", SECOND_LAB_GOOD)
    course.tests("lab02_more", SECOND_LAB_TESTS)


def _statuses(path) -> dict[str, str]:
    data = json.loads(path.read_text())
    return {
        t["extra_data"]["nodeid"].rsplit("::")[-1]: t["extra_data"]["status"] for t in data["tests"]
    }


def _scores(path) -> dict[str, float]:
    data = json.loads(path.read_text())
    scores: dict[str, float] = {}
    for test in data["tests"]:
        lab = test["extra_data"]["lab"]
        scores[lab] = scores.get(lab, 0) + test["score"]
    return scores


def test_an_endless_loop_costs_only_that_test(course):
    """A test stopped by the time limit scores 0; the next tests and labs still run."""
    course.module(
        "lab01_demo",
        "demo",
        """
        def add(a, b):
            while True:
                pass


        def double(x):
            return 2 * x
        """,
    )
    _with_a_good_second_lab(course)
    result = course.pytester.runpytest(
        "labs", "--labs-dir", "labs", "--timeout", "2", "--grade-json", "r.json"
    )
    result.assert_outcomes(passed=5, failed=1)
    statuses = _statuses(course.root / "r.json")
    assert statuses["test_partA_adds"] == "timeout"
    assert statuses["test_partB_doubles"] == "passed"
    assert _scores(course.root / "r.json") == {"lab01_demo": 8, "lab02_more": 5}
    data = json.loads((course.root / "r.json").read_text())
    message = next(t["output"] for t in data["tests"] if "test_partA_adds" in t["name"])
    assert "stopped after 2.0 s" in message and "endless loop" in message


def test_a_swallowed_timeout_is_raised_again(course):
    """Code that swallows the timeout (as pyspark's clean-up can) is interrupted again."""
    course.tests(
        "lab01_demo",
        """
        import time

        import pytest


        @pytest.mark.points(1)
        def test_partA_swallows_the_timeout():
            try:
                while True:
                    pass
            except BaseException:
                pass
            time.sleep(60)  # without a second alarm this test would pass after a minute
        """,
    )
    started = time.monotonic()
    result = course.pytester.runpytest("labs", "--timeout", "1", "--grade-json", "r.json")
    result.assert_outcomes(failed=1)
    assert time.monotonic() - started < 30
    assert _statuses(course.root / "r.json") == {"test_partA_swallows_the_timeout": "timeout"}


def test_an_import_error_fails_only_its_lab_and_names_file_and_line(course):
    """An exception while importing the lab module fails that lab's tests with file and line."""
    course.module(
        "lab01_demo",
        "demo",
        """
        def add(a, b):
            return a + b

        RESULT = add(1, undefined_name)
        """,
    )
    _with_a_good_second_lab(course)
    result = course.pytester.runpytest("labs", "--labs-dir", "labs", "--grade-json", "r.json")
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines(
        [
            "Lab 01: could not import labs/lab01_demo/demo.py: line 4: "
            "NameError: name 'undefined_name' is not defined",
            "    4 | RESULT = add(1, undefined_name)",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert _scores(course.root / "r.json") == {"lab01_demo": 0, "lab02_more": 5}
    # Under the score table, the lab's note names the lab once.
    result.stdout.re_match_lines([r"^! Lab 01: could not import labs/lab01_demo/demo.py: line 4"])


@pytest.mark.parametrize(
    ("modules", "suites", "outcomes", "messages"),
    [
        pytest.param(
            {"lab01_demo/demo": "def add(a, b)\n    return a + b\n"},
            {"lab01_demo": DEMO_TESTS},
            {"passed": 1, "errors": 3},
            ["Lab 01: could not import labs/lab01_demo/demo.py: line 1: SyntaxError: *"],
            id="a syntax error",
        ),
        pytest.param(
            {"lab02_more/more": "import sys\nsys.exit(3)\n"},
            {"lab01_demo": DEMO_TESTS, "lab02_more": SECOND_LAB_TESTS},
            {"passed": 1, "errors": 5},
            [
                "Lab 01: could not import labs/lab01_demo/demo.py: the file does not exist*",
                "Lab 02: could not import labs/lab02_more/more.py: line 2: "
                "the file calls exit() / sys.exit() while being imported",
            ],
            id="a missing file and exit at import",
        ),
    ],
)
def test_a_module_that_does_not_import_is_reported_with_file_and_line(
    course, modules, suites, outcomes, messages
):
    """A SyntaxError names the file and the line; a missing file and a sys.exit() at import are
    readable errors, cached per lab."""
    for where, text in modules.items():
        course.module(*where.split("/"), text)
    for lab, tests in suites.items():
        course.tests(lab, tests)
    result = course.pytester.runpytest("labs", "--labs-dir", "labs")
    result.assert_outcomes(**outcomes)
    for message in messages:
        result.stdout.fnmatch_lines([message])


def test_an_endless_loop_at_import_costs_only_that_lab(course):
    """A module that never finishes importing times out once; the lab's tests fail, others run."""
    course.module("lab01_demo", "demo", "while True:\n    pass\n")
    _with_a_good_second_lab(course)
    result = course.pytester.runpytest(
        "labs", "--labs-dir", "labs", "--timeout", "1", "--grade-json", "r.json"
    )
    result.assert_outcomes(passed=3, errors=3)
    assert _scores(course.root / "r.json") == {"lab01_demo": 0, "lab02_more": 5}
    result.stdout.fnmatch_lines(["*importing it did not finish in time*"])


def test_a_crash_costs_only_its_lab(course, tmp_path):
    """A test process that dies (os._exit in student code) costs that lab; the next labs grade."""
    course.module(
        "lab01_demo",
        "demo",
        """
        import os


        def add(a, b):
            return a + b


        def double(x):
            os._exit(13)
        """,
    )
    _with_a_good_second_lab(course)
    out = tmp_path / "reports"
    assert grade.main(["--tests-root", str(course.root / "labs"), "--out", str(out)]) == 0
    results = out / "results.json"
    statuses = _statuses(results)
    assert statuses == {
        "test_partA_adds": "passed",
        "test_partB_doubles": "crashed",
        "test_partB_doubles_negative": "crashed",
        "test_partA_value": "passed",
        "test_partB_name": "passed",
    }
    assert _scores(results) == {"lab01_demo": 2, "lab02_more": 5}
    data = json.loads(results.read_text())
    crashed = next(t for t in data["tests"] if "test_partB_doubles —" in t["name"])
    assert "exited with code 13" in crashed["output"]
