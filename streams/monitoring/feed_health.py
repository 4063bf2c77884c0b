# mypyc: compiled (the per-event path: setup.py)
"""Feed health per site: volume (EARS C1/C2/C3), silence and dead-letter rate. Pure logic.

The normaliser counts, per batch, each site's accepted events per event-time bucket
(``RWE_FEED_BUCKET``, 1 h), its dead letters and the wall-clock time of its newest
accepted event (:class:`SiteActivityCounter`: one dict update per event) and sends
one ``rwe.internal.SiteActivity`` record per site and batch, keyed by site. The
monitor stage folds them into :class:`FeedHealth`:

* **Volume.** A bucket closes when the site's newest event is two buckets later
  (one bucket of grace for stragglers; later events for a closed bucket are not
  counted in it). Empty buckets count 0. Each closed bucket gets CDC EARS C1, C2 and
  C3 (:func:`streams.monitoring.charts.ears`, R's ``surveillance::earsC``) over the closed
  buckets before it, once 7, 9 and 11 are there, with the baseline SD floored at one
  event (R divides by an SD of 0 after a run of equal counts, such as empty hours). C2 alarms raise an alert (C1 and C3
  are readings); it resolves at the next closed bucket without a C2 alarm.
* **Dead letters.** A batch's dead letters count in the site's newest bucket. Rate =
  dead letters / (accepted + dead letters) over the last 24 closed buckets; an alert
  opens above ``RWE_FEED_DLQ_RATE`` (with at least 20 records) and resolves at or
  below it.
* **Silence.** Wall clock: no accepted event from a site for ``RWE_FEED_SILENCE``
  opens an alert (its id carries the time of the last event, so re-detecting the
  same silence after a restart rewrites the same alert); the next event resolves it.
  Only sites that have sent something are watched.
"""

from __future__ import annotations

from typing import Any

from streams.clinical.clock import now_us
from streams.monitoring.alerting import AlertBook, Evidence
from streams.monitoring.charts import ears
from streams.monitoring.readings import MonitorReading

HISTORY = 24
MIN_SIGMA = 1.0  # events: a run of equal counts (SD 0) would make any change an alarm, or divide by 0
MIN_DLQ_RECORDS = 20
EARS_NEED = {"ears_c1": 8, "ears_c2": 10, "ears_c3": 12}  # closed buckets incl. the one judged


class SiteActivityCounter:
    """The normaliser's per-batch tally (one dict update per accepted event)."""

    def __init__(self, bucket_seconds: float) -> None:
        self.bucket_us = int(bucket_seconds * 1_000_000)
        self._events: dict[str, dict[int, int]] = {}
        self._dead: dict[str, int] = {}
        self._last: dict[str, int] = {}

    def accepted(self, site: str, event_time: int, now: int) -> None:
        buckets = self._events.get(site)
        if buckets is None:
            buckets = self._events[site] = {}
        b = event_time - event_time % self.bucket_us
        buckets[b] = buckets.get(b, 0) + 1
        self._last[site] = now

    def dead_letter(self, site: str) -> None:
        self._dead[site] = self._dead.get(site, 0) + 1

    def drain(self) -> list[dict[str, Any]]:
        """One SiteActivity record per site seen since the last call."""
        sites = self._events.keys() | self._dead.keys()
        out = [{"site_id": s, "bucket_seconds": self.bucket_us // 1_000_000,
                "events": {str(b): n for b, n in self._events.get(s, {}).items()},
                "dead_letters": self._dead.get(s, 0), "last_seen": self._last.get(s, 0)} for s in sorted(sites)]
        self._events, self._dead, self._last = {}, {}, {}
        return out


class SiteFeed:
    """One site's open buckets, closed history and latest checks."""

    def __init__(self) -> None:
        self.open: dict[int, list[int]] = {}   # bucket start (us) -> [events, dead letters]
        self.events: list[int] = []            # closed buckets, oldest first (at most HISTORY)
        self.dead: list[int] = []
        self.newest = -1                        # newest bucket start seen
        self.closed_until = -1                  # start of the next bucket to close
        self.last_seen = 0                      # wall clock, UTC us
        self.bucket_us = 0
        self.checks: dict[str, tuple[float, float, bool]] = {}  # method -> (statistic, limit, alarm)


