# mypyc: compiled (the per-event path: setup.py)
"""Rolling outcome indicators of one input partition: pure state, no Kafka.

What the aggregate stage (``agents/aggregate.py``) keeps per partition of
``outcomes.observations``. Observations are partitioned by indicator, so every site
of an indicator meets in one partition and every scope (site, region, country,
network) is computed here. Product decisions:

* **Upsert.** The current record of each ``observation_id`` replaces earlier ones:
  OPEN, then FINAL or EXCLUDED. EXCLUDED with exclusion ``superseded`` retracts the
  observation (it leaves every count). An identical record changes nothing, so a
  redelivered batch is absorbed.
* **Clock.** Each indicator has its own event-time clock: the largest ``closed_time``
  (or ``index_time`` while open) of its current observations, and never less than it
  was when days were last evicted (a retraction cannot bring evicted days back).
  Per indicator, not per partition, so results do not depend on which indicators
  share a partition (or on the partition count), and the batch evaluator computes
  exactly what the stream does. Of its *current* observations, not of every record
  seen: an observation published early and then revised or retracted (late data)
  leaves no trace, so the clock, like everything else, does not depend on arrival
  order. A batch's records move the clock only after all of them are applied
  (:meth:`RollingState.settle`), so their order within the batch changes nothing.
* **Follow-up.** An indicator's follow-up is ``horizon_days`` plus, for shapes with
  a response window (``value_at``), that window's ``window_days``: the longest an
  observation can stay OPEN.
* **Windows.** 30, 90 and 365 days and cumulative (``window_days`` null). A window
  holds index times in (end - W days, end], end = as_of - follow-up, so a rolling
  window holds index events whose follow-up has ended; cumulative holds every index
  time <= end since the partition began. In a window: denominator = FINAL,
  numerator = FINAL with outcome 1 (proportions), excluded = EXCLUDED (not
  superseded), also by reason (``excluded_by_reason``). Beside the headline, the index
  events still in follow-up (index time in (end, as_of]): ``pending`` counts the OPEN
  ones (with any OPEN straggler inside the window), ``provisional_numerator`` the
  outcomes already seen among them (proportions). Proportion with a Wilson 95 %
  interval; continuous: mean, median, sample SD (ddof 1, null when n < 2) of ``value``. ``expected`` is the
  sum of ``expected`` when every FINAL observation in the window has one (null when
  the denominator is 0 or one is missing), and ``observed_expected`` the O/E ratio:
  events (proportions) or summed values (continuous) over that sum, null when the
  expected sum is null or not positive.
* **Median in every window.** The cumulative median is exact: evicted observations'
  values are kept, sorted, per (indicator, site) (8 bytes each, continuous indicators only).
* **Retention.** Observations whose index day lies wholly before
  as_of - 365 d - follow-up - the revision horizon can neither enter a rolling window
  again nor be revised (the ascertain stage refuses events that old): whole index
  days are evicted, their counts, exact sums and values move into per-(indicator,
  site) cumulative totals. A later record for an index time that old is not applied
  (it could double count an evicted one): ``BEYOND_RETENTION``, which the stage
  dead-letters (``beyond_revision_horizon``).
* **Exact sums.** Values and expected risks are summed as exact integers
  (:mod:`streams.indicators.statistics`), so incremental totals equal totals recomputed from
  scratch, and a restored partition publishes bit-identical snapshots.
* **Scopes.** A site's region and country come from its latest observation. A
  region belongs to the country of its first site (by id), so the scope tree is
  always a tree and parents are exact sums of their children.

Durability: :meth:`RollingState.take_delta`, :meth:`RollingState.snapshot` and
:meth:`RollingState.apply` exchange ``rwe.internal.AggregateDelta`` records. A
replay of the deltas after a snapshot, then :meth:`RollingState.evict`, rebuilds
the same state, including the cumulative totals of evicted observations.
"""

from __future__ import annotations

import heapq
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from operator import add, sub
from typing import Any

