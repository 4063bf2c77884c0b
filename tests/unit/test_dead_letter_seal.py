"""Sealed dead letters: no identifier readable without the key, the original back with it."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.runtime.dead_letters import DeadLetterSeal, dead_letter
from streams.settings import DEV, PRODUCTION, Settings
from streams.vocabulary.dead_letters import Reason, Rejection

SECRET = b"s" * 40
ORIGINAL = b"MRN-0001 Jan Jansen Dam 1, Amsterdam"


def letter(seal: DeadLetterSeal | None, value: bytes = ORIGINAL) -> dict[str, object]:
    return dead_letter(Rejection(Reason.UNKNOWN_SITE, "site 'XX' is not configured"), "normalise", "rwe.events.raw",
                       1, 42, None, b"MRN-0001", value, None, 256 << 10, seal)


def test_a_sealed_letter_hides_key_and_value_and_opens_with_the_same_secret() -> None:
    seal = DeadLetterSeal(SECRET)
    sealed = letter(seal)
    assert b"MRN-0001" not in sealed["original_value"] and b"MRN-0001" not in sealed["original_key"]  # type: ignore[operator]
    assert sealed["reason"] == "unknown_site" and sealed["sealed"] == seal.label
    opened = DeadLetterSeal(SECRET).open(sealed)
    assert opened["original_value"] == ORIGINAL and opened["original_key"] == b"MRN-0001"
    assert letter(seal)["original_value"] != sealed["original_value"]  # a fresh nonce per letter


def test_another_key_or_an_altered_letter_does_not_open() -> None:
    sealed = letter(DeadLetterSeal(SECRET))
    with pytest.raises(ValueError, match="not with the configured key"):
        DeadLetterSeal(b"t" * 40).open(sealed)
    moved = {**sealed, "source_offset": 43}  # the position is authenticated too
    with pytest.raises(ValueError, match="failed authentication"):
        DeadLetterSeal(SECRET).open(moved)


def test_sealing_is_on_in_production_and_off_in_dev_unless_set() -> None:
    assert Settings(mode=DEV).dead_letter_secret() is None
    assert Settings(mode=DEV, dead_letter_encryption="on", dead_letter_key="k" * 32).dead_letter_secret() == b"k" * 32
    with pytest.raises(ConfigError, match="set RWE_DEAD_LETTER_KEY or RWE_DEAD_LETTER_KEY_FILE"):
        Settings(mode=PRODUCTION).dead_letter_secret()
    assert Settings(mode=PRODUCTION, dead_letter_encryption="off").dead_letter_secret() is None
    with pytest.raises(ConfigError, match="at least 32 characters"):
        Settings(mode=PRODUCTION, dead_letter_key="short").dead_letter_secret()
    with pytest.raises(ConfigError, match="RWE_DEAD_LETTER_ENCRYPTION must be auto, on or off"):
        Settings(dead_letter_encryption="maybe")
