"""The shipped recording scaled up: copies one after another, times and addresses shifted.

Copy k of the recording starts `k * (span + step)` seconds after the original (so the copies form
one continuous timeline without repeated snapshot times) and every aircraft's `icao24` is moved by
`k * ICAO_STRIDE` modulo 2^24 (a one-to-one mapping within a copy, so copy k's aircraft are other
aircraft than copy 0's). Everything else is as recorded. Copy 0 is the recording itself.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.common import CACHE_DIR, log
from harness.runtime.data import RECORDING, load_snapshots, snapshot_rows

ICAO_STRIDE = 0x9E3779  # odd, so k * stride walks the whole 24-bit space
TIME_POSITION, LAST_CONTACT = (
    3,
    4,
)  # indices in a state vector (harness.runtime.schema.STATE_FIELDS)


@lru_cache(maxsize=1)
def original() -> tuple[dict[str, Any], ...]:
    return tuple(load_snapshots(RECORDING))


def recording_rows() -> int:
    """State vectors in the shipped recording."""
    return sum(len(s["states"] or []) for s in original())


def copy_shift(k: int) -> int:
    snaps = original()
    span = snaps[-1]["time"] - snaps[0]["time"]
    step = snaps[1]["time"] - snaps[0]["time"] if len(snaps) > 1 else 10
    return k * (span + step)


def shifted_icao(icao24: str, k: int) -> str:
    if k == 0:
        return icao24
    return f"{(int(icao24, 16) + k * ICAO_STRIDE) % 2**24:06x}"


def shifted_snapshot(snapshot: dict[str, Any], k: int) -> dict[str, Any]:
    """Copy `k` of one snapshot (a new dict; the original is not changed)."""
    if k == 0:
        return snapshot
    dt = copy_shift(k)
    states = []
    for state in snapshot["states"] or []:
        state = list(state)
        state[0] = shifted_icao(state[0], k)
        for i in (TIME_POSITION, LAST_CONTACT):
            if state[i] is not None:
                state[i] += dt
        states.append(state)
    return {"time": snapshot["time"] + dt, "states": states}


def copies_for(rows: int) -> int:
    """How many copies hold at least `rows` state vectors."""
    return max(1, math.ceil(rows / recording_rows()))


def scaled_snapshots(copies: int) -> Iterator[dict[str, Any]]:
    for k in range(copies):
        for snapshot in original():
            yield shifted_snapshot(snapshot, k)


def scaled_rows(count: int) -> list[dict[str, Any]]:
    """The first `count` state vectors (flat rows) of the scaled recording."""
    rows: list[dict[str, Any]] = []
    for snapshot in scaled_snapshots(copies_for(count)):
        rows += snapshot_rows(snapshot)
        if len(rows) >= count:
            break
    return rows[:count]


def scaled_files(copies: int) -> list[Path]:
    """The scaled recording as one gzipped JSON Lines file per copy (cached under .stack/bench)."""
    folder = CACHE_DIR / "scaled_recording"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(copies):
        path = folder / f"copy-{k:04d}.json.gz"
        if not path.exists():
            if k % 10 == 0:
                log(f"writing scaled recording copy {k + 1}/{copies} to {folder}")
            partial = path.with_suffix(".partial")
            with gzip.open(partial, "wt", encoding="utf-8", compresslevel=1) as out:
                for snapshot in original():
                    out.write(json.dumps(shifted_snapshot(snapshot, k), separators=(",", ":")))
                    out.write("\n")
            partial.rename(path)
        files.append(path)
    return files


def kept_by_the_rules(snapshots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The snapshots with only the state vectors both Lab 01 and Lab 02 keep (harness.runtime.validity:
    the row rules, then the first of each (icao24, time_position)), so that every row the streaming
    runs publish is one ClickHouse must show; the recording's rejects would never appear there."""
    from harness.runtime import validity as v

    seen: set[tuple[str, int]] = set()
    out = []
    for snapshot in snapshots:
        states = []
        for state in snapshot["states"] or []:
            icao, time_position, lon, lat, velocity = (state[i] for i in (0, 3, 5, 6, 9))
            if (
                not isinstance(icao, str)
                or len(icao) != v.ICAO24_LENGTH
                or set(icao) - set(v.ICAO24_ALPHABET)
                or None in (lat, lon, time_position)
                or not v.LATITUDE_MIN <= lat <= v.LATITUDE_MAX
                or not v.LONGITUDE_MIN <= lon <= v.LONGITUDE_MAX
                or (velocity is not None and velocity < v.MIN_VELOCITY)
                or time_position > snapshot["time"] + v.FUTURE_TOLERANCE_S
                or (icao, time_position) in seen
            ):
                continue
            seen.add((icao, time_position))
            states.append(state)
        out.append({"time": snapshot["time"], "states": states})
    return out
