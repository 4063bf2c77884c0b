"""The simulator's public data types: configuration, shifts, messages and the manifest."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from streams.catalogue.sites import Site
from streams.errors import ConfigError

AREAS = ("cardiovascular", "prostate_cancer", "hematologic", "dementia")

#: Binary outcomes whose odds a :class:`Shift` can multiply, by area.
OUTCOMES: dict[str, str] = {
    "hf_mortality_30d": "cardiovascular",
    "hf_readmission_30d": "cardiovascular",
    "ami_mortality_30d": "cardiovascular",
    "af_stroke_1y": "cardiovascular",
    "pca_bcr_12m": "prostate_cancer",
    "pca_mortality_90d": "prostate_cancer",
    "aml_early_death_30d": "hematologic",
    "aml_complete_remission": "hematologic",
    "dem_cognitive_decline_12m": "dementia",
    "dem_institutionalisation_12m": "dementia",
    "dem_emergency_admission_12m": "dementia",
    "dem_mortality_12m": "dementia",
}

VALID = "valid"
DUPLICATE = "duplicate"
MALFORMED = "malformed"

#: Dead-letter reasons the normaliser gives for the simulator's malformed records.
REASONS = ("undecodable", "missing_field", "out_of_range", "unit_unconvertible",
           "unknown_site", "future_time")


@dataclass(frozen=True)
class Shift:
    """Multiply ``site``'s odds of ``outcome`` by ``odds_ratio`` for index events from ``start``."""

    site: str
    outcome: str
    odds_ratio: float
    start: datetime


@dataclass(frozen=True)
class SimulationConfig:
    seed: int = 7
    patients_per_site: int = 400
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    days: int = 365
    sites: Mapping[str, Site] | None = None
    duplicate_rate: float = 0.02
    late_rate: float = 0.02
    late_max_hours: float = 36.0
    malformed_rate: float = 0.01
    shifts: tuple[Shift, ...] = ()
    areas: tuple[str, ...] = AREAS


@dataclass(frozen=True, slots=True)
class SimMessage:
    key: bytes | None
    value: bytes
    event_time_us: int
    kind: str
    reason: str | None


@dataclass
class Manifest:
    valid: int = 0
    duplicates: int = 0
    malformed: dict[str, int] = field(default_factory=dict)
    by_area: dict[str, int] = field(default_factory=dict)
    by_site: dict[str, int] = field(default_factory=dict)
    source_patient_ids: set[str] = field(default_factory=set)


def utc_us(moment: datetime) -> int:
    """Microseconds since the epoch of ``moment`` (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def validate(config: SimulationConfig, sites: Mapping[str, Site]) -> None:
    """Raise :class:`ConfigError` (one line) for a configuration the simulator cannot run."""
    if config.patients_per_site < 0:
        raise ConfigError(f"patients per site must be >= 0, not {config.patients_per_site}")
    if config.days < 1:
        raise ConfigError(f"days must be at least 1, not {config.days}")
    for name in ("duplicate_rate", "late_rate", "malformed_rate"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and 0 <= value < 1):
            raise ConfigError(f"{name.replace('_', ' ')} must be in [0, 1), not {value!r}")
    if not (math.isfinite(config.late_max_hours) and config.late_max_hours > 0):
        raise ConfigError(f"late max hours must be positive, not {config.late_max_hours!r}")
    if not sites:
        raise ConfigError("the simulation needs at least one site")
    unknown = [a for a in config.areas if a not in AREAS]
    if unknown or not config.areas:
        raise ConfigError(f"areas must be some of {', '.join(AREAS)}, not {', '.join(config.areas)!r}")
    for shift in config.shifts:
        if shift.site not in sites:
            raise ConfigError(f"shift site {shift.site!r} is not one of {', '.join(sites)}")
        if shift.outcome not in OUTCOMES:
            raise ConfigError(f"shift outcome {shift.outcome!r} is not one of {', '.join(OUTCOMES)}")
        if not (math.isfinite(shift.odds_ratio) and shift.odds_ratio > 0):
            raise ConfigError(f"shift odds ratio must be positive, not {shift.odds_ratio!r}")
