"""``rwe calibrate``: fit the catalogue's risk models on a reference period and report calibration.

Observations come from an Avro file (``rwe evaluate --format avro``) or from a range
of the observations topic; the latest record of each observation id wins (OPEN, then
FINAL or EXCLUDED), and only FINAL ones whose index time lies in [--from, --to) count.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from streams.catalogue.definitions import Catalogue, Indicator, load_catalogue
from streams.errors import ConfigError
from streams.monitoring import calibration
from streams.settings import Settings
from streams.simulator.command import parse_instant
from streams.simulator.model import utc_us
from streams.wire import formats as wire
from streams.wire import schemas

READ_TIMEOUT = 600.0  # seconds to read a topic partition to its end


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--observations", type=Path, metavar="FILE",
                        help="Avro container of OutcomeObservations (rwe evaluate --format avro --out FILE)")
    source.add_argument("--topic", metavar="NAME", help="read this engine topic, e.g. outcomes.observations "
                        "(the topic prefix RWE_TOPIC_PREFIX is added)")
    add("--from", dest="start", default=None, metavar="DATE",
        help="first index time of the reference period, ISO date or time (default: the first)")
    add("--to", dest="end", default=None, metavar="DATE",
        help="end of the reference period (exclusive), ISO date or time (default: open)")
    add("--from-offset", type=int, default=None, metavar="N", help="topic only: start at offset N of every partition")
    add("--to-offset", type=int, default=None, metavar="N",
        help="topic only: stop before offset N of every partition")
    add("--indicator", action="append", default=None, metavar="ID", help="only this indicator (repeatable)")
    add("--catalogue-dir", default=None, metavar="DIR", help="catalogue folder (default: the built-in one)")
    add("--output", type=Path, default=None, metavar="FILE",
        help="write the TOML tables here instead of printing them after the report")


def run(args: argparse.Namespace, settings: Settings) -> int:
    catalogue = load_catalogue(Path(args.catalogue_dir) if args.catalogue_dir else None)
    indicators = _chosen(catalogue, args.indicator)
    start = utc_us(parse_instant(args.start, "--from")) if args.start else None
    end = utc_us(parse_instant(args.end, "--to")) if args.end else None
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--to {args.end} must be after --from {args.start}")
    for flag in ("from_offset", "to_offset"):
        value = getattr(args, flag)
        if value is not None and args.topic is None:
            raise ConfigError(f"--{flag.replace('_', '-')} needs --topic")
        if value is not None and value < 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 0, not {value}")
    if args.from_offset is not None and args.to_offset is not None and args.to_offset <= args.from_offset:
        raise ConfigError(f"--to-offset {args.to_offset} must be after --from-offset {args.from_offset}")
    if args.topic is not None:
        source = f"topic {settings.topic(args.topic)}"
        records = read_topic(settings, settings.topic(args.topic), args.from_offset, args.to_offset)
    else:
        source = str(args.observations)
        records = wire.read_container_file(args.observations, schemas.OUTCOME_OBSERVATION)
    period = f" with index times {args.start or 'start'} .. {args.end or 'end'}" if args.start or args.end else ""
    final = final_observations(records, {i.id for i in indicators}, start, end)
    print(f"rwe calibrate: catalogue {catalogue.version}, {sum(map(len, final.values()))} FINAL observations "
          f"from {source}{period}")
    print(f"\n{'indicator':30} {'model':9} {'n':>7} {'events':>7} {'O/E':>6} {'c':>6} {'CITL':>7} {'slope':>6}"
          f" {'R^2':>6}")
    snippets = []
    for ind in indicators:
        rows = final.get(ind.id, [])
        if ind.risk is not None and rows:
            try:
                print(_row(ind.id, "catalogue", calibration.assess(ind.risk, ind, rows)))
            except calibration.FitError as exc:
                print(f"{ind.id:30} {'catalogue':9} not assessed: {exc}")
        try:
            fitted = calibration.fit(ind, rows)
            assessment = calibration.assess(fitted.model, ind, rows)
        except calibration.FitError as exc:
            print(f"{ind.id:30} {'fitted':9} not fitted: {exc}")
            continue
        print(_row(ind.id, "fitted", assessment))
        snippets.append(calibration.toml_snippet(ind, fitted, assessment, source + period))
    text = "\n".join(snippets)
    if args.output is not None:
        try:
            args.output.write_text(text)
        except OSError as exc:
            raise ConfigError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"\n{len(snippets)} risk tables -> {args.output}")
    else:
        sys.stdout.write("\n" + text)
    return 0


def _chosen(catalogue: Catalogue, ids: list[str] | None) -> list[Indicator]:
    if not ids:
        return list(catalogue.indicators.values())
    unknown = [i for i in ids if i not in catalogue.indicators]
    if unknown:
        raise ConfigError(f"unknown indicator {unknown[0]!r} (see rwe catalogue list)")
    return [catalogue.indicators[i] for i in ids]


def _row(indicator: str, model: str, a: calibration.Assessment) -> str:
    def num(value: float | None, width: int, digits: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    events = f"{a.events:>7}" if a.events is not None else f"{'-':>7}"
    return (f"{indicator:30} {model:9} {a.n:>7} {events} {num(a.observed_expected, 6, 3)} {num(a.c_statistic, 6, 3)}"
            f" {num(a.calibration_in_the_large, 7, 3)} {num(a.calibration_slope, 6, 3)} {num(a.r_squared, 6, 3)}")


# --------------------------------------------------------------------------- input
def final_observations(records: Iterable[Mapping[str, Any]], indicators: set[str], start: int | None,
                       end: int | None) -> dict[str, list[Mapping[str, Any]]]:
    """FINAL observations by indicator, the latest record of each observation id winning."""
    latest: dict[str, Mapping[str, Any]] = {}
    for record in records:
        if record["indicator"] in indicators:
            latest[record["observation_id"]] = record
    out: dict[str, list[Mapping[str, Any]]] = {}
    for obs_id in sorted(latest):  # a stable order whatever the source's
        r = latest[obs_id]
        if r["status"] == "FINAL" and (start is None or r["index_time"] >= start) and (
                end is None or r["index_time"] < end):
            out.setdefault(r["indicator"], []).append(r)
    return out


def read_topic(settings: Settings, topic: str, from_offset: int | None, to_offset: int | None
               ) -> Iterator[dict[str, Any]]:
    """OutcomeObservations on ``topic``, partition by partition, offsets in [from, to)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer

    from streams.runtime.runner import consumer_config
    from streams.runtime.topics import missing_topics
    from streams.state.changelog import read_partition
    from streams.wire.registry import decoder_for

    missing_topics(settings)  # one-line error when the broker is unreachable
    decoder = decoder_for(settings, schemas.OUTCOME_OBSERVATION)
    consumer = Consumer(consumer_config(settings, f"{settings.group_id}.calibrate"))
    try:
        found = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            raise ConfigError(f"no topic {topic} on {settings.broker}")
        for partition in sorted(found.partitions):
            start = OFFSET_BEGINNING if from_offset is None else from_offset
            for message in read_partition(consumer, topic, partition, timeout=READ_TIMEOUT, start=start):
                if to_offset is not None and (message.offset() or 0) >= to_offset:
                    break
                value = message.value()
                if value is None:
                    continue
                try:
                    yield from decoder.decode(value)
                except wire.DecodeError as exc:
                    raise ConfigError(f"{topic}[{partition}] offset {message.offset()}: {exc.message}") from None
    finally:
        consumer.close()
