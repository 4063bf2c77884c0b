"""Prostate cancer journeys: C61, pre-operative PSA, radical prostatectomy, PSA follow-up, EPIC-26.

Indicators fed: pca_bcr_12m, pca_mortality_90d, pca_epic26_incontinence_12m.
"""

from __future__ import annotations

import math
import random

from .journey import DAY, HOUR, Journey, time_to_event

#: Radical prostatectomy: OPS at German sites, SNOMED CT elsewhere (concepts.toml).
#: concepts.toml matches OPS codes exactly, so the feed sends the 5-604 category.
OPS_PROSTATECTOMY = ("5-604",)
SNOMED_PROSTATECTOMY = ("26294005",)
PSA_VISITS = 8  # post-operative PSA every ~3 months, two years at most


def demographics(rng: random.Random) -> tuple[str, float, float]:
    return "prostatectomy", min(80.0, max(45.0, rng.gauss(64, 7))), 1.0


def journey(j: Journey, site: str, t0: int, kind: str) -> None:
    rng, ctx = j.rng, j.ctx
    psa_pre = min(100.0, max(1.0, math.exp(rng.gauss(math.log(7.5), 0.6))))
    visit = j.encounter()
    j.lab(site, t0 - int(rng.uniform(7, 30) * DAY), "psa", psa_pre, visit)
    j.diagnosis(site, t0, "prostate_cancer", visit)
    _epic(j, site, t0 + int(rng.uniform(1, 20) * DAY), rng.gauss(88, 10), 0.10)

    surgery = t0 + int(rng.uniform(30, 90) * DAY)
    p_death = ctx.probability("pca_mortality_90d", site, surgery, 0.005, 0.05 * (j.age - 64))
    delay = time_to_event(rng, p_death, 90 * DAY, later_per_year=0.01)
    j.death = None if delay is None else surgery + delay
    p_bcr = ctx.probability("pca_bcr_12m", site, surgery, 0.165, 0.6 * math.log(psa_pre / 7.5))
    bcr = rng.random() < p_bcr
    onset = rng.choice((1, 2))  # first PSA above 0.2 at ~3 or ~6 months, rising after

    enc = j.encounter()
    admit = surgery - int(rng.uniform(2, 16) * HOUR)
    _, end, died = j.stay(site, admit, int(rng.uniform(1, 4) * DAY) + (surgery - admit), "ELECTIVE",
                          "prostate_cancer", "HOME", enc)
    if surgery < end:
        german = j.ctx.profiles[site].site.coding == "ICD10GM"
        if german:
            j.emit(site, surgery, "PROCEDURE", system="OPS", code=rng.choice(OPS_PROSTATECTOMY),
                   encounter=enc)
        else:
            j.emit(site, surgery, "PROCEDURE", system="SNOMED",
                   code=rng.choice(SNOMED_PROSTATECTOMY), encounter=enc)
    if died:
        return

    psa = rng.uniform(0.22, 0.4)
    for k in range(1, PSA_VISITS + 1):
        t = surgery + int((91 * k + rng.uniform(-14, 14)) * DAY)
        if not j.alive(t):
            break
        if bcr and k >= onset:
            value = psa
            psa *= rng.uniform(1.3, 2.0)
        else:
            value = max(0.01, rng.uniform(0.0, 0.06))
        j.lab(site, t, "psa", value, j.encounter())
    for mean, months, window in ((58.0, 3, 14), (78.0, 12, 30)):
        t = surgery + int((30.4 * months + rng.uniform(-window, window)) * DAY)
        if j.alive(t):
            _epic(j, site, t, rng.gauss(mean, 18), 0.15)
    if j.death is not None:
        j.die(site, j.death)


#: How sites' questionnaire systems name the instrument and the domain (one spelling per site).
EPIC_SPELLINGS = (("EPIC-26", "urinary_incontinence"), ("EPIC-26", "urinary_incontinence"),
                  ("EPIC26", "Urinary Incontinence"), ("epic 26", "urinary incontinence"))


def _epic(j: Journey, site: str, t: int, score: float, missing: float) -> None:
    """An EPIC-26 urinary incontinence domain response, unless the patient did not answer."""
    if j.rng.random() < missing:
        return
    instrument, domain = random.Random(f"prom-spelling:{site}").choice(EPIC_SPELLINGS)
    prom = {"instrument": instrument, "domain": domain,
            "score": round(min(100.0, max(0.0, score)), 1)}
    j.emit(site, t, "PROM_RESPONSE", prom=prom)
