"""Graded test suite for Lab 09, part C (the dashboard) — used by `make lab-9` and grading.

Planted positions and alert episodes go to a throw-away ClickHouse database; the dashboard reads
it (`DASHBOARD_DATABASE`). It is checked three ways: its query functions, the whole page run
in-process by Streamlit's AppTest, and the page served by `streamlit run` and loaded in a real
headless Chromium (a screenshot is kept in reports/lab09_dashboard.png).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness.grading.testkit import wait_until
from harness.runtime.config import ROOT
from harness.runtime.schema import clickhouse_columns
from harness.runtime.services import clickhouse_client

NOW = 1709298000  # the newest contact in the planted positions
SCREENSHOT = ROOT / "reports" / "lab09_dashboard.png"
PAGE_TIMEOUT_S = 90

# icao24, country, seconds before NOW, latitude, longitude (None: no position)
POSITIONS = [
    ("aa0001", "France", 100, 48.0, 2.0),
    ("aa0001", "France", 0, 48.5, 2.5),  # the newest of aa0001
    ("aa0001", "France", 50, 48.2, 2.2),
    ("aa0002", "France", 10, 45.0, 5.0),
    ("aa0003", "Switzerland", 20, 46.9, 7.4),
    ("aa0003", "Switzerland", 5, None, None),  # newer but without a position
    ("aa0004", "Germany", 5000, 50.0, 8.0),  # heard of too long ago
]
EXPECTED_POSITIONS = {"aa0001": (48.5, 2.5), "aa0002": (45.0, 5.0), "aa0003": (46.9, 7.4)}
EXPECTED_COUNTS = [("France", 2), ("Switzerland", 1)]
# alert_id, icao24, rule, status (version 0 opened, 1 closed)
ALERT_ROWS = [
    ("aa0001-squawk_7700-1", "aa0001", "squawk_7700", "opened"),
    ("aa0002-silence-2", "aa0002", "silence", "opened"),
    ("aa0002-silence-2", "aa0002", "silence", "closed"),  # closed since: not open any more
    ("aa0003-rapid_descent-3", "aa0003", "rapid_descent", "opened"),
]
OPEN_ALERTS = {"aa0001-squawk_7700-1", "aa0003-rapid_descent-3"}

ALERTS_DDL = """
    alert_id String, icao24 String, rule LowCardinality(String), status LowCardinality(String),
    opened_at DateTime('UTC'), closed_at Nullable(DateTime('UTC')), closed_by Nullable(String),
    detail Nullable(String), callsign Nullable(String), origin_country Nullable(String),
    last_contact DateTime('UTC'), latitude Nullable(Float64), longitude Nullable(Float64),
    baro_altitude Nullable(Float64), vertical_rate Nullable(Float64), squawk Nullable(String),
    version UInt8
"""
ALERT_COLUMNS = [part.split()[0] for part in ALERTS_DDL.split(",")]


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@pytest.fixture(scope="module")
def planted(ch_database: str, dash) -> str:
    """The planted tables `flights_streaming` and `flight_alerts` in a throw-away database; the
    first holds the columns the dashboard reads (its `POSITION_COLUMNS`) in the platform's types."""
    columns = list(dash.POSITION_COLUMNS)
    positions = [
        {
            "icao24": i,
            "callsign": f"CS{i[-2:]}",
            "origin_country": c,
            "last_contact": utc(NOW - ago),
            "longitude": lon,
            "latitude": lat,
            "baro_altitude": 9000.0,
            "on_ground": False,
        }
        for i, c, ago, lat, lon in POSITIONS
    ]
    client = clickhouse_client(ch_database)
    try:
        client.command(
            f"CREATE TABLE `{ch_database}`.flights_streaming ({clickhouse_columns(columns)}) "
            "ENGINE = MergeTree ORDER BY (icao24, last_contact)"
        )
        client.insert(
            "flights_streaming",
            [[row[name] for name in columns] for row in positions],
            column_names=columns,
            database=ch_database,
        )
        client.command(
            f"CREATE TABLE `{ch_database}`.flight_alerts ({ALERTS_DDL}) "
            "ENGINE = ReplacingMergeTree(version) ORDER BY alert_id"
        )
        # Keep the opened and closed rows apart (as right after a stream wrote them).
        client.command(f"SYSTEM STOP MERGES `{ch_database}`.flight_alerts")
        for alert_id, icao24, rule, status in ALERT_ROWS:
            closed = status == "closed"
            client.insert(
                "flight_alerts",
                [
                    [
                        alert_id,
                        icao24,
                        rule,
                        status,
                        utc(NOW - 60),
                        utc(NOW) if closed else None,
                        "cleared" if closed else None,
                        None,
                        f"CS{icao24[-2:]}",
                        "France",
                        utc(NOW),
                        48.0,
                        2.0,
                        9000.0,
                        0.0,
                        "7700",
                        1 if closed else 0,
                    ]
                ],
                column_names=ALERT_COLUMNS,
                database=ch_database,
            )
    finally:
        client.close()
    return ch_database


