"""Load the shipped OpenSky recording: snapshots, flat rows, Arrow, pandas — and report bad rows.

The recording (`RECORDING`, see data/DATA.md) is gzipped JSON Lines: one `/api/states/all`
snapshot `{"time": ..., "states": [[...], ...]}` per line. A *row* is one state vector as a dict
with `fetch_time` (the snapshot's `time`) first — the schema of `harness.runtime.schema`.

    from harness.runtime.data import load_rows, validate_rows
    report = validate_rows(load_rows())
    print(report.summary())          # rows in, kept, rejected by reason

Nothing is dropped silently: `load_*` return every row as recorded (nulls included), and
`validate_rows` / `validate_file` split rows into kept and rejected, each rejection with a reason.
"""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.runtime.config import DATA_DIR
from harness.runtime.schema import ROW_FIELDS, arrow_row_schema, state_to_row

RECORDING = DATA_DIR / "opensky_states_paris_switzerland_3h.json.gz"
BAD_SAMPLE = DATA_DIR / "opensky_states_bad_sample.json"

# Reasons a row is rejected (Rejected.reason is one of these).
MALFORMED_LINE = "malformed JSON line"
MALFORMED_SNAPSHOT = "malformed snapshot"
MALFORMED_STATE = "malformed state vector"
WRONG_TYPE = "wrong type"
BAD_ICAO24 = "invalid icao24"
NULL_POSITION = "null position"
OUT_OF_RANGE = "latitude/longitude out of range"


class RecordingError(ValueError):
    """A recording file cannot be read as snapshots (the message names the file and line)."""


@dataclass
class Rejected:
    """One rejected input: why, where (line number in the file, when known) and what it was."""

    reason: str
    detail: str
    row: Any
    line: int | None = None


@dataclass
class ValidationReport:
    """Rows kept and rejected; `rows_in == len(kept) + len(rejected)` always holds."""

    rows_in: int = 0
    kept: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Number of rejected rows per reason."""
        return dict(Counter(r.reason for r in self.rejected))

    @property
    def ok(self) -> bool:
        return not self.rejected

    def check(self) -> None:
        if self.rows_in != len(self.kept) + len(self.rejected):
            raise AssertionError(
                f"rows_in={self.rows_in} but kept={len(self.kept)} + rejected={len(self.rejected)}"
            )

    def summary(self) -> str:
        lines = [f"rows in: {self.rows_in}, kept: {len(self.kept)}, rejected: {len(self.rejected)}"]
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.counts.items())]
        return "\n".join(lines)


# ------------------------------------------------------------------ reading
def _open_text(path: Path):
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of every non-blank line."""
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line.strip()


