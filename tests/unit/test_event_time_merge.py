from __future__ import annotations

import math

from streams.state.event_time_merge import EventTimeMerge


def test_a_caught_up_partition_holds_nothing_back() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge()
    merge.read(0, 10)
    merge.hold(0, 10, 500, "a")
    merge.hold(0, 10, 100, "b")
    assert merge.release(busy=set()) == ["b", "a"]
    assert merge.commit_offsets() == {0: 11}


def test_events_wait_for_the_slowest_busy_partition() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge()
    merge.read(0, 0)
    merge.hold(0, 0, 1000, "p0-late-in-time")
    assert merge.frontier({0, 1}) == -math.inf  # partition 1 unread: it could hold anything
    assert merge.release({0, 1}) == []
    merge.read(1, 0)
    merge.hold(1, 0, 200, "p1-early")
    merge.read(1, 1)
    merge.hold(1, 1, 600, "p1-later")
    assert merge.release({0, 1}) == ["p1-early", "p1-later"]
    assert merge.commit_offsets() == {0: 0, 1: 2}  # partition 0's message is still held
    assert merge.ahead({0, 1}) == {0}
    assert merge.release({0}) == ["p0-late-in-time"]
    assert merge.commit_offsets() == {0: 1, 1: 2}


def test_a_container_message_commits_only_when_all_its_events_are_out() -> None:
    merge: EventTimeMerge[int] = EventTimeMerge()
    merge.read(0, 7)
    for t in (10, 20, 30):
        merge.hold(0, 7, t, t)
    merge.read(1, 0)
    merge.hold(1, 0, 15, 15)
    assert merge.release({0, 1}) == [10, 15]
    assert merge.commit_offsets()[0] == 7
    assert merge.release(set()) == [20, 30]
    assert merge.commit_offsets()[0] == 8


def test_a_partition_with_only_rejected_records_does_not_block() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge()
    merge.read(0, 0)
    merge.hold(0, 0, 50, "x")
    merge.read(1, 0)  # read, but nothing held: all its records were rejected
    assert merge.release({0, 1}) == ["x"]


def test_revoked_partitions_are_forgotten() -> None:
    merge: EventTimeMerge[str] = EventTimeMerge()
    merge.read(0, 0)
    merge.hold(0, 0, 50, "x")
    merge.read(1, 0)
    merge.hold(1, 0, 60, "y")
    merge.forget([1])
    assert merge.release(set()) == ["x"]
    assert 1 not in merge.commit_offsets()