@pytest.fixture(scope="module")
def dash_cfg(dash, planted):
    return dash.DashboardConfig(database=planted)


@pytest.fixture
def dash_client(dash_cfg) -> Iterator[Any]:
    """A ClickHouse client on the planted database, closed after the test."""
    client = clickhouse_client(dash_cfg.database)
    yield client
    client.close()


@pytest.fixture
def dashboard_env(planted) -> Iterator[dict[str, str]]:
    """The environment that points the dashboard at the planted database (also set in-process)."""
    # A slow refresh: the browser test reads the page between two reruns of the live fragment.
    wanted = {"DASHBOARD_DATABASE": planted, "DASHBOARD_REFRESH_SECONDS": "30"}
    before = {k: os.environ.get(k) for k in wanted}
    os.environ.update(wanted)
    yield wanted
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# ------------------------------------------------------------------ the query functions
@pytest.mark.points(3)
def test_partC_latest_position_per_aircraft(dash, dash_cfg, dash_client):
    """One row per aircraft seen recently, at its newest known position."""
    frame = dash.latest_positions(dash_client, dash_cfg)
    got = {
        r["icao24"]: (round(float(r["latitude"]), 4), round(float(r["longitude"]), 4))
        for r in frame.to_dict("records")
    }
    assert len(frame) == len(got) and got == EXPECTED_POSITIONS, (
        f"Lab 09, part C: latest_positions should give {EXPECTED_POSITIONS} (one row per aircraft, "
        f"its newest state vector that has a position; aa0004 was heard of too long ago); got "
        f"{got} in {len(frame)} rows. Hint: argMax(column, last_contact) per icao24."
    )


@pytest.mark.points(2)
def test_partC_counts_per_country(dash, dash_cfg, dash_client):
    """Aircraft per country, most first."""
    counts = dash.country_counts(dash.latest_positions(dash_client, dash_cfg))
    got = [(r["origin_country"], int(r["aircraft"])) for r in counts.to_dict("records")]
    assert got == EXPECTED_COUNTS, (
        f"Lab 09, part C: country_counts should be {EXPECTED_COUNTS} (distinct aircraft, most "
        f"first); got {got}"
    )


@pytest.mark.points(3)
def test_partC_open_alerts_once_each(dash, dash_cfg, dash_client):
    """Open alerts: each episode once, and none that has closed."""
    alerts = dash.open_alerts(dash_client, dash_cfg)
    got = sorted(alerts["alert_id"])
    assert got == sorted(OPEN_ALERTS), (
        f"Lab 09, part C: open_alerts should list {sorted(OPEN_ALERTS)} once each; got {got}. "
        "Hint: an episode's 'closed' row replaces its 'opened' row only when the table is read "
        "with FINAL (or merged)."
    )


# ------------------------------------------------------------------ the page, in-process
def _table_values(at) -> list[pd.DataFrame]:
    return [t.value for t in at.table] + [d.value for d in at.dataframe]