from streams.catalogue.definitions import Catalogue, Indicator
from streams.indicators import disclosure
from streams.indicators.statistics import exact, mean_of_sum, median, proportion, sd_of_sums, to_float, wilson_interval
from streams.outcomes.record import EXCLUDED, EXCLUSION_REASONS, FINAL, OPEN, OTHER_REASON, SUPERSEDED
from streams.vocabulary.scopes import COUNTRY, NETWORK, NETWORK_ID, REGION, SITE
from streams.vocabulary.time import DAY_US

REVISION_HORIZON_US = 365 * DAY_US  # RWE_REVISION_HORIZON's default

WINDOWS: tuple[int | None, ...] = (30, 90, 365, None)
RETENTION_DAYS = 365
RETRACTED = "RETRACTED"  # changelog only: the observation was superseded
CHUNK = 5_000  # observations per changelog record: ~0.5 MB, under the broker's 1 MB default

# upsert results
CHANGED = "changed"
UNCHANGED = "unchanged"
BEYOND_RETENTION = "beyond_retention"

# A tally: [denominator, numerator, pending, excluded, n with expected,
#           sum(value), sum(value^2), sum(expected), excluded for each reason]
# (sums exact, see statistics)
DEN, NUM, PEND, EXCL, NEXP, SV, SV2, SEXP = range(8)
REASONS: tuple[str, ...] = (*EXCLUSION_REASONS, OTHER_REASON)
REASON_SLOT = {reason: 8 + i for i, reason in enumerate(REASONS)}
WIDTH = 8 + len(REASONS)
EMPTY = (0,) * WIDTH
VALUES_PER_ENTRY = 60_000  # evicted values per changelog entry (8 bytes each: under the 1 MB record limit)
Tally = list[int]
EMPTY_LIST: Tally = list(EMPTY)  # a placeholder prefix entry, never mutated


def follow_up_us(indicator: Indicator) -> int:
    """Longest follow-up of an observation (us): horizon plus a response window."""
    return int((indicator.horizon_days + float(indicator.params.get("window_days", 0))) * DAY_US)


def window_key(window_days: int | None) -> str:
    return "all" if window_days is None else str(window_days)


def snapshot_key(indicator: str, scope: str, scope_id: str, window_days: int | None) -> str:
    """Key of an IndicatorSnapshot on the compacted topics."""
    return f"{indicator}|{scope}|{scope_id}|{window_key(window_days)}"


class Obs:
    """The current state of one observation, with its contribution to tallies."""

    __slots__ = ("contrib", "country", "exclusion", "expected", "index_time", "indicator", "outcome", "region",
                 "site", "status", "time", "value")

    def __init__(self, indicator: str, site: str, region: str, country: str, index_time: int, status: str,
                 outcome: int | None, value: float | None, expected: float | None, continuous: bool,
                 exclusion: str | None = None, time: int | None = None) -> None:
        if status != FINAL:  # only FINAL observations carry results into tallies
            outcome = value = expected = None
        elif continuous:
            outcome = None
        else:
            value = None
        if status != EXCLUDED:
            exclusion = None
        self.indicator, self.site, self.region, self.country = indicator, site, region, country
        self.index_time, self.status, self.outcome, self.value, self.expected = (
            index_time, status, outcome, value, expected)
        self.exclusion = exclusion
        self.time = index_time if time is None else time  # what it sets the clock to: closed_time, else index_time
        contrib = [0] * WIDTH
        if status == FINAL:
            ev = exact(value) if value is not None else 0
            contrib[:8] = (1, 1 if outcome == 1 else 0, 0, 0, 0 if expected is None else 1, ev, ev * ev,
                           0 if expected is None else exact(expected))
        elif status == OPEN:
            contrib[PEND] = 1
        else:
            contrib[EXCL] = 1
            contrib[REASON_SLOT.get(exclusion or OTHER_REASON, REASON_SLOT[OTHER_REASON])] = 1
        self.contrib: tuple[int, ...] = tuple(contrib)

    def fields(self) -> tuple[Any, ...]:
        return (self.indicator, self.site, self.region, self.country, self.index_time, self.status, self.outcome,
                self.value, self.expected, self.exclusion, self.time)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Obs) and self.fields() == other.fields()

    __hash__ = None  # type: ignore[assignment]

    def entry(self, observation_id: str, status: str | None = None) -> dict[str, Any]:
        """The changelog entry of this state (``status`` RETRACTED for a retraction)."""
        return {"observation_id": observation_id, "indicator": self.indicator, "site_id": self.site,
                "region": self.region, "country": self.country, "index_time": self.index_time,
                "status": status or self.status, "outcome": self.outcome, "value": self.value,
                "expected": self.expected, "exclusion": self.exclusion, "time": self.time}


