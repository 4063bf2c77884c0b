"""Shared fixtures: the real embedded broker (Tansu), settings factories, sample events."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams.settings import DEV, Settings

TEST_KEY = "k" * 40
_topic_prefixes = itertools.count()


def clinical_event(**overrides: Any) -> dict[str, Any]:
    """A valid ClinicalEvent dict (plain: timestamps as local wall-clock microseconds)."""
    event: dict[str, Any] = {
        "event_id": "evt-1", "site_id": "NL-AMC", "source_patient_id": "MRN-0001",
        "patient_id_issuer": None, "encounter_id": "ENC-1", "event_type": "ADMISSION",
        "event_time": 1_735_732_800_000_000,  # 2025-01-01T12:00 local
        "recorded_time": 1_735_733_400_000_000, "time_zone": "Europe/Amsterdam",
        "code_system": "ICD-10", "code": "I50.9", "value": None, "unit": None, "coded_value": None,
        "admission_type": "EMERGENCY", "disposition": None, "birth_year": 1948, "sex": "FEMALE",
        "prom": None, "pseudonymised": False, "patient_name": "Jan Jansen", "address": "Dam 1, Amsterdam",
        "note": "free text",
    }
    event.update(overrides)
    return event


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"mode": DEV, "pseudonym_key": TEST_KEY, "metrics_port": 0}
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """A real Tansu broker on a free loopback port for the whole test session."""
    from streams.embedded.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b.bootstrap


@pytest.fixture
def broker_settings(broker: str, settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings on the session broker with a fresh topic prefix per call (isolated tests)."""

    def make(**overrides: Any) -> Settings:
        prefix = f"t{next(_topic_prefixes)}."
        values: dict[str, Any] = {"broker": broker, "topic_prefix": prefix, "partitions": 2,
                                  "session_timeout_ms": 6000, "group_id": f"g-{prefix}"}
        values.update(overrides)
        return settings_factory(**values)

    return make
