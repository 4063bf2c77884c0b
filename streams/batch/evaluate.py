"""Batch evaluation: the stream's indicators from an Avro event file, with no broker.

Not a second implementation of the rules: the file's events go through the topology's
own stages (normalise, ascertain, aggregate) on the in-memory driver
(:mod:`streams.runtime.memory`), keyed by site like a hospital producer's, so the
observations and snapshots are the ones the stream publishes for the same events.

Time is pure event time (``RWE_MAX_FEED_DELAY`` is 0 here: a file is history). With an as-of
time (``--as-of``, ``RWE_AS_OF``) later events are not applied, every follow-up closes
at it once the file is read, and snapshots are as of it: the report for that date.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.clinical.clock import now_us
from streams.errors import ConfigError
from streams.runtime import topics
from streams.runtime.memory import InMemoryDriver, ManualClock
from streams.runtime.producer import read_events
from streams.runtime.stage import ClosesFollowUp
from streams.settings import DEV, Settings
from streams.wire import schemas
from streams.wire.writer import write_container

STAGES = ("normalise", "ascertain", "aggregate")
CHUNK = 20_000  # events piped in before the stages run: bounds what waits on the in-memory topics


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
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # latest per key, disclosure-controlled

    def summary(self) -> dict[str, Any]:
        return {"catalogue_version": self.catalogue_version, "events": self.events, "accepted": self.accepted,
                "duplicates": self.duplicates, "late": self.late, "rejected": dict(self.rejected),
                "watermark_us": self.watermark}


def evaluate(path: Path, settings: Settings) -> Evaluation:
    """Observations (latest record per observation id) and indicator snapshots (latest per key)
    of the file's events, as the stream publishes them."""
    from streams.catalogue.definitions import load_catalogue

    events = read_events(path)
    first = next(events, None)  # a missing or foreign file is one line before anything is built
    # Pseudonyms never leave this function: dev mode's throw-away key will do.
    # Pure event time: a file is history, whatever the wall clock says (max_feed_delay 0).
    driver = InMemoryDriver(settings.with_(mode=DEV, dead_letter_encryption="off", max_feed_delay=0.0), STAGES,
                            ManualClock(now_us=now_us()))
    result = Evaluation(load_catalogue().version)
    chunk: list[dict[str, Any]] = []
    for event in itertools.chain([first] if first is not None else [], events):
        result.events += 1
        chunk.append(event)
        if len(chunk) >= CHUNK:
            driver.pipe_events(chunk)
            driver.run()
            chunk = []
    driver.pipe_events(chunk)
    driver.run()
    as_of = settings.as_of_us
    if as_of is not None:  # the file is all there is: what was open at the as-of time closes at it
        ascertain = driver.stages["ascertain"]
        assert isinstance(ascertain, ClosesFollowUp)
        driver.producer.stage = "ascertain"
        ascertain.close_at(as_of, driver.producer)
        driver.run()
    driver.advance(settings.snapshot_interval)  # the aggregate's last coalesced snapshots
    result.observations = {r["observation_id"]: r
                           for r in driver.records(topics.OBSERVATIONS, schemas.OUTCOME_OBSERVATION)}
    latest = driver.latest(topics.INDICATORS, schemas.INDICATOR_SNAPSHOT)
    result.snapshots = [latest[k] for k in sorted(latest)]
    result.rejected = Counter(d["reason"] for d in driver.dead_letters())
    result.accepted = len(driver.messages(topics.NORMALISED))
    registry = driver.context.metrics.registry
    result.duplicates = int(sum(s.value for m in registry.collect() if m.name == "rwe_duplicates"
                                for s in m.samples if s.name == "rwe_duplicates_total"
                                and s.labels.get("stage") == "normalise"))
    result.late = int(registry.get_sample_value("rwe_late_events_total", {"stage": "ascertain"}) or 0)
    result.watermark = round((registry.get_sample_value("rwe_event_time_watermark_seconds",
                                                        {"stage": "ascertain"}) or 0) * 1e6)
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
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    writer.writerows({**s, "as_of": (epoch + timedelta(microseconds=s["as_of"])).isoformat()} for s in snapshots)
    return buf.getvalue()