class FeedHealth:
    """Feed-health checks of the sites whose activity records land in one partition."""

    def __init__(self, silence_seconds: float, dlq_rate: float) -> None:
        self.silence_us = int(silence_seconds * 1_000_000)
        self.dlq_rate = dlq_rate
        self.sites: dict[str, SiteFeed] = {}
        self.alerts: AlertBook | None = None  # set by the state that owns both
        self._dirty: set[str] = set()

    def clear(self) -> None:
        self.sites.clear()

    def activity(self, record: dict[str, Any]) -> None:
        """Fold in one SiteActivity record, and judge the buckets it closes."""
        site = record["site_id"]
        feed = self.sites.get(site)
        if feed is None:
            feed = self.sites[site] = SiteFeed()
        feed.bucket_us = record["bucket_seconds"] * 1_000_000
        for text, n in record["events"].items():
            b = int(text)
            if b < feed.closed_until:
                continue  # its bucket is closed
            feed.open.setdefault(b, [0, 0])[0] += n
            feed.newest = max(feed.newest, b)
        if record["dead_letters"] and feed.newest >= 0:
            feed.open.setdefault(max(feed.newest, feed.closed_until), [0, 0])[1] += record["dead_letters"]
        if record["last_seen"] > feed.last_seen:
            feed.last_seen = record["last_seen"]
            self._resolve(site, "feed_silence", feed.last_seen)
        self._close(site, feed)
        self._dirty.add(site)

    def _close(self, site: str, feed: SiteFeed) -> None:
        if feed.newest < 0:
            return
        until = feed.newest - feed.bucket_us  # one bucket of grace
        if feed.closed_until < 0:
            feed.closed_until = min(feed.open)
        # A long gap is judged as at most HISTORY empty buckets.
        feed.closed_until = max(feed.closed_until, until - HISTORY * feed.bucket_us)
        while feed.closed_until < until:
            b = feed.closed_until
            events, dead = feed.open.pop(b, (0, 0))
            for old in [k for k in feed.open if k < b]:
                o = feed.open.pop(old)
                events, dead = events + o[0], dead + o[1]
            feed.events = [*feed.events[-(HISTORY - 1):], events]
            feed.dead = [*feed.dead[-(HISTORY - 1):], dead]
            feed.closed_until = b + feed.bucket_us
            self._judge(site, feed, b)

    def _judge(self, site: str, feed: SiteFeed, bucket: int) -> None:
        counts = [float(c) for c in feed.events]
        for method, need in EARS_NEED.items():
            if len(counts) < need:
                continue
            res = ears(counts[-need:], method[-2:].upper(), min_sigma=MIN_SIGMA)
            bound, alarm = res.upperbound[-1], res.alarm[-1]
            feed.checks[method] = (counts[-1], bound, alarm)
            if method == "ears_c2":
                if alarm:
                    self._signal(site, method, counts[-1], bound, bucket,
                                 Evidence(counts[-1], None, None, bucket, bucket + feed.bucket_us))
                else:
                    self._resolve(site, method, bucket)
        total = sum(feed.events) + sum(feed.dead)
        rate = sum(feed.dead) / total if total else 0.0
        over = total >= MIN_DLQ_RECORDS and rate > self.dlq_rate
        feed.checks["dlq_rate"] = (rate, self.dlq_rate, over)
        if over:
            if self.alerts is not None and not self.alerts.is_open(("", site, "dlq_rate")):
                self._signal(site, "dlq_rate", rate, self.dlq_rate, bucket, Evidence(None, None, None, bucket))
        else:
            self._resolve(site, "dlq_rate", bucket)

    def check_silence(self, now: int) -> None:
        """Open feed-silence alerts for sites quiet longer than the limit (wall clock, us)."""
        for site, feed in self.sites.items():
            if feed.last_seen and now - feed.last_seen > self.silence_us and self.alerts is not None \
                    and not self.alerts.is_open(("", site, "feed_silence")):
                self._signal(site, "feed_silence", (now - feed.last_seen) / 1e6, self.silence_us / 1e6,
                             feed.last_seen, Evidence(None, None, None, feed.last_seen))

    def _signal(self, site: str, method: str, statistic: float, limit: float, at: int, evidence: Evidence) -> None:
        if self.alerts is not None:
            self.alerts.signal(("", site, method), statistic, limit, at, evidence, accumulate=False)

    def _resolve(self, site: str, method: str, at: int) -> None:
        if self.alerts is not None and self.alerts.is_open(("", site, method)):
            self.alerts.resolve(("", site, method), at)

    def readings(self, now: int | None = None) -> list[MonitorReading]:
        now = now_us() if now is None else now
        out = []
        alerts = self.alerts
        for site, feed in self.sites.items():
            for method, (stat, limit, alarm) in feed.checks.items():
                signalled = alerts.is_open(("", site, method)) if alerts is not None else alarm
                out.append(MonitorReading("", site, method, stat, limit, signalled or alarm))
            if feed.last_seen:
                out.append(MonitorReading("", site, "feed_silence", max(0.0, (now - feed.last_seen) / 1e6),
                                          self.silence_us / 1e6,
                                          alerts is not None and alerts.is_open(("", site, "feed_silence"))))
        return out

    # --- changelog -------------------------------------------------------------
    def _record(self, site: str) -> dict[str, Any]:
        feed = self.sites[site]
        values = {"newest": float(feed.newest), "closed_until": float(feed.closed_until),
                  "last_seen": float(feed.last_seen), "bucket_us": float(feed.bucket_us)}
        for method, (stat, limit, alarm) in feed.checks.items():
            values.update({f"{method}.statistic": stat, f"{method}.limit": limit, f"{method}.alarm": float(alarm)})
        buckets = {str(b): list(v) for b, v in feed.open.items()}
        buckets["history"] = [x for pair in zip(feed.events, feed.dead, strict=True) for x in pair]
        return {"site_id": site, "values": values, "buckets": buckets}

    def take_delta(self) -> list[dict[str, Any]]:
        out = [self._record(s) for s in sorted(self._dirty)]
        self._dirty = set()
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        self._dirty = set()
        return [self._record(s) for s in sorted(self.sites)]

    def apply(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            feed = self.sites[r["site_id"]] = SiteFeed()
            v = r["values"]
            feed.newest, feed.closed_until = int(v["newest"]), int(v["closed_until"])
            feed.last_seen, feed.bucket_us = int(v["last_seen"]), int(v["bucket_us"])
            for method in (*EARS_NEED, "dlq_rate"):
                if f"{method}.statistic" in v:
                    feed.checks[method] = (v[f"{method}.statistic"], v[f"{method}.limit"], bool(v[f"{method}.alarm"]))
            history = r["buckets"].get("history", [])
            feed.events, feed.dead = list(history[0::2]), list(history[1::2])
            feed.open = {int(b): list(c) for b, c in r["buckets"].items() if b != "history"}
