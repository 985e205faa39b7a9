"""Graded test results: the score table and Gradescope's `results.json` (one format, read and written)."""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.box import Box
from rich.console import Console
from rich.table import Table

LAB_DIR = re.compile(r"^lab(\d+)(?:_\w+)?$")
PART_NAME = re.compile(r"^test_part([A-Za-z0-9]+)(?=_|$)")

# Status of one graded test. `not run` and `running` only appear in files written during a run.
PASSED, FAILED, ERROR, SKIPPED, TIMEOUT, CRASHED = (
    "passed",
    "failed",
    "error",
    "skipped",
    "timeout",
    "crashed",
)
NOT_RUN, RUNNING = "not run", "running"

MESSAGE_LINES = 40
MESSAGE_CHARS = 4000


@dataclass
class GradedTest:
    """One `@pytest.mark.points` test and what happened to it."""

    nodeid: str
    lab: str
    part: str
    points: float
    doc: str = ""
    status: str = NOT_RUN
    message: str = ""
    location: str = ""
    duration: float = 0.0
    import_error: bool = False
    integrity: str = ""  # why the grader flagged this run (the test then scores 0)

    @property
    def name(self) -> str:
        return self.nodeid.rsplit("::", 1)[-1]

    @property
    def earned(self) -> float:
        return self.points if self.status == PASSED and not self.integrity else 0.0

    @property
    def lab_number(self) -> str:
        match = LAB_DIR.match(self.lab)
        return match.group(1) if match else "?"

    @property
    def title(self) -> str:
        """`Lab 01 part B: test_partB_x — docstring`."""
        head = f"Lab {self.lab_number}" if self.lab_number != "?" else self.lab
        if self.part != "-":
            head += f" part {self.part}"
        text = f"{head}: {self.name}"
        return f"{text} — {self.doc}" if self.doc else text


@dataclass
class RunInfo:
    """Facts about the run that produced a set of results."""

    complete: bool = False
    target: str = "labs"
    labs_dir: str = ""
    exit_status: int | None = None
    execution_time: float = 0.0
    note: str = ""
    collection_errors: list[dict[str, str]] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)  # findings of the grading guard
    sandbox: str = ""  # how the run was sandboxed, or why it was not
    skipped_files: list[str] = field(default_factory=list)


def lab_of(path: Path | str) -> str:
    """The `labNN_*` folder a test file lives in (the nearest one), else `other`."""
    for part in reversed(Path(path).parts[:-1]):
        if LAB_DIR.match(part):
            return part
    return "other"


def part_of(test_name: str) -> str:
    """`test_partB_rejects_rows[1]` -> `B`; `-` when the name carries no part."""
    match = PART_NAME.match(test_name.split("[", 1)[0])
    return match.group(1) if match else "-"


def fmt_points(value: float) -> str:
    return f"{value:g}"


def trim(text: str, max_lines: int = MESSAGE_LINES, max_chars: int = MESSAGE_CHARS) -> str:
    """Shorten a failure message to something a person reads, saying how much was cut."""
    text = text.strip("\n")
    lines = text.splitlines()
    cut = len(lines) > max_lines
    if cut:
        lines = lines[:max_lines]
    text = "\n".join(lines)
    if len(text) > max_chars:
        text, cut = text[:max_chars], True
    if cut:
        text += "\n… (message shortened; run this one test with pytest -k <name> to see all of it)"
    return text


# ---------------------------------------------------------------- the score table

# rich's SIMPLE box drawn with ASCII dashes: the table reads the same in a terminal, a CI log and
# Gradescope's output box.
RULES_ONLY = Box("    \n    \n -- \n    \n    \n -- \n    \n    \n", ascii=True)


def _group(tests: Iterable[GradedTest]) -> dict[str, dict[str, list[GradedTest]]]:
    labs: dict[str, dict[str, list[GradedTest]]] = {}
    for test in tests:
        labs.setdefault(test.lab, {}).setdefault(test.part, []).append(test)
    return {lab: dict(sorted(parts.items())) for lab, parts in sorted(labs.items())}


def lab_totals(tests: Iterable[GradedTest]) -> dict[str, tuple[float, float]]:
    """lab -> (earned, possible)."""
    totals: dict[str, tuple[float, float]] = {}
    for lab, parts in _group(tests).items():
        items = [t for group in parts.values() for t in group]
        totals[lab] = (sum(t.earned for t in items), sum(t.points for t in items))
    return totals


def _cells(items: list[GradedTest]) -> tuple[str, str]:
    """(tests passed / run, points earned / possible) of these tests."""
    passed = sum(t.status == PASSED for t in items)
    earned = fmt_points(sum(t.earned for t in items))
    possible = fmt_points(sum(t.points for t in items))
    return f"{passed}/{len(items)}", f"{earned} / {possible}"


