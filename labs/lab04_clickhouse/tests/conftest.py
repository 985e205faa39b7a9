"""Fixtures for Lab 04: the module under test, a ClickHouse client, and throw-away databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.grading import lab_module
from harness.grading.suite_helpers import HandOut, fresh_name
from harness.grading.testkit import clickhouse_session, drop_database


@pytest.fixture(scope="module")
def mod():
    """The lab's `clickhouse_lab` module (labs/ or solutions/, from `--target`)."""
    return lab_module("lab04_clickhouse", "clickhouse_lab")


@pytest.fixture(scope="session")
def ch():
    """A clickhouse-connect client for the lab's ClickHouse (raises ServiceUnavailable if down)."""
    yield from clickhouse_session()


@pytest.fixture
def db_names(ch) -> Iterator[HandOut[str]]:
    """Hands out fresh database names (not created); every one is dropped after the test."""
    names = HandOut(lambda: fresh_name("opensky_test_"))
    yield names
    for name in names.handed_out:
        drop_database(ch, name)


@pytest.fixture
def scratch_db(ch, db_names) -> str:
    """An empty database made for this test only, dropped afterwards."""
    name = db_names()
    ch.command(f"CREATE DATABASE `{name}`")
    return name
