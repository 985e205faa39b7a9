"""The one definition of a valid state vector, shared by the batch (Lab 01) and streaming (Lab 02) paths.

A row that reads and types correctly (see `harness.runtime.data` for the reasons an input cannot
be read at all) is still rejected when it fails one of the rules below. Batch quarantines it and
streaming dead-letters it with the same reason text, so both paths keep the same rows.

This module holds facts only — reason codes, what each means, thresholds, the order the rules are
checked in — never the code that checks them: students write that (as Spark column logic in
Lab 01, reused in Lab 02).

    from harness.runtime import validity
    validity.ROW_RULES           # reasons of the per-row rules, first match wins
    validity.explain(reason)     # one line a human can read
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------ reason codes
# Each is the exact text stored in the quarantine's / dead-letter topic's `reason` field.
INVALID_ICAO24 = "invalid icao24"
NULL_POSITION = "null position"
OUT_OF_RANGE = "latitude/longitude out of range"
NEGATIVE_VELOCITY = "negative velocity"
FUTURE_POSITION = "time_position after fetch_time"
DUPLICATE = "duplicate (icao24, time_position)"

# ------------------------------------------------------------------ thresholds
# icao24: the aircraft's 24-bit ICAO address as exactly ICAO24_LENGTH characters of
# ICAO24_ALPHABET. Case-SENSITIVE: OpenSky always sends lower case, so "3C6444" is invalid. It did
# not come from OpenSky unchanged, and as a key it would split one aircraft in two (3C6444 and
# 3c6444 would be counted, deduplicated and upserted separately). A null icao24 is invalid too.
ICAO24_LENGTH = 6
ICAO24_ALPHABET = "0123456789abcdef"

# Degrees, both bounds valid (latitude 90 is the North Pole, longitude -180 the antimeridian).
LATITUDE_MIN, LATITUDE_MAX = -90.0, 90.0
LONGITUDE_MIN, LONGITUDE_MAX = -180.0, 180.0

# m/s. A speed is a magnitude: below MIN_VELOCITY is an error. A null velocity is unknown, not invalid.
MIN_VELOCITY = 0.0

# Seconds. time_position is when the position was last updated; it cannot be later than the
# snapshot (fetch_time) that reports it. Receivers' clocks drift by a second or two, so only a
# time_position MORE than FUTURE_TOLERANCE_S seconds after fetch_time is rejected:
# fetch_time + 5 is kept, fetch_time + 6 is not.
FUTURE_TOLERANCE_S = 5


# ------------------------------------------------------------------ the rules, in order
@dataclass(frozen=True)
class Rule:
    """One reason a state vector is rejected: its code, what it means, and its scope.

    `scope` is "row" for a rule one row decides alone, "batch" for one that compares rows
    (duplicates: judged only among the rows that passed every row rule).
    """

    reason: str
    meaning: str
    scope: str = "row"


RULES: tuple[Rule, ...] = (
    Rule(
        INVALID_ICAO24,
        f"icao24 is null or not exactly {ICAO24_LENGTH} lower-case hex digits (0-9, a-f)",
    ),
    Rule(NULL_POSITION, "latitude, longitude or time_position is null"),
    Rule(
        OUT_OF_RANGE,
        f"latitude outside {LATITUDE_MIN:g}..{LATITUDE_MAX:g} or longitude outside "
        f"{LONGITUDE_MIN:g}..{LONGITUDE_MAX:g} degrees (the bounds are valid)",
    ),
    Rule(NEGATIVE_VELOCITY, f"velocity below {MIN_VELOCITY:g} m/s (a null velocity is valid)"),
    Rule(
        FUTURE_POSITION,
        f"time_position more than {FUTURE_TOLERANCE_S} s after fetch_time: a position from "
        f"the future",
    ),
    Rule(
        DUPLICATE,
        "another valid row has the same icao24 and time_position and an earlier fetch_time "
        "(ties: earlier last_contact); the earliest is kept",
        scope="batch",
    ),
)

# Reasons of the per-row rules, in the order they are checked: a row gets the FIRST that applies.
ROW_RULES: tuple[str, ...] = tuple(r.reason for r in RULES if r.scope == "row")
# Every reason, in order (ROW_RULES, then DUPLICATE).
REASONS: tuple[str, ...] = tuple(r.reason for r in RULES)
MEANINGS: dict[str, str] = {r.reason: r.meaning for r in RULES}


def explain(reason: str) -> str:
    """The one-line meaning of a reason code; ValueError naming the known codes otherwise."""
    try:
        return MEANINGS[reason]
    except KeyError:
        raise ValueError(f"unknown reason {reason!r}; known reasons: {list(REASONS)}") from None
