"""The whole pipeline (normalise + ascertain + aggregate) against a naive per-event Faust
pipeline, side by side in one run.

    python benchmarks/pipeline_bench.py [--quick] [--events N] [--naive-events N] [--results PATH]

Every pipeline run gets a fresh embedded Tansu broker (topics with 2 partitions). Parts:
  T  throughput: the engine (one worker process, stages normalise, ascertain, aggregate) on
     Avro containers of 500 events per message and on one event per message; the naive
     three-agent Faust app (one process) on one event per message;
  M  what the monitor stage costs: the engine without and with it (same worker process),
     alternating on the same feed, containers and one event per message;
  L  event-to-snapshot latency at half the engine's measured per-event peak: probe deaths of
     patients with an open heart-failure admission; time until the hf_mortality_30d snapshot
     of the probe site with the incremented numerator is on outcomes.indicators (aggregate
     coalescing 1.0 s, the default, and 0.5 s);
  S  ascertain state per active patient: changelog snapshot bytes (from the worker after the
     container run, and in-process) and in-memory bytes (tracemalloc; RSS growth);
  peak RSS of every pipeline process.
See benchmarks/README.md for what each number means. Reuses the machinery of
benchmarks/normalise_bench.py (broker per run, subprocess pipelines, clean-up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.append(p)  # after site-packages: a compiled install of streams wins over the tree

import feed as feeds  # noqa: E402
import normalise_bench as nb  # noqa: E402
import numpy as np  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from streams.embedded.broker import free_port  # noqa: E402
from streams.runtime import topics  # noqa: E402
from streams.runtime.runner import producer_config  # noqa: E402
from streams.settings import DEV, Settings  # noqa: E402
from streams.wire import formats as wire  # noqa: E402
from streams.wire import schemas  # noqa: E402

log = nb.log
DAY_US = 86_400_000_000
FEED_DAYS = 730
FEED_START = datetime(2024, 1, 1, tzinfo=UTC)     # 730 days end before "now": no future_time rejections
EVENTS_PER_PATIENT_SITE = 18652 / 400              # simulator events per unit of patients_per_site, 730 days
LATENCY_DAYS = 365
LATENCY_START = datetime(2025, 1, 1, tzinfo=UTC)
LATENCY_EVENTS_PER_PATIENT_SITE = 16179 / 400      # the same for 365 days
PROBE_SITE = "FI-HUS"                              # left out of the latency background: only probes go there
PROBE_INDICATOR = "hf_mortality_30d"
PROBE_KEY = f"{PROBE_INDICATOR}|SITE|{PROBE_SITE}|all"
# A probe death is dated 6 h before the background's newest event: a death reaches the feed after
# other sites' data, as it would (dated 1.5 days ahead, as until 2026-11-25, the normaliser's
# event-time merge rightly held it until every busy raw partition caught up: ~250 ms of wall time).
DEATH_LAG_US = 6 * 3600 * 1_000_000
RESULTS_DOC = BENCH / "RESULTS-pipeline.md"
ENGINE_MONITORED = "engine + monitor"
MONITORED_STAGES = "normalise ascertain aggregate monitor"


# --------------------------------------------------------------------------- the feed
def simulated(events: int, seed: int = 7) -> feeds.Feed:
    """The simulator's feed over 730 days (2024-2025), about ``events`` events."""
    from streams.simulator.feed import generate
    from streams.simulator.model import SimulationConfig

    encoder = wire.Encoder(schemas.CLINICAL_EVENT)
    by_value: dict[bytes, dict[str, Any]] = {}

    def encode(record: dict[str, Any]) -> bytes:
        value = encoder.encode(record)
        by_value.setdefault(value, record)
        return value

    per_site = max(1, round(events / EVENTS_PER_PATIENT_SITE))
    config = SimulationConfig(seed=seed, patients_per_site=per_site, start=FEED_START, days=FEED_DAYS)
    messages, manifest = generate(config, encode)
    records, singles = [], []
    for m in messages:
        record = by_value.get(m.value)
        if record is None:  # garbage or truncated bytes: not in a container feed either
            continue
        records.append(record)
        singles.append((m.key or b"", m.value))
    out = feeds.Feed(records, singles, manifest.valid,
                     f"streams.simulator (seed {seed}, {per_site} patients per site, {FEED_DAYS} days from "
                     f"{FEED_START.date()})")
    out.per_site = per_site  # type: ignore[attr-defined]
    return out


