"""``rwe demo``: the whole engine on one machine, with a live view.

Starts the embedded broker, creates the topics, runs the worker and /metrics, and
publishes a simulated hospital feed for all four disease areas paced in event time
(a year of care in a minute by default), then shows what the engine does with it.
Stops when the feed is processed, after ``--duration``, or on Ctrl-C, leaving no
process or port behind.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Producer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from streams.broker import EmbeddedBroker, free_port, port_in_use
from streams.engine import Engine, Worker
from streams.runner import producer_config
from streams.settings import DEV, Settings
from streams.topics import RAW, create_topics

DEMO_SHIFT_SITE = "NL-AMC"


class FeedProgress:
    """What the publisher thread has done, read by the live view."""

    def __init__(self) -> None:
        self.messages = 0
        self.sim_time: datetime | None = None
        self.done = False
        self.error: BaseException | None = None


def run_demo(args: argparse.Namespace, settings_from: Callable[..., Settings]) -> int:
    from streams.simulator import Shift, SimulationConfig, generate, publish

    console = Console()
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # keep the live view clean
        for name in ("streams", "agents"):
            logging.getLogger(name).setLevel(logging.WARNING)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    config = SimulationConfig(
        seed=args.seed, patients_per_site=args.patients_per_site, start=start, days=args.days,
        shifts=(Shift(DEMO_SHIFT_SITE, "hf_mortality_30d", 2.0, start + timedelta(days=args.days // 2)),))
    console.print(f"Generating the simulated feed ({args.days} days, {args.patients_per_site} patients per "
                  f"site, seed {args.seed}) ...")
    messages, manifest = generate(config)

    with EmbeddedBroker(port=args.port or None) as broker:
        settings = settings_from(args, broker=broker.bootstrap, mode=DEV, session_timeout_ms=6000)
        create_topics(settings)
        engine = Engine.create(settings)
        metrics_port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
        if metrics_port and port_in_use(metrics_port):
            metrics_port = free_port()
        if metrics_port:
            engine.metrics.serve(metrics_port, settings.metrics_host)
        console.print(f"Tansu broker on {broker.bootstrap}; metrics on http://127.0.0.1:{metrics_port}/metrics; "
                      "dev mode: a throw-away pseudonymisation key (production needs RWE_PSEUDONYM_KEY).")
        worker = Worker(engine, ["normalise"])
        worker.start()

        progress = FeedProgress()
        producer = Producer(producer_config(settings, **{"linger.ms": 10}))

        def feed() -> None:
            try:
                def on_progress(n: int) -> None:
                    progress.messages = n
                    progress.sim_time = datetime.fromtimestamp(messages[n - 1].event_time_us / 1e6, UTC)

                publish(messages, producer, settings.topic(RAW), speed=args.speed, on_progress=on_progress)
            except BaseException as exc:
                progress.error = exc
            finally:
                progress.done = True

        feeder = threading.Thread(target=feed, name="simulated-feed", daemon=True)
        feeder.start()
        stopping: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda s, _f: stopping.append(s))
        expected_total = manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
        began = time.monotonic()
        try:
            view = _View(engine, manifest, progress, len(messages))
            with Live(view.render(), console=console, refresh_per_second=4,
                      auto_refresh=not args.no_live, transient=False) as live:
                while not stopping and worker.alive:
                    time.sleep(0.25 if not args.no_live else 1.0)
                    live.update(view.render())
                    if args.no_live:
                        console.print(view.line())
                    if args.duration and time.monotonic() - began >= args.duration:
                        break
                    if progress.done and view.processed() >= expected_total:
                        live.update(view.render())
                        break
        finally:
            worker.stop()
        if progress.error is not None:
            console.print(f"[red]feed stopped: {progress.error}")
        console.print(_View(engine, manifest, progress, len(messages)).verdict(expected_total))
    return 0 if not worker.errors else 3


class _View:
    def __init__(self, engine: Engine, manifest: Any, progress: FeedProgress, total_messages: int) -> None:
        self.engine = engine
        self.manifest = manifest
        self.progress = progress
        self.total_messages = total_messages
        self.registry = engine.metrics.registry
        self.started = time.monotonic()

    def _sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def _sum(self, name: str, **match: str) -> float:
        total = 0.0
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                    total += s.value
        return total

    def processed(self) -> int:
        return int(self._sample("rwe_stage_events_in_total", stage="normalise"))

    def line(self) -> str:
        return (f"published {self.progress.messages}/{self.total_messages}  normalised "
                f"{self._sample('rwe_stage_events_out_total', stage='normalise'):.0f}  duplicates "
                f"{self._sum('rwe_duplicates_total'):.0f}  dead letters {self._sum('rwe_dead_letters_total'):.0f}")

    def render(self) -> Group:
        sim = self.progress.sim_time.strftime("%Y-%m-%d") if self.progress.sim_time else "-"
        elapsed = time.monotonic() - self.started
        out = self._sample("rwe_stage_events_out_total", stage="normalise")
        head = Table.grid(padding=(0, 2))
        head.add_row("simulated date", sim, "wall time", f"{elapsed:.0f} s",
                     "published", f"{self.progress.messages}/{self.total_messages}")
        head.add_row("normalised", f"{out:.0f}", "rate", f"{out / max(elapsed, 1e-9):.0f} ev/s",
                     "duplicates dropped", f"{self._sum('rwe_duplicates_total'):.0f}")
        sites = Table(title="events per site (normalised)", expand=False)
        for col in ("site", "admissions", "diagnoses", "labs", "procedures+meds", "PROMs", "deaths",
                    "unmapped", "dead letters"):
            sites.add_column(col, justify="right" if col != "site" else "left")
        for site in sorted(self.engine.sites):
            def n(*types: str, s: str = site) -> str:
                return f"{sum(self._sample('rwe_site_events_total', site=s, event_type=t) for t in types):.0f}"
            sites.add_row(site, n("ADMISSION"), n("DIAGNOSIS"), n("LAB_RESULT"), n("PROCEDURE", "MEDICATION"),
                          n("PROM_RESPONSE"), n("DEATH"), f"{self._sum('rwe_unmapped_codes_total', site=site):.0f}",
                          f"{self._sum('rwe_dead_letters_total', site=site):.0f}")
        dlq = Table(title="dead letters by reason", expand=False)
        dlq.add_column("reason")
        dlq.add_column("count", justify="right")
        reasons: dict[str, float] = {}
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name == "rwe_dead_letters_total":
                    reasons[s.labels["reason"]] = reasons.get(s.labels["reason"], 0) + s.value
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            dlq.add_row(reason, f"{count:.0f}")
        return Group(head, sites, dlq)

    def verdict(self, expected_total: int) -> str:
        m = self.manifest
        out = self._sample("rwe_stage_events_out_total", stage="normalise")
        dups = self._sum("rwe_duplicates_total")
        dead = self._sum("rwe_dead_letters_total")
        return (f"Processed {self.processed()} of {expected_total} events: {out:.0f} normalised "
                f"(expected {m.valid}), {dups:.0f} duplicates dropped (expected {m.duplicates}), "
                f"{dead:.0f} dead letters (expected {sum(m.malformed.values())}).")
