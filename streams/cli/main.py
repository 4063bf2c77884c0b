"""``rwe``: the engine's command line.

Every subcommand shares the connection flags; every user error (a wrong flag, a
bad setting, an unreachable broker) ends as one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from streams.errors import BrokerUnavailable, ConfigError
from streams.settings import DEV, Settings, describe

EXIT_CONFIG = 2
EXIT_BROKER = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, naming what is wrong, instead of usage + error.
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _connection_flags() -> _Parser:
    common = _Parser(add_help=False)
    g = common.add_argument_group("connection (override RWE_* environment variables)")
    g.add_argument("--broker", help="Kafka bootstrap servers (RWE_BROKER)")
    g.add_argument("--registry-url", dest="schema_registry_url", help="schema registry URL (RWE_SCHEMA_REGISTRY_URL)")
    g.add_argument("--topic-prefix", help="topic prefix (RWE_TOPIC_PREFIX)")
    g.add_argument("--partitions", type=int, help="partitions of created topics (RWE_PARTITIONS)")
    g.add_argument("--dev", action="store_const", const=DEV, dest="mode",
                   help="dev mode: a throw-away pseudonymisation key when none is set (RWE_MODE=dev)")
    g.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (RWE_LOG_LEVEL)")
    return common


SETTING_FLAGS = ("broker", "schema_registry_url", "topic_prefix", "partitions", "mode", "log_level")


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None, **extra: Any) -> Settings:
    overrides = {name: getattr(args, name, None) for name in SETTING_FLAGS}
    overrides.update(extra)  # what the command itself fixes (the demo's embedded broker) wins
    settings = Settings.from_env(os.environ if env is None else env, **overrides)
    from streams.runtime.client_check import check_client_config

    check_client_config(settings)  # librdkafka's own check, before any client connects
    return settings


# --------------------------------------------------------------------------- commands
def cmd_config(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    print(repr(settings))
    if args.table:
        print("\n| variable | default | meaning |\n|---|---|---|")
        for env, default, doc in describe():
            print(f"| `{env}` | {f'`{default}`' if default else ''} | {doc} |")
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    from streams.embedded.broker import EmbeddedBroker
    from streams.runtime.topics import create_topics

    with EmbeddedBroker(port=args.port) as broker:
        settings = settings_from(args, broker=broker.bootstrap)
        created = create_topics(settings)
        print(f"Tansu listening on {broker.bootstrap} (memory storage); created {len(created)} topics "
              f"with {settings.partitions} partitions. Ctrl-C stops it.", flush=True)
        _wait_for_signal()
    print("broker stopped")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.runtime.topics import TOPICS, create_topics

    settings = settings_from(args)
    if args.action == "create":
        created = create_topics(settings)
        print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else " (all existed)"))
    else:
        for spec in TOPICS:
            print(f"{settings.topic(spec.name):40} {'compacted' if spec.compacted else 'delete   '}  "
                  f"key: {spec.key:32} {spec.doc}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.runtime.topics import create_topics, missing_topics
    from streams.runtime.topology import STAGES
    from streams.runtime.worker import Worker, kafka_context

    stages = args.stages or list(STAGES)
    settings = settings_from(args)
    context = kafka_context(settings)
    if context.dev_key:
        logging.getLogger("rwe").warning("dev mode: using a throw-away pseudonymisation key")
    if settings.metrics_port:  # before the broker: a wrong host or port is the first thing to say
        _serve_metrics(context, settings.metrics_port)
    if args.create_topics:
        create_topics(settings)
    else:
        missing = missing_topics(settings)
        if missing:
            raise ConfigError(f"topics missing on {settings.broker}: {', '.join(missing)} "
                              "(run rwe topics create, or pass --create-topics)")
    worker = Worker(context, stages)
    worker.start()
    print(f"worker running stages {', '.join(stages)} against {settings.broker}"
          + (f"; metrics on http://127.0.0.1:{settings.metrics_port}/metrics" if settings.metrics_port else ""),
          flush=True)
    try:
        _wait_for_signal(lambda: not worker.alive)
    finally:
        worker.stop()
    if worker.errors:
        raise BrokerUnavailable(str(worker.errors[0]))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from streams.runtime.producer import publish_file

    settings = settings_from(args)
    started = time.perf_counter()
    events, messages = publish_file(settings, Path(args.file), batch=args.batch, topic=args.topic)
    print(f"published {events} events in {messages} messages to {args.topic or settings.topic('events.raw')} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


def cmd_hl7(args: argparse.Namespace) -> int:
    from streams.ingest.hl7_listener import build_endpoint, listen

    flags = {"hl7_host": args.host, "hl7_port": args.port}
    settings = settings_from(args, **{name: v for name, v in flags.items() if v is not None})
    if args.action == "import":
        from streams.ingest.hl7_import import import_files

        if not args.files:
            raise ConfigError("hl7 import needs at least one FILE of HL7 v2 messages")
        return import_files(settings, build_endpoint(settings), [Path(f) for f in args.files],
                            Path(args.checkpoint), args.in_flight)
    if args.files:
        raise ConfigError("hl7 listen takes no FILE (did you mean rwe hl7 import?)")
    endpoint = build_endpoint(settings)
    if settings.metrics_port:
        endpoint.gateway.metrics.serve(settings.metrics_port, settings.metrics_host)
    listen(settings, endpoint, settings.hl7_host, settings.hl7_port)
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from streams.cli import dlq

    settings = settings_from(args)
    if args.action == "inspect":
        return dlq.inspect(settings, limit=args.limit, show=args.show)
    return dlq.replay(settings, reasons=args.reason, to_topic=args.to_topic, dry_run=args.dry_run)


def cmd_alerts(args: argparse.Namespace) -> int:
    from streams.cli import alerts as open_alerts

    alerts = open_alerts.open_alerts(open_alerts.latest(settings_from(args)))
    print(open_alerts.render(alerts, args.json))
    return 0


def cmd_catalogue(args: argparse.Namespace) -> int:
    import json

    from streams.catalogue.definitions import load_catalogue

    catalogue = load_catalogue(Path(args.dir) if args.dir else None)
    if args.action == "validate":
        print(f"catalogue {catalogue.version}: {len(catalogue.indicators)} indicators in "
              f"{len(catalogue.by_area())} areas, valid")
    elif args.action == "list":
        print(f"catalogue {catalogue.version}")
        for area, indicators in sorted(catalogue.by_area().items()):
            print(f"\n{area}")
            for ind in indicators:
                print(f"  {ind.id:32} {ind.shape:15} {ind.horizon_days:>5g} d  {ind.title}")
    else:
        if not args.indicator:
            raise ConfigError("catalogue show needs an indicator id (see rwe catalogue list)")
        unknown = [i for i in args.indicator if i not in catalogue.indicators]
        if unknown:
            raise ConfigError(f"unknown indicator {unknown[0]!r} (see rwe catalogue list)")
        from streams.clinical.codes import CodeMap

        code_map = CodeMap.load()
        for ind_id in args.indicator:
            ind = catalogue.indicators[ind_id]
            selectors = (ind.index, *(ind.outcome.any_of() if ind.outcome else ()))
            concepts = sorted({c for sel in selectors for c in (*sel.concepts, *sel.stay_concepts, *sel.confirmed_by)})
            codes = {c: {"source": code_map.provenance.get(c),
                         **{system: list(found) for system, found in code_map.concepts_for(c).items()}}
                     for c in concepts if c in code_map.concept_names}
            print(json.dumps({"catalogue_version": catalogue.version, **ind.describe(),
                              "codes": codes, "code_map_version": code_map.version}, indent=2, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from streams.batch.evaluate import evaluate, write_avro, write_csv, write_json

    settings = settings_from(args, mode=DEV, as_of=args.as_of)
    if args.format == "avro" and not args.out:
        raise ConfigError("--format avro needs --out FILE")
    result = evaluate(Path(args.events), settings)
    if args.format == "avro":
        written = write_avro(result, Path(args.out))
        print(f"{result.events} events, {result.accepted} accepted, {written} observations -> {args.out}")
        return 0
    snapshots = result.snapshots
    text = write_json(result, snapshots) if args.format == "json" else write_csv(snapshots)
    if args.out:
        Path(args.out).write_text(text)
        print(f"{result.events} events, {result.accepted} accepted, {len(result.observations)} observations, "
              f"{len(snapshots)} indicator cells -> {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.embedded.demo import run_demo

    return run_demo(args, settings_from)


def _serve_metrics(context: Any, port: int) -> None:
    context.metrics.serve(port, context.settings.metrics_host)


def _wait_for_signal(done: Callable[[], bool] = lambda: False) -> None:
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: stopping.append(s))
    while not stopping and not done():
        time.sleep(0.2)


# --------------------------------------------------------------------------- parser
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rwe-engine")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    common = _connection_flags()
    parser = _Parser(prog="rwe", description="Streaming real-world-evidence engine: clinical events on "
                     "Kafka to patient outcomes, indicators and alerts.")
    parser.add_argument("--version", action="version", version=f"rwe {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        p.set_defaults(func=func)
        return p

    p = add("demo", cmd_demo, "Run everything locally: embedded broker, topics, simulated hospital feed, "
            "worker, /metrics, and a live view.")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: "
                   "when the simulated feed is done and processed)")
    p.add_argument("--days", type=int, default=540, help="simulated days of care (default 540: 12-month "
                   "indicators then have six months of completed follow-up)")
    p.add_argument("--patients-per-site", type=int, default=2000,
                   help="patients per site (default 2000: ~450 heart-failure admissions each, enough for the "
                   "CUSUM to find the injected deterioration within the first simulated year)")
    p.add_argument("--speed", type=float, default=365 * 86400 / 60,
                   help="simulated seconds per second (default: a year in a minute)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--port", type=int, default=0, help="broker port (default: a free one)")
    p.add_argument("--metrics-port", type=int, default=None, help="/metrics port (default RWE_METRICS_PORT)")
    p.add_argument("--no-live", action="store_true", help="print a summary line per second instead of the live view")
    p.add_argument("--window", type=int, default=365, choices=[0, 30, 90, 365],
                   help="rolling window of the view in days; 0 is cumulative (default 365)")

    p = add("broker", cmd_broker, "Start the embedded Tansu broker and create the engine's topics.")
    p.add_argument("--port", type=int, default=9092, help="port on 127.0.0.1 (default 9092)")

    p = add("topics", cmd_topics, "List or create the engine's topics.")
    p.add_argument("action", choices=["list", "create"])

    p = add("worker", cmd_worker, "Run the engine's stages against the configured broker.")
    p.add_argument("--stages", nargs="+", default=None, metavar="STAGE",
                   help="stages to run (default: all: normalise ascertain aggregate monitor)")
    p.add_argument("--create-topics", action="store_true", help="create missing topics first")

    from streams.simulator import command as simulate_command

    p = add("simulate", lambda a: simulate_command.run(a, settings_from(a)),
            "Generate a deterministic synthetic hospital feed to Kafka or an Avro file.")
    simulate_command.add_arguments(p)

    p = add("publish", cmd_publish, "Publish ClinicalEvents from an Avro container file to the raw topic.")
    p.add_argument("file", help="Avro container file of rwe.events.ClinicalEvent (e.g. from rwe simulate --out)")
    p.add_argument("--batch", type=int, default=0, help="events per Kafka message (Avro container); 0: one each")
    p.add_argument("--topic", default=None, help="target topic (default: the raw topic)")

    p = add("hl7", cmd_hl7, "HL7 v2 in: listen for MLLP connections, or import files of messages (backfills).")
    p.add_argument("action", choices=["listen", "import"])
    p.add_argument("files", nargs="*", metavar="FILE", help="import: files of HL7 v2 messages (batch and file "
                   "headers, MLLP framing and any line ends allowed)")
    p.add_argument("--host", default=None, help="listen: address (default RWE_HL7_HOST)")
    p.add_argument("--port", type=int, default=None, help="listen: MLLP port (default RWE_HL7_PORT; 0: a free one)")
    p.add_argument("--checkpoint", default="rwe-hl7-import.json",
                   help="import: where the messages already answered are recorded, so a rerun resumes after them")
    p.add_argument("--in-flight", type=int, default=1000, help="import: messages awaiting the broker at once")

    p = add("dlq", cmd_dlq, "Inspect the dead-letter topic, or replay dead letters after a fix.")
    p.add_argument("action", choices=["inspect", "replay"])
    p.add_argument("--reason", action="append", default=None, help="only this reason (repeatable)")
    p.add_argument("--limit", type=int, default=0, help="inspect at most this many dead letters (0: all)")
    p.add_argument("--show", type=int, default=0, help="also print this many individual dead letters")
    p.add_argument("--to-topic", default=None, help="replay to this topic (default: each letter's source topic)")
    p.add_argument("--dry-run", action="store_true", help="count what would be replayed, send nothing")

    p = add("alerts", cmd_alerts, "List the open alerts from the alerts topic, highest triage rank first.")
    p.add_argument("--json", action="store_true", help="print the Alert records as JSON")

    from streams.embedded import registry as registry_server

    p = add("registry", lambda a: registry_server.run(a, settings_from(a)),
            "Run a Confluent-compatible schema registry (memory storage) for local use.")
    registry_server.add_arguments(p)

    p = add("catalogue", cmd_catalogue, "List, show or validate the condition catalogue's indicators.")
    p.add_argument("action", choices=["list", "show", "validate"])
    p.add_argument("indicator", nargs="*", help="indicator ids (show)")
    p.add_argument("--dir", default=None, help="catalogue folder of *.toml files (default: the built-in one)")

    p = add("evaluate", cmd_evaluate, "Compute the indicators from an Avro event file, without a broker.")
    p.add_argument("--events", required=True, help="Avro container file of ClinicalEvents (rwe simulate --out)")
    p.add_argument("--format", choices=["json", "csv", "avro"], default="json",
                   help="json: summary, indicators and observations; csv: indicators; avro: the observations "
                   "as an Avro container of OutcomeObservations (for rwe calibrate; needs --out)")
    p.add_argument("--out", default=None, help="write here instead of standard output")
    p.add_argument("--as-of", default=None, metavar="TIME",
                   help="report what was known at this event time (ISO-8601, e.g. 2025-12-31T00:00Z): later "
                   "events are left out and every follow-up closes at TIME (default RWE_AS_OF, else the newest "
                   "event time less the allowed lateness)")

    from streams.cli import calibrate as calibration_command

    p = add("calibrate", lambda a: calibration_command.run(a, settings_from(a)),
            "Fit the catalogue's risk models on a reference period of observations and report calibration.")
    calibration_command.add_arguments(p)

    p = add("config", cmd_config, "Show the effective settings (secrets masked).")
    p.add_argument("--table", action="store_true", help="also print every setting as a Markdown table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (getattr(args, "log_level", None) or os.environ.get("RWE_LOG_LEVEL") or "INFO").upper()
    logging.basicConfig(level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else "INFO",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from streams.vocabulary.dead_letters import Reason
    from streams.wire.formats import DecodeError

    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"rwe {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BrokerUnavailable as exc:
        print(f"rwe {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BROKER
    except DecodeError as exc:  # a topic holding records this process cannot read
        hint = " (set RWE_SCHEMA_REGISTRY_URL)" if exc.reason == Reason.UNKNOWN_SCHEMA else ""
        print(f"rwe {args.command}: error: cannot read a record: {exc.message}{hint}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
