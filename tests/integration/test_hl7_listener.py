"""`rwe hl7 listen` on the real broker, driven by python-hl7's own MLLP clients (`mllp_send`, asyncio)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import hl7.mllp
import pytest
from conftest import TEST_KEY
from helpers import decode_all, read_topic, running_stage, stage_events_in, wait_for

from streams.runtime import topics
from streams.runtime.topics import create_topics
from streams.settings import Settings
from streams.wire import schemas

pytestmark = pytest.mark.integration
EPISODE = Path(__file__).parents[1] / "data" / "hl7_episode.txt"
BIN = Path(sys.executable).parent
IDENTIFIERS = (b"123456789", b"MRN-0001", b"V0001", b"Jansen", b"Dam 1")


@contextmanager
def listener(settings: Settings) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`rwe hl7 listen` as its own process on a free port: (process, port)."""
    env = {**os.environ, "RWE_BROKER": settings.broker, "RWE_TOPIC_PREFIX": settings.topic_prefix,
           "RWE_PSEUDONYM_KEY": TEST_KEY, "RWE_MODE": "dev", "RWE_METRICS_PORT": "0"}
    process = subprocess.Popen([str(BIN / "rwe"), "hl7", "listen", "--port", "0"], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r":(\d+);", line)
        assert found, f"no port in {line!r}: {process.stderr.read() if process.stderr else ''}"
        yield process, int(found.group(1))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)  # waits, and closes its pipes


def mllp_send(port: int) -> list[str]:
    """The answers python-hl7's command-line client printed for the episode file: MSA-1 of each."""
    sent = subprocess.run([str(BIN / "mllp_send"), "--loose", "--file", str(EPISODE), "--port", str(port),
                           "127.0.0.1"], capture_output=True, text=True, timeout=60, check=True)
    return re.findall(r"MSA\|(A[AER])\|", sent.stdout)


def test_messages_in_acks_out_events_on_the_raw_topic_without_identifiers(
        broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings()
    create_topics(settings)
    with listener(settings) as (_process, port):
        # A01, ORU^R01, A03 (expired) accepted; A13 (a cancellation) rejected; an unknown facility an error.
        assert mllp_send(port) == ["AA", "AA", "AA", "AR", "AE"]
        raw = read_topic(settings, settings.topic(topics.RAW))
        events = decode_all(settings, settings.topic(topics.RAW), schemas.CLINICAL_EVENT)
        assert sorted(e["event_type"] for e in events) == ["ADMISSION", "DEATH", "DIAGNOSIS", "DISCHARGE",
                                                           "LAB_RESULT"]
        assert all(e["pseudonymised"] and e["patient_id_issuer"] is None for e in events)
        assert len({e["source_patient_id"] for e in events}) == 1  # one patient across ADT and lab feeds
        assert not [i for i in IDENTIFIERS for _k, v, _p in raw if i in v]
        letters = decode_all(settings, settings.topic(topics.DLQ), schemas.DEAD_LETTER)
        assert sorted(d["reason"] for d in letters) == ["unknown_site", "unsupported_message"]
        assert all(d["original_value"].startswith(b"MSH|") for d in letters)  # dev mode: not sealed

        # The sender resends everything (say its ACKs were lost): nothing is produced again.
        assert mllp_send(port) == ["AA", "AA", "AA", "AR", "AE"]
        assert len(read_topic(settings, settings.topic(topics.RAW))) == len(raw)


async def _send(port: int, message: bytes) -> bytes:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port)
    writer.writeblock(message)
    await writer.drain()
    answer = await reader.readblock()
    writer.close()
    return bytes(answer)


async def _send_and_lose_the_ack(port: int, message: bytes) -> asyncio.StreamWriter:
    """Send ``message`` and never read the answer (the connection stays open)."""
    _reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port)
    writer.writeblock(message)
    await writer.drain()
    return writer


def test_a_listener_killed_before_its_ack_loses_and_doubles_nothing(broker_settings: Callable[..., Settings]) -> None:
    settings = broker_settings()
    create_topics(settings)
    admission = EPISODE.read_text().split("\n\n")[0].replace("\n", "\r").encode()
    with listener(settings) as (process, port):
        loop = asyncio.new_event_loop()
        unanswered = loop.run_until_complete(_send_and_lose_the_ack(port, admission))
        wait_for(lambda: len(read_topic(settings, settings.topic(topics.RAW))) == 2, 30, "the admission's events")
        process.kill()  # SIGKILL: the ACK may or may not have been written; the sender never read it
        process.wait(10)
        unanswered.close()
    with listener(settings) as (_process, port):
        answer = loop.run_until_complete(_send(port, admission))  # the sender's resend
        loop.close()
    assert b"MSA|AA|MSG00001" in answer
    assert len(read_topic(settings, settings.topic(topics.RAW))) == 4  # produced twice: the new process forgot
    with running_stage(settings, "normalise") as (engine, _stage):
        wait_for(lambda: stage_events_in(engine, "normalise") >= 4
                 and len(read_topic(settings, settings.topic(topics.NORMALISED))) >= 2, 60, "normalised events")
    normalised = decode_all(settings, settings.topic(topics.NORMALISED), schemas.NORMALISED_EVENT)
    assert sorted(e["event_type"] for e in normalised) == ["ADMISSION", "DIAGNOSIS"]  # once each


def _rwe_hl7_listen_errors(*argv: str) -> list[str]:
    env = {**os.environ, "RWE_MODE": "dev", "RWE_METRICS_PORT": "0", "RWE_BROKER": "127.0.0.1:1"}
    done = subprocess.run([str(BIN / "rwe"), "hl7", "listen", *argv], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("rwe hl7: error:")]


def test_a_wrong_port_is_one_line_naming_it() -> None:
    [error] = _rwe_hl7_listen_errors("--port", "70000")
    assert "RWE_HL7_PORT" in error
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [error] = _rwe_hl7_listen_errors("--port", str(port))
    assert f"cannot listen on 127.0.0.1:{port}" in error


def test_a_batch_file_imports_once_and_a_rerun_resumes_after_it(broker_settings: Callable[..., Settings],
                                                                 tmp_path: Path) -> None:
    settings = broker_settings()
    create_topics(settings)
    batch = tmp_path / "backfill.hl7"
    batch.write_bytes(b"FHS|^~\\&|ADT1|NL-AMC\r\nBHS|^~\\&|ADT1|NL-AMC\r\n"
                      + EPISODE.read_bytes().replace(b"\n", b"\r\n") + b"BTS|5\r\nFTS|1\r\n")
    env = {**os.environ, "RWE_BROKER": settings.broker, "RWE_TOPIC_PREFIX": settings.topic_prefix,
           "RWE_PSEUDONYM_KEY": TEST_KEY, "RWE_MODE": "dev", "RWE_METRICS_PORT": "0"}
    command = [str(BIN / "rwe"), "hl7", "import", str(batch), "--checkpoint", str(tmp_path / "done.json")]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "5 messages" in first.stdout and "3 AA, 1 AE, 1 AR" in first.stdout, first.stdout
    assert len(read_topic(settings, settings.topic(topics.RAW))) == 5
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "0 messages" in again.stdout, again.stdout
    assert len(read_topic(settings, settings.topic(topics.RAW))) == 5
