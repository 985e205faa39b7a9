"""Platform tests for the shipped OpenSky recording, its loader and the ICAO country table.

The numbers asserted here are the ones documented in data/DATA.md; if the recording is rebuilt
(`tools/make_recording.py`) and they change, update both.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.runtime import data
from harness.runtime.config import ROOT
from harness.runtime.icao_countries import ALLOCATIONS, UNKNOWN, country_of
from harness.runtime.schema import ROW_FIELD_NAMES, STATE_FIELDS, arrow_row_schema

SNAPSHOTS = 1081
ROWS = 56_671
AIRCRAFT = 446
FIRST_TIME = 1_633_608_000  # 2021-10-07 12:00:00 UTC
LAST_TIME = 1_633_618_800  # 2021-10-07 15:00:00 UTC
COUNTRIES = 51
NULL_POSITION_ROWS = 2233


@pytest.fixture(scope="module")
def snapshots() -> list[dict]:
    return data.load_snapshots()


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return data.load_rows()


# ------------------------------------------------------------------ the recording
def test_recording_is_small_gzipped_json_lines():
    """The shipped file exists, is under 5 MB and each line is one snapshot object."""
    assert data.RECORDING.exists(), f"missing {data.RECORDING}"
    assert data.RECORDING.stat().st_size < 5_000_000
    with gzip.open(data.RECORDING, "rt") as f:
        first = json.loads(f.readline())
    assert set(first) == {"time", "states"}


def test_snapshot_counts_and_time_span(snapshots):
    """1081 snapshots, one every 10 s, spanning three hours (at least one)."""
    times = [s["time"] for s in snapshots]
    assert len(snapshots) == SNAPSHOTS
    assert (times[0], times[-1]) == (FIRST_TIME, LAST_TIME)
    assert times[-1] - times[0] >= 3600
    assert all(b - a == 10 for a, b in zip(times, times[1:], strict=False))
    assert all(s["states"] for s in snapshots), "every snapshot has aircraft"


def test_row_and_aircraft_counts(rows):
    """56,671 state vectors of 446 distinct aircraft (several hundred) from 51 countries."""
    assert len(rows) == ROWS
    aircraft = {r["icao24"] for r in rows}
    assert len(aircraft) == AIRCRAFT >= 300
    assert len({r["origin_country"] for r in rows}) == COUNTRIES
    per_country = Counter(country_of(a) for a in aircraft)
    assert per_country.most_common(3) == [("France", 128), ("Germany", 49), ("United Kingdom", 44)]


def test_one_state_per_aircraft_per_snapshot(snapshots):
    """No aircraft appears twice in a snapshot; states are 18-field arrays."""
    for snap in snapshots:
        ids = [s[0] for s in snap["states"]]
        assert len(ids) == len(set(ids)), f"duplicate aircraft in snapshot {snap['time']}"
        assert all(len(s) == 18 for s in snap["states"])


def test_rows_follow_the_schema(rows):
    """Every row has the schema's fields in order and every value has the schema's type."""
    assert all(list(r) == ROW_FIELD_NAMES for r in rows)
    report = data.validate_rows(rows)
    assert data.WRONG_TYPE not in report.counts, report.summary()
    assert report.counts == {data.NULL_POSITION: NULL_POSITION_ROWS}
    assert len(report.kept) == ROWS - NULL_POSITION_ROWS


def test_values_are_in_range(rows):
    """Positions, speeds, tracks, times and fixed fields hold plausible OpenSky values."""
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{6}", r["icao24"])
        assert r["origin_country"] == country_of(r["icao24"]) != UNKNOWN
        assert r["callsign"] is None or len(r["callsign"]) == 8
        assert r["squawk"] is None or re.fullmatch(r"[0-7]{4}", r["squawk"])
        assert 0 <= r["fetch_time"] - r["last_contact"] <= 60
        if r["latitude"] is not None:
            assert 45 <= r["latitude"] <= 50 and 0 <= r["longitude"] <= 11  # Paris + Switzerland
            assert r["fetch_time"] - r["time_position"] <= 15
            assert r["time_position"] <= r["last_contact"]
        else:
            assert r["longitude"] is None and r["time_position"] is None
        if r["velocity"] is not None:
            assert 0 <= r["velocity"] < 350
            assert 0 <= r["true_track"] < 360
            assert abs(r["vertical_rate"]) < 100
        if r["baro_altitude"] is not None:
            assert -500 < r["baro_altitude"] < 40_000  # includes OpenSky's own glitches
        assert (r["sensors"], r["geo_altitude"], r["spi"]) == (None, None, False)
        assert (r["position_source"], r["category"]) == (0, 0)


def test_arrow_and_pandas_loaders():
    """load_arrow uses the schema's Arrow types; load_pandas gives the same rows, nullable ints."""
    table = data.load_arrow()
    assert table.schema.equals(arrow_row_schema())
    assert table.num_rows == ROWS
    df = data.load_pandas()
    assert len(df) == ROWS and list(df.columns) == ROW_FIELD_NAMES
    assert str(df["time_position"].dtype) == "Int64"
    assert int(df["time_position"].isna().sum()) == NULL_POSITION_ROWS


