"""``rwe alerts``: the open alerts, read from the compacted alerts topic.

The topic holds every lifecycle record keyed by alert_id; the latest record of a key
is the alert's state, and the alerts whose latest record is not RESOLVED are open.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings
from streams.wire import schemas


def latest(settings: Settings) -> dict[str, dict[str, Any]]:
    """The latest record of every alert on the alerts topic, by alert_id."""
    from confluent_kafka import Consumer

    from streams.runtime.runner import consumer_config
    from streams.runtime.topics import ALERTS, missing_topics
    from streams.state.changelog import read_partition
    from streams.wire.registry import decoder_for

    topic = settings.topic(ALERTS)
    if topic in missing_topics(settings):
        raise ConfigError(f"no alerts topic {topic} on {settings.broker} (rwe topics create)")
    decoder = decoder_for(settings, schemas.ALERT)
    consumer = Consumer(consumer_config(settings, f"{settings.group_id}.alerts-reader"))
    records: dict[str, dict[str, Any]] = {}
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for partition in sorted(partitions):
            for message in read_partition(consumer, topic, partition):
                for record in decoder.decode(message.value() or b""):
                    records[record["alert_id"]] = record
    finally:
        consumer.close()
    return records


def open_alerts(records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Alerts whose latest record is not RESOLVED, highest triage rank first."""
    return sorted((r for r in records.values() if r["status"] != "RESOLVED"),
                  key=lambda r: (-r["rank"], r["alert_id"]))


def _time(us: int | None) -> str:
    return "-" if us is None else datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M")


def render(alerts: list[dict[str, Any]], as_json: bool) -> str:
    if as_json:
        return json.dumps(alerts, indent=1, sort_keys=True)
    rows = [("rank", "severity", "method", "indicator", "site", "statistic", "limit", "O/E", "obs/n",
             "first seen", "last seen")]
    for a in alerts:
        rows.append((f"{a['rank']:.1f}", a["severity"], a["method"], a["indicator"] or "(feed)", a["scope_id"],
                     f"{a['statistic']:.3g}", f"{a['limit']:.3g}",
                     "-" if a["observed_expected"] is None else f"{a['observed_expected']:.2f}",
                     "suppressed" if a["denominator"] is None else f"{a['numerator'] or '-'}/{a['denominator']}",
                     _time(a["first_seen"]), _time(a["last_seen"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join([f"{len(alerts)} open alerts", *lines])
