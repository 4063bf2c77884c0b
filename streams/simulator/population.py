"""Patients: demographics, identifiers (local MRN, national id with issuer) and fake names.

Each patient has their own random stream derived from (seed, home site, area, index), so
changing one area, site or the patient count never reshuffles another patient's journey.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Share of patients per area (normalised over the areas a run simulates).
AREA_SHARES = {"cardiovascular": 0.40, "prostate_cancer": 0.20, "hematologic": 0.10, "dementia": 0.30}
LINKED_RATE = 0.8  # patients with a national id that links them across sites

_FIRST = {
    "DE": (("Anna", "Ursula", "Monika", "Petra", "Sabine", "Renate"),
           ("Klaus", "Jürgen", "Wolfgang", "Dieter", "Hans", "Uwe")),
    "NL": (("Maria", "Johanna", "Cornelia", "Anna", "Wilhelmina", "Geertje"),
           ("Jan", "Johannes", "Pieter", "Cornelis", "Hendrik", "Willem")),
    "ES": (("María", "Carmen", "Josefa", "Isabel", "Dolores", "Pilar"),
           ("Antonio", "José", "Manuel", "Francisco", "Jordi", "Josep")),
    "GB": (("Margaret", "Patricia", "Susan", "Linda", "Elizabeth", "Jean"),
           ("John", "David", "Michael", "Peter", "Robert", "Alan")),
    "FI": (("Aino", "Helena", "Marjatta", "Anneli", "Liisa", "Kaarina"),
           ("Juhani", "Olavi", "Antero", "Tapani", "Kalevi", "Matti")),
}
_LAST = {
    "DE": ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker"),
    "NL": ("de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer"),
    "ES": ("García", "Martínez", "López", "Puig", "Ferrer", "Vidal", "Soler", "Serra"),
    "GB": ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas"),
    "FI": ("Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Hämäläinen", "Laine", "Heikkinen"),
}
_STREETS = {
    "DE": "Hauptstraße", "NL": "Kerkstraat", "ES": "Carrer Major", "GB": "High Street",
    "FI": "Mannerheimintie",
}
_MRN_SPACE = 10_000_000
_NID_SPACE = 10_000_000_000


@dataclass(slots=True)
class Patient:
    home: str
    area: str
    index: int
    sex: str
    birth_year: int
    source_id: str
    issuer: str | None
    name: str
    address: str

    @property
    def linked(self) -> bool:
        return self.issuer is not None


def patient_rng(seed: int, site_id: str, area: str, index: int) -> random.Random:
    """The patient's own random stream (string seeds hash with SHA-512: stable everywhere)."""
    return random.Random(f"{seed}:{site_id}:{area}:{index}")


def area_counts(patients_per_site: int, areas: tuple[str, ...]) -> dict[str, int]:
    total = sum(AREA_SHARES[a] for a in areas)
    return {a: round(patients_per_site * AREA_SHARES[a] / total) for a in areas}


def make_patient(rng: random.Random, *, site_id: str, site_index: int, country: str, area: str,
                 area_index: int, index: int, age: float, male_rate: float,
                 index_year: int) -> Patient:
    """A patient of ``age`` at ``index_year`` with identifiers unique in the network."""
    male = rng.random() < male_rate
    sex = "MALE" if male else "FEMALE"
    if rng.random() < 0.003:
        sex = rng.choice(("OTHER", "UNKNOWN"))
    # Unique numbers, scrambled by multiplying with a unit of the number space.
    local = area_index * 1_000_000 + index
    mrn = f"MRN-{(local * 7_919_413 + 4711) % _MRN_SPACE:07d}"
    network = (site_index * 4 + area_index) * 1_000_000 + index
    nid = (network * 3_141_592_653 + 271_828) % _NID_SPACE
    linked = rng.random() < LINKED_RATE
    lang = country if country in _FIRST else "GB"
    first = rng.choice(_FIRST[lang][1 if male else 0])
    name = f"{first} {rng.choice(_LAST[lang])}-{_suffix(network)}"
    address = f"{_STREETS[lang]} {rng.randint(1, 180)}, {site_id}"
    return Patient(
        home=site_id,
        area=area,
        index=index,
        sex=sex,
        birth_year=index_year - int(age),
        source_id=f"{country}{nid:010d}" if linked else mrn,
        issuer=f"NHI-{country}" if linked else None,
        name=name,
        address=address,
    )


def _suffix(n: int) -> str:
    """A short letter tag that makes each fake name unique (so leak checks are exact)."""
    letters = "BCDFGHJKLMNPRSTVWZ"
    out = ""
    n = n * 40_503 % 1_000_000_007 + 1
    while n:
        n, r = divmod(n, len(letters))
        out += letters[r]
    return out.capitalize()
