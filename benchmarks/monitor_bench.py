"""What the monitor stage costs per observation: ``MonitorStage.process`` on big batches.

    .venv/bin/python benchmarks/monitor_bench.py [--observations N] [--batch N]

Feeds N encoded OutcomeObservation records (FINAL, binary and continuous, six sites,
expected risks filled, as the risk model does; and with expected null, the network
fallback) through the stage's real ``process`` (Avro decode, validation, charts,
funnel once per batch, alert records encoded) in batches like the runner's, with the
in-memory driver's producer: no broker, so the number is the stage's own CPU cost. The first
batches include the limit calibrations (cached afterwards); both are reported.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # after site-packages: a compiled install wins

from streams.catalogue.definitions import load_catalogue
from streams.runtime import topics
from streams.runtime.memory import InMemoryDriver
from streams.settings import DEV, Settings
from streams.wire import formats as wire
from streams.wire import schemas

SITES = ("DE-CHA", "DE-LMU", "ES-HCB", "FI-HUS", "GB-UCL", "NL-AMC")
T0 = 1_735_689_600_000_000
DAY = 86_400_000_000


def feed(n: int, with_expected: bool, seed: int = 1) -> list[bytes]:
    catalogue = load_catalogue()
    indicators = [i for i in catalogue.indicators.values()]
    encoder = wire.Encoder(schemas.OUTCOME_OBSERVATION)
    rng = random.Random(seed)
    out = []
    for k in range(n):
        ind = indicators[k % len(indicators)]
        site = SITES[(k // len(indicators)) % len(SITES)]
        t = T0 + k * (DAY // 200)
        continuous = ind.kind == "continuous"
        p = rng.choice((0.05, 0.1, 0.2, 0.3))
        out.append(encoder.encode({
            "observation_id": f"o{k}", "indicator": ind.id, "area": ind.area, "catalogue_version": catalogue.version,
            "site_id": site, "region": "r", "country": "c", "status": "FINAL", "index_time": t,
            "horizon_end": t + ind.horizon_us, "closed_time": t + DAY, "outcome": None if continuous else int(
                rng.random() < p), "value": rng.gauss(8, 3) if continuous else None,
            "expected": (8.0 if continuous else p) if with_expected else None, "exclusion": None, "covariates": {}}))
    return out


def run(n: int, batch: int, with_expected: bool) -> tuple[float, float]:
    settings = Settings(mode=DEV, pseudonym_key="k" * 40, metrics_port=0)
    # The stage as its build(context) makes it; only its process() is timed, so it is called
    # here on slices of the topic rather than through driver.run(), which would tick and
    # checkpoint too.
    driver = InMemoryDriver(settings, ["monitor"])
    stage = driver.stages["monitor"]
    for value in feed(n, with_expected):
        driver.pipe(topics.OBSERVATIONS, value, partition=0)
    messages = driver.messages(topics.OBSERVATIONS)
    producer = driver.producer
    first = len(messages) // 5
    started = time.perf_counter()
    for i in range(0, first, batch):
        stage.process(messages[i:i + batch], producer)
    warm = time.perf_counter()
    for i in range(first, len(messages), batch):
        stage.process(messages[i:i + batch], producer)
    done = time.perf_counter()
    return first / (warm - started), (len(messages) - first) / (done - warm)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    for with_expected in (True, False):
        cold, steady = run(args.observations, args.batch, with_expected)
        print(f"expected {'filled' if with_expected else 'null (network fallback)'}: first 20 % (with limit "
              f"calibrations) {cold:,.0f} observations/s; the rest {steady:,.0f} observations/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
