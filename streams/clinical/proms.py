"""Patient-reported outcome instruments and domains: one canonical key for every spelling.

Feeds name the same questionnaire ``EPIC-26``, ``EPIC26`` or ``epic 26`` and its domains
``Urinary Incontinence`` or ``urinary_incontinence``; the normaliser, the catalogue and the
timelines compare them only through :func:`prom_key`, so every spelling meets every other.
"""

from __future__ import annotations

import re

# Instruments with a fixed scale, by their canonical name; the key (upper case, letters and
# digits only) finds the canonical name from any spelling.
SCALES: dict[str, tuple[float, float]] = {
    "EPIC-26": (0.0, 100.0), "KCCQ-12": (0.0, 100.0), "EQ-5D-VAS": (0.0, 100.0),
}
_CANONICAL = {re.sub(r"[^0-9A-Z]", "", name): name for name in SCALES}
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def instrument_name(raw: str) -> str:
    """The canonical instrument name: a known instrument's catalogue spelling, else the
    name in upper case with spaces, dashes and underscores dropped."""
    key = re.sub(r"[^0-9A-Z]", "", raw.upper())
    return _CANONICAL.get(key, key)


def domain_name(raw: str) -> str:
    """The canonical domain name: lower-case words joined by underscores."""
    return _NOT_ALNUM.sub("_", raw.lower()).strip("_")


def prom_key(instrument: str, domain: str) -> tuple[str, str]:
    """(instrument, domain), canonical."""
    return instrument_name(instrument), domain_name(domain)
