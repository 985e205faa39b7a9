"""Fixtures for Lab 07: the dbt project under test, one built schema per test module, and
throw-away schemas for the tests that change the raw tables (all removed afterwards).

Everything that depends on the project under test is module-scoped, so a grader that re-targets
the suite at another copy (the wrong-answer gate) rebuilds it; only the recording is shared."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dbt_support import (
    LAB,
    DbtProject,
    Invocation,
    drop_schemas,
    load_raw,
    new_schema,
    processed_rows,
    remove_dir,
    scratch_dir,
)

from harness.grading import loader
from harness.grading.testkit import state_row
from harness.runtime.services import pg_connect

# Two valid state vectors added to the recording: an aircraft whose reported country disagrees
# with its address block, and one whose address is in no block.
EXTRA_ROWS = [
    state_row(
        1633615200,  # 2021-10-07 14:00:00 UTC
        icao24="3c0001",  # in Germany's block
        callsign="LAB07A  ",
        origin_country="France",
        time_position=1633615199,
        last_contact=1633615200,
        longitude=2.5,
        latitude=48.9,
        baro_altitude=3000.0,
        geo_altitude=None,
    ),
    state_row(
        1633615210,
        icao24="001234",  # no State holds this block
        callsign="LAB07B",
        origin_country="Unknown",
        time_position=1633615210,
        last_contact=1633615210,
        longitude=2.6,
        latitude=48.8,
        baro_altitude=None,
        geo_altitude=None,
        on_ground=True,
        velocity=5.0,
        position_source=2,
    ),
]


@dataclass
class LabRun:
    """The project built once for the session: its schema, the rows loaded and dbt's answer."""

    dbt: DbtProject
    rows: list[dict[str, Any]]
    build: Invocation

    @property
    def schema(self) -> str:
        return self.dbt.schema


@pytest.fixture(scope="module")
def project_dir() -> Path:
    """The dbt project under test: `<target>/lab07_dbt` (labs/, solutions/ or `--labs-dir`)."""
    path = loader.target_dir() / LAB
    if not (path / "dbt_project.yml").is_file():
        pytest.fail(
            f"Lab 07: no dbt project at {loader.module_display_path(path)} (dbt_project.yml is "
            f"missing); restore the lab folder from the course repository.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def recording() -> list[dict[str, Any]]:
    """The recording's valid state vectors plus EXTRA_ROWS: what `processed_flights` holds."""
    return processed_rows() + [dict(row) for row in EXTRA_ROWS]


@pytest.fixture(scope="session")
def postgres() -> None:
    """PostgreSQL answers (a loud error naming `make up` otherwise)."""
    with pg_connect() as conn:
        conn.execute("SELECT 1")


@pytest.fixture(scope="module")
def schemas(postgres, project_dir) -> Iterator[Callable[..., DbtProject]]:
    """Makes throw-away schemas with the raw tables loaded, each with its own dbt folders."""
    made: list[DbtProject] = []

    def make(rows: list[dict[str, Any]], prefix: str = "lab07") -> DbtProject:
        schema = new_schema(prefix)
        dbt = DbtProject(project_dir, schema, scratch_dir(f"{schema}-"))
        made.append(dbt)
        load_raw(schema, rows)
        return dbt

    yield make
    for dbt in made:
        drop_schemas(dbt.schema, dbt.audit_schema)
        remove_dir(dbt.scratch)


@pytest.fixture(scope="module")
def lab(schemas, recording) -> LabRun:
    """The whole project built once (`dbt build --store-failures`) on the recording."""
    dbt = schemas(recording)
    build = dbt.invoke("build", "--store-failures")
    return LabRun(dbt, recording, build)