# ------------------------------------------------------------------ ICAO country table
@pytest.mark.parametrize(
    "icao24, country",
    [
        ("3c6444", "Germany"),
        ("3C6444", "Germany"),
        ("3fffff", "Germany"),
        ("3bffff", "France"),
        ("392af9", "France"),
        ("a1b2c3", "United States"),
        ("afffff", "United States"),
        ("400a0e", "United Kingdom"),
        ("43c123", "United Kingdom"),
        ("4b1234", "Switzerland"),
        ("4ca7b5", "Ireland"),
        ("484506", "Kingdom of the Netherlands"),
        ("7c1234", "Australia"),
        ("780abc", "China"),
        ("896123", "United Arab Emirates"),
        ("155432", "Russian Federation"),
        ("c01234", "Canada"),
        ("e48123", "Brazil"),
        (0x3C6444, "Germany"),
        ("000001", UNKNOWN),
        ("b00000", UNKNOWN),
        ("ffffff", UNKNOWN),
        ("zzzzzz", UNKNOWN),
        ("", UNKNOWN),
        (None, UNKNOWN),
    ],
)
def test_country_of_known_addresses(icao24, country):
    """The ICAO 24-bit block of an address names its State of registry."""
    assert country_of(icao24) == country


def test_allocation_table_is_sorted_and_disjoint():
    """Blocks are ordered, do not overlap and cover the major States."""
    for (_, last, _), (first, _, _) in zip(ALLOCATIONS, ALLOCATIONS[1:], strict=False):
        assert last < first
    names = {name for _, _, name in ALLOCATIONS}
    assert len(names) == len(ALLOCATIONS) > 180
    for state in (
        "United States",
        "Germany",
        "France",
        "United Kingdom",
        "China",
        "Japan",
        "India",
    ):
        assert state in names


# ------------------------------------------------------------------ bad rows are reported
def test_bad_sample_is_reported_with_reasons():
    """Every bad input of the hand-made sample is rejected with its reason and line number."""
    report = data.validate_file(data.BAD_SAMPLE)
    assert report.rows_in == len(report.kept) + len(report.rejected) == 12
    assert len(report.kept) == 2
    assert report.counts == {
        data.NULL_POSITION: 1,
        data.WRONG_TYPE: 3,
        data.OUT_OF_RANGE: 2,
        data.MALFORMED_LINE: 1,
        data.MALFORMED_STATE: 1,
        data.MALFORMED_SNAPSHOT: 1,
        data.BAD_ICAO24: 1,
    }
    by_reason = {(r.reason, r.line) for r in report.rejected}
    assert (data.MALFORMED_LINE, 3) in by_reason
    assert (data.MALFORMED_SNAPSHOT, 5) in by_reason
    wrong = sorted(r.detail.split(" ")[0] for r in report.rejected if r.reason == data.WRONG_TYPE)
    assert wrong == ["icao24", "longitude", "on_ground"]
    assert "rejected: 10" in report.summary()


def test_strict_loader_names_the_bad_line():
    """load_snapshots refuses a malformed line and says which line of which file."""
    with pytest.raises(data.RecordingError, match=r"bad_sample\.json:3: malformed JSON line"):
        data.load_snapshots(data.BAD_SAMPLE)


