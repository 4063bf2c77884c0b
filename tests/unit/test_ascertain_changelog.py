"""The ascertain changelog: what a tracker writes restores the same tracker, through real Avro bytes."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.outcomes.packing import (
    StringReader,
    StringTable,
    pack_facts,
    pack_frozen,
    pack_published,
    unpack_facts,
    unpack_published,
)
from streams.outcomes.timeline import DAY_US, Fact, PatientTimeline, Published
from streams.outcomes.tracker import OutcomeTracker
from streams.wire import formats as wire
from streams.wire import schemas

T0 = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1_000_000)
SCHEMA = "rwe.internal.AscertainDelta"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def events(n_patients: int, seed: int) -> list[dict[str, Any]]:
    """Stays with diagnoses, labs, discharges and deaths across sites, in time order."""
    rng = random.Random(seed)
    out = []
    for p in range(n_patients):
        t = T0 + rng.randrange(200) * DAY_US
        site = rng.choice(["NL-AMC", "FI-HUS", "DE-CHA"])
        stay = f"s{p}"
        base = {"site_id": site, "patient_pseudonym": f"p{p}", "encounter_pseudonym": stay, "concepts": [],
                "value": None, "unit": None, "admission_type": None, "disposition": None,
                "birth_year": rng.choice([None, 1940, 1955]), "sex": rng.choice([None, "MALE", "FEMALE"]),
                "prom": None}
        concept = rng.choice(["heart_failure", "acute_mi", "dementia", "stroke"])
        out.append({**base, "event_id": f"{p}a", "event_type": "ADMISSION", "event_time": t,
                    "admission_type": "EMERGENCY"})
        out.append({**base, "event_id": f"{p}d", "event_type": "DIAGNOSIS", "event_time": t + 3600_000_000,
                    "concepts": [concept]})
        out.append({**base, "event_id": f"{p}l", "event_type": "LAB_RESULT", "event_time": t + 7200_000_000,
                    "concepts": ["mmse"], "value": float(rng.randrange(10, 30)), "encounter_pseudonym": None})
        end = t + rng.randrange(1, 20) * DAY_US
        disposition = rng.choice(["HOME", "HOME", "DEATH", "TRANSFER"])
        out.append({**base, "event_id": f"{p}x", "event_type": "DISCHARGE", "event_time": end,
                    "disposition": disposition})
    return sorted(out, key=lambda e: e["event_time"])


def through_the_wire(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    encoder, decoder = wire.Encoder(SCHEMA), wire.Decoder(SCHEMA)
    return [decoder.decode(encoder.encode(r))[0] for r in records]


def state(tracker: OutcomeTracker) -> dict[str, tuple[Any, ...]]:
    out = {}
    for p, entry in tracker.patients.items():
        tl = PatientTimeline.thaw(entry) if isinstance(entry, bytes) else entry
        out[p] = (tl.facts, tl.published, tl.birth_year, tl.male)
    return out


def test_deltas_and_snapshots_restore_the_same_patients_and_observations(catalogue: Catalogue) -> None:
    live = OutcomeTracker(catalogue, lateness_us=2 * DAY_US, hot_patients=5)
    log: list[dict[str, Any]] = []
    feed = events(60, seed=3)
    for i in range(0, len(feed), 25):
        for event in feed[i:i + 25]:
            live.add(event)
        live.collect()
        # a snapshot midway replaces what came before it, as compaction would leave it
        log = through_the_wire(live.snapshot()) if i == 100 else log + through_the_wire(live.take_delta())
    assert any(r["snapshot"] for r in log) and not all(r["snapshot"] for r in log)
    restored = OutcomeTracker(catalogue, lateness_us=2 * DAY_US)
    for record in log:
        restored.apply(record)
    restored.restored()
    assert state(restored) == state(live)
    assert restored.max_seen == live.max_seen
    assert restored.flush_all() == []  # nothing to publish that was not published before the restart
    deaths = [{**feed[0], "patient_pseudonym": p, "event_id": f"death-{p}", "event_type": "DEATH",
               "event_time": live.max_seen, "encounter_pseudonym": None, "concepts": []} for p in sorted(live.patients)]
    for tracker in (live, restored):
        for death in deaths:
            tracker.add(death)
    assert restored.collect() == live.collect() != []


def test_packed_facts_keep_every_field() -> None:
    facts = [Fact(T0, "ADMISSION", "FI-HUS", "enc-1", frozenset({"heart_failure", "acute_mi"}), None, "EMERGENCY",
                  -(2**63)),
             Fact(T0 + 1, "LAB_RESULT", "FI-HUS", None, frozenset(), 0.0, None, 2**63 - 1),
             Fact(T0 + 2, "PROM_RESPONSE", "DE-CHA", None, frozenset(), 71.5, "EPIC-26|urinary", 5)]
    published = {"hf_mortality_30d:ffffffffffffffff": Published(-(2**63), "DE-CHA", T0, T0 + 30 * DAY_US, 2**32 - 1),
                 "pc_psa_progression_2y:0000000000000001": Published(7, "FI-HUS", T0, T0 + 1)}
    table = StringTable()
    packed_facts, (packed_published, revisions) = pack_facts(facts, table), pack_published(published, table)
    reader = StringReader(table.strings)
    assert unpack_facts(packed_facts, reader) == facts
    assert dict(unpack_published(packed_published, revisions, reader)) == published
    # written before revisions were kept: revision 0
    assert [p.revision for _i, p in unpack_published(packed_published, b"", reader)] == [0, 0]


def test_a_frozen_timeline_packs_as_its_thawed_self() -> None:
    tl = PatientTimeline()
    tl.note_demographics(1950, "MALE")
    for f in [Fact(T0, "ADMISSION", "FI-HUS", "enc-1", frozenset({"heart_failure"}), None, "EMERGENCY", 1),
              Fact(T0 + 1, "LAB_RESULT", "FI-HUS", None, frozenset({"nt_probnp"}), 1200.0, None, -2),
              Fact(T0 + 2, "DISCHARGE", "FI-HUS", "enc-1", frozenset(), None, "HOME", 2**63 - 1)]:
        tl.add(f)
    tl.published["hf_readmission_30d:00000000000000ff"] = Published(9, "FI-HUS", T0 + 2, T0 + 30 * DAY_US, 3)
    table = StringTable()
    facts, published, revisions = pack_frozen(tl.freeze(), table)
    reader = StringReader(table.strings)
    assert unpack_facts(facts, reader) == tl.facts
    assert dict(unpack_published(published, revisions, reader)) == tl.published


def test_a_v1_record_with_facts_as_records_still_applies(catalogue: Catalogue) -> None:
    v1 = {"snapshot": True, "max_seen": T0, "patients": [{
        "pseudonym": "p1", "evicted": False, "birth_year": 1950, "male": True,
        "facts": [{"time": T0, "kind": "DIAGNOSIS", "site": "FI-HUS", "ref": "s1", "concepts": ["heart_failure"],
                   "value": None, "attr": None, "key": 11}],
        "published": [{"id": "hf_mortality_30d:000000000000000b", "signature": 3, "site": "FI-HUS",
                       "index_time": T0, "horizon_end": T0 + 30 * DAY_US}]}]}
    path = schemas.schemas_dir() / "history" / f"{SCHEMA}.v1.avsc"
    writer = wire._load_file(path)
    buf = io.BytesIO()
    buf.write(wire.SINGLE_OBJECT_MAGIC + schemas.crc64_fingerprint(writer))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(writer), v1)
    (decoded,) = wire.Decoder(SCHEMA).decode(buf.getvalue())  # the current reader, resolving v1
    tracker = OutcomeTracker(catalogue, lateness_us=0)
    tracker.apply(decoded)
    tl = tracker.patients["p1"]
    assert isinstance(tl, PatientTimeline)
    assert tl.facts == [Fact(T0, "DIAGNOSIS", "FI-HUS", "s1", frozenset({"heart_failure"}), None, None, 11)]
    assert tl.published == {"hf_mortality_30d:000000000000000b": Published(3, "FI-HUS", T0, T0 + 30 * DAY_US)}
