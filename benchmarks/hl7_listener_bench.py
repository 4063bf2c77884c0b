"""Messages/s through `rwe hl7 listen` and ACK latency, on a fresh embedded broker.

The listener runs as its own process (as in production); python-hl7's asyncio MLLP client
sends ADT^A01 messages (an admission and a diagnosis each: two events) over C concurrent
connections, each waiting for its ACK before the next message, as MLLP senders do.
Part 1: as fast as the connections go. Part 2: paced at a fixed total rate, ACK latency.

    .venv/bin/python benchmarks/hl7_listener_bench.py [--seconds 15] [--connections 32] [--rate 500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import hl7.mllp

from streams.embedded.broker import EmbeddedBroker
from streams.runtime.topics import create_topics
from streams.settings import DEV, Settings

A01 = ("MSH|^~\\&|ADT1|NL-AMC|RWE|RWE|20250101121000||ADT^A01^ADT_A01|{cid}|P|2.5\r"
       "EVN|A01|20250101121000\r"
       "PID|1||{pid}^^^NHI-NL^NNNLD||Doe^Jane||19480312|F\r"
       "PV1|1|I|CARD^201^1|E|||||||||||||||V{pid}\r"
       "DG1|1||I50.9^Heart failure^I10||20250101120000|A\r")


async def sender(port: int, name: int, until: float, interval: float, latencies: list[float]) -> int:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port)
    sent, next_at = 0, time.perf_counter()
    while time.perf_counter() < until:
        if interval:
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        started = time.perf_counter()
        writer.writeblock(A01.format(cid=f"C{name}-{sent}", pid=name * 1_000_000 + sent).encode())
        await writer.drain()
        answer = await reader.readblock()
        latencies.append(time.perf_counter() - started)
        assert b"MSA|AA" in answer, answer
        sent += 1
    writer.close()
    return sent


async def run(port: int, seconds: float, connections: int, rate: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    until = time.perf_counter() + seconds
    interval = connections / rate if rate else 0.0
    started = time.perf_counter()
    counts = await asyncio.gather(*(sender(port, c, until, interval, latencies) for c in range(connections)))
    return sum(counts) / (time.perf_counter() - started), sorted(latencies)


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=500)
    args = parser.parse_args()
    for label, connections, rate in (("max", args.connections, 0.0), (f"paced {args.rate:g}/s", 10, args.rate)):
        with EmbeddedBroker() as broker:
            create_topics(Settings(mode=DEV, broker=broker.bootstrap, partitions=4))
            env = {**os.environ, "RWE_BROKER": broker.bootstrap, "RWE_MODE": "dev", "RWE_METRICS_PORT": "0",
                   "RWE_PARTITIONS": "4"}
            rwe = Path(sys.executable).parent / "rwe"
            listener = subprocess.Popen([str(rwe), "hl7", "listen", "--port", "0"], env=env, text=True,
                                        stdout=subprocess.PIPE)
            try:
                line = listener.stdout.readline() if listener.stdout else ""
                found = re.search(r":(\d+);", line)
                assert found, line
                rate_done, latencies = asyncio.run(run(int(found.group(1)), args.seconds, connections, rate))
            finally:
                listener.terminate()
                listener.communicate(timeout=30)
        print(f"{label:12} {connections:3d} connections: {rate_done:,.0f} messages/s, ACK p50 "
              f"{percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms "
              f"({len(latencies):,} messages)", flush=True)


if __name__ == "__main__":
    main()
