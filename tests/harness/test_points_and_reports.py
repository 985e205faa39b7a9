"""The points marker, the score table and Gradescope's results.json."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.harness.samples import DEMO_HALF_DONE, DEMO_TESTS, one_point_tests

# Gradescope's results.json fields ("Output format" in the Gradescope autograder docs).
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
GRADESCOPE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["score", "execution_time", "output", "tests"],
    "properties": {
        "score": {"type": "number"},
        "execution_time": {"type": "number"},
        "output": {"type": "string"},
        "output_format": {"type": "string"},
        "test_output_format": {"type": "string"},
        "test_name_format": {"type": "string"},
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "leaderboard": {"type": "array"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "score", "max_score", "output", "visibility"],
                "properties": {
                    "score": {"type": "number"},
                    "max_score": {"type": "number"},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": {"type": "string"},
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "output_format": {"type": "string"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": VISIBILITY,
                    "extra_data": {"type": "object"},
                },
            },
        },
    },
}


def _two_labs(course) -> None:
    course.module("lab01_demo", "demo", DEMO_HALF_DONE)
    course.tests("lab01_demo", DEMO_TESTS)
    course.module("lab02_more", "more", "VALUE = 42\n")
    course.tests(
        "lab02_more",
        '''
        import pytest
        from harness.grading import lab_module


        @pytest.mark.points(4)
        def test_partA_value():
            """VALUE is 42."""
            assert lab_module("lab02_more", "more").VALUE == 42
        ''',
    )


def test_points_add_up_per_lab_and_part(course):
    """The table shows earned/possible per lab and per part, and the total."""
    _two_labs(course)
    result = course.pytester.runpytest("labs", "--labs-dir", "labs")
    result.assert_outcomes(passed=3, failed=2)
    text = result.stdout.str()
    assert "score" in text
    result.stdout.re_match_lines(
        [
            r"Lab 01\s+lab01_demo\s+1/3\s+2 / 10$",
            r"\s+part A\s+1/1\s+2 / 2$",
            r"\s+part B\s+0/2\s+0 / 8$",
            r"Lab 02\s+lab02_more\s+1/1\s+4 / 4$",
            r"\s+part A\s+1/1\s+4 / 4$",
            r"Total\s+2/4\s+6 / 14$",
        ],
        consecutive=False,
    )


def test_no_table_without_graded_tests(course):
    """A run without points-marked tests prints no score table."""
    course.write("labs/lab01_demo/tests/test_plain.py", "def test_plain():\n    pass\n")
    result = course.pytester.runpytest("labs")
    result.assert_outcomes(passed=1)
    assert "= score =" not in result.stdout.str()


def test_points_marker_is_registered_and_strict(course):
    """`points` is a registered marker with help text; unknown markers fail under --strict-markers."""
    result = course.pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.points(n): a graded test worth n points*"])
    course.write(
        "labs/lab01_demo/tests/test_typo.py",
        "import pytest\n\n@pytest.mark.pionts(1)\ndef test_partA_x():\n    pass\n",
    )
    result = course.pytester.runpytest("labs", "--strict-markers")
    result.stdout.fnmatch_lines(["*'pionts' not found in `markers` configuration option*"])


def test_points_must_be_a_positive_number(course):
    """A bad points value is a usage error, not a silently ungraded test."""
    course.write(
        "labs/lab01_demo/tests/test_bad.py",
        "import pytest\n\n@pytest.mark.points('two')\ndef test_partA_x():\n    pass\n",
    )
    result = course.pytester.runpytest("labs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_partA_x: @pytest.mark.points needs a positive number*"])


def test_results_json_matches_gradescope_format(course):
    """--grade-json writes a document Gradescope accepts, with per-test scores and messages."""
    _two_labs(course)
    result = course.pytester.runpytest("labs", "--labs-dir", "labs", "--grade-json", "out/r.json")
    result.assert_outcomes(passed=3, failed=2)
    data = json.loads((course.root / "out" / "r.json").read_text())
    jsonschema.validate(data, GRADESCOPE_SCHEMA)
    assert data["score"] == 6
    assert sum(t["max_score"] for t in data["tests"]) == 14
    by_name = {t["name"].split(": ", 1)[1].split(" — ")[0]: t for t in data["tests"]}
    assert set(by_name) == {
        "test_partA_adds",
        "test_partB_doubles",
        "test_partB_doubles_negative",
        "test_partA_value",
    }
    failed = by_name["test_partB_doubles"]
    assert failed["score"] == 0 and failed["max_score"] == 3 and failed["status"] == "failed"
    assert "Lab 01 part B: double(4) should be 8, got 6" in failed["output"]
    assert failed["name"].startswith("Lab 01 part B: test_partB_doubles — double() doubles")
    assert by_name["test_partA_adds"]["status"] == "passed"
    assert data["extra_data"]["complete"] is True
    assert "Total" in data["output"]


def test_results_json_survives_an_interrupted_run(course):
    """A run stopped part-way (Ctrl-C) still leaves a valid results.json saying so."""
    course.module("lab01_demo", "demo", DEMO_HALF_DONE)
    course.tests(
        "lab01_demo",
        one_point_tests(first="pass", interrupts="raise KeyboardInterrupt", never_runs="pass"),
    )
    result = course.pytester.runpytest_subprocess("labs", "--grade-json", "r.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    data = json.loads((course.root / "r.json").read_text())
    jsonschema.validate(data, GRADESCOPE_SCHEMA)
    statuses = [t["extra_data"]["status"] for t in data["tests"]]
    assert statuses == ["passed", "error", "not run"]
    assert data["score"] == 1
    assert data["extra_data"]["complete"] is False
    assert "interrupted" in data["extra_data"]["note"]


def test_results_json_is_kept_current_during_the_run(course):
    """The file is rewritten as tests run, so a process that dies leaves what it had done."""
    course.tests(
        "lab01_demo",
        one_point_tests(
            ("json",),
            first="pass",
            reads_the_file="""
                data = json.load(open("r.json"))
                statuses = [t["extra_data"]["status"] for t in data["tests"]]
                assert statuses == ["passed", "running", "not run"], statuses
            """,
            later="pass",
        ),
    )
    result = course.pytester.runpytest("labs", "--grade-json", "r.json")
    result.assert_outcomes(passed=3)


def test_spark_style_output_noise_fails_nothing(course):
    """Output written straight to the process's stdout/stderr (as Spark's JVM does) is harmless."""
    course.tests(
        "lab01_demo",
        one_point_tests(
            ("os", "sys"),
            noisy="""
                os.write(1, b"WARN NativeCodeLoader: Unable to load native-hadoop library\\n" * 50)
                os.write(2, b"ERROR some JVM log line [Stage 0:>   (0 + 2) / 2]\\r\\n" * 50)
                print("print noise")
                print("stderr noise", file=sys.stderr)
            """,
        ),
    )
    result = course.pytester.runpytest("labs", "--grade-json", "r.json")
    result.assert_outcomes(passed=1)
    assert json.loads((course.root / "r.json").read_text())["score"] == 1