@pytest.mark.points(4)
def test_partC_page_in_apptest(dashboard_path: Path, dashboard_env):
    """The whole page (AppTest): the metrics, the counts per country and the open alerts."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(dashboard_path), default_timeout=60).run()
    assert not at.exception, (
        f"Lab 09, part C: the dashboard raised {[e.value for e in at.exception]}"
    )
    metrics = {m.label: m.value for m in at.metric}
    expected = {"Aircraft": str(len(EXPECTED_POSITIONS)), "Open alerts": str(len(OPEN_ALERTS))}
    assert {k: metrics.get(k) for k in expected} == expected, (
        f"Lab 09, part C: the page should show the metrics {expected}; got {metrics}"
    )
    tables = _table_values(at)
    counts = [t for t in tables if "origin_country" in t.columns and "aircraft" in t.columns]
    assert counts, (
        "Lab 09, part C: the page should show a table with origin_country and aircraft; tables "
        f"shown: {[list(t.columns) for t in tables]}"
    )
    got = [(r["origin_country"], int(r["aircraft"])) for r in counts[0].to_dict("records")]
    assert got == EXPECTED_COUNTS, f"Lab 09, part C: counts per country {got} != {EXPECTED_COUNTS}"
    alerts = [t for t in tables if "alert_id" in t.columns]
    assert alerts and set(alerts[0]["alert_id"]) == OPEN_ALERTS, (
        f"Lab 09, part C: the page should show the open alerts {sorted(OPEN_ALERTS)}; got "
        f"{[sorted(t['alert_id']) for t in alerts]}"
    )


# ------------------------------------------------------------------ the page, in Chromium
@pytest.fixture
def served_dashboard(dashboard_path: Path, dashboard_env) -> Iterator[str]:
    """`streamlit run` of the target's dashboard on a free port of 127.0.0.1 (served as `make
    dashboard` serves it); its URL."""
    from harness.ops.dashboard import answers, dashboard_url, streamlit_argv
    from harness.ops.ports import free_port

    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="lab09_streamlit_", suffix=".log", delete=False)
    proc = subprocess.Popen(
        streamlit_argv(dashboard_path, port),
        env={**os.environ, **dashboard_env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = dashboard_url(port)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"Lab 09, part C: `streamlit run` exited ({proc.returncode}); its log:\n"
                + Path(log.name).read_text()[-2000:]
            )
        return answers(url)

    try:
        wait_until(healthy, f"the dashboard answering on {url}", timeout=PAGE_TIMEOUT_S)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        Path(log.name).unlink(missing_ok=True)


@pytest.fixture
def browser(tmp_path) -> Iterator[Any]:
    """A headless Chromium (Debian's, with its driver; installed on first use)."""
    from harness.ops.browser import headless_chromium

    with headless_chromium(tmp_path / "chromium") as driver:
        yield driver


@pytest.mark.points(3)
def test_partC_page_in_chromium(served_dashboard: str, browser):
    """Served by `streamlit run` and loaded in headless Chromium: the aircraft count and open alerts."""
    from selenium.webdriver.common.by import By

    browser.get(served_dashboard)

    def page_text() -> str:
        text = browser.find_element(By.TAG_NAME, "body").text
        ready = "Aircraft" in text and "Open alerts" in text
        return text if ready and all(a.split("-")[0] in text for a in OPEN_ALERTS) else ""

    try:
        text = wait_until(page_text, "the dashboard page showing its metrics and open alerts", 60)
    except AssertionError:
        text = browser.find_element(By.TAG_NAME, "body").text
        raise AssertionError(
            "Lab 09, part C: in Chromium the page should show 'Aircraft', 'Open alerts' and the "
            f"icao24 of each open alert ({sorted(OPEN_ALERTS)}); the page text was:\n{text[:1500]}"
            "\nHint: run `make dashboard` and look at it; tables must show as text (st.table), "
            "not only drawn on a canvas."
        ) from None
    finally:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOT))
    lines = text.splitlines()
    aircraft = lines[lines.index("Aircraft") + 1] if "Aircraft" in lines else None
    assert aircraft == str(len(EXPECTED_POSITIONS)), (
        f"Lab 09, part C: the page should show Aircraft {len(EXPECTED_POSITIONS)}, got {aircraft!r}"
    )
