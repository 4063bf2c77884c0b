"""``rwe simulate``: a deterministic synthetic hospital feed for the four disease areas.

Several sites with their own habits (ICD-10 variant, code style, units, clocks), patients
with cross-site national ids, realistic journeys in event time, per-site outcome rates
with injectable shifts, and feed faults (resends, late and out-of-order arrivals,
malformed records with the dead-letter reason each should get). The same configuration
always gives byte-identical output.
"""

from .feed import generate, records, write_container_file
from .model import AREAS, OUTCOMES, Manifest, Shift, SimMessage, SimulationConfig
from .publish import publish

__all__ = [
    "AREAS",
    "OUTCOMES",
    "Manifest",
    "Shift",
    "SimMessage",
    "SimulationConfig",
    "generate",
    "publish",
    "records",
    "write_container_file",
]
