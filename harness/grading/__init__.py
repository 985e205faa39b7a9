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

__all__ = ["LabImportError", "Target", "current_target", "lab_module", "set_target", "target_dir"]
