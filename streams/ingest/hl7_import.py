"""``rwe hl7 import FILE...``: backfills from files of HL7 v2 messages, through the listener's endpoint.

Each message is answered exactly as over MLLP (dedupe, dead letters, AA only when durable), with
up to ``in_flight`` awaiting the broker at once. The checkpoint file records, per input file, how
many leading messages are answered for good (stored, or dead-lettered); a rerun resumes after
them, and a message resent around the checkpoint is dropped by the normaliser (same event ids).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from rich.progress import Progress

from streams.errors import ConfigError
from streams.ingest.hl7_endpoint import Hl7Endpoint
from streams.settings import Settings

ENVELOPE = frozenset({"FHS", "BHS", "BTS", "FTS"})  # batch and file headers and trailers


def split_messages(data: bytes) -> Iterator[bytes]:
    """The messages of a file: MLLP-framed or not, CR, LF or CRLF line ends, batch envelopes allowed."""
    text = data.replace(b"\x0b", b"").replace(b"\x1c", b"\r").replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    message: list[bytes] = []
    for segment in text.split(b"\r"):
        name = segment[:3]
        if name == b"MSH" and message:
            yield b"\r".join(message) + b"\r"
            message = []
        if segment.strip() and name.decode("latin-1") not in ENVELOPE:
            message.append(segment)
    if message:
        yield b"\r".join(message) + b"\r"


def import_files(settings: Settings, endpoint: Hl7Endpoint, paths: list[Path], checkpoint: Path,
                 in_flight: int) -> int:
    """Import every file; print what was answered how."""
    if in_flight < 1:
        raise ConfigError(f"--in-flight must be at least 1, not {in_flight}")
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"no such file: {path}")
    try:
        done: dict[str, int] = json.loads(checkpoint.read_text()) if checkpoint.exists() else {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"checkpoint {checkpoint} is not readable: {exc}") from None
    try:
        answers = asyncio.run(_import(endpoint, paths, checkpoint, done, in_flight))
    finally:
        endpoint.gateway.close()
    print(f"{sum(answers.values()):,} messages to {endpoint.gateway.raw_topic} on {settings.broker}: "
          + ", ".join(f"{n:,} {code}" for code, n in sorted(answers.items())))
    return 0 if not answers.get("not stored") else 1


async def _import(endpoint: Hl7Endpoint, paths: list[Path], checkpoint: Path, done: dict[str, int],
                  in_flight: int) -> Counter[str]:
    answers: Counter[str] = Counter()
    with Progress() as progress:
        for path in paths:
            await _import_file(endpoint, path, progress, checkpoint, done, in_flight, answers)
    return answers


async def _import_file(endpoint: Hl7Endpoint, path: Path, progress: Progress, checkpoint: Path,
                       done: dict[str, int], in_flight: int, answers: Counter[str]) -> None:
    key = str(path.resolve())
    messages = list(split_messages(path.read_bytes()))
    start = done.get(key, 0)
    task = progress.add_task(path.name, total=len(messages), completed=start)
    finished = [False] * len(messages)
    slots = asyncio.Semaphore(in_flight)

    async def answer(i: int, message: bytes) -> None:
        try:
            ack = await endpoint.answer(message)
        finally:
            slots.release()
        stored = b"not stored" not in ack  # a broker failure: answered AE, nothing kept
        answers[ack.split(b"MSA|", 1)[1][:2].decode() if stored else "not stored"] += 1
        finished[i] = stored
        progress.advance(task)

    def frontier(at: int) -> int:  # messages answered for good, from the start of the file
        while at < len(messages) and finished[at]:
            at += 1
        return at

    pending, answered = [], start
    for i in range(start, len(messages)):
        await slots.acquire()  # at most in_flight messages await the broker
        pending.append(asyncio.create_task(answer(i, messages[i])))
        if i % 1000 == 0:
            answered = frontier(answered)
            _save(checkpoint, done, key, answered)
    await asyncio.gather(*pending)
    _save(checkpoint, done, key, frontier(answered))


def _save(checkpoint: Path, done: dict[str, int], key: str, frontier: int) -> None:
    done[key] = frontier
    checkpoint.write_text(json.dumps(done))
