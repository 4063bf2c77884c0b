"""The topology: the engine's stages, in order, with the topics each reads and writes.

The worker builds its stages from this table (``rwe worker --stages`` picks a subset),
the in-memory driver runs it, and tests check the README's diagram and each stage's
actual inputs and outputs against it. ``streams`` never imports ``agents`` statically:
a stage is built by the ``build(context)`` function of the module named here, so a
deployment can run any subset of the stages.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from streams.errors import ConfigError
from streams.runtime import topics as t
from streams.runtime.stage import Stage, StageContext


@dataclass(frozen=True)
class StageSpec:
    name: str
    module: str                  # holds build(context) -> Stage
    inputs: tuple[str, ...]      # topic names without the prefix
    outputs: tuple[str, ...]
    changelog: str
    doc: str


TOPOLOGY: tuple[StageSpec, ...] = (
    StageSpec("normalise", "agents.normalise", (t.RAW,), (t.NORMALISED, t.DLQ, t.SITE_ACTIVITY), t.DEDUPE_CHANGELOG,
              "decode, validate, map codes, convert units, pseudonymise, dedupe, order by event time"),
    StageSpec("ascertain", "agents.ascertain", (t.NORMALISED,), (t.OBSERVATIONS,), t.ASCERTAIN_CHANGELOG,
              "per-patient timelines in event time to outcome observations"),
    StageSpec("aggregate", "agents.aggregate", (t.OBSERVATIONS,), (t.INDICATORS, t.NETWORK, t.DLQ),
              t.AGGREGATE_CHANGELOG, "rolling indicators per scope and window, small cells suppressed"),
    StageSpec("monitor", "agents.monitor", (t.OBSERVATIONS, t.SITE_ACTIVITY), (t.ALERTS, t.DLQ), t.MONITOR_CHANGELOG,
              "sequential charts, funnel, feed health and the alert lifecycle"),
)
STAGES: tuple[str, ...] = tuple(s.name for s in TOPOLOGY)


def spec(name: str) -> StageSpec:
    for s in TOPOLOGY:
        if s.name == name:
            return s
    raise ConfigError(f"unknown stage {name!r}; stages are: {', '.join(STAGES)}")


def build_stage(name: str, context: StageContext) -> Stage:
    """The stage ``name``, built by its module's ``build(context)``."""
    stage: Stage = importlib.import_module(spec(name).module).build(context)
    return stage


def diagram() -> list[str]:
    """The topology as the README draws it: one line per stage, inputs --stage--> outputs."""
    return [f"{', '.join(s.inputs)} --{s.name}--> {', '.join(s.outputs)}" for s in TOPOLOGY]
