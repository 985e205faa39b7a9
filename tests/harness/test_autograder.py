"""The Gradescope autograder bundle (issue 15 §5): built, laid out in a fake /autograder, run.

`run_autograder` runs on a sample Lab 04 submission (only ClickHouse) against the running stack,
and its results.json is validated with Gradescope's results schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from harness.grading import autograder, release
from harness.runtime.config import ROOT, STACK_DIR

SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return autograder.build(4, tmp_path_factory.mktemp("bundle") / "autograder-lab04.zip")


def test_bundle_has_gradescopes_layout_and_no_solution(bundle, tmp_path):
    """setup.sh and run_autograder at the top (executable), source/ with lab 04 only."""
    with zipfile.ZipFile(bundle) as archive:
        names = archive.namelist()
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
        archive.extractall(tmp_path)
    assert {"setup.sh", "run_autograder"} <= set(names)
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert not [n for n in names if n.startswith("source/solutions")]
    assert {n.split("/")[2] for n in names if n.startswith("source/labs/")} == {"lab04_clickhouse"}
    bodies = release.solution_bodies(ROOT / "solutions")
    assert release.leaks(tmp_path / "source", bodies) == []
    assert "make setup" in (tmp_path / "setup.sh").read_text()


def _run(root: Path, submission_code: str) -> dict:
    with zipfile.ZipFile(root.parent / "autograder-lab04.zip") as archive:
        archive.extractall(root)
    for script in ("setup.sh", "run_autograder"):
        (root / script).chmod(0o755)
    upload = root / "submission"
    upload.mkdir()
    (upload / "clickhouse_lab.py").write_text(submission_code)  # Gradescope: the uploaded file
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    env["OPENSKY_STACK_DIR"] = str(STACK_DIR)
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(root / "run_autograder")], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads((root / "results" / "results.json").read_text())


@pytest.mark.timeout(900)
def test_run_autograder_grades_a_submission(bundle, tmp_path):
    """The skeleton scores 0 with every test listed; the JSON is valid Gradescope output."""
    root = bundle.parent / "autograder"
    with zipfile.ZipFile(bundle) as archive:  # the bundle's own pristine skeleton
        skeleton_code = archive.read("source/labs/lab04_clickhouse/clickhouse_lab.py").decode()
    data = _run(root, skeleton_code)
    jsonschema.validate(data, SCHEMA)
    assert data["score"] == 0 and len(data["tests"]) > 5
    assert all(t["status"] == "failed" for t in data["tests"])
    assert any("NotImplementedError" in t["output"] for t in data["tests"]), data["output"]


@pytest.mark.timeout(900)
def test_run_autograder_flags_the_reference_import(bundle, tmp_path):
    """Issue 24 in the bundle: importing solutions scores 0 with the integrity flag."""
    root = tmp_path / "autograder"
    (tmp_path / "autograder-lab04.zip").write_bytes(bundle.read_bytes())
    data = _run(root, "from solutions.lab04_clickhouse.clickhouse_lab import *\n")
    jsonschema.validate(data, SCHEMA)
    assert data["score"] == 0 and data["extra_data"]["integrity"]
