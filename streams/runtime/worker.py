"""The worker: the stages of the topology (or a subset) on the configured Kafka cluster, in one thread."""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer

from streams.catalogue.definitions import load_catalogue
from streams.catalogue.sites import load_sites
from streams.runtime.collector import MonitorSource, OutcomeCollector, SnapshotSource
from streams.runtime.metrics import EngineMetrics
from streams.runtime.runner import StageRunner, consumer_config, run_round
from streams.runtime.stage import Stage, StageContext
from streams.runtime.topics import topic_partitions
from streams.runtime.topology import STAGES, build_stage
from streams.settings import Settings
from streams.state.changelog import KafkaChangelog

log = logging.getLogger(__name__)


class SurvivorFreezer:
    """Keeps CPython's cyclic garbage collector off the stages' long-lived state.

    The stages hold millions of objects (dedupe entries, facts, observations) and the
    collector scans all of them whenever its oldest generation grows by a quarter: on the
    benchmark feed that took 20 % of the worker's time, in pauses of up to 260 ms. Their
    state forms no reference cycles (a full collection after a run finds no cyclic
    garbage), so what survives a round is frozen (``gc.freeze``: out of the collector's
    reach; reference counting still frees it) and collections look at the round's young
    objects only. In case a cycle does outlive a round, the frozen objects get one full
    collection whenever their number has doubled since the last (counted once a minute:
    counting walks them all).
    """

    MIN_FULL = 1_000_000
    CHECK_SECONDS = 60.0

    def __init__(self) -> None:
        self._full_at = 2 * max(gc.get_freeze_count(), self.MIN_FULL)
        self._check_at = time.monotonic() + self.CHECK_SECONDS

    def after_round(self) -> None:
        gc.freeze()
        if time.monotonic() < self._check_at:
            return
        self._check_at = time.monotonic() + self.CHECK_SECONDS
        if gc.get_freeze_count() > self._full_at:
            gc.unfreeze()
            gc.collect()
            gc.freeze()
            self._full_at = 2 * max(gc.get_freeze_count(), self.MIN_FULL)


def kafka_context(settings: Settings) -> StageContext:
    """The context of stages running on the configured Kafka cluster."""
    sites = load_sites(settings.sites_file)
    key, dev_key = settings.resolve_key()

    def changelog_consumer() -> Consumer:  # group-less: reads a changelog on restore
        return Consumer(consumer_config(settings, f"{settings.group_id}.restore", **{"enable.partition.eof": False}))

    return StageContext(settings, sites, key, EngineMetrics(sites=sites), KafkaChangelog(changelog_consumer),
                        functools.partial(topic_partitions, settings), dev_key=dev_key)


class Worker:
    """Runs stages until stopped: all in one thread, a round of one batch each at a time
    (:func:`streams.runtime.runner.run_round`). Measured against a thread per stage: 20-35 % more
    events/s, since the stages share one interpreter lock anyway and one round makes all
    their outputs durable together (benchmarks/RESULTS-pipeline.md)."""

    def __init__(self, context: StageContext, stages: Sequence[str] = STAGES,
                 on_batch: Callable[[str, int], None] | None = None) -> None:
        self.context = context
        self.collector: OutcomeCollector | None = None
        self.runners = []
        for name in stages:
            stage = build_stage(name, context)
            self._expose(stage)
            self.runners.append(StageRunner(stage, context.settings, context.metrics,
                                            on_batch=functools.partial(on_batch, name) if on_batch else None))
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.errors: list[BaseException] = []

    def _expose(self, stage: Stage) -> None:
        """Let /metrics read the stage's in-process results (indicator snapshots, monitor
        readings) at scrape time; the collector is registered with the first such stage."""
        if not isinstance(stage, SnapshotSource | MonitorSource):
            return
        if self.collector is None:
            self.collector = OutcomeCollector(load_catalogue(), self.context.sites)
            self.context.metrics.registry.register(self.collector)
        self.collector.attach(stage)

    def start(self) -> None:
        # What start-up built (catalogue, code maps, schemas, compiled codecs, modules) lives
        # as long as the process: out of the collector's way (see SurvivorFreezer).
        gc.collect()
        gc.freeze()
        thread = threading.Thread(target=self._run, name="stages", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _run(self) -> None:
        runners = self.runners
        # Each stage may wait for input this long when the last round found nothing anywhere.
        wait = self.context.settings.batch_wait / len(runners)
        try:
            for runner in runners:
                runner.open()
            idle = False
            survivors = SurvivorFreezer()
            while not self._stop.is_set():
                idle = run_round(runners, wait if idle else 0.0) == 0
                survivors.after_round()
        except BaseException as exc:  # surfaced to the CLI, which prints one line
            log.error("stages %s stopped: %s", ", ".join(r.stage.name for r in runners), exc)
            self.errors.append(exc)
        finally:
            for runner in runners:
                runner.close()

    def wait_assigned(self, timeout: float = 30.0) -> bool:
        """Block until every stage has its partitions (the group join is done)."""
        return all(r.assigned.wait(timeout) for r in self.runners)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)
