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
from rich.console import Console
from rich.live import Live

from streams.catalogue.definitions import load_catalogue
from streams.embedded.broker import EmbeddedBroker, free_port, port_in_use
from streams.embedded.demo_view import LiveView, metric_total
from streams.errors import BrokerUnavailable
from streams.runtime.runner import producer_config
from streams.runtime.topics import RAW, create_topics
from streams.runtime.worker import Worker, kafka_context
from streams.settings import DEV, Settings

DEMO_SHIFT_SITE = "NL-AMC"
# NL-AMC's simulated heart-failure mortality sits below the case-mix expectation (site effect
# -0.29 log odds), so doubling its own odds brings it to only ~1.5x the expected odds, where a
# CUSUM tuned to a doubling (R_A = 2) drifts down. Odds x3 puts the site at about twice the
# expected odds: the deterioration the chart is designed for. It starts a third of the way in,
# so a one-minute demo (a year of care) has months of it (README, Monitoring).
DEMO_SHIFT_ODDS = 3.0


class FeedProgress:
    """What the publisher thread has done, read by the live view."""

    def __init__(self) -> None:
        self.messages = 0
        self.sim_time: datetime | None = None
        self.done = False
        self.error: BaseException | None = None


class FeedStopped(Exception):
    """The demo is stopping: the simulated feed ends where it is."""


def run_demo(args: argparse.Namespace, settings_from: Callable[..., Settings]) -> int:
    from streams.simulator import Shift, SimulationConfig, generate, publish

    console = Console()
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # keep the live view clean
        for name in ("streams", "agents"):
            logging.getLogger(name).setLevel(logging.WARNING)
    start = datetime(2025, 1, 1, tzinfo=UTC)
    config = SimulationConfig(
        seed=args.seed, patients_per_site=args.patients_per_site, start=start, days=args.days,
        shifts=(Shift(DEMO_SHIFT_SITE, "hf_mortality_30d", DEMO_SHIFT_ODDS, start + timedelta(days=args.days // 3)),))
    console.print(f"Generating the simulated feed ({args.days} days, {args.patients_per_site} patients per "
                  f"site, seed {args.seed}) ...")
    messages, manifest = generate(config)

    with EmbeddedBroker(port=args.port or None) as broker:
        settings = settings_from(args, broker=broker.bootstrap, mode=DEV, session_timeout_ms=6000)
        create_topics(settings)
        context = kafka_context(settings)
        metrics_port = args.metrics_port if args.metrics_port is not None else settings.metrics_port
        if metrics_port and port_in_use(metrics_port):
            metrics_port = free_port()
        if metrics_port:
            context.metrics.serve(metrics_port, settings.metrics_host)
        console.print(f"Tansu broker on {broker.bootstrap}; metrics on http://127.0.0.1:{metrics_port}/metrics; "
                      "dev mode: a throw-away pseudonymisation key (production needs RWE_PSEUDONYM_KEY).")
        worker = Worker(context)  # every stage
        aggregate = next(r.stage for r in worker.runners if r.stage.name == "aggregate")
        monitor = next(r.stage for r in worker.runners if r.stage.name == "monitor")
        worker.start()

        if not worker.wait_assigned(60):
            raise BrokerUnavailable("the worker did not join its consumer group within 60 s")
        progress = FeedProgress()
        producer = Producer(producer_config(settings, **{"linger.ms": 10}))
        stop_feed = threading.Event()

        def feed() -> None:
            try:
                def on_progress(n: int) -> None:
                    if stop_feed.is_set():
                        raise FeedStopped
                    progress.messages = n
                    progress.sim_time = datetime.fromtimestamp(messages[n - 1].event_time_us / 1e6, UTC)

                publish(messages, producer, settings.topic(RAW), speed=args.speed, on_progress=on_progress)
            except FeedStopped:
                pass
            except BaseException as exc:
                progress.error = exc
            finally:
                progress.done = True

        feeder = threading.Thread(target=feed, name="simulated-feed", daemon=True)
        feeder.start()
        stopping: list[int] = []
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda s, _f: stopping.append(s))
        expected_total = manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
        began = time.monotonic()
        registry = context.metrics.registry
        view = LiveView(load_catalogue(), context.sites, registry, aggregate.latest_snapshots,  # type: ignore[attr-defined]
                        window=args.window or None, alerts=monitor.open_alerts)  # type: ignore[attr-defined]

        def screen() -> Any:
            return view.render(progress.messages, len(messages), progress.sim_time)

        def processed() -> float:
            return metric_total(registry, "rwe_stage_events_in_total", stage="normalise")

        try:
            if args.no_live:
                while not stopping and worker.alive and not _finished(args, began, progress, processed(),
                                                                       expected_total):
                    time.sleep(1.0)
                    console.print(f"feed {progress.sim_time:%Y-%m-%d} " if progress.sim_time else "feed -",
                                  f"published {progress.messages}/{len(messages)}, processed {processed():.0f}")
            else:
                with Live(screen(), console=console, refresh_per_second=2, screen=False) as live:
                    while not stopping and worker.alive and not _finished(args, began, progress, processed(),
                                                                           expected_total):
                        time.sleep(0.5)
                        live.update(screen())
            time.sleep(1.5)  # let the last coalesced snapshots out
            final = screen()  # before stopping: a stopped stage no longer owns its snapshots
            detected = detection(monitor.open_alerts(), config.shifts[0])  # type: ignore[attr-defined]
        finally:
            stop_feed.set()
            feeder.join(10)
            worker.stop()
            producer.purge()
            producer.close()
        if args.no_live:
            console.print(final)
        if progress.error is not None:
            console.print(f"[red]feed stopped: {progress.error}")
        out = metric_total(registry, "rwe_stage_events_out_total", stage="normalise")
        console.print(f"Processed {processed():.0f} of {expected_total} events: {out:.0f} normalised (expected "
                      f"{manifest.valid}), {metric_total(registry, 'rwe_duplicates_total', stage='normalise'):.0f} "
                      f"duplicates dropped (expected {manifest.duplicates}), "
                      f"{metric_total(registry, 'rwe_dead_letters_total'):.0f} dead letters (expected "
                      f"{sum(manifest.malformed.values())}). Injected: {DEMO_SHIFT_SITE} heart failure 30-day "
                      f"mortality odds x{DEMO_SHIFT_ODDS:g} from {config.shifts[0].start:%Y-%m-%d}.")
        console.print(detected)
    return 0 if not worker.errors else 3


def detection(alerts: list[dict[str, Any]], shift: Any) -> str:
    """One line: whether the injected shift raised its CUSUM alert, and how long after it began."""
    start_us = int(shift.start.timestamp() * 1e6)
    for a in alerts:
        if (a["indicator"], a["scope_id"], a["method"]) == (shift.outcome, shift.site, "cusum_up"):
            days = (a["first_seen"] - start_us) / 86_400e6
            return (f"Detected: {a['alert_id']} ({a['severity']}), {days:.0f} days of event time after the shift "
                    f"began (O/E {a['observed_expected'] or 'suppressed'}).")
    return f"Not detected: no open cusum_up alert for {shift.outcome} at {shift.site}."


def _finished(args: argparse.Namespace, began: float, progress: FeedProgress, processed: float,
              expected: int) -> bool:
    if args.duration and time.monotonic() - began >= args.duration:
        return True
    return progress.done and processed >= expected
