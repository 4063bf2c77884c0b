"""The synthetic hospital feed: determinism, coverage, faults, shifts, files and packing."""

from __future__ import annotations

import argparse
import collections
import io
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.catalogue.sites import load_sites
from streams.clinical.proms import prom_key
from streams.errors import ConfigError
from streams.settings import Settings
from streams.simulator import (
    AREAS,
    Shift,
    SimulationConfig,
    command,
    generate,
    records,
    write_container_file,
)
from streams.simulator.cohort import simulate
from streams.simulator.publish import _packed
from streams.wire import formats as wire
from streams.wire import schemas
from streams.wire import writer as fastencode

DAY_US = 86_400_000_000
SMALL = SimulationConfig(patients_per_site=120, days=365, duplicate_rate=0.03, late_rate=0.03,
                         malformed_rate=0.03)


@pytest.fixture(scope="module")
def feed() -> tuple[list, object]:
    return generate(SMALL)


@pytest.fixture(scope="module")
def decoded(feed) -> list[dict | None]:
    decoder = wire.Decoder(schemas.CLINICAL_EVENT)
    out: list[dict | None] = []
    for m in feed[0]:
        try:
            [record] = decoder.decode(m.value)
        except wire.DecodeError:
            record = None
        out.append(record)
    return out


def test_same_seed_gives_identical_bytes_and_another_seed_differs(feed) -> None:
    messages, manifest = feed
    again, manifest2 = generate(SMALL)
    assert [(m.key, m.value, m.kind, m.reason, m.event_time_us) for m in messages] == \
           [(m.key, m.value, m.kind, m.reason, m.event_time_us) for m in again]
    assert manifest == manifest2
    other, _ = generate(SimulationConfig(seed=8, patients_per_site=20, days=60))
    same, _ = generate(SimulationConfig(seed=7, patients_per_site=20, days=60))
    assert [m.value for m in other] != [m.value for m in same]


def test_changing_areas_keeps_other_patients_journeys() -> None:
    both = SimulationConfig(patients_per_site=30, days=120, areas=("cardiovascular", "dementia"))
    alone = SimulationConfig(patients_per_site=30, days=120, areas=("dementia",))
    events_both, _ = simulate(both)
    events_alone, _ = simulate(alone)
    dementia = [e[4] for e in events_both if e[3] == "dementia"]
    # Fewer dementia patients with two areas (shares), each with the very same journey.
    assert dementia and len(dementia) < len(events_alone)
    assert all(r in [e[4] for e in events_alone] for r in dementia)


def test_every_area_and_site_is_present(feed) -> None:
    _, manifest = feed
    assert set(manifest.by_area) == set(AREAS)
    assert set(manifest.by_site) == set(load_sites())
    assert all(n > 100 for n in manifest.by_site.values())


def test_manifest_matches_the_messages(feed) -> None:
    messages, manifest = feed
    kinds = collections.Counter(m.kind for m in messages)
    reasons = collections.Counter(m.reason for m in messages if m.kind == "malformed")
    assert kinds == {"valid": manifest.valid, "duplicate": manifest.duplicates,
                     "malformed": sum(manifest.malformed.values())}
    assert reasons == manifest.malformed
    assert set(reasons) == {"undecodable", "missing_field", "out_of_range", "unit_unconvertible",
                            "unknown_site", "future_time"}
    assert sum(manifest.by_area.values()) == sum(manifest.by_site.values()) == manifest.valid
    assert 0.02 < manifest.duplicates / manifest.valid < 0.04
    assert all(m.reason is None for m in messages if m.kind != "malformed")


def test_messages_decode_or_fail_as_the_manifest_says(feed, decoded) -> None:
    messages, _ = feed
    decoder = wire.Decoder(schemas.CLINICAL_EVENT)
    for m, record in zip(messages, decoded, strict=True):
        if m.reason == "undecodable":
            with pytest.raises(wire.DecodeError) as caught:
                decoder.decode(m.value)
            assert caught.value.reason == "undecodable"
        else:
            assert record is not None, m
            assert m.key == record["site_id"].encode()


def test_duplicates_are_exact_resends_of_earlier_messages(feed) -> None:
    messages, _ = feed
    seen: set[bytes] = set()
    dups = 0
    for m in messages:
        if m.kind == "duplicate":
            assert m.value in seen
            dups += 1
        elif m.kind == "valid":
            assert m.value not in seen
            seen.add(m.value)
    assert dups


