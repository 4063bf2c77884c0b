# mypyc: compiled (the per-event path: setup.py)
"""Keyed pseudonyms (HMAC-SHA256) for patients and encounters.

The key comes from a secret (see Settings.resolve_key) and never appears in code,
logs or output. Pseudonyms are 128-bit hex: collisions are negligible at any
national population, and they are half the bytes of a full digest in every key.
"""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymiser:
    """Turns source identifiers into stable pseudonyms; caches recent ones."""

    __slots__ = ("_cache", "_key", "_max")

    def __init__(self, key: bytes, cache_size: int = 200_000) -> None:
        if len(key) < 32:
            raise ValueError("pseudonymisation key must be at least 32 bytes")
        self._key = key
        self._cache: dict[str, str] = {}
        self._max = cache_size

    def _digest(self, text: str) -> str:
        cached = self._cache.get(text)
        if cached is None:
            cached = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:32]
            if len(self._cache) >= self._max:
                self._cache.clear()
            self._cache[text] = cached
        return cached

    def patient(self, source_id: str, issuer: str | None, site_id: str) -> str:
        """A patient's pseudonym: the issuer (national id authority) makes it network-wide;
        without one, the id is an MRN local to its site."""
        scope = f"issuer:{issuer}" if issuer else f"site:{site_id}"
        return self._digest(f"patient\x1f{scope}\x1f{source_id}")

    def encounter(self, encounter_id: str, site_id: str) -> str:
        return self._digest(f"encounter\x1f{site_id}\x1f{encounter_id}")

    def __repr__(self) -> str:
        return "Pseudonymiser(key=***)"