class Day:
    """Observations of one indicator at one site whose index time falls on one UTC day."""

    __slots__ = ("members", "tally")

    def __init__(self) -> None:
        self.members: dict[str, Obs] = {}
        self.tally: Tally = list(EMPTY)


class Series:
    """One indicator at one site: day buckets, running totals, evicted totals, and prefix
    sums over the day buckets, so a window's tally costs two lookups instead of a pass over
    up to a year of days (the pass grew with the windows and slowed every publication)."""

    __slots__ = ("base", "base_values", "day_keys", "days", "offset", "prefix", "total", "valid")

    def __init__(self) -> None:
        self.days: dict[int, Day] = {}
        self.day_keys: list[int] = []   # sorted
        self.total: Tally = list(EMPTY)  # everything ever counted: retained + base
        self.base: Tally = list(EMPTY)   # evicted observations
        self.base_values: list[float] = []  # their FINAL values, sorted (the cumulative median)
        # prefix[i]: offset + the tallies of day_keys[:i + 1]; entries from ``valid`` on are
        # stale (a change to a day invalidates it and every later one: changes come mostly
        # to recent days, so rebuilding is short). offset: what evicted days had added.
        self.prefix: list[Tally] = []
        self.valid = 0
        self.offset: Tally = list(EMPTY)

    def add_to_day(self, d: int, obs_id: str, obs: Obs) -> None:
        day = self.days.get(d)
        i = bisect_left(self.day_keys, d)
        if day is None:
            day = self.days[d] = Day()
            self.day_keys.insert(i, d)
            self.prefix.insert(i, EMPTY_LIST)
        day.members[obs_id] = obs
        day.tally = list(map(add, day.tally, obs.contrib))
        self.total = list(map(add, self.total, obs.contrib))
        self.valid = min(self.valid, i)

    def remove_from_day(self, d: int, obs_id: str, obs: Obs) -> None:
        day = self.days[d]
        i = bisect_left(self.day_keys, d)
        del day.members[obs_id]
        if day.members:
            day.tally = list(map(sub, day.tally, obs.contrib))
        else:
            del self.days[d]
            del self.day_keys[i]
            del self.prefix[i]
        self.total = list(map(sub, self.total, obs.contrib))
        self.valid = min(self.valid, i)

    def evict_before(self, first: int) -> list[Day]:
        """Drop the days before ``first`` into the evicted totals; return them."""
        n = bisect_left(self.day_keys, first)
        if not n:
            return []
        self._before(n)  # the prefix up to them is valid: it becomes the offset
        self.offset = self.prefix[n - 1]
        gone = [self.days.pop(d) for d in self.day_keys[:n]]
        values = [o.value for day in gone for o in day.members.values() if o.value is not None]
        if values:
            self.base_values = sorted(self.base_values + values)
        for day in gone:
            self.base = list(map(add, self.base, day.tally))
        del self.day_keys[:n]
        del self.prefix[:n]
        self.valid -= n
        return gone

    def _before(self, k: int) -> Tally:
        """offset + the tallies of the first ``k`` days."""
        if k == 0:
            return self.offset
        if self.valid < k:
            prefix, days, keys = self.prefix, self.days, self.day_keys
            running = prefix[self.valid - 1] if self.valid else self.offset
            for i in range(self.valid, k):
                running = prefix[i] = list(map(add, running, days[keys[i]].tally))
            self.valid = k
        return self.prefix[k - 1]

    def _between(self, a: int, b: int) -> Tally:
        """Tallies of the days at positions a .. b - 1."""
        if b <= a:
            return list(EMPTY)
        return list(map(sub, self._before(b), self._before(a)))

    def window(self, lo: int | None, hi: int, want_values: bool) -> tuple[Tally, list[float] | None]:
        """Tally of index times in (lo, hi] (lo None: cumulative), and FINAL values if wanted."""
        keys, days = self.day_keys, self.days
        d_hi = hi // DAY_US
        j = bisect_right(keys, d_hi)
        if lo is None:  # cumulative: the running total minus what lies after hi
            tally = list(map(sub, self.total, self._between(j, len(keys))))
            cumulative: list[float] | None = None
            if want_values:
                cumulative = self.base_values + [o.value for d in keys[:j] for o in days[d].members.values()
                                                 if o.value is not None and o.index_time <= hi]
            if j and keys[j - 1] == d_hi:
                for o in days[d_hi].members.values():
                    if o.index_time > hi:
                        tally = list(map(sub, tally, o.contrib))
            return tally, cumulative
        d_lo = lo // DAY_US
        i = bisect_left(keys, d_lo)
        # whole days strictly inside, then the two boundary days member by member
        a = i + 1 if i < j and keys[i] == d_lo else i
        b = j - 1 if j > a and keys[j - 1] == d_hi else j
        tally = self._between(a, b)
        values: list[float] | None = None
        if want_values:
            values = [o.value for d in keys[a:b] for o in days[d].members.values() if o.value is not None]
        for edge in {keys[p] for p in (i, j - 1) if i <= p < j and not a <= p < b}:
            for o in days[edge].members.values():
                if lo < o.index_time <= hi:
                    tally = list(map(add, tally, o.contrib))
                    if values is not None and o.value is not None:
                        values.append(o.value)
        return tally, values


