"""How each site's feed writes things: code systems, code style, units, clocks, identifiers.

A site's habits are a property of the site, so they derive from the site id alone
(never from the simulation seed): the same hospital keeps its quirks across runs.
Codes here come from ``streams/catalogue/concepts.toml`` so the normaliser maps them.
"""

from __future__ import annotations

import math
import random
import zoneinfo
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streams.catalogue.sites import Site
from streams.vocabulary.time import DAY_US, HOUR_US

from .model import OUTCOMES

_MIXED = 1 << 62  # marks a day with an offset change

#: Spellings of each code system seen in real feeds (names, HL7 v2 codes, FHIR URIs).
SPELLINGS: dict[str, tuple[str, ...]] = {
    "ICD10": ("ICD-10", "I10", "http://hl7.org/fhir/sid/icd-10", "ICD10"),
    "ICD10CM": ("ICD-10-CM", "http://hl7.org/fhir/sid/icd-10-cm"),
    "ICD10GM": ("ICD-10-GM", "http://hl7.org/fhir/sid/icd-10-gm",
                "http://fhir.de/CodeSystem/bfarm/icd-10-gm"),
    "SNOMED": ("SNOMED CT", "SCT", "http://snomed.info/sct"),
    "LOINC": ("LOINC", "LN", "http://loinc.org"),
    "ATC": ("ATC", "http://www.whocc.no/atc"),
    "OPS": ("OPS", "http://fhir.de/CodeSystem/bfarm/ops"),
}

#: Diagnosis codes (as written with a dot) per concept and ICD-10 variant.
ICD_CODES: dict[str, dict[str, tuple[str, ...]]] = {
    "heart_failure": {
        "ICD10": ("I50.0", "I50.1", "I50.9"),
        "ICD10CM": ("I50.21", "I50.22", "I50.23", "I50.31", "I50.33", "I50.9"),
        "ICD10GM": ("I50.01", "I50.13", "I50.14", "I50.19", "I50.9"),
    },
    "acute_myocardial_infarction": {
        "ICD10": ("I21.0", "I21.1", "I21.4", "I21.9"),
        "ICD10CM": ("I21.09", "I21.19", "I21.4", "I21.9", "I21.A1"),
        "ICD10GM": ("I21.0", "I21.1", "I21.40", "I21.41", "I21.9"),
    },
    "atrial_fibrillation": {
        "ICD10": ("I48.0", "I48.1", "I48.9"),
        "ICD10CM": ("I48.0", "I48.11", "I48.19", "I48.91"),
        "ICD10GM": ("I48.0", "I48.1", "I48.9"),
    },
    "ischaemic_stroke": {
        "ICD10": ("I63.3", "I63.4", "I63.5", "I63.9"),
        "ICD10CM": ("I63.50", "I63.412", "I63.9"),
        "ICD10GM": ("I63.3", "I63.4", "I63.9"),
    },
    "prostate_cancer": {"ICD10": ("C61",), "ICD10CM": ("C61",), "ICD10GM": ("C61",)},
    "aml": {"ICD10": ("C92.0",), "ICD10CM": ("C92.00",), "ICD10GM": ("C92.00",)},
    "aml_in_remission": {"ICD10CM": ("C92.01",)},
    "dementia": {
        "ICD10": ("G30.0", "G30.1", "G30.9", "F00.1", "F00.9", "F01.9", "F03"),
        "ICD10CM": ("G30.0", "G30.1", "G30.9", "F01.50", "F02.80", "F03.90", "G31.83"),
        "ICD10GM": ("G30.1", "G30.9", "F00.1", "F01.3", "F03", "G31.1"),
    },
}

#: SNOMED CT alternatives some feeds send for diagnoses.
SNOMED_CODES: dict[str, tuple[str, ...]] = {
    "heart_failure": ("84114007", "42343007"),
    "acute_myocardial_infarction": ("22298006", "57054005"),
    "atrial_fibrillation": ("49436004",),
    "ischaemic_stroke": ("422504002",),
    "prostate_cancer": ("399068003",),
    "dementia": ("52448006", "26929004"),
}


@dataclass(frozen=True, slots=True)
class Lab:
    loinc: str
    canonical: str
    #: unit -> (factor from the canonical unit, decimals, LOINC if it differs by unit)
    units: dict[str, tuple[float, int, str]]


LABS: dict[str, Lab] = {
    "psa": Lab("2857-1", "ng/mL", {"ng/mL": (1.0, 2, "2857-1"), "ug/L": (1.0, 2, "2857-1")}),
    "nt_probnp": Lab("33762-6", "pg/mL", {"pg/mL": (1.0, 0, "33762-6"), "ng/L": (1.0, 0, "33762-6")}),
    "troponin_i": Lab("10839-9", "ng/L", {"ng/L": (1.0, 0, "10839-9"),
                                          "ng/mL": (0.001, 3, "10839-9")}),
    "creatinine": Lab("14682-9", "umol/L", {"umol/L": (1.0, 0, "14682-9"),
                                             "mg/dL": (1 / 88.4, 2, "2160-0")}),
    "hemoglobin": Lab("718-7", "g/L", {"g/L": (1.0, 0, "718-7"), "g/dL": (0.1, 1, "718-7"),
                                       "mmol/L": (1 / 16.113, 1, "718-7")}),
    "marrow_blasts": Lab("11150-0", "%", {"%": (1.0, 1, "11150-0")}),
    "neutrophils": Lab("751-8", "10*9/L", {"10*9/L": (1.0, 2, "751-8"),
                                           "10*3/uL": (1.0, 2, "751-8")}),
    "platelets": Lab("777-3", "10*9/L", {"10*9/L": (1.0, 0, "777-3"), "10*3/uL": (1.0, 0, "777-3")}),
    "mmse": Lab("72106-8", "{score}", {"{score}": (1.0, 0, "72106-8")}),
}

