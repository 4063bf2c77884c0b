# mypyc: compiled (the per-event path: setup.py)
"""Outcome tracking for one partition of patients (pure logic, no Kafka).

Events go in (``add``), in arrival order; ``collect`` then returns the observations
whose published state must change, each with its revision number. The event-time
watermark is the largest event time seen minus the allowed lateness (raised by
:meth:`OutcomeTracker.follow_clock` on a quiet live feed, capped by an as-of time);
observations close as negative when it passes their horizon.

Late data revises: an event older than the watermark is applied like any other, and
the observations it changes are published again with the next revision number (a late
death turns a FINAL 0 into a FINAL 1). Only an event more than the revision horizon
behind the newest event time is refused (``BEYOND_HORIZON``: the stage dead-letters it,
replayable). Everything such an event could still change is kept: patients whose facts
are all older than the retention (revision horizon + longest horizon + a year of
look-back for covariates + lateness) and who have nothing open are evicted.

The same tracker drives the stream (one per input partition, persisted through a
batched changelog) and the batch evaluator (one for the whole file), which is what
makes their answers the same.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable
from typing import Any

from streams.catalogue.definitions import Catalogue, Indicator
from streams.catalogue.risk import expected_for
from streams.catalogue.sites import Site
from streams.outcomes.ascertainment import (
    EXCLUDED,
    OPEN,
    Observation,
    ascertain,
    complete,
    next_deadline,
    transfer_deadlines,
)
from streams.outcomes.packing import (
    StringReader,
    StringTable,
    pack_facts,
    pack_frozen,
    pack_published,
    unpack_facts,
    unpack_published,
)
from streams.outcomes.record import SUPERSEDED
from streams.outcomes.timeline import (
    DAY_US,
    Fact,
    PatientTimeline,
    Published,
    fact_from_event,
    frozen_demographics,
    frozen_sizes,
)

# add() verdicts. LATE: applied, but older than the watermark (it may revise published observations).
APPLIED, IGNORED, DUPLICATE, LATE = "applied", "ignored", "duplicate", "late"
BEYOND_HORIZON = "beyond_horizon"  # older than the revision horizon allows: not applied
AFTER_AS_OF = "after_as_of"  # after the tracker's as-of time: not applied
REVISION_HORIZON_US = 365 * DAY_US  # RWE_REVISION_HORIZON's default
LOOKBACK_US = 365 * DAY_US  # covariates look a year back (prior admissions)
HOT_PATIENTS = 1000  # thawed patients kept per tracker (RWE_HOT_PATIENTS; see OutcomeTracker._cool)
# Deadlines are looked at in the first batch whose watermark reaches the first whole hour at or
# after them: at most an hour of event time late, and no patient is woken before it is due.
WAKE_BUCKET_US = 3_600_000_000


def observation_record(obs: Observation, catalogue: Catalogue, sites: dict[str, Site]) -> dict[str, Any]:
    """The OutcomeObservation record (plain dict) of an observation."""
    ind = catalogue.indicators[obs.indicator]
    site = sites.get(obs.site)
    return {
        "observation_id": obs.observation_id, "indicator": obs.indicator, "area": ind.area,
        "catalogue_version": catalogue.version, "site_id": obs.site,
        "region": site.region if site else "unknown", "country": site.country if site else "unknown",
        "status": obs.status, "index_time": obs.index_time, "horizon_end": obs.horizon_end,
        "closed_time": obs.closed_time, "outcome": obs.outcome, "value": obs.value,
        "expected": expected_for(ind.risk, obs.status, obs.covariates),
        "exclusion": obs.exclusion, "revision": obs.revision, "covariates": dict(obs.covariates),
    }


_STABLE_IDS: dict[str | None, int] = {}


def _stable_id(text: str | None) -> int:
    """A process-independent number for a string (Python's own str hash is salted per process)."""
    found = _STABLE_IDS.get(text)
    if found is None:
        found = 0 if text is None else int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest()) >> 2
        if len(_STABLE_IDS) < 100_000:
            _STABLE_IDS[text] = found
    return found


def signature(obs: Observation) -> int:
    """Digest of what a record of ``obs`` says, the same in every process: hashes of ints,
    floats and None are not salted, and strings go through :func:`_stable_id`."""
    return hash((_stable_id(obs.status), obs.outcome, obs.value, _stable_id(obs.exclusion), obs.closed_time,
                 _stable_id(obs.site), tuple(obs.extra.values()) if obs.extra else None))


