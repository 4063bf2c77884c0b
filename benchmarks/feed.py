"""The benchmark feed: realistic, varied ClinicalEvents, as single records and as containers.

Built from the engine's simulator (four disease areas, six sites, ~7 events per
patient, ~2 % exact resends, ~1 % malformed records that the normaliser must
dead-letter). Undecodable bytes are left out so the per-event feed and the
container feed carry exactly the same events. If the simulator cannot be
imported, a fallback builds varied events from the test sample event.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: a compiled install of streams wins over the tree

from streams.wire import formats as wire  # noqa: E402
from streams.wire import schemas  # noqa: E402

CONTAINER_EVENTS = 500
EVENTS_PER_PATIENT_SITE = 16277 / 400  # measured: simulator events per unit of patients_per_site


@dataclass
class Feed:
    records: list[dict[str, Any]]       # in arrival order
    singles: list[tuple[bytes, bytes]]  # (key, single-object value), same order
    expected_out: int                   # normalised events a correct normaliser publishes
    source: str
    containers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def events(self) -> int:
        return len(self.records)

    def head(self, events: int) -> Feed:
        """The first ``events`` events of the feed (expected output recounted)."""
        if events >= len(self.records):
            return self
        records = self.records[:events]
        return Feed(records, self.singles[:events], _valid_of(records), f"{self.source}, first {events:,}")

    def patients(self) -> int:
        return len({(r["site_id"], r["source_patient_id"]) for r in self.records})

    def build_containers(self, per_message: int = CONTAINER_EVENTS) -> list[tuple[bytes, bytes]]:
        """Avro containers of ``per_message`` events, each of one site (keyed by it), as a
        hospital's backfill sends them; so a resend lands on its original's partition."""
        by_site: dict[str, list[dict[str, Any]]] = {}
        for record in self.records:
            by_site.setdefault(record["site_id"], []).append(record)
        chunks = {site: [recs[i:i + per_message] for i in range(0, len(recs), per_message)]
                  for site, recs in by_site.items()}
        # Interleave sites as concurrent backfills would arrive, each site's containers in order
        # (out-of-order chunks would move the dedupe watermark past resends).
        out = []
        for round_ in range(max(len(c) for c in chunks.values())):
            for site, site_chunks in chunks.items():
                if round_ < len(site_chunks):
                    out.append((site.encode(), wire.encode_container(schemas.CLINICAL_EVENT, site_chunks[round_])))
        self.containers = out
        return out


def simulated(events: int, seed: int = 7) -> Feed:
    try:
        from streams.simulator.feed import generate
        from streams.simulator.model import SimulationConfig
    except ImportError:
        return fallback(events, seed)
    encoder = wire.Encoder(schemas.CLINICAL_EVENT)
    by_value: dict[bytes, dict[str, Any]] = {}

    def encode(record: dict[str, Any]) -> bytes:
        value = encoder.encode(record)
        by_value.setdefault(value, record)
        return value

    per_site = max(1, round(events / EVENTS_PER_PATIENT_SITE))
    messages, manifest = generate(SimulationConfig(seed=seed, patients_per_site=per_site), encode)
    records: list[dict[str, Any]] = []
    singles: list[tuple[bytes, bytes]] = []
    for m in messages:
        record = by_value.get(m.value)
        if record is None:  # garbage or truncated bytes: not in a container feed either
            continue
        records.append(record)
        singles.append((m.key or b"", m.value))
    # The simulator makes about the requested number; the run reports the exact count.
    return Feed(records, singles, manifest.valid, f"streams.simulator (seed {seed}, {per_site} patients per site)")


def _valid_of(records: list[dict[str, Any]]) -> int:
    """Distinct accepted (site, event id) among ``records``, by the engine's own rules."""
    from streams.catalogue.sites import load_sites
    from streams.clinical.clock import now_us
    from streams.clinical.codes import CodeMap
    from streams.clinical.normaliser import ClinicalNormaliser
    from streams.clinical.pseudonym import Pseudonymiser
    from streams.vocabulary.dead_letters import Rejected

    normaliser = ClinicalNormaliser(load_sites(), CodeMap.load(), Pseudonymiser(b"k" * 40), 3600.0)
    seen: set[tuple[str, str]] = set()
    now = now_us()
    for record in records:
        try:
            out = normaliser.normalise(record, now)
        except Rejected:
            continue
        seen.add((out["site_id"], out["event_id"]))
    return len(seen)


def fallback(events: int, seed: int = 7) -> Feed:
    """Varied events from the test sample: six sites, ~7 events per patient, 2 % resends."""
    from streams.catalogue.sites import load_sites

    rng = random.Random(seed)
    sites = list(load_sites().values())
    types = [("ADMISSION", "ICD-10", "I50.9", None, None), ("DIAGNOSIS", "ICD-10", "C61", None, None),
             ("LAB_RESULT", "LOINC", "2857-1", 4.2, "ng/mL"), ("DISCHARGE", "ICD-10", "I21.9", None, None),
             ("PROCEDURE", None, None, None, None), ("MEDICATION", "ATC", "C07AB07", None, None)]
    records: list[dict[str, Any]] = []
    base = 1_735_732_800_000_000
    i = 0
    while len(records) < events:
        site = sites[i % len(sites)]
        kind, system, code, value, unit = types[rng.randrange(len(types))]
        t = base + rng.randrange(300 * 86_400) * 1_000_000
        records.append({
            "event_id": f"e{i}", "site_id": site.id, "source_patient_id": f"MRN-{rng.randrange(events // 7 + 1)}",
            "patient_id_issuer": None, "encounter_id": f"ENC-{i // 3}", "event_type": kind,
            "event_time": t, "recorded_time": t + 600_000_000, "time_zone": site.time_zone,
            "code_system": system, "code": code, "value": value, "unit": unit,
            "admission_type": "EMERGENCY" if kind == "ADMISSION" else None, "disposition": None,
            "birth_year": 1930 + rng.randrange(60), "sex": rng.choice(["FEMALE", "MALE"]), "prom": None,
            "patient_name": "Jan Jansen", "address": "Dam 1", "note": None,
        })
        if rng.random() < 0.02 and len(records) < events:
            records.append(dict(records[-1]))
        i += 1
    encoder = wire.Encoder(schemas.CLINICAL_EVENT)
    singles = [(r["site_id"].encode(), encoder.encode(r)) for r in records]
    return Feed(records, singles, _valid_of(records), "fallback (tests/conftest.py sample, varied)")
