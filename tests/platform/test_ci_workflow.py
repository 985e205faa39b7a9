"""Checks of `.github/workflows/ci.yml`, the CI a fork of the course gets on GitHub.

The workflow must run the README's command (`make test`) on both stacks, and pass actionlint (the
same binary `make lint` builds with `go install` and caches in .stack/bin).
"""

from __future__ import annotations

import re
import subprocess

import yaml

from harness.runtime.config import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def actionlint() -> str:
    """Path of the actionlint that `make lint` uses (built once, then cached)."""
    version = re.search(r"^ACTIONLINT_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert version, "the Makefile should pin ACTIONLINT_VERSION"
    binary = f".stack/bin/actionlint-{version.group(1)}"
    built = subprocess.run(["make", "-s", binary], cwd=ROOT, capture_output=True, text=True)
    assert built.returncode == 0, built.stdout + built.stderr
    return str(ROOT / binary)


def test_workflow_passes_actionlint():
    """actionlint (syntax, expressions, action inputs, runner labels) finds nothing."""
    result = subprocess.run(
        [actionlint(), "-no-color", str(WORKFLOW)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    """The check bites: an unknown runner label and a bad expression are reported."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest-nonexistent\n"
        "    steps:\n      - run: echo ${{ matrix.nope }}\n"
    )
    result = subprocess.run([actionlint(), "-no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "matrix" in result.stdout


def test_both_stacks_run_make_test():
    """One job per stack (native, docker), each running `make test` with STACK set."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    assert set(job["strategy"]["matrix"]["stack"]) == {"native", "docker"}
    assert job["env"]["STACK"] == "${{ matrix.stack }}"
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make test" in runs
    assert any("make demo" in r for r in runs), "the native job should run make demo"


def test_this_repositorys_ci_runs_make_test():
    """.ci/run (this repository's own CI, a machine without Docker) runs the README's command."""
    assert "make test" in (ROOT / ".ci" / "run").read_text()
