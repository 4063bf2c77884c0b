"""Feed health per site: event-time buckets, EARS alarms, dead-letter rate and silence."""

from __future__ import annotations

from streams.monitoring.alerting import AlertBook
from streams.monitoring.charts import ears
from streams.monitoring.feed_health import FeedHealth, SiteActivityCounter

HOUR = 3_600_000_000
T0 = 1_735_689_600_000_000


def activity(site: str, counts: dict[int, int], dead: int = 0, last_seen: int = T0) -> dict[str, object]:
    return {"site_id": site, "bucket_seconds": 3600, "events": {str(T0 + h * HOUR): n for h, n in counts.items()},
            "dead_letters": dead, "last_seen": last_seen}


def health() -> tuple[FeedHealth, AlertBook]:
    book = AlertBook(min_cell_count=5)
    feed = FeedHealth(silence_seconds=900.0, dlq_rate=0.05)
    feed.alerts = book
    return feed, book


def test_the_normaliser_tally_is_one_record_per_site_and_batch() -> None:
    counter = SiteActivityCounter(3600.0)
    for minute in (0, 10, 70):
        counter.accepted("NL-AMC", T0 + minute * 60_000_000, now=42)
    counter.dead_letter("NL-AMC")
    counter.dead_letter("DE-CHA")
    records = counter.drain()
    assert records == [
        {"site_id": "DE-CHA", "bucket_seconds": 3600, "events": {}, "dead_letters": 1, "last_seen": 0},
        {"site_id": "NL-AMC", "bucket_seconds": 3600, "events": {str(T0): 2, str(T0 + HOUR): 1}, "dead_letters": 1,
         "last_seen": 42}]
    assert counter.drain() == []


def test_buckets_close_with_a_bucket_of_grace_and_empty_ones_count_zero() -> None:
    feed, _book = health()
    feed.activity(activity("A", {0: 5, 1: 4}))
    assert feed.sites["A"].events == []  # bucket 0 closes only once events of bucket 2 arrive
    feed.activity(activity("A", {2: 3, 5: 6}))
    assert feed.sites["A"].events == [5, 4, 3, 0]  # buckets 0-3; 3 was empty; 4 is the grace bucket
    feed.activity(activity("A", {1: 100}))  # a straggler for a closed bucket is not counted
    assert feed.sites["A"].events == [5, 4, 3, 0]


def test_ears_c2_alarm_opens_and_the_next_quiet_bucket_resolves_it() -> None:
    feed, book = health()
    counts = [4, 5, 3, 4, 6, 5, 4, 5, 4, 5, 30, 5]
    for h, n in enumerate(counts):
        feed.activity(activity("A", {h: n}))
    feed.activity(activity("A", {len(counts) + 1: 4}))  # closes the last counted bucket
    reference = ears([float(c) for c in counts], "C2", min_sigma=1.0)
    assert reference.alarm[-2] and not reference.alarm[-1]  # the spike, then a normal hour
    records = book.drain()
    assert [(r["method"], r["status"]) for r in records if r["method"] == "ears_c2"] == [("ears_c2", "RESOLVED")]
    assert records[0]["first_seen"] == T0 + 10 * HOUR and records[0]["statistic"] == 30.0
    assert records[0]["indicator"] == "" and records[0]["scope_id"] == "A"
    readings = {r.method: r for r in feed.readings(now=T0)}
    assert readings["ears_c2"].limit == reference.upperbound[-1] and not readings["ears_c2"].signalled
    assert set(readings) == {"ears_c1", "ears_c2", "ears_c3", "dlq_rate", "feed_silence"}


def test_dead_letter_rate_and_silence() -> None:
    feed, book = health()
    feed.activity(activity("A", {0: 10}, last_seen=T0))
    feed.activity(activity("A", {1: 10}, dead=3, last_seen=T0 + 1))
    feed.activity(activity("A", {2: 10}, last_seen=T0 + 2))
    assert feed.sites["A"].checks["dlq_rate"][0] == 0.0  # bucket 0 closed; the dead letters are in bucket 1
    feed.activity(activity("A", {3: 10}, last_seen=T0 + 2))
    rate = feed.sites["A"].checks["dlq_rate"]
    assert rate[0] == 3 / 23 and rate[2]  # 3 of 23 records, over the 5 % limit
    assert [r["method"] for r in book.drain()] == ["dlq_rate"]
    feed.check_silence(T0 + 2 + 899_000_000)
    assert book.drain() == []
    feed.check_silence(T0 + 2 + 901_000_000)
    silence = book.drain()
    assert [(r["method"], r["status"], r["alert_id"]) for r in silence] == [
        ("feed_silence", "OPEN", f"feed_silence::A:{T0 + 2}")]
    feed.check_silence(T0 + 2 + 999_000_000)
    assert book.drain() == []  # still the same silence: no new alert
    feed.activity(activity("A", {4: 1}, last_seen=T0 + 1000 * 1_000_000))
    assert [(r["method"], r["status"]) for r in book.drain() if r["method"] == "feed_silence"] == [
        ("feed_silence", "RESOLVED")]
