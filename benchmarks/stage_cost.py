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
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import feed as feeds  # noqa: E402

from streams.runtime import topics  # noqa: E402
from streams.runtime.partitioning import partition_for  # noqa: E402
from streams.wire import formats as wire  # noqa: E402
from streams.wire import schemas  # noqa: E402


class Message:
    """What the stages read of a confluent_kafka Message."""

    __slots__ = ("_key", "_offset", "_partition", "_topic", "_value")

    def __init__(self, topic: str, value: bytes, key: bytes | None, partition: int, offset: int) -> None:
        self._topic, self._value, self._key, self._partition, self._offset = topic, value, key, partition, offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return self._topic

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, int(time.time() * 1000))

    def headers(self) -> None:
        return None


class RecordingProducer:
    """Keeps what a stage produces, by topic."""

    def __init__(self) -> None:
        self.out: dict[str, list[tuple[bytes | None, bytes, int | None]]] = {}

    def produce(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                **_: Any) -> None:
        self.out.setdefault(topic, []).append((key, value, partition))

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        return 0


class CollectorClock:
    """Time the cyclic garbage collector spends, per generation."""

    def __init__(self) -> None:
        self.seconds: Counter[int] = Counter()
        self.runs: Counter[int] = Counter()
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.runs[info["generation"]] += 1


def run(stage: Any, batches: list[list[Message]], profile: bool) -> tuple[RecordingProducer, float]:
    """Every batch through process, tick and checkpoint, as a worker round does (survivors
    frozen after each, as the worker does); CPU seconds."""
    from streams.runtime.worker import SurvivorFreezer

    survivors = SurvivorFreezer()
    producer = RecordingProducer()
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
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(40)
    return producer, seconds


def messages(topic: str, produced: list[tuple[bytes | None, bytes, int | None]], partitions: int) -> list[Message]:
    return [Message(topic, value, key, partition if partition is not None else partition_for(key or b"", partitions),
                    offset) for offset, (key, value, partition) in enumerate(produced)]


def batched(items: list[Message], size: int) -> list[list[Message]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=190_000, help="feed size (default 190,000)")
    parser.add_argument("--containers", action="store_true", help="normalise reads containers of 500 events")
    parser.add_argument("--batch", type=int, default=2000, help="messages per batch (RWE_BATCH_SIZE; default 2000)")
    parser.add_argument("--profile", choices=["normalise", "ascertain", "aggregate"], help="cProfile one stage")
    args = parser.parse_args()

    os.environ.setdefault("RWE_MODE", "dev")
    from agents.aggregate import AggregateStage
    from agents.ascertain import AscertainStage
    from agents.normalise import NormaliseStage
    from streams.catalogue.definitions import load_catalogue
    from streams.clinical.codes import CodeMap
    from streams.clinical.normaliser import ClinicalNormaliser
    from streams.clinical.pseudonym import Pseudonymiser
    from streams.runtime.worker import Engine
    from streams.settings import Settings

    settings = Settings.from_env(os.environ)
    engine = Engine.create(settings)
    partitions = settings.partitions

    def no_changelog() -> Any:
        raise RuntimeError("in-process: nothing to restore")

    # As the stages' build() make them, minus the broker (stores are created on first use).
    catalogue, metrics = load_catalogue(), engine.metrics
    stages = {
        "normalise": NormaliseStage(
            settings, ClinicalNormaliser(engine.sites, CodeMap.load(), Pseudonymiser(engine.key),
                                         settings.future_tolerance), metrics,
            decoder=wire.Decoder(schemas.CLINICAL_EVENT), encoder=wire.Encoder(schemas.NORMALISED_EVENT),
            dlq_encoder=wire.Encoder(schemas.DEAD_LETTER), consumer_factory=no_changelog),
        "ascertain": AscertainStage(
            settings, catalogue, engine.sites, metrics, decoder=wire.Decoder(schemas.NORMALISED_EVENT),
            encoder=wire.Encoder(schemas.OUTCOME_OBSERVATION), output_partitions=partitions,
            consumer_factory=no_changelog),
        "aggregate": AggregateStage(
            settings, catalogue, metrics, decoder=wire.Decoder(schemas.OUTCOME_OBSERVATION),
            encoder=wire.Encoder(schemas.INDICATOR_SNAPSHOT), network_encoder=wire.Encoder(schemas.INDICATOR_SNAPSHOT),
            dlq_encoder=wire.Encoder(schemas.DEAD_LETTER), consumer_factory=no_changelog),
    }
    feed = feeds.simulated(args.events)
    raw = settings.topic(topics.RAW)
    if args.containers:
        inputs = [Message(raw, value, key, 0, i) for i, (key, value) in enumerate(feed.build_containers())]
        per_batch = max(1, args.batch // feeds.CONTAINER_EVENTS)
    else:
        inputs = [Message(raw, value, key, 0, i) for i, (key, value) in enumerate(feed.singles)]
        per_batch = args.batch
    clock = CollectorClock()
    gc.collect()
    gc.freeze()
    gc.callbacks.append(clock)

    seconds: dict[str, float] = {}
    produced, seconds["normalise"] = run(stages["normalise"], batched(inputs, per_batch), args.profile == "normalise")
    normalised = messages(settings.topic(topics.NORMALISED), produced.out.get(settings.topic(topics.NORMALISED), []),
                          partitions)
    produced, seconds["ascertain"] = run(stages["ascertain"], batched(normalised, args.batch),
                                         args.profile == "ascertain")
    observations = messages(settings.topic(topics.OBSERVATIONS),
                            produced.out.get(settings.topic(topics.OBSERVATIONS), []), partitions)
    produced, seconds["aggregate"] = run(stages["aggregate"], batched(observations, args.batch),
                                         args.profile == "aggregate")
    gc.callbacks.remove(clock)
    snapshots = len(produced.out.get(settings.topic(topics.INDICATORS), []))

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
