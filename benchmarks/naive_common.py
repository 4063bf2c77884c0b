"""What the naive Faust baselines share: the import path and the fetch-wait patch.

faust-streaming 0.15.3 hard-codes the aiokafka consumer's ``fetch_max_wait_ms=1500``
with no setting; importing this module replaces ``aiokafka.AIOKafkaConsumer``, in the
baseline's own process only, by a subclass that waits ``BENCH_FETCH_WAIT_MS`` (10 ms,
the engine's ``fetch.wait.max.ms``). Without it Faust's latency is ~1.5 s by construction.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: a compiled install of streams wins over the tree

import aiokafka  # noqa: E402

FETCH_WAIT_MS = int(os.environ.get("BENCH_FETCH_WAIT_MS", "10"))
PREFIX = os.environ.get("BENCH_TOPIC_PREFIX", "rwe.")
PARTITIONS = int(os.environ.get("BENCH_PARTITIONS", "2"))
STARTED_FILE = os.environ.get("BENCH_STARTED_FILE")
_Original = aiokafka.AIOKafkaConsumer


class _LowWaitConsumer(_Original):  # type: ignore[misc, valid-type]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "fetch_max_wait_ms" in kwargs:
            kwargs["fetch_max_wait_ms"] = FETCH_WAIT_MS
        super().__init__(*args, **kwargs)


aiokafka.AIOKafkaConsumer = _LowWaitConsumer
