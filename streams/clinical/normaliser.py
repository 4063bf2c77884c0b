# mypyc: compiled (the per-event path: setup.py)
"""Validation and normalisation of one inbound clinical event (pure logic).

Turns a decoded ``ClinicalEvent`` into a ``NormalisedEvent``: required fields,
known site, times to UTC and not absurdly in the future, codes to catalogue
concepts, lab values to canonical units within physiological ranges, patient and
encounter ids to keyed pseudonyms, direct identifiers (name, address, free text)
dropped. Anything wrong raises :class:`Rejected` with a stable reason code.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from streams.catalogue.sites import Site
from streams.clinical.clock import LocalTimeConverter, UnknownTimeZone
from streams.clinical.codes import CodeMap
from streams.clinical.proms import SCALES, prom_key
from streams.clinical.pseudonym import Pseudonymiser
from streams.clinical.units import ValueRejected, to_canonical
from streams.vocabulary.dead_letters import Reason, Rejected

EARLIEST_US = int(datetime(1900, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
FIRST_BIRTH_YEAR = 1880
CODED_TYPES = frozenset({"DIAGNOSIS", "PROCEDURE", "LAB_RESULT", "MEDICATION"})
STAY_TYPES = frozenset({"ADMISSION", "DISCHARGE", "WARD_TRANSFER"})


class ClinicalNormaliser:
    """Stateless rules; keeps only caches (time-zone offsets, pseudonyms, code lookups)."""

    def __init__(self, sites: dict[str, Site], code_map: CodeMap, pseudonymiser: Pseudonymiser,
                 future_tolerance_s: float, max_id_length: int = 128, max_code_length: int = 64) -> None:
        self.sites = sites
        self.code_map = code_map
        self.pseudonymiser = pseudonymiser
        self.future_tolerance_us = int(future_tolerance_s * 1_000_000)
        self.clock = LocalTimeConverter()
        self.max_birth_year = datetime.now(UTC).year
        self.max_id_length = max_id_length
        self.max_code_length = max_code_length

    def normalise(self, event: dict[str, Any], ingest_us: int) -> dict[str, Any]:
        """The NormalisedEvent for ``event`` (plain dicts, timestamps in UTC microseconds)."""
        event_id = (event.get("event_id") or "").strip()
        site_id = (event.get("site_id") or "").strip()
        patient_id = (event.get("source_patient_id") or "").strip()
        if not event_id or not site_id or not patient_id:
            missing = [n for n, v in (("event_id", event_id), ("site_id", site_id),
                                      ("source_patient_id", patient_id)) if not v]
            raise Rejected(Reason.MISSING_FIELD, f"empty {', '.join(missing)}")
        self._check_lengths(event)
        site = self.sites.get(site_id)
        if site is None:
            raise Rejected(Reason.UNKNOWN_SITE, f"site {site_id!r} is not in the configured site list")
        event_type = event["event_type"]
        if event_type == "UNKNOWN":
            raise Rejected(Reason.UNKNOWN_EVENT_TYPE, "event type is not one this engine knows")

        event_time, recorded_time = self._times(event, ingest_us)
        encounter = (event.get("encounter_id") or "").strip()
        if event_type in STAY_TYPES and not encounter:
            raise Rejected(Reason.MISSING_FIELD, f"{event_type.lower()} without encounter_id")

        mapping = self.code_map.map(event.get("code_system"), event.get("code"))
        if event_type in CODED_TYPES and mapping.code is None:
            if (event.get("code") or "").strip():
                raise Rejected(Reason.INVALID_CODE, f"{event_type.lower()} code is not well-formed for its code system")
            raise Rejected(Reason.MISSING_FIELD, f"{event_type.lower()} without a code")
        coded, coded_concepts, mapped = self._coded_value(event, event_type)
        concepts = sorted({*mapping.concepts, *coded_concepts}) if coded_concepts else list(mapping.concepts)
        value, unit = event.get("value"), event.get("unit")
        if mapping.lab is not None:
            try:
                value, unit = to_canonical(mapping.lab, value, unit)
            except ValueRejected as exc:
                raise Rejected(exc.reason, exc.message) from None
        elif event_type == "LAB_RESULT" and value is None and coded is None:
            raise Rejected(Reason.MISSING_VALUE, "lab result without a value or a coded value")
        elif value is not None and event_type != "LAB_RESULT":
            raise Rejected(Reason.UNEXPECTED_VALUE, f"a value on a {event_type.lower()} event, which carries no "
                           "measurement")
        elif value is not None and not math.isfinite(value):
            raise Rejected(Reason.OUT_OF_RANGE, f"value {value} is not a finite number")

        prom = event.get("prom")
        if event_type == "PROM_RESPONSE":
            if prom is None:
                raise Rejected(Reason.MISSING_FIELD, "patient-reported outcome response without prom")
            instrument, domain = prom_key(prom["instrument"], prom["domain"])
            low, high = SCALES.get(instrument, (-math.inf, math.inf))
            if not (math.isfinite(prom["score"]) and low <= prom["score"] <= high):
                raise Rejected(Reason.OUT_OF_RANGE, f"{prom['instrument']} score {prom['score']} outside {low}-{high}")
            prom = {"instrument": instrument, "domain": domain, "score": prom["score"]}
        birth_year = event.get("birth_year")
        if birth_year is not None and not FIRST_BIRTH_YEAR <= birth_year <= self.max_birth_year:
            raise Rejected(Reason.OUT_OF_RANGE, f"birth year {birth_year} is implausible")

        if event.get("pseudonymised"):  # an ingest endpoint of the engine applied the same key already
            patient, encounter_pseudonym = patient_id, encounter or None
        else:
            patient = self.pseudonymiser.patient(patient_id, event.get("patient_id_issuer"), site_id)
            encounter_pseudonym = self.pseudonymiser.encounter(encounter, site_id) if encounter else None
        return {
            "event_id": event_id,
            "site_id": site_id,
            "region": site.region,
            "country": site.country,
            "patient_pseudonym": patient,
            "encounter_pseudonym": encounter_pseudonym,
            "event_type": event_type,
            "event_time": event_time,
            "recorded_time": recorded_time,
            "ingest_time": ingest_us,
            "code_system": mapping.system,
            "code": mapping.code,
            "concepts": concepts,
            "mapped": (mapping.mapped or mapping.code is None) and mapped,
            "value": value,
            "unit": unit,
            "coded_value": coded,
            "admission_type": event.get("admission_type"),
            "disposition": event.get("disposition"),
            "birth_year": birth_year,
            "sex": event.get("sex"),
            "prom": prom,
            "code_map_version": self.code_map.version,
        }

    def _coded_value(self, event: dict[str, Any], event_type: str
                     ) -> tuple[dict[str, str | None] | None, tuple[str, ...], bool]:
        """(canonical coded value, its concepts, whether it maps) of a categorical result."""
        raw = event.get("coded_value")
        if raw is None:
            return None, (), True
        if event_type != "LAB_RESULT":
            raise Rejected(Reason.UNEXPECTED_VALUE, f"a coded value on a {event_type.lower()} event: only lab "
                           "results and assessments carry one")
        mapping = self.code_map.map(raw.get("system"), raw.get("code"))
        if mapping.code is None:
            raise Rejected(Reason.INVALID_CODE, "coded value is not well-formed for its code system")
        return {"system": mapping.system, "code": mapping.code}, mapping.concepts, mapping.mapped

    def _check_lengths(self, event: dict[str, Any]) -> None:
        """Ids and codes within their limits: a 200 KB id is an attack or a broken feed, not data."""
        for name in ("event_id", "site_id", "source_patient_id", "patient_id_issuer", "encounter_id"):
            text = event.get(name)
            if text is not None and len(text) > self.max_id_length:
                raise Rejected(Reason.FIELD_TOO_LONG, f"{name} of {len(text)} characters (limit {self.max_id_length})")
        prom = event.get("prom") or {}
        coded = event.get("coded_value") or {}
        for name, text in (("code_system", event.get("code_system")), ("code", event.get("code")),
                           ("coded value system", coded.get("system")), ("coded value", coded.get("code")),
                           ("unit", event.get("unit")), ("time_zone", event.get("time_zone")),
                           ("prom instrument", prom.get("instrument")), ("prom domain", prom.get("domain"))):
            if text is not None and len(text) > self.max_code_length:
                raise Rejected(Reason.FIELD_TOO_LONG,
                               f"{name} of {len(text)} characters (limit {self.max_code_length})")

    def _times(self, event: dict[str, Any], ingest_us: int) -> tuple[int, int]:
        zone = event.get("time_zone")
        try:
            event_time = self.clock.to_utc_us(event["event_time"], zone)
            recorded_time = self.clock.to_utc_us(event["recorded_time"], zone)
        except UnknownTimeZone as exc:
            raise Rejected(Reason.INVALID_TIME_ZONE, str(exc)) from None
        except (OverflowError, ValueError):
            raise Rejected(Reason.IMPLAUSIBLE_TIME, "event or recorded time is out of range") from None
        if event_time < EARLIEST_US or recorded_time < EARLIEST_US:
            raise Rejected(Reason.IMPLAUSIBLE_TIME, "event or recorded time before 1900")
        tolerance = self.future_tolerance_us
        if event_time > recorded_time + tolerance:
            raise Rejected(Reason.FUTURE_TIME, f"event time {(event_time - recorded_time) / 3.6e9:.1f} h after "
                           "its recorded time")
        if recorded_time > ingest_us + tolerance:
            raise Rejected(Reason.FUTURE_TIME,
                           f"recorded time {(recorded_time - ingest_us) / 3.6e9:.1f} h in the future")
        return event_time, recorded_time
