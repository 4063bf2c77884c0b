# mypyc: compiled (the per-event path: setup.py)
"""A patient's clinical timeline: the facts outcome ascertainment needs, and the stays
and hospitalisations derived from them (pure logic).

A fact is a compact tuple, kept only for events an indicator can look at (stays,
deaths, and events carrying a catalogue concept or a tracked questionnaire), so the
state per active patient stays small. Facts are kept sorted by (time, key); the key
is a 64-bit digest of (site, event id), so a redelivered event is recognised and
changes nothing.

Between evaluations a patient is *frozen*: facts, published-observation records,
settled indicators and demographics packed into one bytes object
(:meth:`PatientTimeline.freeze`), kinds, sites, attributes, concept sets and indicator
ids as codes into a process-wide table. Frozen, a patient costs a few hundred bytes
instead of ~3-4 KiB of objects; the tracker thaws a patient when an event or a
deadline touches it and freezes it again after the batch. Packed bytes never leave the
process (the changelog has its own, process-independent records).
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from streams.clinical.proms import prom_key
from streams.vocabulary.time import DAY_US

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


class _Codes:
    """Small immutable values (kinds, sites, attributes, concept sets, indicator ids) and
    their process-wide codes: a fact refers to one shared copy of each."""

    def __init__(self) -> None:
        self.code: dict[Any, int] = {None: 0}
        self.values: list[Any] = [None]

    def __call__(self, value: Any) -> int:
        found = self.code.get(value)
        if found is None:
            found = self.code[value] = len(self.values)
            self.values.append(value)
        return found

    def shared(self, value: Any) -> Any:
        return self.values[self(value)]


_CODES = _Codes()
NO_CONCEPTS: frozenset[str] = frozenset()
_YEARS: dict[int, int] = {}


def fact_from_event(event: dict[str, Any], relevant: frozenset[str],
                    proms: frozenset[tuple[str, str]]) -> Fact | None:
    """The fact a NormalisedEvent contributes, or None if no indicator can use it.

    A ward transfer (HL7 ADT^A02) contributes none: it moves the patient inside a stay, which
    neither ends nor starts a hospitalisation. A care-home admission is kept: it is the
    institutionalisation outcome, and before a dementia index it means not at risk.
    """
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
        key = None if prom is None else prom_key(prom["instrument"], prom["domain"])
        if key is None or key not in proms:
            return None
        attr = f"{key[0]}|{key[1]}"
        value = prom["score"]
    elif kind not in ("DEATH", "CARE_HOME_ADMISSION") and not concepts:
        return None
    if kind == "DIAGNOSIS" and not concepts:
        return None
    shared = _CODES.shared
    return Fact(event["event_time"], shared(kind), shared(event["site_id"]), event["encounter_pseudonym"],
                shared(concepts), value, shared(attr), event_key(event["site_id"], event["event_id"]))


class Published(NamedTuple):
    """What was last published for an observation: enough to retract it, and its revision
    (0 for the first record, one more for each record that changed it)."""

    signature: int
    site: str
    index_time: int
    horizon_end: int
    revision: int = 0
    case_mix: int = 0  # digest of the covariates it was published with


# Packed layout: header, encounter pseudonyms (length-prefixed UTF-8), then records.
_HEADER = struct.Struct("<IIIIhb")  # facts, published, settled, refs, birth year (-1: unknown), male (-1: unknown)
_FACT = struct.Struct("<qqdHI?")  # time, key, value, (kind, site, attr, concepts) code, ref index, has value
# indicator, observation key, signature, site, index time, horizon end, revision, case mix
_PUBLISHED = struct.Struct("<HQqHqqIq")
_SETTLED = struct.Struct("<Hq")  # indicator, horizon end
NO_REF = 0xFFFFFFFF


def _code(value: Any) -> int:
    code = _CODES(value)
    if code > 0xFFFF:  # kinds, sites, attributes, concept sets and indicators are finite sets
        raise OverflowError(f"more than 65,535 distinct fact attributes: {value!r}")
    return code


def frozen_demographics(packed: bytes) -> tuple[int | None, bool | None]:
    """(birth year, male) of a frozen timeline, without thawing it."""
    *_counts, birth_year, male = _HEADER.unpack_from(packed)
    return (None if birth_year < 0 else birth_year), (None if male < 0 else male == 1)


def frozen_sizes(packed: bytes) -> tuple[int, int]:
    """(facts, published observations) of a frozen timeline."""
    n_facts, n_published, *_rest = _HEADER.unpack_from(packed)
    return n_facts, n_published


def _frozen_sections(packed: bytes) -> tuple[list[str | None], bytes, bytes, bytes]:
    """Encounter pseudonyms (NO_REF indexes the trailing None), then the fact, published and
    settled sections of a frozen timeline."""
    n_facts, n_published, _settled, n_refs, _birth_year, _male = _HEADER.unpack_from(packed)
    pos = _HEADER.size
    refs: list[str | None] = []
    for _ in range(n_refs):
        (size,) = struct.unpack_from("<H", packed, pos)
        refs.append(packed[pos + 2:pos + 2 + size].decode())
        pos += 2 + size
    refs.append(None)
    end = pos + n_facts * _FACT.size
    published_end = end + n_published * _PUBLISHED.size
    return refs, packed[pos:end], packed[end:published_end], packed[published_end:]


def frozen_parts(packed: bytes) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Facts and published records of a frozen timeline as plain tuples, without building
    Facts: (time, key, value or None, (kind, site, attr, concepts), ref) and (indicator,
    observation key, signature, site, index time, horizon end, revision, case mix)."""
    values = _CODES.values
    refs, facts, published, _settled = _frozen_sections(packed)
    return ([(time, key, value if has_value else None, values[code], refs[-1 if ref == NO_REF else ref])
             for time, key, value, code, ref, has_value in _FACT.iter_unpack(facts)],
            [(values[indicator], key, signature, values[site], index_time, horizon_end, revision, case_mix)
             for indicator, key, signature, site, index_time, horizon_end, revision, case_mix
             in _PUBLISHED.iter_unpack(published)])


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
    """Facts of one patient, sorted, and what was published about them (the hot form;
    :meth:`freeze` packs it)."""

    __slots__ = ("_derived", "birth_year", "facts", "male", "new", "published", "settled")

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        # stays and hospitalisations derived from the facts, until the facts change:
        # every indicator of an evaluation asks for them.
        self._derived: tuple[list[Stay], list[Hospitalisation]] | None = None
        # facts added since the last evaluation (None: none)
        self.new: list[Fact] | None = None
        # indicator -> latest horizon end of its final observations, for ``first``-rule
        # indicators: only a fact dated at or before it can change them again (a late one too)
        self.settled: dict[str, int] | None = None
        # observation id -> what was last published for it
        self.published: dict[str, Published] = {}
        self.birth_year: int | None = None
        self.male: bool | None = None

    # --- frozen form ----------------------------------------------------------
    def freeze(self) -> bytes:
        """Everything in one bytes object (see the module docstring); :meth:`thaw` reverses it."""
        refs: dict[str, int] = {}
        facts = []
        fact = _FACT.pack
        codes = _CODES.code
        for f in self.facts:
            ref = NO_REF if f.ref is None else refs.setdefault(f.ref, len(refs))
            shared = (f.kind, f.site, f.attr, f.concepts)
            code = codes.get(shared)
            if code is None:
                code = _code(shared)
            facts.append(fact(f.time, f.key, 0.0 if f.value is None else f.value, code, ref, f.value is not None))
        parts = [_HEADER.pack(len(self.facts), len(self.published), len(self.settled or ()), len(refs),
                              -1 if self.birth_year is None else self.birth_year,
                              -1 if self.male is None else int(self.male))]
        for name in refs:
            encoded = name.encode()
            parts.append(struct.pack("<H", len(encoded)) + encoded)
        parts += facts
        for obs_id, p in self.published.items():
            indicator, key = obs_id.split(":", 1)
            parts.append(_PUBLISHED.pack(_code(indicator), int(key, 16), p.signature, _code(p.site), p.index_time,
                                         p.horizon_end, p.revision, p.case_mix))
        for indicator, time in (self.settled or {}).items():
            parts.append(_SETTLED.pack(_code(indicator), time))
        return b"".join(parts)

    @classmethod
    def thaw(cls, packed: bytes) -> PatientTimeline:
        """The timeline :meth:`freeze` packed."""
        tl = cls()
        values = _CODES.values
        refs, fact_rows, published_rows, settled_rows = _frozen_sections(packed)
        facts = []
        for time, key, value, code, ref, has_value in _FACT.iter_unpack(fact_rows):
            kind, site, attr, concepts = values[code]
            facts.append(Fact(time, kind, site, refs[-1 if ref == NO_REF else ref], concepts,
                              value if has_value else None, attr, key))
        tl.facts = facts
        tl.published = {f"{values[indicator]}:{key:016x}": Published(signature, values[site], index_time, horizon_end,
                                                                     revision, case_mix)
                        for indicator, key, signature, site, index_time, horizon_end, revision, case_mix
                        in _PUBLISHED.iter_unpack(published_rows)}
        tl.settled = {values[indicator]: time for indicator, time in _SETTLED.iter_unpack(settled_rows)} or None
        birth_year, male = frozen_demographics(packed)
        tl.birth_year = None if birth_year is None else _YEARS.setdefault(birth_year, birth_year)
        tl.male = male
        return tl

    def add(self, fact: Fact) -> bool:
        """Insert a fact; False (nothing changes) when the same event is already here."""
        facts = self.facts
        first = bisect.bisect_left(facts, (fact.time,))
        i = end = first
        while end < len(facts) and facts[end].time == fact.time:
            if facts[end].key == fact.key:
                return False
            if facts[end].key < fact.key:  # facts of one instant in key order, not arrival order
                i = end + 1
            end += 1
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
            self.birth_year, changed = _YEARS.setdefault(birth_year, birth_year), True
        if sex in ("MALE", "FEMALE") and self.male is None:
            self.male, changed = sex == "MALE", True
        return changed

    def drop_before(self, cutoff: int) -> None:
        """Forget facts older than ``cutoff`` (their observations are final by then)."""
        i = bisect.bisect_left(self.facts, (cutoff,))
        if i:
            del self.facts[:i]
            self._derived = None

    def forget_derived(self) -> None:
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
