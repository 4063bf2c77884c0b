# mypyc: compiled (the per-event path: setup.py)
"""The OutcomeObservation record: its statuses, and what makes one usable downstream.

The ascertain stage publishes these records; the aggregate and monitor stages (and any
downstream consumer) read them. An observation is published OPEN when its index event
is seen, then FINAL (outcome known, or follow-up closed) or EXCLUDED (with a reason); a
later record of the same observation_id replaces the earlier one (an upsert). EXCLUDED
with exclusion ``superseded`` retracts an observation that no longer exists.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from streams.catalogue.definitions import Catalogue

OPEN: Final = "OPEN"
FINAL: Final = "FINAL"
EXCLUDED: Final = "EXCLUDED"
STATUSES: Final = (OPEN, FINAL, EXCLUDED)
SUPERSEDED: Final = "superseded"  # the exclusion of a retracted observation
# Exclusion reasons snapshots count one by one (excluded_by_reason); any other counts as OTHER_REASON.
EXCLUSION_REASONS: Final = ("outcome_before_index", "index_after_death", "transferred_out", "in_hospital_death",
                            "missing_baseline", "lost_to_follow_up", "already_in_long_term_care")
OTHER_REASON: Final = "other"


def problem(record: Mapping[str, Any], catalogue: Catalogue) -> str | None:
    """Why an OutcomeObservation cannot be aggregated (None: it can)."""
    ind = catalogue.indicators.get(record.get("indicator", ""))
    if ind is None:
        return "unknown indicator"
    status = record.get("status")
    if status not in STATUSES:
        return f"unknown status {status!r}"
    if not isinstance(record.get("index_time"), int):
        return "index_time missing"
    expected = record.get("expected")
    if expected is not None and not math.isfinite(expected):
        return "expected is not a finite number"
    if status == FINAL:
        if ind.kind == "proportion" and record.get("outcome") not in (0, 1):
            return "FINAL proportion observation without outcome 0 or 1"
        value = record.get("value")
        if ind.kind == "continuous" and (value is None or not math.isfinite(value)):
            return "FINAL continuous observation without a finite value"
    return None
