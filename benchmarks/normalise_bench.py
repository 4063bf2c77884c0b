"""Normalise stage vs a naive per-event Faust agent, side by side in one run.

    python benchmarks/normalise_bench.py [--events N] [--quick] [--no-results]

Scenarios, each pipeline run on a fresh embedded Tansu broker (topics with 2 partitions):
  A  batched ingress: N events pre-produced as Avro containers of 500 events per message;
  B  per-event ingress: the same N events, one single-object record per message
     (the engine with 1 and with 2 worker processes; the naive Faust agent);
  C  latency at a fixed rate (2,000 and 1,000 events/s): event-to-output p50/p99, and
     Tansu's own produce-to-consume floor at the same rate.
See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.append(p)  # after site-packages: a compiled install of streams wins over the tree

import feed as feeds  # noqa: E402
import numpy as np  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from streams.embedded.broker import EmbeddedBroker, free_port  # noqa: E402
from streams.runtime import topics  # noqa: E402
from streams.runtime.runner import producer_config  # noqa: E402
from streams.runtime.topics import create_topics  # noqa: E402
from streams.settings import DEV, Settings  # noqa: E402

KEY = "bench-pseudonymisation-key-" + "x" * 20
PARTITIONS = 2
PREFIX = "bench."
PYTHON = sys.executable
LOG_DIR = Path(tempfile.gettempdir()) / "rwe-bench-logs"

# --------------------------------------------------------------------------- cleanup
_procs: list[subprocess.Popen[bytes]] = []
_brokers: list[EmbeddedBroker] = []


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def cleanup() -> None:
    while _procs:
        _terminate(_procs.pop(), grace=5.0)
    while _brokers:
        broker = _brokers.pop()
        with contextlib.suppress(Exception):
            broker.__exit__(None, None, None)


def _on_sigterm(*_: object) -> None:
    raise KeyboardInterrupt


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- infrastructure
def fresh_broker() -> tuple[EmbeddedBroker, Settings]:
    broker = EmbeddedBroker()
    _brokers.append(broker)
    broker.start()
    settings = Settings(mode=DEV, broker=broker.bootstrap, topic_prefix=PREFIX, partitions=PARTITIONS,
                        pseudonym_key=KEY, metrics_port=0, session_timeout_ms=6000,
                        group_id=f"bench-{uuid.uuid4().hex[:8]}", log_level="WARNING")
    create_topics(settings)
    return broker, settings


def stop_broker(broker: EmbeddedBroker) -> None:
    if broker in _brokers:
        _brokers.remove(broker)
    broker.__exit__(None, None, None)


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Pipeline:
    name: str
    procs: list[subprocess.Popen[bytes]]
    started_files: list[Path]
    spawned: float
    tmp: Path
    logs: list[Path]

    def first_event_time(self) -> float | None:
        times = []
        for f in self.started_files:
            with contextlib.suppress(OSError, ValueError):
                times.append(float(f.read_text()))
        return min(times) if times else None

    def first_event_times(self) -> list[float | None]:
        times: list[float | None] = []
        for f in self.started_files:
            try:
                times.append(float(f.read_text()))
            except (OSError, ValueError):
                times.append(None)
        return times

    def exits(self) -> list[str]:
        """One line per process that has exited: its code and last error line."""
        out = []
        for proc, logf in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                lines = [ln for ln in logf.read_text(errors="replace").splitlines() if "error" in ln.lower()]
                out.append(f"{self.name} pid {proc.pid} exited with {proc.returncode}"
                           + (f": {lines[-1].strip()[:300]}" if lines else ""))
        return out

    def check_alive(self) -> None:
        for proc, logf in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                tail = logf.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{self.name} exited with {proc.returncode}:\n{tail}")

    def peak_rss(self) -> list[float]:
        return [peak_rss_mb(p.pid) or float("nan") for p in self.procs]

    def stop(self, keep_logs: bool = False) -> None:
        for proc in self.procs:
            _terminate(proc)
            if proc in _procs:
                _procs.remove(proc)
        for proc, logf in zip(self.procs, self.logs, strict=True):
            if keep_logs or proc.returncode not in (0, -signal.SIGTERM):
                kept = LOG_DIR / f"{self.name.replace(' ', '_')}-{proc.pid}.log"
                LOG_DIR.mkdir(parents=True, exist_ok=True)
                shutil.copy(logf, kept)
                log(f"  {self.name} (pid {proc.pid}, exit {proc.returncode}): log kept in {kept}")
        shutil.rmtree(self.tmp, ignore_errors=True)


def _spawn(cmd: list[str], env: dict[str, str], logf: Path) -> subprocess.Popen[bytes]:
    with logf.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    _procs.append(proc)
    return proc


def start_engine(settings: Settings, workers: int = 1) -> Pipeline:
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    procs, files, logs = [], [], []
    spawned = time.time()
    for i in range(workers):
        started = tmp / f"started-{i}"
        logf = tmp / f"worker-{i}.log"
        env = {**os.environ, "RWE_MODE": DEV, "RWE_BROKER": settings.broker,
               "RWE_TOPIC_PREFIX": PREFIX, "RWE_PARTITIONS": str(PARTITIONS), "RWE_PSEUDONYM_KEY": KEY,
               "RWE_SESSION_TIMEOUT_MS": "6000", "RWE_GROUP_ID": settings.group_id, "RWE_METRICS_PORT": "0",
               "RWE_LOG_LEVEL": "WARNING", "BENCH_STARTED_FILE": str(started)}
        procs.append(_spawn([PYTHON, str(BENCH / "engine_worker.py")], env, logf))
        files.append(started)
        logs.append(logf)
    return Pipeline(f"engine x{workers}", procs, files, spawned, tmp, logs)


def start_naive(settings: Settings, fetch_wait_ms: int = 10) -> Pipeline:
    tmp = Path(tempfile.mkdtemp(prefix="bench-faust-"))
    started = tmp / "started"
    logf = tmp / "faust.log"
    env = {**os.environ, "BENCH_BROKER": settings.broker,
           "BENCH_APP_ID": f"naive-{uuid.uuid4().hex[:8]}", "BENCH_DATADIR": str(tmp / "data"),
           "BENCH_TOPIC_PREFIX": PREFIX, "BENCH_PARTITIONS": str(PARTITIONS), "BENCH_KEY": KEY,
           "BENCH_STARTED_FILE": str(started), "BENCH_FETCH_WAIT_MS": str(fetch_wait_ms),
           "BENCH_WEB_PORT": str(free_port())}
    spawned = time.time()
    proc = _spawn([PYTHON, str(BENCH / "naive_faust.py"), "worker", "-l", "warn"], env, logf)
    return Pipeline("naive Faust", [proc], [started], spawned, tmp, [logf])


def produce_all(settings: Settings, messages: list[tuple[bytes, bytes]]) -> float:
    producer = Producer(producer_config(settings, **{"linger.ms": 20}))
    topic = settings.topic(topics.RAW)
    started = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(120)
    if remaining:
        raise RuntimeError(f"{remaining} raw messages not delivered")
    return time.perf_counter() - started


# --------------------------------------------------------------------------- watching output
def _event_id(value: bytes, offset: int = 10) -> str | None:
    """The first field (event_id, an Avro string) of a single-object ClinicalEvent/NormalisedEvent."""
    try:
        shift, n, i = 0, 0, offset
        while True:
            b = value[i]
            n |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                break
            shift += 7
        length = (n >> 1) ^ -(n & 1)
        return value[i:i + length].decode()
    except (IndexError, UnicodeDecodeError):
        return None


class Watcher(threading.Thread):
    """Counts (and optionally time-stamps by event id) every record of the watched topics."""

    def __init__(self, settings: Settings, topic_names: list[str], track_ids: bool = False) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(settings.kafka_config(**{
            "group.id": f"watch-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
            "fetch.wait.max.ms": 10, "enable.partition.eof": False}))
        parts = []
        for name in topic_names:
            meta = self.consumer.list_topics(name, timeout=10).topics[name]
            parts += [TopicPartition(name, p, OFFSET_BEGINNING) for p in meta.partitions]
        self.consumer.assign(parts)
        self.counts = dict.fromkeys(topic_names, 0)
        self.track_ids = track_ids
        self.received: dict[str, float] = {}
        self.target: tuple[str, int] | None = None
        self.reached_at: float | None = None  # wall-clock time the target count was reached
        self.last_progress = time.monotonic()
        self.series: list[tuple[float, int]] = []  # (wall-clock time, count of the target topic)
        self._stop_flag = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_flag.is_set():
                batch = self.consumer.consume(10000, 0.05)
                if not batch:
                    continue
                now_wall, now_mono = time.time(), time.monotonic()
                self.last_progress = now_mono
                for m in batch:
                    if m.error():
                        continue
                    self.counts[m.topic()] += 1
                    if self.track_ids:
                        eid = _event_id(m.value())
                        if eid is not None and eid not in self.received:
                            self.received[eid] = now_mono
                if self.target:
                    self.series.append((now_wall, self.counts[self.target[0]]))
                    if self.reached_at is None and self.counts[self.target[0]] >= self.target[1]:
                        self.reached_at = now_wall
        finally:
            self.consumer.close()

    def count_at(self, wall: float) -> int:
        count = 0
        for t, n in self.series:
            if t > wall:
                break
            count = n
        return count

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(10)


# --------------------------------------------------------------------------- A and B: throughput
@dataclass
class Throughput:
    pipeline: str
    feed: str
    events_in: int
    messages_in: int
    expected_out: int = 0
    out: int = 0
    dlq: int = 0
    rate: float = float("nan")          # events in / (last output - first event handed to the pipeline)
    startup_s: float = float("nan")     # spawn -> first event handed to the pipeline's code
    wall_s: float = float("nan")        # spawn -> last output
    rss_mb: list[float] = field(default_factory=list)
    complete: bool = False
    steady_rate: float = float("nan")   # several workers: rate once the last one has started
    notes: list[str] = field(default_factory=list)


def run_throughput(pipeline: str, feed: feeds.Feed, per_event: bool, workers: int = 1,
                   timeout: float = 600.0) -> Throughput:
    messages = feed.singles if per_event else feed.containers
    result = Throughput(pipeline if workers == 1 else f"{pipeline} x{workers}",
                        "1 event/message" if per_event else f"{feeds.CONTAINER_EVENTS} events/message",
                        feed.events, len(messages), feed.expected_out)
    broker, settings = fresh_broker()
    running: Pipeline | None = None
    watcher: Watcher | None = None
    try:
        produce_s = produce_all(settings, messages)
        log(f"  {result.pipeline}, {result.feed}: pre-produced {len(messages):,} messages in {produce_s:.1f} s")
        out_topic, dlq_topic = settings.topic(topics.NORMALISED), settings.topic(topics.DLQ)
        watcher = Watcher(settings, [out_topic, dlq_topic])
        watcher.target = (out_topic, feed.expected_out)
        watcher.start()
        running = start_engine(settings, workers) if pipeline == "engine" else start_naive(settings)
        deadline = time.monotonic() + timeout
        next_note = time.monotonic() + 5
        while watcher.reached_at is None:
            if time.monotonic() > next_note:
                next_note += 5
                log(f"    ... {watcher.counts[out_topic]:,} out")
            running.check_alive()
            now = time.monotonic()
            if now > deadline:
                log(f"  timed out after {timeout:.0f} s")
                break
            first = running.first_event_time()
            if first is not None and now - watcher.last_progress > 30:
                log("  no output for 30 s: stopping this run")
                break
            time.sleep(0.05)
        time.sleep(1.0)  # let the last dead letters arrive for the count; see the workers survive the run
        result.rss_mb = running.peak_rss()
        result.notes += running.exits()
        result.out, result.dlq = watcher.counts[out_topic], watcher.counts[dlq_topic]
        first = running.first_event_time()
        if watcher.reached_at is not None and first is not None:
            result.complete = True
            result.rate = feed.events / (watcher.reached_at - first)
            result.startup_s = first - running.spawned
            result.wall_s = watcher.reached_at - running.spawned
            starts = running.first_event_times()
            if workers > 1 and all(starts):
                last = max(t for t in starts if t is not None)
                done_before = watcher.count_at(last)
                if watcher.reached_at > last and done_before < feed.expected_out:
                    result.steady_rate = ((feed.expected_out - done_before) / (watcher.reached_at - last)
                                          * feed.events / feed.expected_out)
        elif first is None:
            result.notes.append(f"{result.pipeline}: never handed an event")
        else:
            result.notes.append(f"{result.pipeline}: incomplete, {result.out:,} of {feed.expected_out:,} "
                                "normalised events came out")
        log(f"  {result.pipeline}: {result.rate:,.0f} events/s, out {result.out:,}/{feed.expected_out:,}, "
            f"dlq {result.dlq:,}, start-up {result.startup_s:.1f} s, peak RSS "
            f"{', '.join(f'{r:.0f}' for r in result.rss_mb)} MB"
            + (f", after the last worker joined {result.steady_rate:,.0f} events/s" if workers > 1 else ""))
        for note in result.notes:
            log(f"  NOTE: {note}")
    finally:
        if watcher is not None:
            watcher.stop()
        if running is not None:
            running.stop(keep_logs=not result.complete)
        stop_broker(broker)
    return result


# --------------------------------------------------------------------------- C: latency
@dataclass
class Latency:
    pipeline: str
    rate: int
    seconds: float
    sent: int = 0
    received: int = 0
    p50: float = float("nan")
    p99: float = float("nan")
    mean: float = float("nan")
    first_p50: float = float("nan")  # p50 of the first and the last tenth of the phase:
    last_p50: float = float("nan")   # growing from one to the other means the pipeline fell behind
    achieved_rate: float = float("nan")


_valid_cache: dict[int, list[dict[str, Any]]] = {}


def _valid_records(feed: feeds.Feed, limit: int = 20_000) -> list[dict[str, Any]]:
    """Records of the feed the normaliser accepts (latency is measured on events that come out)."""
    if id(feed) not in _valid_cache:
        from streams.catalogue.sites import load_sites
        from streams.clinical.clock import now_us
        from streams.clinical.codes import CodeMap
        from streams.clinical.normaliser import ClinicalNormaliser
        from streams.clinical.pseudonym import Pseudonymiser
        from streams.vocabulary.dead_letters import Rejected

        normaliser = ClinicalNormaliser(load_sites(), CodeMap.load(), Pseudonymiser(KEY.encode()), 3600.0)
        now = now_us()
        good = []
        for record in feed.records[:limit]:
            try:
                normaliser.normalise(record, now)
            except Rejected:
                continue
            good.append(record)
        _valid_cache[id(feed)] = good
    return _valid_cache[id(feed)]


class _Events:
    """Valid events with fresh ids ``{tag}-{i}``, single-object encoded: (event id, key, value)."""

    def __init__(self, records: list[dict[str, Any]], tag: str) -> None:
        from streams.wire import formats as wire
        from streams.wire import schemas

        self.records, self.tag = records, tag
        self.encode = wire.Encoder(schemas.CLINICAL_EVENT).encode

    def __getitem__(self, i: int) -> tuple[str, bytes, bytes]:
        record = dict(self.records[i % len(self.records)])
        record["event_id"] = eid = f"{self.tag}-{i}"
        return eid, record["site_id"].encode(), self.encode(record)


def run_latency(pipeline: str, feed: feeds.Feed, rate: int, seconds: float, warmup_limit: float = 90.0) -> Latency:
    result = Latency(pipeline, rate, seconds)
    tag = uuid.uuid4().hex[:6]
    valid = _valid_records(feed)
    events = _Events(valid, f"L{tag}")
    measured = [events[i] for i in range(int(rate * seconds))]  # encoded before the clock starts
    warmup = _Events(valid, f"W{tag}")  # encoded as sent
    broker, settings = fresh_broker()
    running: Pipeline | None = None
    watcher: Watcher | None = None
    try:
        raw_topic = settings.topic(topics.RAW)
        watched = raw_topic if pipeline == "Tansu floor" else settings.topic(topics.NORMALISED)
        watcher = Watcher(settings, [watched], track_ids=True)
        watcher.start()
        if pipeline == "engine":
            running = start_engine(settings)
        elif pipeline == "naive Faust":
            running = start_naive(settings)
        producer = Producer(producer_config(settings, **{"linger.ms": 5}))
        sent: dict[str, float] = {}
        # Warm up at a trickle (100 events/s) until the pipeline answers, so start-up leaves no
        # backlog; then 3 s at the test rate; then measure.
        t0 = phase_t0 = last_check = time.monotonic()
        phase_rate, phase_sent = min(rate, 100), 0
        i = j = 0
        ramped_at: float | None = None
        measure_start: float | None = None
        while j < len(measured):
            now = time.monotonic()
            due = int((now - phase_t0) * phase_rate) + 1
            while phase_sent < due and j < len(measured):
                if measure_start is None:
                    eid, key, value = warmup[i]
                    i += 1
                else:
                    eid, key, value = measured[j]
                    j += 1
                phase_sent += 1
                producer.produce(raw_topic, value=value, key=key)
                sent[eid] = time.monotonic()
            producer.poll(0)
            if measure_start is None:
                if ramped_at is None and watcher.received:
                    ramped_at = phase_t0 = now
                    phase_rate, phase_sent = rate, 0
                elif ramped_at is not None and now - ramped_at >= 3.0:
                    measure_start = phase_t0 = now
                    phase_sent = 0
                elif ramped_at is None and now - t0 > warmup_limit:
                    raise RuntimeError(f"{pipeline} produced nothing within {warmup_limit:.0f} s")
            if running is not None and now - last_check > 1.0:
                running.check_alive()
                last_check = now
            time.sleep(0.0005)
        measure_end = time.monotonic()
        producer.flush(30)
        ids = [e for e, _k, _v in measured]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum(1 for e in ids[-200:] if e in watcher.received) < 200:
            time.sleep(0.1)
        time.sleep(1.0)
        lat = np.array([(watcher.received[e] - sent[e]) * 1000 for e in ids if e in watcher.received])
        result.sent, result.received = len(ids), len(lat)
        result.achieved_rate = len(ids) / (measure_end - (measure_start or measure_end))
        if len(lat):
            result.p50, result.p99 = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
            result.mean = float(lat.mean())
            tenth = max(1, len(lat) // 10)
            result.first_p50 = float(np.percentile(lat[:tenth], 50))
            result.last_p50 = float(np.percentile(lat[-tenth:], 50))
        log(f"  {pipeline} at {rate:,}/s: p50 {result.p50:.0f} ms, p99 {result.p99:.0f} ms "
            f"({result.received:,}/{result.sent:,} received, sent at {result.achieved_rate:,.0f}/s)")
    finally:
        if watcher is not None:
            watcher.stop()
        if running is not None:
            running.stop()
        stop_broker(broker)
    return result


# --------------------------------------------------------------------------- report
def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import confluent_kafka
    import faust

    return {"cores (nproc)": str(os.cpu_count()), "CPU": model, "Python": platform.python_version(),
            "faust-streaming": faust.__version__, "confluent-kafka": confluent_kafka.__version__,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


def _fmt_rate(x: float) -> str:
    return "-" if x != x else f"{x:,.0f}"


def _fmt_rss(xs: list[float]) -> str:
    return " + ".join(f"{x:.0f}" for x in xs) if xs else "-"


def report(tp: list[Throughput], lat: list[Latency], meta: dict[str, str], feed: feeds.Feed,
           command: str, wall: float) -> str:
    by = {(t.pipeline, t.feed): t for t in tp}
    naive_b = next((t for t in tp if t.pipeline == "naive Faust"), None)
    lines = ["## Throughput (scenarios A and B)", "",
             "| scenario | pipeline | feed | events in | events/s | x naive per-event | normalised out | dead letters "
             "| start-up s | wall s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in tp:
        scenario = "A batched" if "500" in t.feed else "B per-event"
        ratio = (f"{t.rate / naive_b.rate:.1f}" if naive_b and naive_b.complete and t.complete else "-")
        out = f"{t.out:,}" + ("" if t.out == t.expected_out else f" (expected {t.expected_out:,})")
        rate = _fmt_rate(t.rate) + (f" ({_fmt_rate(t.steady_rate)} after the join)" if t.steady_rate == t.steady_rate
                                    else "")
        lines.append(f"| {scenario} | {t.pipeline} | {t.feed} | {t.events_in:,} | {rate} | {ratio} | {out} | "
                     f"{t.dlq:,} | {t.startup_s:.1f} | {t.wall_s:.1f} | {_fmt_rss(t.rss_mb)} |")
    lines += ["", "## Latency (scenario C): event produced -> normalised event consumed", "",
              "| pipeline | rate ev/s | sent | received | p50 ms | p99 ms | mean ms "
              "| p50 first -> last tenth ms | kept up |",
              "|---|---|---|---|---|---|---|---|---|"]
    for x in lat:
        kept = ("yes" if x.received == x.sent and x.last_p50 - x.first_p50 < 100 and x.p50 < 1000
                else "NO (fell behind)")
        lines.append(f"| {x.pipeline} | {x.rate:,} | {x.sent:,} | {x.received:,} | {x.p50:.0f} | {x.p99:.0f} | "
                     f"{x.mean:.0f} | {x.first_p50:.0f} -> {x.last_p50:.0f} | {kept} |")
    # Ratios and targets.
    lines += ["", "## Ratios (engine / naive) and targets", ""]
    engine_a = by.get(("engine", f"{feeds.CONTAINER_EVENTS} events/message"))
    engine_b = by.get(("engine", "1 event/message"))
    engine_b2 = by.get(("engine x2", "1 event/message"))
    if naive_b and naive_b.complete:
        if engine_a and engine_a.complete:
            verdict = "met" if engine_a.rate >= 20_000 and engine_a.rate >= 5 * naive_b.rate else "NOT met"
            lines.append(f"- A: engine batched {engine_a.rate:,.0f} events/s in one worker = "
                         f"{engine_a.rate / naive_b.rate:.1f}x the naive per-event agent "
                         f"(target >= 20,000 events/s and >= 5x: {verdict}).")
        if engine_b and engine_b.complete:
            lines.append(f"- B: engine per-event {engine_b.rate:,.0f} events/s = "
                         f"{engine_b.rate / naive_b.rate:.1f}x the naive agent ({naive_b.rate:,.0f} events/s).")
            if engine_a and engine_a.complete:
                need = engine_a.rate / engine_b.rate
                lines.append(f"- Per-event feed at the batched rate ({engine_a.rate:,.0f}/s) needs "
                             f"{need:.1f} engine worker processes' worth of per-event throughput "
                             f"(one worker takes {engine_b.rate:,.0f}/s).")
        if engine_b2 and engine_b2.complete and engine_b and engine_b.complete:
            lines.append(f"- B: two engine workers in one group on this 2-core machine: {engine_b2.rate:,.0f} "
                         f"events/s including the second worker's group join, {engine_b2.steady_rate:,.0f} "
                         f"events/s once both run ({engine_b2.steady_rate / engine_b.rate:.2f}x one worker; "
                         "the broker and the benchmark's reader share the same 2 cores).")
        rss_e = engine_b.rss_mb[0] if engine_b and engine_b.rss_mb else float("nan")
        rss_n = naive_b.rss_mb[0] if naive_b.rss_mb else float("nan")
        lines.append(f"- Peak RSS, per-event feed: engine {rss_e:.0f} MB vs naive {rss_n:.0f} MB "
                     f"({rss_e / rss_n:.2f}x).")
    for rate in sorted({x.rate for x in lat}, reverse=True):
        row = {x.pipeline: x for x in lat if x.rate == rate}
        e, n, f = row.get("engine"), row.get("naive Faust"), row.get("Tansu floor")
        if e and f:
            extra = f"; naive p50 {n.p50:.0f} ms, p99 {n.p99:.0f} ms" if n else ""
            ratio = f" (engine/naive p50 {e.p50 / n.p50:.2f}, p99 {e.p99 / n.p99:.2f})" if n else ""
            lines.append(f"- {rate:,} events/s: engine p50 {e.p50:.0f} ms, p99 {e.p99:.0f} ms vs Tansu's one-hop "
                         f"floor p50 {f.p50:.0f} ms, p99 {f.p99:.0f} ms (the engine path is two hops: raw -> "
                         f"worker, normalised -> reader){extra}{ratio}.")
    notes = [n for t in tp for n in t.notes]
    if notes:
        lines += ["", "## Problems seen in this run", "", *[f"- {n}" for n in notes]]
    head = [f"- {k}: {v}" for k, v in meta.items()]
    head += [f"- command: `{command}`", f"- feed: {feed.events:,} events ({feed.source}), {feed.patients():,} "
             f"patients, {feed.expected_out:,} valid distinct events (the rest: exact resends and malformed "
             f"records for the dead-letter topic); {len(feed.containers):,} container messages",
             f"- benchmark wall time: {wall:.0f} s"]
    return "\n".join([*head, "", *lines])


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=None, help="events in A and B (default 200,000; quick 20,000)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 20k events, one 5 s latency phase")
    parser.add_argument("--latency-seconds", type=float, default=None, help="measured seconds per latency phase")
    parser.add_argument("--rates", type=int, nargs="+", default=None, help="latency rates (default 2000 1000)")
    parser.add_argument("--naive-events", type=int, default=None,
                        help="events fed to the naive agent in B (default: 60,000 in a full run, all with --quick); "
                        "it runs at ~2k events/s, and Tansu slows as a partition grows, so a shorter feed "
                        "flatters it, if anything")
    parser.add_argument("--no-two-workers", action="store_true", help="skip the 2-worker per-event run")
    parser.add_argument("--only", choices=["A", "B", "C"], nargs="+", default=None, help="run only these")
    parser.add_argument("--results", type=Path, default=None, help="write the table here (default: "
                        "benchmarks/RESULTS.md for a full run, nothing for --quick)")
    args = parser.parse_args(argv)
    events = args.events or (20_000 if args.quick else 200_000)
    seconds = args.latency_seconds or (5.0 if args.quick else 20.0)
    rates = args.rates or ([2000] if args.quick else [2000, 1000])
    only = set(args.only or ["A", "B", "C"])
    results_path = args.results or (None if args.quick else BENCH / "RESULTS.md")
    command = "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute()
                                     and ROOT in Path(sys.argv[0]).parents else sys.argv[0], *sys.argv[1:]])
    signal.signal(signal.SIGTERM, _on_sigterm)
    wall0 = time.monotonic()
    tp: list[Throughput] = []
    lat: list[Latency] = []
    try:
        log(f"building the feed ({events:,} events)")
        feed = feeds.simulated(events)
        feed.build_containers()
        log(f"feed: {feed.events:,} events, {feed.expected_out:,} valid distinct, {len(feed.containers)} containers;"
            f" {feed.source}")
        if "A" in only:
            log("A. batched ingress (Avro containers of 500 events per message)")
            tp.append(run_throughput("engine", feed, per_event=False))
        if "B" in only or "A" in only:
            log("B. per-event ingress (one event per message); the naive agent's only feed, so also A's baseline")
            tp.append(run_throughput("engine", feed, per_event=True))
            if not args.no_two_workers and not args.quick:
                tp.append(run_throughput("engine", feed, per_event=True, workers=2))
            naive_n = args.naive_events or (events if args.quick else 60_000)
            tp.append(run_throughput("naive Faust", feed.head(naive_n), per_event=True))
        if "C" in only:
            for rate in rates:
                log(f"C. latency at {rate:,} events/s, {seconds:.0f} s measured after warm-up")
                for pipeline in ("Tansu floor", "engine", "naive Faust"):
                    lat.append(run_latency(pipeline, feed, rate, seconds))
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        cleanup()
        return 130
    finally:
        cleanup()
    wall = time.monotonic() - wall0
    text = report(tp, lat, machine(), feed, command, wall)
    print("\n" + text)
    if results_path is not None:
        results_path.write_text(_results_doc(text))
        log(f"wrote {results_path}")
    return 0


def _results_doc(table: str) -> str:
    return ("# Normalise stage benchmark: results\n\n"
            "Produced by `benchmarks/normalise_bench.py` (see README.md in this folder for what each number "
            "means). Absolute rates move between machines; compare the ratios, measured side by side in one "
            "run.\n\n" + table + "\n\n## Whole pipeline (normalise + ascertain + aggregate)\n\n"
            "See [RESULTS-pipeline.md](RESULTS-pipeline.md), written by `python benchmarks/pipeline_bench.py`.\n")


if __name__ == "__main__":
    sys.exit(main())