#: Lab units by country habit; other countries draw theirs.
COUNTRY_UNITS: dict[str, dict[str, str]] = {
    "DE": {"creatinine": "mg/dL", "hemoglobin": "g/dL", "troponin_i": "ng/L", "psa": "ng/mL"},
    "NL": {"creatinine": "umol/L", "hemoglobin": "mmol/L", "troponin_i": "ng/L", "psa": "ug/L"},
    "ES": {"creatinine": "mg/dL", "hemoglobin": "g/dL", "troponin_i": "ng/mL", "psa": "ng/mL"},
    "GB": {"creatinine": "umol/L", "hemoglobin": "g/L", "troponin_i": "ng/L", "psa": "ug/L"},
    "FI": {"creatinine": "umol/L", "hemoglobin": "g/L", "troponin_i": "ng/L", "psa": "ug/L"},
}

#: The site that sends UTC with time_zone null.
UTC_SITES = frozenset({"GB-UCL"})


@dataclass(slots=True)
class SiteProfile:
    """One site's feed habits, site effects on outcomes and its clock."""

    site: Site
    index: int
    utc: bool
    dot_rate: float
    lower_rate: float
    spelling: dict[str, str]
    alt_spelling_rate: float
    units: dict[str, str]
    alt_unit_rate: float
    snomed_dx_rate: float
    mmse_unit_missing_rate: float
    uuid_ids: bool
    fills_name: bool
    fills_address: bool
    note_rate: float
    effects: dict[str, float]
    key: bytes = b""
    zone_name: str | None = None  # the record's time_zone: None for a UTC feed
    _zone: zoneinfo.ZoneInfo | None = None
    _offsets: dict[int, int] = field(default_factory=dict)

    def local_us(self, t: int) -> int:
        """Wall-clock microseconds at the site for UTC ``t`` (unchanged for a UTC feed)."""
        if self._zone is None:
            return t
        day = t // DAY_US
        offset = self._offsets.get(day)
        if offset is None:  # the offset is the same all day, or differs: look up the hour
            first, last = self._offset(day * DAY_US), self._offset((day + 1) * DAY_US - 1)
            offset = self._offsets[day] = first if first == last else _MIXED
        if offset == _MIXED:  # zones change offset on whole UTC hours
            hour = t // HOUR_US
            offset = self._offsets.get(-1 - hour)
            if offset is None:
                offset = self._offsets[-1 - hour] = self._offset(hour * HOUR_US)
        return t + offset

    def _offset(self, t: int) -> int:
        assert self._zone is not None
        delta = datetime.fromtimestamp(t // 1_000_000, tz=UTC).astimezone(self._zone).utcoffset()
        return 0 if delta is None else int(delta.total_seconds()) * 1_000_000

    def icd(self, rng: random.Random, code: str) -> str:
        """``code`` as this feed writes it: with or without the dot, sometimes lower case."""
        if rng.random() >= self.dot_rate:
            code = code.replace(".", "")
        if rng.random() < self.lower_rate:
            code = code.lower()
        return code

    def lab_unit(self, rng: random.Random, lab: str) -> str:
        unit = self.units.get(lab, LABS[lab].canonical)
        if rng.random() < self.alt_unit_rate:
            unit = rng.choice(tuple(LABS[lab].units))
        return unit


def profile(site: Site, index: int) -> SiteProfile:
    """The habits of ``site``, derived from its id (stable across seeds)."""
    rng = random.Random(f"site-habits:{site.id}")
    coding = site.coding
    spelling = {kind: rng.choice(names) for kind, names in SPELLINGS.items()}
    units = dict(COUNTRY_UNITS.get(site.country, {}))
    for lab, spec in LABS.items():
        units.setdefault(lab, rng.choice(tuple(spec.units)))
    dot_rate = {"ICD10GM": 0.95, "ICD10CM": 0.35}.get(coding, rng.uniform(0.5, 0.9))
    effects = {outcome: max(-0.4, min(0.4, rng.gauss(0.0, 0.2))) for outcome in OUTCOMES}  # log OR
    utc = site.id in UTC_SITES or site.time_zone in ("UTC", "Etc/UTC")
    return SiteProfile(
        site=site,
        index=index,
        utc=utc,
        dot_rate=dot_rate,
        lower_rate=rng.uniform(0.02, 0.08),
        spelling=spelling,
        alt_spelling_rate=rng.uniform(0.03, 0.15),
        units=units,
        alt_unit_rate=rng.uniform(0.0, 0.05),
        snomed_dx_rate=0.3 if site.country == "GB" else rng.choice((0.0, 0.0, 0.05)),
        mmse_unit_missing_rate=rng.choice((0.0, 0.1, 0.5, 1.0)),
        uuid_ids=rng.random() < 0.6,
        fills_name=rng.random() < 0.4,
        fills_address=rng.random() < 0.25,
        note_rate=rng.choice((0.0, 0.0, 0.05, 0.15)),
        effects=effects,
        key=site.id.encode(),
        zone_name=None if utc else site.time_zone,
        _zone=None if utc else zoneinfo.ZoneInfo(site.time_zone),
    )


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)