def _pack_values(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}d", *values)


def _unpack_values(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 8}d", data))


def _int_bytes(n: int) -> bytes:
    return n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True)


def _bytes_int(b: bytes) -> int:
    return int.from_bytes(b, "big", signed=True)


class RollingState:
    """Observations and rolling indicator tallies of one input partition."""

    def __init__(self, catalogue: Catalogue, revision_horizon_us: int = REVISION_HORIZON_US,
                 as_of: int | None = None) -> None:
        self.catalogue = catalogue
        self.revision_horizon_us = revision_horizon_us
        self.clocks: dict[str, int] = {}  # indicator -> its event-time clock (UTC us), as of the last settle()
        # The clock's parts: per indicator a floor (the clock at its last eviction, advance()) and the times
        # of its current observations (a count per time, and a max-heap of them, lazily cleaned).
        self._floors: dict[str, int] = {}
        self._times: dict[str, dict[int, int]] = {}
        self._heaps: dict[str, list[int]] = {}
        self._unsettled: set[str] = set()  # indicators changed since the last settle()
        self.fixed_as_of = as_of  # snapshots as of this time (RWE_AS_OF), not the clocks
        self._obs: dict[str, Obs] = {}
        self._series: dict[tuple[str, str], Series] = {}
        self._sites_of: dict[str, set[str]] = {}
        self.site_geo: dict[str, tuple[str, str]] = {}
        self._pending: dict[str, dict[str, Any]] = {}
        self._pending_sites: dict[str, tuple[str, str]] = {}  # geography changes since the last delta
        self._persisted_floors: dict[str, int] = {}
        self._follow_up = {i.id: follow_up_us(i) for i in catalogue.indicators.values()}
        self.dirty: set[str] = set()  # indicators whose snapshots may have changed
        self._persisted_dirty: set[str] = set()  # ... as the last changelog record says

    def __len__(self) -> int:
        return len(self._obs)

    @property
    def indicators(self) -> list[str]:
        """Indicators with observations (or evicted totals) in this partition."""
        return sorted(self._sites_of)

    def observation(self, observation_id: str) -> Obs | None:
        return self._obs.get(observation_id)

    # --- updates -------------------------------------------------------------
    @property
    def as_of(self) -> int:
        """The most advanced indicator clock (for metrics)."""
        self.settle()
        return max(self.clocks.values(), default=0)

    def first_kept_day(self, indicator: str) -> int:
        """Index days before this are evicted (and records for them not applied)."""
        return (self.clocks.get(indicator, 0) - RETENTION_DAYS * DAY_US - self._follow_up[indicator]
                - self.revision_horizon_us) // DAY_US

    def settle(self) -> None:
        """Bring the clocks up to the records applied since the last call (the end of a batch)."""
        changed, self._unsettled = self._unsettled, set()
        for ind in changed:
            heap, times = self._heaps.get(ind, []), self._times.get(ind, {})
            while heap and not times.get(-heap[0]):
                heapq.heappop(heap)
            clock = max(self._floors.get(ind, 0), -heap[0] if heap else 0)
            if clock != self.clocks.get(ind, 0):
                if clock:
                    self.clocks[ind] = clock
                else:
                    self.clocks.pop(ind, None)
                if ind in self._sites_of:
                    self.dirty.add(ind)

    def advance(self, event_time: int, indicator: str | None = None) -> None:
        """Raise an indicator's clock (every catalogue indicator's when None) to at least ``event_time``."""
        for ind in (indicator,) if indicator is not None else self.catalogue.indicators:
            if event_time > self._floors.get(ind, 0):
                self._floors[ind] = event_time
                self._unsettled.add(ind)
        self.settle()

    def _time_added(self, indicator: str, time: int) -> None:
        times = self._times.setdefault(indicator, {})
        n = times.get(time, 0)
        times[time] = n + 1
        if not n:
            heapq.heappush(self._heaps.setdefault(indicator, []), -time)
        self._unsettled.add(indicator)

    def _time_removed(self, indicator: str, time: int) -> None:
        times = self._times[indicator]
        n = times[time] - 1
        if n:
            times[time] = n
        else:
            del times[time]
        self._unsettled.add(indicator)

    def upsert(self, record: Mapping[str, Any]) -> str:
        """Apply one OutcomeObservation (validated with :func:`problem`): CHANGED,
        UNCHANGED or BEYOND_RETENTION."""
        closed = record.get("closed_time")
        indicator = record["indicator"]
        if record["index_time"] // DAY_US < self.first_kept_day(indicator):
            return BEYOND_RETENTION
        obs_id = record["observation_id"]
        if record["status"] == EXCLUDED and record.get("exclusion") == SUPERSEDED:
            new = None
        else:
            ind = self.catalogue.indicators[indicator]
            new = Obs(indicator, record["site_id"], record["region"], record["country"], record["index_time"],
                      record["status"], record.get("outcome"), record.get("value"), record.get("expected"),
                      ind.kind == "continuous", record.get("exclusion"), closed)
        old = self._obs.get(obs_id)
        if not self._put(obs_id, old, new):
            return UNCHANGED
        self._pending.pop(obs_id, None)  # re-insert: a delta keeps the order of last writes
        if new is not None:
            self._pending[obs_id] = new.entry(obs_id)
        else:
            assert old is not None  # _put changed something
            self._pending[obs_id] = old.entry(obs_id, RETRACTED)
        return CHANGED

    def _put(self, obs_id: str, old: Obs | None, new: Obs | None) -> bool:
        if old == new or (old is None and new is None):
            return False
        if old is not None:
            self._remove(obs_id, old)
            self.dirty.add(old.indicator)
        if new is not None:
            self._add(obs_id, new)
            self.dirty.add(new.indicator)
        return True

    def _series_for(self, indicator: str, site: str) -> Series:
        series = self._series.get((indicator, site))
        if series is None:
            series = self._series[(indicator, site)] = Series()
            self._sites_of.setdefault(indicator, set()).add(site)
        return series

    def _set_geo(self, site: str, region: str, country: str) -> None:
        if self.site_geo.get(site) != (region, country):
            self.site_geo[site] = (region, country)
            self._pending_sites.pop(site, None)
            self._pending_sites[site] = (region, country)
            self.dirty.update(self._sites_of)

    def _add(self, obs_id: str, obs: Obs) -> None:
        self._set_geo(obs.site, obs.region, obs.country)
        self._series_for(obs.indicator, obs.site).add_to_day(obs.index_time // DAY_US, obs_id, obs)
        self._obs[obs_id] = obs
        self._time_added(obs.indicator, obs.time)

    def _remove(self, obs_id: str, obs: Obs) -> None:
        self._series[(obs.indicator, obs.site)].remove_from_day(obs.index_time // DAY_US, obs_id, obs)
        del self._obs[obs_id]
        self._time_removed(obs.indicator, obs.time)

    def evict(self) -> int:
        """Move whole index days beyond retention into the cumulative totals; return how
        many observations went. Snapshots do not change."""
        self.settle()
        gone = 0
        for (indicator, _site), series in self._series.items():
            days = series.evict_before(self.first_kept_day(indicator))
            if days and self.clocks[indicator] > self._floors.get(indicator, 0):
                # The clock never goes back past an eviction: were the newest observation
                # superseded, the evicted days would fall inside the windows again.
                self._floors[indicator] = self.clocks[indicator]
            for day in days:
                for obs_id, obs in day.members.items():
                    del self._obs[obs_id]
                    self._time_removed(indicator, obs.time)
                gone += len(day.members)
        self.settle()
        return gone

    # --- changelog -----------------------------------------------------------
    def take_delta(self) -> list[dict[str, Any]]:
        """Changelog records of what changed since the last call (empty: nothing)."""
        self.settle()
        if (not self._pending and not self._pending_sites and self._floors == self._persisted_floors
                and self.dirty == self._persisted_dirty):
            return []
        entries = list(self._pending.values())
        sites = [{"site_id": s, "region": r, "country": c} for s, (r, c) in self._pending_sites.items()]
        self._pending, self._pending_sites = {}, {}
        self._persisted_floors = dict(self._floors)
        self._persisted_dirty = set(self.dirty)
        starts = range(0, max(len(entries), 1), CHUNK)
        return [{"snapshot": False, "as_of": self.as_of, "clocks": dict(self._floors),
                 "observations": entries[i:i + CHUNK],
                 "sites": sites if i == starts[-1] else [], "evicted": [], "unpublished": sorted(self.dirty)}
                for i in starts]

    def snapshot(self) -> list[dict[str, Any]]:
        """The whole state as changelog records: one snapshot, then deltas of ``CHUNK``, then the
        evicted values beyond the first ``VALUES_PER_ENTRY`` of a series, one entry per record."""
        self.settle()
        self._pending, self._pending_sites = {}, {}
        self._persisted_floors = dict(self._floors)
        self._persisted_dirty = set(self.dirty)
        entries = [o.entry(i) for i, o in self._obs.items()]
        sites = [{"site_id": s, "region": r, "country": c} for s, (r, c) in self.site_geo.items()]
        evicted = [{"indicator": ind, "site_id": site, "counts": series.base[:NEXP + 1],
                    "sums": [_int_bytes(v) for v in series.base[SV:SEXP + 1]],
                    "reasons": {r: series.base[REASON_SLOT[r]] for r in REASONS if series.base[REASON_SLOT[r]]},
                    "values": _pack_values(series.base_values[:VALUES_PER_ENTRY])}
                   for (ind, site), series in self._series.items()]
        more_values = [{"indicator": ind, "site_id": site, "counts": [0] * (NEXP + 1), "sums": [], "reasons": {},
                        "values": _pack_values(series.base_values[i:i + VALUES_PER_ENTRY])}
                       for (ind, site), series in self._series.items()
                       for i in range(VALUES_PER_ENTRY, len(series.base_values), VALUES_PER_ENTRY)]
        starts = range(0, max(len(entries), 1), CHUNK)
        common = {"as_of": self.as_of, "clocks": dict(self._floors), "unpublished": sorted(self.dirty)}
        return [{"snapshot": i == 0, **common, "observations": entries[i:i + CHUNK],
                 "sites": sites if i == starts[-1] else [], "evicted": evicted if i == 0 else []}
                for i in starts] + [{"snapshot": False, **common, "observations": [], "sites": [], "evicted": [e]}
                                    for e in more_values]

    def restored(self) -> None:
        self.evict()

    def apply(self, record: Mapping[str, Any]) -> None:
        """Replay one changelog record; call :meth:`evict` after the last one.

        A record's ``sites`` (the geography as of its checkpoint) apply after its
        observations, and ride on the last record of a chunked write."""
        if record["snapshot"]:
            self._obs.clear()
            self._series.clear()
            self._sites_of.clear()
            self.site_geo.clear()
            self._unsettled.update(self._times)
            self._floors.clear()
            self._times.clear()
            self._heaps.clear()
        for e in record["evicted"]:
            if e["indicator"] not in self.catalogue.indicators:
                continue
            series = self._series_for(e["indicator"], e["site_id"])
            base = [*e["counts"], *(_bytes_int(b) for b in e["sums"])]
            base += [0] * (SEXP + 1 - len(base))
            reasons = e.get("reasons") or {}
            base += [reasons.get(r, 0) for r in REASONS]
            if base[EXCL] > sum(base[SEXP + 1:]):  # written before reasons were kept: reason unknown
                base[REASON_SLOT[OTHER_REASON]] += base[EXCL] - sum(base[SEXP + 1:])
            series.base = list(map(add, series.base, base))
            series.total = list(map(add, series.total, base))
            values = _unpack_values(e.get("values") or b"")
            if values:
                series.base_values = sorted(series.base_values + values)
        for e in record["observations"]:
            if e["indicator"] not in self.catalogue.indicators:
                continue  # an indicator dropped from the catalogue
            obs_id = e["observation_id"]
            if e["status"] == RETRACTED:  # the observation was live once: its series exists
                self._series_for(e["indicator"], e["site_id"])
            new = None if e["status"] == RETRACTED else Obs(
                e["indicator"], e["site_id"], e["region"], e["country"], e["index_time"], e["status"], e["outcome"],
                e["value"], e["expected"], self.catalogue.indicators[e["indicator"]].kind == "continuous",
                e.get("exclusion"), e.get("time"))
            self._put(obs_id, self._obs.get(obs_id), new)
        for s in record["sites"]:
            self.site_geo[s["site_id"]] = (s["region"], s["country"])
        for ind, floor in record["clocks"].items():
            if ind in self.catalogue.indicators and floor > self._floors.get(ind, 0):
                self._floors[ind] = floor
                self._unsettled.add(ind)
        self.settle()
        self._persisted_floors = dict(self._floors)
        self._pending, self._pending_sites = {}, {}
        unpublished = record.get("unpublished")
        if unpublished is None:  # written before the field existed: publish everything again
            self.dirty.update(self._sites_of)
        else:  # the last record's set is the latest: those were changed and not yet published
            self.dirty = {i for i in unpublished if i in self.catalogue.indicators}
        self._persisted_dirty = set(self.dirty)

    # --- snapshots -----------------------------------------------------------
    def compute(self, indicator_id: str) -> list[tuple[disclosure.Cell, dict[str, Any]]]:
        """True (undisclosed) snapshots of one indicator: every scope x window, with
        the cell each belongs to in the disclosure tree."""
        self.settle()
        ind = self.catalogue.indicators[indicator_id]
        continuous = ind.kind == "continuous"
        sites = sorted(self._sites_of.get(indicator_id, ()))
        if not sites:
            return []
        geo = {s: self.site_geo.get(s, ("unknown", "unknown")) for s in sites}
        region_country: dict[str, str] = {}
        for s in sites:  # sorted: a region's country is that of its first site
            region_country.setdefault(geo[s][0], geo[s][1])
        as_of = self.clocks.get(indicator_id, 0) if self.fixed_as_of is None else self.fixed_as_of
        end = as_of - self._follow_up[indicator_id]
        # the index events still in follow-up: the same for every window
        following = {s: self._series[(indicator_id, s)].window(end, as_of, False)[0] for s in sites}
        base = {
            "indicator": indicator_id, "area": ind.area, "catalogue_version": self.catalogue.version,
            "kind": "CONTINUOUS" if continuous else "PROPORTION", "unit": ind.unit, "as_of": as_of,
        }
        out: list[tuple[disclosure.Cell, dict[str, Any]]] = []
        for window in WINDOWS:
            lo = None if window is None else end - window * DAY_US
            want_values = continuous
            tallies: dict[tuple[str, str], Tally] = {}
            in_follow_up: dict[tuple[str, str], Tally] = {}
            values: dict[tuple[str, str], list[float]] = {}
            parents: dict[tuple[str, str], tuple[str, str] | None] = {}
            order: list[tuple[str, str]] = []
            for s in sites:
                tally, vals = self._series[(indicator_id, s)].window(lo, end, want_values)
                region = geo[s][0]
                country = region_country[region]
                chain = [(SITE, s), (REGION, region), (COUNTRY, country), (NETWORK, NETWORK_ID)]
                for child, parent in zip(chain, [*chain[1:], None], strict=True):
                    if child not in tallies:
                        tallies[child] = list(EMPTY)
                        in_follow_up[child] = list(EMPTY)
                        values[child] = []
                        parents[child] = parent
                        order.append(child)
                    tallies[child] = list(map(add, tallies[child], tally))
                    in_follow_up[child] = list(map(add, in_follow_up[child], following[s]))
                    if vals:
                        values[child].extend(vals)
            for key in order:
                t, f = tallies[key], in_follow_up[key]
                record = dict(base, scope=key[0], scope_id=key[1], window_days=window,
                              **_estimates(t, f, continuous, values[key] if want_values else None))
                cell = disclosure.Cell(key, parents[key], ind.kind, t[DEN], None if continuous else t[NUM],
                                       record["pending"], t[EXCL], record["provisional_numerator"] or 0,
                                       tuple(sorted(record["excluded_by_reason"].items())))
                out.append((cell, record))
        return out

    def snapshots(self, indicator_id: str, min_cell_count: int, rounding: int = 0) -> dict[str, dict[str, Any]]:
        """Publishable snapshots of one indicator, by topic key, with disclosure control."""
        computed = self.compute(indicator_id)
        out: dict[str, dict[str, Any]] = {}
        for window in WINDOWS:
            group = [(c, r) for c, r in computed if r["window_days"] == window]
            plan = disclosure.plan([c for c, _r in group], min_cell_count)
            for cell, record in group:
                key = snapshot_key(indicator_id, cell.key[0], cell.key[1], window)
                out[key] = disclosure.disclose(record, plan, cell.key, rounding)
        return out


def _estimates(t: Tally, following: Tally, continuous: bool, values: Iterable[float] | None) -> dict[str, Any]:
    """A snapshot's values from the tally of its window and that of the index events still in
    follow-up."""
    den = t[DEN]
    out: dict[str, Any] = {
        "denominator": den, "numerator": None, "pending": t[PEND] + following[PEND],
        "provisional_numerator": None if continuous else following[NUM], "excluded": t[EXCL],
        "excluded_by_reason": {r: t[REASON_SLOT[r]] for r in REASONS if t[REASON_SLOT[r]]},
        "proportion": None, "ci_low": None, "ci_high": None, "mean": None, "median": None, "sd": None,
        "expected": None, "observed_expected": None,
    }
    if den > 0 and t[NEXP] == den:
        out["expected"] = to_float(t[SEXP])
        # observed / expected: events over expected events, or summed values over summed expected values
        observed = t[SV] if continuous else exact(float(t[NUM]))
        out["observed_expected"] = observed / t[SEXP] if t[SEXP] > 0 else None
    if continuous:
        out["mean"] = mean_of_sum(t[SV], den)
        out["sd"] = sd_of_sums(t[SV], t[SV2], den)
        out["median"] = median(values) if values is not None else None
    else:
        out["numerator"] = t[NUM]
        out["proportion"] = proportion(t[NUM], den)
        ci = wilson_interval(t[NUM], den)
        if ci is not None:
            out["ci_low"], out["ci_high"] = ci
    return out
