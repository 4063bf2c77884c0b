"""Dead letters: the record a stage writes for what it cannot accept, and the writer that sends and counts them."""

from __future__ import annotations

import hashlib
from typing import Any

from streams.clinical.clock import now_us
from streams.vocabulary.dead_letters import Reason, Rejection
from streams.wire.formats import DecodeError

MAX_KEY_BYTES = 1024  # a longer original key is kept truncated (keys are ids, not payloads)


def dead_letter(rejection: Rejection, stage: str, topic: str, partition: int, offset: int,
                timestamp_ms: int | None, key: bytes | None, value: bytes | None,
                site_id: str | None = None, max_bytes: int = 256 << 10,
                seal: DeadLetterSeal | None = None) -> dict[str, Any]:
    """A DeadLetter record (plain dict of ``rwe.events.DeadLetter``). An original value over
    ``max_bytes`` is kept truncated with its full length and SHA-256, so that the letter
    itself fits the broker's message limit: otherwise the record that could not be accepted
    would also stop the dead-letter topic, and the worker with it."""
    size = digest = None
    if value is not None and len(value) > max_bytes:
        size, digest = len(value), hashlib.sha256(value).hexdigest()
        value = value[:max_bytes]
    letter = {
        "reason": rejection.reason,
        "message": rejection.message,
        "stage": stage,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_timestamp": timestamp_ms,
        "original_key": key[:MAX_KEY_BYTES] if key is not None else None,
        "original_value": value,
        "site_id": site_id,
        "failed_at": now_us(),
        "original_size": size,
        "original_sha256": digest,
        "sealed": None,
    }
    return seal.seal(letter) if seal is not None else letter


class DeadLetterWriter:
    """Sends a stage's rejected records to the dead-letter topic and counts them."""

    def __init__(self, stage: str, topic: str, encoder: Any, metrics: Any, max_bytes: int = 256 << 10,
                 seal: DeadLetterSeal | None = None) -> None:
        self.stage = stage
        self.max_bytes = max_bytes
        self.seal = seal
        self.topic = topic
        self.encoder = encoder
        self.metrics = metrics

    def decode(self, producer: Any, msg: Any, decoder: Any) -> list[dict[str, Any]] | None:
        """The records of ``msg``, or None after sending it to the dead-letter topic."""
        value = msg.value()
        try:
            if value is None:
                raise DecodeError(Reason.UNDECODABLE, "message has no value")
            records: list[dict[str, Any]] = decoder.decode(value)
        except DecodeError as exc:
            self.send(producer, msg, Rejection(exc.reason, exc.message), value, None)
            return None
        return records

    def send(self, producer: Any, msg: Any, rejection: Rejection, original: bytes | None,
             site_id: str | None) -> None:
        """``msg``: the source Kafka message; ``original``: the record's own bytes."""
        known_site = site_id if site_id in self.metrics.sites else None
        timestamp_type, timestamp = msg.timestamp()
        letter = dead_letter(rejection, self.stage, msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                             timestamp if timestamp_type else None, msg.key(), original, known_site, self.max_bytes,
                             self.seal)
        key = f"{letter['source_topic']}/{letter['source_partition']}/{letter['source_offset']}".encode()
        producer.produce(self.topic, value=self.encoder.encode(letter), key=key)
        self.metrics.dead_letters.labels(self.stage, rejection.reason, self.metrics.site_label(site_id)).inc()


class DeadLetterSeal:
    """Seals a dead letter's original key and value (AES-256-GCM, a fresh nonce per letter, the
    source position as associated data), so that operators who read reasons and counts on
    the dead-letter topic see no patient identifier. ``rwe dlq replay`` opens them with the
    same secret. The AES key is derived from the configured secret with HKDF-SHA256."""

    SCHEME = "AES-256-GCM"

    def __init__(self, secret: bytes) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"rwe dead letters").derive(secret)
        self._aead = AESGCM(key)
        self.label = f"{self.SCHEME}:{hashlib.sha256(key).hexdigest()[:8]}"  # which key, not the key

    def seal(self, letter: dict[str, Any]) -> dict[str, Any]:
        import os

        aad = _position(letter)
        for name in ("original_key", "original_value"):
            if letter[name] is not None:
                nonce = os.urandom(12)
                letter[name] = nonce + self._aead.encrypt(nonce, letter[name], aad)
        letter["sealed"] = self.label
        return letter

    def open(self, letter: dict[str, Any]) -> dict[str, Any]:
        """The letter with its original key and value in clear (a ValueError if the key is not the one)."""
        from cryptography.exceptions import InvalidTag

        if letter.get("sealed") is None:
            return letter
        if letter["sealed"] != self.label:
            raise ValueError(f"sealed with {letter['sealed']}, not with the configured key ({self.label})")
        opened = dict(letter)
        aad = _position(letter)
        for name in ("original_key", "original_value"):
            sealed = letter[name]
            if sealed is not None:
                try:
                    opened[name] = self._aead.decrypt(sealed[:12], sealed[12:], aad)
                except InvalidTag:
                    raise ValueError("a sealed dead letter failed authentication (altered, or another key)") from None
        opened["sealed"] = None
        return opened


def _position(letter: dict[str, Any]) -> bytes:
    return f"{letter['source_topic']}/{letter['source_partition']}/{letter['source_offset']}".encode()


def seal_from(secret: bytes | None) -> DeadLetterSeal | None:
    return DeadLetterSeal(secret) if secret is not None else None