def test_malformed_records_have_their_defect_and_fresh_ids(feed, decoded) -> None:
    messages, _ = feed
    sites = load_sites()
    valid_ids = {r["event_id"] for m, r in zip(messages, decoded, strict=True) if m.kind == "valid"}
    assert len(valid_ids) == sum(m.kind == "valid" for m in messages)
    for m, r in zip(messages, decoded, strict=True):
        if m.kind != "malformed" or r is None:
            continue
        assert r["event_id"] not in valid_ids
        if m.reason == "missing_field":
            assert r["event_id"] == "" or r["source_patient_id"] == ""
        elif m.reason == "out_of_range":
            assert (r["code"], r["value"] < 0) == ("2857-1", True) or \
                   (r["code"], r["value"], r["unit"]) == ("718-7", 900.0, "g/L")
        elif m.reason == "unit_unconvertible":
            assert r["event_type"] == "LAB_RESULT" and r["unit"] in ("furlongs", "mmHg", "kg")
        elif m.reason == "unknown_site":
            assert r["site_id"] not in sites
        elif m.reason == "future_time":
            assert r["event_time"] - r["recorded_time"] == 2 * DAY_US
    for m, r in zip(messages, decoded, strict=True):
        if m.kind == "valid":
            assert r is not None and r["event_id"] and r["source_patient_id"]
            assert r["site_id"] in sites
            assert 0 < r["recorded_time"] - r["event_time"] <= 13 * 3_600_000_000


def test_arrival_is_event_time_order_except_late_and_jittered(feed) -> None:
    messages, _ = feed
    valid = [m for m in messages if m.kind == "valid"]
    high = 0
    behind = []
    for m in valid:
        if m.event_time_us < high:
            behind.append(high - m.event_time_us)
        high = max(high, m.event_time_us)
    assert behind, "late and out-of-order arrivals exist"
    assert len(behind) <= 2 * 2 * 0.03 * len(valid)
    assert max(behind) <= SMALL.late_max_hours * 3_600_000_000
    assert any(b > 3_600_000_000 for b in behind), "some are hours late"
    clean, _ = generate(SimulationConfig(patients_per_site=20, days=90, duplicate_rate=0,
                                         late_rate=0, malformed_rate=0))
    times = [m.event_time_us for m in clean]
    assert times == sorted(times)


def test_local_time_zones_and_the_utc_site(feed, decoded) -> None:
    messages, _ = feed
    sites = load_sites()
    checked = collections.Counter()
    for m, r in zip(messages, decoded, strict=True):
        if m.kind != "valid" or r is None:
            continue
        site = sites[r["site_id"]]
        if site.id == "GB-UCL":
            assert r["time_zone"] is None and r["event_time"] == m.event_time_us
        else:
            assert r["time_zone"] == site.time_zone
            utc = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=m.event_time_us)
            local = utc.astimezone(zoneinfo.ZoneInfo(site.time_zone)).replace(tzinfo=None)
            assert r["event_time"] == (local - datetime(1970, 1, 1)) // timedelta(microseconds=1)
        checked[site.id] += 1
    assert len(checked) == len(sites)


def test_codes_and_units_vary_like_real_feeds(feed, decoded) -> None:
    messages, _ = feed
    sites = load_sites()
    icd = [r for m, r in zip(messages, decoded, strict=True) if m.kind == "valid"
           and r["event_type"] == "DIAGNOSIS" and "snomed" not in (r["code_system"] or "").lower()
           and r["code_system"] not in ("SCT",)]
    codes = [r["code"] for r in icd]
    assert any("." in c for c in codes) and any("." not in c and len(c) > 3 for c in codes)
    assert any(c != c.upper() for c in codes)
    systems = {r["code_system"] for m, r in zip(messages, decoded, strict=True) if r}
    assert len(systems) >= 8
    cm = [r["code"].upper().replace(".", "") for r in icd if sites[r["site_id"]].coding == "ICD10CM"]
    assert cm and not any(c.startswith("F00") for c in cm)
    assert any(c.startswith("C9200") for c in cm) and any(c.startswith("C9201") for c in cm)
    units = collections.defaultdict(set)
    for m, r in zip(messages, decoded, strict=True):
        if m.kind == "valid" and r["event_type"] == "LAB_RESULT":
            units[r["code"]].add(r["unit"])
    assert {"mg/dL"} <= units["2160-0"] and {"umol/L"} <= units["14682-9"]
    assert {"g/dL", "g/L"} <= units["718-7"]
    assert {"ng/L", "ng/mL"} <= units["10839-9"]
    assert None in units["72106-8"] and "{score}" in units["72106-8"]
    procedures = {(r["site_id"][:2], r["code"]) for r in decoded if r and r["event_type"] == "PROCEDURE"}
    assert ("DE", "5-604") in procedures and any(c == "26294005" for _, c in procedures)
    proms = [r["prom"] for r in decoded if r and r["event_type"] == "PROM_RESPONSE"]
    assert proms and all(prom_key(p["instrument"], p["domain"]) == ("EPIC-26", "urinary_incontinence")
                         and 0 <= p["score"] <= 100 for p in proms)
    assert len({(p["instrument"], p["domain"]) for p in proms}) > 1  # sites spell them differently


