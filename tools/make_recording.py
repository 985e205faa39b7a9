"""Build the shipped OpenSky recording from the sample collections inside the `traffic` wheel.

What it does
    The `traffic` package (MIT licence, by Xavier Olive) ships recordings of real ADS-B traffic
    received by the OpenSky Network, as JSON lists of points: icao24, callsign, latitude,
    longitude, altitude (ft), groundspeed (kt), track (deg), vertical_rate (ft/min), squawk,
    timestamp (ms) and, in some collections, an `onground` flag. This script turns two of them
    into what OpenSky's REST API `/api/states/all` answers: one snapshot
    `{"time": <unix s>, "states": [[18 fields], ...]}` every 10 seconds, in SI units, and writes
    them as gzipped JSON Lines (one snapshot per line) to `data/`.

    Sources (both reproduced whole inside the chosen window; nothing is invented):
      * `quickstart`  — Paris area, 2021-10-07 12:00–15:00 UTC, 1 s resolution, with `onground`.
      * `switzerland` — Swiss airspace above FL300, 2018-08-01, 10 s resolution. We keep the
        same time of day (12:00–15:00 UTC) and shift it by whole days (+1163 days) onto
        2021-10-07, so both recordings form one continuous 3-hour recording. An aircraft present
        in both at overlapping times would be in two places at once: its Swiss track is dropped.
    `savan` (one calibration aircraft over 30 days) is not used.

How each snapshot at time T (a multiple of 10 s) is built — mirroring the API's semantics
    * an aircraft is listed when its last message is at most STALE_AFTER_S (60 s) old;
    * `last_contact` = time of its last message; `time_position` = time of its last position;
    * position, altitude, velocity, track and vertical rate are the most recent values received at
      most FIELD_MAX_AGE_S (15 s) before T, else null (OpenSky: "null if no position report was
      received within the past 15 s"); callsign and squawk are the most recent within 60 s;
    * units: ft → m (× 0.3048), kt → m/s (× 1852/3600), ft/min → m/s (× 0.3048/60);
      rounded like the API (lat/lon 4 decimals, the rest 2);
    * `callsign` is padded with spaces to 8 characters, as the API sends it;
    * `origin_country` from the ICAO 24-bit address block (harness/runtime/icao_countries.py), which is
      how OpenSky derives it;
    * `on_ground`: the recorded `onground` flag when the source has one; otherwise derived as
      "groundspeed < 50 kt and (no altitude or altitude < 6000 ft)";
    * `geo_altitude` null (the sources carry no geometric altitude), `sensors` null, `spi` false,
      `position_source` 0 (ADS-B), `category` 0 ("no information", as with `extended=1`);
    * squawk codes are 4-digit strings (leading zeros restored, e.g. "252" → "0252").

Usage (reproducible: the same wheel gives a byte-identical file)
    .venv/bin/pip download --no-deps traffic==2.13 -d /tmp/traffic
    .venv/bin/python tools/make_recording.py --wheel /tmp/traffic/traffic-2.13-py3-none-any.whl
    # or let the script run that pip download itself:
    .venv/bin/python tools/make_recording.py --download
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.runtime.icao_countries import country_of  # noqa: E402

TRAFFIC_VERSION = "2.13"
COLLECTIONS = "traffic/data/samples/collections"
OUTPUT = ROOT / "data" / "opensky_states_paris_switzerland_3h.json.gz"

SNAPSHOT_EVERY_S = 10  # OpenSky's time resolution for anonymous users
STALE_AFTER_S = 60  # an aircraft leaves the snapshots 60 s after its last message
FIELD_MAX_AGE_S = 15  # kinematic fields older than this are null in a snapshot

FT = 0.3048  # m
KT = 1852 / 3600  # m/s
FT_PER_MIN = 0.3048 / 60  # m/s

DAY_MS = 86_400_000


@dataclass(frozen=True)
class Source:
    """One sample collection: which file, which UTC window of it, and how far to shift it."""

    name: str
    start_ms: int  # window start (inclusive), in the source's own time
    end_ms: int  # window end (exclusive)
    shift_days: int = 0


def utc_ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


SOURCES = [
    Source("quickstart", utc_ms(2021, 10, 7, 12), utc_ms(2021, 10, 7, 15)),
    Source("switzerland", utc_ms(2018, 8, 1, 12), utc_ms(2018, 8, 1, 15), shift_days=1163),
]


def num(value: Any) -> float | None:
    """A finite number or None (the sources use null and, in places, NaN)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def squawk_code(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    text = str(int(value)) if isinstance(value, float) else str(value).strip()
    return text.zfill(4) if text else None


def read_points(wheel: Path, source: Source) -> list[dict[str, Any]]:
    """The source's points inside its window, normalised, time-shifted, sorted by time."""
    with zipfile.ZipFile(wheel) as zf:
        raw = json.loads(gzip.decompress(zf.read(f"{COLLECTIONS}/{source.name}.json.gz")))
    points = []
    for p in raw:
        if not source.start_ms <= p["timestamp"] < source.end_ms:
            continue
        lat, lon = num(p.get("latitude")), num(p.get("longitude"))
        has_position = lat is not None and lon is not None
        callsign = (p.get("callsign") or "").strip() or None
        onground = p.get("onground")
        points.append(
            {
                "icao24": p["icao24"].strip().lower(),
                "ts": p["timestamp"] + source.shift_days * DAY_MS,
                "position": (lat, lon) if has_position else None,
                "altitude_ft": num(p.get("altitude")),
                "groundspeed_kt": num(p.get("groundspeed")),
                "track": num(p.get("track")),
                "vertical_rate_fpm": num(p.get("vertical_rate")),
                "callsign": callsign,
                "squawk": squawk_code(p.get("squawk")),
                "onground": onground if isinstance(onground, bool) else None,
                "source": source.name,
            }
        )
    points.sort(key=lambda q: (q["ts"], q["icao24"]))
    return points


def drop_collisions(first: list[dict], second: list[dict]) -> tuple[list[dict], set[str]]:
    """Drop from `second` the aircraft that `first` also has at overlapping times (±60 s)."""

    def spans(points: list[dict]) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for p in points:
            lo, hi = out.get(p["icao24"], (p["ts"], p["ts"]))
            out[p["icao24"]] = (min(lo, p["ts"]), max(hi, p["ts"]))
        return out

    a, b = spans(first), spans(second)
    margin = STALE_AFTER_S * 1000
    clash = {
        i
        for i in a.keys() & b.keys()
        if a[i][0] - margin <= b[i][1] and b[i][0] <= a[i][1] + margin
    }
    return [p for p in second if p["icao24"] not in clash], clash


# Fields a track remembers, each with the time it was last received.
TRACKED = ("position", "altitude_ft", "groundspeed_kt", "track", "vertical_rate_fpm", "callsign")
TRACKED += ("squawk", "onground")


@dataclass
class Track:
    """What the receiver network knows about one aircraft: each field's last value and its time."""

    icao24: str
    last_contact_ms: int = 0
    fields: dict[str, tuple[Any, int]] = field(default_factory=dict)

    def update(self, p: dict[str, Any]) -> None:
        self.last_contact_ms = p["ts"]
        for name in TRACKED:
            if p[name] is not None:
                self.fields[name] = (p[name], p["ts"])

    def get(self, name: str, now_ms: int, max_age_s: int) -> tuple[Any, int | None]:
        value, ts = self.fields.get(name, (None, None))
        if ts is None or now_ms - ts > max_age_s * 1000:
            return None, None
        return value, ts


def r(value: float | None, digits: int, scale: float = 1.0) -> float | None:
    return None if value is None else round(value * scale, digits)


def state_vector(track: Track, now_ms: int) -> list[Any]:
    """The 18-field `/states/all` array for `track` as seen at `now_ms`."""
    fresh = FIELD_MAX_AGE_S
    position, position_ts = track.get("position", now_ms, fresh)
    altitude, _ = track.get("altitude_ft", now_ms, fresh)
    speed, _ = track.get("groundspeed_kt", now_ms, fresh)
    true_track, _ = track.get("track", now_ms, fresh)
    climb, _ = track.get("vertical_rate_fpm", now_ms, fresh)
    callsign, _ = track.get("callsign", now_ms, STALE_AFTER_S)
    squawk, _ = track.get("squawk", now_ms, STALE_AFTER_S)
    onground, _ = track.get("onground", now_ms, STALE_AFTER_S)
    if onground is None:  # sources without the flag: a slow aircraft low down (or without altitude)
        last_speed = track.fields.get("groundspeed_kt", (None, 0))[0]
        last_alt = track.fields.get("altitude_ft", (None, 0))[0]
        onground = (
            last_speed is not None and last_speed < 50 and (last_alt is None or last_alt < 6000)
        )
    lat, lon = position if position else (None, None)
    return [
        track.icao24,
        callsign.ljust(8) if callsign else None,
        country_of(track.icao24),
        position_ts // 1000 if position_ts is not None else None,
        track.last_contact_ms // 1000,
        r(lon, 4),
        r(lat, 4),
        r(altitude, 2, FT),
        bool(onground),
        r(speed, 2, KT),
        r(true_track, 2),
        r(climb, 2, FT_PER_MIN),
        None,  # sensors
        None,  # geo_altitude: not in the sources
        squawk,
        False,  # spi
        0,  # position_source: ADS-B
        0,  # category: no information
    ]


def snapshots(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One snapshot every SNAPSHOT_EVERY_S from the first point to the last."""
    step = SNAPSHOT_EVERY_S * 1000
    first = -(-points[0]["ts"] // step) * step  # round up to the grid
    last = -(-points[-1]["ts"] // step) * step
    tracks: dict[str, Track] = {}
    out, i = [], 0
    for now in range(first, last + 1, step):
        while i < len(points) and points[i]["ts"] <= now:
            p = points[i]
            tracks.setdefault(p["icao24"], Track(p["icao24"])).update(p)
            i += 1
        live = [t for t in tracks.values() if now - t.last_contact_ms <= STALE_AFTER_S * 1000]
        states = [state_vector(t, now) for t in sorted(live, key=lambda t: t.icao24)]
        out.append({"time": now // 1000, "states": states})
    return out


def write_jsonl_gz(path: Path, docs: list[dict[str, Any]]) -> int:
    """Gzipped JSON Lines, byte-reproducible (no file name nor time in the gzip header)."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as gz:
        for doc in docs:
            gz.write(json.dumps(doc, separators=(",", ":"), allow_nan=False).encode() + b"\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return len(buffer.getvalue())


def summary(snaps: list[dict[str, Any]]) -> dict[str, Any]:
    states = [s for snap in snaps for s in snap["states"]]
    aircraft = {s[0] for s in states}
    countries = Counter()
    for icao in aircraft:
        countries[country_of(icao)] += 1
    t0, t1 = snaps[0]["time"], snaps[-1]["time"]
    return {
        "snapshots": len(snaps),
        "state_vectors": len(states),
        "distinct_aircraft": len(aircraft),
        "distinct_callsigns": len({s[1] for s in states if s[1]}),
        "first_time": t0,
        "last_time": t1,
        "span_s": t1 - t0,
        "first_utc": datetime.fromtimestamp(t0, UTC).isoformat(),
        "last_utc": datetime.fromtimestamp(t1, UTC).isoformat(),
        "max_states_per_snapshot": max(len(s["states"]) for s in snaps),
        "min_states_per_snapshot": min(len(s["states"]) for s in snaps),
        "null_position_states": sum(1 for s in states if s[5] is None or s[6] is None),
        "on_ground_states": sum(1 for s in states if s[8]),
        "null_callsign_states": sum(1 for s in states if s[1] is None),
        "countries": len(countries),
        "aircraft_per_country": dict(countries.most_common()),
    }


def download_wheel(dest: Path) -> Path:
    requirement = f"traffic=={TRAFFIC_VERSION}"
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", requirement, "-d", str(dest)]
    subprocess.run(pip, check=True)
    return next(dest.glob(f"traffic-{TRAFFIC_VERSION}-*.whl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--wheel", type=Path, help=f"path to traffic-{TRAFFIC_VERSION}-*.whl")
    group.add_argument("--download", action="store_true", help="pip download the wheel first")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        wheel = download_wheel(Path(tmp)) if args.download else args.wheel
        parts = [read_points(wheel, source) for source in SOURCES]
    for source, pts in zip(SOURCES, parts, strict=True):
        print(f"{source.name}: {len(pts)} points, {len({p['icao24'] for p in pts})} aircraft")
    swiss, clash = drop_collisions(parts[0], parts[1])
    print(f"dropped {len(clash)} Swiss aircraft also over Paris at the same time: {sorted(clash)}")
    points = sorted(parts[0] + swiss, key=lambda q: (q["ts"], q["icao24"]))

    snaps = snapshots(points)
    size = write_jsonl_gz(args.out, snaps)
    stats = summary(snaps)
    print(
        f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}"
        f" ({size / 1e6:.2f} MB)"
    )
    print(json.dumps(stats, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
