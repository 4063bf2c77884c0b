"""HL7 v2 messages to ClinicalEvents (pure logic): the one mapping, documented in the README.

Parsing is python-hl7's (``hl7.parse``): it takes the separators from MSH-1/MSH-2, keeps Z
segments, extra components and repetitions, and leaves absent optional fields empty. What
this module adds is the reading of the fields the engine needs, tolerant of what real feeds
send (a missing component is empty, a v2.3 DG1-2 coding method stands in for a missing
DG1-3.3), and the mapping of each segment to events. Identifiers stay in clear here;
:mod:`streams.ingest.gateway` pseudonymises them before anything leaves the process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import hl7

from streams.catalogue.sites import Site
from streams.clinical.clock import LocalTimeConverter, UnknownTimeZone
from streams.vocabulary.dead_letters import Reason, Rejected

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")
_DAYS_BEFORE_MONTH = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334)

ADMITS = frozenset({"A01", "A04"})
STAY_EVENTS = {"A01": "ADMISSION", "A04": "ADMISSION", "A02": "WARD_TRANSFER", "A03": "DISCHARGE"}
MAPPED_ADT = frozenset({*STAY_EVENTS, "A08"})
# PV1-4 (HL7 table 0007): accident, emergency and urgent are unplanned; elective and routine planned.
ADMISSION_TYPES = {"A": "EMERGENCY", "E": "EMERGENCY", "U": "EMERGENCY", "C": "ELECTIVE", "R": "ELECTIVE"}
# PV1-36 (table 0112, user-defined: the UB-04 codes most feeds use, and their names).
DISPOSITIONS = {
    "01": "HOME", "06": "HOME", "HOME": "HOME",
    "02": "TRANSFER", "05": "TRANSFER", "43": "TRANSFER", "66": "TRANSFER", "TRANSFER": "TRANSFER",
    "03": "LONG_TERM_CARE", "04": "LONG_TERM_CARE", "64": "LONG_TERM_CARE",
    "20": "DEATH", "40": "DEATH", "41": "DEATH", "42": "DEATH", "EXPIRED": "DEATH", "DIED": "DEATH", "DEATH": "DEATH",
}
SEXES = {"F": "FEMALE", "M": "MALE", "O": "OTHER", "A": "OTHER", "U": "UNKNOWN", "N": "UNKNOWN"}
# PID-3 repetitions by preference (table 0203): a national person identifier links across sites.
NATIONAL_ID_TYPES = ("NN", "NI", "PT", "PN")
FINAL_RESULT_STATUSES = frozenset({"", "F", "C", "A"})  # OBX-11: final, corrected, amended (or unsaid)
NUMERIC_TYPES = frozenset({"NM", "SN"})
CODED_TYPES = frozenset({"CWE", "CE", "CNE", "CF"})


@dataclass(frozen=True, slots=True)
class Header:
    """What MSH says about a message: enough to deduplicate it and to answer it."""

    application: str
    facility: str
    control_id: str
    message_type: str  # MSH-9.1, e.g. ADT
    trigger: str       # MSH-9.2, e.g. A01
    version: str

    @property
    def kind(self) -> str:
        return f"{self.message_type}^{self.trigger}"


@dataclass(slots=True)
class Mapped:
    """The events of one message, ids in clear, and what was left out of them (by reason)."""

    site_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def parse(text: str) -> hl7.Message:
    """The message in ``text``; segments may end in CR, LF or CRLF. Rejected when it is not HL7 v2."""
    text = text.strip("\x0b\x1c\r\n ").replace("\r\n", "\r").replace("\n", "\r")
    if not text.startswith("MSH") or len(text) < 8:
        raise Rejected(Reason.UNPARSEABLE, "not an HL7 v2 message: it does not begin with an MSH segment")
    try:
        return hl7.parse(text)
    except Exception as exc:  # python-hl7 raises several types on malformed separators
        raise Rejected(Reason.UNPARSEABLE, f"not parseable as HL7 v2 ({type(exc).__name__})") from None


def value(segment: hl7.Segment | None, number: int, repetition: int = 1, component: int = 1,
          subcomponent: int = 1) -> str:
    """One leaf of a segment, stripped and unescaped; empty when absent (optional fields often are)."""
    if segment is None:
        return ""
    try:
        text = segment.extract_field(1, number, repetition, component, subcomponent)
    except (IndexError, KeyError):
        return ""
    text = str(text).strip()
    return _unescape(text) if "\\" in text else text


def _unescape(text: str) -> str:
    # Separators, highlighting and hex escapes (HL7 v2 section 2.7) with the standard delimiters.
    out = []
    for i, part in enumerate(text.split("\\")):
        if i % 2 == 0:
            out.append(part)
        else:
            out.append({"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}.get(part, _hex(part)))
    return "".join(out)


def _hex(escape: str) -> str:
    if escape.startswith("X") and len(escape) > 1:
        try:
            return bytes.fromhex(escape[1:]).decode("latin-1")
        except ValueError:
            return ""
    return ""  # highlighting (\H\, \N\) and unknown escapes carry no data


def repetitions(segment: hl7.Segment, number: int) -> int:
    if number >= len(segment):
        return 0
    item = segment(number)
    return len(item) if item and isinstance(item[0], hl7.Repetition) else 1


def header(message: hl7.Message) -> Header:
    msh = message.segments("MSH")[0]
    control_id = value(msh, 10)
    if not control_id:
        raise Rejected(Reason.MISSING_FIELD, "no message control id (MSH-10)")
    return Header(value(msh, 3), value(msh, 4), control_id, value(msh, 9).upper(), value(msh, 9, 1, 2).upper(),
                  value(msh, 12))


def parse_dtm(text: str, what: str) -> tuple[int, int | None]:
    """(local wall-clock microseconds, UTC offset in microseconds or None) of an HL7 DTM value."""
    match = _DTM.match(text)
    if not match:
        raise Rejected(Reason.IMPLAUSIBLE_TIME, f"{what} is not an HL7 date/time (YYYYMMDDHHMMSS[.S][+ZZZZ])")
    year, month, day, hour, minute, second = (int(g) if g else d for g, d in zip(
        match.groups()[:6], (0, 1, 1, 0, 0, 0), strict=True))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        raise Rejected(Reason.IMPLAUSIBLE_TIME, f"{what} is not a valid date/time")
    fraction = int((match.group(7) or "0").ljust(6, "0"))
    leap = month > 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = _days_from_civil(year) + _DAYS_BEFORE_MONTH[month - 1] + leap + day - 1
    local = ((days * 24 + hour) * 60 + minute) * 60 + second
    zone = match.group(8)
    offset = None
    if zone:
        sign = -1 if zone[0] == "-" else 1
        offset = sign * (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * 1_000_000
    return local * 1_000_000 + fraction, offset


def _days_from_civil(year: int) -> int:
    """Days from 1970-01-01 to 1 January of ``year``."""
    y = year - 1
    return y * 365 + y // 4 - y // 100 + y // 400 - 719162


class Hl7Mapper:
    """Maps parsed messages to ClinicalEvent dicts for the configured sites.

    ``facilities`` maps a sending facility (MSH-4.1) to a site id; a facility not in it must
    be a site id itself."""

    def __init__(self, sites: dict[str, Site], facilities: dict[str, str]) -> None:
        self.sites = sites
        self.facilities = facilities
        self.clock = LocalTimeConverter()

    def site_of(self, head: Header) -> str:
        site = self.facilities.get(head.facility, head.facility)
        if site not in self.sites:
            raise Rejected(Reason.UNKNOWN_SITE, "sending facility (MSH-4) is not a configured site; map it with "
                           "RWE_HL7_FACILITIES")
        return site

    def map(self, message: hl7.Message, head: Header) -> Mapped:
        """The events of ``message``: Rejected with a reason when it cannot be accepted."""
        if head.message_type == "ADT" and head.trigger == "A40":
            raise Rejected(Reason.PATIENT_MERGE, "patient merge (A40): histories are not merged; kept for the "
                           "data steward")
        supported = (head.message_type == "ADT" and head.trigger in MAPPED_ADT) or head.kind == "ORU^R01"
        if not supported:
            raise Rejected(Reason.UNSUPPORTED_MESSAGE, f"message type {head.kind[:16]} is not one the engine maps")
        mapped = Mapped(self.site_of(head))
        context = _Context(self, message, head, mapped.site_id)
        pv1 = context.first("PV1")
        if head.message_type == "ADT" and head.trigger in STAY_EVENTS:
            self._stay(context, pv1, head.trigger, mapped)
        if head.message_type == "ADT":
            for i, dg1 in enumerate(message.segments("DG1") if _has(message, "DG1") else [], 1):
                context.coded(mapped, "DIAGNOSIS", f"DG1-{value(dg1, 1) or i}", dg1, 3, 2, value(dg1, 5), "DG1-5")
            for i, pr1 in enumerate(message.segments("PR1") if _has(message, "PR1") else [], 1):
                context.coded(mapped, "PROCEDURE", f"PR1-{value(pr1, 1) or i}", pr1, 3, 2, value(pr1, 5), "PR1-5")
        else:
            self._results(context, mapped)
        pid = context.pid
        if value(pid, 30).upper() == "Y" or value(pid, 29):
            mapped.events.append(context.event("DEATH", "DEATH", value(pid, 29) or context.event_dtm, "PID-29"))
        return mapped

    def _stay(self, context: _Context, pv1: hl7.Segment | None, trigger: str, mapped: Mapped) -> None:
        if not context.encounter:
            raise Rejected(Reason.MISSING_FIELD, f"ADT^{trigger} without a visit number (PV1-19)")
        if trigger == "A04" and value(pv1, 2).upper() != "I":
            return  # a registration of an outpatient or emergency visit: no stay (its DG1/PR1 still count)
        if trigger in ADMITS:
            event = context.event("ADMISSION", "ADM", value(pv1, 44) or context.event_dtm, "PV1-44")
            event["admission_type"] = ADMISSION_TYPES.get(value(pv1, 4).upper(), "UNKNOWN")
        elif trigger == "A03":
            event = context.event("DISCHARGE", "DIS", value(pv1, 45) or context.event_dtm, "PV1-45")
            code = value(pv1, 36).upper()
            code = code.zfill(2) if code.isdigit() else code
            event["disposition"] = DISPOSITIONS.get(code, "OTHER") if code else "UNKNOWN"
        else:
            event = context.event("WARD_TRANSFER", "TRF", context.event_dtm, "EVN-6")
        mapped.events.append(event)

    def _results(self, context: _Context, mapped: Mapped) -> None:
        obr_time = ""
        for i, segment in enumerate(context.message, 1):
            name = str(segment[0])
            if name == "OBR":
                obr_time = value(segment, 7)
            elif name == "OBX":
                context.result(mapped, segment, f"OBX{i}-{value(segment, 1)}", obr_time)


def _has(message: hl7.Message, name: str) -> bool:
    return any(str(s[0]) == name for s in message)


class _Context:
    """One message's shared fields: patient, visit, times, site zone."""

    def __init__(self, mapper: Hl7Mapper, message: hl7.Message, head: Header, site_id: str) -> None:
        self.mapper = mapper
        self.message = message
        self.head = head
        self.site_id = site_id
        self.zone = mapper.sites[site_id].time_zone
        self.pid = self.first("PID")
        if self.pid is None:
            raise Rejected(Reason.MISSING_FIELD, "no PID segment")
        self.patient_id, self.issuer = _patient_identifier(self.pid)
        if not self.patient_id:
            raise Rejected(Reason.MISSING_FIELD, "no patient identifier (PID-3)")
        self.encounter = value(self.first("PV1"), 19) or None
        msh, evn = self.first("MSH"), self.first("EVN")
        self.recorded_dtm = value(evn, 2) or value(msh, 7)
        if not self.recorded_dtm:
            raise Rejected(Reason.MISSING_FIELD, "no recorded time (EVN-2 or MSH-7)")
        self.event_dtm = value(evn, 6) or self.recorded_dtm
        birth = value(self.pid, 7)[:4]
        self.birth_year = int(birth) if birth.isdigit() and len(birth) == 4 else None
        sex = value(self.pid, 8).upper()
        self.sex = SEXES.get(sex, "OTHER") if sex else None
        self.id_prefix = f"{head.application}|{head.facility}|{head.control_id}"

    def first(self, name: str) -> hl7.Segment | None:
        for segment in self.message:
            if str(segment[0]) == name:
                return segment
        return None

    def event(self, event_type: str, label: str, event_dtm: str, what: str) -> dict[str, Any]:
        event_time, recorded_time, zone = self._times(event_dtm, what)
        return {
            "event_id": f"{self.id_prefix}/{label}", "site_id": self.site_id,
            "source_patient_id": self.patient_id, "patient_id_issuer": self.issuer, "encounter_id": self.encounter,
            "event_type": event_type, "event_time": event_time, "recorded_time": recorded_time, "time_zone": zone,
            "code_system": None, "code": None, "value": None, "unit": None, "coded_value": None,
            "admission_type": None, "disposition": None, "birth_year": self.birth_year, "sex": self.sex,
            "prom": None, "pseudonymised": False, "patient_name": None, "address": None, "note": None,
        }

    def coded(self, mapped: Mapped, event_type: str, label: str, segment: hl7.Segment, number: int,
              method_field: int, event_dtm: str, what: str) -> None:
        """A DG1 or PR1 segment as a diagnosis or procedure event."""
        code, system = _code(segment, number)
        event = self.event(event_type, label, event_dtm or self.event_dtm, what)
        event["code"], event["code_system"] = code or None, system or value(segment, method_field) or None
        mapped.events.append(event)

    def result(self, mapped: Mapped, obx: hl7.Segment, label: str, obr_time: str) -> None:
        """An OBX segment as a lab result or assessment: numeric (NM, SN) or coded (CWE) values."""
        if value(obx, 11).upper() not in FINAL_RESULT_STATUSES:
            mapped.skip("not_final")
            return
        kind = value(obx, 2).upper()
        event = self.event("LAB_RESULT", label, value(obx, 14) or obr_time or self.event_dtm, "OBX-14")
        event["code"], event["code_system"] = _code(obx, 3)
        if kind in NUMERIC_TYPES:
            number = _number(obx, kind)
            if number is None:
                mapped.skip("not_a_number")  # a censored "<0.1" or a text result: not an exact value
                return
            event["value"], event["unit"] = number, value(obx, 6) or None
        elif kind in CODED_TYPES:
            code, system = _code(obx, 5)
            if not code:
                mapped.skip("not_a_number")
                return
            event["coded_value"] = {"system": system or None, "code": code}
        else:
            mapped.skip("text_result")  # free text is dropped by the engine anyway
            return
        mapped.events.append(event)

    def _times(self, event_dtm: str, what: str) -> tuple[int, int, str | None]:
        """(event time, recorded time, zone): site wall-clock in its zone, or UTC when the feed gave offsets."""
        event_local, event_offset = parse_dtm(event_dtm, what)
        recorded_local, recorded_offset = parse_dtm(self.recorded_dtm, "EVN-2/MSH-7")
        if event_offset is None and recorded_offset is None:
            return event_local, recorded_local, self.zone
        return self._utc(event_local, event_offset), self._utc(recorded_local, recorded_offset), None

    def _utc(self, local: int, offset: int | None) -> int:
        if offset is not None:
            return local - offset
        try:
            return self.mapper.clock.to_utc_us(local, self.zone)
        except UnknownTimeZone as exc:
            raise Rejected(Reason.INVALID_TIME_ZONE, str(exc)) from None


