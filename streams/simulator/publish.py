"""Sending the simulated feed to Kafka, paced in event time or by rate, optionally batched."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from streams.errors import BrokerUnavailable
from streams.wire import formats as wire
from streams.wire import schemas
from streams.wire.writer import zigzag

from .model import MALFORMED, SimMessage

FLUSH_TIMEOUT = 60.0
POLL_EVERY = 500
_HEADER_LEN = {wire.SINGLE_OBJECT_MAGIC: 10, wire.CONFLUENT_MAGIC: 5}


def publish(messages: Iterable[SimMessage], producer: Any, topic: str, *,
            speed: float | None = None, rate: float | None = None, batch: int = 0,
            on_progress: Callable[[int], None] | None = None) -> int:
    """Produce ``messages`` to ``topic``; return how many Kafka messages were sent.

    ``speed``: simulated seconds per wall-clock second (event-time pacing); ``rate``:
    events per second; neither: as fast as possible. ``batch`` > 0 packs that many
    consecutive decodable records into Avro object container messages, one per site
    (keyed by it); undecodable bytes still go alone.
    """
    if speed is not None and rate is not None:
        raise ValueError("pace by speed or by rate, not both")
    if (speed is not None and speed <= 0) or (rate is not None and rate <= 0):
        raise ValueError("speed and rate must be positive")
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    pacer = _Pacer(producer, speed, rate)
    sent = 0
    for key, value, event_time, events in _packed(messages, batch):
        pacer.wait(event_time, events)
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # local queue full: let librdkafka drain it
                producer.poll(0.05)
        sent += 1
        if sent % POLL_EVERY == 0:
            producer.poll(0)
            if on_progress is not None:
                on_progress(sent)
    remaining = producer.flush(FLUSH_TIMEOUT)
    if on_progress is not None:
        on_progress(sent)
    if remaining:
        raise BrokerUnavailable(f"{remaining} of {sent} messages still undelivered after "
                                f"{FLUSH_TIMEOUT:.0f} s to topic {topic}")
    if failures:
        raise BrokerUnavailable(f"{len(failures)} of {sent} messages to {topic} failed: {failures[0]}")
    return sent


class _Pacer:
    """Sleeps (while serving delivery callbacks) to keep event time or rate on schedule."""

    def __init__(self, producer: Any, speed: float | None, rate: float | None) -> None:
        self._producer = producer
        self._speed = speed
        self._rate = rate
        self._wall0 = 0.0
        self._event0: int | None = None
        self._watermark = 0
        self._events = 0

    def wait(self, event_time: int, events: int) -> None:
        if self._speed is None and self._rate is None:
            return
        if self._event0 is None:
            self._wall0 = time.monotonic()
            self._event0 = self._watermark = event_time
        if self._speed is not None:
            self._watermark = max(self._watermark, event_time)
            due = self._wall0 + (self._watermark - self._event0) / 1e6 / self._speed
        else:
            assert self._rate is not None
            due = self._wall0 + self._events / self._rate
        self._events += events
        while (ahead := due - time.monotonic()) > 0.001:
            self._producer.poll(min(ahead, 0.1))


def _packed(messages: Iterable[SimMessage], batch: int) -> Iterator[tuple[bytes | None, bytes, int, int]]:
    """(key, value, event time, events) per Kafka message."""
    if batch <= 0:
        for m in messages:
            yield m.key, m.value, m.event_time_us, 1
        return
    # One site per container, keyed by it, as a hospital publishes its own feed: the
    # engine deduplicates per raw partition, so a resend must land where the original did.
    groups: dict[bytes | None, list[SimMessage]] = {}
    held = 0
    for m in messages:
        if (m.kind == MALFORMED and m.reason == "undecodable") or _header_len(m.value) is None:
            yield m.key, m.value, m.event_time_us, 1
            continue
        group = groups.setdefault(m.key, [])
        group.append(m)
        held += 1
        if len(group) >= batch:
            yield _container(group)
            del groups[m.key]
            held -= len(group)
        elif held >= batch * len(groups):  # a quiet site's records wait no longer than one round of the others
            yield from (_container(g) for g in groups.values())
            groups, held = {}, 0
    yield from (_container(group) for group in groups.values())


def _header_len(value: bytes) -> int | None:
    if len(value) <= 10:
        return None
    return _HEADER_LEN.get(value[:2]) or _HEADER_LEN.get(value[:1])


@functools.cache
def _container_header() -> bytes:
    """Header of an Avro object container of ClinicalEvent (ends with the 16-byte sync marker)."""
    return wire.encode_container(schemas.CLINICAL_EVENT, [])


def _container(group: list[SimMessage]) -> tuple[bytes | None, bytes, int, int]:
    """One container (codec null) from encoded records: the block is their bodies, concatenated."""
    header = _container_header()
    body = b"".join(m.value[_header_len(m.value) or 0:] for m in group)
    value = b"".join((header, zigzag(len(group)), zigzag(len(body)), body, header[-16:]))
    return group[0].key, value, group[-1].event_time_us, len(group)
