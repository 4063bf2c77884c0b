"""The engine's topics: names, partitioning and configs, and their creation.

Every topic is created with explicit configs: Tansu answers DescribeConfigs only with
the configs given at creation, and some clients (Quix Streams) fail without them.
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.errors import BrokerUnavailable
from streams.settings import Settings

WEEK_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str            # without the prefix
    doc: str
    compacted: bool = False
    retention_ms: int = -1
    key: str = ""

    def configs(self) -> dict[str, str]:
        return {
            "cleanup.policy": "compact" if self.compacted else "delete",
            "retention.ms": str(self.retention_ms),
        }


RAW = "events.raw"
NORMALISED = "events.normalised"
DLQ = "events.dlq"
OBSERVATIONS = "outcomes.observations"
INDICATORS = "outcomes.indicators"
ALERTS = "outcomes.alerts"
NETWORK = "network.aggregates"
DEDUPE_CHANGELOG = "normalise.dedupe-changelog"
ASCERTAIN_CHANGELOG = "ascertain.changelog"
AGGREGATE_CHANGELOG = "aggregate.changelog"
SITE_ACTIVITY = "normalise.site-activity"
MONITOR_CHANGELOG = "monitor.changelog"

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(RAW, "ClinicalEvent from hospital feeds: single records or Avro containers of many.",
              key="any (site id recommended)"),
    TopicSpec(NORMALISED, "NormalisedEvent: validated, pseudonymised, UTC, canonical codes and units.",
              key="patient pseudonym"),
    TopicSpec(DLQ, "DeadLetter: rejected records with reason and original bytes (raw-topic access rules).",
              key="source topic/partition/offset"),
    TopicSpec(OBSERVATIONS, "OutcomeObservation per patient, indicator and index event.",
              key="indicator|site"),
    TopicSpec(INDICATORS, "IndicatorSnapshot, latest per key.", compacted=True,
              key="indicator|scope|scope id|window"),
    TopicSpec(ALERTS, "Alert lifecycle records (OPEN, UPDATED, RESOLVED), latest per alert.", compacted=True,
              key="alert id"),
    TopicSpec(NETWORK, "Small-cell-suppressed aggregates shared with the federation.", compacted=True,
              key="indicator|scope|scope id|window"),
    TopicSpec(DEDUPE_CHANGELOG, "Internal: normaliser dedupe state, one record per partition per batch.",
              key="input partition"),
    TopicSpec(ASCERTAIN_CHANGELOG, "Internal: patient timelines, one record per partition per batch.",
              key="input partition"),
    TopicSpec(AGGREGATE_CHANGELOG, "Internal: rolling indicator state (observation upserts, evicted totals), "
              "one record per partition per batch.", key="input partition"),
    TopicSpec(SITE_ACTIVITY, "Internal: per-site event counts per event-time bucket, dead letters and last "
              "event time, one record per site per normaliser batch (feed health).", key="site id",
              retention_ms=WEEK_MS),
    TopicSpec(MONITOR_CHANGELOG, "Internal: monitor charts, observations in the funnel window, open alerts "
              "and feed health, one record per partition per batch.", key="input partition"),
)


def create_topics(settings: Settings, timeout: float = 15.0) -> list[str]:
    """Create the engine's topics that do not exist yet; return the names created."""
    admin = AdminClient(settings.kafka_config(**{"socket.timeout.ms": int(timeout * 1000)}))
    existing = _existing(admin, settings, timeout)
    wanted = [
        NewTopic(settings.topic(spec.name), num_partitions=settings.partitions,
                 replication_factor=settings.replication_factor, config=spec.configs())
        for spec in TOPICS if settings.topic(spec.name) not in existing
    ]
    if not wanted:
        return []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise BrokerUnavailable(f"cannot create topic {name}: {exc.args[0].str()}") from None
    return [t.topic for t in wanted]


def missing_topics(settings: Settings, timeout: float = 10.0) -> list[str]:
    """Engine topics that do not exist on the broker (raises if it cannot be reached)."""
    admin = AdminClient(settings.kafka_config(**{"socket.timeout.ms": int(timeout * 1000)}))
    existing = _existing(admin, settings, timeout)
    return [settings.topic(s.name) for s in TOPICS if settings.topic(s.name) not in existing]


def topic_partitions(settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` (a full name) has on the broker; the configured count if unknown."""
    metadata = AdminClient(settings.kafka_config()).list_topics(topic, timeout=10)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        return settings.partitions
    return len(found.partitions)


def _existing(admin: AdminClient, settings: Settings, timeout: float) -> set[str]:
    try:
        return set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise BrokerUnavailable(f"cannot reach the broker at {settings.broker}: {exc.args[0].str()}") from None
