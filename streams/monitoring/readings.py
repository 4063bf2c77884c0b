# mypyc: compiled (the per-event path: setup.py)
"""A monitor's current state as in-process readers (the Prometheus collector, the demo) see it."""

from __future__ import annotations

from typing import NamedTuple


class MonitorReading(NamedTuple):
    """One monitor's current state, for in-process readers (the Prometheus collector)."""

    indicator: str
    site: str
    method: str
    statistic: float
    limit: float | None
    signalled: bool
