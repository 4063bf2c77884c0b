"""Engine settings: one object, read once from the environment (``RWE_*``) and CLI flags.

Each setting is declared once below with its environment variable, default and
meaning; the README's configuration table is generated from the same declarations
(``rwe config``). Secrets are masked in ``repr`` and logs.
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.errors import ConfigError

PRODUCTION = "production"
DEV = "dev"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: ``90``, ``90s``, ``15m``, ``12h``, ``30d``, ``250ms``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 15m, 12h or 30d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def _setting(env: str, doc: str, secret: bool = False, **kw: Any) -> Any:
    return field(metadata={"env": env, "doc": doc, "secret": secret}, **kw)


@dataclass(frozen=True)
class Settings:
    """Everything the engine's processes read; see ``rwe config`` for the table."""

    mode: str = _setting("RWE_MODE", "`production` refuses to start without a pseudonymisation key; "
                         "`dev` generates a throw-away key and says so.", default=PRODUCTION)
    broker: str = _setting("RWE_BROKER", "Kafka bootstrap servers, host:port[,host:port].",
                           default="localhost:9092")
    schema_registry_url: str | None = _setting(
        "RWE_SCHEMA_REGISTRY_URL", "Confluent-compatible schema registry; when set, the engine "
        "writes Confluent framing and resolves schema ids there. Unset: Avro single-object "
        "encoding resolved against schemas/.", default=None)
    topic_prefix: str = _setting("RWE_TOPIC_PREFIX", "Prefix of every topic the engine uses.",
                                 default="rwe.")
    partitions: int = _setting("RWE_PARTITIONS", "Partitions of topics the engine creates.", default=4)
    replication_factor: int = _setting("RWE_REPLICATION_FACTOR", "Replication factor of created topics.",
                                       default=1)
    pseudonym_key: str | None = _setting(
        "RWE_PSEUDONYM_KEY", "HMAC-SHA256 key for patient and encounter pseudonyms (>= 32 chars).",
        secret=True, default=None, repr=False)
    pseudonym_key_file: Path | None = _setting(
        "RWE_PSEUDONYM_KEY_FILE", "File holding the pseudonymisation key (e.g. a mounted secret).",
        default=None)
    dead_letter_encryption: str = _setting(
        "RWE_DEAD_LETTER_ENCRYPTION", "Seal dead letters' original bytes (they hold patient identifiers) with "
        "AES-256-GCM: on, off, or auto (on in production, off in dev). Reasons and counts stay readable.",
        default="auto")
    dead_letter_key: str | None = _setting(
        "RWE_DEAD_LETTER_KEY", "Secret (>= 32 chars) the dead-letter sealing key is derived from; "
        "rwe dlq replay needs it.", secret=True, default=None, repr=False)
    dead_letter_key_file: Path | None = _setting(
        "RWE_DEAD_LETTER_KEY_FILE", "File holding that secret (e.g. a mounted secret).", default=None)
    sites_file: Path | None = _setting("RWE_SITES_FILE", "TOML list of sites with region, country and "
                                       "time zone; default: the demo network.", default=None)
    group_id: str = _setting("RWE_GROUP_ID", "Consumer group of the engine's workers.", default="rwe-engine")
    session_timeout_ms: int = _setting(
        "RWE_SESSION_TIMEOUT_MS", "Consumer session timeout. Tansu answers a group join after half of "
        "it, so the demo and tests use 6000.", default=10000)
    batch_size: int = _setting("RWE_BATCH_SIZE", "Most Kafka messages a stage takes per batch.", default=2000)
    batch_wait: float = _setting("RWE_BATCH_WAIT", "Longest a stage waits to fill a batch.", default=0.02)
    min_cell_count: int = _setting("RWE_MIN_CELL_COUNT", "Published counts below this are suppressed "
                                   "(OHDSI 5; PCORnet 11).", default=5)
    cell_rounding: int = _setting("RWE_CELL_ROUNDING", "Round published counts up to a multiple of this "
                                  "(EHDEN: 100); 0 is off.", default=0)
    allowed_lateness: float = _setting("RWE_ALLOWED_LATENESS", "How far the event-time watermark trails the "
                                       "newest event: a follow-up closes this long after its horizon, e.g. 2d.",
                                       default=2 * 86400.0)
    revision_horizon: float = _setting(
        "RWE_REVISION_HORIZON", "How far behind the newest event time a late event still revises published "
        "observations, e.g. 365d; older ones are dead letters (beyond_revision_horizon). Longer keeps "
        "closed patients longer (benchmarks/RESULTS.md: state per closed patient).", default=365 * 86400.0)
    max_feed_delay: float = _setting(
        "RWE_MAX_FEED_DELAY", "Live feeds only: the watermark of a quiet partition follows the wall clock this "
        "far behind, e.g. 7d (0: pure event time). A partition is live when its newest event arrived within "
        "this delay of its event time; replays of history keep pure event time.", default=7 * 86400.0)
    as_of: str = _setting("RWE_AS_OF", "Publish what is known as of this event time (ISO-8601, e.g. "
                          "2025-12-31T00:00Z): later events are not applied, and follow-ups close at it. "
                          "Empty: the newest event time.", default="")
    snapshot_interval: float = _setting(
        "RWE_SNAPSHOT_INTERVAL", "Least time (s) between two computations of an indicator's snapshots: a "
        "snapshot key is published at most this often, when it changed. 0.5 keeps p99 event-to-snapshot "
        "latency under 1 s at half the peak load (benchmarks/RESULTS-pipeline.md).", default=1.0)
    hot_patients: int = _setting("RWE_HOT_PATIENTS", "Patients per partition the ascertain stage keeps "
                                 "unpacked between batches (more: less CPU, more memory).", default=1000)
    dedupe_horizon: float = _setting("RWE_DEDUPE_HORIZON", "Event-time span over which (site, event id) "
                                     "duplicates are recognised, e.g. 30d.", default=30 * 86400.0)
    max_record_bytes: int = _setting(
        "RWE_MAX_RECORD_BYTES", "Largest raw message (one event, or a container of many) the normaliser "
        "reads; larger ones are dead letters (too_large).", default=1 << 20)
    max_id_length: int = _setting("RWE_MAX_ID_LENGTH", "Longest event, site, patient, issuer or encounter id "
                                  "(characters); longer: a dead letter (field_too_long).", default=128)
    max_code_length: int = _setting("RWE_MAX_CODE_LENGTH", "Longest code, code system, unit or PROM name "
                                    "(characters); longer: a dead letter (field_too_long).", default=64)
    dead_letter_max_bytes: int = _setting(
        "RWE_DEAD_LETTER_MAX_BYTES", "Most bytes of an original record a dead letter keeps; a longer one is "
        "kept truncated, with its full length and SHA-256.", default=256 << 10)
    future_tolerance: float = _setting("RWE_FUTURE_TOLERANCE", "How far an event may lie after its "
                                       "recorded time, or a record after now (clock skew).", default=3600.0)
    monitor_arl0: float = _setting(
        "RWE_MONITOR_ARL0", "In-control average run length of every sequential monitor (CUSUM, EWMA), in "
        "observations of one indicator at one site: the limits are calibrated to it.", default=1000.0)
    monitor_warmup: int = _setting(
        "RWE_MONITOR_WARMUP", "FINAL observations of an indicator network-wide before its charts start "
        "(running rates and the patient mix need them).", default=30)
    monitor_resolve_after: int = _setting(
        "RWE_MONITOR_RESOLVE_AFTER", "An open CUSUM alert resolves after this many consecutive "
        "observations below half its limit, an EWMA alert after this many inside its limits.", default=200)
    monitor_ewma_lambda: float = _setting("RWE_MONITOR_EWMA_LAMBDA", "EWMA weight (0.05-0.2).", default=0.1)
    monitor_overdispersion: str = _setting(
        "RWE_MONITOR_OVERDISPERSION", "Funnel-plot overdispersion: none, phi (Spiegelhalter's "
        "multiplicative factor from the sites' z-scores) or winsorised (the same, z-scores winsorised "
        "at 10 % each end).", default="none")
    feed_bucket: float = _setting("RWE_FEED_BUCKET", "Event-time bucket of the per-site volume the EARS "
                                  "checks watch, e.g. 1h.", default=3600.0)
    feed_silence: float = _setting("RWE_FEED_SILENCE", "Wall-clock time without an accepted event from a "
                                   "site before a feed-silence alert, e.g. 15m.", default=900.0)
    feed_dlq_rate: float = _setting("RWE_FEED_DLQ_RATE", "Share of a site's records dead-lettered (over "
                                    "its last 24 buckets) that raises an alert.", default=0.05)
    metrics_port: int = _setting("RWE_METRICS_PORT", "Port of the /metrics endpoint; 0 is off.", default=9464)
    consumer_lag_interval: float = _setting(
        "RWE_CONSUMER_LAG_INTERVAL", "How often rwe_consumer_lag is refreshed (librdkafka statistics); "
        "0 is off.", default=5.0)
    metrics_host: str = _setting("RWE_METRICS_HOST", "Address /metrics listens on; 0.0.0.0 in a container.",
                                 default="127.0.0.1")
    hl7_host: str = _setting("RWE_HL7_HOST", "Address rwe hl7 listen accepts MLLP connections on; 0.0.0.0 in a "
                             "container.", default="127.0.0.1")
    hl7_port: int = _setting("RWE_HL7_PORT", "MLLP port of rwe hl7 listen (2575 is HL7's registered port).",
                             default=2575)
    hl7_facilities: str = _setting(
        "RWE_HL7_FACILITIES", "Sending facility (MSH-4.1) to site id, e.g. AMC=NL-AMC,CHARITE=DE-CHA; a facility "
        "not listed must be a site id itself.", default="")
    log_level: str = _setting("RWE_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR.", default="INFO")
    kafka: Mapping[str, str] = _setting(
        "RWE_KAFKA_*", "Passed to every Kafka client: RWE_KAFKA_SECURITY_PROTOCOL=SASL_SSL becomes "
        "security.protocol. Values of keys naming a password or secret are masked.",
        default_factory=dict)

    def __post_init__(self) -> None:
        self._validate()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> Settings:
        """Settings from ``env`` (pass ``os.environ``), then ``overrides`` from CLI flags."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if f.name == "kafka":
                values["kafka"] = {k[len("RWE_KAFKA_"):].lower().replace("_", "."): v
                                   for k, v in env.items() if k.startswith("RWE_KAFKA_")}
            elif name in env and env[name] != "":
                values[f.name] = _convert(f.name, name, env[name], f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def as_of_us(self) -> int | None:
        """RWE_AS_OF in UTC microseconds (None: not set)."""
        if not self.as_of:
            return None
        try:
            stamp = datetime.fromisoformat(self.as_of.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"RWE_AS_OF must be an ISO-8601 time such as 2025-12-31T00:00Z, "
                              f"not {self.as_of!r}") from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)

    def _validate(self) -> None:
        if self.mode not in (PRODUCTION, DEV):
            raise ConfigError(f"RWE_MODE must be {PRODUCTION} or {DEV}, not {self.mode!r}")
        if not re.match(r"^[A-Za-z0-9._-]*$", self.topic_prefix):
            raise ConfigError(f"RWE_TOPIC_PREFIX {self.topic_prefix!r} may hold only letters, digits, . _ -")
        for name, minimum in (("partitions", 1), ("replication_factor", 1), ("batch_size", 1),
                              ("min_cell_count", 1), ("session_timeout_ms", 1000),
                              ("hot_patients", 0), ("max_record_bytes", 1024), ("max_id_length", 8),
                              ("max_code_length", 8), ("dead_letter_max_bytes", 1024)):
            if getattr(self, name) < minimum:
                raise ConfigError(f"{_env_of(name)} must be at least {minimum}, not {getattr(self, name)}")
        for name, maximum in (("batch_size", 1_000_000), ("session_timeout_ms", 3_600_000)):  # librdkafka's
            if getattr(self, name) > maximum:
                raise ConfigError(f"{_env_of(name)} must be at most {maximum:,}, not {getattr(self, name):,}")
        for name in ("metrics_port", "hl7_port"):
            if not 0 <= getattr(self, name) <= 65535:
                raise ConfigError(f"{_env_of(name)} must be a port number, not {getattr(self, name)}")
        self.facility_sites  # noqa: B018 - parses RWE_HL7_FACILITIES: a bad mapping is one line here
        if self.revision_horizon < self.allowed_lateness:
            raise ConfigError(f"RWE_REVISION_HORIZON ({self.revision_horizon:g} s) must be at least "
                              f"RWE_ALLOWED_LATENESS ({self.allowed_lateness:g} s)")
        if self.max_feed_delay < 0:
            raise ConfigError(f"RWE_MAX_FEED_DELAY must not be negative, not {self.max_feed_delay}")
        self.as_of_us  # noqa: B018 - parses RWE_AS_OF: a bad date is one line here, not at the first event
        if self.consumer_lag_interval < 0:
            raise ConfigError(f"RWE_CONSUMER_LAG_INTERVAL must not be negative, not {self.consumer_lag_interval}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"RWE_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {self.log_level!r}")
        if self.monitor_arl0 < 10:
            raise ConfigError(f"RWE_MONITOR_ARL0 must be at least 10 observations, not {self.monitor_arl0}")
        if not 0.01 <= self.monitor_ewma_lambda <= 1:
            raise ConfigError(f"RWE_MONITOR_EWMA_LAMBDA must lie in [0.01, 1], not {self.monitor_ewma_lambda}")
        if self.monitor_overdispersion not in ("none", "phi", "winsorised"):
            raise ConfigError("RWE_MONITOR_OVERDISPERSION must be none, phi or winsorised, not "
                              f"{self.monitor_overdispersion!r}")
        if not 0 < self.feed_dlq_rate < 1:
            raise ConfigError(f"RWE_FEED_DLQ_RATE must lie in (0, 1), not {self.feed_dlq_rate}")
        for name in ("monitor_warmup", "monitor_resolve_after", "feed_bucket", "feed_silence", "snapshot_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_env_of(name)} must be positive, not {getattr(self, name)}")
        if self.dead_letter_encryption not in ("auto", "on", "off"):
            raise ConfigError("RWE_DEAD_LETTER_ENCRYPTION must be auto, on or off, not "
                              f"{self.dead_letter_encryption!r}")
        if self.pseudonym_key is not None and len(self.pseudonym_key) < 32:
            raise ConfigError("RWE_PSEUDONYM_KEY must be at least 32 characters")

    @property
    def facility_sites(self) -> dict[str, str]:
        """RWE_HL7_FACILITIES as a mapping from sending facility to site id."""
        mapping = {}
        for pair in filter(None, (p.strip() for p in self.hl7_facilities.split(","))):
            facility, sep, site = (part.strip() for part in pair.partition("="))
            if not sep or not facility or not site:
                raise ConfigError(f"RWE_HL7_FACILITIES: {pair!r} is not FACILITY=SITE")
            mapping[facility] = site
        return mapping

    def resolve_key(self) -> tuple[bytes, bool]:
        """The pseudonymisation key and whether it is a generated dev key.

        Production refuses to run without one: pseudonyms from a throw-away key
        cannot be linked across restarts, so outcomes would silently split.
        """
        if self.pseudonym_key:
            return self.pseudonym_key.encode(), False
        if self.pseudonym_key_file:
            try:
                key = Path(self.pseudonym_key_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"RWE_PSEUDONYM_KEY_FILE {self.pseudonym_key_file}: {exc.strerror}") from None
            if len(key) < 32:
                raise ConfigError(f"RWE_PSEUDONYM_KEY_FILE {self.pseudonym_key_file}: key shorter than 32 characters")
            return key.encode(), False
        if self.mode == DEV:
            return secrets.token_hex(32).encode(), True
        raise ConfigError("no pseudonymisation key: set RWE_PSEUDONYM_KEY or RWE_PSEUDONYM_KEY_FILE "
                          "(or RWE_MODE=dev for a throw-away key)")

    def dead_letter_secret(self) -> bytes | None:
        """The secret dead letters are sealed with, or None when sealing is off (dev by default)."""
        if self.dead_letter_encryption == "off" or (self.dead_letter_encryption == "auto" and self.mode == DEV):
            return None
        if self.dead_letter_key:
            key = self.dead_letter_key
        elif self.dead_letter_key_file:
            try:
                key = Path(self.dead_letter_key_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"RWE_DEAD_LETTER_KEY_FILE {self.dead_letter_key_file}: {exc.strerror}") from None
        else:
            raise ConfigError("dead letters are sealed (RWE_DEAD_LETTER_ENCRYPTION, on in production): set "
                              "RWE_DEAD_LETTER_KEY or RWE_DEAD_LETTER_KEY_FILE, or RWE_DEAD_LETTER_ENCRYPTION=off")
        if len(key) < 32:
            raise ConfigError("the dead-letter key (RWE_DEAD_LETTER_KEY or _FILE) must be at least 32 characters")
        return key.encode()

    def topic(self, name: str) -> str:
        """Full name of an engine topic, e.g. ``events.raw`` -> ``rwe.events.raw``."""
        return f"{self.topic_prefix}{name}"

    def kafka_config(self, **extra: Any) -> dict[str, Any]:
        """Client configuration for confluent-kafka: bootstrap servers, passthrough, ``extra``."""
        # Idle connections closed by the broker are normal; librdkafka would log each one.
        # Its other logs go through Python logging, each distinct line at most every 30 s.
        return {"bootstrap.servers": self.broker, "log.connection.close": False, "logger": kafka_logger(),
                **self.kafka, **extra}

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["secret"] and value is not None:
                value = "***"
            elif f.name == "kafka":
                value = {k: ("***" if _is_secret_key(k) else v) for k, v in value.items()}
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__


class _RepeatFilter(logging.Filter):
    """Drops a log line identical to one passed within ``window`` seconds."""

    def __init__(self, window: float = 30.0) -> None:
        super().__init__()
        self.window = window
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # librdkafka lines start with a timestamp-free "FAIL|rdkafka#producer-1| ..." text.
        text = re.sub(r"\(after \d+ms[^)]*\)", "", record.getMessage())
        now = time.monotonic()
        if now - self._last.get(text, -self.window) < self.window:
            return False
        self._last[text] = now
        return True


def kafka_logger() -> logging.Logger:
    logger = logging.getLogger("rwe.kafka")
    if not logger.filters:
        logger.addFilter(_RepeatFilter())
    return logger


def _is_secret_key(key: str) -> bool:
    return any(word in key for word in ("password", "secret", "key", "token"))


def _env_of(name: str) -> str:
    return next(f.metadata["env"] for f in fields(Settings) if f.name == name)


def _convert(name: str, env_name: str, raw: str, type_: Any) -> Any:
    kind = str(type_)
    try:
        if name in ("allowed_lateness", "revision_horizon", "max_feed_delay", "dedupe_horizon", "future_tolerance",
                    "batch_wait", "feed_bucket",
                    "feed_silence"):
            return parse_duration(raw)
        if kind.startswith("float"):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError("not a finite number")
            return value
        if kind.startswith("int"):
            if not raw.strip().lstrip("-").isdigit():
                raise ValueError("not a whole number")
            return int(raw)
        if "Path" in kind:
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(f"{env_name}={raw!r}: {exc}") from None
    return raw


def describe() -> list[tuple[str, str, str]]:
    """(environment variable, default, meaning) of every setting, for docs and ``rwe config``."""
    rows = []
    for f in fields(Settings):
        default = "" if f.default is MISSING else f.default
        rows.append((f.metadata["env"], "" if default is None else str(default), f.metadata["doc"]))
    return rows
