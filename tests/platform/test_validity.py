"""The one definition of a valid state vector (harness.runtime.validity) is consistent and is the one
the rest of the harness speaks."""

from __future__ import annotations

import pytest

from harness.runtime import data, validity


def test_reasons_are_unique_ordered_and_explained():
    """Every reason has one meaning; the row rules come first, duplicates last."""
    assert len(set(validity.REASONS)) == len(validity.REASONS)
    assert validity.REASONS == (*validity.ROW_RULES, validity.DUPLICATE)
    assert validity.ROW_RULES[0] == validity.INVALID_ICAO24
    for reason in validity.REASONS:
        assert validity.explain(reason)
    with pytest.raises(ValueError, match="known reasons"):
        validity.explain("no such reason")


def test_thresholds_are_the_documented_ones():
    """The numbers the labs' READMEs and tests rely on."""
    assert (validity.LATITUDE_MIN, validity.LATITUDE_MAX) == (-90.0, 90.0)
    assert (validity.LONGITUDE_MIN, validity.LONGITUDE_MAX) == (-180.0, 180.0)
    assert validity.MIN_VELOCITY == 0.0
    assert validity.FUTURE_TOLERANCE_S == 5
    assert validity.ICAO24_LENGTH == 6
    assert validity.ICAO24_ALPHABET == "0123456789abcdef"  # lower case only
    assert str(validity.FUTURE_TOLERANCE_S) in validity.explain(validity.FUTURE_POSITION)


def test_harness_data_uses_the_same_reason_texts():
    """harness.runtime.data reports the rules it shares with the labs under the same texts."""
    assert data.NULL_POSITION == validity.NULL_POSITION
    assert data.OUT_OF_RANGE == validity.OUT_OF_RANGE
    assert data.BAD_ICAO24 == validity.INVALID_ICAO24
