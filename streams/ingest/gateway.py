"""The ingest core any endpoint shares: mapped events -> pseudonyms -> durable on events.raw; dead letters.

An endpoint acknowledges a message to its sender only after :meth:`RawGateway.publish` has
returned: every event derived from it is then on the raw topic, confirmed by the broker
(``acks=all``). Events are produced in the order ``publish`` is called, before it first
yields, keyed by site: one site's events keep their order on one raw partition, and a resend
lands where the original did (the normaliser's dedupe by (site, event id) is per partition).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import Any

from confluent_kafka import KafkaError, Producer
from prometheus_client import Counter, Histogram

from streams.clinical.pseudonym import Pseudonymiser
from streams.runtime import topics
from streams.runtime.dead_letters import dead_letter, seal_from
from streams.runtime.metrics import LATENCY_BUCKETS, EngineMetrics
from streams.runtime.runner import producer_config
from streams.settings import Settings
from streams.vocabulary.dead_letters import Rejection
from streams.wire import schemas


def pseudonymise(event: dict[str, Any], pseudonyms: Pseudonymiser) -> dict[str, Any]:
    """``event`` with its patient and encounter ids replaced by their pseudonyms, as the normaliser
    would make them (the issuer is part of the patient pseudonym, then dropped)."""
    site = event["site_id"]
    event["source_patient_id"] = pseudonyms.patient(event["source_patient_id"], event["patient_id_issuer"], site)
    if event["encounter_id"]:
        event["encounter_id"] = pseudonyms.encounter(event["encounter_id"], site)
    event["patient_id_issuer"] = None
    event["pseudonymised"] = True
    return event


class NotDelivered(Exception):
    """The broker did not confirm an event: the message must not be acknowledged as accepted."""


class IngestMetrics:
    """Messages per endpoint, kind and answer; answer latency; parts of messages left out."""

    def __init__(self, metrics: EngineMetrics, prefix: str = "rwe") -> None:
        r = metrics.registry
        self.messages = Counter(f"{prefix}_ingest_messages", "Messages an ingest endpoint answered, by kind "
                                "(e.g. ADT^A01; other) and answer (AA, AE, AR).", ["endpoint", "kind", "answer"],
                                registry=r)
        self.answer_seconds = Histogram(f"{prefix}_ingest_answer_seconds", "Time from a message's arrival to its "
                                        "answer (an AA once its events are durable).", ["endpoint"], registry=r,
                                        buckets=LATENCY_BUCKETS)
        self.skipped = Counter(f"{prefix}_ingest_skipped_parts", "Parts of accepted messages that carry no event "
                               "(a preliminary result, a censored or text value).", ["endpoint", "reason"],
                               registry=r)


class RawGateway:
    """Pseudonymises events, produces them to the raw topic and dead letters to the DLQ, and
    resolves an asyncio future once the broker has confirmed them."""

    def __init__(self, settings: Settings, pseudonymiser: Pseudonymiser, metrics: EngineMetrics,
                 endpoint: str, producer: Producer | None = None) -> None:
        from streams.wire.registry import encoder_for

        self.endpoint = endpoint
        self.metrics = metrics
        self.pseudonyms = pseudonymiser
        self.raw_topic = settings.topic(topics.RAW)
        self.dlq_topic = settings.topic(topics.DLQ)
        self.max_bytes = settings.dead_letter_max_bytes
        self.seal = seal_from(settings.dead_letter_secret())
        self._events = encoder_for(settings, schemas.CLINICAL_EVENT, self.raw_topic)
        self._letters = encoder_for(settings, schemas.DEAD_LETTER, self.dlq_topic)
        # Short linger: an answer waits for its events' delivery, so batching trades latency.
        self._producer = producer or Producer(producer_config(settings, **{"linger.ms": 2,
                                                                            "enable.idempotence": True}))
        self._letter_numbers = itertools.count()
        self._running = True
        self._poller = threading.Thread(target=self._poll, name=f"{endpoint}-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:  # delivery callbacks run in this thread
        while self._running:
            self._producer.poll(0.05)

    def publish(self, events: list[dict[str, Any]]) -> asyncio.Future[None]:
        """Produce ``events`` (ids in clear: pseudonymised here) now; the future resolves when all are durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not events:
            done.set_result(None)
            return done
        encoded = [(e["site_id"].encode(), self._events.encode(pseudonymise(e, self.pseudonyms))) for e in events]
        self._produce_all(self.raw_topic, encoded, done)
        return done

    def dead_letter(self, rejection: Rejection, original: bytes, site_id: str | None) -> asyncio.Future[None]:
        """Send ``original`` (sealed when sealing is on) with its reason to the DLQ; resolves when durable."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        number = next(self._letter_numbers)
        known_site = site_id if site_id in self.metrics.sites else None
        letter = dead_letter(rejection, self.endpoint, self.endpoint, 0, number, None, None, original,
                             known_site, self.max_bytes, self.seal)
        key = f"{self.endpoint}/0/{number}".encode()
        self._produce_all(self.dlq_topic, [(key, self._letters.encode(letter))], done)
        self.metrics.dead_letters.labels(self.endpoint, rejection.reason, self.metrics.site_label(site_id)).inc()
        return done

    def _produce_all(self, topic: str, records: list[tuple[bytes, bytes]], done: asyncio.Future[None]) -> None:
        loop = done.get_loop()
        pending = [len(records)]
        lock = threading.Lock()

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            with lock:
                pending[0] -= 1
                last = pending[0] == 0
            if loop.is_closed():
                return  # nobody awaits it any more
            if err is not None:
                loop.call_soon_threadsafe(_fail, done, NotDelivered(err.str()))
            elif last:
                loop.call_soon_threadsafe(_succeed, done)

        for key, value in records:
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: the poller drains it
                    threading.Event().wait(0.005)

    def close(self, timeout: float = 30.0) -> None:
        """Deliver what is queued, then stop the delivery thread."""
        self._producer.flush(timeout)
        self._running = False
        self._poller.join()


def _succeed(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


def _fail(done: asyncio.Future[None], error: Exception) -> None:
    if not done.done():
        done.set_exception(error)
