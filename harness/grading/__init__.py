"""Grading harness: the graded suites get the code under test from `lab_module(lab, module)`.

    @pytest.fixture(scope="module")
    def mod():
        return lab_module("lab04_clickhouse", "clickhouse_lab")

The pytest options `--target labs|solutions` and `--labs-dir PATH` decide which copy is imported.
Commands: `python -m harness.grading.grade`, `python -m harness.grading.student N`,
`python -m harness.grading.bite`; skeletons: `python -m harness.grading.skeleton`.
"""

from harness.grading.loader import (
    LabImportError,
    Target,
    current_target,
    lab_module,
    set_target,
    target_dir,
)

# What neither a student's copy nor an autograder bundle gets: generators, checks, packaging, the
# wrong answers, caches (shutil.ignore_patterns patterns).
INSTRUCTOR_ONLY = (
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ipynb_checkpoints",
    "*.egg-info",
    "wrong_answers",
    "wrong_answers.py",
    "stable.py",
    "skeleton.py",
    "bite.py",
    "release.py",
    "release_template",
)

__all__ = ["LabImportError", "Target", "current_target", "lab_module", "set_target", "target_dir"]
