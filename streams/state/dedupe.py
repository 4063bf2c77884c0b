# mypyc: compiled (the per-event path: setup.py)
"""Event deduplication by (site, event id) over a bounded event-time horizon.

One store per input partition. The first version of an event wins: an exact resend
is dropped as a duplicate, a resend with different content is a conflict (sent to
the dead-letter topic so it is visible; a correction needs a new event id). Only
accepted events are remembered, so a rejected record's corrected resend may reuse
its id. Entries older than the partition's watermark minus the horizon are evicted
in whole event-time days.
"""

from __future__ import annotations

import hashlib
from typing import Any

from streams.vocabulary.time import DAY_US

NEW = "new"
DUPLICATE = "duplicate"
CONFLICT = "conflict"


def content_digest(event: dict[str, Any]) -> int:
    """Stable 63-bit digest of a decoded event, so a resend in another framing still matches.

    Decoded records list their fields in reader-schema order, so the values alone say it."""
    return int.from_bytes(hashlib.blake2b(repr(tuple(event.values())).encode(), digest_size=8).digest()) >> 1


class DedupeStore:
    """Seen (site, event id) -> (event time us, content digest) for one partition."""

    __slots__ = ("_days", "_pending", "_seen", "horizon_us", "watermark")

    def __init__(self, horizon_us: int) -> None:
        self.horizon_us = horizon_us
        self.watermark = 0
        self._seen: dict[tuple[str, str], tuple[int, int]] = {}
        self._days: dict[int, list[tuple[str, str]]] = {}
        # SeenEvent records as tuples of their fields in schema order (the encoder takes them
        # without a dict per event)
        self._pending: list[tuple[str, str, int, int]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, site_id: str, event_id: str, event_time: int, digest: int) -> str:
        """NEW (and remembered), DUPLICATE or CONFLICT."""
        key = (site_id, event_id)
        seen = self._seen.get(key)
        if seen is not None:
            return DUPLICATE if seen[1] == digest else CONFLICT
        self._remember(key, event_time, digest)
        self._pending.append((site_id, event_id, event_time, digest))
        return NEW

    def is_beyond_horizon(self, event_time: int) -> bool:
        return event_time < self.watermark - self.horizon_us

    def _remember(self, key: tuple[str, str], event_time: int, digest: int) -> None:
        self._seen[key] = (event_time, digest)
        self._days.setdefault(event_time // DAY_US, []).append(key)
        self.watermark = max(self.watermark, event_time)

    def evict(self) -> int:
        """Drop whole days older than the horizon; return how many entries went."""
        oldest_kept = (self.watermark - self.horizon_us) // DAY_US
        gone = 0
        for day in [d for d in self._days if d < oldest_kept]:
            for key in self._days.pop(day):
                if self._seen.pop(key, None) is not None:
                    gone += 1
        return gone

    def take_delta(self, chunk: int = 10_000) -> list[dict[str, Any]]:
        """Changelog records of what was added since the last call, ``chunk`` entries each
        (a batch of containers can add hundreds of thousands; a record must stay < 1 MB)."""
        pending, self._pending = self._pending, []
        return [{"snapshot": False, "watermark": self.watermark, "entries": pending[i:i + chunk]}
                for i in range(0, len(pending), chunk)]

    def snapshot(self, chunk: int = 10_000) -> list[dict[str, Any]]:
        """The whole state as changelog records: a snapshot, then deltas, ``chunk``
        entries each, so no record outgrows the broker's message size limit."""
        self._pending = []
        entries = [(s, e, t, d) for (s, e), (t, d) in self._seen.items()]
        return [{"snapshot": i == 0, "watermark": self.watermark, "entries": entries[i:i + chunk]}
                for i in range(0, max(len(entries), 1), chunk)]

    def restored(self) -> None:
        self.evict()

    def apply(self, record: dict[str, Any]) -> None:
        """Replay one changelog record (delta or snapshot) into the store."""
        if record["snapshot"]:
            self._seen.clear()
            self._days.clear()
        for e in record["entries"]:
            self._remember((e["site_id"], e["event_id"]), e["event_time"], e["digest"])
        self.watermark = max(self.watermark, record["watermark"])
