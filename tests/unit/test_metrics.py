"""Metric helpers of the per-event paths."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.runtime.metrics import observe_many


def test_observe_many_exposes_what_one_observe_per_amount_does() -> None:
    amounts = [0.0, 0.5, 1.0, 1.0001, 7.0, 59.9, 60.0, 1e9, 3.25]
    exposed = []
    for batched in (False, True):
        registry = CollectorRegistry()
        child = Histogram("h_seconds", "h", ["site"], registry=registry, buckets=(1, 10, 60)).labels("x")
        if batched:
            observe_many(child, amounts)
        else:
            for amount in amounts:
                child.observe(amount)
        exposed.append([line for line in generate_latest(registry).decode().splitlines() if "_created" not in line])
    assert exposed[0] == exposed[1]
    assert 'h_seconds_bucket{le="1.0",site="x"} 3.0' in exposed[1]
