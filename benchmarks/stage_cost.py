"""CPU cost of each stage in-process, without Kafka: where the pipeline's time goes.

The whole-pipeline benchmark (pipeline_bench.py) measures events/s through the broker;
this one feeds the same stages the benchmark feed directly, one stage after the other
(normalise over every event, then ascertain over normalise's output, then aggregate over
ascertain's), in batches as the worker would take them, and reports process CPU time per
raw event, per stage. Broker and client costs are left out, so the figures show the
stages' own Python. ``--profile STAGE`` prints a cProfile of one stage; the collector's
time per generation is reported too.

    python benchmarks/stage_cost.py                      # 190,000 events, one per message (~1 min)
    python benchmarks/stage_cost.py --profile ascertain  # the same, with a profile of ascertain

With ``--containers`` normalise reads containers of 500. The later stages then see
normalise's output in one pass, in a different order from the pipeline's interleaved
rounds (fewer intermediate observations), so their figures are lower than in a pipeline.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import time
from collections import Counter, defaultdict
from itertools import zip_longest
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.append(str(path))  # after site-packages: a compiled install of streams wins over the tree

import feed as feeds  # noqa: E402

from streams.clinical.clock import now_us  # noqa: E402
from streams.runtime import topics  # noqa: E402
from streams.runtime.memory import InMemoryDriver, ManualClock, MemoryMessage, MemoryProducer, MemoryTopics  # noqa: E402
from streams.runtime.stage import Stage  # noqa: E402
from streams.runtime.worker import SurvivorFreezer  # noqa: E402
from streams.settings import Settings  # noqa: E402

STAGES = ("normalise", "ascertain", "aggregate")


class WorkerClock(ManualClock):
    """The real clocks, as a worker's stages have: aggregate coalesces its snapshots over real
    seconds and normalise judges event times against now. The driver's manual clock, which
    moves only when told, would have aggregate compute each indicator once per partition,
    and normalise dead-letter some of the feed's last events as in the future (the clock stands
    at 2026-01-01T00:00, two hours before the simulated feed ends)."""

    def wall_us(self) -> int:
        return now_us()

    def monotonic(self) -> float:
        return time.monotonic()


class DeferredProducer(MemoryProducer):
    """A MemoryProducer that lands its records on the topics only on flush, after the clock
    stops: MemoryTopics partitions keys with a pure-Python murmur2 (~12 us a 64-byte key)
    that librdkafka does in C, and that is no cost of the stage's."""

    def __init__(self, topics_: MemoryTopics) -> None:
        super().__init__(topics_)
        self._pending: list[tuple[str, bytes | None, bytes | None, int]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int = -1,
                **_: Any) -> None:
        self._pending.append((topic, value, key, partition))

    def flush(self, timeout: float = 0.0) -> int:
        for topic, value, key, partition in self._pending:
            super().produce(topic, value, key, partition)
        self._pending.clear()
        return 0


class CollectorClock:
    """Time the cyclic garbage collector spends, per generation."""

    def __init__(self) -> None:
        self.seconds: defaultdict[int, float] = defaultdict(float)
        self.runs: Counter[int] = Counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.runs[info["generation"]] += 1


def run(driver: InMemoryDriver, name: str, batches: list[list[MemoryMessage]], profile: bool) -> float:
    """Every batch through process, tick and checkpoint, as a worker round does (survivors
    frozen after each, as the worker does); CPU seconds. Driven here rather than by
    ``driver.run()``, which interleaves the stages and freezes nothing, so that one stage is
    timed (and profiled) at a time; its outputs reach the driver's topics afterwards."""
    stage: Stage = driver.stages[name]
    survivors = SurvivorFreezer()
    producer = DeferredProducer(driver.topics)
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    for batch in batches:
        stage.process(batch, producer)
        stage.tick(producer)
        stage.checkpoint(producer)
        survivors.after_round()
    stage.tick(producer)
    if profiler:
        profiler.disable()
    seconds = time.process_time() - started
    producer.flush()
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    return seconds


def consumed(driver: InMemoryDriver, topic: str) -> list[MemoryMessage]:
    """A topic's records as a consumer of all its partitions takes them: the partitions in
    turn, near enough the order they were produced in."""
    logs = driver.topics.log(driver.settings.topic(topic))
    return [m for row in zip_longest(*logs) for m in row if m is not None]


def batched(items: list[MemoryMessage], size: int) -> list[list[MemoryMessage]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=190_000, help="feed size (default 190,000)")
    parser.add_argument("--containers", action="store_true", help="normalise reads containers of 500 events")
    parser.add_argument("--batch", type=int, default=2000, help="messages per batch (RWE_BATCH_SIZE; default 2000)")
    parser.add_argument("--profile", choices=["normalise", "ascertain", "aggregate"], help="cProfile one stage")
    args = parser.parse_args()

    os.environ.setdefault("RWE_MODE", "dev")
    settings = Settings.from_env(os.environ)
    # The stages as their build(context) make them, on in-memory topics (changelogs empty).
    driver = InMemoryDriver(settings, STAGES, clock=WorkerClock())
    feed = feeds.simulated(args.events)
    # Every raw record on one partition, in feed order (as before the in-memory driver); the
    # later stages read their inputs as their upstream stage partitioned them.
    for key, value in feed.build_containers() if args.containers else feed.singles:
        driver.pipe(topics.RAW, value, key, partition=0)
    per_batch = max(1, args.batch // feeds.CONTAINER_EVENTS) if args.containers else args.batch
    clock = CollectorClock()
    gc.collect()
    gc.freeze()
    gc.callbacks.append(clock)

    seconds: dict[str, float] = {}
    seconds["normalise"] = run(driver, "normalise", batched(consumed(driver, topics.RAW), per_batch),
                               args.profile == "normalise")
    normalised = consumed(driver, topics.NORMALISED)
    seconds["ascertain"] = run(driver, "ascertain", batched(normalised, args.batch), args.profile == "ascertain")
    observations = consumed(driver, topics.OBSERVATIONS)
    seconds["aggregate"] = run(driver, "aggregate", batched(observations, args.batch), args.profile == "aggregate")
    gc.callbacks.remove(clock)
    snapshots = len(driver.messages(topics.INDICATORS))

    print(f"feed: {feed.events:,} events ({feed.source}), {'containers of 500' if args.containers else '1 per message'}"
          f"; {len(normalised):,} normalised, {len(observations):,} observations, {snapshots:,} snapshots")
    print(f"{'stage':10} {'CPU s':>7} {'us / raw event':>15}")
    for name, s in seconds.items():
        print(f"{name:10} {s:7.2f} {1e6 * s / feed.events:15.1f}")
    total = sum(seconds.values())
    print(f"{'total':10} {total:7.2f} {1e6 * total / feed.events:15.1f}   ({feed.events / total:,.0f} events/s of CPU)")
    for generation in sorted(clock.seconds):
        print(f"garbage collector, generation {generation}: {clock.runs[generation]:,} runs, "
              f"{clock.seconds[generation]:.2f} s")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, {when}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
