"""Cardiovascular journeys: heart failure admissions, acute MI, new atrial fibrillation.

Indicators fed: hf_mortality_30d, hf_readmission_30d, hf_length_of_stay,
ami_mortality_30d, af_stroke_1y.
"""

from __future__ import annotations

import math
import random

from .journey import DAY, HOUR, YEAR, Journey, time_to_event

KINDS = (("heart_failure", 0.5), ("ami", 0.3), ("af", 0.2))


def demographics(rng: random.Random) -> tuple[str, float, float]:
    """(kind of journey, age at index, probability of male sex)."""
    u = rng.random()
    if u < 0.5:
        return "heart_failure", _clip(rng.gauss(78, 9), 40, 100), 0.55
    if u < 0.8:
        return "ami", _clip(rng.gauss(68, 12), 30, 98), 0.65
    return "af", _clip(rng.gauss(72, 10), 35, 98), 0.55


def journey(j: Journey, site: str, t0: int, kind: str) -> None:
    if kind == "heart_failure":
        heart_failure(j, site, t0)
    elif kind == "ami":
        myocardial_infarction(j, site, t0)
    else:
        atrial_fibrillation(j, site, t0)


def heart_failure(j: Journey, site: str, t0: int) -> None:
    """Emergency HF admission; in-hospital or later death; transfer; 30-day readmission."""
    rng, ctx = j.rng, j.ctx
    nt = _clip(math.exp(rng.gauss(math.log(3500), 0.9)), 100, 70000)
    crea = _clip(math.exp(rng.gauss(math.log(115), 0.35)), 40, 900)
    hb = _clip(rng.gauss(125, 18), 60, 180)
    adj = 0.035 * (j.age - 78) + 0.35 * math.log(nt / 3500) + 0.5 * math.log(crea / 115)
    p_death = ctx.probability("hf_mortality_30d", site, t0, 0.10, adj)
    delay = time_to_event(rng, p_death, 30 * DAY, later_per_year=0.15)
    j.death = None if delay is None else t0 + delay
    p_readmit = ctx.probability("hf_readmission_30d", site, t0, 0.18, 0.25 * math.log(nt / 3500))
    readmit = time_to_event(rng, p_readmit, 30 * DAY)
    los = int(_clip(math.exp(rng.gauss(math.log(6), 0.5)), 2, 15) * DAY)
    u = rng.random()
    transfer_to = ctx.peer(rng, site) if j.patient.linked else None
    disposition = ("HOME" if u < 0.82 else "LONG_TERM_CARE" if u < 0.90
                   else "TRANSFER" if u < 0.97 else "OTHER")
    enc = j.encounter()
    _, end, died = j.stay(site, t0, los, "EMERGENCY", "heart_failure", disposition, enc)
    _admission_labs(j, site, t0, end, enc, {"nt_probnp": nt, "creatinine": crea})
    if rng.random() < 0.6:
        j.lab(site, j.within(t0, min(end, t0 + 3 * HOUR)), "hemoglobin", hb, enc)
    for _ in range(rng.randint(0, 2) if end - t0 > 2 * DAY else 0):
        j.lab(site, j.within(t0 + DAY, end), "creatinine", crea * rng.uniform(0.8, 1.1), enc)
    last = site
    if not died and disposition == "TRANSFER" and transfer_to is not None:
        admit = end + int(rng.uniform(1, 4) * HOUR)
        if j.alive(admit):
            _, end, died = j.stay(transfer_to, admit, int(rng.uniform(2, 8) * DAY),
                                  rng.choice(("EMERGENCY", None)), "heart_failure", "HOME")
            last = transfer_to
    if not died and readmit is not None and j.alive(end + readmit):
        where = site
        if j.patient.linked and rng.random() < 0.25:
            where = ctx.peer(rng, site) or site
        _, _, died = j.stay(where, end + readmit, int(rng.uniform(2, 10) * DAY), "EMERGENCY",
                            "heart_failure" if rng.random() < 0.85 else None, "HOME")
        last = where
    if not died and j.death is not None:
        j.die(last, j.death)


def myocardial_infarction(j: Journey, site: str, t0: int) -> None:
    """Emergency AMI admission with troponin; 30-day mortality."""
    rng, ctx = j.rng, j.ctx
    trop = _clip(math.exp(rng.gauss(math.log(1500), 1.3)), 30, 200000)
    crea = _clip(math.exp(rng.gauss(math.log(95), 0.3)), 40, 900)
    adj = 0.05 * (j.age - 68) + 0.2 * math.log(trop / 1500) + 0.4 * math.log(crea / 95)
    p_death = ctx.probability("ami_mortality_30d", site, t0, 0.07, adj)
    delay = time_to_event(rng, p_death, 30 * DAY, later_per_year=0.05)
    j.death = None if delay is None else t0 + delay
    los = int(rng.uniform(2, 8) * DAY)
    u = rng.random()
    disposition = "HOME" if u < 0.9 else "TRANSFER" if u < 0.95 else "LONG_TERM_CARE"
    enc = j.encounter()
    _, end, died = j.stay(site, t0, los, "EMERGENCY", "acute_myocardial_infarction", disposition, enc)
    _admission_labs(j, site, t0, end, enc, {"troponin_i": trop, "creatinine": crea})
    second = t0 + int(rng.uniform(3, 6) * HOUR)
    if second < end:
        j.lab(site, second, "troponin_i", trop * rng.uniform(1.2, 3.0), enc)
    if not died and j.death is not None:
        j.die(site, j.death)


def atrial_fibrillation(j: Journey, site: str, t0: int) -> None:
    """New AF diagnosed in clinic; ischaemic stroke admission within a year for a few."""
    rng, ctx = j.rng, j.ctx
    visit = j.encounter()
    j.diagnosis(site, t0, "atrial_fibrillation", visit)
    if rng.random() < 0.5:
        crea = _clip(math.exp(rng.gauss(math.log(90), 0.3)), 40, 600)
        j.lab(site, t0 + int(rng.uniform(0.2, 2) * HOUR), "creatinine", crea, visit)
    p_stroke = ctx.probability("af_stroke_1y", site, t0, 0.04, 0.04 * (j.age - 72))
    stroke = time_to_event(rng, p_stroke, YEAR, later_per_year=0.03)
    background = time_to_event(rng, 0.04, YEAR, later_per_year=0.04)
    j.death = None if background is None else t0 + background
    if stroke is None or not j.alive(t0 + stroke):
        if j.death is not None:
            j.die(site, j.death)
        return
    admit = t0 + stroke
    post = time_to_event(rng, 0.15, 30 * DAY)
    if post is not None and (j.death is None or admit + post < j.death):
        j.death = admit + post
    u = rng.random()
    disposition = "HOME" if u < 0.6 else "LONG_TERM_CARE" if u < 0.9 else "TRANSFER"
    _, _, died = j.stay(site, admit, int(rng.uniform(3, 20) * DAY), "EMERGENCY",
                        "ischaemic_stroke", disposition)
    if not died and j.death is not None:
        j.die(site, j.death)


def _admission_labs(j: Journey, site: str, admit: int, end: int, enc: str,
                    values: dict[str, float]) -> None:
    for lab, value in values.items():
        t = admit + int(j.rng.uniform(0.3, 3.0) * HOUR)
        if t < end:
            j.lab(site, t, lab, value, enc)


def _clip(x: float, low: float, high: float) -> float:
    return low if x < low else high if x > high else x
