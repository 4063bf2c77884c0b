"""Ascertain state per active patient, and per closed patient kept for revisions, measured
in-process without Kafka.

    python benchmarks/state_size.py --patients-per-site N [--days 730] [--start 2024-01-01] [--seed 7]
                                    [--revision-horizons 0,365]

The feed the pipeline benchmark uses (streams.simulator, same configuration) is normalised
in-process (streams.clinical.normaliser.ClinicalNormaliser, exact resends dropped by (site, event id)),
Avro-encoded as NormalisedEvents and written to a temporary file with each event's partition
(two partitions, by patient pseudonym, the engine's partitioner). Then, in two fresh
processes (so the preparation's freed memory is not reused by what is measured), two
streams.outcomes.tracker.OutcomeTracker (one per partition, as the ascertain stage keeps them) take
the events in arrival order, in batches of 2,000 sorted by event time (as the normalise stage
publishes a batch), decoding each event inside the measurement as the stage does, then
``collect()`` and ``take_delta()`` per batch. After the last batch: patients held, facts,
published observations, and

* ``tracemalloc``: bytes still allocated (traced) since the trackers were created, per patient
  (what the state holds; excludes the interpreter's allocator slack), with the largest
  allocation sites;
* ``rss``: the process's RSS growth over the same run (without tracemalloc), per patient
  (includes allocator slack);
* the changelog snapshot: ``OutcomeTracker.snapshot()`` encoded with
  ``streams.wire.formats.Encoder("rwe.internal.AscertainDelta")``, bytes per patient.

Each measurement runs once per revision horizon (``--revision-horizons``, days): the
trackers keep a closed patient for the revision horizon beyond the longest follow-up and
the year of covariate look-back, so on a feed longer than that the difference between two
horizons is the closed patients kept to be revised, and ``retained_closed_bytes`` (the
difference in traced bytes over the difference in patients held) is what each costs.

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import array
import gc
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: a compiled install of streams wins over the tree

BATCH = 2000
PARTITIONS = 2
HEADER = struct.Struct("<bqi")  # partition, event time (UTC us), length of the NormalisedEvent bytes


def prepare(path: Path, patients_per_site: int, days: int, start: str, seed: int) -> int:
    from streams.catalogue.sites import load_sites
    from streams.clinical.clock import now_us
    from streams.clinical.codes import CodeMap
    from streams.clinical.normaliser import ClinicalNormaliser
    from streams.clinical.pseudonym import Pseudonymiser
    from streams.runtime.partitioning import partition_for
    from streams.simulator import SimulationConfig, records
    from streams.vocabulary.dead_letters import Rejected
    from streams.wire import formats as wire
    from streams.wire import schemas

    config = SimulationConfig(seed=seed, patients_per_site=patients_per_site,
                              start=datetime.fromisoformat(start).replace(tzinfo=UTC), days=days)
    normaliser = ClinicalNormaliser(load_sites(), CodeMap.load(), Pseudonymiser(b"state-size-key-" + b"x" * 30),
                                    3600.0)
    encoder = wire.Encoder(schemas.NORMALISED_EVENT)
    now = now_us()
    seen: set[tuple[str, str]] = set()
    n = 0
    with path.open("wb") as out:
        for record in records(config):
            try:
                event = normaliser.normalise(record, now)
            except Rejected:
                continue
            key = (event["site_id"], event["event_id"])
            if key in seen:
                continue
            seen.add(key)
            value = encoder.encode(event)
            out.write(HEADER.pack(partition_for(event["patient_pseudonym"].encode(), PARTITIONS),
                                  event["event_time"], len(value)))
            out.write(value)
            n += 1
    return n


def measure(path: Path, mode: str, revision_horizon_days: float) -> dict[str, Any]:
    import psutil

    from streams.catalogue.definitions import load_catalogue
    from streams.outcomes.tracker import OutcomeTracker
    from streams.settings import Settings
    from streams.wire import formats as wire
    from streams.wire import schemas

    blob = path.read_bytes()
    index = array.array("q")  # partition, event time, offset, length per event
    offset = 0
    while offset < len(blob):
        partition, event_time, length = HEADER.unpack_from(blob, offset)
        index.extend((partition, event_time, offset + HEADER.size, length))
        offset += HEADER.size + length
    events = len(index) // 4
    decoder = wire.Decoder(schemas.NORMALISED_EVENT)
    decoder.decode(blob[index[2]:index[2] + index[3]])  # warm the decoder's caches outside the measurement
    catalogue = load_catalogue()
    lateness = int(Settings().allowed_lateness * 1_000_000)
    process = psutil.Process()
    gc.collect()
    if mode == "tracemalloc":
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    rss_before = process.memory_info().rss
    t0 = time.perf_counter()
    trackers = [OutcomeTracker(catalogue, lateness, revision_horizon_us=int(revision_horizon_days * 86_400e6))
                for _ in range(PARTITIONS)]
    observations = 0
    for i in range(0, events, BATCH):
        batch = sorted(range(i, min(i + BATCH, events)), key=lambda j: index[4 * j + 1])
        touched = set()
        for j in batch:
            partition, _t, start, length = index[4 * j:4 * j + 4]
            trackers[partition].add(decoder.decode(blob[start:start + length])[0])
            touched.add(partition)
        for p in touched:
            observations += len(trackers[p].collect())
            trackers[p].take_delta()
    seconds = time.perf_counter() - t0
    del batch, touched
    gc.collect()
    held = None
    sites: list[tuple[str, int]] = []
    if mode == "tracemalloc":
        held = tracemalloc.get_traced_memory()[0] - before
        snap = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = snap.filter_traces([tracemalloc.Filter(True, str(ROOT / "streams") + "/*")]).statistics("lineno")
        sites = [(f"{Path(s.traceback[0].filename).relative_to(ROOT)}:{s.traceback[0].lineno}", s.size)
                 for s in stats[:8]]
    rss_delta = process.memory_info().rss - rss_before
    patients = sum(len(t.patients) for t in trackers)
    frozen = [v for t in trackers for v in t.patients.values() if isinstance(v, bytes)]
    delta_encoder = wire.Encoder("rwe.internal.AscertainDelta")
    return {
        "mode": mode, "revision_horizon_days": revision_horizon_days, "events": events, "patients": patients,
        "facts": sum(t.stats()[1] for t in trackers),
        "published": sum(t.stats()[2] for t in trackers), "observations": observations, "seconds": seconds,
        "snapshot_bytes": sum(len(delta_encoder.encode(r)) for t in trackers for r in t.snapshot()),
        "traced_bytes": held, "top_sites": sites, "rss_delta_bytes": rss_delta if mode == "rss" else None,
        "hot_patients": patients - len(frozen), "frozen_patients": len(frozen),
        "frozen_bytes": sum(len(v) for v in frozen),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients-per-site", type=int, default=4100)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--start", default="2024-01-01")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--revision-horizons", default="0,365",
                        help="revision horizons (days) to measure, comma-separated")
    parser.add_argument("--horizon", type=float, default=365.0, help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["tracemalloc", "rss"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.input, args.measure, args.horizon)))
        return 0
    fd, name = tempfile.mkstemp(prefix="rwe-state-", suffix=".bin")
    os.close(fd)
    path = Path(name)
    try:
        prepare(path, args.patients_per_site, args.days, args.start, args.seed)
        result: dict[str, Any] = {}
        horizons = [float(h) for h in args.revision_horizons.split(",")]
        for horizon in horizons:
            for mode in ("rss", "tracemalloc"):
                out = subprocess.run([sys.executable, __file__, "--measure", mode, "--input", str(path),
                                      "--horizon", str(horizon)], capture_output=True, text=True, cwd=ROOT,
                                 check=False)
                if out.returncode:
                    sys.exit(f"state_size: the {mode} measurement failed:\n{out.stderr}")
                result[f"{mode}@{horizon:g}d"] = json.loads(out.stdout.strip().splitlines()[-1])
        if len(horizons) == 2:
            short, long = (result[f"tracemalloc@{h:g}d"] for h in horizons)
            kept = long["patients"] - short["patients"]
            result["retained_closed_patients"] = kept
            result["retained_closed_bytes"] = (long["traced_bytes"] - short["traced_bytes"]) / kept if kept else None
            short_rss, long_rss = (result[f"rss@{h:g}d"] for h in horizons)
            result["retained_closed_rss_bytes"] = ((long_rss["rss_delta_bytes"] - short_rss["rss_delta_bytes"]) / kept
                                                   if kept else None)
    finally:
        path.unlink(missing_ok=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
