"""Smoke test of the benchmarks: `python -m bench --quick` on its cheap sections.

Checks that the run finishes and that results.json / results.md have the promised shape: every
figure has numbers, and its median lies between its min and max. Timing targets are never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness.runtime.config import ROOT
from harness.runtime.waits import wait_quietly

SECTIONS = ("kafka", "clickhouse")


def bench_leftovers() -> set[str]:
    """Topics and raw-data objects named bench_* (the benchmarks' prefix)."""
    from harness.runtime.services import kafka_admin, minio_client

    topics = {t for t in kafka_admin().list_topics(timeout=30).topics if t.startswith("bench_")}
    objects = {
        f"raw-data/{o.object_name}"
        for o in minio_client().list_objects("raw-data", prefix="bench_", recursive=True)
    }
    return topics | objects


@pytest.fixture(scope="module")
def before():
    return bench_leftovers()


@pytest.fixture(scope="module")
def results(tmp_path_factory, before):
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--sections", ",".join(SECTIONS), "--out", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"python -m bench --quick failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )
    return json.loads((out / "results.json").read_text()), (out / "results.md").read_text()


def test_machine_and_versions_are_named(results):
    doc, _ = results
    assert doc["mode"] == "quick"
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["memory_gib"] > 0
    for component in ("python", "pyspark", "confluent-kafka", "librdkafka", "clickhouse engine"):
        assert doc["versions"].get(component), f"version of {component} missing: {doc['versions']}"


def test_every_section_has_consistent_figures(results):
    doc, _ = results
    assert set(doc["sections"]) == set(SECTIONS)
    for name, section in doc["sections"].items():
        assert section["error"] is None, f"section {name} failed: {section['error']}"
        assert section["figures"], f"section {name} has no figures"
        for key, fig in section["figures"].items():
            where = f"{name}.{key}"
            assert fig["n"] == len(fig["runs"]) >= 1, f"{where}: no runs"
            assert all(isinstance(v, int | float) for v in fig["runs"]), f"{where}: {fig['runs']}"
            assert fig["min"] <= fig["median"] <= fig["max"], f"{where}: {fig}"
            assert fig["min"] == min(fig["runs"]) and fig["max"] == max(fig["runs"]), where
            assert fig["unit"], f"{where}: no unit"


def test_kafka_section_compares_with_the_best_case(results):
    doc, _ = results
    figures = doc["sections"]["kafka"]["figures"]
    for key in ("lab03_msgs_per_s", "best_case_msgs_per_s", "ratio_lab03_vs_best"):
        assert figures[key]["median"] > 0, f"kafka.{key}: {figures[key]}"


def test_clickhouse_section_reads_the_scaled_recording(results):
    doc, _ = results
    section = doc["sections"]["clickhouse"]
    assert section["tables"]["workload"]["state_vectors"] > 0
    assert section["tables"]["clickhouse_result"]["groups"] > 0
    assert section["figures"]["clickhouse_rows_per_s"]["median"] > 0


def test_markdown_report_lists_the_sections(results):
    _, md = results
    assert "## Machine" in md and "## Versions" in md
    assert "5. Kafka" in md and "ClickHouse" in md
    assert "| figure | median | min | max |" in md


def test_nothing_named_bench_is_left_behind(results, before):
    """The benchmarks remove the topics and MinIO objects they create."""
    # A deleted topic may linger briefly in the metadata.
    wait_quietly(lambda: not (bench_leftovers() - before), timeout=15)
    new = bench_leftovers() - before
    assert not new, f"the bench run left these behind: {sorted(new)[:10]}"
