"""Site wall-clock times to UTC instants, in integer microseconds.

Feeds send local wall-clock time with an IANA zone. Conversion goes through
zoneinfo once per (zone, local day) when the offset is the same at both ends of the
day, else once per (zone, quarter hour), and is cached: UTC offsets change only at
transitions, which fall on quarter hours in every zone in use. A wall time in a
DST gap or fold resolves as ``datetime`` does with fold=0 (the offset before the
transition), and the same rule holds throughout that quarter hour.
"""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

from streams.vocabulary.time import DAY_US

_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 - naive on purpose: local wall-clock arithmetic
QUARTER_HOUR_US = 15 * 60 * 1_000_000


class UnknownTimeZone(ValueError):
    pass


class LocalTimeConverter:
    """Converts local wall-clock microseconds in a zone to UTC microseconds."""

    def __init__(self) -> None:
        self._zones: dict[str, zoneinfo.ZoneInfo] = {}
        self._offsets: dict[tuple[str, int], int] = {}      # (zone, quarter hour) -> offset us
        self._day_offsets: dict[tuple[str, int], int] = {}  # (zone, day without transition) -> offset

    def zone(self, name: str) -> zoneinfo.ZoneInfo:
        zone = self._zones.get(name)
        if zone is None:
            try:
                zone = zoneinfo.ZoneInfo(name)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
                raise UnknownTimeZone(f"unknown time zone {name!r}") from None
            self._zones[name] = zone
        return zone

    def to_utc_us(self, local_us: int, zone_name: str | None) -> int:
        """UTC microseconds of ``local_us`` wall-clock microseconds in ``zone_name`` (None: UTC)."""
        if zone_name is None:
            return local_us
        day = local_us // DAY_US
        offset = self._day_offsets.get((zone_name, day))
        if offset is not None:
            return local_us - offset
        start, end = self._offset(zone_name, day * DAY_US), self._offset(zone_name, (day + 1) * DAY_US - 1)
        if start == end:  # no transition that day (one could not fall and revert within a day)
            if len(self._day_offsets) > 100_000:
                self._day_offsets.clear()
            self._day_offsets[(zone_name, day)] = start
            return local_us - start
        bucket = local_us // QUARTER_HOUR_US
        offset = self._offsets.get((zone_name, bucket))
        if offset is None:
            offset = self._offset(zone_name, bucket * QUARTER_HOUR_US)
            if len(self._offsets) > 500_000:
                self._offsets.clear()
            self._offsets[(zone_name, bucket)] = offset
        return local_us - offset

    def _offset(self, zone_name: str, local_us: int) -> int:
        """UTC offset (us) of the quarter hour holding ``local_us`` in ``zone_name``."""
        wall = _EPOCH + timedelta(microseconds=local_us - local_us % QUARTER_HOUR_US)
        delta = wall.replace(tzinfo=self.zone(zone_name)).utcoffset()
        return int(delta.total_seconds() * 1_000_000) if delta is not None else 0


def now_us() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)
