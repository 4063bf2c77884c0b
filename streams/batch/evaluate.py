"""Batch evaluation: the same indicators from an Avro event file, with no broker.

A separate driver over the same pure rules as the stream: normalisation
(streams.clinical.normaliser), deduplication (streams.state.dedupe), outcome tracking
(streams.outcomes.tracker) and aggregation. Events are taken in file order, as one partition.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.catalogue.definitions import Catalogue, load_catalogue
from streams.catalogue.sites import load_sites
from streams.clinical.clock import now_us
from streams.clinical.codes import CodeMap
from streams.clinical.normaliser import ClinicalNormaliser
from streams.clinical.pseudonym import Pseudonymiser
from streams.errors import ConfigError
from streams.outcomes.tracker import LATE, OutcomeTracker, observation_record
from streams.runtime.producer import read_events
from streams.settings import Settings
from streams.state.dedupe import NEW, DedupeStore, content_digest
from streams.vocabulary.dead_letters import Reason, Rejected
from streams.wire import schemas
from streams.wire.writer import write_container

COLLECT_EVERY = 2000  # events between evaluations, like a stream batch: keeps wake-up sets small


@dataclass
class Evaluation:
    catalogue_version: str
    events: int = 0
    accepted: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    watermark: int = 0
    observations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"catalogue_version": self.catalogue_version, "events": self.events, "accepted": self.accepted,
                "duplicates": self.duplicates, "late": self.late, "rejected": dict(self.rejected),
                "watermark_us": self.watermark}


def evaluate(path: Path, settings: Settings, catalogue: Catalogue | None = None) -> Evaluation:
    """Observations (final state per observation id) of every indicator in the file's events."""
    catalogue = catalogue or load_catalogue()
    sites = load_sites(settings.sites_file)
    # Pseudonyms never leave this function, so any key will do.
    normaliser = ClinicalNormaliser(sites, CodeMap.load(), Pseudonymiser(secrets.token_bytes(32)),
                                    settings.future_tolerance, settings.max_id_length, settings.max_code_length)
    dedupe = DedupeStore(int(settings.dedupe_horizon * 1_000_000))
    tracker = OutcomeTracker(catalogue, int(settings.allowed_lateness * 1_000_000))
    result = Evaluation(catalogue.version)
    ingest = now_us()

    def collect(final: bool = False) -> None:
        for obs in (tracker.flush_all() if final else tracker.collect()):
            result.observations[obs.observation_id] = observation_record(obs, catalogue, sites)

    for raw in read_events(path):
        result.events += 1
        try:
            event = normaliser.normalise(raw, ingest)
        except Rejected as exc:
            result.rejected[exc.rejection.reason] += 1
            continue
        verdict = dedupe.check(event["site_id"], event["event_id"], event["event_time"], content_digest(raw))
        if verdict is not NEW:
            if verdict == "conflict":
                result.rejected[Reason.DUPLICATE_CONFLICT] += 1
            else:
                result.duplicates += 1
            continue
        result.accepted += 1
        if tracker.add(event) is LATE:
            result.late += 1
        if result.events % COLLECT_EVERY == 0:
            collect()
            dedupe.evict()
    collect(final=True)
    result.watermark = tracker.watermark
    return result


def write_json(result: Evaluation, snapshots: list[dict[str, Any]]) -> str:
    body = {**result.summary(), "indicators": snapshots,
            "observations": sorted(result.observations.values(), key=lambda o: o["observation_id"])}
    return json.dumps(body, indent=1, sort_keys=True)


def write_avro(result: Evaluation, path: Path) -> int:
    """The observations as an Avro container of OutcomeObservations (input of ``rwe calibrate``)."""
    records = sorted(result.observations.values(), key=lambda o: o["observation_id"])
    marker = hashlib.sha256(f"rwe-evaluate:{result.catalogue_version}".encode()).digest()[:16]
    try:
        with path.open("wb") as out:
            return write_container(out, schemas.OUTCOME_OBSERVATION, records, sync_marker=marker)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def write_csv(snapshots: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    columns = ["indicator", "area", "scope", "scope_id", "window_days", "as_of", "suppressed", "denominator",
               "numerator", "pending", "excluded", "proportion", "ci_low", "ci_high", "mean", "median", "sd",
               "expected", "observed_expected", "catalogue_version"]
    writer = csv.DictWriter(buf, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(snapshots)
    return buf.getvalue()
