"""Fixtures for the harness's own tests: tiny throwaway courses built with pytester."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

# pytester comes from the root conftest (`pytest_plugins = [..., "pytester"]`): pytest refuses
# `pytest_plugins` here when this file is not an initial conftest (e.g. a run of the whole repo).


class Course:
    """A throwaway course repository: labs/<lab>/<module>.py, labs/<lab>/tests/, solutions/<lab>/."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.root: Path = pytester.path
        pytester.makeini("[pytest]\ntimeout = 60\ntimeout_method = signal\n")
        pytester.makeconftest('pytest_plugins = ["harness.grading.pytest_plugin"]\n')

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def module(self, lab: str, name: str, text: str, where: str = "labs") -> Path:
        """A lab module: `<where>/<lab>/<name>.py`."""
        return self.write(f"{where}/{lab}/{name}.py", text)

    def tests(self, lab: str, text: str, name: str | None = None) -> Path:
        """A graded suite: `labs/<lab>/tests/test_<lab>.py`."""
        return self.write(f"labs/{lab}/tests/{name or 'test_' + lab}.py", text)


@pytest.fixture
def course(pytester: pytest.Pytester) -> Course:
    return Course(pytester)
