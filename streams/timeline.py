"""A patient's clinical timeline: the facts outcome ascertainment needs, and the stays
and hospitalisations derived from them (pure logic).

A fact is a compact tuple, kept only for events an indicator can look at (stays,
deaths, and events carrying a catalogue concept or a tracked questionnaire), so the
state per active patient stays small. Facts are kept sorted by (time, key); the key
is a 64-bit digest of (site, event id), so a redelivered event is recognised and
changes nothing.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DAY_US = 86_400_000_000
TRANSFER_GAP_US = DAY_US  # an admission within 24 h of a transfer-out continues the hospitalisation


class Fact(NamedTuple):
    time: int                     # UTC microseconds
    kind: str                     # event type: ADMISSION, DISCHARGE, DIAGNOSIS, ..., DEATH
    site: str
    ref: str | None               # encounter pseudonym
    concepts: frozenset[str]
    value: float | None           # lab value (canonical unit) or questionnaire score
    attr: str | None              # admission type, disposition, or "instrument|domain"
    key: int                      # digest of (site, event id)


def event_key(site_id: str, event_id: str) -> int:
    """Signed 64-bit digest of (site, event id), the idempotence key of a fact."""
    digest = hashlib.blake2b(f"{site_id}\x1f{event_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, signed=True)


# Facts share their small immutable parts: kinds, sites, attributes and concept sets come
# from small finite sets, and one copy each (instead of one per fact) is most of the
# difference between ~3.4 and ~1 KiB of memory per patient.
_SHARED: dict[Any, Any] = {}
NO_CONCEPTS: frozenset[str] = frozenset()


def _shared(value: Any) -> Any:
    if value is None:
        return None
    found = _SHARED.get(value)
    if found is None:
        if len(_SHARED) > 100_000:  # a runaway value space (not expected): start afresh
            _SHARED.clear()
        found = _SHARED[value] = value
    return found


def fact_from_event(event: dict[str, Any], relevant: frozenset[str],
                    proms: frozenset[tuple[str, str]]) -> Fact | None:
    """The fact a NormalisedEvent contributes, or None if no indicator can use it."""
    kind = event["event_type"]
    concepts = frozenset(event["concepts"]) & relevant if event["concepts"] else NO_CONCEPTS
    attr: str | None = None
    value = event["value"]
    if kind == "ADMISSION":
        attr = event["admission_type"]
    elif kind == "DISCHARGE":
        attr = event["disposition"]
    elif kind == "PROM_RESPONSE":
        prom = event["prom"]
        if prom is None or (prom["instrument"], prom["domain"]) not in proms:
            return None
        attr = f"{prom['instrument']}|{prom['domain']}"
        value = prom["score"]
    elif kind != "DEATH" and not concepts:
        return None
    if kind == "DIAGNOSIS" and not concepts:
        return None
    return Fact(event["event_time"], _shared(kind), _shared(event["site_id"]), event["encounter_pseudonym"],
                _shared(concepts), value, _shared(attr), event_key(event["site_id"], event["event_id"]))


@dataclass(slots=True)
class Stay:
    ref: str
    site: str
    admitted: int | None = None
    admission_type: str | None = None
    admission_key: int = 0
    discharged: int | None = None
    discharge_site: str | None = None
    disposition: str | None = None
    discharge_key: int = 0
    concepts: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Hospitalisation:
    """Stays joined by transfers: what indicators call one hospitalisation."""

    stays: list[Stay]
    concepts: set[str]

    @property
    def first(self) -> Stay:
        return self.stays[0]

    @property
    def last(self) -> Stay:
        return self.stays[-1]

    @property
    def admitted(self) -> int | None:
        return self.first.admitted

    @property
    def discharged(self) -> int | None:
        return self.last.discharged

    def awaiting_transfer(self) -> bool:
        return self.last.disposition == "TRANSFER"


class PatientTimeline:
    """Facts of one patient, sorted."""

    __slots__ = ("_derived", "birth_year", "facts", "male", "new", "settled")

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        # stays and hospitalisations derived from the facts, until the facts change:
        # every indicator of an evaluation asks for them.
        self._derived: tuple[list[Stay], list[Hospitalisation]] | None = None
        # facts added since the last evaluation (None: none)
        self.new: list[Fact] | None = None
        # indicator -> index time of its final observation, for ``first``-rule indicators:
        # only a fact dated at or before that index time can change them again
        self.settled: dict[str, int] | None = None
        self.birth_year: int | None = None
        self.male: bool | None = None

    def add(self, fact: Fact) -> bool:
        """Insert a fact; False (nothing changes) when the same event is already here."""
        facts = self.facts
        i = bisect.bisect_left(facts, (fact.time,))
        while i < len(facts) and facts[i].time == fact.time:
            if facts[i].key == fact.key:
                return False
            i += 1
        if fact.ref is not None:  # one copy of a stay's encounter pseudonym per patient
            same = next((f.ref for f in facts if f.ref == fact.ref), None)
            if same is not None:
                fact = fact._replace(ref=same)
        facts.insert(i, fact)
        self._derived = None
        if self.new is None:
            self.new = [fact]
        else:
            self.new.append(fact)
        return True

    def note_demographics(self, birth_year: int | None, sex: str | None) -> bool:
        changed = False
        if birth_year is not None and self.birth_year is None:
            self.birth_year, changed = birth_year, True
        if sex in ("MALE", "FEMALE") and self.male is None:
            self.male, changed = sex == "MALE", True
        return changed

    def drop_before(self, cutoff: int) -> None:
        """Forget facts older than ``cutoff`` (their observations are final by then)."""
        i = bisect.bisect_left(self.facts, (cutoff,))
        if i:
            del self.facts[:i]
            self._derived = None

    def stays(self) -> list[Stay]:
        """Stays (by encounter) with an admission, in admission order; callers must not mutate them."""
        if self._derived is None:
            stays = self._build_stays()
            self._derived = (stays, self._join(stays))
        return self._derived[0]

    def hospitalisations(self) -> list[Hospitalisation]:
        """Stays joined when a transfer-out is followed by an admission within 24 h (any site)."""
        self.stays()
        assert self._derived is not None
        return self._derived[1]

    def _build_stays(self) -> list[Stay]:
        stays: dict[str, Stay] = {}
        for f in self.facts:
            if f.ref is None or f.kind not in ("ADMISSION", "DISCHARGE", "DIAGNOSIS", "PROCEDURE"):
                continue
            stay = stays.get(f.ref)
            if stay is None:
                stay = stays[f.ref] = Stay(f.ref, f.site)
            if f.kind == "ADMISSION" and stay.admitted is None:
                stay.admitted, stay.admission_type, stay.admission_key, stay.site = f.time, f.attr, f.key, f.site
            elif f.kind == "DISCHARGE" and stay.discharged is None:
                stay.discharged, stay.disposition, stay.discharge_key = f.time, f.attr, f.key
                stay.discharge_site = f.site
            stay.concepts |= f.concepts
        return sorted((s for s in stays.values() if s.admitted is not None), key=lambda s: (s.admitted, s.ref))

    @staticmethod
    def _join(stays: list[Stay]) -> list[Hospitalisation]:
        result: list[Hospitalisation] = []
        for stay in stays:
            prev = result[-1] if result else None
            if (prev is not None and prev.last.disposition == "TRANSFER" and prev.last.discharged is not None
                    and stay.admitted is not None
                    and prev.last.discharged <= stay.admitted <= prev.last.discharged + TRANSFER_GAP_US):
                prev.stays.append(stay)
                prev.concepts |= stay.concepts
            else:
                result.append(Hospitalisation([stay], set(stay.concepts)))
        return result

    def death_time(self) -> int | None:
        for f in self.facts:
            if f.kind == "DEATH" or (f.kind == "DISCHARGE" and f.attr == "DEATH"):
                return f.time
        return None