def _patient_identifier(pid: hl7.Segment) -> tuple[str, str | None]:
    """(id, assigning authority) from PID-3: a national identifier first, else the first one given."""
    candidates = []
    for r in range(1, max(1, repetitions(pid, 3)) + 1):
        ident = value(pid, 3, r)
        if ident:
            kind = value(pid, 3, r, 5).upper()
            issuer = value(pid, 3, r, 4) or value(pid, 3, r, 4, 2) or None
            rank = next((i for i, t in enumerate(NATIONAL_ID_TYPES) if kind.startswith(t)), len(NATIONAL_ID_TYPES))
            candidates.append((rank, r, ident, issuer))
    if not candidates:
        return "", None
    _rank, _r, ident, issuer = min(candidates)
    return ident, issuer


def _code(segment: hl7.Segment, number: int) -> tuple[str, str]:
    """(code, coding system) of a CWE/CNE field: the primary triplet, else the alternate; the
    system by its table 0396 name (CWE.3/.6) or, from v2.7, its OID (CWE.14/.17)."""
    code = value(segment, number, 1, 1)
    if code:
        return code, value(segment, number, 1, 3) or value(segment, number, 1, 14)
    alternate = value(segment, number, 1, 4)
    return alternate, value(segment, number, 1, 6) or value(segment, number, 1, 17)


def _number(obx: hl7.Segment, kind: str) -> float | None:
    if kind == "SN":  # structured numeric: comparator ^ number; only an exact value is a value
        if value(obx, 5, 1, 1) not in ("", "="):
            return None
        text = value(obx, 5, 1, 2)
    else:
        text = value(obx, 5)
    try:
        return float(text)
    except ValueError:
        return None
