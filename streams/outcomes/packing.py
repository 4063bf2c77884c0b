# mypyc: compiled (the per-event path: setup.py)
"""Packed facts and published records for the ascertain changelog (rwe.internal.AscertainDelta).

A changelog record holds what one batch changed per patient: about one new fact and one
published record per event. As Avro records of eight and five fields they cost ~20 us per
event to encode, a fifth of the pipeline. Here each is a fixed-size little-endian struct
whose strings (kinds, sites, encounters, attributes, concept sets, indicators) are indexes
into the record's string table, so a string that repeats is written once per record.
Unlike :meth:`PatientTimeline.freeze`, nothing refers to process-local codes: any
process (a restarted worker, a newer version) reads it.
"""

from __future__ import annotations

import struct
from typing import Any

from streams.outcomes.timeline import Fact, Published, frozen_parts

# time, key, value, kind, site, ref, attr, concepts (string indexes; NONE for None), has value
FACT = struct.Struct("<qqdIIIIIB")
# indicator (string index), observation key, signature, site (string index), index time, horizon end
PUBLISHED = struct.Struct("<IQqIqq")
# the revision and case-mix digest of a record's published entries, in the same order (AscertainDelta v3 on)
REVISION = struct.Struct("<Iq")
NONE = 0xFFFFFFFF
CONCEPT_SEPARATOR = "\x1f"  # a concept set is its sorted concepts joined by this (never in a concept id)


class StringTable:
    """The strings of one changelog record, each once, by index."""

    def __init__(self) -> None:
        self._index: dict[Any, int] = {None: NONE}
        self._shared: dict[tuple[Any, ...], tuple[int, int, int, int]] = {}
        self.strings: list[str] = []

    def __call__(self, value: str | None) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.strings)
            self.strings.append(value)  # type: ignore[arg-type]  # None is preset
        return found

    def shared(self, attributes: tuple[str, str, str | None, frozenset[str]]) -> tuple[int, int, int, int]:
        """Indexes of a fact's shared attributes (kind, site, attr, concepts), once per record."""
        found = self._shared.get(attributes)
        if found is None:
            kind, site, attr, concepts = attributes
            found = self._shared[attributes] = (self(kind), self(site), self(attr), self.concepts(concepts))
        return found

    def concepts(self, concepts: frozenset[str]) -> int:
        key = ("concepts", concepts)  # a set and a lone string of the same text are different entries
        found = self._index.get(key)
        if found is None:
            found = self._index[key] = len(self.strings)
            self.strings.append(CONCEPT_SEPARATOR.join(sorted(concepts)))
        return found


def pack_facts(facts: list[Fact], table: StringTable) -> bytes:
    pack, text, concepts = FACT.pack, table, table.concepts
    return b"".join([pack(f.time, f.key, 0.0 if f.value is None else f.value, text(f.kind), text(f.site),
                          text(f.ref), text(f.attr), concepts(f.concepts), f.value is not None) for f in facts])


def pack_published(published: dict[str, Published], table: StringTable) -> tuple[bytes, bytes]:
    """(packed published records, packed revisions)."""
    parts, revisions = [], []
    for obs_id, p in published.items():
        indicator, key = obs_id.split(":", 1)  # observation ids are "<indicator>:<16 hex digits>"
        parts.append(PUBLISHED.pack(table(indicator), int(key, 16), p.signature, table(p.site), p.index_time,
                                    p.horizon_end))
        revisions.append(REVISION.pack(p.revision, p.case_mix))
    return b"".join(parts), b"".join(revisions)


def pack_frozen(packed: bytes, table: StringTable) -> tuple[bytes, bytes, bytes]:
    """(packed facts, packed published, packed revisions) of a frozen timeline, as
    :func:`pack_facts` and :func:`pack_published` write them, without thawing it (a
    snapshot holds every patient)."""
    facts, published = frozen_parts(packed)
    shared, fact = table.shared, FACT.pack
    parts = []
    for time, key, value, attributes, ref in facts:
        kind, site, attr, concepts = shared(attributes)
        parts.append(fact(time, key, 0.0 if value is None else value, kind, site, table(ref), attr, concepts,
                          value is not None))
    record, revision = PUBLISHED.pack, REVISION.pack
    return (b"".join(parts),
            b"".join([record(table(indicator), key, signature, table(site), index_time, horizon_end)
                      for indicator, key, signature, site, index_time, horizon_end, _r, _c in published]),
            b"".join([revision(*p[-2:]) for p in published]))


class StringReader:
    """The strings of one changelog record, as the unpackers need them."""

    def __init__(self, strings: list[str]) -> None:
        self.strings = strings
        self._concepts: dict[int, frozenset[str]] = {}

    def text(self, index: int) -> str | None:
        return None if index == NONE else self.strings[index]

    def concepts(self, index: int) -> frozenset[str]:
        found = self._concepts.get(index)
        if found is None:
            joined = self.strings[index]
            found = self._concepts[index] = frozenset(joined.split(CONCEPT_SEPARATOR)) if joined else frozenset()
        return found


def unpack_facts(data: bytes, strings: StringReader) -> list[Fact]:
    text, concepts = strings.text, strings.concepts
    return [Fact(time, text(kind), text(site), text(ref), concepts(concept_set), value if has_value else None,  # type: ignore[arg-type]
                 text(attr), key)
            for time, key, value, kind, site, ref, attr, concept_set, has_value in FACT.iter_unpack(data)]


def unpack_published(data: bytes, revisions: bytes, strings: StringReader) -> list[tuple[str, Published]]:
    """Published entries; without ``revisions`` (records written before they existed) each is
    revision 0 with an unknown case mix."""
    text = strings.text
    numbers = (list(REVISION.iter_unpack(revisions)) if revisions
               else [(0, 0)] * (len(data) // PUBLISHED.size))
    return [(f"{text(indicator)}:{key:016x}", Published(signature, text(site), index_time, horizon_end, revision,  # type: ignore[arg-type]
                                                        case_mix))
            for (indicator, key, signature, site, index_time, horizon_end), (revision, case_mix)
            in zip(PUBLISHED.iter_unpack(data), numbers, strict=True)]
