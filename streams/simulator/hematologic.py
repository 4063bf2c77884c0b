"""AML journeys: diagnosis, induction chemotherapy, count nadir, remission assessment.

Indicators fed: aml_early_death_30d, aml_complete_remission. At ICD-10-CM sites
remission is recorded as C92.01; elsewhere by labs meeting ELN 2017 CR criteria
(marrow blasts < 5 %, ANC >= 1.0, platelets >= 100 x10^9/L); about half the assessments
are also sent as a coded ELN 2022 response (LOINC 88040-1, as the assessing clinician
wrote it: CR, CRi, CR MRD-, ...).
"""

from __future__ import annotations

import math
import random

from .journey import DAY, HOUR, Journey, time_to_event

CYTARABINE = "L01BC01"
DAUNORUBICIN = "L01DB02"
RESPONSE_ASSESSMENT = "88040-1"  # LOINC Response to cancer treatment
CODED_RESPONSE_RATE = 0.5
# ELN 2022 responses as feeds spell them: remissions, and the rest (blasts >= 5 %: not MLFS)
REMISSIONS = ("CR", "CR", "CR", "CR MRD-", "CRi", "CRh")
NO_REMISSIONS = ("PR", "PR", "SD", "PD")
ELN_SYSTEMS = ("ELN2022", "ELN-2022", "ELN 2022")


def demographics(rng: random.Random) -> tuple[str, float, float]:
    return "aml", min(90.0, max(18.0, rng.gauss(62, 14))), 0.55


def journey(j: Journey, site: str, t0: int, kind: str) -> None:
    rng, ctx = j.rng, j.ctx
    induction = t0 + int(rng.uniform(2, 7) * DAY)
    p_death = ctx.probability("aml_early_death_30d", site, induction, 0.08, 0.04 * (j.age - 62))
    delay = time_to_event(rng, p_death, 30 * DAY, later_per_year=0.25)
    j.death = None if delay is None else induction + delay
    p_cr = ctx.probability("aml_complete_remission", site, induction, 0.66, -0.03 * (j.age - 62))
    remission = rng.random() < p_cr
    assessment = induction + int(rng.uniform(26, 40) * DAY)
    los = assessment - t0 + int(rng.uniform(1, 7) * DAY)

    enc = j.encounter()
    _, end, died = j.stay(site, t0, los, rng.choice(("EMERGENCY", "EMERGENCY", "ELECTIVE")),
                          "aml", "HOME", enc)

    def lab(t: int, name: str, value: float) -> None:
        if t < end:
            j.lab(site, t, name, value, enc)

    first = t0 + int(rng.uniform(1, 4) * HOUR)
    lab(first, "marrow_blasts", rng.uniform(20, 90))
    lab(first, "neutrophils", min(30.0, max(0.05, math.exp(rng.gauss(math.log(0.8), 0.8)))))
    lab(first, "platelets", min(400.0, max(5.0, math.exp(rng.gauss(math.log(45), 0.6)))))
    lab(first, "hemoglobin", min(140.0, max(50.0, rng.gauss(85, 12))))

    daunorubicin = rng.random() < 0.7
    for day in (0, 6):  # "7+3": cytarabine orders on days 1 and 7, daunorubicin day 1
        t = induction + day * DAY + int(rng.uniform(0, 2) * HOUR)
        if t < end:
            j.emit(site, t, "MEDICATION", system="ATC", code=CYTARABINE, encounter=enc)
            if daunorubicin and day == 0 and t + HOUR < end:
                j.emit(site, t + HOUR, "MEDICATION", system="ATC", code=DAUNORUBICIN, encounter=enc)
    for week in (1, 2, 3):  # nadir counts
        t = induction + week * 7 * DAY + int(rng.uniform(6, 10) * HOUR)
        lab(t, "neutrophils", rng.uniform(0.02, 0.5))
        lab(t, "platelets", rng.uniform(5, 40))
    if remission:
        blasts, anc, plt = rng.uniform(0.5, 4.5), rng.uniform(1.1, 4.5), rng.uniform(105, 350)
    else:
        blasts, anc, plt = rng.uniform(6, 60), rng.uniform(0.1, 2.5), rng.uniform(15, 160)
    lab(assessment, "marrow_blasts", blasts)
    lab(assessment + HOUR, "neutrophils", anc)
    lab(assessment + HOUR, "platelets", plt)
    side = j.side_rng("eln")
    if side.random() < CODED_RESPONSE_RATE and assessment + 2 * HOUR < end:
        response = {"system": side.choice(ELN_SYSTEMS),
                    "code": side.choice(REMISSIONS if remission else NO_REMISSIONS)}
        j.emit(site, assessment + 2 * HOUR, "LAB_RESULT", system="LOINC", code=RESPONSE_ASSESSMENT,
               coded_value=response, encounter=enc, rng=side)
    coded = assessment + int(rng.uniform(1, 3) * DAY)
    if remission and ctx.profiles[site].site.coding == "ICD10CM" and coded < end:
        j.diagnosis(site, coded, "aml_in_remission", enc)
    if not died and j.death is not None:
        j.die(site, j.death)
