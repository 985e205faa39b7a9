"""The bubblewrap sandbox (issue 15 §4): hostile submissions cost only their own lab, leak nothing.

The tricks here go around the integrity guard on purpose (paths hidden from it in base64, shell
commands), so what stops them is the sandbox itself. bubblewrap is installed by set-up
(`python -m harness.grading.sandbox install`); without it these tests fail loudly.
"""

from __future__ import annotations

import base64
import csv
import json
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from harness.grading import grade, sandbox
from tests.harness.samples import DEMO_SOLUTION, DEMO_TESTS
from tests.harness.test_isolation import SECOND_LAB_GOOD, SECOND_LAB_TESTS

SECRET = "REFERENCE-ANSWER-7f3a"


@pytest.fixture
def two_lab_course(course):
    if not sandbox.availability().ok:
        pytest.fail(
            f"the sandbox is not available: {sandbox.availability().reason} "
            "(set-up installs it: python -m harness.grading.sandbox install)"
        )
    solution = DEMO_SOLUTION.replace('"""Return a + b."""', f'"""Return a + b. {SECRET}"""')
    course.module("lab01_demo", "demo", solution, where="solutions")
    course.tests("lab01_demo", DEMO_TESTS)
    course.write("labs/lab01_demo/lab.toml", 'edit = ["demo.py"]\n')
    course.tests("lab02_more", SECOND_LAB_TESTS)
    course.write("labs/lab02_more/lab.toml", 'edit = ["more.py"]\n')
    return course


def _hidden(path: Path) -> str:
    """A shell expression for `path` that the guard cannot read in the command line."""
    encoded = base64.b64encode(str(path).encode()).decode()
    return f"$(echo {encoded} | base64 -d)"


def _submission(folder: Path, demo: str) -> None:
    for lab, name, code in (("lab01_demo", "demo.py", demo), ("lab02_more", "more.py", None)):
        path = folder / "labs" / lab / name
        path.parent.mkdir(parents=True)
        path.write_text(textwrap.dedent(code).lstrip("\n") if code else SECOND_LAB_GOOD)


def test_hostile_submissions_cost_only_their_own_lab(two_lab_course, tmp_path):
    """Reading solutions/, writing the instructor's tree, os._exit, endless import, a memory hog,
    a fork bomb: each scores 0 in its own lab only, and nothing leaks or changes."""
    course = two_lab_course
    tests_file = course.root / "labs" / "lab01_demo" / "tests" / "test_lab01_demo.py"
    before = tests_file.read_text()
    reference = course.root / "solutions" / "lab01_demo" / "demo.py"
    hostile = {
        "reads_solutions": f"""
            import subprocess
            print(subprocess.run("cat {_hidden(reference)}", shell=True,
                                 capture_output=True, text=True).stdout)
            exec(subprocess.run("cat {_hidden(reference)}", shell=True,
                                capture_output=True, text=True).stdout)
        """,
        "writes_instructor_tree": textwrap.dedent(f"""
            import os
            os.system("echo '# changed' >> {_hidden(tests_file)}")
            os.system("echo '# changed' >> {_hidden(course.root / "conftest.py")}")
        """)
        + textwrap.dedent(DEMO_SOLUTION),
        "exits_in_a_test": """
            import os


            def add(a, b):
                return a + b


            def double(x):
                os._exit(0)
        """,
        "loops_at_import": "while True:\n    pass\n",
        "memory_hog": """
            import time

            hoard = b"x" * (800 * 2**20)
            time.sleep(60)
        """,
        "fork_bomb": """
            import os

            forked = 0
            try:
                while True:
                    if os.fork() == 0:  # the child becomes a small `sleep`: count, not memory
                        os.execv("/bin/sleep", ["sleep", "SLEEP"])
                    forked += 1
            except OSError as exc:
                raise RuntimeError(f"fork failed after {forked} processes: {exc}")
        """,
    }
    subs = tmp_path / "subs"
    _submission(subs / "a_honest", DEMO_SOLUTION)
    sleep = f"60.{uuid.uuid4().int % 10**6:06d}"  # the bomb's children, told from other runs'
    for name, code in hostile.items():
        _submission(subs / name, code.replace("SLEEP", sleep))
    out = tmp_path / "out"
    args = ["--submissions", str(subs), "--tests-root", str(course.root / "labs")]
    args += ["--out", str(out), "--sandbox", "on", "--time-limit", "20"]
    args += ["--max-processes", "64", "--memory-mb", "500"]
    assert grade.main(args) == 0
    with (out / "grades.csv").open() as handle:
        rows = {(r["student"], r["lab"]): r for r in csv.DictReader(handle)}

    assert rows[("a_honest", "lab01_demo")]["score"] == "10"
    for name in ["a_honest", *hostile]:
        # The other lab of every student is untouched by what its lab01 did.
        assert rows[(name, "lab02_more")]["score"] == "5", f"{name}: {rows[(name, 'lab02_more')]}"
    for name in hostile:
        if name != "writes_instructor_tree":  # its own answer is right; it just failed to cheat
            assert rows[(name, "lab01_demo")]["score"] in ("0", "2"), (name, rows)
    assert tests_file.read_text() == before
    assert "# changed" not in (course.root / "conftest.py").read_text()
    for path in out.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), f"the reference leaked: {path}"
    exits = json.loads((out / "exits_in_a_test" / "results.json").read_text())
    assert {t["extra_data"]["status"] for t in exits["tests"] if t["score"] == 0} == {"crashed"}
    loops = json.loads((out / "loops_at_import" / "results.json").read_text())
    assert "time limit (20 s)" in json.dumps(loops)
    hog = json.loads((out / "memory_hog" / "results.json").read_text())
    assert "memory limit (500 MB)" in json.dumps(hog)
    bomb = json.loads((out / "fork_bomb" / "results.json").read_text())
    assert "fork failed after" in json.dumps(bomb)
    left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", sleep]]
    assert not left, "the fork bomb's processes outlived the grading"
