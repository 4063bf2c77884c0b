import pytest

from streams.runtime.partitioning import murmur2, partition_for


@pytest.mark.parametrize(("text", "expected"), [
    # Kafka's UtilsTest.testMurmur2
    ("21", -973932308),
    ("foobar", -790332482),
    ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ("abc", 479470107),
])
def test_matches_kafkas_murmur2(text: str, expected: int) -> None:
    assert murmur2(text.encode()) == expected


def test_partition_is_stable_and_in_range() -> None:
    assert all(0 <= partition_for(f"k{i}".encode(), 7) < 7 for i in range(200))
