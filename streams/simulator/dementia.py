"""Dementia journeys: diagnosis with baseline MMSE, six-monthly MMSE, admissions, care home, death.

Indicators fed: dem_cognitive_decline_12m, dem_institutionalisation_12m,
dem_emergency_admission_12m, dem_mortality_12m.
"""

from __future__ import annotations

import random

from .journey import DAY, YEAR, Journey, time_to_event

MMSE_VISITS = 6
DIRECT_CARE_HOME_RATE = 0.5  # moves to a care home from home, not by a discharge to long-term care
RESIDENT_RATE = 0.04  # already living in a care home when the dementia is diagnosed


def demographics(rng: random.Random) -> tuple[str, float, float]:
    return "dementia", min(100.0, max(55.0, rng.gauss(80, 7))), 0.4


def journey(j: Journey, site: str, t0: int, kind: str) -> None:
    rng, ctx = j.rng, j.ctx
    visit = j.encounter()
    j.diagnosis(site, t0, "dementia", visit)
    if rng.random() < 0.2:  # dual coding, e.g. G30.1 + F00.1
        j.diagnosis(site, t0, "dementia", visit)
    baseline = min(29, max(10, round(rng.gauss(21, 4))))
    has_baseline = rng.random() < 0.9
    p_decline = ctx.probability("dem_cognitive_decline_12m", site, t0, 0.28, -0.05 * (baseline - 21))
    slope = rng.uniform(4.5, 8.0) if rng.random() < p_decline else rng.uniform(0.0, 1.2)
    p_emergency = ctx.probability("dem_emergency_admission_12m", site, t0, 0.25, 0.03 * (j.age - 80))
    p_care = ctx.probability("dem_institutionalisation_12m", site, t0, 0.12, -0.08 * (baseline - 21))
    p_death = ctx.probability("dem_mortality_12m", site, t0, 0.095, 0.06 * (j.age - 80))
    death = time_to_event(rng, p_death, YEAR, later_per_year=0.15)
    j.death = None if death is None else t0 + death
    care = time_to_event(rng, p_care, YEAR, later_per_year=0.10)

    stays: list[tuple[int, str]] = []
    t = t0
    for _ in range(3):
        gap = time_to_event(rng, p_emergency, YEAR, later_per_year=0.25)
        if gap is None:
            break
        t += gap
        stays.append((t, "EMERGENCY"))
    side = j.side_rng("care")
    if side.random() < RESIDENT_RATE:
        j.emit(site, t0 - int(side.uniform(30, 700) * DAY), "CARE_HOME_ADMISSION", rng=side)
    if care is not None:
        stays.append((t0 + care, "CARE_HOME" if side.random() < DIRECT_CARE_HOME_RATE else "ELECTIVE"))
    stays.sort()

    institutionalised = None
    free_from = t0
    died = False
    for admit, admission_type in stays:
        if admit < free_from or not j.alive(admit) or institutionalised is not None:
            continue
        if admission_type == "CARE_HOME":
            j.emit(site, admit, "CARE_HOME_ADMISSION", rng=side)
            institutionalised = admit
            continue
        to_care = admission_type == "ELECTIVE"
        _, end, died = j.stay(site, admit, int(rng.uniform(2, 14) * DAY), admission_type,
                              "dementia" if rng.random() < 0.6 else None,
                              "LONG_TERM_CARE" if to_care else "HOME")
        if died:
            break
        free_from = end
        if to_care:
            institutionalised = end

    if has_baseline:
        j.lab(site, t0 + int(rng.uniform(-10, 10) * DAY), "mmse", baseline, visit)
    for k in range(1, MMSE_VISITS + 1):
        t = t0 + int((182.5 * k + rng.uniform(-21, 21)) * DAY)
        if not j.alive(t) or (institutionalised is not None and t > institutionalised):
            break
        noise = rng.choice((-1, 0, 0, 0, 1))
        score = min(30, max(0, round(baseline - slope * (t - t0) / YEAR) + noise))
        j.lab(site, t, "mmse", score, j.encounter())
    if not died and j.death is not None:
        j.die(site, j.death)