def case_mix(covariates: dict[str, float]) -> int:
    """Digest of an observation's covariates, the same in every process."""
    text = repr(sorted(covariates.items())).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), signed=True)


class OutcomeTracker:
    """Patient timelines and their observations for one partition."""

    def __init__(self, catalogue: Catalogue, lateness_us: int, hot_patients: int = HOT_PATIENTS,
                 revision_horizon_us: int = REVISION_HORIZON_US, as_of: int | None = None,
                 max_feed_delay_us: int = 0) -> None:
        self.catalogue = catalogue
        self.lateness_us = lateness_us
        self.revision_horizon_us = max(revision_horizon_us, lateness_us)
        self.retention_us = catalogue.max_horizon_us + LOOKBACK_US + lateness_us + self.revision_horizon_us
        self.max_seen = 0
        # What is known as of this event time (None: no cap): later events are not applied, and
        # once the feed has shown one, follow-ups close at it.
        self.as_of = as_of
        self.passed_as_of = False
        # Live feeds: the watermark follows the wall clock this far behind while the feed is quiet
        # (0: pure event time). ``live``: the newest event arrived within that delay of its time.
        self.max_feed_delay_us = max_feed_delay_us
        self.live = False
        self.floor = 0  # the wall clock's watermark (only ever raised)
        # Patients being evaluated are PatientTimelines; the rest are frozen (bytes).
        self.patients: dict[str, PatientTimeline | bytes] = {}
        self._relevant = catalogue.relevant_concepts()
        self._proms = catalogue.prom_keys()
        self._dirty: set[str] = set()
        self._touched: set[str] = set()  # thawed by this batch's events
        # Thawed patients, least recently touched first: the oldest are frozen past ``hot_patients``
        # (a stay's events come days apart, so a recent patient is likely to be touched again).
        self._hot_order: dict[str, None] = {}
        self.hot_patients = hot_patients
        # hour bucket -> patients to look at again once the watermark reaches it (repeats harmless),
        # and the buckets in a heap
        self._wake: dict[int, list[str]] = {}
        self._wake_order: list[int] = []
        # changelog bookkeeping: what this batch changed, per patient
        self._new_facts: dict[str, list[Fact]] = {}
        self._new_published: dict[str, dict[str, Published]] = {}
        self._demographics_changed: set[str] = set()
        self._evicted: set[str] = set()
        self._indicators = tuple(catalogue.indicators.values())
        self.pending_restore = False
        self._everyone = False  # next collect evaluates every indicator of every dirty patient
        self.evaluations = 0  # patients evaluated so far (each wake-up or new fact costs one)

    @property
    def watermark(self) -> int:
        mark = max(self.max_seen - self.lateness_us, self.floor)
        if self.as_of is not None:
            mark = self.as_of if self.passed_as_of else min(mark, self.as_of)
        return mark

    @property
    def revision_limit(self) -> int:
        """Events older than this are beyond the revision horizon."""
        return max(self.max_seen, self.watermark) - self.revision_horizon_us

    # ------------------------------------------------------------------ time
    def arrived(self, wall_us: int) -> None:
        """After a batch's events: whether the feed is live (its newest event is recent)."""
        if self.max_feed_delay_us and self.max_seen:
            self.live = wall_us - self.max_seen <= self.max_feed_delay_us

    def follow_clock(self, wall_us: int) -> bool:
        """A live feed's watermark follows the wall clock (``max_feed_delay`` behind) while it is
        quiet; True if that moved the watermark (``collect`` then closes what came due)."""
        if not self.live:
            return False
        floor = wall_us - self.max_feed_delay_us
        if floor <= self.watermark:
            return False
        self.floor = floor
        return True

    def close_at(self, time: int) -> None:
        """Follow-ups close at ``time`` (the as-of time of a report): the watermark is raised to it."""
        self.floor = max(self.floor, time)
        if self.as_of is not None and time >= self.as_of:
            self.passed_as_of = True

    # ------------------------------------------------------------------ input
    def add(self, event: dict[str, Any]) -> str:
        """Apply one NormalisedEvent (plain dict): APPLIED, LATE (applied behind the watermark),
        IGNORED, DUPLICATE, BEYOND_HORIZON or AFTER_AS_OF (neither applied)."""
        time = event["event_time"]
        if self.as_of is not None and time > self.as_of:
            self.passed_as_of = True
            return AFTER_AS_OF
        if self.max_seen and time < self.revision_limit:
            return BEYOND_HORIZON
        late = time < self.watermark
        self.max_seen = max(self.max_seen, time)
        pseudonym = event["patient_pseudonym"]
        fact = fact_from_event(event, self._relevant, self._proms)
        tl = self._hot(pseudonym)
        if tl is None:
            if fact is None:
                return IGNORED
            tl = self.patients[pseudonym] = PatientTimeline()
            self._evicted.discard(pseudonym)
        self._touched.add(pseudonym)
        if tl.note_demographics(event["birth_year"], event["sex"]):
            self._demographics_changed.add(pseudonym)
        if fact is None:
            return IGNORED
        if not tl.add(fact):
            return DUPLICATE
        self._new_facts.setdefault(pseudonym, []).append(fact)
        self._dirty.add(pseudonym)
        return LATE if late else APPLIED

    # ------------------------------------------------------------------ output
    def collect(self) -> list[Observation]:
        """Observations whose published state changes, after the events added so far."""
        watermark = self.watermark
        woken: set[str] = set()
        order = self._wake_order
        while order and order[0] * WAKE_BUCKET_US <= watermark:
            woken.update(self._wake.pop(heapq.heappop(order)))
        if self._everyone:
            woken |= self._dirty
            self._everyone = False
        changed: list[Observation] = []
        # In pseudonym order, not set order: a set of strings iterates in an order salted per
        # process (PYTHONHASHSEED), and the order observations are published in reaches the
        # monitors' sequential charts (two runs of one feed raised different alerts).
        for pseudonym in sorted(self._dirty | woken):
            tl = self._hot(pseudonym)
            if tl is not None:
                changed.extend(self._evaluate(pseudonym, tl, watermark, pseudonym in woken))
        self._cool(self._touched | self._dirty | woken)
        self._dirty.clear()
        self._touched.clear()
        return changed

    def _evaluate(self, pseudonym: str, tl: PatientTimeline, watermark: int, woken: bool) -> list[Observation]:
        self.evaluations += 1
        cutoff = watermark - self.retention_us
        published = tl.published
        current: dict[str, tuple[Observation, Indicator]] = {}
        next_wake: int | None = None
        evaluated: set[str] = set()
        settled, new = tl.settled, tl.new
        tl.new = None
        everything = woken or new is None
        earliest = min(f.time for f in new) if new else None
        new_kinds = {f.kind for f in new} if new else set()
        new_concepts: set[str] = set().union(*(f.concepts for f in new)) if new else set()
        for ind in self._relevant_indicators(tl):
            if settled is not None and ind.id in settled and (earliest is None or earliest > settled[ind.id]):
                continue  # final, and nothing new dated before its horizon ended: it cannot change
            if not everything and new_kinds.isdisjoint(ind.triggers[0]) and new_concepts.isdisjoint(ind.triggers[1]):
                continue  # the new facts cannot change it (a wake-up looks again when due)
            evaluated.add(ind.id)
            observations = ascertain(ind, tl, watermark, with_covariates=False)
            final = ind.index_rule == "first" and bool(observations)
            for obs in observations:
                current[obs.observation_id] = (obs, ind)
                if obs.status == OPEN:
                    final = False
                    deadline = next_deadline(obs, ind, watermark)
                    next_wake = deadline if next_wake is None else min(next_wake, deadline)
            if final:
                if tl.settled is None:
                    tl.settled = {}
                tl.settled[ind.id] = max(o.horizon_end for o in observations)
            elif tl.settled is not None:
                tl.settled.pop(ind.id, None)
        for deadline in transfer_deadlines(tl):
            if deadline > watermark:
                next_wake = deadline if next_wake is None else min(next_wake, deadline)
        out = []
        demographics = pseudonym in self._demographics_changed
        for obs_id, (obs, ind) in current.items():
            sig = signature(obs)
            before = published.get(obs_id)
            if before is not None and before.signature == sig:
                # Unchanged, unless a late fact (or the patient's age or sex) changed its case mix:
                # covariates look back a year from the index event and a day past it.
                if not demographics and (new is None or not any(
                        obs.index_time - LOOKBACK_US <= f.time <= obs.index_time + DAY_US for f in new)):
                    continue
                full = complete(obs, ind, tl)
                mix = case_mix(full.covariates)
                if mix == before.case_mix:
                    continue
            else:
                full = complete(obs, ind, tl)
                mix = case_mix(full.covariates)
            record = Published(sig, obs.site, obs.index_time, obs.horizon_end,
                               0 if before is None else before.revision + 1, mix)
            published[obs_id] = record
            self._new_published.setdefault(pseudonym, {})[obs_id] = record
            out.append(full._replace(revision=record.revision))
        for obs_id, before in list(published.items()):
            if obs_id in current or obs_id.split(":", 1)[0] not in evaluated:
                continue
            retraction = Observation(obs_id, obs_id.split(":")[0], before.site, before.index_time,
                                     before.horizon_end, EXCLUDED, exclusion=SUPERSEDED)
            sig = signature(retraction)
            if before.signature != sig:
                record = Published(sig, before.site, before.index_time, before.horizon_end, before.revision + 1,
                                   before.case_mix)
                published[obs_id] = record
                self._new_published.setdefault(pseudonym, {})[obs_id] = record
                out.append(retraction._replace(revision=record.revision))
        # Nothing indexed before the cutoff can change any more (an event that could change it is
        # beyond the revision horizon): forget it, and the facts only it needed.
        tl.drop_before(cutoff)
        tl.forget_derived()  # rebuilt when next needed: new facts invalidate it anyway
        for obs_id in [k for k, v in published.items() if v.index_time < cutoff]:
            del published[obs_id]
        if next_wake is not None:
            self._wake_at(next_wake, pseudonym)
        elif tl.facts and tl.facts[-1].time < cutoff + DAY_US:
            self._evict(pseudonym)
        elif tl.facts:  # look again when the newest fact leaves the retention (to the day: fewer buckets)
            self._wake_at(-(-(tl.facts[-1].time + self.retention_us) // DAY_US) * DAY_US, pseudonym)
        else:
            self._evict(pseudonym)
        return out

    def _wake_at(self, time: int, pseudonym: str) -> None:
        """Evaluate ``pseudonym`` again once the watermark has reached ``time`` (rounded up to its hour)."""
        bucket = -(-time // WAKE_BUCKET_US)
        waiting = self._wake.get(bucket)
        if waiting is None:
            self._wake[bucket] = [pseudonym]
            heapq.heappush(self._wake_order, bucket)
        else:
            waiting.append(pseudonym)

    def _relevant_indicators(self, tl: PatientTimeline) -> Iterable[Indicator]:
        concepts: set[str] = set().union(*[f.concepts for f in tl.facts])
        kinds = {f.kind for f in tl.facts}
        for ind in self._indicators:
            sel = ind.index
            if (sel.stay_concepts and concepts & sel.stay_concepts) or (
                    not sel.stay_concepts and sel.event in kinds and (not sel.concepts or concepts & sel.concepts)):
                yield ind

    def _cool(self, touched: set[str]) -> None:
        """Note ``touched`` as most recently used; freeze the least recently used past the limit."""
        order, patients = self._hot_order, self.patients
        for pseudonym in touched:
            order.pop(pseudonym, None)
            if isinstance(patients.get(pseudonym), PatientTimeline):
                order[pseudonym] = None
        while len(order) > self.hot_patients:
            pseudonym = next(iter(order))
            del order[pseudonym]
            entry = patients.get(pseudonym)
            if isinstance(entry, PatientTimeline):
                patients[pseudonym] = entry.freeze()

    def _hot(self, pseudonym: str) -> PatientTimeline | None:
        """The patient's timeline, thawed if it was frozen; None if unknown."""
        tl = self.patients.get(pseudonym)
        if isinstance(tl, bytes):
            tl = self.patients[pseudonym] = PatientTimeline.thaw(tl)
        return tl

    def _evict(self, pseudonym: str) -> None:
        self.patients.pop(pseudonym, None)
        self._evicted.add(pseudonym)

    def flush_all(self) -> list[Observation]:
        """Evaluate every patient now (after a restore, or at the end of a batch run)."""
        self.pending_restore = False
        self._everyone = True
        self._dirty |= set(self.patients)
        return self.collect()

    # ------------------------------------------------------------------ durability
    def __len__(self) -> int:
        return len(self.patients)

    def take_delta(self, chunk: int = 300) -> list[dict[str, Any]]:
        """Changelog records of this batch's changes, ``chunk`` patients each."""
        touched = sorted(set(self._new_facts) | set(self._new_published) | self._demographics_changed
                         | self._evicted)
        new_facts, new_published, evicted = self._new_facts, self._new_published, self._evicted
        self._new_facts, self._new_published = {}, {}
        self._demographics_changed, self._evicted = set(), set()
        records = []
        for i in range(0, len(touched), chunk):
            table = StringTable()
            patients = [self._change(p, p in evicted, new_facts.get(p, []), new_published.get(p, {}), table)
                        for p in touched[i:i + chunk]]
            records.append({"snapshot": False, "max_seen": self.max_seen, "floor": self._floor_reached(),
                            "patients": patients, "strings": table.strings})
        return records

    def snapshot(self, chunk: int = 300) -> list[dict[str, Any]]:
        self.take_delta()
        names = sorted(self.patients)
        records = []
        for i in range(0, max(len(names), 1), chunk):
            table = StringTable()
            patients = [self._snapshot_change(p, table) for p in names[i:i + chunk]]
            records.append({"snapshot": i == 0, "max_seen": self.max_seen, "floor": self._floor_reached(),
                            "patients": patients, "strings": table.strings})
        return records

    def _floor_reached(self) -> int:
        return max(self.floor, self.as_of if self.as_of is not None and self.passed_as_of else 0)

    def _snapshot_change(self, pseudonym: str, table: StringTable) -> tuple[Any, ...]:
        entry = self.patients[pseudonym]
        if isinstance(entry, PatientTimeline):
            return self._change(pseudonym, False, entry.facts, entry.published, table)
        return (pseudonym, False, *frozen_demographics(entry), [], [], *pack_frozen(entry, table))

    def _change(self, pseudonym: str, evicted: bool, facts: list[Fact], published: dict[str, Published],
                table: StringTable) -> tuple[Any, ...]:
        """A PatientChange record, as its fields in schema order (the encoder takes tuples)."""
        entry = self.patients.get(pseudonym)
        birth_year, male = (frozen_demographics(entry) if isinstance(entry, bytes)
                            else (entry.birth_year, entry.male) if entry is not None else (None, None))
        return (pseudonym, evicted, birth_year, male, [], [], pack_facts(facts, table),
                *pack_published(published, table))

    def apply(self, record: dict[str, Any]) -> None:
        """Replay one changelog record into the tracker (v1 records too: facts and published as arrays)."""
        if record["snapshot"]:
            self.patients.clear()
        self.max_seen = max(self.max_seen, record["max_seen"])
        self.close_at(record.get("floor") or 0)  # a restarted worker's watermark does not go back
        strings = StringReader(record.get("strings", []))
        for change in record["patients"]:
            p = change["pseudonym"]
            if change["evicted"]:
                self.patients.pop(p, None)
                continue
            tl = self._hot(p)
            if tl is None:
                tl = self.patients[p] = PatientTimeline()
            if change["birth_year"] is not None:
                tl.birth_year = change["birth_year"]
            if change["male"] is not None:
                tl.male = change["male"]
            for fact in unpack_facts(change.get("packed_facts") or b"", strings):
                tl.add(fact)
            for f in change["facts"]:
                tl.add(Fact(f["time"], f["kind"], f["site"], f["ref"], frozenset(f["concepts"]), f["value"],
                            f["attr"], f["key"]))
            published = tl.published
            published.update(unpack_published(change.get("packed_published") or b"",
                                              change.get("packed_revisions") or b"", strings))
            for rec in change["published"]:
                published[rec["id"]] = Published(rec["signature"], rec["site"], rec["index_time"],
                                                 rec["horizon_end"])

    def restored(self) -> None:
        """After replaying the changelog: nothing is pending, every patient is re-examined."""
        self._new_facts, self._new_published = {}, {}
        self._demographics_changed, self._evicted = set(), set()
        self._hot_order.clear()
        for p, tl in self.patients.items():
            if isinstance(tl, PatientTimeline):
                tl.new = None  # replayed facts are not news: the re-examination looks at everything
                self.patients[p] = tl.freeze()
        self.pending_restore = bool(self.patients)

    def stats(self) -> tuple[int, int, int]:
        """(patients, facts, published observations) held."""
        sizes = [frozen_sizes(t) if isinstance(t, bytes) else (len(t.facts), len(t.published))
                 for t in self.patients.values()]
        return len(self.patients), sum(f for f, _p in sizes), sum(p for _f, p in sizes)