# --------------------------------------------------------------------------- processes
def metrics_of(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of the worker's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def stage_value(samples: dict[Any, float], name: str, stage: str) -> float:
    return samples.get((name, (("stage", stage),)), 0.0)


@dataclass
class Running:
    pipeline: nb.Pipeline
    progress_file: Path
    state_file: Path | None
    metrics_port: int | None

    def progress(self) -> dict[str, float]:
        try:
            return json.loads(self.progress_file.read_text())
        except (OSError, ValueError):
            return {}


def start_engine(settings: Settings, events: int, expect: int, coalesce: float | None = None,
                 min_cell_count: int | None = None, stages: str | None = None) -> Running:
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    port = free_port()
    env = {**os.environ, "RWE_MODE": DEV, "RWE_BROKER": settings.broker,
           "RWE_TOPIC_PREFIX": nb.PREFIX, "RWE_PARTITIONS": str(nb.PARTITIONS), "RWE_PSEUDONYM_KEY": nb.KEY,
           "RWE_SESSION_TIMEOUT_MS": "6000", "RWE_GROUP_ID": settings.group_id, "RWE_METRICS_PORT": str(port),
           "RWE_LOG_LEVEL": "WARNING", "BENCH_STARTED_FILE": str(tmp / "started"),
           "BENCH_PROGRESS_FILE": str(tmp / "progress.json"), "BENCH_STATE_FILE": str(tmp / "state.json"),
           "BENCH_EVENTS": str(events), "BENCH_EXPECT": str(expect)}
    if coalesce is not None:
        env["BENCH_COALESCE_SECONDS"] = str(coalesce)
    if min_cell_count is not None:
        env["RWE_MIN_CELL_COUNT"] = str(min_cell_count)
    if stages is not None:
        env["BENCH_STAGES"] = stages
    logf = tmp / "worker.log"
    spawned = time.time()
    proc = nb._spawn([nb.PYTHON, str(BENCH / "pipeline_worker.py")], env, logf)
    pipeline = nb.Pipeline("engine", [proc], [tmp / "started"], spawned, tmp, [logf])
    return Running(pipeline, tmp / "progress.json", tmp / "state.json", port)


def start_naive(settings: Settings, expect: int) -> Running:
    tmp = Path(tempfile.mkdtemp(prefix="bench-faust-pipeline-"))
    env = {**os.environ, "BENCH_BROKER": settings.broker,
           "BENCH_APP_ID": f"naive-pipeline-{uuid.uuid4().hex[:8]}", "BENCH_DATADIR": str(tmp / "data"),
           "BENCH_TOPIC_PREFIX": nb.PREFIX, "BENCH_PARTITIONS": str(nb.PARTITIONS), "BENCH_KEY": nb.KEY,
           "BENCH_STARTED_FILE": str(tmp / "started"), "BENCH_FETCH_WAIT_MS": "10",
           "BENCH_WEB_PORT": str(free_port()), "BENCH_EXPECT": str(expect),
           "BENCH_PROGRESS_FILE": str(tmp / "progress.json")}
    logf = tmp / "faust.log"
    spawned = time.time()
    proc = nb._spawn([nb.PYTHON, str(BENCH / "naive_faust_pipeline.py"), "worker", "-l", "warn"], env, logf)
    pipeline = nb.Pipeline("naive Faust", [proc], [tmp / "started"], spawned, tmp, [logf])
    return Running(pipeline, tmp / "progress.json", None, None)


# --------------------------------------------------------------------------- T: throughput
@dataclass
class Throughput:
    pipeline: str
    feed: str
    events_in: int
    messages_in: int
    expected_out: int
    normalised: int = 0
    observations: int = 0
    snapshots: int = 0
    dlq: int = 0
    late: int = 0
    rate: float = float("nan")          # events in / (ascertain and aggregate done - first event handed over)
    normalise_s: float = float("nan")   # first event -> normalise has read every event (engine only)
    ascertain_s: float = float("nan")   # first event -> ascertain has read every normalised event
    aggregate_s: float = float("nan")   # first event -> aggregate has read every observation
    last_snapshot_s: float = float("nan")  # first event -> last snapshot consumed from outcomes.indicators
    startup_s: float = float("nan")
    rss_mb: list[float] = field(default_factory=list)
    complete: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


SINGLE_KEY = b"feed"  # every per-event raw message on one partition (see README: replay skew)
PER_EVENT_SITE = "1 event/message, keyed by site"
PER_EVENT_ONE = "1 event/message, one raw partition"


def run_throughput(pipeline: str, feed: feeds.Feed, per_event: bool, one_partition: bool = False,
                   timeout: float = 600.0) -> Throughput:
    """One pipeline on a fresh broker: ``engine``, ``engine + monitor`` (the monitor stage in the
    same worker) or ``naive Faust``."""
    monitored = pipeline == ENGINE_MONITORED
    if not per_event:
        messages, label = feed.containers, f"{feeds.CONTAINER_EVENTS} events/message"
    elif one_partition:
        messages, label = [(SINGLE_KEY, value) for _key, value in feed.singles], PER_EVENT_ONE
    else:
        messages, label = feed.singles, PER_EVENT_SITE
    result = Throughput(pipeline, label, feed.events, len(messages), feed.expected_out)
    broker, settings = nb.fresh_broker()
    running: Running | None = None
    watcher: nb.Watcher | None = None
    try:
        produce_s = nb.produce_all(settings, messages)
        log(f"  {pipeline}, {result.feed}: pre-produced {len(messages):,} messages in {produce_s:.1f} s")
        obs_topic, ind_topic, dlq_topic = (settings.topic(t) for t in (topics.OBSERVATIONS, topics.INDICATORS,
                                                                        topics.DLQ))
        watcher = nb.Watcher(settings, [obs_topic, ind_topic, dlq_topic])
        watcher.start()
        running = (start_engine(settings, feed.events, feed.expected_out,
                                stages=MONITORED_STAGES if monitored else None) if pipeline.startswith("engine")
                   else start_naive(settings, feed.expected_out))
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 10
        done: dict[str, float] = {}
        while True:
            done = running.progress()
            if "ascertain_done" in done and "aggregate_done" in done and (not monitored or "monitor_done" in done):
                break
            running.pipeline.check_alive()
            now = time.monotonic()
            if now > next_note:
                next_note += 10
                log(f"    ... {watcher.counts[obs_topic]:,} observations, {watcher.counts[ind_topic]:,} snapshots out")
            if now > deadline:
                result.notes.append(f"{pipeline} ({result.feed}): timed out after {timeout:.0f} s")
                break
            if running.pipeline.first_event_time() is not None and now - watcher.last_progress > 60:
                result.notes.append(f"{pipeline} ({result.feed}): no output for 60 s, run stopped")
                break
            time.sleep(0.05)
        # The last snapshots: aggregate publishes at most once per coalesce interval per indicator.
        quiet_since, last = time.monotonic(), watcher.counts[ind_topic]
        while time.monotonic() - quiet_since < 2.5 and time.monotonic() < deadline:
            time.sleep(0.1)
            if watcher.counts[ind_topic] != last:
                quiet_since, last = time.monotonic(), watcher.counts[ind_topic]
        last_snapshot_wall = time.time() - (time.monotonic() - watcher.last_progress)
        result.rss_mb = running.pipeline.peak_rss()
        result.observations, result.snapshots = watcher.counts[obs_topic], watcher.counts[ind_topic]
        result.dlq = watcher.counts[dlq_topic]
        first = running.pipeline.first_event_time()
        if running.metrics_port:
            samples = metrics_of(running.metrics_port)
            result.normalised = int(stage_value(samples, "rwe_stage_events_out_total", "normalise"))
            result.late = int(stage_value(samples, "rwe_late_events_total", "ascertain"))
        else:
            result.normalised = feed.expected_out if "ascertain_done" in done else 0
            result.late = int(done.get("late", 0))
        if (first is not None and "ascertain_done" in done and "aggregate_done" in done
                and (not monitored or "monitor_done" in done)):
            result.complete = True
            end = max(done["ascertain_done"], done["aggregate_done"], done.get("monitor_done", 0.0))
            result.rate = feed.events / (end - first)
            result.startup_s = first - running.pipeline.spawned
            if "normalise_done" in done:
                result.normalise_s = done["normalise_done"] - first
            result.ascertain_s = done["ascertain_done"] - first
            result.aggregate_s = done["aggregate_done"] - first
            result.last_snapshot_s = last_snapshot_wall - first
        elif first is None:
            result.notes.append(f"{pipeline} ({result.feed}): never handed an event")
        log(f"  {pipeline}, {result.feed}: {result.rate:,.0f} events/s (ascertain done at {result.ascertain_s:.1f} s, "
            f"aggregate at {result.aggregate_s:.1f} s), {result.observations:,} observations, "
            f"{result.snapshots:,} snapshots, peak RSS {', '.join(f'{r:.0f}' for r in result.rss_mb)} MB")
    finally:
        if watcher is not None:
            watcher.stop()
        if running is not None:
            result.notes += running.pipeline.exits()
            for proc in running.pipeline.procs:  # SIGTERM; the engine worker writes its state sizes on the way out
                nb._terminate(proc, grace=60.0)
            if running.state_file is not None:
                with contextlib.suppress(OSError, ValueError):
                    result.state = json.loads(running.state_file.read_text())
            running.pipeline.stop(keep_logs=not result.complete)
        nb.stop_broker(broker)
    for note in result.notes:
        log(f"  NOTE: {note}")
    return result


# --------------------------------------------------------------------------- L: latency
@dataclass
class Latency:
    coalesce: float
    rate: int
    seconds: float
    min_cell_count: int
    background: int = 0
    achieved_rate: float = float("nan")
    probes: int = 0
    received: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    mean: float = float("nan")
    max: float = float("nan")
    first_p50: float = float("nan")
    last_p50: float = float("nan")
    pipeline_in: int = 0
    late: int = 0
    rss_mb: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class LatencyFeed:
    """Background events (the simulator, without the probe site), single-object encoded, and
    probe templates: an HF emergency admission + diagnosis, and a death, at the probe site."""

    def __init__(self, events: int, seed: int = 11) -> None:
        from streams.simulator.feed import generate
        from streams.simulator.model import SimulationConfig

        encoder = wire.Encoder(schemas.CLINICAL_EVENT)
        self.encode = encoder.encode
        per_site = max(1, round(events / LATENCY_EVENTS_PER_PATIENT_SITE * 6 / 5))
        by_value: dict[bytes, dict[str, Any]] = {}

        def encode(record: dict[str, Any]) -> bytes:
            value = encoder.encode(record)
            by_value.setdefault(value, record)
            return value

        config = SimulationConfig(seed=seed, patients_per_site=per_site, start=LATENCY_START, days=LATENCY_DAYS,
                                  malformed_rate=0.0)
        messages, _manifest = generate(config, encode)
        kept: list[tuple[bytes, bytes, int]] = []
        for m in messages:
            record = by_value.get(m.value)
            if record is None or record["site_id"] == PROBE_SITE:
                continue
            kept.append((m.key or b"", m.value, record["event_time"]))
        self.background = kept
        self.source = (f"streams.simulator (seed {seed}, {per_site} patients per site, {LATENCY_DAYS} days from "
                       f"{LATENCY_START.date()}), without {PROBE_SITE}")
        self.span_days = (kept[-1][2] - kept[0][2]) / DAY_US if kept else 0.0

    def probe(self, tag: str, k: int, admitted: int) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
        """(admission + HF diagnosis, death) of probe patient ``k``; times UTC (no time zone)."""
        base = {"event_id": "", "site_id": PROBE_SITE, "source_patient_id": f"PROBE-{tag}-{k}",
                "patient_id_issuer": None, "encounter_id": f"PENC-{tag}-{k}", "event_type": "ADMISSION",
                "event_time": admitted, "recorded_time": admitted + 600_000_000, "time_zone": None,
                "code_system": None, "code": None, "value": None, "unit": None, "admission_type": "EMERGENCY",
                "disposition": None, "birth_year": 1950, "sex": "FEMALE", "prom": None, "patient_name": None,
                "address": None, "note": None}
        admission = dict(base, event_id=f"P{tag}-{k}-a")
        diagnosis = dict(base, event_id=f"P{tag}-{k}-d", event_type="DIAGNOSIS", event_time=admitted + 3_600_000_000,
                         recorded_time=admitted + 3_700_000_000, code_system="ICD-10", code="I50.9",
                         admission_type=None)
        died = admitted + 30 * DAY_US  # the horizon's last instant: the outcome counts, and the
        # aggregate clock reaches index + 30 d with it, so the index falls in the published windows
        death = dict(base, event_id=f"P{tag}-{k}-x", event_type="DEATH", encounter_id=None, event_time=died,
                     recorded_time=died + 600_000_000, admission_type=None)
        key = PROBE_SITE.encode()
        return [(key, self.encode(admission)), (key, self.encode(diagnosis))], (key, self.encode(death))


class SnapshotWatcher(threading.Thread):
    """Reads outcomes.indicators; records (arrival, numerator) of every snapshot of PROBE_KEY."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(settings.kafka_config(**{
            "group.id": f"watch-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "fetch.wait.max.ms": 10, "enable.partition.eof": False}))
        name = settings.topic(topics.INDICATORS)
        meta = self.consumer.list_topics(name, timeout=10).topics[name]
        self.consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions])
        self.decoder = wire.Decoder(schemas.INDICATOR_SNAPSHOT)
        self.key = PROBE_KEY.encode()
        self.snapshots = 0
        self.seen: list[tuple[float, int]] = []  # (monotonic arrival, numerator)
        self._stop_flag = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_flag.is_set():
                batch = self.consumer.consume(10000, 0.05)
                if not batch:
                    continue
                now = time.monotonic()
                for m in batch:
                    if m.error():
                        continue
                    self.snapshots += 1
                    if m.key() == self.key:
                        snapshot = self.decoder.decode(m.value())[0]
                        if snapshot["numerator"] is not None:
                            self.seen.append((now, snapshot["numerator"]))
        finally:
            self.consumer.close()

    def numerator(self) -> int:
        return self.seen[-1][1] if self.seen else 0

    def first_at_least(self, n: int, after: float) -> float | None:
        for t, num in self.seen:
            if num >= n and t >= after:
                return t
        return None

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(10)


def run_latency(bg: LatencyFeed, rate: int, seconds: float, coalesce: float, probe_interval: float = 0.1,
                min_cell_count: int = 1, warmup_limit: float = 90.0) -> Latency:
    """Background at ``rate``; a probe every ``probe_interval`` s for ``seconds`` s (see LatencyFeed)."""
    result = Latency(coalesce, rate, seconds, min_cell_count)
    tag = uuid.uuid4().hex[:6]
    broker, settings = nb.fresh_broker()
    running: Running | None = None
    watcher: SnapshotWatcher | None = None
    try:
        raw_topic = settings.topic(topics.RAW)
        watcher = SnapshotWatcher(settings)
        watcher.start()
        running = start_engine(settings, 0, 0, coalesce=coalesce, min_cell_count=min_cell_count)
        producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        background = bg.background
        i = frontier = 0
        probes: list[dict[str, Any]] = []  # admitted (us), death (key, value), sent (monotonic) or None
        deaths: list[int] = []              # probes in the order their deaths were sent
        phase = "warm-up"                   # 100 events/s until the first snapshot, so start-up leaves no backlog
        t0 = phase_t0 = last_check = time.monotonic()
        phase_rate, phase_sent = 100, 0
        ramped_at = measure_start = 0.0
        i_start = i_end = 0
        next_probe = 0.0
        all_sent_at: float | None = None
        while True:
            now = time.monotonic()
            due = int((now - phase_t0) * phase_rate) + 1
            while phase_sent < due and i < len(background):
                key, value, t = background[i]
                i += 1
                phase_sent += 1
                frontier = max(frontier, t)
                producer.produce(raw_topic, value=value, key=key)
            if phase == "warm-up":
                if watcher.snapshots:
                    phase, ramped_at = "ramp", now
                    phase_t0, phase_rate, phase_sent = now, rate, 0
                elif now - t0 > warmup_limit:
                    raise RuntimeError(f"the engine published no snapshot within {warmup_limit:.0f} s")
            elif phase == "ramp" and now - ramped_at >= 3.0:
                phase, measure_start, next_probe, i_start = "measure", now, now, i
            elif phase == "measure":
                if now >= next_probe:
                    next_probe += probe_interval
                    # Admitted at the newest background event time (local wall time, >= its UTC): never late.
                    admission, death = bg.probe(tag, len(probes), frontier)
                    for key, value in admission:
                        producer.produce(raw_topic, value=value, key=key)
                    probes.append({"admitted": frontier, "death": death, "sent": None})
                if now - measure_start >= seconds or i >= len(background):
                    phase, i_end = "tail", i
                    result.achieved_rate = (i_end - i_start) / (now - measure_start)
            for k, probe in enumerate(probes):
                if probe["sent"] is None and frontier - DEATH_LAG_US >= probe["admitted"] + 30 * DAY_US:
                    key, value = probe["death"]
                    probe["sent"] = time.monotonic()
                    producer.produce(raw_topic, value=value, key=key)
                    deaths.append(k)
            producer.poll(0)
            if phase == "tail":
                if len(deaths) == len(probes):
                    all_sent_at = all_sent_at or now
                    if watcher.numerator() >= len(deaths) or now - all_sent_at > 5.0 + coalesce:
                        break
                if i >= len(background):
                    result.notes.append(f"coalesce {coalesce}: the background feed ran out after {i:,} events")
                    break
            if now - last_check > 1.0:
                running.pipeline.check_alive()
                last_check = now
            time.sleep(0.0005)
        producer.flush(30)
        deadline = time.monotonic() + 5 + coalesce
        while time.monotonic() < deadline and watcher.numerator() < len(deaths):
            time.sleep(0.1)
        result.background = i
        # The k-th death sent is seen when a snapshot with numerator >= k arrives after it was sent.
        lat = []
        for n, k in enumerate(deaths, start=1):
            sent = probes[k]["sent"]
            arrived = watcher.first_at_least(n, sent)
            if arrived is not None:
                lat.append((arrived - sent) * 1000)
        result.probes, result.received = len(deaths), len(lat)
        if result.received < result.probes:
            result.notes.append(f"coalesce {coalesce}: {result.probes - result.received} of {result.probes} probe "
                                f"deaths never showed in the numerator (final numerator {watcher.numerator()})")
        if lat:
            arr = np.array(lat)
            result.p50, result.p99 = float(np.percentile(arr, 50)), float(np.percentile(arr, 99))
            result.mean, result.max = float(arr.mean()), float(arr.max())
            tenth = max(1, len(arr) // 10)
            result.first_p50 = float(np.percentile(arr[:tenth], 50))
            result.last_p50 = float(np.percentile(arr[-tenth:], 50))
        time.sleep(1.0)
        samples = metrics_of(running.metrics_port) if running.metrics_port else {}
        result.pipeline_in = int(stage_value(samples, "rwe_stage_events_in_total", "normalise"))
        result.late = int(stage_value(samples, "rwe_late_events_total", "ascertain"))
        result.rss_mb = running.pipeline.peak_rss()
        sent_total = i + 3 * len(deaths) + 2 * (len(probes) - len(deaths))
        if result.pipeline_in < sent_total:
            result.notes.append(f"coalesce {coalesce}: the engine had read {result.pipeline_in:,} of {sent_total:,} "
                                "events sent, 1 s after the end (it fell behind the rate)")
        log(f"  coalesce {coalesce:.1f} s at {rate:,} events/s (sent {result.achieved_rate:,.0f}/s): p50 "
            f"{result.p50:.0f} ms, p99 {result.p99:.0f} ms, max {result.max:.0f} ms ({result.received}/{result.probes} "
            f"probes; first/last tenth p50 {result.first_p50:.0f}/{result.last_p50:.0f} ms; {result.late:,} late)")
    finally:
        if watcher is not None:
            watcher.stop()
        if running is not None:
            result.notes += running.pipeline.exits()
            running.pipeline.stop()
        nb.stop_broker(broker)
    return result


# --------------------------------------------------------------------------- S: state size
def run_state_size(per_site: int) -> dict[str, Any]:
    out = subprocess.run([nb.PYTHON, str(BENCH / "state_size.py"), "--patients-per-site", str(per_site),
                          "--days", str(FEED_DAYS), "--start", FEED_START.date().isoformat()],
                         capture_output=True, text=True, cwd=ROOT, timeout=600, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"state_size.py failed: {out.stderr[-1500:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- report
def _f(x: float, digits: int = 0) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"


def report(tp: list[Throughput], mon: list[Throughput], lat: list[Latency], state: dict[str, Any],
           meta: dict[str, str],
           feed: feeds.Feed, naive_feed: feeds.Feed | None, bg: LatencyFeed | None, command: str,
           wall: float) -> str:
    naive = next((t for t in tp if t.pipeline == "naive Faust"), None)
    engine_c = next((t for t in tp if t.pipeline == "engine" and "500" in t.feed), None)
    engine_s = next((t for t in tp if t.pipeline == "engine" and t.feed == PER_EVENT_ONE), None)
    head = [f"- {k}: {v}" for k, v in meta.items()]
    head += [f"- command: `{command}`",
             f"- feed: {feed.events:,} events ({feed.source}), {feed.patients():,} patients, {feed.expected_out:,} "
             f"valid distinct events; {len(feed.containers):,} container messages"]
    if naive_feed is not None and naive_feed is not feed:
        head.append(f"- naive Faust feed: the first {naive_feed.events:,} events of it ({naive_feed.expected_out:,} "
                    "valid distinct): it runs at several hundred events/s (see README)")
    head.append(f"- benchmark wall time: {wall:.0f} s")
    lines = ["## Throughput: raw events in -> every event through ascertain and every observation aggregated", "",
             "| pipeline | feed | events in | events/s | x naive | normalise done s | ascertain done s "
             "| aggregate done s | last snapshot s | normalised | observations | snapshots | dead letters "
             "| late | start-up s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tp:
        ratio = f"{t.rate / naive.rate:.1f}" if naive and naive.complete and t.complete else "-"
        norm = f"{t.normalised:,}" + ("" if t.normalised == t.expected_out else f" (expected {t.expected_out:,})")
        lines.append(f"| {t.pipeline} | {t.feed} | {t.events_in:,} | {_f(t.rate)} | {ratio} | {_f(t.normalise_s, 1)} "
                     f"| {_f(t.ascertain_s, 1)} | {_f(t.aggregate_s, 1)} | {_f(t.last_snapshot_s, 1)} | {norm} "
                     f"| {t.observations:,} | {t.snapshots:,} | {t.dlq:,} | {t.late:,} | {_f(t.startup_s, 1)} "
                     f"| {nb._fmt_rss(t.rss_mb)} |")
    lines += ["", "## What the monitor stage costs the pipeline", ""]
    if mon:
        lines += ["The engine without and with the monitor stage (charts, feed health, alert lifecycle) in the "
                  "same worker process, alternating on the same feed; with it, a run ends when the monitor "
                  "has read every observation too.", "",
                  "| feed | without monitor ev/s | with monitor ev/s | change |", "|---|---|---|---|"]
        for without, with_ in zip(mon[::2], mon[1::2], strict=True):
            change = (f"{(with_.rate / without.rate - 1) * 100:+.1f} %" if without.complete and with_.complete
                      else "-")
            lines.append(f"| {without.feed} | {_f(without.rate)} | {_f(with_.rate)} | {change} |")
    else:
        lines.append("(not run)")
    lines += ["", "## Event-to-snapshot latency at half the engine's per-event peak", ""]
    if lat:
        lines += [f"Background: {lat[0].rate:,} events/s of single events ({bg.source if bg else '-'}); probes "
                  f"every {PROBE_INTERVAL * 1000:.0f} ms at {PROBE_SITE} (no background there); "
                  f"RWE_MIN_CELL_COUNT={lat[0].min_cell_count} for these runs (see README).", "",
                  "| aggregate coalesce_seconds | rate ev/s | measured s | probes | seen | p50 ms | p99 ms | mean ms "
                  "| max ms | p50 first -> last tenth ms | late events | peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for x in lat:
            lines.append(f"| {x.coalesce:.1f} | {x.rate:,} | {x.seconds:.0f} | {x.probes} | {x.received} | {_f(x.p50)} "
                         f"| {_f(x.p99)} | {_f(x.mean)} | {_f(x.max)} | {_f(x.first_p50)} -> {_f(x.last_p50)} "
                         f"| {x.late:,} | {nb._fmt_rss(x.rss_mb)} |")
    else:
        lines.append("(not run)")
    lines += ["", "## Ascertain state per active patient", ""]
    if state or any(t.state.get("patients") for t in tp):
        lines += ["| measured | patients | facts / patient | published obs / patient | changelog snapshot B / patient "
                  "| in memory B / patient |", "|---|---|---|---|---|---|"]
        ws = next((t.state for t in (engine_c, engine_s) if t and t.state.get("patients")), {})
        if ws and ws.get("patients"):
            n = ws["patients"]
            which = "container" if engine_c and ws is engine_c.state else "per-event"
            lines.append(f"| engine worker after the {which} run (ascertain stage's trackers) | {n:,} | "
                         f"{ws['facts'] / n:.1f} | {ws['published'] / n:.1f} | {ws['snapshot_bytes'] / n:,.0f} | - |")
        for mode, label in (("tracemalloc", "in-process, tracemalloc (bytes held by the trackers)"),
                            ("rss", "in-process, RSS growth (includes allocator slack)")):
            s = state.get(mode)
            if not s or not s.get("patients"):
                continue
            n = s["patients"]
            mem = s["traced_bytes"] if mode == "tracemalloc" else s["rss_delta_bytes"]
            lines.append(f"| {label} | {n:,} | {s['facts'] / n:.1f} | {s['published'] / n:.1f} | "
                         f"{s['snapshot_bytes'] / n:,.0f} | {mem / n:,.0f} |")
        tm = state.get("tracemalloc", {})
        if tm.get("frozen_patients") is not None:
            lines += ["", f"Of those patients {tm['hot_patients']:,} were unpacked (the RWE_HOT_PATIENTS most recently "
                      f"touched per partition) and {tm['frozen_patients']:,} packed, at "
                      f"{tm['frozen_bytes'] / max(tm['frozen_patients'], 1):,.0f} B of packed bytes each."]
        top = state.get("tracemalloc", {}).get("top_sites") or []
        pats = state.get("tracemalloc", {}).get("patients") or 1
        if top:
            lines += ["", "Largest allocation sites still held (tracemalloc, engine code only), bytes per patient: "
                      + "; ".join(f"`{site}` {size / pats:,.0f}" for site, size in top) + "."]
    else:
        lines.append("(not run)")
    lines += ["", "## Ratios and targets", ""]
    if engine_s and engine_s.complete:
        verdict = "met" if engine_s.rate >= 10_000 else "NOT met"
        lines.append(f"- Whole pipeline, one worker process, per-event feed: {engine_s.rate:,.0f} events/s "
                     f"(target >= 10,000 events/s: {verdict}).")
    if engine_c and engine_c.complete:
        verdict = "met" if engine_c.rate >= 10_000 else "NOT met"
        lines.append(f"- Whole pipeline, one worker process, containers of 500: {engine_c.rate:,.0f} events/s "
                     f"(target >= 10,000 events/s: {verdict}).")
    if naive and naive.complete:
        for t in (engine_s, engine_c):
            if t and t.complete:
                verdict = "met" if t.rate >= 5 * naive.rate else "NOT met"
                caveat = (f" But {t.late:,} events came to ascertain late and were not applied: that run did "
                          "less work, so this ratio overstates it." if t.late else "")
                lines.append(f"- Engine ({t.feed}) / naive Faust pipeline: {t.rate / naive.rate:.1f}x "
                             f"({t.rate:,.0f} vs {naive.rate:,.0f} events/s; target >= 5x: {verdict}).{caveat}")
        rss_e = engine_s.rss_mb[0] if engine_s and engine_s.rss_mb else float("nan")
        rss_n = naive.rss_mb[0] if naive.rss_mb else float("nan")
        lines.append(f"- Peak RSS, per-event feed: engine {rss_e:.0f} MB vs naive {rss_n:.0f} MB "
                     f"({rss_e / rss_n:.2f}x; the naive run had {naive.events_in:,} events, the engine "
                     f"{engine_s.events_in if engine_s else 0:,}).")
    for without, with_ in zip(mon[::2], mon[1::2], strict=True):
        if without.complete and with_.complete:
            cost = 1 - with_.rate / without.rate
            lines.append(f"- Monitor stage, {without.feed}: {cost * 100:.1f} % of the pipeline's events/s "
                         f"(target <= 10 %: {'met' if cost <= 0.10 else 'NOT met'}).")
    for x in lat:
        verdict = "met" if x.p99 < 1000 else "NOT met"
        lines.append(f"- Latency, coalesce {x.coalesce:.1f} s at {x.rate:,} events/s: p50 {_f(x.p50)} ms, "
                     f"p99 {_f(x.p99)} ms (target p99 < 1 s: {verdict}).")
    t = state.get("tracemalloc") if state else None
    if t and t.get("patients"):
        mem, snap = t["traced_bytes"] / t["patients"], t["snapshot_bytes"] / t["patients"]
        lines.append(f"- State per active patient: {snap:,.0f} B serialised (target <= 1,024: "
                     f"{'met' if snap <= 1024 else 'NOT met'}), {mem:,.0f} B in memory (traced; target <= 1,024: "
                     f"{'met' if mem <= 1024 else 'NOT met'}).")
    notes = [n for t in (*tp, *mon) for n in t.notes] + [n for x in lat for n in x.notes]
    if notes:
        lines += ["", "## Problems seen in this run", "", *[f"- {n}" for n in notes]]
    return "\n".join([*head, "", *lines])


PROBE_INTERVAL = 0.1


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke check (< 2 min): 20k events, 8 s latency phases")
    parser.add_argument("--events", type=int, default=None, help="feed size (default 190,000; quick 20,000)")
    parser.add_argument("--naive-events", type=int, default=None,
                        help="events fed to the naive Faust pipeline (default 25,000; quick 5,000): it runs at a "
                        "few hundred events/s; a shorter feed, if anything, flatters it")
    parser.add_argument("--latency-seconds", type=float, default=None, help="measured seconds per latency phase "
                        "(default 30; quick 8)")
    parser.add_argument("--coalesce", type=float, nargs="+", default=[1.0, 0.5],
                        help="aggregate coalesce_seconds of the latency runs (default 1.0 0.5)")
    parser.add_argument("--latency-rate", type=int, default=None,
                        help="background rate (default: half the engine's per-event throughput measured in this run)")
    parser.add_argument("--only", choices=["T", "M", "L", "S"], nargs="+", default=None, help="run only these parts")
    parser.add_argument("--results", type=Path, default=None, help="write the results here (default: "
                        "benchmarks/RESULTS-pipeline.md for a full run, nothing for --quick)")
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.quick else 190_000)
    naive_events = args.naive_events or (5_000 if args.quick else 25_000)
    seconds = args.latency_seconds or (8.0 if args.quick else 30.0)
    only = set(args.only or ["T", "M", "L", "S"])
    # A quick or partial run never replaces the record of a full one.
    results_path = args.results or (None if args.quick or args.only else RESULTS_DOC)
    argv0 = Path(sys.argv[0])
    shown = str(argv0.resolve().relative_to(ROOT)) if argv0.resolve().is_relative_to(ROOT) else sys.argv[0]
    command = "python " + " ".join([shown, *sys.argv[1:]])
    signal.signal(signal.SIGTERM, nb._on_sigterm)
    wall0 = time.monotonic()
    tp: list[Throughput] = []
    mon: list[Throughput] = []
    lat: list[Latency] = []
    state: dict[str, Any] = {}
    bg: LatencyFeed | None = None
    naive_feed: feeds.Feed | None = None
    try:
        log(f"building the feed ({events:,} events, {FEED_DAYS} days)")
        feed = simulated(events)
        feed.build_containers()
        log(f"feed: {feed.events:,} events, {feed.expected_out:,} valid distinct, {len(feed.containers)} containers")
        if "T" in only:
            log("T. throughput, whole pipeline")
            tp.append(run_throughput("engine", feed, per_event=False))
            tp.append(run_throughput("engine", feed, per_event=True, one_partition=True))
            tp.append(run_throughput("engine", feed, per_event=True))
            naive_feed = feed.head(naive_events)
            tp.append(run_throughput("naive Faust", naive_feed, per_event=True, one_partition=True))
        if "M" in only:
            log("M. what the monitor stage costs: the engine without and with it, same feed, alternating")
            for per_event in (False, True):
                for pipeline in ("engine", ENGINE_MONITORED):
                    mon.append(run_throughput(pipeline, feed, per_event=per_event, one_partition=per_event))
        if "L" in only:
            peak = next((t.rate for t in tp if t.pipeline == "engine" and t.feed == PER_EVENT_ONE and t.complete),
                        None)
            rate = args.latency_rate or (int(round(peak / 2, -2)) if peak else 2000)
            # Dense enough that event time moves <= ~6 days per wall second (probe margins are days).
            need = max(int(rate * (seconds + 20) * 1.2), 61 * rate)
            log(f"L. latency at {rate:,} events/s (half of {peak or float('nan'):,.0f}); building the background "
                f"({need:,} events)")
            bg = LatencyFeed(need)
            per_day = len(bg.background) / max(bg.span_days, 1)
            log(f"  background: {len(bg.background):,} events over {bg.span_days:.0f} days of event time "
                f"({per_day:.0f} per day: {rate / per_day:.1f} days of event time per second)")
            for coalesce in args.coalesce:
                lat.append(run_latency(bg, rate, seconds, coalesce, PROBE_INTERVAL))
        if "S" in only:
            per_site = getattr(feed, "per_site", round(events / EVENTS_PER_PATIENT_SITE))
            log(f"S. ascertain state per patient, in-process ({per_site} patients per site, the same feed)")
            state = run_state_size(per_site)
            t = state["tracemalloc"]
            log(f"  {t['patients']:,} patients: snapshot {t['snapshot_bytes'] / t['patients']:,.0f} B/patient, "
                f"traced {t['traced_bytes'] / t['patients']:,.0f} B/patient, RSS growth "
                f"{state['rss']['rss_delta_bytes'] / max(state['rss']['patients'], 1):,.0f} B/patient")
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        nb.cleanup()
        return 130
    finally:
        nb.cleanup()
    wall = time.monotonic() - wall0
    text = report(tp, mon, lat, state, nb.machine(), feed, naive_feed, bg, command, wall)
    print("\n" + text)
    if results_path is not None:
        results_path.write_text("# Whole pipeline benchmark: results\n\n"
                                "Produced by `benchmarks/pipeline_bench.py` (see README.md in this folder for what "
                                "each number means). Absolute rates move between machines; compare the ratios, "
                                "measured side by side in one run.\n\n" + text + "\n")
        log(f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
