"""Two runs of one feed publish the same bytes, whatever the process's string-hash salt."""

from __future__ import annotations

import os
import subprocess
import sys

RUN = """
import hashlib
from datetime import UTC, datetime
from streams.runtime import topics
from streams.runtime.memory import InMemoryDriver
from streams.settings import DEV, Settings
from streams.simulator import SimulationConfig, generate

settings = Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0, partitions=2, batch_size=200)
messages, _ = generate(SimulationConfig(seed=11, patients_per_site=60, start=datetime(2025, 1, 1, tzinfo=UTC),
                                        days=300, duplicate_rate=0.02, late_rate=0.02, malformed_rate=0.01))
driver = InMemoryDriver(settings)
for m in messages:
    driver.pipe(topics.RAW, m.value, m.key)
driver.run()
driver.advance(2.0)
for topic in (topics.NORMALISED, topics.OBSERVATIONS, topics.INDICATORS, topics.NETWORK, topics.ALERTS,
              topics.DLQ):
    digest = hashlib.sha256()
    records = driver.messages(topic)
    for m in records:
        if topic != topics.DLQ:  # a dead letter carries the wall clock of its failure
            digest.update((m.key() or b"") + (m.value() or b""))
    print(topic, len(records), digest.hexdigest())
"""


def run(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    return subprocess.run([sys.executable, "-c", RUN], env=env, capture_output=True, text=True, check=True,
                          timeout=300).stdout


def test_every_output_is_the_same_bytes_in_two_processes_with_different_hash_salts() -> None:
    first, second = run("1"), run("2")
    assert "outcomes.alerts" in first and first.count("\n") == 6
    assert first == second
