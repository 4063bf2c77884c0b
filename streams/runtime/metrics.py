"""Engine health metrics: one named bundle against an explicit registry.

Label values come only from finite sets: stage names, reason codes, configured
site ids (anything else is counted under site="other"). Never a patient or
encounter id.
"""

from __future__ import annotations

import bisect
import errno
import gc
import time
from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric, start_http_server
from prometheus_client.registry import RestrictedRegistry

from streams.errors import ConfigError

# Millisecond-scale stage latencies: loopback Kafka round trips are ~5-80 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
OTHER_SITE = "other"


class EngineMetrics:
    """Counters, gauges and histograms of every stage, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry | None = None, sites: Iterable[str] = (),
                 prefix: str = "rwe") -> None:
        self.registry = registry or CollectorRegistry()
        self.sites = frozenset(sites)
        r, p = self.registry, prefix
        self.messages_in = Counter(f"{p}_stage_messages_in", "Kafka messages a stage consumed.",
                                   ["stage"], registry=r)
        self.events_in = Counter(f"{p}_stage_events_in", "Events a stage read (a container message holds many).",
                                 ["stage"], registry=r)
        self.events_out = Counter(f"{p}_stage_events_out", "Events a stage published.", ["stage"], registry=r)
        self.site_events = Counter(f"{p}_site_events", "Accepted events per site and event type.",
                                   ["site", "event_type"], registry=r)
        self.dead_letters = Counter(f"{p}_dead_letters", "Records sent to the dead-letter topic.",
                                    ["stage", "reason", "site"], registry=r)
        self.duplicates = Counter(f"{p}_duplicates", "Exact resends dropped by deduplication.",
                                  ["stage", "site"], registry=r)
        self.unmapped_codes = Counter(f"{p}_unmapped_codes", "Accepted events whose code maps to no concept.",
                                      ["site", "code_system"], registry=r)
        self.beyond_dedupe_horizon = Counter(
            f"{p}_beyond_dedupe_horizon", "Events older than the dedupe horizon: duplicates of them "
            "can no longer be recognised.", ["stage"], registry=r)
        self.feed_latency = Histogram(f"{p}_feed_latency_seconds", "Ingest time minus event time.",
                                      ["site"], registry=r,
                                      buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 86400, 7 * 86400))
        self.batch_seconds = Histogram(f"{p}_stage_batch_seconds", "Time to process and publish one batch.",
                                       ["stage"], registry=r, buckets=LATENCY_BUCKETS)
        self.batch_size = Histogram(f"{p}_stage_batch_events", "Events per batch.", ["stage"], registry=r,
                                    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000))
        self.state_entries = Gauge(f"{p}_state_entries", "Entries held in a stage's state store.",
                                   ["stage"], registry=r)
        self.rebalances = Counter(f"{p}_rebalances", "Partition assignments and revocations.",
                                  ["stage", "kind"], registry=r)
        self.restored_records = Counter(f"{p}_changelog_restored_records",
                                        "Changelog records replayed into state.", ["stage"], registry=r)
        self.held_events = Gauge(f"{p}_held_events", "Events held back to be published in event-time order.",
                                 ["stage"], registry=r)
        self.late_events = Counter(f"{p}_late_events", "Events older than the watermark, applied as revisions "
                                   "of what was published (older than the revision horizon: dead letters, "
                                   "beyond_revision_horizon).", ["stage"], registry=r)
        self.after_as_of = Counter(f"{p}_events_after_as_of", "Events later than RWE_AS_OF: not applied.",
                                   ["stage"], registry=r)
        self.observations = Counter(f"{p}_observations", "Outcome observations published, by status.",
                                    ["indicator", "status"], registry=r)
        self.consumer_lag = Gauge(f"{p}_consumer_lag", "Records on an assigned input partition after the "
                                  "group's committed offset (librdkafka statistics).",
                                  ["stage", "topic", "partition"], registry=r)
        self.watermark = Gauge(f"{p}_event_time_watermark_seconds", "Largest event time seen (UTC epoch s).",
                               ["stage"], registry=r)

    def site_label(self, site_id: str | None) -> str:
        return site_id if site_id in self.sites else OTHER_SITE

    def serve(self, port: int, addr: str = "127.0.0.1", retry_seconds: float = 10.0) -> WSGIServer:
        """Expose /metrics on ``addr:port`` in a daemon thread; ``shutdown()`` the result to stop.

        A port still held (a crashed worker's socket not yet released, its successor started
        at once) is tried again for ``retry_seconds``; a host that cannot be listened on, or a
        port that stays taken, is a ConfigError naming the setting."""
        deadline = time.monotonic() + retry_seconds
        while True:
            try:
                server, _thread = start_http_server(port, addr=addr, registry=ScrapeRegistry(self.registry))
                return server
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise ConfigError(f"RWE_METRICS_HOST {addr!r}: cannot listen there "
                                      f"({exc.strerror or exc})") from None
                if time.monotonic() >= deadline:
                    raise ConfigError(f"RWE_METRICS_PORT {port} is in use (set another port; 0 turns /metrics "
                                      "off)") from None
                time.sleep(0.5)


class ScrapeRegistry(CollectorRegistry):
    """The registry as /metrics reads it: no garbage collection while a scrape runs.

    A scrape allocates thousands of short-lived samples; a full collection they trigger
    pauses the whole process (33-59 ms measured on the demo's heap) and lands in the
    scrape's time. Deferred, it runs in the stages' thread right after.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        enabled = gc.isenabled()
        gc.disable()
        try:
            yield from self._registry.collect()
        finally:
            if enabled:
                gc.enable()

    def restricted_registry(self, names: Iterable[str]) -> RestrictedRegistry:
        return self._registry.restricted_registry(names)


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe`` for each amount, with one locked increment per bucket touched
    instead of two per amount (the per-event path of a busy stage). Uses
    prometheus-client's own bucket values (pinned version; a test checks the exposition
    equals one ``observe`` per amount)."""
    bounds = histogram._upper_bounds
    counts = [0] * len(bounds)
    total = 0.0
    for amount in amounts:
        counts[bisect.bisect_left(bounds, amount)] += 1
        total += amount
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, counts, strict=True):
        if count:
            bucket.inc(count)
