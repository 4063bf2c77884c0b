"""Runs every patient's journey and returns the valid events in event-time order."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import ModuleType

from streams.catalogue.sites import Site, load_sites

from . import cardiovascular, dementia, hematologic, prostate
from .habits import SiteProfile, profile
from .journey import DAY, Context, Event, Journey
from .model import AREAS, SimulationConfig, utc_us, validate
from .population import area_counts, make_patient, patient_rng

AREA_MODULES: dict[str, ModuleType] = {
    "cardiovascular": cardiovascular,
    "prostate_cancer": prostate,
    "hematologic": hematologic,
    "dementia": dementia,
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def resolve_sites(config: SimulationConfig) -> Mapping[str, Site]:
    return config.sites if config.sites is not None else load_sites()


def profiles(sites: Mapping[str, Site]) -> dict[str, SiteProfile]:
    return {sid: profile(site, i) for i, (sid, site) in enumerate(sites.items())}


def simulate(config: SimulationConfig,
             on_patient: Callable[[str, str | None], None] | None = None) -> tuple[list[Event], Context]:
    """All valid events of the run, sorted by (UTC event time, patient, sequence).

    ``on_patient(source_id, name)`` is called once per patient (for the manifest).
    """
    sites = resolve_sites(config)
    validate(config, sites)
    start = utc_us(config.start)
    ctx = Context(profiles(sites), start, start + config.days * DAY, config.shifts)
    span = config.days * DAY
    counts = area_counts(config.patients_per_site, config.areas)
    for site_index, (site_id, prof) in enumerate(ctx.profiles.items()):
        for area in config.areas:
            module = AREA_MODULES[area]
            area_index = AREAS.index(area)
            for i in range(counts[area]):
                rng = patient_rng(config.seed, site_id, area, i)
                t0 = start + int(rng.random() * span)
                kind, age, male_rate = module.demographics(rng)
                year = (_EPOCH + timedelta(microseconds=t0)).year
                patient = make_patient(rng, site_id=site_id, site_index=site_index,
                                       country=prof.site.country, area=area, area_index=area_index,
                                       index=i, age=age, male_rate=male_rate, index_year=year)
                order = ((site_index * len(AREAS) + area_index) << 24) | i
                before = len(ctx.sink)
                module.journey(Journey(ctx, patient, rng, order, age), site_id, t0, kind)
                if on_patient is not None and len(ctx.sink) > before:
                    on_patient(patient.source_id, patient.name)
    ctx.sink.sort(key=_sort_key)
    return ctx.sink, ctx


def _sort_key(event: Event) -> tuple[int, int, int]:
    return event[0], event[1], event[2]
