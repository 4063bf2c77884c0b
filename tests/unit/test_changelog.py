"""When the batched changelog writes a whole snapshot instead of a delta."""

from __future__ import annotations

from streams.runtime.memory import ManualClock, MemoryProducer, MemoryTopics
from streams.state.changelog import ChangelogWriter


def test_snapshots_come_when_the_deltas_outweigh_the_last_snapshot() -> None:
    topics = MemoryTopics(2, ManualClock())
    writer = ChangelogWriter(MemoryProducer(topics), "cl", min_snapshot_bytes=100)  # type: ignore[arg-type]
    written = topics.log("cl")[0]
    assert writer.wants_snapshot(0)  # nothing written yet: a restore must start from a snapshot
    writer.write_snapshot(0, [b"x" * 150, b"y" * 50])
    assert [m.key() for m in written] == [b"0-s", b"0-1"]
    for n in range(2, 6):
        assert not writer.wants_snapshot(0)  # up to 180 delta bytes against a 200-byte snapshot
        writer.write_delta(0, b"d" * 60)
        assert written[-1].key() == f"0-{n}".encode()
    assert writer.wants_snapshot(0)  # 240 > 200
    writer.write_snapshot(0, [b"z" * 10])
    writer.write_delta(0, b"d" * 60)
    assert not writer.wants_snapshot(0)  # ... and a small state still waits for min_snapshot_bytes
    writer.write_delta(0, b"d" * 60)
    assert writer.wants_snapshot(0)
    writer.reset(0)
    assert writer.wants_snapshot(0) and writer.wants_snapshot(1)
