"""Fixtures for Lab 07: the dbt project under test, one built schema per test module, and
throw-away schemas for the tests that change the raw tables (all removed afterwards).

Everything that depends on the project under test is module-scoped, so a grader that re-targets
the suite at another copy (the wrong-answer gate) rebuilds it; only the recording is shared."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbt_support import (
    EXTRA_ROWS,
    LAB,
    DbtProject,
    LabRun,
    drop_schemas,
    load_raw,
    new_schema,
    processed_rows,
    remove_dir,
    scratch_dir,
)

from harness.grading import loader
from harness.runtime.services import pg_connect


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
        try:
            drop_schemas(dbt.schema, dbt.audit_schema)
        except Exception as exc:  # cleanup must never hide the test's own result
            warnings.warn(f"could not drop schema {dbt.schema}: {exc}", stacklevel=1)
        remove_dir(dbt.scratch)


@pytest.fixture(scope="module")
def lab(schemas, recording) -> LabRun:
    """The whole project built once (`dbt build --store-failures`) on the recording."""
    dbt = schemas(recording)
    build = dbt.invoke("build", "--store-failures")
    return LabRun(dbt, recording, build)
