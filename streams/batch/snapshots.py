"""Indicator snapshots of a batch evaluation, through the same rolling state as the stream."""

from __future__ import annotations

from typing import Any

from streams.batch.evaluate import Evaluation
from streams.catalogue.definitions import load_catalogue
from streams.indicators.rolling import RollingState
from streams.settings import Settings


def snapshots_for(result: Evaluation, settings: Settings) -> list[dict[str, Any]]:
    """Published (disclosure-controlled) snapshots of every indicator, every scope and window."""
    state = RollingState(load_catalogue())
    for record in sorted(result.observations.values(), key=lambda o: o["observation_id"]):
        state.upsert(record)
    out: list[dict[str, Any]] = []
    for indicator in state.indicators:
        snapshots = state.snapshots(indicator, settings.min_cell_count, settings.cell_rounding)
        out.extend(snapshots[k] for k in sorted(snapshots))
    return out
