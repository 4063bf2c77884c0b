"""Building blocks of patient journeys: the event sink, stays, labs, deaths and outcome risk.

A journey is written in UTC event time; each record gets the site's local wall-clock
time, its code style and units when it is emitted. Events outside the simulated span
are dropped (censored), and draw no random numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .habits import ICD_CODES, LABS, SNOMED_CODES, SPELLINGS, SiteProfile, expit, logit
from .model import Shift, utc_us
from .population import Patient

MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
YEAR = 365 * DAY

#: (low, high) minutes between an event and its recording, by event type.
RECORD_DELAY = {
    "ADMISSION": (1, 30), "DISCHARGE": (5, 120), "DIAGNOSIS": (5, 720), "PROCEDURE": (10, 360),
    "LAB_RESULT": (20, 240), "MEDICATION": (1, 60), "PROM_RESPONSE": (1, 90), "DEATH": (10, 720),
    "WARD_TRANSFER": (1, 30), "CARE_HOME_ADMISSION": (60, 720),
}
WARD_TRANSFER_RATE = 0.35  # stays with at least one move between wards or units (HL7 ADT^A02)
_NOTES = ("seen on ward round, stable", "family informed", "pt reports feeling better",
          "discussed at MDT", "follow-up arranged with GP", "{name} prefers morning appointments")

#: One emitted event: (UTC time, patient order, sequence, area, record).
Event = tuple[int, int, int, str, dict[str, Any]]


@dataclass
class Context:
    """What every journey of a run shares."""

    profiles: Mapping[str, SiteProfile]
    start_us: int
    end_us: int
    shifts: tuple[Shift, ...] = ()
    sink: list[Event] = field(default_factory=list)
    _shifts: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)
    _peers: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for s in self.shifts:
            self._shifts.setdefault((s.site, s.outcome), []).append(
                (utc_us(s.start), math.log(s.odds_ratio)))
        for sid, prof in self.profiles.items():
            others = [o for o in self.profiles if o != sid]
            same = [o for o in others if self.profiles[o].site.country == prof.site.country]
            self._peers[sid] = tuple(same or others)

    def probability(self, outcome: str, site_id: str, t: int, base: float, adj: float = 0.0) -> float:
        """Risk of ``outcome`` for an index event at ``site_id`` and UTC time ``t``."""
        x = logit(base) + adj + self.profiles[site_id].effects.get(outcome, 0.0)
        for start, log_or in self._shifts.get((site_id, outcome), ()):
            if t >= start:
                x += log_or
        return expit(x)

    def peer(self, rng: random.Random, site_id: str) -> str | None:
        """Another site a patient may be transferred or readmitted to (same country first)."""
        peers = self._peers.get(site_id, ())
        return rng.choice(peers) if peers else None


def time_to_event(rng: random.Random, p: float, horizon: int, later_per_year: float = 0.0) -> int | None:
    """Delay of an event that happens within ``horizon`` with probability ``p``.

    Constant hazard inside the horizon; after it, a yearly probability ``later_per_year``
    (0: never). Always draws two numbers, so journeys stay aligned when rates change.
    """
    u, u2 = rng.random(), rng.random()
    if u < p:
        return max(HOUR, int(horizon * math.log1p(-u) / math.log1p(-p)))
    if later_per_year <= 0:
        return None
    return horizon + int(YEAR * math.log1p(-u2) / math.log1p(-later_per_year))


class Journey:
    """Emits one patient's events into the shared sink."""

    __slots__ = ("_order", "_seq", "age", "area", "ctx", "death", "patient", "rng")

    def __init__(self, ctx: Context, patient: Patient, rng: random.Random, order: int, age: float) -> None:
        self.ctx = ctx
        self.patient = patient
        self.rng = rng
        self.area = patient.area
        self._order = order
        self._seq = 0
        self.age = age
        self.death: int | None = None  # UTC time of death, once decided

    def alive(self, t: int) -> bool:
        return self.death is None or t < self.death

    def side_rng(self, tag: str) -> random.Random:
        """Draws for events added to the journeys later (ward transfers, care homes, coded
        responses): seeded from the patient, so the journey's own draws stay as they were."""
        return random.Random(f"{tag}:{self.patient.source_id}:{self._seq}")

    # ------------------------------------------------------------------ emitting
    def emit(self, site_id: str, t: int, event_type: str, *, system: str | None = None,
             code: str | None = None, value: float | None = None, unit: str | None = None,
             encounter: str | None = None, admission_type: str | None = None,
             disposition: str | None = None, prom: dict[str, Any] | None = None,
             coded_value: dict[str, str] | None = None, rng: random.Random | None = None) -> None:
        """One record; ``rng`` (a :meth:`side_rng`) draws its ids and delays instead of the journey's."""
        self._seq += 1
        ctx = self.ctx
        if not ctx.start_us <= t < ctx.end_us:
            return
        rng = rng or self.rng
        prof = ctx.profiles[site_id]
        bits = rng.getrandbits(128)
        lo, hi = RECORD_DELAY[event_type]
        if prof.uuid_ids:
            h = f"{bits:032x}"
            event_id = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        else:
            event_id = f"MSG{bits >> 64:016X}"
        if system in SPELLINGS:
            system = (rng.choice(SPELLINGS[system]) if rng.random() < prof.alt_spelling_rate
                      else prof.spelling[system])
        p = self.patient
        local = prof.local_us(t)
        note = None
        if prof.note_rate and rng.random() < prof.note_rate:
            note = rng.choice(_NOTES).format(name=p.name)
        record = {
            "event_id": event_id,
            "site_id": site_id,
            "source_patient_id": p.source_id,
            "patient_id_issuer": p.issuer,
            "encounter_id": encounter,
            "event_type": event_type,
            "event_time": local,
            "recorded_time": local + int((lo + rng.random() * (hi - lo)) * MINUTE),
            "time_zone": prof.zone_name,
            "code_system": system,
            "code": code,
            "value": value,
            "unit": unit,
            "coded_value": coded_value,
            "admission_type": admission_type,
            "disposition": disposition,
            "birth_year": p.birth_year,
            "sex": p.sex,
            "prom": prom,
            "pseudonymised": False,
            "patient_name": p.name if prof.fills_name else None,
            "address": p.address if prof.fills_address else None,
            "note": note,
        }
        self.ctx.sink.append((t, self._order, self._seq, self.area, record))

    def encounter(self) -> str:
        return f"ENC-{self.rng.getrandbits(44):011X}"

    def diagnosis(self, site_id: str, t: int, concept: str, encounter: str | None = None,
                  code: str | None = None) -> None:
        """A diagnosis of ``concept`` in the site's ICD-10 variant (or SNOMED, by habit)."""
        if not self.ctx.start_us <= t < self.ctx.end_us:
            return
        rng = self.rng
        prof = self.ctx.profiles[site_id]
        snomed = SNOMED_CODES.get(concept)
        if code is None and snomed and rng.random() < prof.snomed_dx_rate:
            self.emit(site_id, t, "DIAGNOSIS", system="SNOMED", code=rng.choice(snomed),
                      encounter=encounter)
            return
        coding = prof.site.coding
        if code is None:
            codes = ICD_CODES[concept]
            code = rng.choice(codes.get(coding) or codes["ICD10"])
        self.emit(site_id, t, "DIAGNOSIS", system=coding, code=prof.icd(rng, code), encounter=encounter)

    def lab(self, site_id: str, t: int, lab: str, value: float, encounter: str | None = None) -> None:
        """A lab result given in the canonical unit, written in the site's unit."""
        if not self.ctx.start_us <= t < self.ctx.end_us:
            return
        prof = self.ctx.profiles[site_id]
        spec = LABS[lab]
        unit: str | None = prof.lab_unit(self.rng, lab)
        factor, decimals, loinc = spec.units[unit or spec.canonical]
        shown = round(value * factor, decimals)
        if lab == "mmse" and self.rng.random() < prof.mmse_unit_missing_rate:
            unit = None
        self.emit(site_id, t, "LAB_RESULT", system="LOINC", code=loinc, value=shown, unit=unit,
                  encounter=encounter)

    def die(self, site_id: str, t: int) -> None:
        self.emit(site_id, t, "DEATH")

    def stay(self, site_id: str, admit: int, los: int, admission_type: str | None,
             concept: str | None, alive_disposition: str = "HOME",
             encounter: str | None = None) -> tuple[str, int, bool]:
        """Admission (with a diagnosis of ``concept``) and discharge, cut short by death.

        Returns the encounter id, the discharge time and whether the patient died in it.
        """
        enc = encounter or self.encounter()
        if admission_type is not None and self.rng.random() < 0.03:
            admission_type = None  # feeds that leave the admission type out
        self.emit(site_id, admit, "ADMISSION", encounter=enc, admission_type=admission_type)
        end = admit + los
        died = self.death is not None and self.death <= end
        if died:
            assert self.death is not None
            end = max(self.death, admit + HOUR)
            self.death = end
        if concept is not None:
            self.diagnosis(site_id, admit + int(self.rng.uniform(0.1, 0.9) * min(6 * HOUR, end - admit)),
                           concept, enc)
        side = self.side_rng(f"ward:{enc}")
        if side.random() < WARD_TRANSFER_RATE:
            for _ in range(side.choice((1, 1, 1, 2))):
                self.emit(site_id, admit + int((end - admit) * side.uniform(0.05, 0.9)), "WARD_TRANSFER",
                          encounter=enc, rng=side)
        if died:
            self.die(site_id, end)
        self.emit(site_id, end, "DISCHARGE", encounter=enc,
                  disposition="DEATH" if died else alive_disposition)
        return enc, end, died

    def within(self, start: int, end: int, low: float = 0.05, high: float = 0.95) -> int:
        """A random instant between ``start`` and ``end``."""
        return start + int((end - start) * self.rng.uniform(low, high))
