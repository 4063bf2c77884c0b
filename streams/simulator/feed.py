"""The simulated feed as messages, as record dicts, or as an Avro object container file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fastavro

from streams import schemas, wire

from .cohort import simulate
from .faults import Item, arrange
from .model import DUPLICATE, MALFORMED, VALID, Manifest, SimMessage, SimulationConfig

Encode = Callable[[dict[str, Any]], bytes]


def default_encoder() -> Encode:
    return wire.Encoder(schemas.CLINICAL_EVENT).encode


def _items(config: SimulationConfig) -> tuple[list[Item], set[str]]:
    identifiers: set[str] = set()

    def seen(source_id: str, name: str | None) -> None:
        identifiers.add(source_id)
        if name:
            identifiers.add(name)

    events, ctx = simulate(config, seen)
    return arrange(events, config, ctx.profiles), identifiers


def _manifest(items: list[Item], identifiers: set[str], *, decodable_only: bool = False) -> Manifest:
    manifest = Manifest(source_patient_ids=identifiers)
    for item in items:
        if item.kind == VALID:
            manifest.valid += 1
            area = item.area or "unknown"
            site = item.key.decode()
            manifest.by_area[area] = manifest.by_area.get(area, 0) + 1
            manifest.by_site[site] = manifest.by_site.get(site, 0) + 1
        elif item.kind == DUPLICATE:
            manifest.duplicates += 1
        elif not decodable_only or _decodable(item):
            reason = item.reason or "undecodable"
            manifest.malformed[reason] = manifest.malformed.get(reason, 0) + 1
    return manifest


def _decodable(item: Item) -> bool:
    return item.record is not None and not item.cut


def generate(config: SimulationConfig, encode: Encode | None = None) -> tuple[list[SimMessage], Manifest]:
    """Every message of the feed in arrival order, and what a correct normaliser makes of it."""
    encode = encode or default_encoder()
    items, identifiers = _items(config)
    encoded: dict[int, bytes] = {}
    for item in items:  # originals first: a late original may arrive after its resend's key
        if item.kind == VALID and item.record is not None:
            encoded[id(item.record)] = encode(item.record)
    messages: list[SimMessage] = []
    append = messages.append
    for item in items:
        if item.kind == MALFORMED:
            if item.raw is not None:
                value = item.raw
            else:
                assert item.record is not None
                value = encode(item.record)
                if item.cut:
                    value = value[: max(1, int(len(value) * item.cut))]
        else:
            value = encoded[id(item.record)]
        append(SimMessage(item.key, value, item.t, item.kind, item.reason))
    return messages, _manifest(items, identifiers)


def records(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """The feed's records in arrival order as ClinicalEvent dicts.

    Valid events, their resends and the malformed records that still decode (out of
    range, unknown site, ...); garbage and truncated bytes are left out.
    """
    items, _ = _items(config)
    for item in items:
        if _decodable(item):
            assert item.record is not None
            yield dict(item.record) if item.kind == DUPLICATE else item.record


def write_container_file(config: SimulationConfig, path: Path) -> Manifest:
    """Write the feed as an Avro object container (deflate, in blocks) for replay and batch runs.

    Its manifest counts only what the file holds: undecodable bytes are left out.
    """
    items, identifiers = _items(config)
    chosen = [item for item in items if _decodable(item)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        fastavro.writer(out, schemas.parsed(schemas.CLINICAL_EVENT),
                        (item.record for item in chosen if item.record is not None),
                        codec="deflate", sync_interval=64 * 1024)
    return _manifest(chosen, identifiers, decodable_only=True)
