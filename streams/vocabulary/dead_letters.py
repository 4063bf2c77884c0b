"""Why a record goes to the dead-letter topic: the reason codes, and the rejection that carries one.

A reason is the stable code in ``DeadLetter.reason`` and the ``reason`` label of
``rwe_dead_letters_total``; its message says more, without patient data. The README's
list of reasons is checked against :class:`Reason` by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    UNDECODABLE = "undecodable"                # not Avro in any framing the engine reads
    UNKNOWN_SCHEMA = "unknown_schema"          # a schema fingerprint or registry id the engine does not know
    WRONG_SCHEMA = "wrong_schema"              # a valid Avro record of another schema than the topic's
    MISSING_FIELD = "missing_field"            # a required field is null or empty
    INVALID_CODE = "invalid_code"              # a code that cannot be a code of its system
    UNKNOWN_SITE = "unknown_site"              # a site not in the configured network
    UNKNOWN_EVENT_TYPE = "unknown_event_type"  # an event type the engine does not handle
    INVALID_TIME_ZONE = "invalid_time_zone"    # not an IANA time zone
    IMPLAUSIBLE_TIME = "implausible_time"      # before 1900, or recorded before it happened
    FUTURE_TIME = "future_time"                # after its recorded time (beyond the tolerance) or after now
    MISSING_VALUE = "missing_value"            # a lab event without a numeric value
    MISSING_UNIT = "missing_unit"              # a lab value without its unit
    UNIT_UNCONVERTIBLE = "unit_unconvertible"  # a unit the catalogue cannot convert to the canonical one
    OUT_OF_RANGE = "out_of_range"              # a value outside the physiological range
    DUPLICATE_CONFLICT = "duplicate_conflict"  # an accepted event id resent with different content
    TOO_LARGE = "too_large"                    # a message over RWE_MAX_RECORD_BYTES
    FIELD_TOO_LONG = "field_too_long"          # an id over RWE_MAX_ID_LENGTH, a code or unit over RWE_MAX_CODE_LENGTH
    UNEXPECTED_VALUE = "unexpected_value"      # a value on an event that carries no measurement
    INVALID_OBSERVATION = "invalid_observation"  # an OutcomeObservation the later stages cannot use
    UNPUBLISHABLE = "unpublishable"            # an output the broker refused (too large, invalid): kept here
    BEYOND_REVISION_HORIZON = "beyond_revision_horizon"  # older than RWE_REVISION_HORIZON behind the newest event
    UNPARSEABLE = "unparseable"                # not an HL7 v2 message (no MSH segment, no separators)
    UNSUPPORTED_MESSAGE = "unsupported_message"  # an HL7 v2 message type or trigger the engine does not map
    PATIENT_MERGE = "patient_merge"            # ADT^A40: kept for the data steward, histories are not merged


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record was not accepted: a reason code and a message without patient data."""

    reason: Reason
    message: str


class Rejected(Exception):
    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.rejection = Rejection(reason, message)
