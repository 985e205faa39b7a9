"""The README's commands, run as a user types them: a command the README documents must do its job.

`make lab-1` was once a silent no-op (GNU Make skips pattern rules for .PHONY targets); these tests run the
documented commands literally so that can never land again.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from harness.runtime.config import ROOT
from harness.runtime.labs import all_labs

README = ROOT / "README.md"
MAKE_ERROR = re.compile(r"make(\[\d+\])?: \*\*\*")  # make's own "*** [target] Error 2" line


def make(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`make ARGS` as a user types it in a shell (not as a sub-make of `make test`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def readme_make_targets() -> list[str]:
    """Every `make <target>` written in a shell block of the README."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    targets = []
    for block in blocks:
        for line in block.splitlines():
            for match in re.finditer(r"(?:^|\s)make ([a-z][a-z0-9-]*)", line.split("#", 1)[0]):
                if match.group(1) not in targets:
                    targets.append(match.group(1))
    return targets


def test_readme_documents_the_lab_commands() -> None:
    """The quick start names `make lab-1` and `make test`, the two commands a fresh clone is promised."""
    targets = readme_make_targets()
    assert "lab-1" in targets and "test" in targets, targets


@pytest.mark.parametrize("target", readme_make_targets())
def test_every_readme_make_command_has_a_recipe(target: str) -> None:
    """`make -n <target>` for each README command prints commands to run, not "Nothing to be done"."""
    result = make("-n", target)
    assert result.returncode == 0, f"make -n {target} failed:\n{result.stderr}"
    assert "Nothing to be done" not in result.stdout + result.stderr, (
        f"`make {target}` from the README does nothing:\n{result.stdout}{result.stderr}"
    )
    assert result.stdout.strip(), f"`make -n {target}` printed no commands"


@pytest.mark.parametrize("lab", all_labs(), ids=lambda lab: f"lab-{lab.number}")
def test_make_lab_n_runs_that_labs_suite(lab) -> None:
    """`make -n lab-N` starts the lab's own services and runs its graded suite."""
    result = make("-n", f"lab-{lab.number}")
    assert result.returncode == 0, result.stderr
    assert f"harness.ops.stack up --lab {lab.number}" in result.stdout, result.stdout
    assert f"harness.grading.student {lab.number}" in result.stdout, result.stdout


def test_make_help_lists_every_command_and_lab() -> None:
    """`make` alone (help) names lab-N, the labs that exist, and every README command."""
    result = make()
    assert result.returncode == 0, result.stderr
    assert "make lab-N" in result.stdout
    for lab in all_labs():
        assert f"lab-{lab.number}" in result.stdout
    for target in readme_make_targets():
        if not target.startswith("lab-"):
            assert f"make {target} " in result.stdout, f"`make help` does not list `make {target}`"


@pytest.mark.parametrize("name", ["lab-x", "lab-99"])
def test_unknown_lab_is_a_one_line_error(name: str) -> None:
    """`make lab-x` fails at once with one line that lists the labs."""
    result = make(name)
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if not MAKE_ERROR.match(line)]
    assert len(message) == 1, result.stderr
    assert "no such lab" in message[0] and "lab-1" in message[0], message[0]


def test_make_lab_4_on_the_pristine_skeleton_scores_zero_and_names_the_first_failure() -> None:
    """`make lab-4`, as a student types it on a fresh copy: non-zero exit, 0 points, first failing test."""
    result = make("lab-4")
    output = result.stdout + result.stderr
    assert result.returncode != 0, f"`make lab-4` passed on the empty skeleton:\n{output}"
    assert "FIRST FAILING TEST" in output, output[-3000:]
    assert re.search(r"Lab 04: 0/\d+ points", output), output[-3000:]
    assert "NotImplementedError" in output or "Lab 04, part" in output, output[-3000:]


def test_make_lab_with_arguments_runs_one_part() -> None:
    """`make lab-4 -- -k partA` passes its words to pytest: only part A's tests run."""
    result = make("lab-4", "--", "-k", "partA")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "partA" in output, output[-3000:]
    tested = set(re.findall(r"test_part([A-Z])_", output))
    assert tested == {"A"}, f"expected only part A's tests, saw parts {sorted(tested)}:\n{output}"
