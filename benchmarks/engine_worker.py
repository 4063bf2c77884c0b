"""The engine under test: streams.runtime.worker.Worker running the real NormaliseStage, in its own process.

Configured like ``rwe worker --stages normalise`` through RWE_* environment variables.
The only addition is timing: the wall-clock time at which the stage is first handed a
batch is written to ``BENCH_STARTED_FILE``, so throughput excludes process start-up
and the consumer-group join (reported separately by the benchmark).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: a compiled install of streams wins over the tree


def main() -> int:
    from streams.runtime.worker import Worker, kafka_context
    from streams.settings import Settings

    settings = Settings.from_env(os.environ)
    engine = kafka_context(settings)
    worker = Worker(engine, ["normalise"])
    started_file = os.environ.get("BENCH_STARTED_FILE")
    for runner in worker.runners:
        # The moment the stage's code is first handed a batch (its take returns one; the stages
        # themselves may be compiled, with methods that cannot be wrapped).
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
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.start()
    print("engine worker ready", flush=True)
    while not stop.is_set() and worker.alive:
        stop.wait(0.2)
    worker.stop()
    if worker.errors:
        print(f"engine worker error: {worker.errors[0]}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