def test_strict_loader_refuses_a_short_state(tmp_path):
    """load_rows refuses a state vector of the wrong length, naming the snapshot."""
    path = tmp_path / "short.json"
    path.write_text('{"time": 5, "states": [["3c6444", "DLH9LF  "]]}\n')
    with pytest.raises(data.RecordingError, match="time=5: malformed state vector"):
        data.load_rows(path)


def test_validate_rows_counts_add_up():
    """validate_rows keeps good rows and rejects each bad one once; in == kept + rejected."""
    good = data.snapshot_rows(data.load_snapshots(data.RECORDING)[0])[:3]
    bad = [
        {**good[0], "latitude": None},
        {**good[0], "velocity": "fast"},
        {**good[0], "on_ground": 1},
        {**good[0], "last_contact": 1.5},
        {**good[0], "latitude": -91.0},
        {**good[0], "longitude": math.inf},
        "not a row",
    ]
    report = data.validate_rows(good + bad)
    assert report.rows_in == 10 and len(report.kept) == 3 and len(report.rejected) == 7
    assert report.counts == {data.NULL_POSITION: 1, data.WRONG_TYPE: 5, data.OUT_OF_RANGE: 1}


def test_schema_field_count():
    """The recording's arrays line up with harness.runtime.schema's 18 state fields."""
    assert len(STATE_FIELDS) == 18


# ------------------------------------------------------------------ the converter
def _converter():
    path = ROOT / "tools" / "make_recording.py"
    spec = importlib.util.spec_from_file_location("make_recording", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def _point(ts_s: int, **values) -> dict:
    base = {
        "icao24": "3c6444",
        "ts": ts_s * 1000,
        "position": (49.0, 2.5),
        "altitude_ft": 10000.0,
        "groundspeed_kt": 300.0,
        "track": 90.0,
        "vertical_rate_fpm": 1000.0,
        "callsign": "DLH9LF",
        "squawk": "0252",
        "onground": None,
        "source": "test",
    }
    base.update(values)
    return base


def test_converter_units_and_staleness():
    """Hand-made points: SI units, 8-char callsign, position null after 15 s, gone after 60 s."""
    mr = _converter()
    snaps = mr.snapshots([_point(1000), _point(1003, groundspeed_kt=None)])
    assert [s["time"] for s in snaps] == [1000, 1010]
    state = snaps[1]["states"][0]
    assert state[:5] == ["3c6444", "DLH9LF  ", "Germany", 1003, 1003]
    assert state[7] == 3048.0  # 10,000 ft
    assert state[9] == round(300 * 1852 / 3600, 2)  # kt -> m/s, carried from t=1000
    assert state[11] == round(1000 * 0.3048 / 60, 2)  # ft/min -> m/s
    assert state[8] is False and state[14] == "0252"
    later = mr.snapshots([_point(1000), _point(1040, icao24="4b1234")])
    by_time = {s["time"]: {st[0]: st for st in s["states"]} for s in later}
    assert by_time[1010]["3c6444"][6] == 49.0
    assert by_time[1020]["3c6444"][6] is None and by_time[1020]["3c6444"][3] is None
    assert by_time[1040]["3c6444"][1] == "DLH9LF  "  # identity kept 60 s
    assert len(later) == 5  # 1000..1040
    assert mr.squawk_code(252.0) == "0252" and mr.squawk_code("14") == "0014"


def test_converter_ground_rule_without_flag():
    """Without a recorded flag, a slow aircraft without altitude is on the ground."""
    mr = _converter()
    snaps = mr.snapshots([_point(1000, altitude_ft=None, groundspeed_kt=12.0)])
    assert snaps[0]["states"][0][8] is True


def test_data_md_mentions_source_and_licence():
    """DATA.md says where the data came from and under which licence."""
    text = (Path(data.RECORDING).parent / "DATA.md").read_text()
    for needed in (
        "OpenSky Network",
        "traffic",
        "2.13",
        "MIT",
        "Xavier Olive",
        data.RECORDING.name,
    ):
        assert needed in text
