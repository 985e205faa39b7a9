"""Fixtures for Lab 09: the modules under test and throw-away topics, ClickHouse databases and
checkpoints per test module (all removed afterwards)."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.grading import lab_module, target_dir
from harness.grading.suite_helpers import drop_clickhouse_database, drop_topics
from harness.runtime.replay import ensure_topic
from harness.runtime.services import clickhouse_client

LAB = "lab09_alerts"


@pytest.fixture(scope="module")
def mod():
    """The lab's `alerts` module (labs/ or solutions/, from `--target`)."""
    return lab_module(LAB, "alerts")


@pytest.fixture(scope="module")
def dash():
    """The lab's `dashboard` module."""
    return lab_module(LAB, "dashboard")


@pytest.fixture(scope="module")
def dashboard_path() -> Path:
    """The dashboard script of the target (what `streamlit run` and AppTest execute)."""
    return target_dir() / LAB / "dashboard.py"


def _warn(what: str, exc: Exception) -> None:
    warnings.warn(f"Lab 09 test cleanup: could not remove {what}: {exc}", stacklevel=1)


def make_config(mod, tmp: Path, name: str) -> Any:
    """An AlertConfig whose input topic (created), alerts topic, ClickHouse database and checkpoint
    are this test module's."""
    uid = f"{name}_{uuid.uuid4().hex[:8]}"
    cfg = replace(
        mod.AlertConfig(),
        topic=f"lab09_test_{uid}",
        alerts_topic=f"lab09_test_{uid}.alerts",
        clickhouse_database=f"lab09_test_{uid}",
        clickhouse_table="flight_alerts",
        checkpoint=str(tmp / "checkpoint"),
        trigger="availableNow",
        starting_offsets="earliest",
    )
    ensure_topic(cfg.topic, partitions=2)
    return cfg


@pytest.fixture(scope="module")
def alert_config(mod, tmp_path_factory) -> Iterator[Any]:
    """Factory of per-module configs; everything they name is removed at the end."""
    made: list[Any] = []

    def factory(name: str) -> Any:
        cfg = make_config(mod, tmp_path_factory.mktemp(f"lab09_{name}"), name)
        made.append(cfg)
        return cfg

    yield factory
    for cfg in made:
        drop_topics([cfg.topic, cfg.alerts_topic], _warn)
        drop_clickhouse_database(cfg.clickhouse_database, _warn)


@pytest.fixture(scope="module")
def ch_database() -> Iterator[str]:
    """A throw-away ClickHouse database for the dashboard tests."""
    name = f"lab09_dash_{uuid.uuid4().hex[:10]}"
    client = clickhouse_client()
    client.command(f"CREATE DATABASE `{name}`")
    client.close()
    yield name
    drop_clickhouse_database(name, _warn)