def test_the_feed_carries_ward_transfers_care_homes_and_coded_responses(feed, decoded) -> None:
    messages, _manifest = feed
    valid = [r for m, r in zip(messages, decoded, strict=True) if m.kind == "valid"]
    by_type = collections.Counter(r["event_type"] for r in valid)
    assert by_type["WARD_TRANSFER"] > 0.1 * by_type["ADMISSION"]
    assert all(r["encounter_id"] for r in valid if r["event_type"] == "WARD_TRANSFER")
    assert by_type["CARE_HOME_ADMISSION"] > 0
    responses = [r["coded_value"] for r in valid if r["coded_value"] is not None]
    assert responses and {c["code"] for c in responses} >= {"CR", "CRi", "PR"}


def test_identifiers_and_names_are_listed_for_leak_checks(feed, decoded) -> None:
    messages, manifest = feed
    ids = manifest.source_patient_ids
    named = [r for m, r in zip(messages, decoded, strict=True) if m.kind == "valid" and r["patient_name"]]
    assert named and all(r["patient_name"] in ids for r in named)
    for m, r in zip(messages, decoded, strict=True):
        if m.kind == "valid":
            assert r["source_patient_id"] in ids
    issuers = {r["patient_id_issuer"] for r in decoded if r}
    assert None in issuers and "NHI-DE" in issuers
    # Linked patients cross sites: one national id at two hospitals.
    sites_per_patient = collections.defaultdict(set)
    for r in decoded:
        if r and r["patient_id_issuer"]:
            sites_per_patient[r["source_patient_id"]].add(r["site_id"])
    assert any(len(s) > 1 for s in sites_per_patient.values())


def _hf_mortality(config: SimulationConfig, site: str) -> tuple[int, int]:
    """(HF admissions with 30 days of follow-up, deaths within 30 days) at ``site``."""
    by_patient = collections.defaultdict(list)
    for r in records(config):
        by_patient[(r["patient_id_issuer"] or r["site_id"], r["source_patient_id"])].append(r)
    end = (config.start + timedelta(days=config.days) - datetime(1970, 1, 1, tzinfo=UTC)) \
        // timedelta(microseconds=1)
    n = deaths = 0
    for rs in by_patient.values():
        first = rs[0]
        if first["site_id"] != site or first["event_type"] != "ADMISSION":
            continue
        if not any(r["event_type"] == "DIAGNOSIS" and r["code"].upper().startswith("I50") for r in rs):
            continue
        if first["event_time"] + 32 * DAY_US > end:
            continue
        n += 1
        deaths += any(r["event_type"] == "DEATH" and r["event_time"] - first["event_time"] <= 30 * DAY_US
                      for r in rs)
    return n, deaths


def test_shift_raises_the_shifted_sites_mortality() -> None:
    sites = load_sites()
    two = {k: sites[k] for k in ("NL-AMC", "FI-HUS")}
    base = SimulationConfig(patients_per_site=700, sites=two, areas=("cardiovascular",),
                            duplicate_rate=0, late_rate=0, malformed_rate=0)
    shifted = SimulationConfig(**{**base.__dict__, "shifts": (
        Shift("NL-AMC", "hf_mortality_30d", 4.0, datetime(2025, 1, 1, tzinfo=UTC)),)})
    n0, d0 = _hf_mortality(base, "NL-AMC")
    n1, d1 = _hf_mortality(shifted, "NL-AMC")
    assert n0 == n1 > 200
    assert d0 / n0 < 0.18
    assert d1 / n1 > d0 / n0 + 0.10
    assert _hf_mortality(base, "FI-HUS") == _hf_mortality(shifted, "FI-HUS")


def test_container_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "feed.avro"
    manifest = write_container_file(SMALL, path)
    with path.open("rb") as f:
        reader = fastavro.reader(f)
        assert reader.codec == "deflate"
    with path.open("rb") as f:
        blocks = list(fastavro.block_reader(f))
    assert len(blocks) > 1
    [*in_file] = wire.Decoder(schemas.CLINICAL_EVENT).decode(path.read_bytes())
    assert in_file == list(records(SMALL))
    assert "undecodable" not in manifest.malformed
    assert len(in_file) == manifest.valid + manifest.duplicates + sum(manifest.malformed.values())
    _, full = generate(SMALL)
    assert manifest.valid == full.valid and manifest.duplicates == full.duplicates
    again = tmp_path / "again.avro"
    write_container_file(SMALL, again)
    assert again.read_bytes() == path.read_bytes()


