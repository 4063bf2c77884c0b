"""One HL7 v2 message in, one acknowledgement out: parse, deduplicate, map, publish, answer.

The answer (original acknowledgement mode, HL7 v2 section 2.9.2):

- AA: every event derived from the message is durable on the raw topic; also an exact resend
  of an accepted message (nothing is produced again), and an A40 merge once its dead letter is.
- AE: the message cannot be accepted as sent (a required field missing, a bad time, an unknown
  facility, a control id reused with other content), or the broker did not confirm it.
- AR: not an HL7 v2 message, or a type or trigger the engine does not map.

Every AE and AR except a broker failure sends the message's original bytes to the dead-letter
topic (sealed) with the reason, and the answer waits until that is durable too.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from streams.ingest.gateway import IngestMetrics, NotDelivered, RawGateway
from streams.ingest.hl7_mapping import Header, Hl7Mapper, header, parse
from streams.vocabulary.dead_letters import Reason, Rejected, Rejection

log = logging.getLogger(__name__)
ENDPOINT = "hl7"
REJECTS = frozenset({Reason.UNPARSEABLE, Reason.UNSUPPORTED_MESSAGE})  # AR: resending it cannot help
ACCEPTED_AS_LETTERS = frozenset({Reason.PATIENT_MERGE})                # AA: kept, for a person to resolve
# ERR-3 (HL7 table 0357) for each reason; 207 (application internal error) for the rest.
ERROR_CODES = {Reason.MISSING_FIELD: "101", Reason.IMPLAUSIBLE_TIME: "102", Reason.UNPARSEABLE: "102",
               Reason.UNKNOWN_SITE: "103", Reason.UNSUPPORTED_MESSAGE: "200", Reason.DUPLICATE_CONFLICT: "205",
               Reason.TOO_LARGE: "102"}
KINDS = frozenset({"ADT^A01", "ADT^A02", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A11", "ADT^A12", "ADT^A13",
                   "ADT^A40", "ORU^R01"})  # metric label values; anything else is "other"
NOT_STORED = "not stored: the broker did not confirm it; resend later"
_ESCAPES = str.maketrans({"|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\", "\\": "\\E\\"})


class Hl7Endpoint:
    """Answers messages; remembers the accepted ones by (sending application, facility, control id).

    MSH-10 is unique per sending system, so the application is part of the key: a lab and an ADT
    system of one facility count their control ids independently."""

    def __init__(self, mapper: Hl7Mapper, gateway: RawGateway, metrics: IngestMetrics,
                 max_remembered: int = 1_000_000) -> None:
        self.mapper = mapper
        self.gateway = gateway
        self.metrics = metrics
        self.max_remembered = max_remembered
        self._accepted: dict[tuple[str, str, str], tuple[bytes, Awaitable[None]]] = {}
        self._acks = 0

    async def answer(self, raw: bytes) -> bytes:
        """The acknowledgement for the message ``raw`` (without MLLP framing)."""
        started = time.perf_counter()
        head: Header | None = None
        try:
            message = parse(_text(raw))
            head = header(message)
            code = await self._accept(raw, message, head)
            text, reason = "", None
        except Rejected as exc:
            reason = exc.rejection.reason
            code, text = await self._reject(exc.rejection, raw, head)
        except NotDelivered as exc:
            log.warning("events of a message were not confirmed by the broker (%s): answered AE", exc)
            code, text, reason = "AE", NOT_STORED, None
        kind = head.kind if head is not None and head.kind in KINDS else "other"
        self.metrics.messages.labels(ENDPOINT, kind, code).inc()
        ack = self.ack(head, code, text, reason)
        self.metrics.answer_seconds.labels(ENDPOINT).observe(time.perf_counter() - started)
        return ack

    async def _accept(self, raw: bytes, message: Any, head: Header) -> str:
        key = (head.application, head.facility, head.control_id)
        digest = hashlib.sha256(raw).digest()
        seen = self._accepted.get(key)
        if seen is not None:
            if seen[0] != digest:
                raise Rejected(Reason.DUPLICATE_CONFLICT, "message control id (MSH-10) already accepted with "
                               "other content; a new message needs a new control id")
            await seen[1]  # a resend while the original is still in flight answers when it is durable
            self.gateway.metrics.duplicates.labels(ENDPOINT, self.gateway.metrics.site_label(
                self.mapper.facilities.get(head.facility, head.facility))).inc()
            return "AA"
        mapped = self.mapper.map(message, head)
        for reason, count in mapped.skipped.items():
            self.metrics.skipped.labels(ENDPOINT, reason).inc(count)
        durable = self.gateway.publish(mapped.events)
        self._remember(key, digest, durable)
        try:
            await durable
        except NotDelivered:
            self._accepted.pop(key, None)
            raise
        return "AA"

    def _remember(self, key: tuple[str, str, str], digest: bytes, durable: Awaitable[None]) -> None:
        if len(self._accepted) >= self.max_remembered:  # the oldest first: a resend comes soon or never
            del self._accepted[next(iter(self._accepted))]
        self._accepted[key] = (digest, durable)

    async def _reject(self, rejection: Rejection, raw: bytes, head: Header | None) -> tuple[str, str]:
        site = None
        if head is not None:
            site = self.mapper.facilities.get(head.facility, head.facility)
        try:
            await self.gateway.dead_letter(rejection, raw, site)
        except NotDelivered as exc:
            log.warning("a dead letter was not confirmed by the broker (%s): answered AE", exc)
            return "AE", NOT_STORED
        if rejection.reason in ACCEPTED_AS_LETTERS:
            return "AA", rejection.message
        return ("AR" if rejection.reason in REJECTS else "AE"), rejection.message

    def ack(self, head: Header | None, code: str, text: str, reason: Reason | None) -> bytes:
        self._acks += 1
        now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
        app, facility, control, trigger, version = (
            (head.application, head.facility, head.control_id, head.trigger, head.version or "2.5")
            if head is not None else ("", "", "", "", "2.5"))
        segments = [
            f"MSH|^~\\&|RWE|RWE|{_escape(app)}|{_escape(facility)}|{now}||ACK^{_escape(trigger)}^ACK|"
            f"RWE{now[:14]}{self._acks}|P|{_escape(version)}",
            f"MSA|{code}|{_escape(control)}" + (f"|{_escape(text[:80])}" if text else ""),
        ]
        if code != "AA":
            error = ERROR_CODES.get(reason, "207") if reason is not None else "207"
            segments.append(f"ERR|||{error}^{_escape(text[:80])}^HL70357|E")
        return ("\r".join(segments) + "\r").encode()


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _text(raw: bytes) -> str:
    # UTF-8 where it decodes (ASCII and UNICODE UTF-8 feeds), else ISO 8859-1 (MSH-18 8859/1): never a failure.
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")
