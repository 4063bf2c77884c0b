"""The naive baseline for the whole pipeline: three per-event Faust agents in one Faust app.

The work is the engine's, done the way a user first writes it with Faust, one event at a
time, state in Faust Tables (one changelog record per table write), using the engine's
pure modules so the per-event work is the same:

1. ``normalise`` (events.raw): decode (streams.wire.formats), validate and normalise
   (streams.clinical.normaliser.ClinicalNormaliser), dedupe by (site, event id) through a Table read
   and write, Avro-encode the NormalisedEvent, send it keyed by patient pseudonym; rejected
   records go to the dead-letter topic.
2. ``ascertain`` (events.normalised): decode; an event no indicator can use
   (streams.outcomes.timeline.fact_from_event gives None) of an unknown patient is skipped, as the
   engine's tracker does. Otherwise read the patient's timeline from a Table keyed by
   pseudonym (JSON: demographics, facts, signatures of what was published), rebuild a
   streams.outcomes.timeline.PatientTimeline, add the fact, re-evaluate every catalogue indicator
   the timeline can index with streams.outcomes.ascertainment.ascertain at the event-time watermark
   (largest event time seen - allowed lateness; older events are late, counted, not
   applied), write the timeline back, and send each observation whose record changed
   (streams.outcomes.tracker.signature) as an OutcomeObservation keyed ``indicator|site``.
   Unlike the engine, it has no event-time timers: an observation closes negative only when
   its own patient has another event (less work than the engine does, so this flatters it).
3. ``aggregate`` (outcomes.observations): decode; read the observation's previous
   contribution (Table keyed by observation id) and the counts of ``indicator|site`` (Table),
   move the counts (streams.indicators.rolling.Obs contributions: denominator, numerator, pending,
   excluded, exact sums), write both, recompute the cumulative estimates
   (proportion, Wilson interval, mean, SD: streams.indicators.rolling / streams.indicators.statistics) with
   primary small-cell suppression, and send the IndicatorSnapshot of that site.

Run as ``python benchmarks/naive_faust_pipeline.py worker -l warn`` with BENCH_* variables
(as benchmarks/naive_faust.py: BENCH_BROKER, BENCH_APP_ID, BENCH_DATADIR, BENCH_TOPIC_PREFIX,
BENCH_PARTITIONS, BENCH_KEY, BENCH_STARTED_FILE, BENCH_FETCH_WAIT_MS, BENCH_WEB_PORT) plus
BENCH_EXPECT (normalised events the feed gives), BENCH_PROGRESS_FILE (wall-clock times at
which agent 2 has read BENCH_EXPECT events and agent 3 every observation sent by then) and
BENCH_LATENESS_S. The aiokafka consumer's hard-coded fetch_max_wait_ms=1500 is patched to
BENCH_FETCH_WAIT_MS (default 10) in this process only, as in benchmarks/naive_faust.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import faust
import naive_common  # noqa: F401 - first: the import path and the fetch-wait patch
from naive_common import PARTITIONS, PREFIX, STARTED_FILE

from streams.catalogue.definitions import load_catalogue
from streams.catalogue.sites import load_sites
from streams.clinical.clock import now_us
from streams.clinical.codes import CodeMap
from streams.clinical.normaliser import ClinicalNormaliser
from streams.clinical.pseudonym import Pseudonymiser
from streams.indicators import disclosure, rolling
from streams.outcomes.ascertainment import ascertain
from streams.outcomes.record import EXCLUDED, SUPERSEDED, problem
from streams.outcomes.timeline import Fact, PatientTimeline, fact_from_event
from streams.outcomes.tracker import observation_record, signature
from streams.runtime import topics
from streams.runtime.dead_letters import dead_letter
from streams.state.dedupe import content_digest
from streams.vocabulary.dead_letters import Rejected, Rejection
from streams.wire import formats as wire
from streams.wire import schemas

PROGRESS_FILE = os.environ.get("BENCH_PROGRESS_FILE")
EXPECT = int(os.environ.get("BENCH_EXPECT", "0"))
LATENESS_US = int(float(os.environ.get("BENCH_LATENESS_S", str(2 * 86400))) * 1_000_000)

app = faust.App(
    os.environ.get("BENCH_APP_ID", "naive-pipeline"),
    broker=f"kafka://{os.environ.get('BENCH_BROKER', '127.0.0.1:9092')}",
    datadir=os.environ.get("BENCH_DATADIR", "/tmp/naive-faust-pipeline"),
    topic_partitions=PARTITIONS,
    broker_session_timeout=6.0,  # Tansu answers a group join after session_timeout / 2
    broker_heartbeat_interval=1.0,
    web_enabled=False,
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6066")),
    web_bind="127.0.0.1",
    value_serializer="raw",
    key_serializer="raw",
)


def _topic(name: str) -> Any:
    return app.topic(f"{PREFIX}{name}", value_serializer="raw", key_serializer="raw", partitions=PARTITIONS)


raw_topic, normalised_topic, dlq_topic = _topic(topics.RAW), _topic(topics.NORMALISED), _topic(topics.DLQ)
observations_topic, indicators_topic = _topic(topics.OBSERVATIONS), _topic(topics.INDICATORS)
_json = faust.Schema(key_serializer="json", value_serializer="json")
seen = app.Table("seen", default=None, partitions=PARTITIONS, schema=_json)
timelines = app.Table("timelines", default=None, partitions=PARTITIONS, schema=_json)
obs_state = app.Table("observation-contrib", default=None, partitions=PARTITIONS, schema=_json)
counts = app.Table("site-counts", default=None, partitions=PARTITIONS, schema=_json)

SITES = load_sites()
CATALOGUE = load_catalogue()
INDICATORS = tuple(CATALOGUE.indicators.values())
RELEVANT = CATALOGUE.relevant_concepts()
PROMS = CATALOGUE.prom_keys()
raw_decoder = wire.Decoder(schemas.CLINICAL_EVENT)
normalised_encoder = wire.Encoder(schemas.NORMALISED_EVENT)
normalised_decoder = wire.Decoder(schemas.NORMALISED_EVENT)
observation_encoder = wire.Encoder(schemas.OUTCOME_OBSERVATION)
observation_decoder = wire.Decoder(schemas.OUTCOME_OBSERVATION)
snapshot_encoder = wire.Encoder(schemas.INDICATOR_SNAPSHOT)
dlq_encoder = wire.Encoder(schemas.DEAD_LETTER)
normaliser = ClinicalNormaliser(SITES, CodeMap.load(), Pseudonymiser(os.environ.get("BENCH_KEY", "k" * 40).encode()),
                                3600.0)
MIN_CELL = 5

_first: list[float] = []
progress: dict[str, float] = {"ascertain_in": 0, "observations": 0, "aggregate_in": 0, "late": 0}
max_seen: dict[int, int] = {}  # per input partition, as the engine keeps one tracker per partition


def _note_progress() -> None:
    changed = False
    if "ascertain_done" not in progress and EXPECT and progress["ascertain_in"] >= EXPECT:
        progress["ascertain_done"] = time.time()
        progress["observations_at_done"] = progress["observations"]
        changed = True
    if ("ascertain_done" in progress and "aggregate_done" not in progress
            and progress["aggregate_in"] >= progress["observations_at_done"]):
        progress["aggregate_done"] = time.time()
        changed = True
    if changed and PROGRESS_FILE:
        tmp = Path(PROGRESS_FILE + ".tmp")
        tmp.write_text(json.dumps(progress))
        tmp.replace(PROGRESS_FILE)


# --------------------------------------------------------------------------- 1. normalise
async def _dead(message: Any, rejection: Rejection, original: bytes | None, site_id: str | None) -> None:
    site = site_id if site_id in normaliser.sites else None
    letter = dead_letter(rejection, "normalise", message.topic, message.partition, message.offset,
                         int(message.timestamp * 1000) if message.timestamp else None, message.key,
                         original, site)
    key = f"{letter['source_topic']}/{letter['source_partition']}/{letter['source_offset']}".encode()
    await dlq_topic.send(key=key, value=dlq_encoder.encode(letter))


@app.agent(raw_topic)
async def normalise(stream: Any) -> None:
    async for event in stream.events():
        if not _first:
            _first.append(time.time())
            if STARTED_FILE:
                Path(STARTED_FILE).write_text(repr(_first[0]))
        message, value = event.message, event.value
        try:
            record = raw_decoder.decode(value)[0]
        except wire.DecodeError as exc:
            await _dead(message, Rejection(exc.reason, exc.message), value, None)
            continue
        try:
            out = normaliser.normalise(record, now_us())
        except Rejected as exc:
            await _dead(message, exc.rejection, value, record.get("site_id"))
            continue
        key = f"{out['site_id']}|{out['event_id']}"
        digest = content_digest(record)
        previous = seen.get(key)
        if previous is None:
            seen[key] = digest
            await normalised_topic.send(key=out["patient_pseudonym"].encode(), value=normalised_encoder.encode(out))
        elif previous != digest:
            await _dead(message, Rejection("duplicate_conflict", "event id already accepted with different "
                                           "content"), value, out["site_id"])


# --------------------------------------------------------------------------- 2. ascertain
def _timeline(stored: dict[str, Any] | None) -> PatientTimeline:
    tl = PatientTimeline()
    if stored:
        tl.birth_year, tl.male = stored["birth_year"], stored["male"]
        tl.facts = [Fact(f[0], f[1], f[2], f[3], frozenset(f[4]), f[5], f[6], f[7]) for f in stored["facts"]]
    return tl


def _relevant(tl: PatientTimeline) -> list[Any]:
    concepts: set[str] = set()
    kinds: set[str] = set()
    for f in tl.facts:
        concepts |= f.concepts
        kinds.add(f.kind)
    out = []
    for ind in INDICATORS:
        sel = ind.index
        if (sel.stay_concepts and concepts & sel.stay_concepts) or (
                not sel.stay_concepts and sel.event in kinds and (not sel.concepts or concepts & sel.concepts)):
            out.append(ind)
    return out


@app.agent(normalised_topic)
async def ascertain_agent(stream: Any) -> None:
    async for event in stream.events():
        progress["ascertain_in"] += 1
        try:
            record = normalised_decoder.decode(event.value)[0]
        except wire.DecodeError:
            _note_progress()
            continue
        t = record["event_time"]
        partition = event.message.partition
        seen_max = max_seen.get(partition, 0)
        if seen_max and t < seen_max - LATENESS_US:
            progress["late"] += 1
            _note_progress()
            continue
        max_seen[partition] = seen_max = max(seen_max, t)
        pseudonym = record["patient_pseudonym"]
        fact = fact_from_event(record, RELEVANT, PROMS)
        stored = timelines.get(pseudonym)
        if stored is None and fact is None:
            _note_progress()
            continue
        tl = _timeline(stored)
        changed = tl.note_demographics(record["birth_year"], record["sex"])
        published: dict[str, int] = stored["published"] if stored else {}
        if fact is not None and tl.add(fact):
            changed = True
            watermark = seen_max - LATENESS_US
            for ind in _relevant(tl):
                for obs in ascertain(ind, tl, watermark):
                    sig = signature(obs)
                    if published.get(obs.observation_id) != sig:
                        published[obs.observation_id] = sig
                        value = observation_encoder.encode(observation_record(obs, CATALOGUE, SITES))
                        progress["observations"] += 1
                        await observations_topic.send(key=f"{obs.indicator}|{obs.site}".encode(), value=value)
        if changed:
            timelines[pseudonym] = {
                "birth_year": tl.birth_year, "male": tl.male, "published": published,
                "facts": [[f.time, f.kind, f.site, f.ref, sorted(f.concepts), f.value, f.attr, f.key]
                          for f in tl.facts]}
        _note_progress()


# --------------------------------------------------------------------------- 3. aggregate
@app.agent(observations_topic)
async def aggregate(stream: Any) -> None:
    async for event in stream.events():
        progress["aggregate_in"] += 1
        try:
            record = observation_decoder.decode(event.value)[0]
        except wire.DecodeError:
            _note_progress()
            continue
        if problem(record, CATALOGUE) is not None:
            _note_progress()
            continue
        ind = CATALOGUE.indicators[record["indicator"]]
        continuous = ind.kind == "continuous"
        superseded = record["status"] == EXCLUDED and record.get("exclusion") == SUPERSEDED
        new = [0] * 8 if superseded else list(rolling.Obs(
            record["indicator"], record["site_id"], record["region"], record["country"], record["index_time"],
            record["status"], record.get("outcome"), record.get("value"), record.get("expected"), continuous).contrib)
        old = obs_state.get(record["observation_id"]) or [0] * 8
        obs_state[record["observation_id"]] = new
        key = f"{record['indicator']}|{record['site_id']}"
        tally = counts.get(key) or {"counts": [0] * 8, "as_of": 0}
        tally["counts"] = [c - o + n for c, o, n in zip(tally["counts"], old, new, strict=True)]
        closed = record.get("closed_time")
        tally["as_of"] = max(tally["as_of"], closed if closed is not None else record["index_time"])
        counts[key] = tally
        t = tally["counts"]
        snapshot = {"indicator": ind.id, "area": ind.area, "catalogue_version": CATALOGUE.version,
                    "kind": "CONTINUOUS" if continuous else "PROPORTION", "unit": ind.unit, "as_of": tally["as_of"],
                    "scope": "SITE", "scope_id": record["site_id"], "window_days": None,
                    **rolling._estimates(t, continuous, None)}
        suppressed = disclosure.primary_suppressed(ind.kind, t[rolling.DEN], None if continuous else t[rolling.NUM],
                                                   MIN_CELL)
        published = disclosure.disclose(snapshot, suppressed, disclosure.is_small(t[rolling.PEND], MIN_CELL),
                                        disclosure.is_small(t[rolling.EXCL], MIN_CELL))
        await indicators_topic.send(key=f"{key.replace('|', '|SITE|', 1)}|all".encode(),
                                    value=snapshot_encoder.encode(published))
        _note_progress()


if __name__ == "__main__":
    app.main()
