"""How long a Prometheus scrape of /metrics takes with every indicator, site and window of the demo.

Runs the demo's feed (default: 540 days, 600 patients per site, seed 7, not paced) through
normalise + ascertain + aggregate in one in-process Worker on a fresh embedded broker, waits
until the published snapshots settle, then times ``--scrapes`` HTTP GETs of /metrics
(wall clock, request to last byte, one at a time, as Prometheus does), and the CPU time
the whole process spent per scrape (the idle stages' polling included): the wall-clock
figure depends on what else the machine runs, the CPU figure much less.

The worker runs every stage (STAGES), the monitor stage included, so the scrape carries
the indicator values and the monitor statistics and alerts the demo's feed produces.

    .venv/bin/python benchmarks/scrape_bench.py [--days 540] [--patients-per-site 600] [--scrapes 50]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: a compiled install of streams wins over the tree

from confluent_kafka import Producer  # noqa: E402

from streams.embedded.broker import EmbeddedBroker, free_port  # noqa: E402
from streams.runtime.runner import producer_config  # noqa: E402
from streams.runtime.stage import StageContext  # noqa: E402
from streams.runtime.topics import RAW, create_topics  # noqa: E402
from streams.runtime.topology import STAGES  # noqa: E402
from streams.runtime.worker import Worker, kafka_context  # noqa: E402
from streams.settings import DEV, Settings  # noqa: E402
from streams.simulator import SimulationConfig, generate, publish  # noqa: E402


class FullCollections:
    """gc callback: how long each full collection took. A full collection pauses every
    thread of the worker; one that starts during a scrape lengthens it."""

    def __init__(self) -> None:
        self.ms: list[float] = []
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.ms.append((time.perf_counter() - self._started) * 1000)


def _sample(engine: StageContext, name: str, **labels: str) -> float:
    return engine.metrics.registry.get_sample_value(name, labels) or 0.0


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=540)
    parser.add_argument("--patients-per-site", type=int, default=600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()

    config = SimulationConfig(seed=args.seed, patients_per_site=args.patients_per_site,
                              start=datetime(2025, 1, 1, tzinfo=UTC), days=args.days)
    messages, manifest = generate(config)
    sent = manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
    print(f"feed: {sent} events ({args.days} days, {args.patients_per_site} patients per site)", flush=True)
    with EmbeddedBroker() as broker:
        settings = Settings(mode=DEV, broker=broker.bootstrap, session_timeout_ms=6000, metrics_port=0)
        create_topics(settings)
        engine = kafka_context(settings)
        worker = Worker(engine, STAGES)
        port = free_port()
        server = engine.metrics.serve(port)
        worker.start()
        try:
            started = time.monotonic()
            publish(messages, Producer(producer_config(settings)), settings.topic(RAW))
            _wait(lambda: _sample(engine, "rwe_stage_events_in_total", stage="normalise") >= sent, 900, "normalise")
            for before, stage in (("normalise", "ascertain"), ("ascertain", "aggregate")):
                _wait(lambda b=before, s=stage: _sample(engine, "rwe_stage_events_in_total", stage=s)
                      >= _sample(engine, "rwe_stage_events_out_total", stage=b), 900, stage)
            time.sleep(3)  # the last coalesced snapshots
            print(f"processed in {time.monotonic() - started:.0f} s", flush=True)
            url = f"http://127.0.0.1:{port}/metrics"
            full_collections = FullCollections()
            gc.callbacks.append(full_collections)
            times, cpu, body = [], [], b""
            for _ in range(args.scrapes):
                t0, c0 = time.perf_counter(), time.process_time()
                with urllib.request.urlopen(url, timeout=10) as response:
                    body = response.read()
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
        finally:
            gc.callbacks[:] = [c for c in gc.callbacks if not isinstance(c, FullCollections)]
            worker.stop()
            server.shutdown()
            server.server_close()
    lines = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    indicator_series = sum(line.startswith("rwe_indicator_") and not line.startswith("rwe_indicator_info")
                           for line in lines)
    monitor_series = sum(line.startswith(("rwe_monitor_", "rwe_alerts_open")) for line in lines)
    times_ms, cpu_ms = sorted(t * 1000 for t in times), sorted(c * 1000 for c in cpu)
    print(f"/metrics: {len(body) / 1024:.0f} KiB, {len(lines)} samples ({indicator_series} rwe_indicator_*, "
          f"{monitor_series} rwe_monitor_*/rwe_alerts_open)")
    print(f"scrape time over {len(times_ms)} scrapes: median {statistics.median(times_ms):.1f} ms, "
          f"p95 {times_ms[int(0.95 * (len(times_ms) - 1))]:.1f} ms, max {times_ms[-1]:.1f} ms; "
          f"CPU time of the process per scrape: median {statistics.median(cpu_ms):.1f} ms, "
          f"max {cpu_ms[-1]:.1f} ms; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"full (generation 2) garbage collections during the scrapes: {len(full_collections.ms)}, "
          f"{', '.join(f'{ms:.0f}' for ms in full_collections.ms) or '-'} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
