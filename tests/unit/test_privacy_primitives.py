"""Pseudonyms and time conversion."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streams.clinical.clock import LocalTimeConverter, UnknownTimeZone
from streams.clinical.pseudonym import Pseudonymiser

KEY = b"k" * 40


def test_pseudonyms_are_keyed_stable_and_scoped() -> None:
    p = Pseudonymiser(KEY)
    a = p.patient("MRN-1", None, "NL-AMC")
    assert a == Pseudonymiser(KEY).patient("MRN-1", None, "NL-AMC")
    assert a != Pseudonymiser(b"x" * 40).patient("MRN-1", None, "NL-AMC")
    assert len(a) == 32 and "MRN" not in a
    # A local MRN is per site; a national id with an issuer links across sites.
    assert p.patient("MRN-1", None, "DE-CHA") != a
    assert p.patient("123", "NHI-NL", "NL-AMC") == p.patient("123", "NHI-NL", "DE-CHA")
    assert p.encounter("ENC-1", "NL-AMC") != p.encounter("ENC-1", "DE-CHA")
    assert "k" * 10 not in repr(p)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Pseudonymiser(b"short")


def _local_us(*args: int) -> int:
    return int((datetime(*args) - datetime(1970, 1, 1)) / timedelta(microseconds=1))  # type: ignore[arg-type]


def _utc(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


@pytest.mark.parametrize(("local", "zone", "expected"), [
    ((2025, 1, 15, 12, 0), "Europe/Berlin", datetime(2025, 1, 15, 11, 0, tzinfo=UTC)),
    ((2025, 7, 15, 12, 0), "Europe/Berlin", datetime(2025, 7, 15, 10, 0, tzinfo=UTC)),
    ((2025, 7, 15, 12, 0), "Europe/London", datetime(2025, 7, 15, 11, 0, tzinfo=UTC)),
    ((2025, 7, 15, 12, 0), None, datetime(2025, 7, 15, 12, 0, tzinfo=UTC)),
    # DST gap (02:30 does not exist on 30 March): resolved with the offset before the change.
    ((2025, 3, 30, 2, 30), "Europe/Berlin", datetime(2025, 3, 30, 1, 30, tzinfo=UTC)),
    # DST fold (02:30 happens twice on 26 October): the first occurrence.
    ((2025, 10, 26, 2, 30), "Europe/Berlin", datetime(2025, 10, 26, 0, 30, tzinfo=UTC)),
    ((2025, 10, 26, 3, 0), "Europe/Berlin", datetime(2025, 10, 26, 2, 0, tzinfo=UTC)),
    # Sub-second times survive.
    ((2025, 7, 15, 12, 0, 0, 123456), "Europe/Helsinki", datetime(2025, 7, 15, 9, 0, 0, 123456, tzinfo=UTC)),
])
def test_local_wall_clock_to_utc(local: tuple[int, ...], zone: str | None, expected: datetime) -> None:
    assert _utc(LocalTimeConverter().to_utc_us(_local_us(*local), zone)) == expected


def test_conversion_agrees_with_zoneinfo_every_quarter_hour_of_a_year() -> None:
    from zoneinfo import ZoneInfo

    conv, zone = LocalTimeConverter(), ZoneInfo("Europe/Madrid")
    wall = datetime(2025, 1, 1, 0, 7)
    while wall.year == 2025:
        expected = wall.replace(tzinfo=zone).astimezone(UTC)
        us = int((wall - datetime(1970, 1, 1)) / timedelta(microseconds=1))
        assert _utc(conv.to_utc_us(us, "Europe/Madrid")) == expected, wall
        wall += timedelta(minutes=15)


def test_unknown_zone() -> None:
    with pytest.raises(UnknownTimeZone):
        LocalTimeConverter().to_utc_us(0, "Mars/Olympus_Mons")
