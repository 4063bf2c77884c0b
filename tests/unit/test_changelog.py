"""When the batched changelog writes a whole snapshot instead of a delta."""

from __future__ import annotations

from typing import Any

from streams.state.changelog import ChangelogWriter


class RecordingProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes, partition: int, **_: Any) -> None:
        self.records.append((topic, key, value, partition))


def test_snapshots_come_when_the_deltas_outweigh_the_last_snapshot() -> None:
    producer = RecordingProducer()
    writer = ChangelogWriter(producer, "cl", min_snapshot_bytes=100)  # type: ignore[arg-type]
    assert writer.wants_snapshot(0)  # nothing written yet: a restore must start from a snapshot
    writer.write_snapshot(0, [b"x" * 150, b"y" * 50])
    assert [r[1] for r in producer.records] == [b"0-s", b"0-1"]
    for n in range(2, 6):
        assert not writer.wants_snapshot(0)  # up to 180 delta bytes against a 200-byte snapshot
        writer.write_delta(0, b"d" * 60)
        assert producer.records[-1][1] == f"0-{n}".encode()
    assert writer.wants_snapshot(0)  # 240 > 200
    writer.write_snapshot(0, [b"z" * 10])
    writer.write_delta(0, b"d" * 60)
    assert not writer.wants_snapshot(0)  # ... and a small state still waits for min_snapshot_bytes
    writer.write_delta(0, b"d" * 60)
    assert writer.wants_snapshot(0)
    writer.reset(0)
    assert writer.wants_snapshot(0) and writer.wants_snapshot(1)
