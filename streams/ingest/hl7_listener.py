"""``rwe hl7 listen``: the MLLP listener, on python-hl7's asyncio MLLP streams.

A connection is answered one message at a time, as MLLP senders expect (they wait for the
acknowledgement before the next message), which also keeps each sender's order on the raw
topic; throughput comes from concurrent connections, which integration engines open per
channel or thread.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from asyncio import IncompleteReadError

import hl7.mllp
from hl7.mllp import InvalidBlockError

from streams.catalogue.sites import load_sites
from streams.clinical.pseudonym import Pseudonymiser
from streams.errors import ConfigError
from streams.ingest.gateway import IngestMetrics, NotDelivered, RawGateway
from streams.ingest.hl7_endpoint import ENDPOINT, Hl7Endpoint
from streams.ingest.hl7_mapping import Hl7Mapper
from streams.runtime.metrics import EngineMetrics
from streams.settings import Settings
from streams.vocabulary.dead_letters import Reason, Rejection

log = logging.getLogger(__name__)


def build_endpoint(settings: Settings, metrics: EngineMetrics | None = None) -> Hl7Endpoint:
    """The endpoint for the configured sites, key and broker (``metrics``: where it counts)."""
    sites = load_sites(settings.sites_file)
    key, dev_key = settings.resolve_key()
    if dev_key:
        log.warning("dev mode: using a throw-away pseudonymisation key")
    metrics = metrics or EngineMetrics(sites=sites)
    gateway = RawGateway(settings, Pseudonymiser(key), metrics, ENDPOINT)
    return Hl7Endpoint(Hl7Mapper(sites, settings.facility_sites), gateway, IngestMetrics(metrics))


async def serve(endpoint: Hl7Endpoint, host: str, port: int, max_message_bytes: int) -> asyncio.Server:
    """Accept MLLP connections on ``host:port`` and answer every message on them."""

    async def connection(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while True:
                try:
                    block = await reader.readblock()
                except InvalidBlockError:  # bytes outside a <VT> ... <FS><CR> frame: skipped, as MLLP says
                    await _counted(endpoint, Rejection(Reason.UNPARSEABLE, "data outside an MLLP frame"))
                    continue
                except ValueError:  # a frame over the limit: its bytes are gone, the next frame is read
                    rejection = Rejection(Reason.TOO_LARGE, f"an MLLP frame over {max_message_bytes:,} bytes")
                    await _counted(endpoint, rejection)
                    writer.writeblock(endpoint.ack(None, "AR", rejection.message, rejection.reason))
                    continue
                writer.writeblock(await endpoint.answer(block))
                await writer.drain()
        except (IncompleteReadError, ConnectionError):
            pass  # the sender hung up; an unanswered message is resent by it
        finally:
            writer.close()

    return await hl7.mllp.start_hl7_server(connection, host, port, limit=max_message_bytes)


async def _counted(endpoint: Hl7Endpoint, rejection: Rejection) -> None:
    """A dead letter for bytes the MLLP framing already dropped: its reason is what is left."""
    try:
        await endpoint.gateway.dead_letter(rejection, b"", None)
    except NotDelivered as exc:
        log.warning("a dead letter was not confirmed by the broker (%s)", exc)


def listen(settings: Settings, endpoint: Hl7Endpoint, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then deliver what is queued."""

    async def main() -> None:
        try:
            server = await serve(endpoint, host, port, settings.max_record_bytes)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        bound = server.sockets[0].getsockname()
        print(f"listening for HL7 v2 over MLLP on {bound[0]}:{bound[1]}; events to "
              f"{endpoint.gateway.raw_topic} on {settings.broker}", flush=True)
        try:
            await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            await asyncio.to_thread(endpoint.gateway.close)  # while the loop still takes deliveries

    asyncio.run(main())
