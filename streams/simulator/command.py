"""``rwe simulate``: flags, and a run that writes a container file or publishes to Kafka."""

from __future__ import annotations

import argparse
import math
import time
from datetime import UTC, datetime
from pathlib import Path

from streams.catalogue.sites import load_sites
from streams.errors import ConfigError
from streams.settings import Settings

from .feed import generate, write_container_file
from .model import AREAS, DUPLICATE, MALFORMED, VALID, Shift, SimulationConfig, validate
from .publish import publish

_DEFAULTS = SimulationConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``rwe simulate`` flags."""
    add = parser.add_argument
    add("--seed", type=int, default=_DEFAULTS.seed, help="random seed; the same seed gives the same feed")
    add("--patients-per-site", type=int, default=_DEFAULTS.patients_per_site,
        help="patients entering cohorts over the span, per site")
    add("--days", type=int, default=_DEFAULTS.days, help="simulated span in days")
    add("--start", default=_DEFAULTS.start.date().isoformat(),
        help="first simulated instant, ISO date or time (UTC unless it has an offset)")
    add("--duplicate-rate", type=float, default=_DEFAULTS.duplicate_rate, help="exact resends, share of events")
    add("--late-rate", type=float, default=_DEFAULTS.late_rate,
        help="late (and as many out-of-order) arrivals, share of events")
    add("--late-max-hours", type=float, default=_DEFAULTS.late_max_hours, help="latest a late event arrives")
    add("--malformed-rate", type=float, default=_DEFAULTS.malformed_rate,
        help="malformed records, share of events")
    add("--shift", action="append", default=[], metavar="SITE:OUTCOME:ODDS:DATE",
        help="multiply SITE's odds of OUTCOME by ODDS for index events from DATE (repeatable)")
    add("--areas", default=",".join(AREAS), help=f"comma-separated subset of {','.join(AREAS)}")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None,
                      help="simulated seconds per wall-clock second (a year in a minute: 525600)")
    pace.add_argument("--rate", type=float, default=None, help="events per second")
    add("--batch", type=int, default=0, help="records per Kafka message (Avro container); 0: one each")
    add("--out", type=Path, default=None, help="write an Avro container file instead of publishing")
    add("--topic", default=None, help="topic to publish to (default: the engine's events.raw)")


def config_from_args(args: argparse.Namespace, settings: Settings) -> SimulationConfig:
    """The simulation configuration the flags describe; ConfigError names a wrong flag."""
    for flag in ("duplicate_rate", "late_rate", "malformed_rate"):
        value = getattr(args, flag)
        if not (math.isfinite(value) and 0 <= value < 1):
            raise ConfigError(f"--{flag.replace('_', '-')} must be in [0, 1), not {value}")
    if args.patients_per_site < 0:
        raise ConfigError(f"--patients-per-site must be at least 0, not {args.patients_per_site}")
    if args.days < 1:
        raise ConfigError(f"--days must be at least 1, not {args.days}")
    if not (math.isfinite(args.late_max_hours) and args.late_max_hours > 0):
        raise ConfigError(f"--late-max-hours must be positive, not {args.late_max_hours}")
    areas = tuple(a.strip() for a in args.areas.split(",") if a.strip())
    bad = [a for a in areas if a not in AREAS]
    if bad or not areas:
        raise ConfigError(f"--areas must name some of {', '.join(AREAS)}, not {args.areas!r}")
    sites = load_sites(settings.sites_file)
    config = SimulationConfig(
        seed=args.seed,
        patients_per_site=args.patients_per_site,
        start=parse_instant(args.start, "--start"),
        days=args.days,
        sites=sites,
        duplicate_rate=args.duplicate_rate,
        late_rate=args.late_rate,
        late_max_hours=args.late_max_hours,
        malformed_rate=args.malformed_rate,
        shifts=tuple(parse_shift(text) for text in args.shift),
        areas=areas,
    )
    validate(config, sites)
    return config


def parse_instant(text: str, flag: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r} is not an ISO date like 2025-01-01") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_shift(text: str) -> Shift:
    """``SITE:OUTCOME:ODDS:DATE``, e.g. ``NL-AMC:hf_mortality_30d:2.0:2025-06-01``."""
    parts = text.split(":", 3)
    if len(parts) != 4 or not all(p.strip() for p in parts):
        raise ConfigError(f"--shift {text!r} must be SITE:OUTCOME:ODDS:DATE")
    site, outcome, odds, date = (p.strip() for p in parts)
    try:
        ratio = float(odds)
    except ValueError:
        raise ConfigError(f"--shift {text!r}: odds ratio {odds!r} is not a number") from None
    if not (math.isfinite(ratio) and ratio > 0):
        raise ConfigError(f"--shift {text!r}: odds ratio must be positive")
    return Shift(site, outcome, ratio, parse_instant(date, f"--shift {text!r}: date"))


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Generate the feed and write it to ``--out`` or publish it; print one summary line."""
    if args.batch < 0:
        raise ConfigError(f"--batch must be at least 0, not {args.batch}")
    for flag in ("speed", "rate"):
        value = getattr(args, flag)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"--{flag} must be positive, not {value}")
    config = config_from_args(args, settings)
    began = time.monotonic()
    if args.out is not None:
        manifest = write_container_file(config, args.out)
        bad = sum(manifest.malformed.values())
        print(f"wrote {manifest.valid + manifest.duplicates + bad} records to {args.out} "
              f"({manifest.valid} valid, {manifest.duplicates} duplicates, {bad} malformed) "
              f"in {time.monotonic() - began:.1f} s")
        return 0

    from confluent_kafka import Producer

    topic = args.topic or settings.topic("events.raw")
    messages, manifest = generate(config)
    producer = Producer(settings.kafka_config(**{"linger.ms": 10, "batch.num.messages": 10000}))
    sent = publish(messages, producer, topic, speed=args.speed, rate=args.rate, batch=args.batch)
    kinds = {VALID: 0, DUPLICATE: 0, MALFORMED: 0}
    for m in messages:
        kinds[m.kind] += 1
    print(f"published {sent} messages to {topic}: {kinds[VALID]} valid, {kinds[DUPLICATE]} "
          f"duplicates, {kinds[MALFORMED]} malformed events in {time.monotonic() - began:.1f} s")
    return 0
