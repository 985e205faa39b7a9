"""Platform test for `make demo`: the whole platform at once, run as the README says, on the real stack.

The demo uses the platform's own names (raw_flights, opensky.flights_streaming, flight_alerts,
public.processed_flights, the `opensky-postgres` connector…), as a self-learner sees them; it is
idempotent, so it may run again after `make demo` by hand. It plants an emergency in what it
replays, runs Lab 09's alerts job and leaves the live dashboard running: these tests check that the
planted episodes come out once each, look at the dashboard over HTTP and in a headless Chromium
(a screenshot is kept in reports/demo_dashboard.png), then stop it with `make demo-stop`. A
3-minute slice keeps it to a few minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from harness.grading.testkit import read_topic, wait_until
from harness.ops import dashboard, demo
from harness.runtime.config import ROOT
from harness.runtime.data import load_snapshots

MINUTES = 3
DEMO_TIMEOUT_S = 1500  # three Spark jobs: minutes on a quiet 2-core machine, more on a busy one
SCREENSHOT = ROOT / "reports" / "demo_dashboard.png"
# The first test to run also runs `make demo` (the module's fixture): past the suite's 300 s.
pytestmark = pytest.mark.timeout(DEMO_TIMEOUT_S + 120)


def make(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", *args],
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def demo_run() -> Iterator[subprocess.CompletedProcess]:
    """`make demo` on a short slice; afterwards the dashboard it left running is stopped."""
    try:
        yield make("demo", f"DEMO_ARGS=--minutes {MINUTES}", timeout=DEMO_TIMEOUT_S)
    finally:
        make("demo-stop")


@pytest.fixture(scope="module")
def planted() -> list[demo.Planted]:
    """What the demo plants in this slice, at the recording's own times (the demo shifts them)."""
    rules = demo._module(demo.default_target(), "lab09_alerts", "alerts").AlertConfig()
    snapshots = load_snapshots()[: MINUTES * demo.SNAPSHOTS_PER_MINUTE]
    return demo.plant_emergencies(snapshots, rules.descent_rate, rules.descent_count)[1]


def succeeded(run: subprocess.CompletedProcess) -> str:
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
    return run.stdout


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
    out = succeeded(demo_run)
    counts = counts_in(out)
    for name in [*demo.TOPICS, *(f"ClickHouse opensky.{t}" for t in demo.CLICKHOUSE_TABLES)]:
        assert name in counts, f"the demo did not report {name}:\n{out[-3000:]}"
    for name in ("PostgreSQL public.processed_flights", "PostgreSQL public.flight_statistics"):
        assert counts.get(name, 0) > 0, f"{name} is empty after the demo"
    for topic in demo.TOPICS:
        if topic not in demo.MAY_BE_EMPTY:
            assert counts[topic] > 0, f"topic {topic} is empty after the demo"
    assert counts["raw_flights"] >= counts["processed_flights"] > 0


def test_platform_query_runs_verbatim_and_answers(demo_run):
    """The platform's query is printed as it is written and answers rows for the last
    hour, because the replay shifted the recording to end now."""
    out = succeeded(demo_run)
    indented = "    " + demo.PLATFORM_QUERY.replace("\n", "\n    ")
    assert indented in out
    match = re.search(r"\((\d+) countries\)", out)
    assert match and int(match.group(1)) > 0, (
        "the platform's query found no flight in the last hour"
    )
    # Run it again, verbatim, outside the demo: the platform's own table answers it.
    rows = demo.platform_query()
    assert rows and all(count > 0 for _, count, _ in rows)
    assert [r[1] for r in rows] == sorted((r[1] for r in rows), reverse=True)


def test_planted_emergency_comes_out_once_per_episode(demo_run, planted):
    """Each planted episode is one row of opensky.flight_alerts (FINAL) and one `opened` event
    (plus one `closed` for the descent) in flight_alerts; the squawk opens at its first vector and
    is still open, listed among the open alerts."""
    out = succeeded(demo_run)
    shift = int(re.search(r"recording shifted by \+(\d+) s", out).group(1))
    rows = demo.episode_rows(planted)
    events = [json.loads(m.value()) for m in read_topic(demo.ALERTS_TOPIC)]
    for p in planted:
        mine = [r for r in rows if (r[0], r[1]) == (p.icao24, p.rule)]
        assert len(mine) == 1, f"planted {p.describe()}: expected one episode, got {mine}"
        _, _, alert_id, status, opened_at = mine[0]
        kinds = sorted(e["event"] for e in events if e["alert_id"] == alert_id)
        if p.closes:
            assert (status, kinds) == ("closed", ["closed", "opened"]), (alert_id, status, kinds)
            assert p.first + shift <= opened_at <= p.last + shift, (alert_id, p)
        else:
            assert (status, kinds) == ("opened", ["opened"]), (alert_id, status, kinds)
            assert opened_at == p.first + shift, f"{alert_id} opened at {opened_at}"
            assert re.search(rf"{p.rule}\s+{p.icao24}\b.*<- planted", out), out[-3000:]


def test_dashboard_answers_and_shows_the_planted_alert(demo_run, planted, tmp_path):
    """The dashboard the demo left running answers over HTTP and, in headless Chromium, shows the
    open alerts with the planted squawk's aircraft; `make demo-stop` stops it."""
    from selenium.webdriver.common.by import By

    from harness.ops.browser import headless_chromium

    out = succeeded(demo_run)
    url = re.search(r"Dashboard: (http://\S+)", out).group(1)
    assert url == dashboard.dashboard_url()
    assert requests.get(url, timeout=10).status_code == 200 and dashboard.answers(url)
    squawker = next(p.icao24 for p in planted if not p.closes)
    with headless_chromium(tmp_path / "chromium", window="1400,2400") as browser:
        browser.get(url)

        def shown() -> str:
            text = browser.find_element(By.TAG_NAME, "body").text
            return text if "Open alerts" in text and squawker in text else ""

        try:
            wait_until(shown, f"the dashboard showing the open alert of {squawker}", 90)
        finally:
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(SCREENSHOT))
    stopped = make("demo-stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout, stopped.stdout
    assert not dashboard.answers(url), f"{url} still answers after make demo-stop"


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
