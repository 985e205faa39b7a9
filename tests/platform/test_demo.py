"""Platform test for `make demo`: the whole platform at once, run as the README says, on the real stack.

The demo uses the platform's own names (raw_flights, opensky.flights_streaming, public.processed_flights,
the `opensky-postgres` connector…), as a self-learner sees them; it is idempotent, so it may run
again after `make demo` by hand. A 5-minute slice keeps it to a few minutes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from harness.ops import demo
from harness.runtime.config import ROOT

MINUTES = 5


@pytest.fixture(scope="module")
def demo_run() -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "demo", f"DEMO_ARGS=--minutes {MINUTES}"],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=1500,
    )


def counts_in(output: str) -> dict[str, int]:
    """`    name      1,234` lines of the demo's report."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^\s{4}(\S.*?)\s{2,}([\d,]+)$", line)
        if match:
            found[match.group(1).strip()] = int(match.group(2).replace(",", ""))
    return found


def test_make_demo_fills_every_topic_and_table(demo_run):
    """`make demo` exits 0 and every platform topic, table and bucket holds data."""
    out = demo_run.stdout
    assert demo_run.returncode == 0, f"{out[-4000:]}\n{demo_run.stderr[-4000:]}"
    counts = counts_in(out)
    for name in [*demo.TOPICS, *(f"ClickHouse opensky.{t}" for t in demo.CLICKHOUSE_TABLES)]:
        assert name in counts, f"the demo did not report {name}:\n{out[-3000:]}"
    for name in ("PostgreSQL public.processed_flights", "PostgreSQL public.flight_statistics"):
        assert counts.get(name, 0) > 0, f"{name} is empty after the demo"
    for topic in demo.TOPICS:
        if topic not in demo.MAY_BE_EMPTY:
            assert counts[topic] > 0, f"topic {topic} is empty after the demo"
    assert counts["raw_flights"] >= counts["processed_flights"] > 0


def test_seed_query_runs_verbatim_and_answers(demo_run):
    """The platform description's query is printed as it is written and answers rows for the last
    hour, because the replay shifted the recording to end now."""
    assert demo_run.returncode == 0, demo_run.stderr[-3000:]
    indented = "    " + demo.SEED_QUERY.replace("\n", "\n    ")
    assert indented in demo_run.stdout
    match = re.search(r"\((\d+) countries\)", demo_run.stdout)
    assert match and int(match.group(1)) > 0, "the seed's query found no flight in the last hour"
    # Run it again, verbatim, outside the demo: the platform's own table answers it.
    rows = demo.seed_query()
    assert rows and all(count > 0 for _, count, _ in rows)
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)


def test_demo_refuses_a_slice_longer_than_the_recording():
    """Bad arguments print usage and exit 2 before touching any service."""
    result = subprocess.run(
        [sys.executable, "-m", "harness.ops.demo", "--minutes", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "--minutes" in result.stderr