def _lab_notes(items: list[GradedTest]) -> list[str]:
    notes: list[str] = []
    flagged = next((t for t in items if t.integrity), None)
    if flagged is not None:
        notes.append(f"INTEGRITY: {flagged.integrity} (the lab scores 0)")
    broken = next((t for t in items if t.import_error), None)
    if broken is not None:
        lines = [line for line in broken.message.splitlines() if not line.startswith("Integrity:")]
        notes.append(lines[0] if lines else broken.message)
    crashed = [t for t in items if t.status == CRASHED]
    if crashed:
        notes.append(
            f"the test process crashed in {crashed[0].name}; the lab's later tests did not run"
        )
    timeouts = sum(t.status == TIMEOUT for t in items)
    if timeouts:
        notes.append(f"{timeouts} test(s) stopped by the time limit")
    not_run = sum(t.status in (NOT_RUN, RUNNING) for t in items)
    if not_run:
        notes.append(f"{not_run} test(s) did not run (the run stopped early)")
    return notes


def render_table(tests: list[GradedTest], info: RunInfo | None = None) -> str:
    """Per lab and per part: tests passed and points earned / possible, and a total; what went
    wrong in a lab (integrity, import error, crash, time limit) and in the run follows as `!` lines.
    Plain text (rich, no colour), so the same table goes to a terminal, a log and Gradescope."""
    table = Table(box=RULES_ONLY, show_edge=False, pad_edge=False, show_footer=True)
    table.add_column("lab / part", footer="Total", min_width=28)
    passed, points = _cells(tests)
    table.add_column("tests", justify="right", footer=passed)
    table.add_column("points", justify="right", footer=points, min_width=13)
    notes: list[str] = []
    for lab, parts in _group(tests).items():
        items = [t for group in parts.values() for t in group]
        number = items[0].lab_number
        label = f"Lab {number}  {lab}" if number != "?" else lab
        table.add_row(label, *_cells(items))
        for part, group in parts.items():
            table.add_row(f"    part {part}", *_cells(group))
        lab_name = f"Lab {number}" if number != "?" else lab
        notes.extend(
            f"! {note}" if note.startswith(lab_name) else f"! {lab_name}: {note}"
            for note in _lab_notes(items)
        )
    if info is not None:
        notes.extend(
            f"! collection error: {e['where']}: {e['message']}" for e in info.collection_errors
        )
        if info.note:
            notes.append(f"! {info.note}")
        if info.sandbox.startswith("NOT"):
            notes.append(f"! {info.sandbox}")
    out = Console(file=io.StringIO(), width=200, color_system=None, highlight=False)
    out.print(table)
    lines = [line.rstrip() for line in out.file.getvalue().splitlines() if line.strip()]
    return "\n".join(lines + notes)


# ---------------------------------------------------------------- Gradescope results.json


def to_gradescope(
    tests: list[GradedTest], info: RunInfo, output: str | None = None
) -> dict[str, Any]:
    """The Gradescope `results.json` document for these results."""
    numbers: dict[str, int] = {}
    entries = []
    for test in tests:
        numbers[test.lab] = numbers.get(test.lab, 0) + 1
        message = test.message if test.status != PASSED or test.integrity else ""
        if test.status in (NOT_RUN, RUNNING) and not message:
            message = (
                "This test did not run: the test run stopped before it (see the top-level output)."
            )
        entries.append(
            {
                "name": test.title,
                "number": f"{test.lab_number}.{numbers[test.lab]}",
                "score": test.earned,
                "max_score": test.points,
                "status": "passed" if test.earned == test.points else "failed",
                "output": message,
                "visibility": "visible",
                "tags": [test.lab, f"part {test.part}"],
                "extra_data": {
                    key: value
                    for key, value in asdict(test).items()
                    if key not in ("message", "points")
                },
            }
        )
    return {
        "score": sum(t.earned for t in tests),
        "execution_time": round(info.execution_time),
        "output": output if output is not None else render_table(tests, info),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": entries,
        "extra_data": asdict(info),
    }


def from_gradescope(data: dict[str, Any]) -> tuple[list[GradedTest], RunInfo]:
    """Read back a document written by `to_gradescope`."""
    tests = []
    for entry in data.get("tests", []):
        extra = dict(entry.get("extra_data", {}))
        tests.append(
            GradedTest(points=entry["max_score"], message=entry.get("output", ""), **extra)
        )
    info = RunInfo(**data.get("extra_data", {}))
    return tests, info


def write_json(path: Path | str, document: dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_results(path: Path | str) -> tuple[list[GradedTest], RunInfo] | None:
    """Results from a results.json, or None when the file is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return from_gradescope(data)