def test_batches_pack_decodable_records_into_containers(feed) -> None:
    messages, _ = feed
    decoder = wire.Decoder(schemas.CLINICAL_EVENT)
    packed = list(_packed(messages, 50))
    assert sum(events for *_, events in packed) == len(messages)
    assert len(packed) < len(messages) / 10
    out: dict[bytes | None, list[dict]] = {}
    for key, value, _t, events in packed:
        if events == 1 and not value.startswith(wire.CONTAINER_MAGIC):
            try:
                out.setdefault(key, []).extend(decoder.decode(value))
            except wire.DecodeError:
                continue
        else:
            batch = decoder.decode(value)
            assert len(batch) == events
            assert {e["site_id"].encode() for e in batch} == {key}  # one site per container, keyed by it
            out.setdefault(key, []).extend(batch)
    expected: dict[bytes | None, list[dict]] = {}
    for m in messages:
        if m.reason != "undecodable":
            expected.setdefault(m.key, []).append(decoder.decode(m.value)[0])
    assert out == expected  # every site's records, in the order the site sent them


def test_fast_encoder_writes_the_bytes_of_the_wire_encoder(feed, decoded) -> None:
    reference = wire.Encoder(schemas.CLINICAL_EVENT).encode
    fast = fastencode.encoder(schemas.CLINICAL_EVENT)
    for record in decoded[:3000]:
        if record is not None:
            assert fast(record) == reference(record)
    messages, _ = generate(SimulationConfig(patients_per_site=10, days=60), encode=reference)
    again, _ = generate(SimulationConfig(patients_per_site=10, days=60))
    assert [m.value for m in messages] == [m.value for m in again]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_fast_long_encoding_matches_fastavro(n: int) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, "long", n)
    assert fastencode.zigzag(n) == buf.getvalue()


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_command_flags_build_the_config() -> None:
    config = command.config_from_args(_args(
        "--seed", "3", "--days", "30", "--start", "2025-03-01", "--areas", "dementia,hematologic",
        "--shift", "NL-AMC:hf_mortality_30d:2.0:2025-03-15"), Settings())
    assert config.seed == 3 and config.days == 30 and config.areas == ("dementia", "hematologic")
    assert config.start == datetime(2025, 3, 1, tzinfo=UTC)
    assert config.shifts == (Shift("NL-AMC", "hf_mortality_30d", 2.0, datetime(2025, 3, 15, tzinfo=UTC)),)


@pytest.mark.parametrize("argv", [
    ("--shift", "NL-AMC:hf_mortality_30d:2.0"),
    ("--shift", "NL-AMC:hf_mortality_30d:two:2025-01-01"),
    ("--shift", "NL-AMC:hf_mortality_30d:-1:2025-01-01"),
    ("--shift", "XX-NOPE:hf_mortality_30d:2:2025-01-01"),
    ("--shift", "NL-AMC:no_such_outcome:2:2025-01-01"),
    ("--shift", "NL-AMC:hf_mortality_30d:2:someday"),
    ("--duplicate-rate", "1.0"),
    ("--malformed-rate", "-0.1"),
    ("--late-rate", "nan"),
    ("--days", "0"),
    ("--areas", "oncology"),
    ("--start", "yesterday"),
])
def test_command_rejects_bad_flags_with_one_line(argv: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        command.config_from_args(_args(*argv), Settings())
    assert "\n" not in str(caught.value)


def test_command_writes_a_container_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim.avro"
    assert command.run(_args("--days", "20", "--patients-per-site", "10", "--out", str(out)), Settings()) == 0
    assert out.stat().st_size > 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote ") and "\n" not in line


class _Clock:
    """Stands in for the producer's poll() only: the pacer sleeps through it."""

    def __init__(self) -> None:
        self.polled = 0.0

    def poll(self, timeout: float) -> int:
        import time

        time.sleep(timeout)
        self.polled += timeout
        return 0


def test_pacing_by_speed_and_by_rate() -> None:
    import time

    from streams.simulator.publish import _Pacer

    clock = _Clock()
    pacer = _Pacer(clock, speed=10.0, rate=None)
    began = time.monotonic()
    for second in range(4):  # 3 s of event time at 10x: ~0.3 s
        pacer.wait(1_000_000 * second, 1)
    assert 0.25 < time.monotonic() - began < 1.0
    pacer = _Pacer(clock, speed=None, rate=100.0)
    began = time.monotonic()
    for _ in range(21):  # 20 intervals at 100/s: ~0.2 s
        pacer.wait(0, 1)
    assert 0.15 < time.monotonic() - began < 1.0


def test_an_empty_run_is_fine() -> None:
    messages, manifest = generate(SimulationConfig(patients_per_site=0))
    assert messages == [] and manifest.valid == 0 and manifest.malformed == {}
