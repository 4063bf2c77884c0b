from __future__ import annotations

from typing import Any

from streams.state.dedupe import CONFLICT, DAY_US, DUPLICATE, NEW, DedupeStore
from streams.wire import formats as wire

DELTA = "rwe.internal.DedupeDelta"


def test_first_version_wins_and_resends_are_told_apart() -> None:
    store = DedupeStore(horizon_us=30 * DAY_US)
    assert store.check("S", "e1", 10, digest=1) == NEW
    assert store.check("S", "e1", 10, digest=1) == DUPLICATE
    assert store.check("S", "e1", 10, digest=2) == CONFLICT
    # The key is per site: another site may use the same event id.
    assert store.check("T", "e1", 10, digest=1) == NEW


def test_eviction_beyond_the_horizon_in_whole_days() -> None:
    store = DedupeStore(horizon_us=2 * DAY_US)
    store.check("S", "old", 0, 1)
    store.check("S", "new", 5 * DAY_US, 1)
    assert store.is_beyond_horizon(DAY_US) and not store.is_beyond_horizon(4 * DAY_US)
    assert store.evict() == 1
    assert len(store) == 1
    assert store.check("S", "new", 5 * DAY_US, 1) == DUPLICATE


def through_avro(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Changelog records as a restore reads them back from the topic."""
    encoder, decoder = wire.Encoder(DELTA), wire.Decoder(DELTA)
    return [decoder.decode(encoder.encode(r))[0] for r in records]


def test_changelog_deltas_and_snapshots_restore_the_same_state() -> None:
    store = DedupeStore(horizon_us=30 * DAY_US)
    log = []
    for batch in range(5):
        for i in range(30):
            store.check("S", f"{batch}-{i}", batch * DAY_US + i, digest=i)
        deltas = store.take_delta(chunk=7)
        assert len(deltas) == 5  # 30 entries in chunks of 7
        log.extend(through_avro(deltas))
        if batch == 2:
            log.extend(through_avro(store.snapshot(chunk=7)))
    assert store.take_delta() == []
    restored = DedupeStore(horizon_us=30 * DAY_US)
    for record in log:
        restored.apply(record)
    assert len(restored) == len(store) == 150
    assert restored.watermark == store.watermark
    assert restored.check("S", "3-4", 3 * DAY_US + 4, 4) == DUPLICATE
    assert restored.check("S", "3-4", 3 * DAY_US + 4, 5) == CONFLICT


def test_snapshot_alone_replaces_earlier_state() -> None:
    a = DedupeStore(horizon_us=DAY_US * 10)
    a.check("S", "x", 0, 1)
    b = DedupeStore(horizon_us=DAY_US * 10)
    b.check("S", "y", 0, 1)
    for record in through_avro(b.snapshot()):
        a.apply(record)
    assert a.check("S", "x", 0, 1) == NEW and a.check("S", "y", 0, 1) == DUPLICATE
