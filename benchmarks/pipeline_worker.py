"""The engine under test for the whole pipeline: one streams.runtime.worker.Worker process running
normalise + ascertain + aggregate, configured by RWE_* like ``rwe worker``.

Additions, all outside the engine's code:

* ``BENCH_STARTED_FILE``: wall-clock time at which normalise is first handed a batch.
* ``BENCH_EXPECT`` (normalised events the feed must produce) and ``BENCH_PROGRESS_FILE``:
  from the Worker's ``on_batch`` callback, the wall-clock times at which normalise has read
  ``BENCH_EVENTS`` events, ascertain has read ``BENCH_EXPECT`` events, and aggregate has read
  every observation ascertain published by then (counters: rwe_stage_events_in_total and
  rwe_stage_events_out_total of the worker's own registry, the ones /metrics serves).
* ``BENCH_COALESCE_SECONDS``: sets the aggregate stage's ``coalesce_seconds`` attribute.
* ``BENCH_STAGES``: the stages to run, space-separated (default ``normalise ascertain
  aggregate``; add ``monitor`` to measure what the monitors cost the pipeline).
* ``BENCH_STATE_FILE``: on SIGTERM (before stopping), the ascertain stage's trackers: patients, facts,
  published observations and the bytes of their changelog snapshot
  (``OutcomeTracker.snapshot()`` encoded as rwe.internal.AscertainDelta).
* /metrics is served on ``RWE_METRICS_PORT`` (the benchmark passes a free port).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: a compiled install of streams wins over the tree


def _write(path: str | None, data: Any) -> None:
    if path:
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def main() -> int:
    from streams.runtime.worker import Worker, kafka_context
    from streams.settings import Settings

    settings = Settings.from_env(os.environ)
    engine = kafka_context(settings)
    registry = engine.metrics.registry
    events = int(os.environ.get("BENCH_EVENTS", "0"))
    expect = int(os.environ.get("BENCH_EXPECT", "0"))
    progress_file = os.environ.get("BENCH_PROGRESS_FILE")
    progress: dict[str, float] = {}
    lock = threading.Lock()
    stages = os.environ.get("BENCH_STAGES", "normalise ascertain aggregate").split()
    monitor_observations = [0]  # observation records the monitor stage has read (it also reads site activity)

    def counter(name: str, stage: str) -> float:
        return registry.get_sample_value(name, {"stage": stage}) or 0.0

    def on_batch(stage: str, n: int) -> None:
        if not (expect and progress_file):
            return
        with lock:
            now = time.time()
            changed = False
            if "normalise_done" not in progress and counter("rwe_stage_events_in_total", "normalise") >= events:
                progress["normalise_done"] = now
                changed = True
            if "ascertain_done" not in progress and counter("rwe_stage_events_in_total", "ascertain") >= expect:
                progress["ascertain_done"] = now
                progress["observations"] = counter("rwe_stage_events_out_total", "ascertain")
                changed = True
            if ("ascertain_done" in progress and "aggregate_done" not in progress
                    and counter("rwe_stage_events_in_total", "aggregate") >= progress["observations"]):
                progress["aggregate_done"] = now
                changed = True
            if ("ascertain_done" in progress and "monitor" in stages and "monitor_done" not in progress
                    and monitor_observations[0] >= progress["observations"]):
                progress["monitor_done"] = now
                changed = True
            if changed:
                _write(progress_file, progress)

    worker = Worker(engine, stages, on_batch=on_batch)
    started_file = os.environ.get("BENCH_STARTED_FILE")
    coalesce = os.environ.get("BENCH_COALESCE_SECONDS")
    for runner in worker.runners:
        stage: Any = runner.stage
        if stage.name == "aggregate" and coalesce:
            stage.coalesce_seconds = float(coalesce)
        if stage.name == "monitor":
            def counted(wait, _original=runner.take, _topic=stage.in_topic):  # type: ignore[no-untyped-def]
                messages = _original(wait)
                monitor_observations[0] += sum(1 for m in messages if m.topic() == _topic)
                return messages

            runner.take = counted  # type: ignore[method-assign]
        if stage.name != "normalise":
            continue
        # The moment normalise's code is first handed a batch (its take returns one; the
        # stage itself may be compiled, with methods that cannot be wrapped).
        original = runner.take
        first: list[float] = []

        def timed(wait, _original=original, _first=first):  # type: ignore[no-untyped-def]
            batch = _original(wait)
            if batch and not _first:
                _first.append(time.time())
                if started_file:
                    Path(started_file).write_text(repr(_first[0]))
            return batch

        runner.take = timed  # type: ignore[method-assign]
    if settings.metrics_port:
        engine.metrics.serve(settings.metrics_port, settings.metrics_host)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    print("pipeline worker ready", flush=True)
    while not stop.is_set() and worker.alive:
        stop.wait(0.2)
    # Measured before the stop: stopping closes the consumers, whose revocation drops the state.
    # The benchmark stops the worker only after the run, when the stages are idle.
    _state(worker, os.environ.get("BENCH_STATE_FILE"))
    worker.stop()
    if worker.errors:
        print(f"engine worker error: {worker.errors[0]}", file=sys.stderr, flush=True)
        return 1
    return 0


def _state(worker: Any, path: str | None) -> None:
    """Size of the ascertain stage's state as it stands (after the run)."""
    if not path:
        return
    from streams.wire import formats as wire

    stage = next((r.stage for r in worker.runners if r.stage.name == "ascertain"), None)
    if stage is None:
        return
    encoder = wire.Encoder("rwe.internal.AscertainDelta")
    patients = facts = published = snapshot_bytes = records = 0
    found = getattr(stage, "trackers", None)  # PartitionedState: (partition, tracker) pairs
    trackers = [t for _p, t in found] if found is not None else list(stage._trackers.values())
    for tracker in trackers:
        p, f, o = tracker.stats()
        patients, facts, published = patients + p, facts + f, published + o
        for record in tracker.snapshot():
            snapshot_bytes += len(encoder.encode(record))
            records += 1
    _write(path, {"patients": patients, "facts": facts, "published": published,
                  "snapshot_bytes": snapshot_bytes, "snapshot_records": records})


if __name__ == "__main__":
    sys.exit(main())
