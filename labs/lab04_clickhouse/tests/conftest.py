"""Fixtures for Lab 04: the module under test, a ClickHouse client, and throw-away databases."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable, Iterator

import pytest

from harness.grading import lab_module
from harness.runtime.services import clickhouse_client


@pytest.fixture(scope="module")
def mod():
    """The lab's `clickhouse_lab` module (labs/ or solutions/, from `--target`)."""
    return lab_module("lab04_clickhouse", "clickhouse_lab")


@pytest.fixture(scope="session")
def ch():
    """A clickhouse-connect client for the lab's ClickHouse (raises ServiceUnavailable if down)."""
    client = clickhouse_client()
    yield client
    client.close()


def _drop(client, database: str) -> None:
    try:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
    except Exception as exc:  # cleanup must never hide the test's own result
        warnings.warn(f"could not drop test database {database}: {exc}", stacklevel=1)


@pytest.fixture
def db_names(ch) -> Iterator[Callable[[], str]]:
    """Hands out fresh database names (not created); every one is dropped after the test."""
    handed_out: list[str] = []

    def new_name() -> str:
        handed_out.append(f"opensky_test_{uuid.uuid4().hex[:12]}")
        return handed_out[-1]

    yield new_name
    for name in handed_out:
        _drop(ch, name)


@pytest.fixture
def scratch_db(ch, db_names) -> str:
    """An empty database made for this test only, dropped afterwards."""
    name = db_names()
    ch.command(f"CREATE DATABASE `{name}`")
    return name
