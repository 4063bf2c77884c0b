"""The naive baseline: a per-event Faust agent doing the normaliser's work.

Per event: decode the Avro record (streams.wire.formats.Decoder), validate and normalise it
(streams.clinical.normaliser.ClinicalNormaliser, default sites, CodeMap.load(), Pseudonymiser),
dedupe by (site, event id) through a Faust Table read and write, Avro-encode the
NormalisedEvent (streams.wire.formats.Encoder) and ``await out.send(...)`` keyed by patient
pseudonym; rejected records go to the dead-letter topic as the engine's DeadLetter.
This is what a user writes first with Faust; it reads one event per Kafka message.

Run as ``python benchmarks/naive_faust.py worker -l warn`` with BENCH_* variables:
BENCH_BROKER, BENCH_APP_ID, BENCH_DATADIR, BENCH_TOPIC_PREFIX, BENCH_PARTITIONS,
BENCH_KEY (pseudonymisation key), BENCH_STARTED_FILE (wall-clock time of the first event
is written there) and BENCH_FETCH_WAIT_MS.

faust-streaming 0.15.3 hard-codes the aiokafka consumer's ``fetch_max_wait_ms=1500``
(faust/transport/drivers/aiokafka.py, ``_create_worker_consumer``) with no setting. We
monkeypatch it: ``aiokafka.AIOKafkaConsumer`` is replaced, in this process only, by a
subclass that overrides that argument with BENCH_FETCH_WAIT_MS (default 10 ms, the
engine's ``fetch.wait.max.ms``). Without it the baseline's latency is ~1.5 s by design.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import faust
import naive_common  # noqa: F401 - first: the import path and the fetch-wait patch
from naive_common import PARTITIONS, PREFIX, STARTED_FILE

from streams.catalogue.sites import load_sites
from streams.clinical.clock import now_us
from streams.clinical.codes import CodeMap
from streams.clinical.normaliser import ClinicalNormaliser
from streams.clinical.pseudonym import Pseudonymiser
from streams.runtime import topics
from streams.runtime.dead_letters import dead_letter
from streams.state.dedupe import content_digest
from streams.vocabulary.dead_letters import Rejected, Rejection
from streams.wire import formats as wire
from streams.wire import schemas

STAGE = "normalise"

app = faust.App(
    os.environ.get("BENCH_APP_ID", "naive-normalise"),
    broker=f"kafka://{os.environ.get('BENCH_BROKER', '127.0.0.1:9092')}",
    datadir=os.environ.get("BENCH_DATADIR", "/tmp/naive-faust"),
    topic_partitions=PARTITIONS,
    broker_session_timeout=6.0,  # Tansu answers a group join after session_timeout / 2
    broker_heartbeat_interval=1.0,
    web_enabled=False,
    web_port=int(os.environ.get("BENCH_WEB_PORT", "6066")),  # the worker command binds it even when disabled
    web_bind="127.0.0.1",
    value_serializer="raw",
    key_serializer="raw",
)
raw_topic = app.topic(f"{PREFIX}{topics.RAW}", value_serializer="raw", key_serializer="raw",
                      partitions=PARTITIONS)
out_topic = app.topic(f"{PREFIX}{topics.NORMALISED}", value_serializer="raw", key_serializer="raw",
                      partitions=PARTITIONS)
dlq_topic = app.topic(f"{PREFIX}{topics.DLQ}", value_serializer="raw", key_serializer="raw",
                      partitions=PARTITIONS)
seen = app.Table("seen", default=None, partitions=PARTITIONS,
                 schema=faust.Schema(key_serializer="json", value_serializer="json"))

decoder = wire.Decoder(schemas.CLINICAL_EVENT)
encoder = wire.Encoder(schemas.NORMALISED_EVENT)
dlq_encoder = wire.Encoder(schemas.DEAD_LETTER)
normaliser = ClinicalNormaliser(load_sites(), CodeMap.load(),
                                Pseudonymiser(os.environ.get("BENCH_KEY", "k" * 40).encode()), 3600.0)
_first: list[float] = []


async def _dead(message: Any, rejection: Rejection, original: bytes | None, site_id: str | None) -> None:
    site = site_id if site_id in normaliser.sites else None
    letter = dead_letter(rejection, STAGE, message.topic, message.partition, message.offset,
                         int(message.timestamp * 1000) if message.timestamp else None, message.key,
                         original, site)
    key = f"{letter['source_topic']}/{letter['source_partition']}/{letter['source_offset']}".encode()
    await dlq_topic.send(key=key, value=dlq_encoder.encode(letter))


@app.agent(raw_topic)
async def normalise(stream: Any) -> None:
    async for event in stream.events():
        if not _first:
            _first.append(time.time())
            if STARTED_FILE:
                Path(STARTED_FILE).write_text(repr(_first[0]))
        message = event.message
        value = event.value
        try:
            record = decoder.decode(value)[0]
        except wire.DecodeError as exc:
            await _dead(message, Rejection(exc.reason, exc.message), value, None)
            continue
        try:
            out = normaliser.normalise(record, now_us())
        except Rejected as exc:
            await _dead(message, exc.rejection, value, record.get("site_id"))
            continue
        key = f"{out['site_id']}|{out['event_id']}"
        digest = content_digest(record)
        previous = seen.get(key)
        if previous is None:
            seen[key] = digest
            await out_topic.send(key=out["patient_pseudonym"].encode(), value=encoder.encode(out))
        elif previous != digest:
            await _dead(message, Rejection("duplicate_conflict", "event id already accepted with different "
                                           "content"), value, out["site_id"])


if __name__ == "__main__":
    app.main()
