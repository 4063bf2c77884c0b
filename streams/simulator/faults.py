"""Feed faults in arrival order: late and out-of-order events, exact resends, malformed records.

Each malformed record carries the dead-letter reason the normaliser will give it, and a
fresh event id (never one of a valid event).
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .habits import SiteProfile
from .journey import DAY, HOUR, MINUTE, Event
from .model import DUPLICATE, MALFORMED, VALID, SimulationConfig

JITTER_MAX = 10 * MINUTE  # out-of-order arrivals within a short jitter
RESEND_MAX = 2 * HOUR  # an exact resend follows its original by up to this

#: (kind of malformed record, dead-letter reason, weight)
MALFORMED_KINDS = (
    ("garbage", "undecodable", 0.15),
    ("truncated", "undecodable", 0.15),
    ("missing_field", "missing_field", 0.15),
    ("out_of_range", "out_of_range", 0.15),
    ("unit_unconvertible", "unit_unconvertible", 0.15),
    ("unknown_site", "unknown_site", 0.10),
    ("future_time", "future_time", 0.15),
)
_BAD_FIRST_BYTES = (0x00, 0xC3, ord("O"))  # would look like a framing or a container


@dataclass(slots=True)
class Item:
    """One message to send: a record to encode, or raw bytes."""

    t: int  # UTC event time (microseconds), for pacing
    kind: str
    reason: str | None
    record: dict[str, Any] | None
    area: str | None
    key: bytes
    raw: bytes | None = None
    cut: float = 0.0  # truncate the encoded record to this fraction of its bytes


def arrange(events: list[Event], config: SimulationConfig,
            profiles: Mapping[str, SiteProfile]) -> list[Item]:
    """The messages in arrival order: event-time order disturbed by the configured faults."""
    rng = random.Random(f"{config.seed}:faults")
    n = len(events)
    keyed: list[tuple[int, int, Item]] = []
    delays = [0] * n
    late_max = int(config.late_max_hours * HOUR)
    late_min = min(HOUR, late_max // 2)
    count = round(config.late_rate * n)
    picks = rng.sample(range(n), min(n, 2 * count))
    for i in picks[:count]:
        delays[i] = late_min + int(rng.random() * (late_max - late_min))
    for i in picks[count:]:
        delays[i] = 1_000_000 + int(rng.random() * JITTER_MAX)
    for i, (t, _, _, area, record) in enumerate(events):
        item = Item(t, VALID, None, record, area, profiles[record["site_id"]].key)
        keyed.append((t + delays[i], 4 * i, item))
    for i in rng.sample(range(n), min(n, round(config.duplicate_rate * n))):
        t, _, _, area, record = events[i]
        item = Item(t, DUPLICATE, None, record, area, profiles[record["site_id"]].key)
        keyed.append((t + delays[i] + int(rng.random() * RESEND_MAX), 4 * i + 1, item))
    if n:
        used = {e[4]["event_id"] for e in events}
        kinds = [k for k, _, _ in MALFORMED_KINDS]
        weights = [w for _, _, w in MALFORMED_KINDS]
        for _ in range(round(config.malformed_rate * n)):
            i = rng.randrange(n)
            kind = rng.choices(kinds, weights)[0]
            item = malformed(rng, kind, events[i], profiles, used)
            keyed.append((events[i][0] + int(rng.random() * MINUTE), 4 * i + 2, item))
    keyed.sort()  # (arrival, unique tie-break): items themselves are never compared
    return [item for _, _, item in keyed]


def malformed(rng: random.Random, kind: str, template: Event, profiles: Mapping[str, SiteProfile],
              used: set[str]) -> Item:
    """A malformed message of ``kind`` modelled on a valid event."""
    t, _, _, area, source = template
    record = dict(source)
    event_id = _fresh_id(rng, used)
    record["event_id"] = event_id
    prof = profiles[record["site_id"]]
    reason = next(r for k, r, _ in MALFORMED_KINDS if k == kind)
    item = Item(t, MALFORMED, reason, record, area, prof.key)
    if kind == "garbage":
        item.record = None
        item.raw = _garbage(rng, record)
    elif kind == "truncated":
        item.cut = rng.uniform(0.05, 0.95)
    elif kind == "missing_field":
        record[rng.choice(("source_patient_id", "event_id"))] = ""
    elif kind in ("out_of_range", "unit_unconvertible"):
        _as_lab(record, prof)
        if kind == "unit_unconvertible":
            record.update(code="2160-0", value=round(rng.uniform(0.6, 2.5), 2),
                          unit=rng.choice(("furlongs", "mmHg", "kg")))
        elif rng.random() < 0.5:
            record.update(code="2857-1", value=-round(rng.uniform(0.1, 5.0), 2), unit="ng/mL")
        else:
            record.update(code="718-7", value=900.0, unit="g/L")
    elif kind == "unknown_site":
        site = rng.choice(("XX-UNK", "ZZ-TEST", "DE-XYZ", "LOCALHOST"))
        while site in profiles:
            site += "-X"
        record["site_id"] = site
        item.key = site.encode()
    elif kind == "future_time":
        record["event_time"] = record["recorded_time"] + 2 * DAY
    return item


def _fresh_id(rng: random.Random, used: set[str]) -> str:
    while True:
        h = f"{rng.getrandbits(128):032x}"
        event_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if event_id not in used:
            used.add(event_id)
            return event_id


def _as_lab(record: dict[str, Any], prof: SiteProfile) -> None:
    record.update(event_type="LAB_RESULT", code_system=prof.spelling["LOINC"], prom=None,
                  admission_type=None, disposition=None)


def _garbage(rng: random.Random, record: dict[str, Any]) -> bytes:
    """Bytes no decoder can read: random noise, or JSON from a misconfigured producer."""
    if rng.random() < 0.5:
        return json.dumps({"id": record["event_id"], "type": record["event_type"],
                           "site": record["site_id"]}).encode()
    data = bytearray(rng.getrandbits(8) for _ in range(rng.randint(12, 200)))
    while data[0] in _BAD_FIRST_BYTES:
        data[0] = rng.getrandbits(8)
    return bytes(data)