def _where(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at column {exc.colno}"


def _snapshot_problem(doc: Any) -> str | None:
    if not isinstance(doc, dict) or "time" not in doc or "states" not in doc:
        return 'expected an object {"time": ..., "states": [...]}'
    if not isinstance(doc["time"], int) or isinstance(doc["time"], bool):
        return f"time must be an integer (unix seconds), got {doc['time']!r}"
    if doc["states"] is not None and not isinstance(doc["states"], list):
        return f"states must be a list or null, got {type(doc['states']).__name__}"
    return None


def load_snapshots(path: Path | str = RECORDING) -> list[dict[str, Any]]:
    """Every snapshot of a recording, in file order; a bad line raises `RecordingError`."""
    snapshots = []
    for number, line in _numbered_lines(Path(path)):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordingError(f"{path}:{number}: {MALFORMED_LINE}: {_where(exc)}") from exc
        problem = _snapshot_problem(doc)
        if problem:
            raise RecordingError(f"{path}:{number}: {MALFORMED_SNAPSHOT}: {problem}")
        snapshots.append(doc)
    return snapshots


def snapshot_rows(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """The flat rows of one snapshot (`states: null`, as the API sends when empty, gives [])."""
    return [state_to_row(snapshot["time"], state) for state in snapshot["states"] or []]


def load_rows(path: Path | str = RECORDING) -> list[dict[str, Any]]:
    """Every state vector of a recording as a flat row (`fetch_time` + the 18 fields), as recorded."""
    rows = []
    for snapshot in load_snapshots(path):
        try:
            rows += snapshot_rows(snapshot)
        except ValueError as exc:
            raise RecordingError(
                f"{path}: snapshot time={snapshot['time']}: {MALFORMED_STATE}: {exc}"
            ) from exc
    return rows


def load_arrow(path: Path | str = RECORDING):
    """The rows as a pyarrow Table with `harness.runtime.schema.arrow_row_schema()`."""
    import pyarrow as pa

    rows, schema = load_rows(path), arrow_row_schema()
    try:  # column by column: several times faster than Table.from_pylist
        columns = [pa.array([row[f.name] for row in rows], type=f.type) for f in schema]
        return pa.Table.from_arrays(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise RecordingError(
            f"{path}: rows do not fit the schema ({exc}); find them with validate_file()"
        ) from exc


def load_pandas(path: Path | str = RECORDING):
    """The rows as a pandas DataFrame with nullable dtypes (Int64, boolean, string, float64)."""
    import pandas as pd
    import pyarrow as pa

    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    return load_arrow(path).to_pandas(types_mapper=mapping.get)


# ------------------------------------------------------------------ validation
_PYTHON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def _type_problem(row: dict[str, Any]) -> str | None:
    """The first field whose value does not fit the schema, described; None when all fit."""
    for name, kind, nullable in ROW_FIELDS:
        if name not in row:
            return f"{name} is missing"
        value = row[name]
        if value is None:
            if nullable:
                continue
            return f"{name} is null but the schema says it never is"
        if kind == "int[]":
            fits = isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
        else:
            fits = isinstance(value, _PYTHON_TYPES[kind])
            if kind != "bool" and isinstance(value, bool):
                fits = False  # True/False are ints to Python, not to the schema
            if fits and kind == "float" and not math.isfinite(value):
                fits = False
        if not fits:
            return f"{name} should be {kind}, got {type(value).__name__} {value!r:.40}"
    return None


def row_problem(row: Any) -> tuple[str, str] | None:
    """(reason, detail) why `row` is rejected, or None when it is kept."""
    if not isinstance(row, dict):
        return WRONG_TYPE, f"a row is a dict, got {type(row).__name__}"
    problem = _type_problem(row)
    if problem:
        return WRONG_TYPE, problem
    icao24 = row["icao24"]
    if len(icao24) != 6 or any(c not in "0123456789abcdef" for c in icao24):
        return BAD_ICAO24, f"icao24 should be 6 lower-case hex digits, got {icao24!r}"
    lat, lon = row["latitude"], row["longitude"]
    if lat is None or lon is None:
        return NULL_POSITION, f"latitude={lat}, longitude={lon}"
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return OUT_OF_RANGE, f"latitude={lat}, longitude={lon}"
    return None


def validate_rows(rows: list[Any], report: ValidationReport | None = None) -> ValidationReport:
    """Split rows into kept and rejected (with a reason each); counts always add up."""
    report = report or ValidationReport()
    for row in rows:
        _judge(report, row, None)
    report.check()
    return report


def _judge(report: ValidationReport, row: Any, line: int | None) -> None:
    report.rows_in += 1
    problem = row_problem(row)
    if problem:
        report.rejected.append(Rejected(problem[0], problem[1], row, line))
    else:
        report.kept.append(row)


def validate_file(path: Path | str = RECORDING) -> ValidationReport:
    """Read a recording leniently: every state vector is judged, and every line that is not a
    snapshot (malformed JSON, wrong shape) is one rejected input carrying its line number."""
    report = ValidationReport()
    for number, line in _numbered_lines(Path(path)):
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            report.rows_in += 1
            report.rejected.append(Rejected(MALFORMED_LINE, _where(exc), line, number))
            continue
        problem = _snapshot_problem(doc)
        if problem:
            report.rows_in += 1
            report.rejected.append(Rejected(MALFORMED_SNAPSHOT, problem, doc, number))
            continue
        for state in doc["states"] or []:
            try:
                row = state_to_row(doc["time"], state)
            except ValueError as exc:
                report.rows_in += 1
                report.rejected.append(Rejected(MALFORMED_STATE, str(exc), state, number))
                continue
            _judge(report, row, number)
    report.check()
    return report
